//! Choosing the agent a call goes to, and keeping the calls that wait for one. Pure: the
//! caller passes the agents as they are at that moment and the time, in seconds on its
//! own clock; nothing here reads the clock or the registrar.
//!
//! An agent can take a call when they are available, below their `max_calls`, and speak
//! the caller's language (the primary subtags match, case aside: `en` takes `en-GB`).
//! Among those, an agent with the skill the call asks for ranks above every agent without
//! it, whatever their scores; then the higher score ranks first, then the smaller id. The
//! score is the sum of four [`Parts`]:
//!
//! ```text
//! skill  = weights.skill × level × (weights.expert_factor if distressed or urgency ≥ High, else 1)
//! load   = −weights.load × calls / max_calls
//! idle   = weights.idle × min(idle_secs / 600, 1)
//! handle = weights.handle × clamp((300 − handle_secs) / 300, −1, 1)    (0 when unknown)
//! ```
//!
//! where `level` is the agent's level in the asked skill, 0 without it or when none is
//! asked. Agents without the asked skill are still ranked, below the others: which of them
//! may take the call, and after how long a wait, is the call's [`Overflow`], which the
//! caller applies; [`Ranked::skilled`] tells it who has the skill.
//!
//! The [`Queue`] keeps the calls no agent could take, by priority then arrival, each with
//! its own overflow: which one an agent who gets room should take, and how long each may
//! still wait.

use serde::Deserialize;
use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

/// How soon the caller should reach a person, as the escalation engine decides it: one
/// type, so that a decision's urgency reaches the router as it is.
pub use crate::escalation::Urgency;

/// The handle time assumed for an agent who has none yet: five minutes, a usual average
/// for a service call, so that a newcomer is neither favoured nor held back.
const DEFAULT_HANDLE_SECS: f64 = 300.0;
/// Idle time counts up to ten minutes: by then an agent has had their break, and a longer
/// idle time (back from lunch) should not outweigh skill.
const IDLE_FULL_SECS: f64 = 600.0;

/// One agent as routing sees them at the moment of a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    /// Skill name to level, 1 (can help) to 5 (expert).
    pub skills: BTreeMap<String, u8>,
    /// Languages they take calls in (`en`, `fr-CA`).
    pub languages: Vec<String>,
    /// Registered, with their presence set to available.
    pub available: bool,
    /// Calls they are on now.
    pub calls: u32,
    /// The most calls they take at once.
    pub max_calls: u32,
    /// Seconds since their last call ended.
    pub idle_secs: u64,
    /// Their recent average handle time in seconds; `None` until they have one.
    pub handle_secs: Option<f64>,
}

/// What a call needs from the agent it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The skill its intent needs (`fraud`), if any.
    pub skill: Option<String>,
    /// The caller's language (`en-GB`); the agent's must have the same primary subtag.
    pub language: String,
    pub urgency: Urgency,
    /// The caller's mood is getting worse, or they are agitated.
    pub distressed: bool,
}

impl Need {
    /// The call's place in a [`Queue`], higher first: urgency, then distress within an
    /// urgency, so a distressed caller passes calm ones but never a more urgent call.
    pub fn priority(&self) -> u8 {
        let urgency = match self.urgency {
            Urgency::Low => 0,
            Urgency::Normal => 1,
            Urgency::High => 2,
            Urgency::Immediate => 3,
        };
        urgency * 2 + u8::from(self.distressed)
    }

    /// Whether skill should count for more than load and rest: a caller who is upset, or
    /// must reach someone soon, is best served by the most expert agent.
    fn wants_expert(&self) -> bool {
        self.distressed || self.urgency >= Urgency::High
    }
}

/// How much each part of an agent's score counts: a dialplan's routing tunables. With the
/// defaults, one skill level outweighs a difference in idle time or in handle time, but
/// not both together, nor a difference in load of more than two thirds; for an expert
/// call (distressed, High or Immediate) one level outweighs every other part together, so
/// the most expert agent comes first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// Points per level (1 to 5) in the asked skill.
    pub skill: f64,
    /// How many times the skill points count for an expert call.
    pub expert_factor: f64,
    /// Points taken off an agent in proportion to their load (`calls / max_calls`).
    pub load: f64,
    /// Points for idle time, in proportion up to ten minutes: spreads the calls fairly.
    pub idle: f64,
    /// Points for a handle time of zero; none at 300 s (the default for an agent without
    /// one), the same taken off at 600 s and beyond.
    pub handle: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            skill: 1.0,
            expert_factor: 4.0,
            load: 1.5,
            idle: 0.75,
            handle: 0.4,
        }
    }
}

