//! The agents' desktops: which agents have `/agent` open, and the messages between their
//! desktops and the calls offered to them. A call rings an agent's desktop here (with a
//! WebRTC offer when the desktop is the agent's phone, or only the screen-pop when a SIP
//! phone rings); what the agent does there (accept, decline, hang up, hand back) goes back
//! to the call as news of its agent leg, exactly like a SIP phone's answers. The hand back
//! itself ([`Handback`]) is the same from the API, the desktop and a phone's REFER to the
//! bot.

use crate::agents::Agents;
use crate::call::{AgentEvent, CallEvent};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Messages queued for one desktop; a desktop this far behind is not reading, and loses
/// the newest rather than holding memory for it.
const DESK_QUEUE: usize = 64;

/// What the server tells a desktop.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToDesk {
    /// A call is offered to the agent: the incoming-call card.
    Ring(Ring),
    /// The agent is on the call (answered here or on their phone).
    Connected { key: String },
    /// The offer or the call is over for this agent.
    Ended { key: String, why: &'static str },
}

/// A call offered to an agent.
#[derive(Debug, Clone, Serialize)]
pub struct Ring {
    /// The agent leg's name; the desktop quotes it in its answers.
    pub key: String,
    pub call_id: String,
    /// The caller's number, for the card.
    pub caller: Option<String>,
    #[serde(flatten)]
    pub phone: RingsOn,
    /// The disposition codes the call's dialplan leads somewhere (`[transfer] handback`),
    /// for the agent to pick from when they hand the caller back.
    pub dispositions: Vec<String>,
}

/// Where an offered call rings, as the desktop reads it (`"phone": "web"` with the SDP
/// `offer`, or `"phone": "sip"`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phone", rename_all = "snake_case")]
pub enum RingsOn {
    /// The desktop is the phone: the SDP offer to answer.
    Web { offer: String },
    /// The agent's SIP phone rings; the desktop shows the call.
    Sip,
}

/// What the agent did on their desktop, about leg `key`.
#[derive(Debug)]
pub enum FromDesk {
    /// Accepted, with the browser's SDP answer.
    Accept {
        answer: String,
    },
    Decline,
    /// Ended their part of the call (the caller goes back to the bot).
    Hangup,
    /// Gave the caller back to the bot, saying how they resolved the call.
    HandBack(Handback),
}

/// One signed-in desktop.
struct Desk {
    id: u64,
    tx: mpsc::Sender<ToDesk>,
}

/// An agent leg offered through the desktops.
struct Leg {
    agent: String,
    call_id: String,
    /// The call's news channel: weak, so that a leg left here never keeps a call alive.
    call: mpsc::WeakSender<CallEvent>,
    /// Whether the desktop is the phone (a WebRTC leg).
    web: bool,
    answered: bool,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    desks: HashMap<String, Vec<Desk>>,
    legs: HashMap<String, Leg>,
}

/// Every signed-in desktop, and the calls offered through them.
pub struct Desks {
    inner: Mutex<Inner>,
    /// Routing sees which agents have a desktop to take calls on.
    agents: Arc<Agents>,
}

/// A desktop's place in [`Desks`] while its socket is open.
pub struct Session {
    pub agent: String,
    pub id: u64,
    pub rx: mpsc::Receiver<ToDesk>,
}

/// Why a desktop's message about a leg was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    #[error("no call {0:?} is offered to you")]
    NoSuchLeg(String),
    #[error("the call has ended")]
    CallGone,
    #[error("this call rings your SIP phone: answer it there")]
    NotWeb,
    #[error("the call is already answered")]
    Answered,
    #[error("no agent is on this call")]
    NoAgent,
    #[error("the call is not answered yet: decline it instead")]
    NotAnswered,
}

