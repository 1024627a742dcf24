//! The SIP serializer: `Display` for headers and messages, and `to_bytes` for the wire.
//!
//! Headers are written in order with their long names (unknown headers keep the name as
//! written). Content-Length is always written and always computed from the body.

use std::fmt::{self, Write as _};

use crate::message::{
    AuthParams, CSeq, Contact, Header, Headers, Message, Method, NameAddr, Param, Refresher,
    Request, Response, SessionExpires, Via,
};
use crate::parse::is_token_byte;

impl Header {
    /// The header's name as written on the wire (long form for typed headers).
    pub fn name(&self) -> &str {
        match self {
            Header::Via(_) => "Via",
            Header::From(_) => "From",
            Header::To(_) => "To",
            Header::CallId(_) => "Call-ID",
            Header::CSeq(_) => "CSeq",
            Header::Contact(_) => "Contact",
            Header::MaxForwards(_) => "Max-Forwards",
            Header::ContentLength(_) => "Content-Length",
            Header::ContentType(_) => "Content-Type",
            Header::Route(_) => "Route",
            Header::RecordRoute(_) => "Record-Route",
            Header::Require(_) => "Require",
            Header::ProxyRequire(_) => "Proxy-Require",
            Header::Supported(_) => "Supported",
            Header::Unsupported(_) => "Unsupported",
            Header::Allow(_) => "Allow",
            Header::Authorization(_) => "Authorization",
            Header::ProxyAuthorization(_) => "Proxy-Authorization",
            Header::WwwAuthenticate(_) => "WWW-Authenticate",
            Header::ProxyAuthenticate(_) => "Proxy-Authenticate",
            Header::SessionExpires(_) => "Session-Expires",
            Header::MinSe(_) => "Min-SE",
            Header::Other { name, .. } => name,
        }
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        f.write_str(";")?;
        f.write_str(&p.name)?;
        if let Some(v) = &p.value {
            f.write_str("=")?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Writes `s` as a quoted string; CR and LF cannot be carried and become spaces.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '\r' | '\n' => f.write_char(' ')?,
            '"' | '\\' | '\0'..='\x1f' | '\x7f' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            _ => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Tokens separated by single spaces can be written without quotes.
fn is_token_list(s: &str) -> bool {
    !s.is_empty()
        && s.split(' ')
            .all(|t| !t.is_empty() && t.bytes().all(is_token_byte))
}

/// Writes `s` with CR and LF replaced, so that a value can never end the header early.
fn write_line_safe(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if !s.contains(['\r', '\n']) {
        return f.write_str(s);
    }
    for c in s.chars() {
        f.write_char(if c == '\r' || c == '\n' { ' ' } else { c })?;
    }
    Ok(())
}

impl fmt::Display for NameAddr {
    /// Always uses the `<uri>` form, so URI parameters and header parameters stay apart.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            if is_token_list(d) {
                f.write_str(d)?;
            } else {
                write_quoted(f, d)?;
            }
            f.write_str(" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

impl fmt::Display for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Contact::Star => f.write_str("*"),
            Contact::Addr(a) => a.fmt(f),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.seconds)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac")?,
            Some(Refresher::Uas) => f.write_str(";refresher=uas")?,
            None => {}
        }
        write_params(f, &self.params)
    }
}

/// Digest parameters whose values are always quoted (RFC 3261 §25.1); `qop` is quoted in a
/// challenge and bare in credentials.
fn auth_value_quoted(name: &str, value: &str, challenge: bool) -> bool {
    const QUOTED: [&str; 8] = [
        "realm", "nonce", "opaque", "domain", "username", "uri", "response", "cnonce",
    ];
    QUOTED.iter().any(|q| q.eq_ignore_ascii_case(name))
        || (challenge && name.eq_ignore_ascii_case("qop"))
        || value.is_empty()
        || !value.bytes().all(is_token_byte)
}

