//! The agents calls escalate to: who they are and what they are good at (the config's
//! `[[agent]]` tables), where their softphones are (baton is their registrar, RFC 3261
//! §10, with digest authentication: SHA-256 per RFC 8760, and MD5 for older phones), and
//! whether they can take a call.
//!
//! The registrar is sans-IO: [`Agents::register`] takes a parsed REGISTER and the time,
//! and says what to answer. The endpoint sends the answer; the API reads the presence.

use crate::config::{AgentConfig, DEFAULT_DIGEST};
use crate::routing::Candidate;
use baton_sip::auth::{self, Algorithm, AuthError, Digest};
use baton_sip::message::{AuthParams, Contact, Header, NameAddr, Param, Request, Uri};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A registration asked for without an expiry lasts this long (RFC 3261 §10.2.1.1).
const DEFAULT_EXPIRES: u32 = 3600;
/// Shortest registration accepted; shorter gets 423 (RFC 3261 §10.3 step 7). Long enough
/// that a phone re-registering does not flood the registrar.
pub const MIN_EXPIRES: u32 = 60;
/// Longest registration granted: a phone that vanished is forgotten within the hour.
const MAX_EXPIRES: u32 = 3600;
/// Contacts one agent may register (a desk phone, a softphone, a mobile).
const MAX_BINDINGS: usize = 5;

/// Whether an agent takes calls, as they (or a supervisor) set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Available,
    /// On something else (after-call work, a meeting): no calls, though registered.
    Busy,
    Away,
}

/// Where one of an agent's phones can be reached.
#[derive(Debug, Clone, PartialEq)]
struct Binding {
    /// The Contact URI as the phone gave it.
    contact: Uri,
    expires_at: Instant,
    /// RFC 3261 §10.3 step 7: a request older than the one that made the binding is
    /// out of order.
    call_id: String,
    cseq: u32,
}

#[derive(Debug)]
struct Live {
    bindings: Vec<Binding>,
    presence: Presence,
    /// Calls the agent is on now, ringing ones included.
    calls: u32,
    /// When their last call ended; `None` before their first.
    last_ended: Option<Instant>,
    /// Their recent handle time in seconds, a moving average; `None` before their first.
    handle_secs: Option<f64>,
    /// Desktops (`/agent`) they have open.
    desktops: u32,
}

impl Live {
    /// The contacts of the phones registered at `now`, oldest registration first.
    fn phones(&self, now: Instant) -> impl DoubleEndedIterator<Item = &Uri> {
        self.bindings
            .iter()
            .filter(move |b| b.expires_at > now)
            .map(|b| &b.contact)
    }
}

/// How much the newest call moves an agent's handle time: the last ten or so calls count.
const HANDLE_SMOOTHING: f64 = 0.2;

/// An agent routing may offer a call to, and where their phone rings.
#[derive(Debug, Clone, PartialEq)]
pub struct Reachable {
    pub candidate: Candidate,
    pub name: String,
    pub phone: Phone,
}

/// Where an agent takes calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Phone {
    /// Their most recently registered SIP phone, by its Contact.
    Sip(Uri),
    /// The softphone in their desktop (WebRTC), when no SIP phone is registered.
    Desktop,
}

/// Every agent and what baton knows of them now.
pub struct Agents {
    list: Vec<AgentConfig>,
    digest: Digest,
    live: Mutex<HashMap<String, Live>>,
}

/// What to answer a REGISTER: 200 with the bindings now in force, each with its remaining
/// seconds, or why not.
pub type Answer = Result<Vec<Header>, Refusal>;

/// Why a phone's request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 401 with these challenges.
    Challenge(Vec<Header>),
    /// 403: the credentials are wrong, for someone else, or for a user no agent is.
    Forbidden(String),
    /// 423 Interval Too Brief, with the shortest interval accepted.
    TooBrief(u32),
    /// 400, saying what is wrong.
    Bad(String),
    /// 500 (RFC 3261 §10.3 step 7: a REGISTER older than the binding it would change).
    OutOfOrder,
}

/// What to answer an agent's phone calling a colleague.
#[derive(Debug, Clone, PartialEq)]
pub enum Colleague {
    /// 302 to the colleague's registered phones, newest first: the phones talk directly,
    /// as when an agent consults a colleague before an attended transfer.
    Redirect(Vec<Uri>),
    /// Not proven an agent's phone: a challenge, or 403.
    Refused(Refusal),
    /// 480: the colleague has no phone registered.
    Unavailable,
}