/// An agent's score part by part, for the decision's evidence; the parts add up to the
/// score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    pub skill: f64,
    pub load: f64,
    pub idle: f64,
    pub handle: f64,
}

/// An agent who can take the call, with where they rank and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'a> {
    pub agent: &'a Candidate,
    /// Has the skill the call asks for (or it asks for none): ranks above every agent who
    /// has not, whatever the scores.
    pub skilled: bool,
    pub score: f64,
    pub parts: Parts,
}

/// The agents who can take the call now, best first. Sorts them all; [`best`] is the
/// one-pass form for when only the first is wanted.
pub fn rank<'a>(need: &Need, candidates: &'a [Candidate], weights: &Weights) -> Vec<Ranked<'a>> {
    let language = primary(&need.language);
    let mut ranked: Vec<Ranked<'a>> = candidates
        .iter()
        .filter_map(|c| score(need, language, c, weights))
        .collect();
    ranked.sort_unstable_by(order);
    ranked
}

/// The agent [`rank`] would put first, in one pass and without allocating.
pub fn best<'a>(need: &Need, candidates: &'a [Candidate], weights: &Weights) -> Option<Ranked<'a>> {
    let language = primary(&need.language);
    candidates
        .iter()
        .filter_map(|c| score(need, language, c, weights))
        .reduce(|kept, next| {
            if order(&next, &kept) == Ordering::Less {
                next
            } else {
                kept
            }
        })
}

/// The agent's score for the call, or `None` when they cannot take it now.
fn score<'a>(
    need: &Need,
    language: &str,
    agent: &'a Candidate,
    weights: &Weights,
) -> Option<Ranked<'a>> {
    if !has_room(agent) || !speaks(agent, language) {
        return None;
    }
    let (skilled, level) = match &need.skill {
        None => (true, 0),
        Some(skill) => match agent.skills.get(skill) {
            Some(&level) => (true, level),
            None => (false, 0),
        },
    };
    let factor = if need.wants_expert() {
        weights.expert_factor
    } else {
        1.0
    };
    let parts = Parts {
        skill: weights.skill * factor * f64::from(level),
        // From zero rather than negated, so that an idle agent shows 0 and not -0.
        load: 0.0 - weights.load * f64::from(agent.calls) / f64::from(agent.max_calls),
        idle: weights.idle * (agent.idle_secs as f64 / IDLE_FULL_SECS).min(1.0),
        handle: weights.handle
            * ((DEFAULT_HANDLE_SECS - handle_secs(agent)) / DEFAULT_HANDLE_SECS).clamp(-1.0, 1.0),
    };
    Some(Ranked {
        agent,
        skilled,
        score: parts.skill + parts.load + parts.idle + parts.handle,
        parts,
    })
}

/// Best first: skilled before unskilled, then the higher score, then the smaller id, so
/// that equal agents come out in the same order whatever order they came in. Agents who
/// share an id keep their order in the slice (their addresses), which makes this a total
/// order: [`rank`] can sort without the cost of a stable sort and still agree with
/// [`best`].
fn order(a: &Ranked, b: &Ranked) -> Ordering {
    b.skilled
        .cmp(&a.skilled)
        .then_with(|| b.score.total_cmp(&a.score))
        .then_with(|| a.agent.id.cmp(&b.agent.id))
        .then_with(|| std::ptr::from_ref(a.agent).cmp(&std::ptr::from_ref(b.agent)))
}

/// Available and below their most calls.
fn has_room(agent: &Candidate) -> bool {
    agent.available && agent.calls < agent.max_calls
}

/// Takes calls in a language with this primary subtag.
fn speaks(agent: &Candidate, primary_subtag: &str) -> bool {
    // `primary` of each tag, compared in place: this runs for every agent of the floor.
    let want = primary_subtag.as_bytes();
    agent.languages.iter().any(|tag| {
        let tag = tag.as_bytes();
        tag.len() >= want.len()
            && tag[..want.len()].eq_ignore_ascii_case(want)
            && matches!(tag.get(want.len()), None | Some(b'-' | b'_'))
    })
}