impl Desks {
    pub fn new(agents: Arc<Agents>) -> Desks {
        Desks {
            inner: Mutex::default(),
            agents,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves usable maps.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A desktop of `agent` opens.
    pub fn sign_in(&self, agent: &str) -> Session {
        let (tx, rx) = mpsc::channel(DESK_QUEUE);
        self.agents.desktop(agent, true);
        let mut inner = self.inner();
        inner.next_id += 1;
        let id = inner.next_id;
        inner
            .desks
            .entry(agent.to_owned())
            .or_default()
            .push(Desk { id, tx });
        Session {
            agent: agent.to_owned(),
            id,
            rx,
        }
    }

    /// A desktop closed. When it was the agent's last, the calls ringing there are
    /// declined and a call taken there ends: nobody is left to talk.
    pub fn sign_out(&self, session: &Session) {
        self.agents.desktop(&session.agent, false);
        let mut inner = self.inner();
        let last = match inner.desks.get_mut(&session.agent) {
            Some(list) => {
                list.retain(|d| d.id != session.id);
                list.is_empty()
            }
            None => true,
        };
        if !last {
            return;
        }
        inner.desks.remove(&session.agent);
        let gone: Vec<String> = inner
            .legs
            .iter()
            .filter(|(_, l)| l.agent == session.agent && l.web)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(leg) = inner.legs.remove(&key) {
                let event = if leg.answered {
                    AgentEvent::Bye
                } else {
                    AgentEvent::Failed(480)
                };
                tell_call(&leg.call, key, event);
            }
        }
    }

    /// Offers a call to `agent`'s desktops; `events` is the call's news channel. False
    /// when none is open (a WebRTC leg then cannot ring).
    pub fn ring(&self, agent: &str, ring: Ring, events: mpsc::WeakSender<CallEvent>) -> bool {
        let mut inner = self.inner();
        let web = matches!(ring.phone, RingsOn::Web { .. });
        inner.legs.insert(
            ring.key.clone(),
            Leg {
                agent: agent.to_owned(),
                call_id: ring.call_id.clone(),
                call: events,
                web,
                answered: false,
            },
        );
        send(&inner, agent, &ToDesk::Ring(ring))
    }

    /// The agent is on the call on leg `key`.
    pub fn connected(&self, key: &str) {
        let mut inner = self.inner();
        let Some(leg) = inner.legs.get_mut(key) else {
            return;
        };
        leg.answered = true;
        let agent = leg.agent.clone();
        send(
            &inner,
            &agent,
            &ToDesk::Connected {
                key: key.to_owned(),
            },
        );
    }

    /// Leg `key` is over for its agent.
    pub fn ended(&self, key: &str, why: &'static str) {
        let mut inner = self.inner();
        if let Some(leg) = inner.legs.remove(key) {
            send(
                &inner,
                &leg.agent,
                &ToDesk::Ended {
                    key: key.to_owned(),
                    why,
                },
            );
        }
    }

    /// What `agent` did on their desktop about leg `key`, passed to its call.
    pub fn act(&self, agent: &str, key: &str, what: FromDesk) -> Result<(), DeskError> {
        let mut inner = self.inner();
        let leg = inner
            .legs
            .get_mut(key)
            .filter(|l| l.agent == agent)
            .ok_or_else(|| DeskError::NoSuchLeg(key.to_owned()))?;
        let event = match what {
            FromDesk::Accept { answer } => {
                if !leg.web {
                    return Err(DeskError::NotWeb);
                }
                if leg.answered {
                    return Err(DeskError::Answered);
                }
                AgentEvent::Accepted(answer)
            }
            // Hanging up a call not yet answered turns it down.
            FromDesk::Decline | FromDesk::Hangup => AgentEvent::HungUp,
            FromDesk::HandBack(back) => {
                if !leg.answered {
                    return Err(DeskError::NotAnswered);
                }
                AgentEvent::HandedBack(Box::new((agent.to_owned(), back)))
            }
        };
        let call = leg.call.clone();
        drop(inner);
        // The call says when the leg is over ([`Desks::ended`]); one that is gone cannot.
        if tell_call(&call, key.to_owned(), event) {
            Ok(())
        } else {
            self.inner().legs.remove(key);
            Err(DeskError::CallGone)
        }
    }
}

/// The SIP user that names the bot: an agent's phone transferring the call there hands
/// it back. No agent may register as it.
pub const BOT_USER: &str = "bot";

/// What an agent hands back to the bot with the call (`POST /v1/calls/{id}/handback`):
/// how they resolved it, and the slots the bot carries on with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handback {
    /// What the agent did, as a code of the contact centre's (`card_blocked`).
    pub disposition: String,
    #[serde(default)]
    pub notes: Option<String>,
    /// Values for the bot's slots (`{"card": "4821"}`).
    #[serde(default)]
    pub slots: serde_json::Map<String, serde_json::Value>,
    /// Follow-ups of the call's dialplan to send or schedule (`["card_blocked_sms"]`),
    /// filled from the context once the slots are in it.
    #[serde(default)]
    pub followups: Vec<String>,
}