fn write_auth(f: &mut fmt::Formatter<'_>, a: &AuthParams, challenge: bool) -> fmt::Result {
    f.write_str(&a.scheme)?;
    for (i, (name, value)) in a.params.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        f.write_str(name)?;
        f.write_str("=")?;
        if auth_value_quoted(name, value, challenge) {
            write_quoted(f, value)?;
        } else {
            f.write_str(value)?;
        }
    }
    Ok(())
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        item.fmt(f)?;
    }
    Ok(())
}

impl fmt::Display for Header {
    /// `Name: value`, without the line end.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        f.write_str(": ")?;
        match self {
            Header::Via(v) => v.fmt(f),
            Header::From(a) | Header::To(a) | Header::Route(a) | Header::RecordRoute(a) => a.fmt(f),
            Header::CallId(c) => write_line_safe(f, c),
            Header::CSeq(c) => c.fmt(f),
            Header::Contact(c) => c.fmt(f),
            Header::MaxForwards(n) | Header::MinSe(n) => write!(f, "{n}"),
            Header::ContentLength(n) => write!(f, "{n}"),
            Header::ContentType(t) => write_line_safe(f, t),
            Header::Require(t)
            | Header::ProxyRequire(t)
            | Header::Supported(t)
            | Header::Unsupported(t) => write_list(f, t),
            Header::Allow(m) => write_list::<Method>(f, m),
            Header::Authorization(a) | Header::ProxyAuthorization(a) => write_auth(f, a, false),
            Header::WwwAuthenticate(a) | Header::ProxyAuthenticate(a) => write_auth(f, a, true),
            Header::SessionExpires(s) => s.fmt(f),
            Header::Other { value, .. } => write_line_safe(f, value),
        }
    }
}

/// Writes the headers, each line CRLF-terminated, with one Content-Length computed from the
/// body in place of the first Content-Length in the list (or last if there is none).
fn write_headers(out: &mut impl fmt::Write, headers: &Headers, body_len: usize) -> fmt::Result {
    let mut length_written = false;
    for h in headers.iter() {
        if let Header::ContentLength(_) = h {
            if !length_written {
                write!(out, "Content-Length: {body_len}\r\n")?;
                length_written = true;
            }
            continue;
        }
        write!(out, "{h}\r\n")?;
    }
    if !length_written {
        write!(out, "Content-Length: {body_len}\r\n")?;
    }
    out.write_str("\r\n")
}

impl Request {
    fn write_head(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri)?;
        write_headers(out, &self.headers, self.body.len())
    }

    /// The request as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        // Writing into a String cannot fail.
        let _ = self.write_head(&mut head);
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

impl Response {
    fn write_head(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str("SIP/2.0 ")?;
        write!(out, "{} ", self.status)?;
        for c in self.reason.chars() {
            out.write_char(if c == '\r' || c == '\n' { ' ' } else { c })?;
        }
        out.write_str("\r\n")?;
        write_headers(out, &self.headers, self.body.len())
    }

    /// The response as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = String::with_capacity(512);
        // Writing into a String cannot fail.
        let _ = self.write_head(&mut head);
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

impl Message {
    /// The message as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl fmt::Display for Request {
    /// The wire form; a body that is not UTF-8 is shown lossily.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_head(f)?;
        f.write_str(&String::from_utf8_lossy(&self.body))
    }
}

