//! Building messages from other messages: responses from requests (RFC 3261 §8.2.6),
//! CANCEL (§9.1) and the ACK for a non-2xx final response (§17.1.1.3), plus the random
//! identifiers every new request, dialog and transaction needs (tags, branches, Call-IDs).

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::message::{CSeq, Header, Method, Param, Request, Response, Via};

/// The RFC 3261 branch prefix that marks a branch as globally unique (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Max-Forwards for requests baton originates (RFC 3261 §8.1.1.6 recommends 70).
pub const DEFAULT_MAX_FORWARDS: u32 = 70;

/// The standard reason phrase for a status code, or a generic one for its class.
pub fn reason_phrase(code: u16) -> &'static str {
    registered_reason(code).unwrap_or(match code {
        100..=199 => "Provisional",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        600..=699 => "Global Failure",
        _ => "Unknown",
    })
}

/// Reason phrases of the codes in the IANA SIP response code registry.
fn registered_reason(code: u16) -> Option<&'static str> {
    Some(match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}

fn random_token(len: usize) -> String {
    // ThreadRng is a CSPRNG: tags, branches and Call-IDs must not be guessable, or an
    // off-path attacker could forge a CANCEL or BYE (RFC 3261 §8.1.1.4, §26).
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh From/To tag (RFC 3261 §19.3: at least 32 bits of randomness; this has ~71).
pub fn new_tag() -> String {
    random_token(12)
}

/// A fresh Via branch carrying the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("{MAGIC_COOKIE}{}", random_token(16))
}

/// A fresh Call-ID, globally unique without needing a host part.
pub fn new_call_id() -> String {
    random_token(24)
}

impl Via {
    /// A Via entry for a request baton sends, with a fresh branch.
    pub fn with_new_branch(transport: &str, host: impl Into<String>, port: Option<u16>) -> Via {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.into(),
            port,
            params: vec![Param::new("branch", new_branch()), Param::flag("rport")],
        }
    }
}

impl Request {
    /// A response to this request per RFC 3261 §8.2.6: Via (all, in order), From, To,
    /// Call-ID and CSeq copied; Record-Route copied too when the response can create a
    /// dialog (101-299 to INVITE, §12.1.1); Timestamp echoed in 100 (§8.2.6.1).
    /// `reason` defaults to [`reason_phrase`]. The To tag is left as in the request: add
    /// one with [`Response::set_to_tag`] for anything but 100.
    pub fn response(&self, status: u16, reason: Option<&str>) -> Response {
        let creates_dialog = self.method == Method::Invite && (101..=299).contains(&status);
        let headers = self
            .headers
            .iter()
            .filter(|h| match h {
                Header::Via(_)
                | Header::From(_)
                | Header::To(_)
                | Header::CallId(_)
                | Header::CSeq(_) => true,
                Header::RecordRoute(_) => creates_dialog,
                Header::Other { name, .. } => {
                    status == 100 && name.eq_ignore_ascii_case("Timestamp")
                }
                _ => false,
            })
            .cloned()
            .collect();
        Response {
            status,
            reason: reason.unwrap_or(reason_phrase(status)).to_string(),
            headers: crate::message::Headers(headers),
            body: Vec::new(),
        }
    }

    /// The CANCEL for this request (RFC 3261 §9.1): same Request-URI, Call-ID, From, To,
    /// CSeq number and Route set, and only the top Via, so that it reaches the same server.
    pub fn cancel(&self) -> Request {
        self.companion(Method::Cancel, None)
    }

    /// The ACK for a 300-699 response to this INVITE (RFC 3261 §17.1.1.3): the response's
    /// To (with its tag), this request's top Via, Call-ID, From, CSeq number and Route set.
    pub fn ack_for_non_2xx(&self, resp: &Response) -> Request {
        self.companion(Method::Ack, Some(resp))
    }

