//! How messages find their transaction: RFC 3261 §17.1.3 for responses, §17.2.3 for
//! requests (branch, sent-by, method), and the RFC 2543 fallback for branches without the
//! magic cookie.

use crate::build::MAGIC_COOKIE;
use crate::message::{Method, NameAddr, Request, Response};

/// Index key of a transaction whose branch is globally unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    /// Client side: our own branch plus the CSeq method (§17.1.3).
    Client { branch: String, method: Method },
    /// Server side: branch, sent-by and method, ACK folded into INVITE (§17.2.3).
    Server {
        branch: String,
        host: String,
        port: Option<u16>,
        method: Method,
    },
}

/// Coarse index key for RFC 2543 peers; candidates are then compared field by field
/// (Request-URI, top Via, To tag), see [`legacy_fields_match`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LegacyKey {
    call_id: String,
    seq: u32,
    method: Method,
    from_tag: Option<String>,
}

/// How to look an incoming request up among the server transactions.
#[derive(Debug)]
pub(super) enum ServerLookup {
    Rfc3261(Key),
    Legacy(LegacyKey),
}

/// ACK belongs to the INVITE transaction; every other method is its own kind.
fn method_kind(method: &Method) -> Method {
    match method {
        Method::Ack => Method::Invite,
        m => m.clone(),
    }
}

/// The client key of a request baton sends, if its top Via carries a branch.
pub(super) fn client_key_for_request(req: &Request) -> Option<Key> {
    let branch = req.headers.top_via()?.branch()?;
    Some(Key::Client {
        branch: branch.to_string(),
        method: req.method.clone(),
    })
}

/// The client key a response matches: top Via branch and CSeq method (§17.1.3).
pub(super) fn client_key_for_response(resp: &Response) -> Option<Key> {
    let branch = resp.headers.top_via()?.branch()?;
    let method = &resp.headers.cseq()?.method;
    Some(Key::Client {
        branch: branch.to_string(),
        method: method.clone(),
    })
}

/// The server lookup for `req` as if its method were `as_method` (CANCEL looks for the
/// INVITE it cancels with `Method::Invite`). `None` when mandatory headers are missing.
pub(super) fn server_lookup(req: &Request, as_method: &Method) -> Option<ServerLookup> {
    let via = req.headers.top_via()?;
    let method = method_kind(as_method);
    match via.branch() {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => {
            Some(ServerLookup::Rfc3261(Key::Server {
                branch: branch.to_string(),
                host: via.host.to_ascii_lowercase(),
                port: via.port,
                method,
            }))
        }
        _ => Some(ServerLookup::Legacy(LegacyKey {
            call_id: req.headers.call_id()?.to_string(),
            seq: req.headers.cseq()?.seq,
            method,
            from_tag: req.headers.from()?.tag().map(str::to_string),
        })),
    }
}

/// The RFC 2543 fields beyond the index key (§17.2.3): same Request-URI and top Via, and
/// the To tag equal to `expected_to_tag` (the original request's, or for an ACK the tag of
/// the response the transaction sent).
pub(super) fn legacy_fields_match(
    original: &Request,
    incoming: &Request,
    expected_to_tag: Option<&str>,
) -> bool {
    original.uri == incoming.uri
        && original.headers.top_via() == incoming.headers.top_via()
        && incoming.headers.to().and_then(NameAddr::tag) == expected_to_tag
}
