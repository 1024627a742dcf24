//! The SIP wire parser (RFC 3261 §7, §20, §25): whole datagrams into [`Message`]s, stream
//! framing for TCP, typed errors that map to one status code, and salvage of the headers a
//! 400 needs from a broken request.
//!
//! The parser makes one pass over the header section. Header values are parsed in place from
//! the borrowed text; only folded (multi-line) values are copied before parsing.

use std::borrow::Cow;
use std::str::FromStr;

use crate::message::{
    AuthParams, CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Refresher,
    Request, Response, SessionExpires, Uri, Via,
};
use crate::uri::{is_host_byte, parse_port, parse_uri, UriError};

/// Largest message accepted on a stream (and the size a datagram can reasonably have).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Largest header section (start line through the empty line) accepted on a stream.
pub const MAX_HEADER_SECTION: usize = 16 * 1024;

/// Why a message could not be parsed. [`ParseError::status`] gives the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but keep-alive line ends.
    #[error("empty message")]
    Empty,
    /// The start line or header section holds bytes that are not UTF-8.
    #[error("header section is not UTF-8 at byte {offset}")]
    NotUtf8 { offset: usize },
    /// The header section does not end with an empty line.
    #[error("header section is not terminated")]
    UnterminatedHeaders,
    /// The Request-Line is not `Method SP Request-URI SP SIP-Version`.
    #[error("malformed Request-Line: {reason}")]
    BadRequestLine { reason: &'static str },
    /// The Request-URI is malformed, in `<>`, holds whitespace, or (sip/sips) has `?headers`.
    #[error("bad Request-URI at byte {offset}: {reason}")]
    BadRequestUri { offset: usize, reason: UriError },
    /// The Status-Line is malformed or its code is not 100-699.
    #[error("malformed Status-Line: {reason}")]
    BadStatusLine { reason: &'static str },
    /// A SIP version other than `SIP/2.0` (answered with 505).
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    /// A header line without a `name:` or with a stray CR or LF.
    #[error("malformed header line at byte {offset}")]
    BadHeaderLine { offset: usize },
    /// A header whose value does not follow its grammar.
    #[error("bad {name} header at byte {offset}: {reason}")]
    BadHeader {
        name: &'static str,
        offset: usize,
        reason: ValueError,
    },
    /// A header every request and response must carry is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that takes a single value appears more than once.
    #[error("{name} appears more than once (again at byte {offset})")]
    MultipleValues { name: &'static str, offset: usize },
    /// Content-Length headers that disagree.
    #[error("conflicting Content-Length headers (at byte {offset})")]
    ConflictingContentLength { offset: usize },
    /// The CSeq method differs from the request method.
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMethodMismatch { method: String, cseq: String },
    /// Content-Length promises more bytes than the datagram holds.
    #[error("body too short: Content-Length {expected}, {available} bytes present")]
    BodyTooShort { expected: usize, available: usize },
    /// A stream message larger than [`MAX_MESSAGE_SIZE`].
    #[error("message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    /// A stream header section larger than [`MAX_HEADER_SECTION`].
    #[error("header section exceeds the {limit}-byte limit")]
    HeadersTooLarge { limit: usize },
}

impl ParseError {
    /// The status code to answer a request with, or `None` when there is nothing to answer.
    /// Responses that fail to parse are dropped, whatever this says.
    pub fn status(&self) -> Option<u16> {
        match self {
            ParseError::Empty => None,
            ParseError::UnsupportedVersion(_) => Some(505),
            ParseError::TooLarge { .. } | ParseError::HeadersTooLarge { .. } => Some(513),
            _ => Some(400),
        }
    }
}

/// Why a single header value is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value breaks the header's grammar; the text says how.
    #[error("{0}")]
    Malformed(&'static str),
    /// The value's URI is malformed.
    #[error("bad URI: {0}")]
    Uri(#[from] UriError),
}

/// What [`frame`] found at the start of a stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// `len` bytes of CRLF keep-alive to discard before the next message.
    KeepAlive { len: usize },
    /// A whole message occupies the first `len` bytes; pass them to [`parse_message`].
    Complete { len: usize },
    /// The stream cannot be framed; the connection should be closed.
    Invalid(ParseError),
}

/// Frames the next message on a stream transport (RFC 3261 §18.3): Content-Length is required,
/// message and header sizes are bounded.
pub fn frame(buf: &[u8]) -> Framing {
    let keep_alive = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if keep_alive > 0 {
        return Framing::KeepAlive { len: keep_alive };
    }
    let window = &buf[..buf.len().min(MAX_HEADER_SECTION)];
    let Some(end) = find_head_end(window) else {
        return if buf.len() >= MAX_HEADER_SECTION {
            Framing::Invalid(ParseError::HeadersTooLarge {
                limit: MAX_HEADER_SECTION,
            })
        } else {
            Framing::Incomplete
        };
    };
    let body_len = match stream_content_length(&buf[..end + 2]) {
        Ok(Some(n)) => n,
        Ok(None) => return Framing::Invalid(ParseError::MissingHeader("Content-Length")),
        Err(e) => return Framing::Invalid(e),
    };
    let len = (end + 4).saturating_add(body_len);
    if len > MAX_MESSAGE_SIZE {
        return Framing::Invalid(ParseError::TooLarge {
            len,
            limit: MAX_MESSAGE_SIZE,
        });
    }
    if buf.len() < len {
        Framing::Incomplete
    } else {
        Framing::Complete { len }
    }
}

/// Content-Length from a raw header section (through the last header's CRLF), without a full
/// parse: enough to know where a stream message ends.
fn stream_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    let mut pos = 0;
    let mut first = true;
    while pos < head.len() {
        let line_end = find_crlf(&head[pos..]).map_or(head.len(), |i| pos + i);
        let line = &head[pos..line_end];
        let offset = pos;
        pos = line_end + 2;
        if std::mem::take(&mut first) || line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = trim_bytes(&line[..colon]);
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut value = trim_bytes(&line[colon + 1..]);
        // A value folded onto the next line ("Content-Length:\r\n 5").
        if value.is_empty() && head.get(pos).is_some_and(|&b| b == b' ' || b == b'\t') {
            let rest = head.get(pos..).unwrap_or(&[]);
            value = trim_bytes(
                rest.get(..find_crlf(rest).unwrap_or(rest.len()))
                    .unwrap_or(&[]),
            );
        }
        let n = parse_content_length(value).map_err(|reason| ParseError::BadHeader {
            name: "Content-Length",
            offset,
            reason,
        })?;
        match found {
            Some(prev) if prev != n => {
                return Err(ParseError::ConflictingContentLength { offset });
            }
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or(&[])
}

fn parse_content_length(v: &[u8]) -> Result<usize, ValueError> {
    if v.first() == Some(&b'-') {
        return Err(ValueError::Malformed("negative Content-Length"));
    }
    parse_decimal(v).ok_or(ValueError::Malformed("Content-Length is not a number"))
}

/// A non-empty run of ASCII digits, without overflow.
fn parse_decimal<T: TryFrom<u64>>(v: &[u8]) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    T::try_from(n).ok()
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = b.get(from..)?.iter().position(|&c| c == b'\n') {
        let nl = from + i;
        if nl > 0 && b.get(nl - 1) == Some(&b'\r') {
            return Some(nl - 1);
        }
        from = nl + 1;
    }
    None
}

/// Index of the CRLFCRLF that ends the header section.
fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

fn skip_keep_alive(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Parses one whole message, as received in a datagram or framed by [`frame`].
///
/// Content-Length bounds the body and anything after it is ignored; without Content-Length
/// the rest of the input is the body.
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    let base = skip_keep_alive(bytes);
    let data = bytes.get(base..).unwrap_or(&[]);
    if data.is_empty() {
        return Err(ParseError::Empty);
    }
    // A datagram that ends right after its last header line has no body; accept it.
    let (head_len, body_start) = match find_head_end(data) {
        Some(i) => (i + 2, i + 4),
        None if data.ends_with(b"\r\n") => (data.len(), data.len()),
        None => return Err(ParseError::UnterminatedHeaders),
    };
    // The same bound on a datagram's headers as on a stream's (see `frame`).
    if head_len > MAX_HEADER_SECTION {
        return Err(ParseError::HeadersTooLarge {
            limit: MAX_HEADER_SECTION,
        });
    }
    let head = std::str::from_utf8(&data[..head_len]).map_err(|e| ParseError::NotUtf8 {
        offset: base + e.valid_up_to(),
    })?;
    let rest = data.get(body_start..).unwrap_or(&[]);

    let start_end = head.find("\r\n").unwrap_or(head.len());
    let start_line = &head[..start_end];
    let header_text = head.get(start_end + 2..).unwrap_or("");
    let header_base = base + start_end + 2;

    let is_response = start_line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if is_response {
        let (status, reason) = parse_status_line(start_line)?;
        let (headers, content_length) = parse_headers(header_text, header_base)?;
        let body = take_body(rest, content_length)?;
        Ok(Message::Response(Response {
            status,
            reason: reason.to_string(),
            headers,
            body,
        }))
    } else {
        let (method, uri) = parse_request_line(start_line, base)?;
        let (headers, content_length) = parse_headers(header_text, header_base)?;
        if let Some(cseq) = headers.cseq() {
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch {
                    method: method.as_str().to_string(),
                    cseq: cseq.method.as_str().to_string(),
                });
            }
        }
        let body = take_body(rest, content_length)?;
        Ok(Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }))
    }
}

