//! SIP messages as typed values: what the parser produces and the serializer writes.
//!
//! Headers keep their order on the wire. Multi-valued headers (`Via: a, b`) become one
//! [`Header`] per value so that code never has to split commas itself. Headers baton does not
//! type are kept as [`Header::Other`] and written back byte for byte.

use std::fmt;

/// A SIP request method. Unknown methods are kept verbatim (RFC 3261 §7.1 allows extensions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Update,
    Info,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token, case preserved (methods are case-sensitive).
    Other(String),
}

impl Method {
    /// The method's token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Maps a token to a method; methods are case-sensitive, so `invite` is `Other`.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A generic `;name[=value]` parameter (URI, Via, name-addr or header parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

impl Param {
    /// A parameter with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Param {
        Param {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A flag parameter without a value (`;lr`).
    pub fn flag(name: impl Into<String>) -> Param {
        Param {
            name: name.into(),
            value: None,
        }
    }
}

/// Finds a parameter by name, case-insensitively (parameter names are tokens, RFC 3261 §7.3.1).
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// A request target or address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other absolute URI, kept as written (`scheme` without the colon).
    Other { scheme: String, rest: String },
}

impl Uri {
    /// Who the URI names: a `sip:` URI's user part or a `tel:` URI's number; `None` for a
    /// `sip:` URI without a user and for other schemes.
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(u) => u.user.as_deref(),
            Uri::Tel(t) => Some(&t.number),
            Uri::Other { .. } => None,
        }
    }
}

/// A `sip:`/`sips:` URI (RFC 3261 §19.1). User and password are stored unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host name, IPv4 address, or IPv6 reference including the brackets.
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
    /// `?name=value` headers, unescaped.
    pub headers: Vec<(String, String)>,
}

/// A `tel:` URI (RFC 3966): the number as written (global `+…` or local) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri {
    pub number: String,
    pub params: Vec<Param>,
}

/// `[display] <uri>;params` or `uri;params`: the value of From, To, Contact, Route, Record-Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    pub uri: Uri,
    /// Header parameters (after the `>` or, without brackets, after the URI).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").and_then(|p| p.value.as_deref())
    }
}

/// A Contact value: an address, or `*` (only valid in REGISTER to remove all bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Star,
    Addr(NameAddr),
}

/// One Via entry (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport token as written, upper-cased (`UDP`, `TCP`, `TLS`, or an unknown one).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<Param>,
}

impl Via {
    /// The transaction branch (RFC 3261 §8.1.1.7).
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").and_then(|p| p.value.as_deref())
    }
}

/// CSeq: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

/// Authorization / Proxy-Authorization or WWW-Authenticate / Proxy-Authenticate:
/// a scheme and its comma-separated `name=value` parameters (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    /// A parameter by name, case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Who refreshes a session (RFC 4028 `refresher` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// Session-Expires (RFC 4028 §4): the interval in seconds and who refreshes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionExpires {
    pub seconds: u32,
    pub refresher: Option<Refresher>,
    /// Other parameters, kept.
    pub params: Vec<Param>,
}

/// One header line, typed where baton reads it, raw otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    Via(Via),
    From(NameAddr),
    To(NameAddr),
    CallId(String),
    CSeq(CSeq),
    Contact(Contact),
    MaxForwards(u32),
    ContentLength(usize),
    /// Media type as written, e.g. `application/sdp` (parameters included).
    ContentType(String),
    Route(NameAddr),
    RecordRoute(NameAddr),
    Require(Vec<String>),
    ProxyRequire(Vec<String>),
    Supported(Vec<String>),
    Unsupported(Vec<String>),
    Allow(Vec<Method>),
    Authorization(AuthParams),
    ProxyAuthorization(AuthParams),
    WwwAuthenticate(AuthParams),
    ProxyAuthenticate(AuthParams),
    SessionExpires(SessionExpires),
    /// Min-SE (RFC 4028), seconds.
    MinSe(u32),
    /// Any other header: name as written and the value with surrounding whitespace trimmed.
    Other {
        name: String,
        value: String,
    },
}

/// The ordered header list of a message, with typed accessors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

impl Headers {
    /// Appends a header at the end.
    pub fn push(&mut self, h: Header) {
        self.0.push(h);
    }

