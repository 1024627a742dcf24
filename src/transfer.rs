//! The warm transfer of one call from the bot to a person, as a state machine without IO:
//! the call feeds it what happened (an agent's phone rang, answered, refused, hung up; the
//! caller left; time passed) and carries out the [`Action`]s it asks for.
//!
//! ```text
//!  start ──► Ringing(agent 1) ──answer──► Whisper ──whispered──► Bridged ──agent BYE──► back to the bot
//!               │ no answer (ring time), busy, decline, unreachable
//!               ▼
//!            Ringing(agent 2) … ──no one left──► back to the bot, with a callback offer
//! ```
//!
//! The caller is never left in silence: the first action is always something to say, and
//! while a phone rings the caller hears hold music with an update every `update` interval;
//! the call plays them. Every agent offered the call is counted against their load from the
//! moment their phone rings ([`Action::Release`] gives it back).
//!
//! A call that asks for a skill rings only agents with it until it has waited the
//! settings' [`Overflow`] time since the transfer started, and queues while none of them
//! is free; after that, the agents the overflow names may take it too.

use crate::agents::{Phone, Reachable};
use crate::routing::{self, Need, Overflow, Weights};
use baton_sip::dialog::Replaces;
use serde::Serialize;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a transfer is carried out; the dialplan's `[transfer]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How long an agent's phone rings before the next agent is tried.
    pub ring: Duration,
    /// How often the caller on hold hears how things stand.
    pub update: Duration,
    /// How long a caller waits in the queue for a busy agent before being offered a
    /// callback instead.
    pub queue: Duration,
    /// When a call that asks for a skill may go to agents without it, and to which.
    pub overflow: Overflow,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            ring: Duration::from_secs(20),
            update: Duration::from_secs(20),
            queue: Duration::from_secs(300),
            overflow: Overflow::default(),
        }
    }
}

/// What became of an escalation, as `GET /v1/escalations` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every agent who could take it is busy: the call waits in the queue.
    Queued,
    /// An agent's phone is ringing.
    Ringing,
    /// An agent answered and is talking with the caller.
    Connected,
    /// The agent hung up and the bot has the caller again.
    Returned,
    /// No agent could take the call: the bot has the caller again, with a callback offered.
    NoAgent,
    /// The caller hung up before an agent joined.
    Abandoned,
    /// The caller hung up while with the agent.
    Completed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Queued => "queued",
            Outcome::Ringing => "ringing",
            Outcome::Connected => "connected",
            Outcome::Returned => "returned",
            Outcome::NoAgent => "no_agent",
            Outcome::Abandoned => "abandoned",
            Outcome::Completed => "completed",
        }
    }
}

/// Why an agent did not take the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// Rang out.
    NoAnswer,
    /// 486 or 600: on another call.
    Busy,
    /// 603, or another refusal.
    Declined,
    /// No answer at all from their phone (timeout, transport error, 408, 480, 5xx).
    Unreachable,
}

impl Missed {
    /// The reason of a final SIP status other than 2xx.
    pub fn of_status(status: u16) -> Missed {
        match status {
            486 | 600 => Missed::Busy,
            408 | 480 | 500..=599 => Missed::Unreachable,
            _ => Missed::Declined,
        }
    }

    /// The status an agent who transferred the call to this one is told (RFC 3515 §2.4.5).
    fn status(self) -> u16 {
        match self {
            Missed::NoAnswer => 480,
            Missed::Busy => 486,
            Missed::Declined => 603,
            Missed::Unreachable => 503,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Missed::NoAnswer => "no answer",
            Missed::Busy => "busy",
            Missed::Declined => "declined",
            Missed::Unreachable => "unreachable",
        }
    }
}

/// An agent the call is offered to.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub phone: Phone,
    /// Has the skill the call asks for.
    pub skilled: bool,
    pub score: f64,
}

/// What the call should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Say this to the caller, after what is playing.
    Tell(String),
    /// Ring `agent` on a new leg named `key`.
    Dial { key: String, agent: Offer },
    /// Ring `agent` on a new leg named `key` that takes the place of `replaces`, their
    /// consultation call with the agent who transfers the call to them (an attended
    /// transfer, RFC 3891): they know the call already, so they hear no whisper.
    Replace {
        key: String,
        agent: Offer,
        replaces: Replaces,
    },
    /// End the agent leg `key`: CANCEL while it rings, BYE once answered.
    Drop { key: String },
    /// The agent on leg `key` answered: play them the summary, which the caller does not hear.
    Whisper { key: String },
    /// Join the caller and the agent on leg `key`.
    Bridge { key: String },
    /// Give the caller back to the bot; `callback` when no one could take the call.
    Return { callback: bool },
    /// Agent `id` no longer has this call; `handled` is how long they talked.
    Release {
        id: String,
        handled: Option<Duration>,
    },
    /// Keep the agent leg `key` aside, hearing nothing, while the colleague they transfer
    /// the call to is rung: it is dropped when the colleague answers, resumed if not.
    Aside { key: String },
    /// Join the caller and the agent on leg `key` again, which was set aside.
    Resume { key: String },
    /// Tell the agent on leg `key`, who asked to transfer the call (REFER), how it went:
    /// the final status of the transfer target (200 when they answered).
    Referred { key: String, status: u16 },
    /// Where the escalation stands, for its record and the call's context.
    Outcome {
        agent: Option<String>,
        outcome: Outcome,
        /// The agents who did not take it, and why, in order.
        missed: Vec<(String, &'static str)>,
    },
}