impl fmt::Display for Response {
    /// The wire form; a body that is not UTF-8 is shown lossily.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_head(f)?;
        f.write_str(&String::from_utf8_lossy(&self.body))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Request(r) => r.fmt(f),
            Message::Response(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{SipUri, Uri};
    use crate::parse::parse_message;

    fn uri(user: &str, host: &str) -> Uri {
        Uri::Sip(SipUri {
            secure: false,
            user: Some(user.into()),
            password: None,
            host: host.into(),
            port: None,
            params: vec![],
            headers: vec![],
        })
    }

    fn addr(display: Option<&str>, tag: Option<&str>) -> NameAddr {
        NameAddr {
            display: display.map(Into::into),
            uri: uri("alice", "atlanta.example.com"),
            params: tag.map(|t| vec![Param::new("tag", t)]).unwrap_or_default(),
        }
    }

    fn sample() -> Request {
        Request {
            method: Method::Invite,
            uri: uri("bob", "biloxi.example.com"),
            headers: Headers(vec![
                Header::Via(Via {
                    transport: "UDP".into(),
                    host: "pc33.atlanta.example.com".into(),
                    port: Some(5060),
                    params: vec![Param::new("branch", "z9hG4bK74bf9"), Param::flag("rport")],
                }),
                Header::MaxForwards(70),
                Header::From(addr(Some("Alice"), Some("9fxced76sl"))),
                Header::To(addr(None, None)),
                Header::CallId("3848276298220188511@atlanta.example.com".into()),
                Header::CSeq(CSeq {
                    seq: 1,
                    method: Method::Invite,
                }),
                Header::ContentLength(999),
                Header::ContentType("application/sdp".into()),
            ]),
            body: b"v=0\r\n".to_vec(),
        }
    }

    #[test]
    fn request_wire_form() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        assert_eq!(
            text,
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: <sip:alice@atlanta.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 5\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\n"
        );
        assert_eq!(sample().to_string(), text);
    }

    #[test]
    fn content_length_is_added_when_absent() {
        let mut r = sample();
        r.headers
            .0
            .retain(|h| !matches!(h, Header::ContentLength(_)));
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn round_trip_through_the_parser() {
        let mut r = sample();
        r.headers.0[6] = Header::ContentLength(5);
        let parsed = parse_message(&r.to_bytes()).unwrap();
        assert_eq!(parsed, Message::Request(r));
    }

    #[test]
    fn response_wire_form() {
        let resp = Response {
            status: 100,
            reason: String::new(),
            headers: Headers(vec![Header::Other {
                name: "X-Evil".into(),
                value: "a\r\nInjected: yes".into(),
            }]),
            body: vec![],
        };
        assert_eq!(
            String::from_utf8(Message::Response(resp).to_bytes()).unwrap(),
            "SIP/2.0 100 \r\nX-Evil: a  Injected: yes\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn display_names_are_quoted_when_needed() {
        assert_eq!(
            addr(Some("A. Bell"), None).to_string(),
            "A. Bell <sip:alice@atlanta.example.com>"
        );
        assert_eq!(
            addr(Some("Bell, Alexander"), None).to_string(),
            "\"Bell, Alexander\" <sip:alice@atlanta.example.com>"
        );
        assert_eq!(
            addr(Some("say \"hi\"\\"), None).to_string(),
            "\"say \\\"hi\\\"\\\\\" <sip:alice@atlanta.example.com>"
        );
        assert_eq!(
            addr(Some(""), None).to_string(),
            "\"\" <sip:alice@atlanta.example.com>"
        );
        assert_eq!(Contact::Star.to_string(), "*");
    }

    #[test]
    fn typed_header_values() {
        let h = Header::WwwAuthenticate(AuthParams {
            scheme: "Digest".into(),
            params: vec![
                ("realm".into(), "atlanta.example.com".into()),
                ("qop".into(), "auth".into()),
                ("algorithm".into(), "MD5".into()),
            ],
        });
        assert_eq!(
            h.to_string(),
            "WWW-Authenticate: Digest realm=\"atlanta.example.com\", qop=\"auth\", algorithm=MD5"
        );
        let h = Header::Authorization(AuthParams {
            scheme: "Digest".into(),
            params: vec![
                ("qop".into(), "auth".into()),
                ("nc".into(), "00000001".into()),
            ],
        });
        assert_eq!(h.to_string(), "Authorization: Digest qop=auth, nc=00000001");
        let h = Header::SessionExpires(SessionExpires {
            seconds: 1800,
            refresher: Some(Refresher::Uas),
            params: vec![],
        });
        assert_eq!(h.to_string(), "Session-Expires: 1800;refresher=uas");
        let h = Header::Allow(vec![Method::Invite, Method::Other("FOO".into())]);
        assert_eq!(h.to_string(), "Allow: INVITE, FOO");
        assert_eq!(Header::Supported(vec![]).to_string(), "Supported: ");
        assert_eq!(Header::MinSe(90).to_string(), "Min-SE: 90");
    }
}
