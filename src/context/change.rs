//! Typed writes to a context and how they apply. A change is checked before it touches the
//! document, so a bad write (from a bot over the wire, say) is refused whole with a reason
//! and the document stays as it was.

use super::document::{
    Action, Context, IntentGuess, Summary, TranscriptLine, VibeReading, VIBE_HISTORY,
};
use crate::escalation::Decision;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Longest text in a change (a transcript line, a summary), in bytes.
pub const MAX_TEXT: usize = 4096;
/// Largest JSON value in a change (a slot, an action's detail, fetched data), in bytes.
pub const MAX_VALUE: usize = 16 * 1024;
/// Most entries a list in the document keeps; older ones are dropped first.
pub const MAX_LIST: usize = 1024;
/// Most slots and customer-data keys a document holds.
pub const MAX_KEYS: usize = 256;
/// Most reasons an escalation decision gives.
const MAX_REASONS: usize = 16;

/// One write to a context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// The calling number, known when the call arrives.
    Caller { number: String },
    /// Identity verified (or a failed attempt, with `verified` false).
    Identity {
        verified: bool,
        method: Option<String>,
        customer_id: Option<String>,
    },
    /// What the caller wants, with the runners-up.
    Intent {
        name: String,
        confidence: f32,
        #[serde(default)]
        alternatives: Vec<IntentGuess>,
    },
    /// Sets a slot; `null` clears it.
    Slot { name: String, value: Value },
    /// A new mood reading; the previous one goes to the history.
    Vibe {
        label: String,
        arousal: f32,
        valence: f32,
        trend: String,
        #[serde(default)]
        evidence: Vec<String>,
        utterance: u32,
    },
    /// Customer data fetched, merged key by key into what is there.
    CustomerData { data: Map<String, Value> },
    /// A partial or final transcript; a line replaces the partial of the same speaker and
    /// utterance.
    Transcript(TranscriptLine),
    /// Something done on the caller's behalf.
    Action { name: String, detail: Value },
    /// The dialog moved to a step.
    BotStep { step: String },
    /// A caller phrase no intent matched.
    BotUnmatched { phrase: String },
    /// The dialog asked again.
    BotReprompt,
    /// A resolution the bot tried, and how it went.
    BotAttempt { attempt: String },
    /// The bot cannot go on, and why.
    BotStuck { reason: String },
    /// Who runs the call now: `bot` or `agent:<id>`.
    Running { who: String },
    /// An agent joined (`joined` true) or left the call.
    Agent { id: String, joined: bool },
    /// baton's escalation decision changed: whether the call should go to a person, how
    /// urgently, for which skill, and why. Only baton writes it.
    Escalation(Decision),
    /// The summary, rewritten. baton writes it itself after every other change (see
    /// [`super::summary`]); one written by a client stands until the next change.
    Summary(Summary),
}

/// Who wrote a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// baton itself: speech, the call's signalling, the summary.
    System,
    /// The dialog running the call, built in or external.
    Bot,
    /// An agent, by id.
    Agent(String),
}

impl Author {
    /// The form used inside the document (`system`, `bot`, `agent:<id>`).
    pub fn tag(&self) -> String {
        match self {
            Author::System => "system".into(),
            Author::Bot => "bot".into(),
            Author::Agent(id) => format!("agent:{id}"),
        }
    }
}

/// A change as applied: the version it made, who and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub version: u64,
    pub author: Author,
    pub at_ms: u64,
    pub change: Change,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ChangeError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ChangeError {
    ChangeError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn text(field: &'static str, s: &str) -> Result<(), ChangeError> {
    if s.len() > MAX_TEXT {
        return Err(invalid(field, format!("longer than {MAX_TEXT} bytes")));
    }
    Ok(())
}

fn name(field: &'static str, s: &str) -> Result<(), ChangeError> {
    if s.is_empty() || s.len() > 128 {
        return Err(invalid(field, "must be 1 to 128 bytes"));
    }
    Ok(())
}

fn unit(field: &'static str, v: f32) -> Result<(), ChangeError> {
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(field, format!("{v} is outside 0..=1")));
    }
    Ok(())
}

