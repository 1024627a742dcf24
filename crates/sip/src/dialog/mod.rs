//! SIP dialogs (RFC 3261 §12-§14): the state two user agents share between an INVITE and
//! its BYE, how in-dialog requests are built and checked, and the UAS-side pieces that
//! live above the transactions: 2xx retransmission ([`Uas2xxRetransmit`], §13.3.1.4) and
//! session timers ([`negotiate_session_timer`], RFC 4028).

mod replaces;
mod retransmit;
mod session_timer;

pub use replaces::{Replaces, ReplacesError};
pub use retransmit::{Uas2xxEvent, Uas2xxRetransmit};
pub use session_timer::{
    negotiate_session_timer, SessionTimer, SessionTimerConfig, SessionTimerError,
};

use std::collections::HashMap;

use crate::build::DEFAULT_MAX_FORWARDS;
use crate::message::{
    find_param, CSeq, Contact, Header, Headers, Method, NameAddr, Request, Response, Uri,
};

/// What identifies a dialog at one end (§12): Call-ID and the two tags, seen from here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    /// Empty when the peer (RFC 2543) sent no tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The id an incoming request names: its To tag is ours, its From tag the peer's.
    pub fn of_incoming_request(req: &Request) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.headers.call_id()?.to_string(),
            local_tag: req.headers.to()?.tag()?.to_string(),
            remote_tag: req.headers.from()?.tag().unwrap_or_default().to_string(),
        })
    }

    /// The id a response to our request names: its From tag is ours, its To tag the peer's.
    pub fn of_incoming_response(resp: &Response) -> Option<DialogId> {
        Some(DialogId {
            call_id: resp.headers.call_id()?.to_string(),
            local_tag: resp.headers.from()?.tag()?.to_string(),
            remote_tag: resp.headers.to()?.tag().unwrap_or_default().to_string(),
        })
    }
}

/// Early (created by a 1xx) or confirmed (by a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// Why a dialog could not be created from, or refused, a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("the message has no usable {0} header")]
    MissingHeader(&'static str),
    #[error("the {0} header has no tag")]
    MissingTag(&'static str),
    #[error("status {0} does not create a dialog (101-299 only)")]
    NotDialogCreating(u16),
    #[error("the request does not belong to this dialog")]
    WrongDialog,
    #[error("CSeq {got} is lower than the last one seen in the dialog ({last})")]
    CSeqOutOfOrder { got: u32, last: u32 },
}

impl DialogError {
    /// The status code to answer a request refused for this reason (§12.2.2: a lower
    /// CSeq is a 500; an unknown dialog is a 481).
    pub fn status(&self) -> u16 {
        match self {
            DialogError::MissingHeader(_)
            | DialogError::MissingTag(_)
            | DialogError::NotDialogCreating(_) => 400,
            DialogError::WrongDialog => 481,
            DialogError::CSeqOutOfOrder { .. } => 500,
        }
    }
}

/// One dialog's state (§12.1): what every in-dialog request is built from and checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    pub state: DialogState,
    /// CSeq of the last request we sent; `None` until the first (UAS side).
    pub local_seq: Option<u32>,
    /// CSeq of the last request the peer sent; `None` until the first (UAC side).
    pub remote_seq: Option<u32>,
    /// Our address with our tag: From of our requests.
    pub local_uri: NameAddr,
    /// The peer's address with its tag: To of our requests.
    pub remote_uri: NameAddr,
    /// Our Contact, sent in target refresh requests.
    pub local_contact: Option<NameAddr>,
    /// Where in-dialog requests go: the peer's latest Contact.
    pub remote_target: Uri,
    /// Record-Route values, in the order our requests must visit them.
    pub route_set: Vec<NameAddr>,
    /// The dialog was set up with a `sips:` Request-URI.
    pub secure: bool,
    /// CSeq of our latest INVITE, reused by its ACK and CANCEL.
    invite_seq: Option<u32>,
}

fn first_contact(headers: &Headers) -> Option<&NameAddr> {
    headers.contacts().find_map(|c| match c {
        Contact::Addr(a) => Some(a),
        Contact::Star => None,
    })
}

/// A UAC visits the Record-Route entries of a response in reverse order (§12.1.2).
fn uac_route_set(headers: &Headers) -> Vec<NameAddr> {
    let mut routes: Vec<NameAddr> = headers.record_routes().cloned().collect();
    routes.reverse();
    routes
}

fn is_sips(uri: &Uri) -> bool {
    matches!(uri, Uri::Sip(s) if s.secure)
}

/// Requests whose Contact replaces the remote target (RFC 3261 §12.2, RFC 3311, RFC 6665).
fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify
    )
}

fn state_for(status: u16) -> Result<DialogState, DialogError> {
    match status {
        101..=199 => Ok(DialogState::Early),
        200..=299 => Ok(DialogState::Confirmed),
        other => Err(DialogError::NotDialogCreating(other)),
    }
}