    /// Iterates over all headers in wire order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// All Via entries, topmost first.
    pub fn vias(&self) -> impl Iterator<Item = &Via> {
        self.0.iter().filter_map(|h| match h {
            Header::Via(v) => Some(v),
            _ => None,
        })
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Option<&Via> {
        self.vias().next()
    }

    /// The From header.
    pub fn from(&self) -> Option<&NameAddr> {
        self.0.iter().find_map(|h| match h {
            Header::From(a) => Some(a),
            _ => None,
        })
    }

    /// The To header.
    pub fn to(&self) -> Option<&NameAddr> {
        self.0.iter().find_map(|h| match h {
            Header::To(a) => Some(a),
            _ => None,
        })
    }

    /// Mutable To header, for adding a tag to a response.
    pub fn to_mut(&mut self) -> Option<&mut NameAddr> {
        self.0.iter_mut().find_map(|h| match h {
            Header::To(a) => Some(a),
            _ => None,
        })
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.0.iter().find_map(|h| match h {
            Header::CallId(c) => Some(c.as_str()),
            _ => None,
        })
    }

    /// The CSeq.
    pub fn cseq(&self) -> Option<&CSeq> {
        self.0.iter().find_map(|h| match h {
            Header::CSeq(c) => Some(c),
            _ => None,
        })
    }

    /// All Contact values.
    pub fn contacts(&self) -> impl Iterator<Item = &Contact> {
        self.0.iter().filter_map(|h| match h {
            Header::Contact(c) => Some(c),
            _ => None,
        })
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        self.0.iter().find_map(|h| match h {
            Header::MaxForwards(n) => Some(*n),
            _ => None,
        })
    }

    /// Content-Length, if present.
    pub fn content_length(&self) -> Option<usize> {
        self.0.iter().find_map(|h| match h {
            Header::ContentLength(n) => Some(*n),
            _ => None,
        })
    }

    /// Content-Type, if present.
    pub fn content_type(&self) -> Option<&str> {
        self.0.iter().find_map(|h| match h {
            Header::ContentType(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// Route entries in order.
    pub fn routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.0.iter().filter_map(|h| match h {
            Header::Route(a) => Some(a),
            _ => None,
        })
    }

    /// Record-Route entries in order.
    pub fn record_routes(&self) -> impl Iterator<Item = &NameAddr> {
        self.0.iter().filter_map(|h| match h {
            Header::RecordRoute(a) => Some(a),
            _ => None,
        })
    }

    /// All option tags from every Require header.
    pub fn require(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|h| {
            match h {
                Header::Require(v) => v.as_slice(),
                _ => &[],
            }
            .iter()
            .map(String::as_str)
        })
    }

    /// All option tags from every Proxy-Require header.
    pub fn proxy_require(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|h| {
            match h {
                Header::ProxyRequire(v) => v.as_slice(),
                _ => &[],
            }
            .iter()
            .map(String::as_str)
        })
    }

    /// All option tags from every Supported header.
    pub fn supported(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|h| {
            match h {
                Header::Supported(v) => v.as_slice(),
                _ => &[],
            }
            .iter()
            .map(String::as_str)
        })
    }

    /// All methods from every Allow header.
    pub fn allow(&self) -> impl Iterator<Item = &Method> {
        self.0.iter().flat_map(|h| match h {
            Header::Allow(v) => v.as_slice(),
            _ => &[],
        })
    }

    /// Session-Expires, if present.
    pub fn session_expires(&self) -> Option<&SessionExpires> {
        self.0.iter().find_map(|h| match h {
            Header::SessionExpires(s) => Some(s),
            _ => None,
        })
    }

    /// Min-SE, if present.
    pub fn min_se(&self) -> Option<u32> {
        self.0.iter().find_map(|h| match h {
            Header::MinSe(n) => Some(*n),
            _ => None,
        })
    }

    /// Authorization, if present.
    pub fn authorization(&self) -> Option<&AuthParams> {
        self.0.iter().find_map(|h| match h {
            Header::Authorization(a) => Some(a),
            _ => None,
        })
    }

    /// Values of an untyped header by name, case-insensitively.
    pub fn other(&self, name: &str) -> impl Iterator<Item = &str> {
        let name = name.to_string();
        self.0.iter().filter_map(move |h| match h {
            Header::Other { name: n, value } if n.eq_ignore_ascii_case(&name) => {
                Some(value.as_str())
            }
            _ => None,
        })
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// Either kind of SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    /// The message's headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}