#[derive(Debug)]
enum State {
    Ringing {
        agent: Offer,
        key: String,
        since: Instant,
        /// The colleague was consulted before an attended transfer: no whisper.
        consulted: bool,
    },
    Whisper {
        agent: Offer,
        key: String,
        answered: Instant,
    },
    Bridged {
        agent: Offer,
        key: String,
        answered: Instant,
    },
    /// Waiting in the queue for an agent who is busy now.
    Queued {
        since: Instant,
    },
    Over,
}

/// How often a queued call looks whether an agent has come free.
const QUEUE_CHECK: Duration = Duration::from_secs(1);

/// The agents, as the transfer sees them: read only when an agent must be chosen.
pub trait Pool {
    /// The agents with a registered phone now.
    fn reachable(&mut self) -> Vec<Reachable>;
    /// Counts a call against agent `id`'s load; false when they have no room (another
    /// call took them since [`Pool::reachable`]).
    fn claim(&mut self, id: &str) -> bool;
    /// A fresh name for an agent leg.
    fn new_key(&mut self) -> String;
    /// Puts the call in the queue for a busy agent, or for the agents it overflows to;
    /// its place (1 is next) and about how many seconds it will wait. `None`, and nothing
    /// queued, when no available agent could ever take it.
    fn enqueue(&mut self, need: &Need, overflow: &Overflow) -> Option<(usize, Option<u64>)>;
    /// The call's place in the queue and its wait, while it is queued.
    fn queued(&mut self) -> Option<(usize, Option<u64>)>;
    /// Whether an agent with room now should take this call: it is the first in the queue
    /// they can serve.
    fn served(&mut self) -> bool;
    /// Takes the call out of the queue.
    fn dequeue(&mut self);
}

/// What the prompts say about the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Words {
    /// The caller's first name, when the bot verified them.
    pub first_name: Option<String>,
    /// The skill the call asks for (`fraud`).
    pub skill: Option<String>,
    /// What the caller wants, as a phrase that reads after "help you" ("block a lost or
    /// stolen card").
    pub want: Option<String>,
}

/// One call's transfer.
#[derive(Debug)]
pub struct Transfer {
    settings: Settings,
    need: Need,
    weights: Weights,
    words: Words,
    state: State,
    /// When the transfer started: how long the call has waited, for its overflow.
    started: Instant,
    /// Agents offered the call already, with why they did not take it.
    missed: Vec<(String, &'static str)>,
    /// The agent who asked to transfer the call to a colleague (their leg, who they are,
    /// when they answered), until the colleague answers or does not.
    referrer: Option<(String, Offer, Instant)>,
    next_update: Instant,
    next_queue_check: Instant,
    updates: u32,
    actions: VecDeque<Action>,
    legs: u32,
}

impl Transfer {
    /// Starts the transfer at `now`: the best agent of the `pool` is rung, and the caller
    /// told.
    pub fn start(
        settings: Settings,
        need: Need,
        weights: Weights,
        words: Words,
        pool: &mut dyn Pool,
        now: Instant,
    ) -> Transfer {
        let mut t = Transfer {
            next_update: now + settings.update,
            next_queue_check: now + QUEUE_CHECK,
            settings,
            need,
            weights,
            words,
            state: State::Over,
            started: now,
            missed: Vec::new(),
            referrer: None,
            updates: 0,
            actions: VecDeque::new(),
            legs: 0,
        };
        if t.ring_next(pool, now) {
            let line = t.bridging_line();
            t.actions.push_front(Action::Tell(line));
        }
        t
    }