/// Longest disposition code, and longest notes, in characters.
pub const MAX_DISPOSITION: usize = 64;
const MAX_NOTES: usize = 2000;
/// Most slots one hand back sets, and the longest text value.
const MAX_SLOTS: usize = 32;
/// Most follow-ups one hand back asks for.
const MAX_FOLLOWUPS: usize = 8;
const MAX_SLOT_TEXT: usize = 200;

/// The disposition of a hand back from a phone that names none.
pub const DEFAULT_DISPOSITION: &str = "handed_back";

/// Whether `code` can be a disposition: 1 to [`MAX_DISPOSITION`] ASCII letters, digits, `_`
/// or `-`.
pub fn is_disposition(code: &str) -> bool {
    is_code(code, MAX_DISPOSITION)
}

fn is_code(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Handback {
    /// The hand back an agent's phone asks for by transferring the call to the bot (a
    /// REFER to `sip:bot@…`, the reserved user): its disposition is the URI's
    /// `disposition` parameter, [`DEFAULT_DISPOSITION`] without one. `None` when `target`
    /// is not the bot; an error naming what is wrong with the disposition.
    pub fn from_refer(target: &baton_sip::Uri) -> Option<Result<Handback, String>> {
        let baton_sip::Uri::Sip(uri) = target else {
            return None;
        };
        if uri.user.as_deref() != Some(BOT_USER) {
            return None;
        }
        let disposition = match baton_sip::message::find_param(&uri.params, "disposition") {
            None => DEFAULT_DISPOSITION.to_owned(),
            Some(p) => p.value.clone().unwrap_or_default(),
        };
        let back = Handback {
            disposition,
            notes: None,
            slots: serde_json::Map::new(),
            followups: Vec::new(),
        };
        Some(back.check().map(|()| back))
    }

    /// Checks what an agent sent; the error names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let code = is_code;
        if !code(&self.disposition, MAX_DISPOSITION) {
            return Err(format!(
                "disposition: expected 1 to {MAX_DISPOSITION} letters, digits, _ or -"
            ));
        }
        if self
            .notes
            .as_ref()
            .is_some_and(|n| n.chars().count() > MAX_NOTES)
        {
            return Err(format!("notes: at most {MAX_NOTES} characters"));
        }
        if self.slots.len() > MAX_SLOTS {
            return Err(format!("slots: at most {MAX_SLOTS}"));
        }
        for (name, value) in &self.slots {
            if !code(name, MAX_DISPOSITION) || name.contains('-') {
                return Err(format!(
                    "slots: {name:?} is not a slot name (letters, digits and _)"
                ));
            }
            let fits = match value {
                serde_json::Value::String(t) => t.chars().count() <= MAX_SLOT_TEXT,
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "slots.{name}: expected a number, true or false, or text of at most \
                     {MAX_SLOT_TEXT} characters"
                ));
            }
        }
        if self.followups.len() > MAX_FOLLOWUPS {
            return Err(format!("followups: at most {MAX_FOLLOWUPS}"));
        }
        if let Some(name) = self.followups.iter().find(|n| !code(n, MAX_DISPOSITION)) {
            return Err(format!(
                "followups: {name:?} is not a follow-up's name (letters, digits, _ and -)"
            ));
        }
        Ok(())
    }
}

impl Desks {
    /// The agent on call `call_id` (`agent`, or whoever it is when `None`) gives it back
    /// to the bot; the agent's id, or why not.
    pub fn hand_back(
        &self,
        call_id: &str,
        agent: Option<&str>,
        handback: Handback,
    ) -> Result<String, DeskError> {
        let inner = self.inner();
        let (key, leg) = inner
            .legs
            .iter()
            .find(|(_, l)| l.call_id == call_id && l.answered && agent.is_none_or(|a| a == l.agent))
            .ok_or(DeskError::NoAgent)?;
        let (key, who, call) = (key.clone(), leg.agent.clone(), leg.call.clone());
        drop(inner);
        let event = AgentEvent::HandedBack(Box::new((who.clone(), handback)));
        if tell_call(&call, key, event) {
            Ok(who)
        } else {
            Err(DeskError::CallGone)
        }
    }
}