/// The primary subtag of a language tag: `en` of `en-GB` (or of `en_GB`, as some systems
/// write it).
fn primary(tag: &str) -> &str {
    tag.split_once(['-', '_']).map_or(tag, |(p, _)| p)
}

/// The agent's handle time, or the default when they have none (or a nonsensical one,
/// which would otherwise make the score NaN).
fn handle_secs(agent: &Candidate) -> f64 {
    agent
        .handle_secs
        .filter(|h| h.is_finite() && *h >= 0.0)
        .unwrap_or(DEFAULT_HANDLE_SECS)
}

/// When a call that asks for a skill may go to agents without it: a dialplan's
/// `[transfer]` tunables. By default at once, to any agent who speaks the caller's
/// language, though those with the skill still rank first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overflow {
    /// How long the call waits for an agent with its skill before others may take it.
    pub after_secs: u64,
    /// Which others take it then: those with this skill, or any agent who speaks the
    /// caller's language when `None`.
    pub skill: Option<String>,
}

impl Overflow {
    /// Whether the agent may serve the call, once they have room, after it has waited
    /// `waited_secs`.
    pub fn admits(&self, agent: &Candidate, need: &Need, waited_secs: u64) -> bool {
        if !speaks(agent, primary(&need.language)) {
            return false;
        }
        let Some(skill) = &need.skill else {
            return true;
        };
        if agent.skills.contains_key(skill) {
            return true;
        }
        waited_secs >= self.after_secs
            && self
                .skill
                .as_ref()
                .is_none_or(|s| agent.skills.contains_key(s))
    }
}

/// A call waiting for an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub call_id: String,
    pub need: Need,
    /// Who else may take the call, and when: its dialplan's.
    pub overflow: Overflow,
    pub enqueued_at_secs: u64,
    /// The need's [`Need::priority`].
    pub priority: u8,
    /// Tells apart calls queued in the same second.
    seq: u64,
}

impl Waiting {
    /// The order calls are served in: higher priority, then earlier arrival.
    fn service_key(&self) -> (Reverse<u8>, u64, u64) {
        (Reverse(self.priority), self.enqueued_at_secs, self.seq)
    }
}

/// The calls no agent could take yet, in the order they are served.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    /// Kept in service order; a queue holds tens or hundreds of calls, so a sorted vector
    /// beats a heap, which could not find a call by id or tell its position.
    calls: Vec<Waiting>,
    next_seq: u64,
}

impl Queue {
    /// Queues a call with its overflow. A call already queued gets the new need (and so
    /// its new priority) but keeps its arrival: a caller who grows upset while waiting
    /// moves up, never back, and their wait still counts toward the overflow.
    pub fn push(&mut self, call_id: String, need: Need, overflow: Overflow, now_secs: u64) {
        let (enqueued_at_secs, seq) = match self.remove(&call_id) {
            Some(old) => (old.enqueued_at_secs, old.seq),
            None => {
                self.next_seq += 1;
                (now_secs, self.next_seq)
            }
        };
        let waiting = Waiting {
            call_id,
            priority: need.priority(),
            need,
            overflow,
            enqueued_at_secs,
            seq,
        };
        let key = waiting.service_key();
        let at = self.calls.partition_point(|w| w.service_key() < key);
        self.calls.insert(at, waiting);
    }

    /// Takes a call out of the queue (answered by an agent, or hung up).
    pub fn remove(&mut self, call_id: &str) -> Option<Waiting> {
        let at = self.calls.iter().position(|w| w.call_id == call_id)?;
        Some(self.calls.remove(at))
    }

    /// The call's place in the queue, 1 for the next served.
    pub fn position(&self, call_id: &str) -> Option<usize> {
        self.calls
            .iter()
            .position(|w| w.call_id == call_id)
            .map(|at| at + 1)
    }