    /// The next thing to do, in order.
    pub fn poll(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The agent leg ringing or talking now, if any.
    #[cfg(test)]
    fn agent_leg(&self) -> Option<&str> {
        match &self.state {
            State::Ringing { key, .. }
            | State::Whisper { key, .. }
            | State::Bridged { key, .. } => Some(key),
            State::Queued { .. } | State::Over => None,
        }
    }

    /// The skill the call asks for.
    pub fn skill(&self) -> Option<&str> {
        self.need.skill.as_deref()
    }

    /// Whether the caller and the agent talk to each other now.
    pub fn bridged(&self) -> bool {
        matches!(self.state, State::Bridged { .. })
    }

    /// Whether the transfer has ended (the caller is back with the bot, or gone).
    #[cfg(test)]
    fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// The agent on leg `key` answered at `now`.
    pub fn answered(&mut self, key: &str, now: Instant) {
        let State::Ringing { key: k, .. } = &self.state else {
            return;
        };
        if k != key {
            return;
        }
        let State::Ringing {
            agent,
            key,
            consulted,
            ..
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            return;
        };
        if !consulted {
            self.actions.push_back(Action::Whisper { key: key.clone() });
        }
        self.state = State::Whisper {
            agent,
            key: key.clone(),
            answered: now,
        };
        if consulted {
            self.whispered(&key, now);
        }
    }

    /// The whisper to the agent on leg `key` has played at `now`: the legs are joined.
    pub fn whispered(&mut self, key: &str, now: Instant) {
        let State::Whisper { key: k, .. } = &self.state else {
            return;
        };
        if k != key {
            return;
        }
        let State::Whisper {
            agent,
            key,
            answered,
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            return;
        };
        self.actions.push_back(Action::Bridge { key: key.clone() });
        self.outcome(Some(agent.id.clone()), Outcome::Connected);
        self.referral_done(200, now);
        self.state = State::Bridged {
            agent,
            key,
            answered,
        };
    }

    /// The agent leg `key` failed before it was answered (`why`); the next agent is rung.
    pub fn missed(&mut self, key: &str, why: Missed, pool: &mut dyn Pool, now: Instant) {
        if !matches!(&self.state, State::Ringing { key: k, .. } if k == key) {
            return;
        }
        let State::Ringing { agent, .. } = std::mem::replace(&mut self.state, State::Over) else {
            return;
        };
        self.actions.push_back(Action::Release {
            id: agent.id.clone(),
            handled: None,
        });
        self.missed.push((agent.id, why.as_str()));
        if let Some((key, agent, answered)) = self.referrer.take() {
            // The colleague cannot take it: the agent who asked has the caller back, and
            // hears why (RFC 5589 §6).
            self.actions.push_back(Action::Referred {
                key: key.clone(),
                status: why.status(),
            });
            self.actions.push_back(Action::Resume { key: key.clone() });
            self.outcome(Some(agent.id.clone()), Outcome::Connected);
            self.state = State::Bridged {
                agent,
                key,
                answered,
            };
            return;
        }
        if self.ring_next(pool, now) {
            self.actions.push_back(Action::Tell(self.next_agent_line()));
        }
    }

    /// The agent on leg `key` asked to transfer the call to agent `to` (a REFER): the
    /// caller holds while the colleague's phone rings; the agent who asked is let go once
    /// the colleague answers, and has the caller back if they cannot. With `replaces`
    /// (attended: the two agents have talked already on that dialog) the colleague's phone
    /// replaces that call with this one. The status to refuse the transfer with when the
    /// target is no agent, or cannot take the call now.
    pub fn referred(
        &mut self,
        key: &str,
        to: Option<&str>,
        replaces: Option<Replaces>,
        pool: &mut dyn Pool,
        now: Instant,
    ) -> Result<(), u16> {
        let (State::Whisper { key: k, .. } | State::Bridged { key: k, .. }) = &self.state else {
            return Err(491); // mid-transfer already
        };
        if k != key {
            return Err(481);
        }
        let Some(to) = to else {
            return Err(404);
        };
        let reachable = pool.reachable();
        let Some(r) = reachable.iter().find(|r| r.candidate.id == to) else {
            return Err(480);
        };
        if r.candidate.id == self.current_agent().map_or("", |a| a.id.as_str()) {
            return Err(482); // to themself
        }
        if replaces.is_some() && r.phone == Phone::Desktop {
            // A desktop's softphone has no SIP dialog a Replaces could name.
            return Err(481);
        }
        if !r.candidate.available || !pool.claim(to) {
            return Err(486);
        }
        let (State::Whisper {
            agent,
            key,
            answered,
        }
        | State::Bridged {
            agent,
            key,
            answered,
        }) = std::mem::replace(&mut self.state, State::Over)
        else {
            return Err(500);
        };
        self.actions.push_back(Action::Aside { key: key.clone() });
        self.referrer = Some((key, agent, answered));
        let offer = Offer {
            id: r.candidate.id.clone(),
            name: r.name.clone(),
            phone: r.phone.clone(),
            skilled: true,
            score: 0.0,
        };
        let key = pool.new_key();
        self.legs += 1;
        self.actions.push_back(Action::Tell(format!(
            "Please hold while I put you through to my colleague {}.",
            offer.name
        )));
        let consulted = replaces.is_some();
        self.actions.push_back(match replaces {
            Some(replaces) => Action::Replace {
                key: key.clone(),
                agent: offer.clone(),
                replaces,
            },
            None => Action::Dial {
                key: key.clone(),
                agent: offer.clone(),
            },
        });
        self.outcome(Some(offer.id.clone()), Outcome::Ringing);
        self.state = State::Ringing {
            agent: offer,
            key,
            since: now,
            consulted,
        };
        Ok(())
    }

    /// The id of the agent who answered on leg `key` and is talking on it now.
    pub fn agent_on(&self, key: &str) -> Option<&str> {
        match &self.state {
            State::Whisper { agent, key: k, .. } | State::Bridged { agent, key: k, .. }
                if k == key =>
            {
                Some(&agent.id)
            }
            _ => None,
        }
    }

    /// The agent ringing or talking now.
    fn current_agent(&self) -> Option<&Offer> {
        match &self.state {
            State::Ringing { agent, .. }
            | State::Whisper { agent, .. }
            | State::Bridged { agent, .. } => Some(agent),
            State::Queued { .. } | State::Over => None,
        }
    }

    /// The colleague an agent transferred the call to answered (200), or the caller left
    /// (487): the agent who asked hears how it went and is let go.
    fn referral_done(&mut self, status: u16, now: Instant) {
        let Some((key, agent, answered)) = self.referrer.take() else {
            return;
        };
        self.actions.push_back(Action::Referred {
            key: key.clone(),
            status,
        });
        self.actions.push_back(Action::Drop { key });
        self.actions.push_back(Action::Release {
            id: agent.id,
            handled: Some(now.saturating_duration_since(answered)),
        });
    }

    /// The agent leg `key` ended from the agent's side once answered: the caller goes back
    /// to the bot. An agent who transferred the call leaves without taking it with them.
    pub fn agent_left(&mut self, key: &str, now: Instant) {
        if let Some((_, agent, answered)) = self.referrer.take_if(|(k, ..)| k == key) {
            self.actions.push_back(Action::Release {
                id: agent.id,
                handled: Some(now.saturating_duration_since(answered)),
            });
            return;
        }
        match std::mem::replace(&mut self.state, State::Over) {
            State::Whisper {
                agent,
                key: k,
                answered,
            }
            | State::Bridged {
                agent,
                key: k,
                answered,
            } if k == key => {
                self.actions.push_back(Action::Release {
                    id: agent.id.clone(),
                    handled: Some(now.saturating_duration_since(answered)),
                });
                self.outcome(Some(agent.id), Outcome::Returned);
                self.actions.push_back(Action::Return { callback: false });
            }
            other => self.state = other,
        }
    }

    /// The caller hung up at `now`: the agent leg, if any, ends too.
    pub fn caller_left(&mut self, pool: &mut dyn Pool, now: Instant) {
        self.referral_done(487, now);
        match std::mem::replace(&mut self.state, State::Over) {
            State::Queued { .. } => {
                pool.dequeue();
                self.outcome(None, Outcome::Abandoned);
            }
            State::Ringing { agent, key, .. } => {
                self.actions.push_back(Action::Drop { key });
                self.actions.push_back(Action::Release {
                    id: agent.id,
                    handled: None,
                });
                self.outcome(None, Outcome::Abandoned);
            }
            State::Whisper {
                agent,
                key,
                answered,
            } => self.hang_up_agent(agent, key, answered, Outcome::Abandoned, now),
            State::Bridged {
                agent,
                key,
                answered,
            } => self.hang_up_agent(agent, key, answered, Outcome::Completed, now),
            State::Over => {}
        }
    }

    fn hang_up_agent(
        &mut self,
        agent: Offer,
        key: String,
        answered: Instant,
        outcome: Outcome,
        now: Instant,
    ) {
        self.actions.push_back(Action::Drop { key });
        self.actions.push_back(Action::Release {
            id: agent.id.clone(),
            handled: Some(now.saturating_duration_since(answered)),
        });
        self.outcome(Some(agent.id), outcome);
    }

    /// Time passing: a phone that rang too long is given up, and the caller on hold hears
    /// how things stand.
    pub fn tick(&mut self, pool: &mut dyn Pool, now: Instant) {
        if let State::Queued { since } = self.state {
            if now >= self.next_queue_check {
                self.next_queue_check = now + QUEUE_CHECK;
                if now.saturating_duration_since(since) >= self.settings.queue {
                    pool.dequeue();
                    self.no_agent();
                    return;
                }
                // Out of the queue only once an agent rings: a call whose agent was taken
                // by another in the meantime, or whose overflow this clock has not reached
                // yet, keeps its place and its arrival, which its overflow counts from.
                if pool.served() && self.ring_free(pool, now) {
                    pool.dequeue();
                    self.actions.push_back(Action::Tell(
                        "Good news: a colleague is free now. Bringing them in.".to_owned(),
                    ));
                }
            }
        }
        if let State::Ringing { key, since, .. } = &self.state {
            if now.saturating_duration_since(*since) >= self.settings.ring {
                let key = key.clone();
                self.actions.push_back(Action::Drop { key: key.clone() });
                self.missed(&key, Missed::NoAnswer, pool, now);
            }
        }
        if matches!(self.state, State::Ringing { .. } | State::Whisper { .. })
            && now >= self.next_update
        {
            self.next_update = now + self.settings.update;
            self.updates += 1;
            self.actions.push_back(Action::Tell(self.update_line()));
        }
        if matches!(self.state, State::Queued { .. }) && now >= self.next_update {
            self.next_update = now + self.settings.update;
            if let Some((position, wait)) = pool.queued() {
                self.actions
                    .push_back(Action::Tell(self.queue_line(position, wait)));
            }
        }
    }

    /// Rings the best agent not tried yet who has room; true if one rings. With none,
    /// the caller goes back to the bot with a callback offered.
    fn ring_next(&mut self, pool: &mut dyn Pool, now: Instant) -> bool {
        if self.ring_free(pool, now) {
            return true;
        }
        if let Some((position, wait)) = pool.enqueue(&self.need, &self.settings.overflow) {
            self.actions
                .push_back(Action::Tell(self.queue_line(position, wait)));
            self.outcome(None, Outcome::Queued);
            self.state = State::Queued { since: now };
            self.next_update = now + self.settings.update;
            return false;
        }
        self.no_agent();
        false
    }

    /// No agent can take the call, now or by waiting: the caller is offered a callback.
    fn no_agent(&mut self) {
        self.actions.push_back(Action::Tell(self.no_agent_line()));
        self.outcome(None, Outcome::NoAgent);
        self.actions.push_back(Action::Return { callback: true });
        self.state = State::Over;
    }

    /// Rings the best free agent not tried yet whom the overflow admits after the wait so
    /// far; false when none is free.
    fn ring_free(&mut self, pool: &mut dyn Pool, now: Instant) -> bool {
        let waited = now.saturating_duration_since(self.started).as_secs();
        let reachable = pool.reachable();
        let fresh: Vec<&Reachable> = reachable
            .iter()
            .filter(|r| !self.missed.iter().any(|(id, _)| *id == r.candidate.id))
            .filter(|r| {
                self.settings
                    .overflow
                    .admits(&r.candidate, &self.need, waited)
            })
            .collect();
        let candidates: Vec<routing::Candidate> =
            fresh.iter().map(|r| r.candidate.clone()).collect();
        for ranked in routing::rank(&self.need, &candidates, &self.weights) {
            if !pool.claim(&ranked.agent.id) {
                continue;
            }
            let Some(r) = fresh.iter().find(|r| r.candidate.id == ranked.agent.id) else {
                continue;
            };
            let agent = Offer {
                id: r.candidate.id.clone(),
                name: r.name.clone(),
                phone: r.phone.clone(),
                skilled: ranked.skilled,
                score: ranked.score,
            };
            let key = pool.new_key();
            self.legs += 1;
            self.actions.push_back(Action::Dial {
                key: key.clone(),
                agent: agent.clone(),
            });
            self.outcome(Some(agent.id.clone()), Outcome::Ringing);
            self.state = State::Ringing {
                agent,
                key,
                since: now,
                consulted: false,
            };
            return true;
        }
        false
    }

    fn outcome(&mut self, agent: Option<String>, outcome: Outcome) {
        self.actions.push_back(Action::Outcome {
            agent,
            outcome,
            missed: self.missed.clone(),
        });
    }

    /// Who the caller is being put through to, in words: "one of our fraud specialists".
    fn role(&self) -> String {
        match &self.words.skill {
            Some(skill) => format!("one of our {} specialists", skill.replace('_', " ")),
            None => "one of our team".to_owned(),
        }
    }

    fn bridging_line(&self) -> String {
        let thanks = match &self.words.first_name {
            Some(name) => format!("Thank you, {name}. "),
            None => String::new(),
        };
        format!(
            "{thanks}I'm bringing in {}, who can already see what we've discussed. It should \
             take {}.",
            self.role(),
            wait_words(self.settings.ring / 2),
        )
    }

    fn next_agent_line(&self) -> String {
        "That colleague is not free after all, so I'm trying another one. \
         You won't need to repeat anything."
            .to_owned()
    }

    fn update_line(&self) -> String {
        if self.updates % 2 == 1 {
            let want = match &self.words.want {
                Some(want) => format!(" to help you {want}"),
                None => String::new(),
            };
            format!(
                "Thanks for holding. I'm still bringing in {}{want}, and they already have \
                 the details of your call.",
                self.role()
            )
        } else {
            "You're still connected, and you won't have to repeat anything. It won't be much longer."
                .to_owned()
        }
    }

    fn queue_line(&self, position: usize, wait: Option<u64>) -> String {
        let place = match position {
            1 => "next in line".to_owned(),
            n => format!("number {n} in line"),
        };
        let wait = match wait {
            Some(secs) => format!(" The wait is {}.", wait_words(Duration::from_secs(secs))),
            None => String::new(),
        };
        format!(
            "All of our {} are helping other callers just now. You're {place}, and they will \
             already know what this is about.{wait}",
            self.team()
        )
    }

    /// The agents who could help, in words: "fraud specialists".
    fn team(&self) -> String {
        match &self.words.skill {
            Some(skill) => format!("{} specialists", skill.replace('_', " ")),
            None => "colleagues".to_owned(),
        }
    }

    fn no_agent_line(&self) -> String {
        let tried = if self.legs > 0 {
            "None of our specialists could come to the phone just now"
        } else {
            "All of our specialists are busy just now"
        };
        format!(
            "I'm sorry. {tried}. We will call you back on this number as soon as one is free, \
             and they will already know what this is about. In the meantime, I can carry on helping you."
        )
    }
}

/// A wait in words, rounded so that it reads naturally: "a few seconds", "about 10 seconds",
/// "about 2 minutes".
fn wait_words(wait: Duration) -> String {
    let secs = wait.as_secs();
    match secs {
        0..=9 => "a few seconds".to_owned(),
        10..=59 => format!("about {} seconds", (secs + 5) / 10 * 10),
        60..=89 => "about a minute".to_owned(),
        _ => format!("about {} minutes", (secs + 30) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Candidate, Urgency};
    use std::collections::BTreeMap;

    fn agent(id: &str, skill: Option<(&str, u8)>) -> Reachable {
        Reachable {
            candidate: Candidate {
                id: id.into(),
                skills: skill
                    .map(|(s, l)| BTreeMap::from([(s.to_owned(), l)]))
                    .unwrap_or_default(),
                languages: vec!["en".into()],
                available: true,
                calls: 0,
                max_calls: 1,
                idle_secs: 60,
                handle_secs: None,
            },
            name: id.to_uppercase(),
            phone: Phone::Sip(format!("sip:{id}@127.0.0.1:5070").parse().expect("uri")),
        }
    }

    fn need() -> Need {
        Need {
            skill: Some("fraud".into()),
            language: "en".into(),
            urgency: Urgency::Immediate,
            distressed: true,
        }
    }

    /// Agents in a list; `busy` ones refuse a claim. Calls queue when `waiting` is set.
    struct Agents {
        list: Vec<Reachable>,
        busy: Vec<&'static str>,
        keys: u32,
        /// The call's place in the queue, when queueing is possible and it is queued.
        queue: Option<Option<usize>>,
        /// The overflow the call was last queued with.
        overflow: Option<Overflow>,
        served: bool,
    }

    impl Agents {
        fn new(list: &[Reachable]) -> Agents {
            Agents {
                list: list.to_vec(),
                busy: Vec::new(),
                keys: 0,
                queue: None,
                overflow: None,
                served: false,
            }
        }
    }

    impl Pool for Agents {
        fn reachable(&mut self) -> Vec<Reachable> {
            self.list.clone()
        }

        fn claim(&mut self, id: &str) -> bool {
            !self.busy.contains(&id)
        }

        fn new_key(&mut self) -> String {
            self.keys += 1;
            format!("leg{}", self.keys)
        }

        fn enqueue(&mut self, _: &Need, overflow: &Overflow) -> Option<(usize, Option<u64>)> {
            let place = self.queue.as_mut()?;
            *place = Some(2);
            self.overflow = Some(overflow.clone());
            Some((2, Some(170)))
        }

        fn queued(&mut self) -> Option<(usize, Option<u64>)> {
            self.queue.flatten().map(|p| (p, Some(100)))
        }

        fn served(&mut self) -> bool {
            self.served
        }

        fn dequeue(&mut self) {
            if let Some(place) = &mut self.queue {
                *place = None;
            }
        }
    }

    struct Run {
        t: Transfer,
        pool: Agents,
        now: Instant,
    }

    /// A transfer of a fraud call started at `now` with the default settings.
    fn start(pool: &mut Agents, words: Words, now: Instant) -> Transfer {
        start_with(pool, Settings::default(), words, now)
    }

    fn start_with(pool: &mut Agents, settings: Settings, words: Words, now: Instant) -> Transfer {
        Transfer::start(settings, need(), Weights::default(), words, pool, now)
    }

    impl Run {
        fn start(agents: &[Reachable], words: Words) -> Run {
            let now = Instant::now();
            let mut pool = Agents::new(agents);
            let t = start(&mut pool, words, now);
            Run { t, pool, now }
        }

        /// A fraud call's transfer with `overflow`, where calls may queue.
        fn overflowing(agents: &[Reachable], overflow: Overflow) -> Run {
            let now = Instant::now();
            let mut pool = Agents::new(agents);
            pool.queue = Some(None);
            let settings = Settings {
                overflow,
                ..Settings::default()
            };
            let t = start_with(&mut pool, settings, Words::default(), now);
            Run { t, pool, now }
        }

        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.t.poll()).collect()
        }

        fn tick(&mut self, secs: u64) {
            self.now += Duration::from_secs(secs);
            self.t.tick(&mut self.pool, self.now);
        }

        fn missed(&mut self, key: &str, status: u16) {
            self.t
                .missed(key, Missed::of_status(status), &mut self.pool, self.now);
        }
    }