impl Dialog {
    /// The dialog a UAS creates when it answers `invite` with `response` (101-299 with
    /// a To tag), per §12.1.1.
    pub fn uas(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = state_for(response.status)?;
        let local_uri = response
            .headers
            .to()
            .ok_or(DialogError::MissingHeader("To"))?
            .clone();
        let local_tag = local_uri
            .tag()
            .ok_or(DialogError::MissingTag("To"))?
            .to_string();
        let remote_uri = invite
            .headers
            .from()
            .ok_or(DialogError::MissingHeader("From"))?
            .clone();
        let call_id = invite
            .headers
            .call_id()
            .ok_or(DialogError::MissingHeader("Call-ID"))?;
        let seq = invite
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?
            .seq;
        let remote_target = first_contact(&invite.headers)
            .ok_or(DialogError::MissingHeader("Contact"))?
            .uri
            .clone();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag,
                remote_tag: remote_uri.tag().unwrap_or_default().to_string(),
            },
            state,
            local_seq: None,
            remote_seq: Some(seq),
            local_uri,
            remote_uri,
            local_contact: first_contact(&response.headers).cloned(),
            remote_target,
            route_set: invite.headers.record_routes().cloned().collect(),
            secure: is_sips(&invite.uri),
            invite_seq: None,
        })
    }

    /// The dialog a UAC creates when `response` (101-299 with a To tag) answers the
    /// `invite` it sent, per §12.1.2: the Record-Route set is reversed.
    pub fn uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = state_for(response.status)?;
        let local_uri = invite
            .headers
            .from()
            .ok_or(DialogError::MissingHeader("From"))?
            .clone();
        let local_tag = local_uri
            .tag()
            .ok_or(DialogError::MissingTag("From"))?
            .to_string();
        let remote_uri = response
            .headers
            .to()
            .ok_or(DialogError::MissingHeader("To"))?
            .clone();
        let remote_tag = remote_uri
            .tag()
            .ok_or(DialogError::MissingTag("To"))?
            .to_string();
        let call_id = invite
            .headers
            .call_id()
            .ok_or(DialogError::MissingHeader("Call-ID"))?;
        let seq = invite
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?
            .seq;
        let remote_target = first_contact(&response.headers)
            .ok_or(DialogError::MissingHeader("Contact"))?
            .uri
            .clone();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag,
                remote_tag,
            },
            state,
            local_seq: Some(seq),
            remote_seq: None,
            local_uri,
            remote_uri,
            local_contact: first_contact(&invite.headers).cloned(),
            remote_target,
            route_set: uac_route_set(&response.headers),
            secure: is_sips(&invite.uri),
            invite_seq: Some(seq),
        })
    }

    /// A new request in this dialog (§12.2.1.1): CSeq one above the last (ACK and CANCEL
    /// reuse the INVITE's), Request-URI and Route from the route set. The caller adds its
    /// Via ([`Request::push_via`]) and any body.
    pub fn request(&mut self, method: Method) -> Request {
        let seq = match method {
            Method::Ack | Method::Cancel => self.invite_seq.or(self.local_seq).unwrap_or(1),
            _ => {
                // §12.2.1.1: a UAS starts its own numbering anywhere below 2^31.
                let next = self.local_seq.map_or_else(
                    || rand::random::<u32>() % 0x4000_0000 + 1,
                    |s| s.wrapping_add(1),
                );
                self.local_seq = Some(next);
                if method == Method::Invite {
                    self.invite_seq = Some(next);
                }
                next
            }
        };
        self.build(method, seq)
    }

    /// The ACK for a 2xx to our INVITE (§13.2.2.4): same CSeq number as the INVITE.
    pub fn ack_for(&self, response_2xx: &Response) -> Request {
        let seq = response_2xx
            .headers
            .cseq()
            .map(|c| c.seq)
            .or(self.invite_seq)
            .or(self.local_seq)
            .unwrap_or(1);
        self.build(Method::Ack, seq)
    }

    fn build(&self, method: Method, seq: u32) -> Request {
        let mut headers = Headers::default();
        headers.push(Header::MaxForwards(DEFAULT_MAX_FORWARDS));
        headers.push(Header::From(self.local_uri.clone()));
        headers.push(Header::To(self.remote_uri.clone()));
        headers.push(Header::CallId(self.id.call_id.clone()));
        headers.push(Header::CSeq(CSeq {
            seq,
            method: method.clone(),
        }));
        let strict_first_hop = self.route_set.first().filter(|r| !is_loose_router(&r.uri));
        let uri = match strict_first_hop {
            // §12.2.1.1: a strict router wants its own URI as Request-URI and the remote
            // target as the last Route.
            Some(first) => {
                for route in &self.route_set[1..] {
                    headers.push(Header::Route(route.clone()));
                }
                headers.push(Header::Route(NameAddr {
                    display: None,
                    uri: self.remote_target.clone(),
                    params: Vec::new(),
                }));
                without_uri_headers(&first.uri)
            }
            None => {
                for route in &self.route_set {
                    headers.push(Header::Route(route.clone()));
                }
                self.remote_target.clone()
            }
        };
        if is_target_refresh(&method) {
            if let Some(contact) = &self.local_contact {
                headers.push(Header::Contact(Contact::Addr(contact.clone())));
            }
        }
        Request {
            method,
            uri,
            headers,
            body: Vec::new(),
        }
    }

    /// Checks an incoming in-dialog request (§12.2.2) and updates the dialog: remote CSeq,
    /// and the remote target on a target refresh with a Contact. Answer an error with
    /// [`DialogError::status`].
    pub fn check_request(&mut self, req: &Request) -> Result<(), DialogError> {
        if DialogId::of_incoming_request(req).as_ref() != Some(&self.id) {
            return Err(DialogError::WrongDialog);
        }
        let seq = req
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?
            .seq;
        // ACK and CANCEL carry the CSeq of the INVITE they belong to.
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if seq < last {
                    return Err(DialogError::CSeqOutOfOrder { got: seq, last });
                }
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(&req.method) {
            if let Some(contact) = first_contact(&req.headers) {
                self.remote_target = contact.uri.clone();
            }
        }
        Ok(())
    }

    /// Updates a UAC dialog from a response to one of its requests: a 2xx to the INVITE
    /// confirms an early dialog and recomputes its route set (§13.2.2.4), a 1xx/2xx to a
    /// target refresh (or a 1xx while early) replaces the remote target (§12.2.1.2).
    pub fn handle_response(&mut self, resp: &Response) {
        let Some(method) = resp.headers.cseq().map(|c| &c.method) else {
            return;
        };
        if *method == Method::Invite
            && (200..300).contains(&resp.status)
            && self.state == DialogState::Early
        {
            self.state = DialogState::Confirmed;
            self.route_set = uac_route_set(&resp.headers);
        }
        let refreshes = (200..300).contains(&resp.status)
            || (self.state == DialogState::Early && *method == Method::Invite && resp.status > 100);
        if is_target_refresh(method) && refreshes {
            if let Some(contact) = first_contact(&resp.headers) {
                self.remote_target = contact.uri.clone();
            }
        }
    }

    /// Marks an early dialog confirmed, when the UAS sends its 2xx.
    pub fn confirm(&mut self) {
        self.state = DialogState::Confirmed;
    }
}

