//! The agents' desktops: which agents have `/agent` open, and the messages between their
//! desktops and the calls offered to them. A call rings an agent's desktop here (with a
//! WebRTC offer when the desktop is the agent's phone, or only the screen-pop when a SIP
//! phone rings); what the agent does there (accept, decline, hang up) goes back to the
//! call as news of its agent leg, exactly like a SIP phone's answers.

use crate::agents::Agents;
use crate::call::{AgentEvent, CallEvent};
use serde::Serialize;
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
}

/// One signed-in desktop.
struct Desk {
    id: u64,
    tx: mpsc::Sender<ToDesk>,
}

/// An agent leg offered through the desktops.
struct Leg {
    agent: String,
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