    /// Inserts a Via above all others, as a sender does before handing a request to the
    /// transaction layer.
    pub fn push_via(&mut self, via: Via) {
        let at = self
            .headers
            .0
            .iter()
            .position(|h| matches!(h, Header::Via(_)))
            .unwrap_or(0);
        self.headers.0.insert(at, Header::Via(via));
    }

    fn companion(&self, method: Method, resp: Option<&Response>) -> Request {
        let mut headers = crate::message::Headers::default();
        if let Some(via) = self.headers.top_via() {
            headers.push(Header::Via(via.clone()));
        }
        headers.push(Header::MaxForwards(DEFAULT_MAX_FORWARDS));
        for h in self.headers.iter() {
            match h {
                Header::From(_) | Header::CallId(_) | Header::Route(_) => headers.push(h.clone()),
                Header::To(to) => {
                    let to = resp.and_then(|r| r.headers.to()).unwrap_or(to);
                    headers.push(Header::To(to.clone()));
                }
                Header::CSeq(c) => headers.push(Header::CSeq(CSeq {
                    seq: c.seq,
                    method: method.clone(),
                })),
                _ => {}
            }
        }
        Request {
            method,
            uri: self.uri.clone(),
            headers,
            body: Vec::new(),
        }
    }
}

impl Response {
    /// Adds a tag to the To header unless it already has one (RFC 3261 §8.2.6.2).
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(to) = self.headers.to_mut() {
            if to.tag().is_none() {
                to.params.push(Param::new("tag", tag));
            }
        }
    }

    /// Builder form of [`Response::set_to_tag`].
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        self.set_to_tag(tag);
        self
    }

    /// The status class is 1xx.
    pub fn is_provisional(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// The status class is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Ready-made messages for unit tests across the crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::message::*;

    /// A SIP URI `sip:user@host`.
    pub(crate) fn sip_uri(user: &str, host: &str) -> Uri {
        Uri::Sip(SipUri {
            secure: false,
            user: Some(user.to_string()),
            password: None,
            host: host.to_string(),
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// `<sip:user@host>;tag=...` (or without a tag).
    pub(crate) fn addr(user: &str, host: &str, tag: Option<&str>) -> NameAddr {
        NameAddr {
            display: None,
            uri: sip_uri(user, host),
            params: tag.map(|t| vec![Param::new("tag", t)]).unwrap_or_default(),
        }
    }

    /// A Via for `host:5060` with the given branch.
    pub(crate) fn via(host: &str, branch: &str) -> Via {
        Via {
            transport: "UDP".to_string(),
            host: host.to_string(),
            port: Some(5060),
            params: vec![Param::new("branch", branch)],
        }
    }

    /// A request from alice at the carrier to baton, as a carrier would send it.
    pub(crate) fn request(method: Method, branch: &str, seq: u32) -> Request {
        let headers = Headers(vec![
            Header::Via(via("carrier.example", branch)),
            Header::MaxForwards(70),
            Header::From(addr("alice", "carrier.example", Some("fromtag"))),
            Header::To(addr("bob", "baton.example", None)),
            Header::CallId("call-1@carrier.example".to_string()),
            Header::CSeq(CSeq {
                seq,
                method: method.clone(),
            }),
            Header::Contact(Contact::Addr(addr("alice", "10.0.0.1", None))),
        ]);
        Request {
            method,
            uri: sip_uri("bob", "baton.example"),
            headers,
            body: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::message::*;

    #[test]
    fn response_copies_transaction_headers_and_not_others() {
        let mut req = request(Method::Invite, "z9hG4bKabc", 1);
        req.headers
            .0
            .insert(1, Header::Via(via("proxy.example", "z9hG4bKp")));
        req.headers
            .push(Header::RecordRoute(addr("rr", "proxy.example", None)));
        let resp = req.response(180, None);
        assert_eq!(resp.reason, "Ringing");
        assert_eq!(resp.headers.vias().count(), 2);
        assert_eq!(resp.headers.call_id(), Some("call-1@carrier.example"));
        assert_eq!(resp.headers.cseq(), req.headers.cseq());
        assert_eq!(resp.headers.from(), req.headers.from());
        assert_eq!(resp.headers.record_routes().count(), 1);
        assert_eq!(resp.headers.contacts().count(), 0);
        assert_eq!(resp.headers.max_forwards(), None);

        let busy = req.response(486, Some("Agent Busy"));
        assert_eq!(busy.reason, "Agent Busy");
        assert_eq!(busy.headers.record_routes().count(), 0);
    }

    #[test]
    fn record_route_only_for_dialog_creating_invite_responses() {
        let mut req = request(Method::Options, "z9hG4bKo", 1);
        req.headers
            .push(Header::RecordRoute(addr("rr", "proxy.example", None)));
        assert_eq!(req.response(200, None).headers.record_routes().count(), 0);
    }

    #[test]
    fn trying_echoes_timestamp() {
        let mut req = request(Method::Invite, "z9hG4bKt", 1);
        req.headers.push(Header::Other {
            name: "Timestamp".into(),
            value: "54".into(),
        });
        assert_eq!(
            req.response(100, None).headers.other("timestamp").next(),
            Some("54")
        );
        assert_eq!(
            req.response(180, None).headers.other("timestamp").next(),
            None
        );
    }

    #[test]
    fn to_tag_added_once() {
        let req = request(Method::Invite, "z9hG4bKa", 1);
        let mut resp = req.response(200, None).with_to_tag("one");
        resp.set_to_tag("two");
        assert_eq!(resp.headers.to().and_then(NameAddr::tag), Some("one"));
    }

    #[test]
    fn reason_phrases_cover_classes() {
        assert_eq!(reason_phrase(481), "Call/Transaction Does Not Exist");
        assert_eq!(reason_phrase(422), "Session Interval Too Small");
        assert_eq!(reason_phrase(499), "Client Error");
        assert_eq!(reason_phrase(42), "Unknown");
    }

    #[test]
    fn identifiers_are_fresh_and_branch_has_cookie() {
        let a = new_branch();
        assert!(a.starts_with(MAGIC_COOKIE));
        assert_ne!(a, new_branch());
        assert_ne!(new_tag(), new_tag());
        assert_ne!(new_call_id(), new_call_id());
        assert!(new_tag().chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn cancel_and_ack_follow_the_invite() {
        let mut invite = request(Method::Invite, "z9hG4bKi", 7);
        invite
            .headers
            .0
            .insert(1, Header::Via(via("proxy.example", "z9hG4bKp")));
        invite
            .headers
            .push(Header::Route(addr("r", "proxy.example", None)));
        let cancel = invite.cancel();
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(cancel.headers.vias().count(), 1);
        assert_eq!(cancel.headers.top_via(), invite.headers.top_via());
        assert_eq!(
            cancel.headers.cseq().map(|c| (c.seq, &c.method)),
            Some((7, &Method::Cancel))
        );
        assert_eq!(cancel.headers.routes().count(), 1);
        assert_eq!(cancel.headers.contacts().count(), 0);

        let resp = invite.response(486, None).with_to_tag("uas");
        let ack = invite.ack_for_non_2xx(&resp);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.headers.to().and_then(NameAddr::tag), Some("uas"));
        assert_eq!(ack.headers.cseq().map(|c| c.seq), Some(7));
        assert_eq!(ack.headers.vias().count(), 1);
    }

    #[test]
    fn push_via_goes_on_top() {
        let mut req = request(Method::Bye, "z9hG4bKold", 2);
        req.push_via(Via::with_new_branch("udp", "baton.example", Some(5060)));
        assert_eq!(
            req.headers.top_via().map(|v| v.host.as_str()),
            Some("baton.example")
        );
        assert_eq!(req.headers.vias().count(), 2);
    }
}