fn value(field: &'static str, v: &Value) -> Result<(), ChangeError> {
    // serde_json writes what it parsed, so its length is the size the value costs.
    if v.to_string().len() > MAX_VALUE {
        return Err(invalid(field, format!("larger than {MAX_VALUE} bytes")));
    }
    Ok(())
}

const LABELS: [&str; 6] = [
    "calm",
    "neutral",
    "anxious",
    "frustrated",
    "angry",
    "confused",
];
const TRENDS: [&str; 3] = ["steady", "improving", "deteriorating"];
const SPEAKERS: [&str; 3] = ["caller", "bot", "agent"];

impl Change {
    /// Checks the change on its own, before it touches a document.
    pub fn validate(&self) -> Result<(), ChangeError> {
        match self {
            Change::Caller { number } => name("number", number),
            Change::Identity {
                method,
                customer_id,
                ..
            } => {
                if let Some(m) = method {
                    name("method", m)?;
                }
                if let Some(id) = customer_id {
                    name("customer_id", id)?;
                }
                Ok(())
            }
            Change::Intent {
                name: intent,
                confidence,
                alternatives,
            } => {
                name("name", intent)?;
                unit("confidence", *confidence)?;
                if alternatives.len() > 16 {
                    return Err(invalid("alternatives", "more than 16"));
                }
                for a in alternatives {
                    name("alternatives.name", &a.name)?;
                    unit("alternatives.confidence", a.confidence)?;
                }
                Ok(())
            }
            Change::Slot {
                name: slot,
                value: v,
            } => {
                name("name", slot)?;
                value("value", v)
            }
            Change::Vibe {
                label,
                arousal,
                valence,
                trend,
                evidence,
                ..
            } => {
                if !LABELS.contains(&label.as_str()) {
                    return Err(invalid(
                        "label",
                        format!("{label:?} is not one of {LABELS:?}"),
                    ));
                }
                if !TRENDS.contains(&trend.as_str()) {
                    return Err(invalid(
                        "trend",
                        format!("{trend:?} is not one of {TRENDS:?}"),
                    ));
                }
                unit("arousal", *arousal)?;
                if !(-1.0..=1.0).contains(valence) {
                    return Err(invalid("valence", format!("{valence} is outside -1..=1")));
                }
                if evidence.len() > 16 {
                    return Err(invalid("evidence", "more than 16 entries"));
                }
                evidence.iter().try_for_each(|e| text("evidence", e))
            }
            Change::CustomerData { data } => {
                if data.len() > MAX_KEYS {
                    return Err(invalid("data", format!("more than {MAX_KEYS} keys")));
                }
                data.keys().try_for_each(|k| name("data key", k))?;
                value("data", &Value::Object(data.clone()))
            }
            Change::Transcript(line) => {
                if !SPEAKERS.contains(&line.speaker.as_str()) {
                    return Err(invalid(
                        "speaker",
                        format!("{:?} is not one of {SPEAKERS:?}", line.speaker),
                    ));
                }
                if line.end_ms < line.start_ms {
                    return Err(invalid("end_ms", "before start_ms"));
                }
                unit("confidence", line.confidence)?;
                text("text", &line.text)
            }
            Change::Action {
                name: action,
                detail,
            } => {
                name("name", action)?;
                value("detail", detail)
            }
            Change::BotStep { step } => name("step", step),
            Change::BotUnmatched { phrase } => text("phrase", phrase),
            Change::BotReprompt => Ok(()),
            Change::BotAttempt { attempt } => text("attempt", attempt),
            Change::BotStuck { reason } => text("reason", reason),
            Change::Running { who } => {
                if who == "bot" || who.strip_prefix("agent:").is_some_and(|id| !id.is_empty()) {
                    Ok(())
                } else {
                    Err(invalid(
                        "who",
                        format!("{who:?} is neither bot nor agent:<id>"),
                    ))
                }
            }
            Change::Agent { id, .. } => name("id", id),
            Change::Escalation(decision) => {
                if decision.reasons.len() > MAX_REASONS {
                    return Err(invalid("reasons", format!("at most {MAX_REASONS}")));
                }
                decision
                    .reasons
                    .iter()
                    .flat_map(|r| &r.evidence)
                    .try_for_each(|e| text("evidence", e))
            }
            Change::Summary(summary) => {
                text("text", &summary.text)?;
                for part in [
                    &summary.situation,
                    &summary.actions,
                    &summary.progress,
                    &summary.next_step,
                    &summary.sentiment,
                ]
                .into_iter()
                .flatten()
                {
                    text("summary part", part)?;
                }
                Ok(())
            }
        }
    }