    /// About how long the call has still to wait, in seconds; `None` for a call not
    /// queued or one no available agent could serve, now or once it overflows. Its servers
    /// are the available agents who could take it now or once they have room (with its
    /// overflow counted at `now_secs`); with `n` of them, `free` free places among them and
    /// `h` their mean handle time (300 s for an agent without one), the wait is
    /// `max(position − free, 0) × h / n`: the servers between them end a call every `h / n`
    /// seconds. Before it overflows, the wait is the shorter of that and the seconds left
    /// until it does plus the same sum over the agents it may go to then.
    pub fn estimated_wait_secs(
        &self,
        call_id: &str,
        candidates: &[Candidate],
        now_secs: u64,
    ) -> Option<u64> {
        let position = self.position(call_id)?;
        let waiting = &self.calls[position - 1];
        let waited = now_secs.saturating_sub(waiting.enqueued_at_secs);
        let now = wait_for_servers(waiting, position, candidates, waited);
        let after = waiting.overflow.after_secs;
        let overflowed = if waited < after {
            wait_for_servers(waiting, position, candidates, after)
                .map(|wait| wait.saturating_add(after - waited))
        } else {
            None
        };
        now.into_iter().chain(overflowed).min()
    }

    /// The call an agent who has just got room should take: the first in service order
    /// that they can serve. `None` when they cannot take a call or serve none of these.
    pub fn next_for(&self, agent: &Candidate, now_secs: u64) -> Option<&str> {
        if !has_room(agent) {
            return None;
        }
        self.calls
            .iter()
            .find(|w| {
                w.overflow
                    .admits(agent, &w.need, now_secs.saturating_sub(w.enqueued_at_secs))
            })
            .map(|w| w.call_id.as_str())
    }
}