fn take_body(rest: &[u8], content_length: Option<usize>) -> Result<Vec<u8>, ParseError> {
    match content_length {
        None => Ok(rest.to_vec()),
        Some(n) => rest
            .get(..n)
            .map(<[u8]>::to_vec)
            .ok_or(ParseError::BodyTooShort {
                expected: n,
                available: rest.len(),
            }),
    }
}

fn is_sip_version(v: &str) -> bool {
    v.len() == 7 && v[..4].eq_ignore_ascii_case("SIP/") && &v[4..] == "2.0"
}

/// `Method SP Request-URI SP SIP-Version`; runs of SP are tolerated (RFC 4475 §3.1.2.9-10)
/// but whitespace inside the URI is not.
fn parse_request_line(line: &str, base: usize) -> Result<(Method, Uri), ParseError> {
    let mut parts = line.split(' ').filter(|p| !p.is_empty());
    let method = parts.next().ok_or(ParseError::BadRequestLine {
        reason: "empty Request-Line",
    })?;
    if !method.bytes().all(is_token_byte) {
        return Err(ParseError::BadRequestLine {
            reason: "method is not a token",
        });
    }
    let (Some(uri), Some(version)) = (parts.next(), parts.next()) else {
        return Err(ParseError::BadRequestLine {
            reason: "missing Request-URI or SIP version",
        });
    };
    let uri_offset = base + (uri.as_ptr() as usize - line.as_ptr() as usize);
    if let Some(last) = parts.next_back() {
        return Err(
            if last
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            {
                ParseError::BadRequestUri {
                    offset: uri_offset,
                    reason: UriError::IllegalChar,
                }
            } else {
                ParseError::BadRequestLine {
                    reason: "extra text after the SIP version",
                }
            },
        );
    }
    if !is_sip_version(version) {
        return Err(
            if version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
            {
                ParseError::UnsupportedVersion(version.to_string())
            } else {
                ParseError::BadRequestLine {
                    reason: "missing SIP version",
                }
            },
        );
    }
    let bad_uri = |reason| ParseError::BadRequestUri {
        offset: uri_offset,
        reason,
    };
    let uri = parse_uri(uri).map_err(bad_uri)?;
    if let Uri::Sip(u) = &uri {
        if !u.headers.is_empty() {
            return Err(bad_uri(UriError::HeadersNotAllowed));
        }
    }
    Ok((Method::from_token(method), uri))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`; the reason may be empty.
fn parse_status_line(line: &str) -> Result<(u16, &str), ParseError> {
    let (version, rest) = line.split_once(' ').unwrap_or((line, ""));
    if !is_sip_version(version) {
        return Err(ParseError::UnsupportedVersion(version.to_string()));
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 {
        return Err(ParseError::BadStatusLine {
            reason: "status code is not three digits",
        });
    }
    match parse_decimal::<u16>(code.as_bytes()) {
        Some(c @ 100..=699) => Ok((c, reason.trim())),
        _ => Err(ParseError::BadStatusLine {
            reason: "status code is not 100-699",
        }),
    }
}

/// The headers baton types, by canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    ContentLength,
    ContentType,
    Route,
    RecordRoute,
    Require,
    ProxyRequire,
    Supported,
    Unsupported,
    Allow,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    SessionExpires,
    MinSe,
}

const KINDS: [(&str, Kind); 22] = [
    ("Via", Kind::Via),
    ("From", Kind::From),
    ("To", Kind::To),
    ("Call-ID", Kind::CallId),
    ("CSeq", Kind::CSeq),
    ("Contact", Kind::Contact),
    ("Max-Forwards", Kind::MaxForwards),
    ("Content-Length", Kind::ContentLength),
    ("Content-Type", Kind::ContentType),
    ("Route", Kind::Route),
    ("Record-Route", Kind::RecordRoute),
    ("Require", Kind::Require),
    ("Proxy-Require", Kind::ProxyRequire),
    ("Supported", Kind::Supported),
    ("Unsupported", Kind::Unsupported),
    ("Allow", Kind::Allow),
    ("Authorization", Kind::Authorization),
    ("Proxy-Authorization", Kind::ProxyAuthorization),
    ("WWW-Authenticate", Kind::WwwAuthenticate),
    ("Proxy-Authenticate", Kind::ProxyAuthenticate),
    ("Session-Expires", Kind::SessionExpires),
    ("Min-SE", Kind::MinSe),
];

impl Kind {
    /// Maps a header name, long or compact (RFC 3261 §7.3.3, RFC 4028), case-insensitively.
    fn of(name: &str) -> Option<Kind> {
        if let [b] = name.as_bytes() {
            return match b.to_ascii_lowercase() {
                b'v' => Some(Kind::Via),
                b'f' => Some(Kind::From),
                b't' => Some(Kind::To),
                b'i' => Some(Kind::CallId),
                b'm' => Some(Kind::Contact),
                b'l' => Some(Kind::ContentLength),
                b'c' => Some(Kind::ContentType),
                b'k' => Some(Kind::Supported),
                b'x' => Some(Kind::SessionExpires),
                _ => None,
            };
        }
        KINDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, k)| k)
    }

    fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|&&(_, k)| k == self)
            .map_or("?", |&(n, _)| n)
    }

    /// Headers that may appear once only (RFC 3261 §7.3.1, §20).
    fn single(self) -> bool {
        matches!(
            self,
            Kind::From
                | Kind::To
                | Kind::CallId
                | Kind::CSeq
                | Kind::MaxForwards
                | Kind::ContentType
                | Kind::ContentLength
                | Kind::SessionExpires
                | Kind::MinSe
        )
    }
}

/// One header line with its continuation lines joined (LWS becomes one SP).
struct LogicalLine<'a> {
    offset: usize,
    text: Cow<'a, str>,
}

/// Splits the header section into logical lines. `text` holds whole CRLF-terminated lines.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    base: usize,
}

impl<'a> Lines<'a> {
    /// The next physical line (without CRLF); a bare CR or LF is an error.
    fn physical(&mut self) -> Result<Option<&'a str>, ParseError> {
        let rest = self.text.get(self.pos..).unwrap_or("");
        if rest.is_empty() {
            return Ok(None);
        }
        let offset = self.base + self.pos;
        let nl = rest
            .find('\n')
            .ok_or(ParseError::BadHeaderLine { offset })?;
        let line = rest
            .get(..nl)
            .and_then(|l| l.strip_suffix('\r'))
            .ok_or(ParseError::BadHeaderLine { offset })?;
        if line.contains('\r') {
            return Err(ParseError::BadHeaderLine { offset });
        }
        self.pos += nl + 1;
        Ok(Some(line))
    }

    fn next_line(&mut self) -> Result<Option<LogicalLine<'a>>, ParseError> {
        let offset = self.base + self.pos;
        let Some(first) = self.physical()? else {
            return Ok(None);
        };
        if first.starts_with([' ', '\t']) {
            return Err(ParseError::BadHeaderLine { offset });
        }
        let mut text = Cow::Borrowed(first);
        while self
            .text
            .as_bytes()
            .get(self.pos)
            .is_some_and(|&b| b == b' ' || b == b'\t')
        {
            let Some(cont) = self.physical()? else { break };
            let owned = text.to_mut();
            owned.push(' ');
            owned.push_str(cont.trim_start_matches([' ', '\t']));
        }
        Ok(Some(LogicalLine { offset, text }))
    }
}

/// The long name of an untyped header written in compact form (RFC 3261 §7.3.3 and the
/// extensions that register one), so that lookups by name find it; other names are kept.
fn expand_compact(name: &str) -> &str {
    let [b] = name.as_bytes() else {
        return name;
    };
    match b.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'j' => "Reject-Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b'u' => "Allow-Events",
        b'y' => "Identity",
        _ => name,
    }
}

/// `name: value` split of a logical line; the name must be a token.
fn split_header(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once(':')?;
    let name = name.trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return None;
    }
    Some((name, value.trim_matches([' ', '\t'])))
}

/// Parses the header lines and checks what every message needs; returns the headers and the
/// Content-Length, if any.
fn parse_headers(text: &str, base: usize) -> Result<(Headers, Option<usize>), ParseError> {
    let mut out = Vec::with_capacity(16);
    let mut seen: u32 = 0;
    let mut content_length = None;
    let mut lines = Lines { text, pos: 0, base };
    while let Some(line) = lines.next_line()? {
        let offset = line.offset;
        let (name, value) = split_header(&line.text).ok_or(ParseError::BadHeaderLine { offset })?;
        let Some(kind) = Kind::of(name) else {
            out.push(Header::Other {
                name: expand_compact(name).to_string(),
                value: value.to_string(),
            });
            continue;
        };
        let bad = |reason| ParseError::BadHeader {
            name: kind.name(),
            offset,
            reason,
        };
        if kind.single() {
            let bit = 1 << kind as u32;
            if seen & bit != 0 {
                if kind == Kind::ContentLength {
                    let n = parse_content_length(value.as_bytes()).map_err(bad)?;
                    if content_length != Some(n) {
                        return Err(ParseError::ConflictingContentLength { offset });
                    }
                }
                return Err(ParseError::MultipleValues {
                    name: kind.name(),
                    offset,
                });
            }
            seen |= bit;
        }
        if kind == Kind::ContentLength {
            let n = parse_content_length(value.as_bytes()).map_err(bad)?;
            content_length = Some(n);
            out.push(Header::ContentLength(n));
            continue;
        }
        parse_typed(kind, value, &mut out).map_err(bad)?;
    }
    for kind in [Kind::Via, Kind::From, Kind::To, Kind::CallId, Kind::CSeq] {
        let present = if kind == Kind::Via {
            out.iter().any(|h| matches!(h, Header::Via(_)))
        } else {
            seen & (1 << kind as u32) != 0
        };
        if !present {
            return Err(ParseError::MissingHeader(kind.name()));
        }
    }
    Ok((Headers(out), content_length))
}

/// Parses the value of a typed header, pushing one [`Header`] per list element where the
/// header is a comma-separated list.
fn parse_typed(kind: Kind, value: &str, out: &mut Vec<Header>) -> Result<(), ValueError> {
    match kind {
        Kind::Via => {
            for v in split_list(value)? {
                out.push(Header::Via(parse_via(v, Mode::Strict)?));
            }
        }
        Kind::Contact => {
            for v in split_list(value)? {
                out.push(Header::Contact(parse_contact(v)?));
            }
        }
        Kind::Route => {
            for v in split_list(value)? {
                out.push(Header::Route(parse_name_addr(v)?));
            }
        }
        Kind::RecordRoute => {
            for v in split_list(value)? {
                out.push(Header::RecordRoute(parse_name_addr(v)?));
            }
        }
        Kind::From => out.push(Header::From(parse_name_addr(value)?)),
        Kind::To => out.push(Header::To(parse_name_addr(value)?)),
        Kind::CallId => out.push(Header::CallId(parse_call_id(value)?)),
        Kind::CSeq => out.push(Header::CSeq(parse_cseq(value)?)),
        Kind::MaxForwards => out.push(Header::MaxForwards(
            parse_decimal(value.as_bytes()).ok_or(ValueError::Malformed("not a 32-bit number"))?,
        )),
        Kind::ContentLength => out.push(Header::ContentLength(parse_content_length(
            value.as_bytes(),
        )?)),
        Kind::ContentType => out.push(Header::ContentType(parse_content_type(value)?)),
        Kind::Require => out.push(Header::Require(parse_tags(value)?)),
        Kind::ProxyRequire => out.push(Header::ProxyRequire(parse_tags(value)?)),
        Kind::Supported => out.push(Header::Supported(parse_tags(value)?)),
        Kind::Unsupported => out.push(Header::Unsupported(parse_tags(value)?)),
        Kind::Allow => out.push(Header::Allow(
            parse_tags(value)?
                .iter()
                .map(|m| Method::from_token(m))
                .collect(),
        )),
        Kind::Authorization
        | Kind::ProxyAuthorization
        | Kind::WwwAuthenticate
        | Kind::ProxyAuthenticate => out.push(match parse_auth(value) {
            Ok(a) => match kind {
                Kind::Authorization => Header::Authorization(a),
                Kind::ProxyAuthorization => Header::ProxyAuthorization(a),
                Kind::WwwAuthenticate => Header::WwwAuthenticate(a),
                _ => Header::ProxyAuthenticate(a),
            },
            // Credentials in a form AuthParams cannot hold (e.g. a bare OAuth bearer token)
            // are kept verbatim: the authenticating layer rejects them, not the parser.
            Err(_) => Header::Other {
                name: kind.name().to_string(),
                value: value.to_string(),
            },
        }),
        Kind::SessionExpires => out.push(Header::SessionExpires(parse_session_expires(value)?)),
        Kind::MinSe => out.push(Header::MinSe(parse_min_se(value)?)),
    }
    Ok(())
}

/// Extracts whatever Via, From, To, Call-ID and CSeq headers can be parsed from a broken
/// request, so that a 400 can still be sent. `None` if the input is not a request at all
/// (responses are never answered). The caller needs at least one Via to reply.
pub fn salvage(bytes: &[u8]) -> Option<Headers> {
    let data = bytes.get(skip_keep_alive(bytes)..)?;
    let head_end = find_head_end(data).map_or(data.len(), |i| i + 2);
    let head = String::from_utf8_lossy(data.get(..head_end)?);
    let mut physical = head.split("\r\n");
    let start = physical.next()?;
    if start.trim().is_empty()
        || start
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        return None;
    }
    let mut logical: Vec<String> = Vec::new();
    for line in physical {
        match logical.last_mut() {
            Some(prev) if line.starts_with([' ', '\t']) => {
                prev.push(' ');
                prev.push_str(line.trim_start_matches([' ', '\t']));
            }
            _ => logical.push(line.to_string()),
        }
    }
    let mut out = Vec::new();
    let mut seen = [false; 4];
    for line in &logical {
        let Some((name, value)) = split_header(line) else {
            continue;
        };
        let slot = match Kind::of(name) {
            Some(Kind::Via) => {
                // Commas inside Via values are rare; a naive split is enough to salvage.
                out.extend(
                    value
                        .split(',')
                        .filter_map(|v| parse_via(v, Mode::Salvage).ok().map(Header::Via)),
                );
                continue;
            }
            Some(Kind::From) => 0,
            Some(Kind::To) => 1,
            Some(Kind::CallId) => 2,
            Some(Kind::CSeq) => 3,
            _ => continue,
        };
        if seen[slot] {
            continue;
        }
        let parsed = match slot {
            0 => parse_name_addr(value).map(Header::From),
            1 => parse_name_addr(value).map(Header::To),
            2 => parse_call_id(value).map(Header::CallId),
            _ => parse_cseq(value).map(Header::CSeq),
        };
        if let Ok(h) = parsed {
            seen[slot] = true;
            out.push(h);
        }
    }
    Some(Headers(out))
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// A byte cursor over a header value. Slices are only cut next to ASCII bytes, so they are
/// always on char boundaries; `get` keeps that panic-free regardless.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn token(&mut self) -> &'a str {
        self.take_while(is_token_byte)
    }

    /// A quoted string including its quotes, as written.
    fn quoted(&mut self) -> Result<&'a str, ValueError> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err(ValueError::Malformed("expected a quoted string"));
        }
        loop {
            match self.peek() {
                None => return Err(ValueError::Malformed("unterminated quoted string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.s.get(start..self.pos).unwrap_or(""));
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
    }
}

/// The content of a quoted string (with its quotes) with quoted-pairs resolved.
fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits a header value at commas that are outside quoted strings and `<>`.
fn split_list(value: &str) -> Result<Vec<&str>, ValueError> {
    let mut parts = Vec::new();
    let bytes = value.as_bytes();
    let (mut start, mut i) = (0, 0);
    let (mut quoted, mut angle) = (false, false);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                parts.push(value.get(start..i).unwrap_or("").trim_matches([' ', '\t']));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(value.get(start..).unwrap_or("").trim_matches([' ', '\t']));
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ValueError::Malformed("empty list element"));
    }
    Ok(parts)
}

/// `;name[=value]` parameters; a quoted value keeps its quotes, so it is written back as is.
fn parse_params(c: &mut Cursor<'_>, out: &mut Vec<Param>) -> Result<(), ValueError> {
    loop {
        c.skip_ws();
        if !c.eat(b';') {
            return Ok(());
        }
        c.skip_ws();
        let name = c.token();
        if name.is_empty() {
            return Err(ValueError::Malformed("empty parameter"));
        }
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            let v = if c.peek() == Some(b'"') {
                c.quoted()?
            } else {
                c.take_while(|b| is_token_byte(b) || matches!(b, b'[' | b']' | b':'))
            };
            if v.is_empty() {
                return Err(ValueError::Malformed("empty parameter value"));
            }
            Some(v.to_string())
        } else {
            None
        };
        out.push(Param {
            name: name.to_string(),
            value,
        });
    }
}

fn expect_end(c: &Cursor<'_>) -> Result<(), ValueError> {
    if c.at_end() {
        Ok(())
    } else {
        Err(ValueError::Malformed("unexpected text after the value"))
    }
}

/// How much of a malformed value to accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The grammar, as the parser enforces it.
    Strict,
    /// Whatever still says where to send a response: any SIP version, bad parameters skipped.
    Salvage,
}

/// `SIP / 2.0 / transport sent-by *(;param)` (RFC 3261 §20.42); LWS around `/` and `:` allowed.
fn parse_via(v: &str, mode: Mode) -> Result<Via, ValueError> {
    let mut c = Cursor::new(v);
    c.skip_ws();
    if !c.token().eq_ignore_ascii_case("SIP") {
        return Err(ValueError::Malformed("protocol is not SIP"));
    }
    c.skip_ws();
    let slash = c.eat(b'/');
    c.skip_ws();
    let version = c.token();
    if !slash || (version != "2.0" && mode == Mode::Strict) {
        return Err(ValueError::Malformed("protocol version is not 2.0"));
    }
    c.skip_ws();
    let slash = c.eat(b'/');
    c.skip_ws();
    let transport = c.token();
    if !slash || transport.is_empty() {
        return Err(ValueError::Malformed("missing transport"));
    }
    if !c.skip_ws() {
        return Err(ValueError::Malformed("missing sent-by"));
    }
    let host = if c.peek() == Some(b'[') {
        let h = c.take_while(|b| b != b']');
        if !c.eat(b']') || h.len() < 2 {
            return Err(ValueError::Malformed("unterminated IPv6 reference"));
        }
        format!("{h}]")
    } else {
        let h = c.take_while(is_host_byte);
        if h.is_empty() {
            return Err(ValueError::Malformed("missing sent-by host"));
        }
        h.to_string()
    };
    c.skip_ws();
    let port = if c.eat(b':') {
        c.skip_ws();
        let p = c.take_while(|b| b.is_ascii_digit());
        Some(parse_port(p).ok_or(ValueError::Malformed("bad sent-by port"))?)
    } else {
        None
    };
    let mut params = Vec::new();
    match mode {
        Mode::Strict => {
            parse_params(&mut c, &mut params)?;
            expect_end(&c)?;
        }
        Mode::Salvage => {
            for seg in c.rest().split(';') {
                let text = format!(";{seg}");
                let mut p = Cursor::new(&text);
                let mut one = Vec::new();
                if parse_params(&mut p, &mut one).is_ok() && p.at_end() {
                    params.append(&mut one);
                }
            }
        }
    }
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

fn parse_contact(v: &str) -> Result<Contact, ValueError> {
    if v == "*" {
        Ok(Contact::Star)
    } else {
        parse_name_addr(v).map(Contact::Addr)
    }
}

/// `[display] <uri> *(;param)` or `addr-spec *(;param)` (RFC 3261 §20.10, §20.20).
fn parse_name_addr(v: &str) -> Result<NameAddr, ValueError> {
    let v = v.trim_matches([' ', '\t']);
    let mut c = Cursor::new(v);
    let display = if c.peek() == Some(b'"') {
        let raw = c.quoted()?;
        c.skip_ws();
        if c.peek() != Some(b'<') {
            return Err(ValueError::Malformed("quoted display name without <URI>"));
        }
        Some(unquote(raw))
    } else {
        let lt = v.find('<');
        match lt {
            Some(lt) if !matches!(v.find(';'), Some(semi) if semi < lt) => {
                let name = c.take_while(|b| b != b'<').trim_end_matches([' ', '\t']);
                if !name
                    .bytes()
                    .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
                {
                    return Err(ValueError::Malformed(
                        "display name is neither tokens nor a quoted string",
                    ));
                }
                (!name.is_empty()).then(|| name.to_string())
            }
            _ => None,
        }
    };
    let uri = if c.eat(b'<') {
        let text = c.take_while(|b| b != b'>');
        if !c.eat(b'>') {
            return Err(ValueError::Malformed("missing > after the URI"));
        }
        parse_uri(text)?
    } else {
        let text = c.take_while(|b| b != b';' && b != b' ' && b != b'\t');
        if text.contains(['?', ',']) {
            return Err(ValueError::Malformed(
                "a URI with ? or , must be enclosed in <>",
            ));
        }
        parse_uri(text)?
    };
    let mut params = Vec::new();
    parse_params(&mut c, &mut params)?;
    expect_end(&c)?;
    Ok(NameAddr {
        display,
        uri,
        params,
    })
}

/// `word ["@" word]`: any non-whitespace text.
fn parse_call_id(v: &str) -> Result<String, ValueError> {
    if v.is_empty() || v.contains([' ', '\t']) {
        return Err(ValueError::Malformed(
            "Call-ID is empty or holds whitespace",
        ));
    }
    Ok(v.to_string())
}

/// `1*DIGIT LWS Method`; the number must fit 32 bits.
fn parse_cseq(v: &str) -> Result<CSeq, ValueError> {
    let mut c = Cursor::new(v);
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seq = parse_decimal(digits.as_bytes()).ok_or(ValueError::Malformed(
        "sequence number is missing or exceeds 2**32-1",
    ))?;
    if !c.skip_ws() {
        return Err(ValueError::Malformed("missing method"));
    }
    let method = c.token();
    if method.is_empty() {
        return Err(ValueError::Malformed("missing method"));
    }
    expect_end(&c)?;
    Ok(CSeq {
        seq,
        method: Method::from_token(method),
    })
}

/// `type/subtype *(;param)`, kept as written.
fn parse_content_type(v: &str) -> Result<String, ValueError> {
    let mut c = Cursor::new(v);
    let ty = c.token();
    c.skip_ws();
    let slash = c.eat(b'/');
    c.skip_ws();
    let sub = c.token();
    if ty.is_empty() || !slash || sub.is_empty() {
        return Err(ValueError::Malformed("not a type/subtype media type"));
    }
    Ok(v.to_string())
}

/// A comma-separated list of tokens (option tags, methods); may be empty.
fn parse_tags(v: &str) -> Result<Vec<String>, ValueError> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|t| {
            let t = t.trim_matches([' ', '\t']);
            if t.is_empty() || !t.bytes().all(is_token_byte) {
                Err(ValueError::Malformed("list element is not a token"))
            } else {
                Ok(t.to_string())
            }
        })
        .collect()
}

/// `scheme LWS name=value *(, name=value)`; quoted values are unquoted.
fn parse_auth(v: &str) -> Result<AuthParams, ValueError> {
    let mut c = Cursor::new(v);
    let scheme = c.token();
    if scheme.is_empty() {
        return Err(ValueError::Malformed("missing auth scheme"));
    }
    let mut params = Vec::new();
    c.skip_ws();
    while !c.at_end() {
        let name = c.token();
        c.skip_ws();
        if name.is_empty() || !c.eat(b'=') {
            return Err(ValueError::Malformed("auth parameter is not name=value"));
        }
        c.skip_ws();
        let value = if c.peek() == Some(b'"') {
            unquote(c.quoted()?)
        } else {
            let t = c.take_while(|b| !matches!(b, b',' | b' ' | b'\t' | b'"'));
            if t.is_empty() {
                return Err(ValueError::Malformed("empty auth parameter value"));
            }
            t.to_string()
        };
        params.push((name.to_string(), value));
        c.skip_ws();
        if !c.at_end() && !c.eat(b',') {
            return Err(ValueError::Malformed(
                "auth parameters must be comma-separated",
            ));
        }
        c.skip_ws();
    }
    Ok(AuthParams {
        scheme: scheme.to_string(),
        params,
    })
}

/// `delta-seconds *(;param)` with `refresher=uac|uas` (RFC 4028 §4).
fn parse_session_expires(v: &str) -> Result<SessionExpires, ValueError> {
    let mut c = Cursor::new(v);
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seconds = parse_decimal(digits.as_bytes())
        .ok_or(ValueError::Malformed("interval is not a 32-bit number"))?;
    let mut params = Vec::new();
    parse_params(&mut c, &mut params)?;
    expect_end(&c)?;
    let mut refresher = None;
    if let Some(i) = params
        .iter()
        .position(|p| p.name.eq_ignore_ascii_case("refresher"))
    {
        let p = params.remove(i);
        refresher = match p.value.as_deref() {
            Some(r) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(r) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            _ => return Err(ValueError::Malformed("refresher is not uac or uas")),
        };
    }
    Ok(SessionExpires {
        seconds,
        refresher,
        params,
    })
}

/// `delta-seconds *(;param)`; the parameters carry nothing baton uses.
fn parse_min_se(v: &str) -> Result<u32, ValueError> {
    let mut c = Cursor::new(v);
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seconds = parse_decimal(digits.as_bytes())
        .ok_or(ValueError::Malformed("interval is not a 32-bit number"))?;
    parse_params(&mut c, &mut Vec::new())?;
    expect_end(&c)?;
    Ok(seconds)
}

impl FromStr for NameAddr {
    type Err = ValueError;

    /// Parses a From/To/Contact/Route style value, e.g. from configuration.
    fn from_str(s: &str) -> Result<NameAddr, ValueError> {
        parse_name_addr(s)
    }
}

impl FromStr for Via {
    type Err = ValueError;

    /// Parses one Via value (`SIP/2.0/UDP host:port;branch=...`).
    fn from_str(s: &str) -> Result<Via, ValueError> {
        parse_via(s, Mode::Strict)
    }
}

impl FromStr for Message {
    type Err = ParseError;

    /// Parses a message written as text (convenient in tests and tools).
    fn from_str(s: &str) -> Result<Message, ParseError> {
        parse_message(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SipUri;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn request(text: &str) -> Request {
        match parse_message(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        parse_message(text.as_bytes()).expect_err("should not parse")
    }

    fn with_header(extra: &str) -> String {
        INVITE.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{extra}\r\n"),
            1,
        )
    }

    fn sip_uri(u: &Uri) -> &SipUri {
        match u {
            Uri::Sip(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_a_plain_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(sip_uri(&r.uri).user.as_deref(), Some("bob"));
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "pc33.atlanta.example.com");
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(r.headers.max_forwards(), Some(70));
        assert_eq!(
            r.headers.from().unwrap().display.as_deref(),
            Some("Alice A.")
        );
        assert_eq!(r.headers.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.headers.to().unwrap().display.as_deref(), Some("Bob"));
        assert_eq!(
            r.headers.call_id(),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(r.headers.cseq().unwrap().seq, 314159);
        assert_eq!(r.headers.content_type(), Some("application/sdp"));
        assert_eq!(r.body, b"v=0\n");
    }

    #[test]
    fn compact_names_and_case_insensitivity() {
        let text = "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\
f: <sip:x@y>;tag=1\r\nT: sip:a@b\r\ni: cid\r\ncseq: 1 OPTIONS\r\nm: <sip:x@h>\r\n\
K: timer, 100rel\r\nx: 1800;refresher=uac\r\nc: text/plain\r\nL: 0\r\n\r\n";
        let r = request(text);
        assert_eq!(r.headers.call_id(), Some("cid"));
        assert_eq!(
            r.headers.supported().collect::<Vec<_>>(),
            ["timer", "100rel"]
        );
        let se = r.headers.session_expires().unwrap();
        assert_eq!((se.seconds, se.refresher), (1800, Some(Refresher::Uac)));
        assert_eq!(r.headers.contacts().count(), 1);
        assert_eq!(r.headers.content_length(), Some(0));
    }

    #[test]
    fn folded_lines_and_comma_lists() {
        let r = request(&with_header(
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK2,\r\n SIP/2.0/TCP [::1]:5070 ;received=\"x,y\"\r\n\
Route: <sip:p1;lr>, \"Proxy, two\" <sip:p2;lr>\r\nRecord-Route: <sip:r1;lr>\r\n\
Subject: folded\r\n\tsubject",
        ));
        let vias: Vec<_> = r.headers.vias().collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[2].host, "[::1]");
        assert_eq!(vias[2].port, Some(5070));
        assert_eq!(vias[2].params, vec![Param::new("received", "\"x,y\"")]);
        let routes: Vec<_> = r.headers.routes().collect();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].display.as_deref(), Some("Proxy, two"));
        assert_eq!(r.headers.record_routes().count(), 1);
        assert_eq!(
            r.headers.other("subject").collect::<Vec<_>>(),
            ["folded subject"]
        );
    }

    #[test]
    fn typed_list_and_auth_headers() {
        let r = request(&with_header(
            "Allow: INVITE, ACK, FOO\r\nRequire: 100rel\r\nProxy-Require: x\r\nUnsupported: y\r\n\
Min-SE: 90\r\nAuthorization: Digest username=\"alice\", realm=\"atlanta.example.com\", \
nonce=\"84a4cc6f\", uri=\"sip:bob@biloxi.example.com\", response=\"7587245234b3434cc3412213e5f113a5\", \
algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"",
        ));
        assert!(r.headers.iter().any(|h| *h
            == Header::Allow(vec![
                Method::Invite,
                Method::Ack,
                Method::Other("FOO".into())
            ])));
        assert_eq!(r.headers.require().collect::<Vec<_>>(), ["100rel"]);
        assert_eq!(r.headers.proxy_require().collect::<Vec<_>>(), ["x"]);
        assert_eq!(r.headers.min_se(), Some(90));
        let auth = r.headers.authorization().unwrap();
        assert_eq!(auth.scheme, "Digest");
        assert_eq!(auth.get("USERNAME"), Some("alice"));
        assert_eq!(auth.get("nc"), Some("00000001"));
        assert_eq!(auth.get("uri"), Some("sip:bob@biloxi.example.com"));
    }

    #[test]
    fn compact_names_of_untyped_headers_are_expanded() {
        let r = request(&with_header(
            "o: dialog\r\nr: <sip:carol@example.com>\r\nY: abc",
        ));
        assert_eq!(r.headers.other("Event").collect::<Vec<_>>(), ["dialog"]);
        assert_eq!(r.headers.other("Refer-To").count(), 1);
        assert_eq!(r.headers.other("Identity").collect::<Vec<_>>(), ["abc"]);
    }

    #[test]
    fn credentials_auth_params_cannot_hold_are_kept_verbatim() {
        let r = request(&with_header("Authorization: Bearer eyJhbGciOi.x.y"));
        assert_eq!(r.headers.authorization(), None);
        assert_eq!(
            r.headers.other("Authorization").collect::<Vec<_>>(),
            ["Bearer eyJhbGciOi.x.y"]
        );
    }

    #[test]
    fn unknown_headers_keep_name_and_trimmed_value() {
        let r = request(&with_header("X-Custom-ID :   a, b ; c  "));
        assert!(r.headers.iter().any(|h| *h
            == Header::Other {
                name: "X-Custom-ID".into(),
                value: "a, b ; c".into()
            }));
    }

    #[test]
    fn without_content_length_the_rest_is_the_body() {
        let r = request(&INVITE.replace("Content-Length: 4\r\n", ""));
        assert_eq!(r.body, b"v=0\n");
        let r = request(&INVITE.replace("Content-Length: 4", "Content-Length: 2"));
        assert_eq!(r.body, b"v=");
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse_message(b"\r\n\r\n"), Err(ParseError::Empty));
        assert_eq!(
            err("INVITE sip:a@b SIP/2.0\r\nVia: x"),
            ParseError::UnterminatedHeaders
        );
        assert!(matches!(
            err(&INVITE.replace("Content-Length: 4", "Content-Length: 40")),
            ParseError::BodyTooShort {
                expected: 40,
                available: 4
            }
        ));
        assert!(matches!(
            err(&INVITE.replace("Content-Length: 4", "Content-Length: -4")),
            ParseError::BadHeader {
                name: "Content-Length",
                ..
            }
        ));
        assert!(matches!(
            err(&with_header("l: 5")),
            ParseError::ConflictingContentLength { .. }
        ));
        assert!(matches!(
            err(&with_header("Call-ID: other")),
            ParseError::MultipleValues {
                name: "Call-ID",
                ..
            }
        ));
        assert_eq!(
            err(&INVITE.replace("Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", "")),
            ParseError::MissingHeader("Call-ID")
        );
        assert!(matches!(
            err(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE")),
            ParseError::CSeqMethodMismatch { .. }
        ));
        assert!(matches!(
            err(&with_header("NoColonHere")),
            ParseError::BadHeaderLine { .. }
        ));
        assert!(matches!(
            err(&with_header("X-A: bare\rcr")),
            ParseError::BadHeaderLine { .. }
        ));
    }

    #[test]
    fn non_utf8_header_is_rejected_with_its_offset() {
        let mut bytes = INVITE.as_bytes().to_vec();
        let at = INVITE.find("Bob").unwrap();
        bytes[at] = 0xff;
        assert_eq!(
            parse_message(&bytes),
            Err(ParseError::NotUtf8 { offset: at })
        );
    }

    #[test]
    fn header_errors_name_the_header_and_offset() {
        let text = with_header("CSeq: 4294967296 INVITE");
        let at = text.find("CSeq: 4294967296").unwrap();
        assert_eq!(
            err(&text),
            ParseError::BadHeader {
                name: "CSeq",
                offset: at,
                reason: ValueError::Malformed("sequence number is missing or exceeds 2**32-1"),
            }
        );
    }

    #[test]
    fn request_line_errors() {
        let e = err(&INVITE.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"));
        assert_eq!(e, ParseError::UnsupportedVersion("SIP/3.0".into()));
        assert_eq!(e.status(), Some(505));
        assert!(matches!(
            err(&INVITE.replace(
                "sip:bob@biloxi.example.com SIP",
                "<sip:bob@biloxi.example.com> SIP"
            )),
            ParseError::BadRequestUri {
                offset: 7,
                reason: UriError::IllegalChar
            }
        ));
        assert!(matches!(
            err(&INVITE.replace("biloxi.example.com SIP", "biloxi.example.com?X=y SIP")),
            ParseError::BadRequestUri {
                reason: UriError::HeadersNotAllowed,
                ..
            }
        ));
        assert!(matches!(
            err(&INVITE.replace(" SIP/2.0\r\nVia", "\r\nVia")),
            ParseError::BadRequestLine { .. }
        ));
        // Extra spaces between the parts are tolerated.
        assert_eq!(
            request(&INVITE.replace("INVITE sip", "INVITE  sip")).method,
            Method::Invite
        );
    }

    #[test]
    fn status_line() {
        let resp = INVITE
            .replace(
                "INVITE sip:bob@biloxi.example.com SIP/2.0",
                "SIP/2.0 180 Ringing",
            )
            .replace("Max-Forwards: 70\r\n", "");
        match parse_message(resp.as_bytes()) {
            Ok(Message::Response(r)) => assert_eq!((r.status, r.reason.as_str()), (180, "Ringing")),
            other => panic!("{other:?}"),
        }
        for bad in [
            "SIP/2.0 099 x",
            "SIP/2.0 700 x",
            "SIP/2.0 20 x",
            "SIP/2.0 2000 x",
            "SIP/2.0 abc x",
        ] {
            let text = resp.replace("SIP/2.0 180 Ringing", bad);
            assert!(
                matches!(err(&text), ParseError::BadStatusLine { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_name_rules() {
        let a: NameAddr = "\"a \\\"b\\\\\" <sip:x@y>".parse().unwrap();
        assert_eq!(a.display.as_deref(), Some("a \"b\\"));
        let a: NameAddr = "A. Bell<sip:x@y>".parse().unwrap();
        assert_eq!(a.display.as_deref(), Some("A. Bell"));
        assert!("Bell, Alexander <sip:x@y>".parse::<NameAddr>().is_err());
        assert!("\"unterminated <sip:x@y>".parse::<NameAddr>().is_err());
        assert!("< sip:x@y >".parse::<NameAddr>().is_err());
        assert!("sip:x@y?Route=z".parse::<NameAddr>().is_err());
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let a: NameAddr = "sip:+1972@gw1.example.net;unknownparam".parse().unwrap();
        assert!(sip_uri(&a.uri).params.is_empty());
        assert_eq!(a.params, vec![Param::flag("unknownparam")]);
        let a: NameAddr = "<sip:+1972@gw1.example.net;unknownparam>".parse().unwrap();
        assert_eq!(sip_uri(&a.uri).params, vec![Param::flag("unknownparam")]);
        assert!(a.params.is_empty());
    }

    #[test]
    fn bad_via_and_params() {
        for v in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/1.0/UDP host",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host junk",
        ] {
            assert!(
                matches!(
                    err(&with_header(&format!("Via: {v}"))),
                    ParseError::BadHeader { name: "Via", .. }
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn via_from_str() {
        let v: Via = "SIP/2.0/tls [2001:db8::1]:5061;branch=z9hG4bKx;received=10.0.0.1"
            .parse()
            .unwrap();
        assert_eq!(
            (v.transport.as_str(), v.host.as_str(), v.port),
            ("TLS", "[2001:db8::1]", Some(5061))
        );
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert!("SIP/7.0/UDP host".parse::<Via>().is_err());
    }

    #[test]
    fn session_expires_refresher_must_be_known() {
        assert!(matches!(
            err(&with_header("Session-Expires: 90;refresher=me")),
            ParseError::BadHeader {
                name: "Session-Expires",
                ..
            }
        ));
        let r = request(&with_header("Session-Expires: 90 ; refresher = UAS;x=1"));
        let se = r.headers.session_expires().unwrap();
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(se.params, vec![Param::new("x", "1")]);
    }

    #[test]
    fn status_codes_for_errors() {
        assert_eq!(ParseError::Empty.status(), None);
        assert_eq!(ParseError::MissingHeader("To").status(), Some(400));
        assert_eq!(
            ParseError::TooLarge { len: 1, limit: 0 }.status(),
            Some(513)
        );
    }

    #[test]
    fn framing_on_a_stream() {
        assert_eq!(frame(b""), Framing::Incomplete);
        assert_eq!(frame(b"\r\n\r\nINVITE"), Framing::KeepAlive { len: 4 });
        assert_eq!(frame(&INVITE.as_bytes()[..40]), Framing::Incomplete);
        assert_eq!(
            frame(&INVITE.as_bytes()[..INVITE.len() - 1]),
            Framing::Incomplete
        );
        let mut two = INVITE.as_bytes().to_vec();
        two.extend_from_slice(INVITE.as_bytes());
        assert_eq!(frame(&two), Framing::Complete { len: INVITE.len() });
        let no_cl = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(
            frame(no_cl.as_bytes()),
            Framing::Invalid(ParseError::MissingHeader("Content-Length"))
        );
        let big = INVITE.replace("Content-Length: 4", "l: 70000");
        assert!(matches!(
            frame(big.as_bytes()),
            Framing::Invalid(ParseError::TooLarge { .. })
        ));
        let conflicting = with_header("Content-Length: 5");
        assert!(matches!(
            frame(conflicting.as_bytes()),
            Framing::Invalid(ParseError::ConflictingContentLength { .. })
        ));
        let folded = INVITE.replace("Content-Length: 4", "Content-Length:\r\n  4");
        assert_eq!(
            frame(folded.as_bytes()),
            Framing::Complete { len: folded.len() }
        );
        let long = vec![b'a'; MAX_HEADER_SECTION + 1];
        assert!(matches!(
            frame(&long),
            Framing::Invalid(ParseError::HeadersTooLarge { .. })
        ));
        // A datagram gets the same bound on its headers, answered 513.
        let padding = format!("X-Pad: {}\r\n", "p".repeat(MAX_HEADER_SECTION));
        let padded = INVITE.replacen("\r\n", &format!("\r\n{padding}"), 1);
        let err = parse_message(padded.as_bytes()).unwrap_err();
        assert!(matches!(err, ParseError::HeadersTooLarge { .. }), "{err:?}");
        assert_eq!(err.status(), Some(513));
    }

    #[test]
    fn salvage_keeps_what_parses() {
        let broken = with_header("CSeq: 99999999999 INVITE");
        assert!(parse_message(broken.as_bytes()).is_err());
        let h = salvage(broken.as_bytes()).unwrap();
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(h.call_id(), Some("a84b4c76e66710@pc33.atlanta.example.com"));
        assert_eq!(h.cseq().unwrap().seq, 314159);
        assert!(h.from().is_some() && h.to().is_some());
        assert_eq!(salvage(b"SIP/2.0 200 OK\r\n\r\n"), None);
        assert_eq!(salvage(b"\r\n"), None);
    }
}