fn send(inner: &Inner, agent: &str, msg: &ToDesk) -> bool {
    let Some(desks) = inner.desks.get(agent) else {
        return false;
    };
    let mut any = false;
    for d in desks {
        match d.tx.try_send(msg.clone()) {
            Ok(()) => any = true,
            Err(e) => warn!(agent, desk = d.id, error = %e, "desktop not reading: message lost"),
        }
    }
    any
}

fn tell_call(call: &mpsc::WeakSender<CallEvent>, key: String, event: AgentEvent) -> bool {
    let Some(tx) = call.upgrade() else {
        debug!(agent_leg = %key, "desktop news for a call that has ended");
        return false;
    };
    tx.try_send(CallEvent::Agent { key, event }).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_back_names_what_is_wrong_with_it() {
        let back = |json: &str| -> Handback { serde_json::from_str(json).expect("parses") };
        let ok = back(r#"{"disposition": "card_blocked", "slots": {"card": "4821", "n": 2}}"#);
        assert_eq!(ok.check(), Ok(()));
        for (json, why) in [
            (r#"{"disposition": ""}"#, "disposition:"),
            (r#"{"disposition": "a b"}"#, "disposition:"),
            (
                r#"{"disposition": "x", "slots": {"a-b": 1}}"#,
                "slots: \"a-b\" is not a slot name",
            ),
            (
                r#"{"disposition": "x", "slots": {"card": null}}"#,
                "slots.card:",
            ),
            (
                r#"{"disposition": "x", "slots": {"card": {"a": 1}}}"#,
                "slots.card:",
            ),
        ] {
            let err = back(json).check().expect_err(json);
            assert!(err.starts_with(why), "{json}: {err}");
        }
        let long = format!(r#"{{"disposition": "x", "notes": "{}"}}"#, "n".repeat(2001));
        assert!(back(&long).check().is_err());
        let many: Vec<String> = (0..33).map(|i| format!(r#""s{i}": 1"#)).collect();
        let many = format!(r#"{{"disposition": "x", "slots": {{{}}}}}"#, many.join(","));
        assert!(back(&many).check().is_err());
    }

    fn desks() -> Desks {
        Desks::new(Arc::new(Agents::new(Vec::new(), "baton", [0; 32])))
    }

    fn ring(key: &str, web: bool) -> Ring {
        Ring {
            key: key.into(),
            call_id: "c1".into(),
            caller: Some("+441".into()),
            phone: if web {
                RingsOn::Web {
                    offer: "v=0".into(),
                }
            } else {
                RingsOn::Sip
            },
            dispositions: vec!["card_blocked".into()],
        }
    }

    #[test]
    fn a_desktop_answer_reaches_the_call_and_only_the_agent_offered_may_give_it() {
        let desks = desks();
        let mut s = desks.sign_in("dana");
        let (tx, mut rx) = mpsc::channel(4);
        assert!(desks.ring("dana", ring("k1", true), tx.downgrade()));
        assert!(matches!(s.rx.try_recv(), Ok(ToDesk::Ring(r)) if r.key == "k1"));
        assert_eq!(
            desks.act("sam", "k1", FromDesk::Decline),
            Err(DeskError::NoSuchLeg("k1".into()))
        );
        desks
            .act(
                "dana",
                "k1",
                FromDesk::Accept {
                    answer: "v=0 answer".into(),
                },
            )
            .unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(CallEvent::Agent { event: AgentEvent::Accepted(a), .. }) if a == "v=0 answer"
        ));
        desks.connected("k1");
        assert_eq!(
            desks.act("dana", "k1", FromDesk::Accept { answer: "x".into() }),
            Err(DeskError::Answered)
        );
        desks.act("dana", "k1", FromDesk::Hangup).unwrap();
        assert!(matches!(
            rx.try_recv(),
            Ok(CallEvent::Agent {
                event: AgentEvent::HungUp,
                ..
            })
        ));
        desks.ended("k1", "hung up");
        assert!(matches!(s.rx.try_recv(), Ok(ToDesk::Connected { .. })));
        assert!(matches!(
            s.rx.try_recv(),
            Ok(ToDesk::Ended { why: "hung up", .. })
        ));
    }

    #[test]
    fn only_the_agent_on_an_answered_call_hands_it_back_from_the_desktop() {
        let desks = desks();
        let mut s = desks.sign_in("dana");
        let (tx, mut rx) = mpsc::channel(4);
        desks.ring("dana", ring("k1", false), tx.downgrade());
        let Ok(ToDesk::Ring(r)) = s.rx.try_recv() else {
            panic!("the call rings on the desktop");
        };
        assert_eq!(r.dispositions, ["card_blocked"]);
        let back = || {
            FromDesk::HandBack(Handback {
                disposition: "card_blocked".into(),
                notes: Some("done".into()),
                slots: serde_json::Map::new(),
                followups: Vec::new(),
            })
        };
        assert_eq!(desks.act("dana", "k1", back()), Err(DeskError::NotAnswered));
        desks.connected("k1");
        assert_eq!(
            desks.act("sam", "k1", back()),
            Err(DeskError::NoSuchLeg("k1".into()))
        );
        desks.act("dana", "k1", back()).unwrap();
        match rx.try_recv() {
            Ok(CallEvent::Agent {
                key,
                event: AgentEvent::HandedBack(b),
            }) => {
                assert_eq!(key, "k1");
                assert_eq!(
                    (b.0.as_str(), b.1.disposition.as_str()),
                    ("dana", "card_blocked")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refer_to_the_bot_is_a_hand_back_with_the_uris_disposition() {
        let refer = |uri: &str| {
            let uri: baton_sip::Uri = baton_sip::uri::parse_uri(uri).expect("a SIP URI");
            Handback::from_refer(&uri)
        };
        assert!(refer("sip:dana@127.0.0.1").is_none());
        assert!(refer("sip:127.0.0.1").is_none());
        assert!(refer("tel:+441234").is_none());
        let back = refer("sip:bot@127.0.0.1;disposition=card_blocked");
        assert_eq!(
            back.map(|b| b.map(|b| b.disposition)),
            Some(Ok("card_blocked".into()))
        );
        let back = refer("sip:bot@baton.example.com:5070");
        assert_eq!(
            back.map(|b| b.map(|b| b.disposition)),
            Some(Ok("handed_back".into()))
        );
        for bad in [
            "sip:bot@127.0.0.1;disposition",
            "sip:bot@127.0.0.1;disposition=card.blocked",
            &format!("sip:bot@127.0.0.1;disposition={}", "x".repeat(65)),
        ] {
            let err = refer(bad).expect("to the bot").expect_err(bad);
            assert!(
                err.starts_with("disposition: expected 1 to 64"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_last_desktop_closing_ends_its_web_calls_but_not_sip_ones() {
        let desks = desks();
        let one = desks.sign_in("dana");
        let two = desks.sign_in("dana");
        let (tx, mut rx) = mpsc::channel(4);
        desks.ring("dana", ring("web", true), tx.downgrade());
        desks.ring("dana", ring("sip", false), tx.downgrade());
        desks.sign_out(&one);
        assert!(rx.try_recv().is_err(), "another desktop is still open");
        desks.sign_out(&two);
        assert!(matches!(
            rx.try_recv(),
            Ok(CallEvent::Agent { key, event: AgentEvent::Failed(480) }) if key == "web"
        ));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_sip_call_is_answered_on_the_phone_not_the_desktop() {
        let desks = desks();
        let _s = desks.sign_in("dana");
        let (tx, _rx) = mpsc::channel(4);
        desks.ring("dana", ring("k", false), tx.downgrade());
        assert_eq!(
            desks.act("dana", "k", FromDesk::Accept { answer: "x".into() }),
            Err(DeskError::NotWeb)
        );
        drop(tx);
        assert_eq!(
            desks.act("dana", "k", FromDesk::Decline),
            Err(DeskError::CallGone)
        );
    }
}