/// The wait of the call at `position` in the queue, from the agents its overflow admits
/// once it has waited `waited_secs` ([`Queue::estimated_wait_secs`] gives the sum).
fn wait_for_servers(
    waiting: &Waiting,
    position: usize,
    candidates: &[Candidate],
    waited_secs: u64,
) -> Option<u64> {
    let (mut servers, mut free, mut handle) = (0u64, 0u64, 0.0);
    for agent in candidates {
        if agent.available
            && agent.max_calls > 0
            && waiting.overflow.admits(agent, &waiting.need, waited_secs)
        {
            servers += 1;
            free += u64::from(agent.max_calls.saturating_sub(agent.calls));
            handle += handle_secs(agent);
        }
    }
    if servers == 0 {
        return None;
    }
    let ahead = (position as u64).saturating_sub(free);
    let mean_handle = handle / servers as f64;
    Some((ahead as f64 * mean_handle / servers as f64).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A free, available English-speaking agent with no history, for tests to adjust.
    fn agent(id: &str, skills: &[(&str, u8)]) -> Candidate {
        Candidate {
            id: id.to_owned(),
            skills: skills.iter().map(|&(s, l)| (s.to_owned(), l)).collect(),
            languages: vec!["en".to_owned()],
            available: true,
            calls: 0,
            max_calls: 1,
            idle_secs: 0,
            handle_secs: None,
        }
    }

    fn need(skill: Option<&str>) -> Need {
        Need {
            skill: skill.map(str::to_owned),
            language: "en-GB".to_owned(),
            urgency: Urgency::Normal,
            distressed: false,
        }
    }

    /// An overflow that, in these tests, waits for the skill: no agent here has `general`
    /// unless the test says so.
    fn to_general(after_secs: u64) -> Overflow {
        Overflow {
            after_secs,
            skill: Some("general".to_owned()),
        }
    }

    fn ids(ranked: &[Ranked]) -> Vec<String> {
        ranked.iter().map(|r| r.agent.id.clone()).collect()
    }

    fn best_id(need: &Need, candidates: &[Candidate], weights: &Weights) -> Option<String> {
        best(need, candidates, weights).map(|r| r.agent.id.clone())
    }

    #[test]
    fn skilled_agent_outranks_unskilled_whatever_the_load() {
        let skilled = Candidate {
            calls: 2,
            max_calls: 3,
            handle_secs: Some(1200.0),
            ..agent("skilled", &[("fraud", 1)])
        };
        let generic = Candidate {
            idle_secs: 3600,
            handle_secs: Some(30.0),
            ..agent("generic", &[("billing", 5), ("cards", 5)])
        };
        let agents = [generic, skilled];
        let fraud = need(Some("fraud"));
        for weights in [
            Weights::default(),
            Weights {
                load: 1000.0,
                idle: 1000.0,
                handle: 1000.0,
                ..Weights::default()
            },
        ] {
            let ranked = rank(&fraud, &agents, &weights);
            assert_eq!(ids(&ranked), ["skilled", "generic"]);
            assert!(ranked[0].skilled && !ranked[1].skilled);
            assert!(
                ranked[0].score < ranked[1].score,
                "the skill, not the score"
            );
            assert_eq!(
                best_id(&fraud, &agents, &weights).as_deref(),
                Some("skilled")
            );
        }
    }

    #[test]
    fn higher_level_ranks_higher() {
        let agents = [
            agent("two", &[("fraud", 2)]),
            agent("five", &[("fraud", 5)]),
            agent("three", &[("fraud", 3)]),
        ];
        let ranked = rank(&need(Some("fraud")), &agents, &Weights::default());
        assert_eq!(ids(&ranked), ["five", "three", "two"]);
    }

    #[test]
    fn expert_first_for_a_distressed_or_urgent_caller() {
        // The expert is on one of their two calls and has just finished another; the
        // level-4 agent is free and has rested.
        let agents = [
            Candidate {
                calls: 1,
                max_calls: 2,
                ..agent("expert", &[("fraud", 5)])
            },
            Candidate {
                max_calls: 2,
                idle_secs: 900,
                ..agent("rested", &[("fraud", 4)])
            },
        ];
        let weights = Weights::default();
        let calm = need(Some("fraud"));
        assert_eq!(best_id(&calm, &agents, &weights).as_deref(), Some("rested"));
        let low = Need {
            urgency: Urgency::Low,
            ..calm.clone()
        };
        assert_eq!(best_id(&low, &agents, &weights).as_deref(), Some("rested"));
        let distressed = Need {
            distressed: true,
            ..calm.clone()
        };
        assert_eq!(
            ids(&rank(&distressed, &agents, &weights)),
            ["expert", "rested"]
        );
        for urgency in [Urgency::High, Urgency::Immediate] {
            let urgent = Need {
                urgency,
                ..calm.clone()
            };
            assert_eq!(
                best_id(&urgent, &agents, &weights).as_deref(),
                Some("expert")
            );
        }
    }

    #[test]
    fn full_and_unavailable_agents_are_never_chosen() {
        let agents = [
            Candidate {
                calls: 2,
                max_calls: 2,
                ..agent("full", &[("fraud", 5)])
            },
            Candidate {
                available: false,
                ..agent("away", &[("fraud", 5)])
            },
            Candidate {
                max_calls: 0,
                ..agent("no-calls", &[("fraud", 5)])
            },
        ];
        let weights = Weights::default();
        let fraud = need(Some("fraud"));
        assert!(rank(&fraud, &agents, &weights).is_empty());
        assert!(best(&fraud, &agents, &weights).is_none());
        let mut with_one_free = agents.to_vec();
        with_one_free.push(agent("free", &[]));
        assert_eq!(ids(&rank(&fraud, &with_one_free, &weights)), ["free"]);
    }

    #[test]
    fn language_matches_on_the_primary_subtag_whatever_the_case() {
        let speaking = |id: &str, language: &str| Candidate {
            languages: vec!["de".to_owned(), language.to_owned()],
            ..agent(id, &[])
        };
        let agents = [
            speaking("en", "en"),
            speaking("en-us", "en-US"),
            speaking("upper", "EN"),
            speaking("underscore", "en_AU"),
            speaking("english-word", "eng"),
            speaking("french", "fr-GB"),
        ];
        let weights = Weights::default();
        let expected = ["en", "en-us", "underscore", "upper"];
        assert_eq!(ids(&rank(&need(None), &agents, &weights)), expected);
        let plain = Need {
            language: "EN".to_owned(),
            ..need(None)
        };
        assert_eq!(ids(&rank(&plain, &agents, &weights)), expected);
        let german = Need {
            language: "de-CH".to_owned(),
            ..need(None)
        };
        assert_eq!(rank(&german, &agents, &weights).len(), agents.len());
    }

    #[test]
    fn among_equals_lower_load_then_longer_idle_then_shorter_handle() {
        let weights = Weights::default();
        let fraud = need(Some("fraud"));
        let base = Candidate {
            max_calls: 4,
            ..agent("", &[("fraud", 3)])
        };
        let loaded = [
            Candidate {
                id: "busier".to_owned(),
                calls: 2,
                ..base.clone()
            },
            Candidate {
                id: "lighter".to_owned(),
                calls: 1,
                ..base.clone()
            },
        ];
        assert_eq!(ids(&rank(&fraud, &loaded, &weights)), ["lighter", "busier"]);
        let rested = [
            Candidate {
                id: "just-done".to_owned(),
                idle_secs: 10,
                ..base.clone()
            },
            Candidate {
                id: "rested".to_owned(),
                idle_secs: 300,
                ..base.clone()
            },
        ];
        assert_eq!(
            ids(&rank(&fraud, &rested, &weights)),
            ["rested", "just-done"]
        );
        let quick = [
            Candidate {
                id: "slow".to_owned(),
                handle_secs: Some(500.0),
                ..base.clone()
            },
            Candidate {
                id: "unknown".to_owned(),
                ..base.clone()
            },
            Candidate {
                id: "quick".to_owned(),
                handle_secs: Some(120.0),
                ..base.clone()
            },
        ];
        assert_eq!(
            ids(&rank(&fraud, &quick, &weights)),
            ["quick", "unknown", "slow"]
        );
    }

    #[test]
    fn ties_break_by_id_whatever_the_input_order() {
        let mut agents = vec![agent("carol", &[]), agent("alice", &[]), agent("bob", &[])];
        let weights = Weights::default();
        for _ in 0..agents.len() {
            agents.rotate_left(1);
            assert_eq!(
                ids(&rank(&need(None), &agents, &weights)),
                ["alice", "bob", "carol"]
            );
            assert_eq!(
                best_id(&need(None), &agents, &weights).as_deref(),
                Some("alice")
            );
        }
    }

    #[test]
    fn parts_add_up_to_the_score() {
        let weights = Weights::default();
        let busy = Candidate {
            calls: 1,
            max_calls: 4,
            idle_secs: 300,
            handle_secs: Some(450.0),
            ..agent("a", &[("fraud", 3)])
        };
        let distressed = Need {
            distressed: true,
            ..need(Some("fraud"))
        };
        let r = best(&distressed, std::slice::from_ref(&busy), &weights).expect("can take it");
        let expected = Parts {
            skill: 3.0 * 4.0,
            load: -1.5 / 4.0,
            idle: 0.75 * 0.5,
            handle: 0.4 * -0.5,
        };
        assert_eq!(r.parts, expected);
        assert_eq!(r.score, 12.0 - 0.375 + 0.375 - 0.2);
        let free = [agent("b", &[])];
        let idle = best(&need(None), &free, &weights).expect("can take it");
        assert!(idle.skilled, "no skill asked: everyone has it");
        assert_eq!(idle.parts.load.to_bits(), 0.0f64.to_bits(), "0, not -0");
    }

    fn candidate() -> impl Strategy<Value = Candidate> {
        let skill = prop::sample::select(vec!["fraud", "billing", "cards"]);
        let language = prop::sample::select(vec!["en", "en-GB", "EN-us", "fr", "fr-CA"]);
        (
            0..6u8,
            prop::collection::btree_map(skill, 1..=5u8, 0..3),
            prop::collection::vec(language, 0..3),
            any::<bool>(),
            0..4u32,
            0..4u32,
            prop::sample::select(vec![0u64, 60, 600, 3600]),
            prop::option::of(prop::sample::select(vec![60.0, 300.0, 900.0])),
        )
            .prop_map(
                |(id, skills, languages, available, calls, max_calls, idle_secs, handle_secs)| {
                    Candidate {
                        id: format!("agent-{id}"),
                        skills: skills.into_iter().map(|(s, l)| (s.to_owned(), l)).collect(),
                        languages: languages.into_iter().map(str::to_owned).collect(),
                        available,
                        calls,
                        max_calls,
                        idle_secs,
                        handle_secs,
                    }
                },
            )
    }

    fn any_need() -> impl Strategy<Value = Need> {
        (
            prop::option::of(prop::sample::select(vec!["fraud", "billing", "loans"])),
            prop::sample::select(vec!["en-GB", "fr", "de"]),
            prop::sample::select(vec![
                Urgency::Low,
                Urgency::Normal,
                Urgency::High,
                Urgency::Immediate,
            ]),
            any::<bool>(),
        )
            .prop_map(|(skill, language, urgency, distressed)| Need {
                skill: skill.map(str::to_owned),
                language: language.to_owned(),
                urgency,
                distressed,
            })
    }

    fn any_weights() -> impl Strategy<Value = Weights> {
        (
            0.0..3.0f64,
            1.0..6.0f64,
            0.0..3.0f64,
            0.0..2.0f64,
            0.0..2.0f64,
        )
            .prop_map(|(skill, expert_factor, load, idle, handle)| Weights {
                skill,
                expert_factor,
                load,
                idle,
                handle,
            })
    }

    proptest! {
        #[test]
        fn best_is_the_first_of_rank(
            need in any_need(),
            candidates in prop::collection::vec(candidate(), 0..40),
            weights in prop_oneof![Just(Weights::default()), any_weights()],
        ) {
            let ranked = rank(&need, &candidates, &weights);
            let first = best(&need, &candidates, &weights);
            prop_assert_eq!(first.as_ref(), ranked.first());
            let language = primary(&need.language);
            let can_take = candidates
                .iter()
                .filter(|c| has_room(c) && speaks(c, language))
                .count();
            prop_assert_eq!(ranked.len(), can_take);
            for pair in ranked.windows(2) {
                prop_assert_ne!(order(&pair[0], &pair[1]), Ordering::Greater);
            }
        }
    }

    #[test]
    fn queue_serves_by_priority_then_arrival() {
        let mut queue = Queue::default();
        let with = |urgency, distressed| Need {
            urgency,
            distressed,
            ..need(None)
        };
        let mut push = |id: &str, need, at| queue.push(id.into(), need, Overflow::default(), at);
        push("normal-early", with(Urgency::Normal, false), 10);
        push("normal-late", with(Urgency::Normal, false), 20);
        push("normal-same-second", with(Urgency::Normal, false), 20);
        push("upset", with(Urgency::Normal, true), 30);
        push("high", with(Urgency::High, false), 40);
        push("low-upset", with(Urgency::Low, true), 5);
        let order = [
            "high",
            "upset",
            "normal-early",
            "normal-late",
            "normal-same-second",
            "low-upset",
        ];
        for (at, id) in order.iter().enumerate() {
            assert_eq!(queue.position(id), Some(at + 1), "{id}");
        }
        assert_eq!(queue.position("gone"), None);

        // A caller who grows upset moves up, and keeps their arrival.
        queue.push(
            "normal-late".into(),
            with(Urgency::Normal, true),
            Overflow::default(),
            50,
        );
        assert_eq!(queue.position("normal-late"), Some(2));
        let removed = queue.remove("normal-late").expect("queued");
        assert_eq!(removed.enqueued_at_secs, 20);
        assert_eq!(removed.priority, 3);
        assert_eq!(queue.position("upset"), Some(2));
        assert_eq!(queue.remove("normal-late"), None);
    }

    #[test]
    fn estimated_wait_grows_with_position() {
        let mut queue = Queue::default();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            queue.push((*id).into(), need(Some("fraud")), to_general(600), i as u64);
        }
        let busy = |id: &str, handle| Candidate {
            calls: 1,
            handle_secs: handle,
            ..agent(id, &[("fraud", 3)])
        };
        // Mean handle time (200 + 300 default) / 2 = 250 s, two servers: one call
        // ends every 125 s.
        let agents = [
            busy("x", Some(200.0)),
            busy("y", None),
            agent("no-skill", &[]),
            Candidate {
                available: false,
                ..agent("away", &[("fraud", 5)])
            },
        ];
        let waits: Vec<Option<u64>> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| queue.estimated_wait_secs(id, &agents, 10))
            .collect();
        assert_eq!(waits, [Some(125), Some(250), Some(375), Some(500)]);

        // A free place takes the first call at once.
        let mut one_free = agents.clone();
        one_free[0].calls = 0;
        assert_eq!(queue.estimated_wait_secs("a", &one_free, 10), Some(0));
        assert_eq!(queue.estimated_wait_secs("b", &one_free, 10), Some(125));

        assert_eq!(queue.estimated_wait_secs("a", &agents[2..], 10), None);
        assert_eq!(queue.estimated_wait_secs("gone", &agents, 10), None);
    }

    #[test]
    fn next_for_takes_the_first_call_the_agent_can_serve() {
        let mut queue = Queue::default();
        let mut push = |id: &str, need, at| queue.push(id.into(), need, to_general(600), at);
        push("billing", need(Some("billing")), 0);
        let french = Need {
            language: "fr".into(),
            urgency: Urgency::Immediate,
            ..need(None)
        };
        push("french", french, 1);
        push("fraud-late", need(Some("fraud")), 3);
        push("fraud-early", need(Some("fraud")), 2);
        let fraud = agent("f", &[("fraud", 2)]);
        assert_eq!(queue.next_for(&fraud, 10), Some("fraud-early"));
        let both = agent("b", &[("fraud", 2), ("billing", 1)]);
        assert_eq!(queue.next_for(&both, 10), Some("billing"));
        let full = Candidate {
            calls: 1,
            ..fraud.clone()
        };
        assert_eq!(queue.next_for(&full, 10), None);
        let away = Candidate {
            available: false,
            ..fraud
        };
        assert_eq!(queue.next_for(&away, 10), None);
        assert_eq!(queue.next_for(&agent("none", &[]), 10), None);
    }

    #[test]
    fn each_call_overflows_after_its_own_time_to_its_own_agents() {
        let mut queue = Queue::default();
        queue.push(
            "to-general".into(),
            need(Some("fraud")),
            to_general(60),
            100,
        );
        let to_anyone = Overflow {
            after_secs: 30,
            skill: None,
        };
        queue.push("to-anyone".into(), need(Some("cards")), to_anyone, 100);
        let general = agent("g", &[("general", 1)]);
        let other = agent("o", &[("billing", 4)]);
        assert_eq!(queue.next_for(&general, 129), None);
        assert_eq!(queue.next_for(&general, 130), Some("to-anyone"));
        assert_eq!(queue.next_for(&other, 130), Some("to-anyone"));
        queue.remove("to-anyone");
        assert_eq!(queue.next_for(&general, 159), None);
        assert_eq!(queue.next_for(&general, 160), Some("to-general"));
        assert_eq!(
            queue.next_for(&other, 5000),
            None,
            "never an agent outside the overflow's skill"
        );

        // The default overflows at once, to anyone.
        queue.push(
            "fraud".into(),
            need(Some("fraud")),
            Overflow::default(),
            100,
        );
        assert_eq!(queue.next_for(&other, 100), Some("fraud"));
    }

    #[test]
    fn estimated_wait_counts_the_agents_the_call_overflows_to() {
        let mut queue = Queue::default();
        queue.push("fraud".into(), need(Some("fraud")), to_general(60), 100);
        // Only a free general agent: the call waits for its overflow, then takes them.
        let free = [agent("g", &[("general", 1)]), agent("o", &[("billing", 4)])];
        let waits: Vec<Option<u64>> = [100, 130, 160, 200]
            .iter()
            .map(|now| queue.estimated_wait_secs("fraud", &free, *now))
            .collect();
        assert_eq!(waits, [Some(60), Some(30), Some(0), Some(0)]);

        // A busy fraud agent ends a call in 200 s; with the busy general agent, one call of
        // the two ends every 125 s once the call overflows, at 60 s: the sooner, 185 s.
        let busy = |id: &str, skill, handle| Candidate {
            calls: 1,
            handle_secs: handle,
            ..agent(id, &[(skill, 1)])
        };
        let floor = [busy("f", "fraud", Some(200.0)), busy("g", "general", None)];
        assert_eq!(queue.estimated_wait_secs("fraud", &floor, 100), Some(185));
        assert_eq!(
            queue.estimated_wait_secs("fraud", &floor[..1], 100),
            Some(200)
        );
        assert_eq!(
            queue.estimated_wait_secs("fraud", &floor[1..], 100),
            Some(360)
        );
        assert_eq!(
            queue.estimated_wait_secs("fraud", &floor[1..], 160),
            Some(300)
        );

        let outside = [agent("o", &[("billing", 4)])];
        assert_eq!(queue.estimated_wait_secs("fraud", &outside, 100), None);
    }
}