/// One agent as the API shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub sip_user: String,
    pub registered: bool,
    /// The Contact URIs of the phones registered now.
    pub contacts: Vec<String>,
    /// Whether they have the desktop (`/agent`) open.
    pub desktop: bool,
    pub presence: Presence,
    /// Calls the agent is on now, and the most they take.
    pub calls: u32,
    pub max_calls: u32,
    /// Their recent handle time in seconds (a moving average), once they have taken a call.
    pub handle_secs: Option<f64>,
    pub skills: std::collections::BTreeMap<String, u8>,
    pub languages: Vec<String>,
}

impl Agents {
    /// The configured agents, none registered yet; `secret` keys the nonces.
    pub fn new(list: Vec<AgentConfig>, realm: &str, secret: [u8; 32]) -> Agents {
        let live = list
            .iter()
            .map(|a| {
                let live = Live {
                    bindings: Vec::new(),
                    presence: Presence::Available,
                    calls: 0,
                    last_ended: None,
                    handle_secs: None,
                    desktops: 0,
                };
                (a.id.clone(), live)
            })
            .collect();
        Agents {
            list,
            digest: Digest::new(realm, secret),
            live: Mutex::new(live),
        }
    }

    fn live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        // A panic elsewhere while holding the lock leaves plain data, still usable.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles a REGISTER (RFC 3261 §10.3) received at `now` (`wall_secs`: Unix time, for
    /// the nonces).
    pub fn register(&self, req: &Request, now: Instant, wall_secs: u64) -> Answer {
        let Some(to) = req.headers.to() else {
            return Err(Refusal::Bad("no To header".into()));
        };
        let Some(user) = to.uri.user() else {
            return Err(Refusal::Bad("the To URI names no user".into()));
        };
        let authorization = digest_authorization(req);
        let Some(agent) = self.list.iter().find(|a| a.sip_user == user) else {
            // Challenged and refused like a wrong password, so that nobody can find out
            // which users exist by trying names.
            return match authorization {
                None => Err(self.challenge(&DEFAULT_DIGEST, wall_secs, false)),
                Some(_) => Err(Refusal::Forbidden(format!("no agent registers as {user}"))),
            };
        };
        let Some(authorization) = authorization else {
            return Err(self.challenge(&agent.digest, wall_secs, false));
        };
        self.authenticate(agent, authorization, "REGISTER", wall_secs)?;
        let bindings = requested_bindings(req)?;
        let call_id = req.headers.call_id().unwrap_or_default().to_owned();
        let cseq = req.headers.cseq().map_or(0, |c| c.seq);
        let mut live = self.live();
        let Some(entry) = live.get_mut(&agent.id) else {
            return Err(Refusal::Forbidden(format!("no agent registers as {user}")));
        };
        entry.bindings.retain(|b| b.expires_at > now);
        match bindings {
            Requested::Query => {}
            Requested::RemoveAll => {
                if entry
                    .bindings
                    .iter()
                    .any(|b| b.call_id == call_id && b.cseq >= cseq)
                {
                    return Err(Refusal::OutOfOrder);
                }
                entry.bindings.clear();
            }
            Requested::Set(list) => {
                for (contact, expires) in list {
                    let existing = entry.bindings.iter().position(|b| b.contact == contact);
                    if let Some(i) = existing {
                        let b = &entry.bindings[i];
                        if b.call_id == call_id && b.cseq >= cseq {
                            return Err(Refusal::OutOfOrder);
                        }
                        entry.bindings.remove(i);
                    }
                    if expires == 0 {
                        continue;
                    }
                    if entry.bindings.len() >= MAX_BINDINGS {
                        return Err(Refusal::Bad(format!(
                            "at most {MAX_BINDINGS} phones may register for one agent"
                        )));
                    }
                    entry.bindings.push(Binding {
                        contact,
                        expires_at: now + Duration::from_secs(u64::from(expires)),
                        call_id: call_id.clone(),
                        cseq,
                    });
                }
            }
        }
        Ok(entry
            .bindings
            .iter()
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                contact_header(&b.contact, left)
            })
            .collect())
    }

    /// The agent's challenges, in the order configured: strongest first (RFC 8760 §2.4),
    /// a phone takes the first it supports.
    fn challenge(&self, algorithms: &[Algorithm], wall_secs: u64, stale: bool) -> Refusal {
        Refusal::Challenge(
            self.digest
                .challenges(algorithms, wall_secs, stale)
                .into_iter()
                .map(Header::WwwAuthenticate)
                .collect(),
        )
    }

    /// What to answer an agent's phone calling a colleague: an INVITE whose Request-URI
    /// names an agent's SIP user (`None` for any other). Only a phone that proves it is an
    /// agent's, by digest as when it registers, learns where the colleague's phones are.
    pub fn colleague(&self, req: &Request, now: Instant, wall_secs: u64) -> Option<Colleague> {
        let callee = req.uri.user()?;
        let target = self.list.iter().find(|a| a.sip_user == callee)?;
        let authorization = digest_authorization(req);
        let user = match authorization {
            Some(a) => auth::username(a),
            None => req.headers.from().and_then(|f| f.uri.user()),
        };
        let caller = user.and_then(|u| self.list.iter().find(|a| a.sip_user == u));
        match (caller, authorization) {
            (_, None) => {
                let algorithms = caller.map_or(&DEFAULT_DIGEST[..], |a| a.digest.as_slice());
                return Some(Colleague::Refused(
                    self.challenge(algorithms, wall_secs, false),
                ));
            }
            (None, Some(_)) => {
                return Some(Colleague::Refused(Refusal::Forbidden(
                    "only an agent's phone may call an agent".into(),
                )))
            }
            (Some(agent), Some(a)) => {
                if let Err(answer) = self.authenticate(agent, a, "INVITE", wall_secs) {
                    return Some(Colleague::Refused(answer));
                }
            }
        }
        let live = self.live();
        let phones: Vec<Uri> = live
            .get(&target.id)
            .map(|l| l.phones(now).rev().cloned().collect())
            .unwrap_or_default();
        Some(if phones.is_empty() {
            Colleague::Unavailable
        } else {
            Colleague::Redirect(phones)
        })
    }

    fn authenticate(
        &self,
        agent: &AgentConfig,
        authorization: &AuthParams,
        method: &str,
        wall_secs: u64,
    ) -> Result<(), Refusal> {
        if auth::username(authorization) != Some(agent.sip_user.as_str()) {
            return Err(Refusal::Forbidden(
                "the credentials are not for the user registering".into(),
            ));
        }
        // No answering with an algorithm the agent's phone was not offered: no downgrade.
        let algorithm = authorization.get("algorithm").unwrap_or("MD5");
        if !Algorithm::from_name(algorithm).is_some_and(|a| agent.digest.contains(&a)) {
            return Err(Refusal::Forbidden(format!(
                "digest algorithm {algorithm} is not offered to this agent"
            )));
        }
        match self
            .digest
            .verify(authorization, method, &agent.password, wall_secs)
        {
            Ok(()) => Ok(()),
            Err(AuthError::StaleNonce) => Err(self.challenge(&agent.digest, wall_secs, true)),
            // A nonce of another realm or instance: challenge afresh, as for a first try.
            Err(AuthError::BadNonce | AuthError::WrongRealm) => {
                Err(self.challenge(&agent.digest, wall_secs, false))
            }
            Err(e) => Err(Refusal::Forbidden(e.to_string())),
        }
    }

    /// Every agent, as the API shows them at `now`.
    pub fn views(&self, now: Instant) -> Vec<AgentView> {
        let live = self.live();
        self.list
            .iter()
            .map(|a| {
                let l = live.get(&a.id);
                let contacts: Vec<String> = l
                    .map(|l| l.phones(now).map(Uri::to_string).collect())
                    .unwrap_or_default();
                AgentView {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    sip_user: a.sip_user.clone(),
                    registered: !contacts.is_empty(),
                    contacts,
                    desktop: l.is_some_and(|l| l.desktops > 0),
                    presence: l.map_or(Presence::Away, |l| l.presence),
                    calls: l.map_or(0, |l| l.calls),
                    max_calls: a.max_calls,
                    handle_secs: l.and_then(|l| l.handle_secs),
                    skills: a.skills.clone(),
                    languages: a.languages.clone(),
                }
            })
            .collect()
    }

    /// The id of the agent whose phone registers as `sip_user`.
    pub fn by_sip_user(&self, sip_user: &str) -> Option<String> {
        self.list
            .iter()
            .find(|a| a.sip_user == sip_user)
            .map(|a| a.id.clone())
    }

    /// Whether no agent is configured: calls then never go to one.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The agents with a phone registered at `now` or their desktop open, as routing weighs
    /// them: whether they can take a call, their load, idle and handle times.
    pub fn reachable(&self, now: Instant) -> Vec<Reachable> {
        let live = self.live();
        self.list
            .iter()
            .filter_map(|a| {
                let l = live.get(&a.id)?;
                // The newest registration is the phone the agent is most likely at; without
                // one, the desktop's own softphone.
                let phone = match l.phones(now).next_back() {
                    Some(contact) => Phone::Sip(contact.clone()),
                    None if l.desktops > 0 => Phone::Desktop,
                    None => return None,
                };
                let idle_secs = l
                    .last_ended
                    .map_or(u64::MAX, |t| now.saturating_duration_since(t).as_secs());
                Some(Reachable {
                    candidate: Candidate {
                        id: a.id.clone(),
                        skills: a.skills.clone(),
                        languages: a.languages.clone(),
                        available: l.presence == Presence::Available,
                        calls: l.calls,
                        max_calls: a.max_calls,
                        idle_secs,
                        handle_secs: l.handle_secs,
                    },
                    name: a.name.clone(),
                    phone,
                })
            })
            .collect()
    }

    /// Counts a call offered to agent `id` against their `max_calls`; false, and nothing
    /// counted, when they have no room for it (taken by another call since routing looked).
    pub fn claim(&self, id: &str) -> bool {
        let max = self.list.iter().find(|a| a.id == id).map(|a| a.max_calls);
        match (self.live().get_mut(id), max) {
            (Some(l), Some(max)) if l.presence == Presence::Available && l.calls < max => {
                l.calls += 1;
                true
            }
            _ => false,
        }
    }

    /// Agent `id` is done with a call [`Agents::claim`] counted, at `now`; `handled` is
    /// how long they talked, when they answered.
    pub fn release(&self, id: &str, handled: Option<Duration>, now: Instant) {
        let mut live = self.live();
        let Some(l) = live.get_mut(id) else {
            return;
        };
        l.calls = l.calls.saturating_sub(1);
        if let Some(d) = handled {
            let secs = d.as_secs_f64();
            l.handle_secs = Some(match l.handle_secs {
                Some(avg) => avg + HANDLE_SMOOTHING * (secs - avg),
                None => secs,
            });
            l.last_ended = Some(now);
        }
    }

    /// Agent `id` opened (`true`) or closed a desktop.
    pub fn desktop(&self, id: &str, open: bool) {
        if let Some(l) = self.live().get_mut(id) {
            l.desktops = if open {
                l.desktops + 1
            } else {
                l.desktops.saturating_sub(1)
            };
        }
    }

    /// Whether `id` is a configured agent.
    pub fn exists(&self, id: &str) -> bool {
        self.list.iter().any(|a| a.id == id)
    }

    /// Sets an agent's presence; false when there is no such agent.
    pub fn set_presence(&self, id: &str, presence: Presence) -> bool {
        match self.live().get_mut(id) {
            Some(l) => {
                l.presence = presence;
                true
            }
            None => false,
        }
    }
}