    /// Whether only baton itself may write this change: the escalation decision is its
    /// own, and a bot asks for a person with the protocol's `escalate` instead.
    pub fn baton_only(&self) -> bool {
        matches!(self, Change::Escalation(_))
    }

    /// Applies a valid change to `doc` (the caller bumps the version).
    pub(crate) fn apply(&self, doc: &mut Context, author: &Author, at_ms: u64) {
        match self.clone() {
            Change::Caller { number } => doc.caller.number = Some(number),
            Change::Identity {
                verified,
                method,
                customer_id,
            } => {
                if verified {
                    doc.identity.verified = true;
                    doc.identity.method = method;
                    doc.identity.customer_id = customer_id.or(doc.identity.customer_id.take());
                } else {
                    doc.identity.failed_attempts += 1;
                }
            }
            Change::Intent {
                name,
                confidence,
                alternatives,
            } => {
                doc.intent.name = Some(name);
                doc.intent.confidence = confidence;
                doc.intent.alternatives = alternatives;
            }
            Change::Slot { name, value } => {
                if value.is_null() {
                    doc.slots.remove(&name);
                } else if doc.slots.len() < MAX_KEYS || doc.slots.contains_key(&name) {
                    doc.slots.insert(name, value);
                }
            }
            Change::Vibe {
                label,
                arousal,
                valence,
                trend,
                evidence,
                utterance,
            } => {
                let v = &mut doc.vibe;
                if let (Some(label), Some(trend)) = (v.label.take(), v.trend.take()) {
                    let previous = VibeReading {
                        label,
                        arousal: v.arousal,
                        valence: v.valence,
                        trend,
                        evidence: std::mem::take(&mut v.evidence),
                        utterance: v.utterance,
                    };
                    push_bounded(&mut v.history, previous, VIBE_HISTORY);
                }
                v.label = Some(label);
                v.arousal = arousal;
                v.valence = valence;
                v.trend = Some(trend);
                v.evidence = evidence;
                v.utterance = utterance;
            }
            Change::CustomerData { data } => {
                for (k, val) in data {
                    if doc.customer_data.len() < MAX_KEYS || doc.customer_data.contains_key(&k) {
                        doc.customer_data.insert(k, val);
                    }
                }
            }
            Change::Transcript(line) => {
                let same = doc.transcript.iter().rposition(|l| {
                    l.speaker == line.speaker && l.utterance == line.utterance && !l.is_final
                });
                match same {
                    Some(i) => doc.transcript[i] = line,
                    None => push_bounded(&mut doc.transcript, line, MAX_LIST),
                }
            }
            Change::Action { name, detail } => push_bounded(
                &mut doc.actions,
                Action {
                    name,
                    detail,
                    by: author.tag(),
                    at_ms,
                },
                MAX_LIST,
            ),
            Change::BotStep { step } => push_bounded(&mut doc.bot.path, step, MAX_LIST),
            Change::BotUnmatched { phrase } => {
                push_bounded(&mut doc.bot.unmatched, phrase, MAX_LIST)
            }
            Change::BotReprompt => doc.bot.reprompts += 1,
            Change::BotAttempt { attempt } => {
                push_bounded(&mut doc.bot.attempts, attempt, MAX_LIST)
            }
            Change::BotStuck { reason } => doc.bot.stuck = Some(reason),
            Change::Running { who } => doc.participants.running = who,
            Change::Agent { id, joined } => {
                let agents = &mut doc.participants.agents;
                agents.retain(|a| *a != id);
                if joined {
                    agents.push(id);
                }
            }
            Change::Escalation(decision) => doc.escalation = Some(decision),
            Change::Summary(summary) => doc.summary = summary,
        }
    }
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize) {
    if list.len() >= max {
        list.remove(0);
    }
    list.push(item);
}
