//! URIs on the wire (RFC 3261 §19.1, §25; RFC 3966): parsing `sip:`, `sips:`, `tel:` and any
//! other absolute URI, and writing them back with the escaping each component needs.
//!
//! User, password, URI parameters and URI headers of SIP URIs are stored unescaped (`%HH`
//! decoded exactly once), so two spellings of the same URI compare equal; `Display` escapes
//! only what the grammar requires.

use std::fmt;
use std::str::FromStr;

use crate::message::{Param, SipUri, TelUri, Uri};

/// Why a URI could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("URI has no scheme")]
    MissingScheme,
    /// The scheme has characters outside `ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")`.
    #[error("malformed URI scheme")]
    BadScheme,
    /// Whitespace, a control character, a non-ASCII byte, `<`, `>` or `"` inside the URI.
    #[error("URI contains whitespace or a character that must be escaped")]
    IllegalChar,
    /// A `%` not followed by two hex digits.
    #[error("malformed %HH escape")]
    BadEscape,
    /// Escaped text that does not decode to UTF-8.
    #[error("escaped text is not UTF-8")]
    NotUtf8,
    /// Empty user part, or a character not allowed in the user or password.
    #[error("malformed user or password")]
    BadUser,
    /// Missing or malformed host.
    #[error("missing or malformed host")]
    BadHost,
    /// Port that is not a number in 0..=65535.
    #[error("malformed port")]
    BadPort,
    /// Empty or malformed `;name=value` parameter.
    #[error("empty or malformed URI parameter")]
    BadParam,
    /// Malformed `?name=value` header.
    #[error("malformed URI header")]
    BadHeader,
    /// `?headers` where the context forbids them (a SIP Request-URI).
    #[error("URI headers are not allowed here")]
    HeadersNotAllowed,
    /// A `tel:` URI without a number.
    #[error("tel URI has no number")]
    EmptyNumber,
}