fn is_loose_router(uri: &Uri) -> bool {
    match uri {
        Uri::Sip(s) => find_param(&s.params, "lr").is_some(),
        // Only SIP URIs can carry `lr`; anything else cannot be a strict router either.
        _ => true,
    }
}

/// A route URI as Request-URI: header components are not allowed there (§19.1.1).
fn without_uri_headers(uri: &Uri) -> Uri {
    match uri {
        Uri::Sip(s) => {
            let mut s = s.clone();
            s.headers.clear();
            Uri::Sip(s)
        }
        other => other.clone(),
    }
}

/// The dialogs of an endpoint, found by the id incoming messages carry.
#[derive(Debug, Default)]
pub struct Dialogs {
    map: HashMap<DialogId, Dialog>,
}

impl Dialogs {
    /// An empty set.
    pub fn new() -> Dialogs {
        Dialogs::default()
    }

    /// Adds a dialog, returning any dialog it replaces.
    pub fn insert(&mut self, dialog: Dialog) -> Option<Dialog> {
        self.map.insert(dialog.id.clone(), dialog)
    }

    /// A dialog by id.
    pub fn get(&self, id: &DialogId) -> Option<&Dialog> {
        self.map.get(id)
    }

    /// A dialog by id, mutably.
    pub fn get_mut(&mut self, id: &DialogId) -> Option<&mut Dialog> {
        self.map.get_mut(id)
    }

    /// Removes a dialog (after BYE).
    pub fn remove(&mut self, id: &DialogId) -> Option<Dialog> {
        self.map.remove(id)
    }

    /// The dialog an incoming in-dialog request belongs to; `None` means 481.
    pub fn find_for_request(&mut self, req: &Request) -> Option<&mut Dialog> {
        self.map.get_mut(&DialogId::of_incoming_request(req)?)
    }

    /// The dialog a response to our in-dialog request belongs to.
    pub fn find_for_response(&mut self, resp: &Response) -> Option<&mut Dialog> {
        self.map.get_mut(&DialogId::of_incoming_response(resp)?)
    }

    /// Number of dialogs.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No dialog.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All dialogs, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Dialog> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests;