/// The request's Digest credentials. Credentials of another scheme are no credentials:
/// challenged anew (RFC 4475 §3.3.12).
fn digest_authorization(req: &Request) -> Option<&AuthParams> {
    req.headers.iter().find_map(|h| match h {
        Header::Authorization(a) if a.scheme.eq_ignore_ascii_case("Digest") => Some(a),
        _ => None,
    })
}

/// What a REGISTER asks of the bindings.
enum Requested {
    /// No Contact: list the bindings.
    Query,
    /// `Contact: *` with `Expires: 0`.
    RemoveAll,
    /// Each Contact URI with the seconds it asks for (0: remove it).
    Set(Vec<(Uri, u32)>),
}

fn requested_bindings(req: &Request) -> Result<Requested, Refusal> {
    let expires_header = match req.headers.other("Expires").next() {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|_| Refusal::Bad(format!("Expires: not a number of seconds: {v}")))?,
        ),
    };
    let contacts: Vec<&Contact> = req.headers.contacts().collect();
    if contacts.is_empty() {
        return Ok(Requested::Query);
    }
    if contacts.iter().any(|c| matches!(c, Contact::Star)) {
        // §10.3 step 6: `*` only alone and only with Expires: 0.
        if contacts.len() > 1 || expires_header != Some(0) {
            return Err(Refusal::Bad(
                "Contact: * must stand alone, with Expires: 0".into(),
            ));
        }
        return Ok(Requested::RemoveAll);
    }
    let mut set = Vec::new();
    for contact in contacts {
        let Contact::Addr(addr) = contact else {
            continue;
        };
        let asked = match addr
            .params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case("expires"))
        {
            Some(p) => p
                .value
                .as_deref()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| Refusal::Bad("Contact expires: not a number of seconds".into()))?,
            None => expires_header.unwrap_or(DEFAULT_EXPIRES),
        };
        if asked != 0 && asked < MIN_EXPIRES {
            return Err(Refusal::TooBrief(MIN_EXPIRES));
        }
        set.push((addr.uri.clone(), asked.min(MAX_EXPIRES)));
    }
    Ok(Requested::Set(set))
}