/// Parses an absolute URI: `sip:`/`sips:` and `tel:` into their typed forms, any other scheme
/// into [`Uri::Other`] (the caller decides whether it supports it, e.g. 416 for a Request-URI).
pub fn parse_uri(s: &str) -> Result<Uri, UriError> {
    if s.bytes()
        .any(|b| !(0x21..0x7f).contains(&b) || matches!(b, b'<' | b'>' | b'"'))
    {
        return Err(UriError::IllegalChar);
    }
    let colon = s.find(':').ok_or(UriError::MissingScheme)?;
    let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
    let mut bytes = scheme.bytes();
    match bytes.next() {
        None => return Err(UriError::MissingScheme),
        Some(b) if !b.is_ascii_alphabetic() => return Err(UriError::BadScheme),
        Some(_) => {}
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return Err(UriError::BadScheme);
    }
    if scheme.eq_ignore_ascii_case("sip") {
        parse_sip(rest, false).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("sips") {
        parse_sip(rest, true).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        parse_tel(rest).map(Uri::Tel)
    } else {
        Ok(Uri::Other {
            scheme: scheme.to_string(),
            rest: rest.to_string(),
        })
    }
}

/// Parses what follows `sip:`/`sips:`. `@` cannot appear unescaped after the user part, so the
/// first one ends the userinfo even when the user holds `;` or `?` (RFC 4475 §3.1.1.9).
fn parse_sip(rest: &str, secure: bool) -> Result<SipUri, UriError> {
    let (userinfo, hostpart) = match rest.find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.find(':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if u.is_empty() {
                return Err(UriError::BadUser);
            }
            let user = unescape(u, is_user_byte).map_err(or_bad_user)?;
            let password = match p {
                Some(p) => Some(unescape(p, is_password_byte).map_err(or_bad_user)?),
                None => None,
            };
            (Some(user), password)
        }
    };
    let hp_end = hostpart.find([';', '?']).unwrap_or(hostpart.len());
    let (host, port) = parse_hostport(&hostpart[..hp_end])?;
    let mut tail = &hostpart[hp_end..];
    let mut params = Vec::new();
    if let Some(p) = tail.strip_prefix(';') {
        let end = p.find('?').unwrap_or(p.len());
        for seg in p[..end].split(';') {
            let (name, value) = match seg.find('=') {
                Some(eq) => (&seg[..eq], Some(&seg[eq + 1..])),
                None => (seg, None),
            };
            if name.is_empty() {
                return Err(UriError::BadParam);
            }
            let name = unescape(name, is_param_byte).map_err(or_bad_param)?;
            let value = match value {
                Some(v) => Some(unescape(v, is_param_byte).map_err(or_bad_param)?),
                None => None,
            };
            params.push(Param { name, value });
        }
        tail = &p[end..];
    }
    let mut headers = Vec::new();
    if let Some(h) = tail.strip_prefix('?') {
        for seg in h.split('&') {
            let eq = seg.find('=').ok_or(UriError::BadHeader)?;
            let (name, value) = (&seg[..eq], &seg[eq + 1..]);
            if name.is_empty() {
                return Err(UriError::BadHeader);
            }
            let name = unescape(name, is_header_byte).map_err(or_bad_header)?;
            let value = unescape(value, is_header_byte).map_err(or_bad_header)?;
            headers.push((name, value));
        }
    }
    Ok(SipUri {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

/// Splits `host[:port]`; the host may be an IPv6 reference in brackets.
fn parse_hostport(s: &str) -> Result<(String, Option<u16>), UriError> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or(UriError::BadHost)?;
        let inner = &s[1..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UriError::BadHost);
        }
        let after = &s[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UriError::BadHost),
        };
        (&s[..=close], port)
    } else {
        match s.find(':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        }
    };
    if host.is_empty() || !host.starts_with('[') && !host.bytes().all(is_host_byte) {
        return Err(UriError::BadHost);
    }
    let port = match port {
        Some(p) => Some(parse_port(p).ok_or(UriError::BadPort)?),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// A port: 1 to 5 digits, at most 65535.
pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Host name or IPv4 characters (`_` tolerated: it occurs in real deployments' host names).
pub(crate) fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

fn parse_tel(rest: &str) -> Result<TelUri, UriError> {
    let end = rest.find(';').unwrap_or(rest.len());
    let number = &rest[..end];
    if number.is_empty() {
        return Err(UriError::EmptyNumber);
    }
    let mut params = Vec::new();
    if end < rest.len() {
        for seg in rest[end + 1..].split(';') {
            let (name, value) = match seg.find('=') {
                Some(eq) => (&seg[..eq], Some(seg[eq + 1..].to_string())),
                None => (seg, None),
            };
            if name.is_empty() {
                return Err(UriError::BadParam);
            }
            params.push(Param {
                name: name.to_string(),
                value,
            });
        }
    }
    Ok(TelUri {
        number: number.to_string(),
        params,
    })
}

fn or_bad_user(e: UriError) -> UriError {
    if e == UriError::IllegalChar {
        UriError::BadUser
    } else {
        e
    }
}

fn or_bad_param(e: UriError) -> UriError {
    if e == UriError::IllegalChar {
        UriError::BadParam
    } else {
        e
    }
}

fn or_bad_header(e: UriError) -> UriError {
    if e == UriError::IllegalChar {
        UriError::BadHeader
    } else {
        e
    }
}

/// Decodes `%HH` escapes once; every unescaped byte must satisfy `allowed`.
fn unescape(s: &str, allowed: fn(u8) -> bool) -> Result<String, UriError> {
    if !s.contains('%') {
        return if s.bytes().all(allowed) {
            Ok(s.to_string())
        } else {
            Err(UriError::IllegalChar)
        };
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex_val(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex_val(l));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(UriError::BadEscape),
            }
            i += 3;
        } else if allowed(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(UriError::IllegalChar);
        }
    }
    String::from_utf8(out).map_err(|_| UriError::NotUtf8)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3261 `unreserved`: alphanumerics and marks.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/')
}

fn is_password_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_byte(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

/// Writes `s`, escaping as `%HH` every byte that `allowed` rejects.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str, allowed: fn(u8) -> bool) -> fmt::Result {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if !allowed(b) {
            // Allowed bytes are ASCII, so a non-empty run always sits on char boundaries.
            f.write_str(s.get(run..i).unwrap_or(""))?;
            write!(f, "%{b:02X}")?;
            run = i + 1;
        }
    }
    f.write_str(s.get(run..).unwrap_or(""))
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            write_escaped(f, user, is_user_byte)?;
            if let Some(pw) = &self.password {
                f.write_str(":")?;
                write_escaped(f, pw, is_password_byte)?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            f.write_str(";")?;
            write_escaped(f, &p.name, is_param_byte)?;
            if let Some(v) = &p.value {
                f.write_str("=")?;
                write_escaped(f, v, is_param_byte)?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write_escaped(f, name, is_header_byte)?;
            f.write_str("=")?;
            write_escaped(f, value, is_header_byte)?;
        }
        Ok(())
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Uri, UriError> {
        parse_uri(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_the_sip_user_or_the_tel_number() {
        let user = |s: &str| s.parse::<Uri>().unwrap().user().map(str::to_owned);
        assert_eq!(
            user("sip:+441234@example.com;user=phone"),
            Some("+441234".into())
        );
        assert_eq!(user("tel:+44-20-1234"), Some("+44-20-1234".into()));
        assert_eq!(user("sip:example.com"), None);
        assert_eq!(user("urn:service:sos"), None);
    }

    fn sip(s: &str) -> SipUri {
        match parse_uri(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn full_sip_uri() {
        let u =
            sip("sips:alice:secret@example.com:5061;transport=tcp;lr?subject=hi&priority=urgent");
        assert!(u.secure);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(
            u.params,
            vec![Param::new("transport", "tcp"), Param::flag("lr")]
        );
        assert_eq!(
            u.headers,
            vec![
                ("subject".to_string(), "hi".to_string()),
                ("priority".to_string(), "urgent".to_string())
            ]
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert!(!sip("SIP:host").secure);
        assert!(sip("SiPs:host").secure);
    }

    #[test]
    fn ipv6_reference() {
        let u = sip("sip:[::1]:5060");
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.port, Some(5060));
        let u = sip("sip:bob@[2001:db8::10];transport=udp");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, None);
        assert_eq!(u.to_string(), "sip:bob@[2001:db8::10];transport=udp");
        assert_eq!(parse_uri("sip:[::1"), Err(UriError::BadHost));
        assert_eq!(parse_uri("sip:[::1]x"), Err(UriError::BadHost));
    }

    #[test]
    fn escapes_decode_once() {
        let u = sip("sip:cal%6Cer@host;%6C%72;n%61me=v%61lue%25%34%31");
        assert_eq!(u.user.as_deref(), Some("caller"));
        assert_eq!(
            u.params,
            vec![Param::flag("lr"), Param::new("name", "value%41")]
        );
        assert_eq!(u.to_string(), "sip:caller@host;lr;name=value%2541");
    }

    #[test]
    fn nul_escape_is_kept() {
        let u = sip("sip:null-%00-null@example.com");
        assert_eq!(u.user.as_deref(), Some("null-\0-null"));
        assert_eq!(u.to_string(), "sip:null-%00-null@example.com");
    }

    #[test]
    fn user_may_hold_semicolon_and_question_mark() {
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u@example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
        assert_eq!(u.to_string(), "sip:user;par=u%40example.net@example.com");
    }

    #[test]
    fn display_escapes_what_needs_it() {
        let u = SipUri {
            secure: false,
            user: Some("I have spaces".into()),
            password: None,
            host: "example.net".into(),
            port: None,
            params: vec![],
            headers: vec![("Route".into(), "<sip:a.example.com>".into())],
        };
        let s = u.to_string();
        assert_eq!(
            s,
            "sip:I%20have%20spaces@example.net?Route=%3Csip:a.example.com%3E"
        );
        assert_eq!(parse_uri(&s), Ok(Uri::Sip(u)));
    }

    #[test]
    fn tel_and_other_schemes() {
        assert_eq!(
            parse_uri("tel:+1-201-555-0123;ext=12"),
            Ok(Uri::Tel(TelUri {
                number: "+1-201-555-0123".into(),
                params: vec![Param::new("ext", "12")],
            }))
        );
        let other = parse_uri("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(
            other,
            Uri::Other {
                scheme: "soap.beep".into(),
                rest: "//192.0.2.103:3002".into()
            }
        );
        assert_eq!(other.to_string(), "soap.beep://192.0.2.103:3002");
        assert_eq!("tel:;x".parse::<Uri>(), Err(UriError::EmptyNumber));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse_uri("nocolon"), Err(UriError::MissingScheme));
        assert_eq!(parse_uri(":x"), Err(UriError::MissingScheme));
        assert_eq!(parse_uri("1sip:x"), Err(UriError::BadScheme));
        assert_eq!(parse_uri("sip:user@host; lr"), Err(UriError::IllegalChar));
        assert_eq!(parse_uri("<sip:user@host>"), Err(UriError::IllegalChar));
        assert_eq!(parse_uri("sip:@host"), Err(UriError::BadUser));
        assert_eq!(parse_uri("sip:u%4@host"), Err(UriError::BadEscape));
        assert_eq!(parse_uri("sip:u%FF@host"), Err(UriError::NotUtf8));
        assert_eq!(parse_uri("sip:"), Err(UriError::BadHost));
        assert_eq!(parse_uri("sip:host:99999"), Err(UriError::BadPort));
        assert_eq!(parse_uri("sip:host:"), Err(UriError::BadPort));
        assert_eq!(parse_uri("sip:host;;lr"), Err(UriError::BadParam));
        assert_eq!(parse_uri("sip:host?noequals"), Err(UriError::BadHeader));
        assert_eq!(parse_uri("sip:ho/st"), Err(UriError::BadHost));
    }
}
