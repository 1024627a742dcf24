//! The context document of one call. Its JSON names are an API: tests and integrations
//! outside the project read `version`, `identity.verified`, `intent.name`,
//! `intent.confidence`, `vibe.label`, `vibe.arousal`, `vibe.trend`, `summary.text` and
//! `transcript[]` (`speaker`, `text`, `final`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Everything known about one call, as of `version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Context {
    /// baton's id of the call.
    pub call_id: String,
    /// The number of changes applied so far; 0 for a fresh document.
    pub version: u64,
    /// Milliseconds since the Unix epoch of the last change.
    pub updated_ms: u64,
    pub caller: Caller,
    pub identity: Identity,
    pub intent: Intent,
    /// What the dialog has collected (card digits, amounts, dates), by slot name.
    pub slots: BTreeMap<String, Value>,
    pub vibe: VibeState,
    /// Customer data fetched for this call (CRM records, balances), merged by key.
    pub customer_data: Map<String, Value>,
    pub transcript: Vec<TranscriptLine>,
    pub actions: Vec<Action>,
    pub bot: BotProgress,
    pub participants: Participants,
    /// baton's latest escalation decision; `None` until something counted.
    pub escalation: Option<crate::escalation::Decision>,
    pub summary: Summary,
}

/// Who is calling, as the network and earlier calls tell it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Caller {
    /// The calling number or URI user, as the trunk sent it.
    pub number: Option<String>,
    /// What earlier calls of this caller left behind; `None` for a first call.
    pub memory: Option<CustomerMemory>,
}

/// A returning caller's history, carried into each new call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerMemory {
    pub customer_id: Option<String>,
    /// Earlier calls, newest first.
    pub previous_calls: Vec<PreviousCall>,
    /// Follow-ups promised and not yet done ("callback in 48 h").
    pub open_follow_ups: Vec<String>,
}

/// One earlier call, in brief.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PreviousCall {
    pub call_id: String,
    pub ended_ms: u64,
    pub intent: Option<String>,
    /// How it ended, in a few words ("card blocked by agent", "caller hung up").
    pub outcome: Option<String>,
    pub summary: String,
}

/// Whether the caller proved who they are, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Identity {
    pub verified: bool,
    /// How: `date_of_birth`, `card_digits`, `agent`, ...
    pub method: Option<String>,
    pub customer_id: Option<String>,
    /// Failed verification attempts.
    pub failed_attempts: u32,
}

/// What the caller wants, as the dialog understood it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Intent {
    pub name: Option<String>,
    /// 0..=1.
    pub confidence: f32,
    /// The runners-up, best first.
    pub alternatives: Vec<IntentGuess>,
}

/// A candidate intent and its score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IntentGuess {
    pub name: String,
    pub confidence: f32,
}

/// The caller's mood now, and how it got here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VibeState {
    /// `calm`, `neutral`, `anxious`, `frustrated`, `angry` or `confused`; `None` before the
    /// first reading.
    pub label: Option<String>,
    pub arousal: f32,
    pub valence: f32,
    /// `steady`, `improving` or `deteriorating`.
    pub trend: Option<String>,
    pub evidence: Vec<String>,
    /// The utterance the reading is from.
    pub utterance: u32,
    /// Earlier readings, oldest first, at most [`VIBE_HISTORY`].
    pub history: Vec<VibeReading>,
}

/// Readings of the mood kept in [`VibeState::history`].
pub const VIBE_HISTORY: usize = 32;

/// One reading of the mood, after an utterance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VibeReading {
    pub label: String,
    pub arousal: f32,
    pub valence: f32,
    pub trend: String,
    pub evidence: Vec<String>,
    /// The utterance it was read from.
    pub utterance: u32,
}

/// One line of the transcript: a partial while the utterance goes on, replaced by its
/// final.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptLine {
    /// `caller`, `bot` or `agent`.
    pub speaker: String,
    pub text: String,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The utterance's number on its leg, from 1.
    pub utterance: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub confidence: f32,
}

/// Something done on the caller's behalf.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Action {
    /// What, as a short code: `card_blocked`, `balance_read`, `sms_sent`.
    pub name: String,
    /// Details that matter later (the card, the amount), free-form.
    pub detail: Value,
    /// Who did it: `bot`, `system` or `agent:<id>`.
    pub by: String,
    pub at_ms: u64,
}

/// What the bot tried and where it got stuck: the escalation engine and the agent read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BotProgress {
    /// Dialog steps visited, in order (bounded, oldest dropped).
    pub path: Vec<String>,
    /// Caller phrases no intent matched.
    pub unmatched: Vec<String>,
    pub reprompts: u32,
    /// Resolutions attempted, with their outcome ("block_card: failed, CRM timeout").
    pub attempts: Vec<String>,
    /// Where it could not go on, if it could not.
    pub stuck: Option<String>,
}

/// Who is on the call and who is running it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Participants {
    /// `bot` or `agent:<id>`: only this one speaks for baton.
    pub running: String,
    /// Agents on the call now.
    pub agents: Vec<String>,
}

impl Default for Participants {
    fn default() -> Self {
        Participants {
            running: "bot".into(),
            agents: Vec::new(),
        }
    }
}

/// The state of the call in a few sentences, readable by an agent at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// The parts below joined, at most [`crate::context::summary::MAX_CHARS`] characters.
    pub text: String,
    /// Who is calling, whether and how they were verified, what they want.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub situation: Option<String>,
    /// What was done for the caller, and by whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<String>,
    /// Where things stand: what the bot tried, where it got stuck, who runs the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// What should happen next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// The caller's mood and its trend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_names_the_fields_integrations_read() {
        let schema = serde_json::to_value(schemars::schema_for!(Context)).unwrap();
        let props = &schema["properties"];
        for key in [
            "version",
            "identity",
            "intent",
            "vibe",
            "summary",
            "transcript",
        ] {
            assert!(props.get(key).is_some(), "schema lacks {key}: {schema}");
        }
        let defs = &schema["$defs"];
        assert!(defs["Identity"]["properties"].get("verified").is_some());
        assert!(defs["Intent"]["properties"].get("confidence").is_some());
        assert!(defs["VibeState"]["properties"].get("trend").is_some());
        assert!(defs["Summary"]["properties"].get("text").is_some());
        let line = &defs["TranscriptLine"]["properties"];
        for key in ["speaker", "text", "final"] {
            assert!(line.get(key).is_some(), "transcript line lacks {key}");
        }
    }
}