/// A Contact of a 200 to REGISTER: the URI with the seconds it has left.
fn contact_header(uri: &Uri, left_secs: u64) -> Header {
    Header::Contact(Contact::Addr(NameAddr {
        display: None,
        uri: uri.clone(),
        params: vec![Param {
            name: "expires".into(),
            value: Some(left_secs.to_string()),
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_sip::parse::parse_message;
    use baton_sip::Message;

    fn agents() -> Agents {
        let dana = AgentConfig {
            id: "a7".into(),
            name: "Dana".into(),
            sip_user: "dana".into(),
            password: "correct horse".into(),
            skills: [("fraud".to_owned(), 4)].into(),
            languages: vec!["en".into()],
            max_calls: 1,
            digest: vec![Algorithm::Sha256, Algorithm::Md5],
        };
        let sam = AgentConfig {
            id: "a8".into(),
            sip_user: "sam".into(),
            digest: vec![Algorithm::Sha256],
            ..dana.clone()
        };
        Agents::new(vec![dana, sam], "baton", [7; 32])
    }

    /// A REGISTER for `user`, with these extra header lines.
    fn register(user: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes()).expect("a REGISTER") {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    /// The Authorization line answering the first challenge of `answer` that uses
    /// `algorithm`.
    fn credentials(answer: &Answer, algorithm: &str, password: &str) -> String {
        let Err(Refusal::Challenge(challenges)) = answer else {
            panic!("expected a challenge, got {answer:?}");
        };
        let challenge = challenges
            .iter()
            .find_map(|h| match h {
                Header::WwwAuthenticate(c) if c.get("algorithm") == Some(algorithm) => Some(c),
                _ => None,
            })
            .expect("a challenge with that algorithm");
        let auth = auth::respond(
            challenge,
            "dana",
            password,
            "REGISTER",
            "sip:127.0.0.1",
            "c0ffee",
            1,
        )
        .expect("an answer");
        format!("{}\r\n", Header::Authorization(auth))
    }

    const CONTACT: &str = "Contact: <sip:dana@127.0.0.1:5070>\r\n";

    /// An INVITE from `from` to `to`, with these extra header lines.
    fn invite(from: &str, to: &str, extra: &str) -> Request {
        let text = format!(
            "INVITE sip:{to}@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-i\r\n\
             From: <sip:{from}@127.0.0.1>;tag=1\r\nTo: <sip:{to}@127.0.0.1>\r\n\
             Call-ID: consult-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}\
             Content-Length: 0\r\n\r\n"
        );
        match parse_message(text.as_bytes()).expect("an INVITE") {
            Message::Request(r) => r,
            Message::Response(_) => panic!("not a request"),
        }
    }

    #[test]
    fn an_agent_calling_a_colleague_proves_it_and_is_sent_to_their_phone() {
        let agents = agents();
        let t0 = Instant::now();
        assert_eq!(
            agents.colleague(&invite("sam", "bank", ""), t0, 1_000),
            None,
            "a call for a dialplan"
        );
        let Some(Colleague::Refused(Refusal::Challenge(challenges))) =
            agents.colleague(&invite("sam", "dana", ""), t0, 1_000)
        else {
            panic!("the caller is challenged");
        };
        let [Header::WwwAuthenticate(challenge)] = challenges.as_slice() else {
            panic!("Sam's one algorithm: {challenges:?}")
        };
        let answer = |user: &str, password: &str| {
            let auth = auth::respond(
                challenge,
                user,
                password,
                "INVITE",
                "sip:dana@127.0.0.1",
                "c0ffee",
                1,
            )
            .expect("an answer");
            format!("{}\r\n", Header::Authorization(auth))
        };
        let right = answer("sam", "correct horse");
        assert_eq!(
            agents.colleague(&invite("sam", "dana", &right), t0, 1_000),
            Some(Colleague::Unavailable),
            "Dana has no phone registered"
        );
        let dana = credentials(
            &agents.register(&register("dana", 1, CONTACT), t0, 1_000),
            "SHA-256",
            "correct horse",
        );
        let registered =
            agents.register(&register("dana", 2, &format!("{CONTACT}{dana}")), t0, 1_000);
        assert!(registered.is_ok(), "{registered:?}");
        assert_eq!(
            agents.colleague(&invite("sam", "dana", &right), t0, 1_000),
            Some(Colleague::Redirect(vec!["sip:dana@127.0.0.1:5070"
                .parse()
                .expect("uri")])),
        );
        for (who, refused) in [
            (answer("sam", "not it"), "a wrong password"),
            (answer("nobody", "correct horse"), "no agent's credentials"),
        ] {
            assert!(
                matches!(
                    agents.colleague(&invite("sam", "dana", &who), t0, 1_000),
                    Some(Colleague::Refused(Refusal::Forbidden(_)))
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn a_phone_registers_with_sha256_or_md5_and_the_binding_expires() {
        let agents = agents();
        let t0 = Instant::now();
        let first = agents.register(&register("dana", 1, CONTACT), t0, 1_000);
        let Err(Refusal::Challenge(challenges)) = &first else {
            panic!("{first:?}")
        };
        let order: Vec<_> = challenges
            .iter()
            .filter_map(|h| match h {
                Header::WwwAuthenticate(c) => c.get("algorithm"),
                _ => None,
            })
            .collect();
        assert_eq!(order, ["SHA-256", "MD5"], "strongest first");

        for (cseq, algorithm) in [(2, "SHA-256"), (3, "MD5")] {
            let auth = credentials(&first, algorithm, "correct horse");
            let answer = agents.register(
                &register("dana", cseq, &format!("{CONTACT}Expires: 120\r\n{auth}")),
                t0,
                1_000,
            );
            let Ok(contacts) = answer else {
                panic!("{algorithm}: {answer:?}")
            };
            assert_eq!(
                contacts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                ["Contact: <sip:dana@127.0.0.1:5070>;expires=120"]
            );
        }
        assert!(agents.views(t0)[0].registered);
        assert!(
            !agents.views(t0 + Duration::from_secs(121))[0].registered,
            "forgotten once expired"
        );
    }

    #[test]
    fn wrong_credentials_stale_nonces_and_bad_requests_get_their_answers() {
        let agents = agents();
        let t0 = Instant::now();
        let first = agents.register(&register("dana", 1, CONTACT), t0, 1_000);
        let unknown = "Authorization: NoOneKnowsThisScheme opaque-data=here\r\n";
        assert!(
            matches!(
                agents.register(
                    &register("dana", 2, &format!("{CONTACT}{unknown}")),
                    t0,
                    1_000
                ),
                Err(Refusal::Challenge(_))
            ),
            "an unknown scheme is challenged with one baton knows"
        );
        let wrong = credentials(&first, "SHA-256", "not it");
        assert!(matches!(
            agents.register(
                &register("dana", 2, &format!("{CONTACT}{wrong}")),
                t0,
                1_000
            ),
            Err(Refusal::Forbidden(_))
        ));
        assert!(!agents.views(t0)[0].registered);

        let right = credentials(&first, "MD5", "correct horse");
        let later = 1_000 + auth::NONCE_LIFETIME_SECS + 1;
        let Err(Refusal::Challenge(again)) = agents.register(
            &register("dana", 3, &format!("{CONTACT}{right}")),
            t0,
            later,
        ) else {
            panic!("an old nonce is challenged afresh");
        };
        assert!(again.iter().all(|h| matches!(
            h,
            Header::WwwAuthenticate(c) if c.get("stale") == Some("true")
        )));

        // Someone else's credentials for dana's registration.
        let theirs = right.replace("username=\"dana\"", "username=\"sam\"");
        assert!(matches!(
            agents.register(
                &register("dana", 4, &format!("{CONTACT}{theirs}")),
                t0,
                1_000
            ),
            Err(Refusal::Forbidden(_))
        ));
        assert!(
            matches!(
                agents.register(&register("nobody", 1, CONTACT), t0, 1_000),
                Err(Refusal::Challenge(_))
            ),
            "an unknown user is challenged like any other"
        );
        let theirs = right.replace("username=\"dana\"", "username=\"nobody\"");
        assert!(matches!(
            agents.register(
                &register("nobody", 2, &format!("{CONTACT}{theirs}")),
                t0,
                1_000
            ),
            Err(Refusal::Forbidden(_))
        ));
        let brief = format!("{CONTACT}Expires: 10\r\n{right}");
        assert_eq!(
            agents.register(&register("dana", 5, &brief), t0, 1_000),
            Err(Refusal::TooBrief(MIN_EXPIRES))
        );
        let star = format!("Contact: *\r\n{right}");
        assert!(matches!(
            agents.register(&register("dana", 6, &star), t0, 1_000),
            Err(Refusal::Bad(_))
        ));
    }

    #[test]
    fn a_phone_is_offered_only_its_agents_algorithms_and_cannot_answer_with_another() {
        let agents = agents();
        let t0 = Instant::now();
        let first = agents.register(&register("sam", 1, CONTACT), t0, 1_000);
        let Err(Refusal::Challenge(challenges)) = &first else {
            panic!("{first:?}")
        };
        let [Header::WwwAuthenticate(challenge)] = challenges.as_slice() else {
            panic!("one challenge: {challenges:?}")
        };
        assert_eq!(challenge.get("algorithm"), Some("SHA-256"));
        let mut downgraded = challenge.clone();
        for (name, value) in &mut downgraded.params {
            if name == "algorithm" {
                *value = "MD5".into();
            }
        }
        let auth = auth::respond(
            &downgraded,
            "sam",
            "correct horse",
            "REGISTER",
            "sip:127.0.0.1",
            "c0ffee",
            1,
        )
        .expect("an answer");
        let answer = agents.register(
            &register(
                "sam",
                2,
                &format!("{CONTACT}{}\r\n", Header::Authorization(auth)),
            ),
            t0,
            1_000,
        );
        assert!(
            matches!(&answer, Err(Refusal::Forbidden(why)) if why.contains("MD5 is not offered")),
            "{answer:?}"
        );
    }

    #[test]
    fn bindings_are_replaced_removed_and_kept_in_order() {
        let agents = agents();
        let t0 = Instant::now();
        let first = agents.register(&register("dana", 1, CONTACT), t0, 1_000);
        let auth = credentials(&first, "SHA-256", "correct horse");
        let two = format!(
            "{CONTACT}Contact: <sip:dana@192.0.2.9:5060>;expires=600\r\nExpires: 300\r\n{auth}"
        );
        let Ok(contacts) = agents.register(&register("dana", 2, &two), t0, 1_000) else {
            panic!("two phones register");
        };
        assert_eq!(contacts.len(), 2);
        assert_eq!(
            agents.register(&register("dana", 2, &two), t0, 1_000),
            Err(Refusal::OutOfOrder),
            "a replayed CSeq changes nothing"
        );
        let gone = format!("{CONTACT}Expires: 0\r\n{auth}");
        let Ok(contacts) = agents.register(&register("dana", 3, &gone), t0, 1_000) else {
            panic!("one phone leaves");
        };
        assert_eq!(contacts.len(), 1);
        let all = format!("Contact: *\r\nExpires: 0\r\n{auth}");
        assert_eq!(
            agents.register(&register("dana", 4, &all), t0, 1_000),
            Ok(Vec::new())
        );
        assert!(!agents.views(t0)[0].registered);
    }
}