    fn dialled(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Dial { agent, .. } => Some(agent.id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_caller_hears_who_is_coming_and_the_skilled_agent_rings_first() {
        let agents = [
            agent("billing", Some(("billing", 5))),
            agent("fraud", Some(("fraud", 3))),
        ];
        let words = Words {
            first_name: Some("Dana".into()),
            skill: Some("fraud".into()),
            want: Some("block a lost or stolen card".into()),
        };
        let mut run = Run::start(&agents, words);
        let actions = run.actions();
        let Action::Tell(first) = &actions[0] else {
            panic!("the caller is told first: {actions:?}");
        };
        assert_eq!(
            first,
            "Thank you, Dana. I'm bringing in one of our fraud specialists, who can already see \
             what we've discussed. It should take about 10 seconds."
        );
        assert_eq!(dialled(&actions), ["fraud"]);
        assert_eq!(run.t.agent_leg(), Some("leg1"));
    }

    /// A run whose call the fraud agent has taken (leg1), with a billing colleague.
    fn bridged_to_fraud() -> Run {
        let agents = [
            agent("fraud", Some(("fraud", 3))),
            agent("billing", Some(("billing", 2))),
        ];
        let mut run = Run::start(&agents, Words::default());
        run.t.answered("leg1", run.now);
        run.t.whispered("leg1", run.now);
        run.actions();
        run
    }

    #[test]
    fn an_attended_transfer_replaces_the_consultation_and_skips_the_whisper() {
        let mut run = bridged_to_fraud();
        let consultation: Replaces = "c1@phone;to-tag=b1;from-tag=f1".parse().expect("valid");
        let now = run.now;
        assert_eq!(
            run.t
                .referred("leg1", Some("nobody"), None, &mut run.pool, now),
            Err(480),
            "no such agent reachable"
        );
        assert_eq!(
            run.t
                .referred("leg1", Some("fraud"), None, &mut run.pool, now),
            Err(482),
            "not to themself"
        );
        run.t
            .referred(
                "leg1",
                Some("billing"),
                Some(consultation.clone()),
                &mut run.pool,
                now,
            )
            .expect("accepted");
        let actions = run.actions();
        assert!(
            actions.iter().any(|a| matches!(a,
                Action::Replace { key, agent, replaces }
                    if key == "leg2" && agent.id == "billing" && *replaces == consultation)),
            "{actions:?}"
        );
        assert!(dialled(&actions).is_empty(), "no plain ring: {actions:?}");
        assert!(actions.contains(&Action::Aside { key: "leg1".into() }));
        run.now += Duration::from_secs(5);
        run.t.answered("leg2", run.now);
        let actions = run.actions();
        assert_eq!(
            actions[0],
            Action::Bridge { key: "leg2".into() },
            "{actions:?}"
        );
        assert!(!actions.contains(&Action::Whisper { key: "leg2".into() }));
        assert!(actions.contains(&Action::Referred {
            key: "leg1".into(),
            status: 200
        }));
        assert!(actions.contains(&Action::Drop { key: "leg1".into() }));
        assert!(actions.contains(&Action::Release {
            id: "fraud".into(),
            handled: Some(Duration::from_secs(5))
        }));
        assert!(run.t.bridged());
    }

    #[test]
    fn when_the_colleague_cannot_take_it_the_agent_who_transferred_has_the_caller_back() {
        let mut run = bridged_to_fraud();
        let now = run.now;
        run.t
            .referred("leg1", Some("billing"), None, &mut run.pool, now)
            .expect("accepted");
        run.actions();
        run.missed("leg2", 486);
        let actions = run.actions();
        assert_eq!(
            actions[..3],
            [
                Action::Release {
                    id: "billing".into(),
                    handled: None
                },
                Action::Referred {
                    key: "leg1".into(),
                    status: 486
                },
                Action::Resume { key: "leg1".into() },
            ],
            "{actions:?}"
        );
        assert!(matches!(
            &actions[3],
            Action::Outcome { outcome: Outcome::Connected, agent: Some(a), missed }
                if a == "fraud" && missed == &[("billing".to_owned(), "busy")]
        ));
        assert_eq!(actions.len(), 4, "nobody else rung: {actions:?}");
        assert!(run.t.bridged());
        assert_eq!(run.t.agent_leg(), Some("leg1"));
        // They can try again, and the caller leaving meanwhile lets them go.
        run.t
            .referred("leg1", Some("billing"), None, &mut run.pool, now)
            .expect("accepted again");
        run.actions();
        run.t.caller_left(&mut run.pool, now);
        let actions = run.actions();
        assert!(actions.contains(&Action::Referred {
            key: "leg1".into(),
            status: 487
        }));
        assert!(actions.contains(&Action::Drop { key: "leg1".into() }));
        assert!(actions.contains(&Action::Drop { key: "leg3".into() }));
    }

    #[test]
    fn a_desktop_agent_cannot_replace_a_consultation_and_a_busy_one_is_refused() {
        let mut run = bridged_to_fraud();
        let consultation: Replaces = "c1@phone;to-tag=b1;from-tag=f1".parse().expect("valid");
        let now = run.now;
        run.pool.list[1].phone = Phone::Desktop;
        assert_eq!(
            run.t.referred(
                "leg1",
                Some("billing"),
                Some(consultation),
                &mut run.pool,
                now
            ),
            Err(481)
        );
        run.pool.busy.push("billing");
        assert_eq!(
            run.t
                .referred("leg1", Some("billing"), None, &mut run.pool, now),
            Err(486)
        );
        assert!(run.actions().is_empty(), "nothing done for a refused REFER");
        assert!(run.t.bridged(), "the agent keeps the caller");
    }

    #[test]
    fn answer_whisper_bridge_then_the_agent_hangs_up_and_the_bot_takes_back() {
        let agents = [agent("fraud", Some(("fraud", 3)))];
        let mut run = Run::start(&agents, Words::default());
        run.actions();
        run.t.answered("stale", run.now);
        assert!(
            run.actions().is_empty(),
            "an answer on another leg changes nothing"
        );
        assert_eq!(run.t.agent_on("leg1"), None, "only ringing yet");
        run.t.answered("leg1", run.now);
        assert_eq!(run.actions(), [Action::Whisper { key: "leg1".into() }]);
        assert_eq!(run.t.agent_on("leg1"), Some("fraud"));
        assert_eq!(run.t.agent_on("stale"), None);
        run.t.whispered("leg1", run.now);
        let actions = run.actions();
        assert_eq!(actions[0], Action::Bridge { key: "leg1".into() });
        assert!(matches!(
            &actions[1],
            Action::Outcome { outcome: Outcome::Connected, agent: Some(a), .. } if a == "fraud"
        ));
        assert!(run.t.bridged());
        run.tick(30);
        assert!(run.actions().is_empty(), "no hold updates once bridged");
        run.t.agent_left("leg1", run.now + Duration::from_secs(90));
        let actions = run.actions();
        assert_eq!(
            actions[0],
            Action::Release {
                id: "fraud".into(),
                handled: Some(Duration::from_secs(120))
            }
        );
        assert!(matches!(
            actions[1],
            Action::Outcome {
                outcome: Outcome::Returned,
                ..
            }
        ));
        assert_eq!(actions[2], Action::Return { callback: false });
        assert!(run.t.is_over());
        assert_eq!(run.t.agent_on("leg1"), None);
    }

    #[test]
    fn no_answer_busy_and_decline_fall_over_to_the_next_agent_then_to_a_callback() {
        let agents = [
            agent("a", Some(("fraud", 5))),
            agent("b", Some(("fraud", 4))),
            agent("c", Some(("fraud", 3))),
            agent("d", Some(("fraud", 2))),
        ];
        let mut run = Run::start(&agents, Words::default());
        assert_eq!(dialled(&run.actions()), ["a"]);
        run.tick(19);
        assert!(dialled(&run.actions()).is_empty());
        run.tick(1);
        let actions = run.actions();
        assert_eq!(actions[0], Action::Drop { key: "leg1".into() });
        assert_eq!(dialled(&actions), ["b"]);
        assert!(
            actions.iter().any(|a| matches!(a, Action::Tell(_))),
            "{actions:?}"
        );
        run.missed("leg2", 486);
        assert_eq!(dialled(&run.actions()), ["c"]);
        run.missed("leg3", 603);
        assert_eq!(dialled(&run.actions()), ["d"]);
        run.missed("leg4", 503);
        assert_eq!(run.pool.keys, 4, "no leg without a free agent");
        let actions = run.actions();
        assert!(matches!(&actions[1], Action::Tell(t) if t.contains("call you back")));
        let Action::Outcome {
            outcome, missed, ..
        } = &actions[2]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(*outcome, Outcome::NoAgent);
        assert_eq!(
            missed,
            &[
                ("a".into(), "no answer"),
                ("b".into(), "busy"),
                ("c".into(), "declined"),
                ("d".into(), "unreachable")
            ]
        );
        assert_eq!(actions[3], Action::Return { callback: true });
    }

    #[test]
    fn an_agent_taken_by_another_call_is_skipped_and_none_free_means_a_callback() {
        let agents = [
            agent("a", Some(("fraud", 5))),
            agent("b", Some(("fraud", 1))),
        ];
        let now = Instant::now();
        let mut pool = Agents::new(&agents);
        pool.busy.push("a");
        let mut t = start(&mut pool, Words::default(), now);
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert_eq!(dialled(&actions), ["b"]);
        let mut t = start(&mut Agents::new(&[]), Words::default(), now);
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert!(matches!(&actions[0], Action::Tell(t) if t.starts_with("I'm sorry. All of our")));
        assert_eq!(actions.last(), Some(&Action::Return { callback: true }));
    }

    #[test]
    fn the_caller_on_hold_hears_an_update_every_interval() {
        let agents = [agent("a", Some(("fraud", 5)))];
        let mut run = Run::start(&agents, Words::default());
        run.actions();
        run.t.settings.ring = Duration::from_secs(600);
        let mut told = 0;
        for _ in 0..60 {
            run.tick(1);
            told += run
                .actions()
                .iter()
                .filter(|a| matches!(a, Action::Tell(_)))
                .count();
        }
        assert_eq!(told, 3);
    }

    #[test]
    fn a_caller_hanging_up_mid_transfer_cancels_the_ringing_agent() {
        let agents = [agent("a", Some(("fraud", 5)))];
        let mut run = Run::start(&agents, Words::default());
        run.actions();
        run.t.caller_left(&mut run.pool, run.now);
        let actions = run.actions();
        assert_eq!(actions[0], Action::Drop { key: "leg1".into() });
        assert_eq!(
            actions[1],
            Action::Release {
                id: "a".into(),
                handled: None
            }
        );
        assert!(matches!(
            actions[2],
            Action::Outcome {
                outcome: Outcome::Abandoned,
                ..
            }
        ));
    }

    /// A transfer started while the one agent is busy, and calls may queue.
    fn start_busy(now: Instant) -> (Transfer, Agents) {
        let mut pool = Agents::new(&[agent("a", Some(("fraud", 5)))]);
        pool.busy.push("a");
        pool.queue = Some(None);
        let words = Words {
            skill: Some("fraud".into()),
            ..Words::default()
        };
        let t = start(&mut pool, words, now);
        (t, pool)
    }

    #[test]
    fn with_every_agent_busy_the_call_queues_then_rings_the_agent_who_comes_free() {
        let now = Instant::now();
        let (mut t, mut pool) = start_busy(now);
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert!(
            matches!(&actions[0], Action::Tell(t) if t == "All of our fraud specialists are \
                helping other callers just now. You're number 2 in line, and they will already \
                know what this is about. The wait is about 3 minutes."),
            "{actions:?}"
        );
        assert!(matches!(
            actions[1],
            Action::Outcome {
                outcome: Outcome::Queued,
                ..
            }
        ));
        assert_eq!(pool.queue, Some(Some(2)));
        let later = now + Duration::from_secs(20);
        t.tick(&mut pool, later);
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert!(
            matches!(&actions[..], [Action::Tell(t)] if t.contains("number 2 in line")),
            "an update with the place: {actions:?}"
        );
        pool.busy.clear();
        pool.served = true;
        t.tick(&mut pool, later + Duration::from_secs(1));
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert_eq!(dialled(&actions), ["a"]);
        assert_eq!(pool.queue, Some(None), "out of the queue");
    }

    #[test]
    fn a_queued_caller_is_offered_a_callback_after_the_longest_wait() {
        let now = Instant::now();
        let (mut t, mut pool) = start_busy(now);
        std::iter::from_fn(|| t.poll()).for_each(drop);
        t.tick(&mut pool, now + Duration::from_secs(300));
        let actions: Vec<Action> = std::iter::from_fn(|| t.poll()).collect();
        assert!(matches!(&actions[0], Action::Tell(t) if t.contains("call you back")));
        assert_eq!(actions.last(), Some(&Action::Return { callback: true }));
        assert_eq!(pool.queue, Some(None));
    }

    #[test]
    fn a_call_queues_for_its_skill_then_overflows_to_the_overflow_skill_only() {
        let agents = [
            agent("general", None),
            agent("billing", Some(("billing", 3))),
        ];
        let overflow = Overflow {
            after_secs: 30,
            skill: Some("billing".into()),
        };
        let mut run = Run::overflowing(&agents, overflow.clone());
        let actions = run.actions();
        assert!(dialled(&actions).is_empty(), "{actions:?}");
        assert!(
            matches!(&actions[0], Action::Tell(t) if t.contains("number 2 in line")),
            "the caller hears their place: {actions:?}"
        );
        assert!(matches!(
            actions[1],
            Action::Outcome {
                outcome: Outcome::Queued,
                ..
            }
        ));
        assert_eq!(
            run.pool.overflow,
            Some(overflow),
            "queued with its overflow"
        );

        // Both agents are free, and the queue would hand either the call: the machine
        // holds it until it has waited 30 s, then rings the billing agent.
        run.pool.served = true;
        for secs in 1..30 {
            run.tick(1);
            assert!(dialled(&run.actions()).is_empty(), "rang at {secs} s");
        }
        assert_eq!(run.pool.queue, Some(Some(2)), "still in line, in its place");
        run.tick(1);
        let actions = run.actions();
        assert_eq!(dialled(&actions), ["billing"]);
        assert!(
            actions.iter().any(
                |a| matches!(a, Action::Dial { agent, .. } if !agent.skilled && agent.id == "billing")
            ),
            "{actions:?}"
        );
        assert_eq!(run.pool.queue, Some(None), "out of the queue");

        // The billing agent is busy; the agent without the overflow's skill never rings.
        run.missed("leg1", 486);
        let actions = run.actions();
        assert!(dialled(&actions).is_empty(), "{actions:?}");
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Outcome {
                outcome: Outcome::Queued,
                ..
            }
        )));
        assert_eq!(run.pool.queue, Some(Some(2)), "back in line");
        run.tick(100);
        assert!(dialled(&run.actions()).is_empty());
    }

    #[test]
    fn without_an_overflow_time_the_overflow_agents_ring_at_once() {
        let agents = [agent("billing", Some(("billing", 3)))];
        let mut run = Run::overflowing(&agents, Overflow::default());
        assert_eq!(dialled(&run.actions()), ["billing"], "anyone, by default");
        let to_billing = Overflow {
            after_secs: 0,
            skill: Some("billing".into()),
        };
        let mut run = Run::overflowing(&agents, to_billing);
        assert_eq!(dialled(&run.actions()), ["billing"]);
        let to_cards = Overflow {
            after_secs: 0,
            skill: Some("cards".into()),
        };
        let mut run = Run::overflowing(&agents, to_cards);
        assert!(dialled(&run.actions()).is_empty());
        assert_eq!(
            run.pool.queue,
            Some(Some(2)),
            "queued for a fraud or cards agent"
        );
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(wait_words(Duration::from_secs(4)), "a few seconds");
        assert_eq!(wait_words(Duration::from_secs(26)), "about 30 seconds");
        assert_eq!(wait_words(Duration::from_secs(70)), "about a minute");
        assert_eq!(wait_words(Duration::from_secs(150)), "about 3 minutes");
    }
}
