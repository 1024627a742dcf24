//! The bot-vendor protocol (`baton.bot.v1`): the JSON frames baton and an external bot
//! exchange over a WebSocket while the bot drives a call. `docs/bot-protocol.md` describes
//! it for vendors; the JSON Schemas it points at are generated from these types.
//!
//! The shapes follow what voice-bot platforms already use (a `session:new` first, then
//! arrays of verbs: `say`, `gather`, `hangup`, as jambonz does) and add what they lack: the
//! call's shared context, read and written with versions, and escalation with a reason.

use crate::context::{Change, Context, Event};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The WebSocket subprotocol baton asks for.
pub const SUBPROTOCOL: &str = "baton.bot.v1";
/// Largest frame baton takes from a bot, in bytes.
pub const MAX_FRAME: usize = 64 * 1024;
/// Most verbs one frame may carry.
pub const MAX_VERBS: usize = 32;
/// How much of a refused frame an error quotes back, in characters.
const QUOTE: usize = 200;

/// What baton sends the bot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ToBot {
    /// The first frame: the call and its context so far.
    #[serde(rename = "session:new")]
    SessionNew {
        call_id: String,
        /// The calling number or URI user, as the trunk sent it.
        from: Option<String>,
        /// The dialled user or number.
        to: String,
        context: Arc<Context>,
        /// With the dialplan's `audio = "l16"`: the format of the binary audio frames both
        /// ways.
        audio: Option<AudioFormat>,
    },
    /// A `say` finished playing, or the caller cut it short by speaking.
    #[serde(rename = "verb:done")]
    VerbDone {
        /// The verb's `id`, when it had one.
        id: Option<String>,
        verb: String,
        interrupted: bool,
    },
    /// What a `gather` got.
    #[serde(rename = "gather")]
    Gather {
        id: Option<String>,
        /// `speech`, `dtmf` or `timeout`.
        reason: String,
        /// What the caller said (a final transcript).
        text: Option<String>,
        /// The keys the caller pressed.
        digits: Option<String>,
    },
    /// A line of the caller's transcript: partials while they speak, then the final.
    #[serde(rename = "transcript")]
    Transcript {
        speaker: String,
        text: String,
        #[serde(rename = "final")]
        is_final: bool,
        utterance: u32,
        confidence: f32,
    },
    /// A key the caller pressed.
    #[serde(rename = "dtmf")]
    Dtmf { digit: String },
    /// A change to the call's context made by someone else (speech, an agent, baton).
    #[serde(rename = "context")]
    Context { event: Box<Event> },
    /// The result of a `context` verb.
    #[serde(rename = "context:result")]
    ContextResult {
        id: Option<String>,
        /// The context's version after the write.
        version: u64,
    },
    /// A frame or verb baton refused; the call carries on.
    #[serde(rename = "error")]
    Error {
        /// The refused verb's `id`, when it had one.
        id: Option<String>,
        message: String,
        /// The start of the refused frame.
        frame: Option<String>,
    },
    /// The bot's part is over: the call ended, or baton took it back.
    #[serde(rename = "session:end")]
    SessionEnd { reason: String },
}

/// What the bot sends baton.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum FromBot {
    /// Verbs to run in order, after those already queued.
    #[serde(rename = "verbs")]
    Verbs { verbs: Vec<Verb> },
}

/// One thing the bot asks baton to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Verb {
    /// Speak this with baton's text to speech; `verb:done` follows when it has played.
    Say { text: String, id: Option<String> },
    /// Play a recorded prompt: a WAV file baton fetches over HTTP(S); `verb:done` follows
    /// when it has played, or `error` when it cannot be fetched or read.
    Play { url: String, id: Option<String> },
    /// Listen for the caller's answer: a final transcript, keys, or nothing before the
    /// timeout (counted from the end of what is queued to say); one `gather` frame follows.
    Gather {
        id: Option<String>,
        /// `speech`, `dtmf`, or both (the default).
        #[serde(default = "both_inputs")]
        input: Vec<Input>,
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
        /// Words the recogniser should expect.
        #[serde(default)]
        hints: String,
        /// Keys that end a keyed answer (or `#`).
        #[serde(default = "one_key")]
        max_digits: u32,
    },
    /// Write to the call's shared context, all changes or none; with `expected_version`,
    /// only if nobody wrote since. `context:result` or `error` follows.
    Context {
        id: Option<String>,
        changes: Vec<Change>,
        expected_version: Option<u64>,
    },
    /// Hand the caller to a person, for this reason; the bot's part ends.
    Escalate { reason: String },
    /// Hand the caller to this destination (an agent, a skill); the bot's part ends.
    Transfer { to: String },
    /// End the call once what is queued has been said.
    Hangup {},
}

/// The binary audio frames of a bot with its own speech stack, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AudioFormat {
    /// `L16`: signed 16-bit linear PCM.
    pub encoding: String,
    /// `little-endian`, as speech services take it (not RTP's network order).
    pub byte_order: String,
    pub sample_rate: u32,
    pub channels: u8,
    /// Audio in each frame baton sends, in milliseconds; the bot's frames may be any
    /// whole number of samples.
    pub frame_ms: u32,
}

impl AudioFormat {
    /// The one format baton speaks: its internal audio, unconverted.
    pub fn l16() -> AudioFormat {
        AudioFormat {
            encoding: "L16".into(),
            byte_order: "little-endian".into(),
            sample_rate: baton_media::SAMPLE_RATE,
            channels: 1,
            frame_ms: 20,
        }
    }
}

/// What a `gather` listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    Speech,
    Dtmf,
}

fn both_inputs() -> Vec<Input> {
    vec![Input::Speech, Input::Dtmf]
}

fn default_timeout() -> u32 {
    8
}

fn one_key() -> u32 {
    1
}

/// Longest text a `say` may carry, in characters.
pub const MAX_SAY: usize = 1_000;
/// Longest `gather` timeout, in seconds.
pub const MAX_GATHER_SECS: u32 = 120;

/// Why a frame from a bot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    pub message: String,
}

impl FromBot {
    /// Parses and checks one text frame.
    pub fn parse(frame: &str) -> Result<FromBot, FrameError> {
        let fail = |message: String| FrameError { message };
        if frame.len() > MAX_FRAME {
            return Err(fail(format!(
                "frame of {} bytes; at most {MAX_FRAME}",
                frame.len()
            )));
        }
        let msg: FromBot = serde_json::from_str(frame).map_err(|e| fail(e.to_string()))?;
        let FromBot::Verbs { verbs } = &msg;
        if verbs.len() > MAX_VERBS {
            return Err(fail(format!(
                "{} verbs; at most {MAX_VERBS} a frame",
                verbs.len()
            )));
        }
        for (i, verb) in verbs.iter().enumerate() {
            verb.check().map_err(|e| fail(format!("verbs[{i}]: {e}")))?;
        }
        Ok(msg)
    }
}

impl Verb {
    fn check(&self) -> Result<(), String> {
        match self {
            Verb::Say { text, .. } if text.trim().is_empty() => Err("say: text is empty".into()),
            Verb::Say { text, .. } if text.chars().count() > MAX_SAY => {
                Err(format!("say: text longer than {MAX_SAY} characters"))
            }
            Verb::Gather {
                input,
                timeout_secs,
                max_digits,
                hints,
                ..
            } => {
                if input.is_empty() {
                    return Err("gather: input is empty; give speech, dtmf or both".into());
                }
                if !(1..=MAX_GATHER_SECS).contains(timeout_secs) {
                    return Err(format!(
                        "gather: timeout_secs must be 1 to {MAX_GATHER_SECS}"
                    ));
                }
                if !(1..=32).contains(max_digits) {
                    return Err("gather: max_digits must be 1 to 32".into());
                }
                if hints.len() > 600 {
                    return Err("gather: hints longer than 600 bytes".into());
                }
                Ok(())
            }
            Verb::Context { changes, .. } => {
                if changes.is_empty() {
                    return Err("context: changes is empty".into());
                }
                if changes.iter().any(Change::baton_only) {
                    return Err(
                        "context: escalation is decided by baton; ask with the escalate verb"
                            .into(),
                    );
                }
                changes.iter().enumerate().try_for_each(|(i, c)| {
                    c.validate()
                        .map_err(|e| format!("context: changes[{i}]: {e}"))
                })
            }
            Verb::Play { url, .. }
                if !(url.starts_with("http://") || url.starts_with("https://"))
                    || url.len() > 1024 =>
            {
                Err("play: url must be http:// or https://, at most 1024 bytes".into())
            }
            Verb::Escalate { reason } | Verb::Transfer { to: reason }
                if reason.is_empty() || reason.len() > 128 =>
            {
                Err("escalate/transfer: reason or destination must be 1 to 128 bytes".into())
            }
            _ => Ok(()),
        }
    }
}

impl ToBot {
    /// The error frame for a refused frame, quoting its start.
    pub fn refused(error: &FrameError, frame: &str) -> ToBot {
        ToBot::Error {
            id: None,
            message: error.message.clone(),
            frame: Some(frame.chars().take(QUOTE).collect()),
        }
    }

    /// The frame as sent.
    pub fn to_text(&self) -> String {
        // Serialising plain data to a string cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_parse_with_defaults() {
        let msg = FromBot::parse(
            r#"{"type": "verbs", "verbs": [
                {"verb": "say", "text": "Hello."},
                {"verb": "gather", "id": "g1", "hints": "yes no"},
                {"verb": "context", "changes": [{"op": "intent", "name": "balance", "confidence": 0.9}]},
                {"verb": "escalate", "reason": "caller_request"},
                {"verb": "hangup"}
            ]}"#,
        )
        .unwrap();
        let FromBot::Verbs { verbs } = msg;
        assert_eq!(verbs.len(), 5);
        assert_eq!(
            verbs[1],
            Verb::Gather {
                id: Some("g1".into()),
                input: vec![Input::Speech, Input::Dtmf],
                timeout_secs: 8,
                hints: "yes no".into(),
                max_digits: 1,
            }
        );
    }

    #[test]
    fn bad_frames_say_what_is_wrong() {
        for (frame, expected) in [
            ("not json", "expected"),
            (r#"{"type": "verbs"}"#, "missing field `verbs`"),
            (r#"{"type": "launch"}"#, "unknown variant `launch`"),
            (
                r#"{"type": "verbs", "verbs": [{"verb": "dance"}]}"#,
                "unknown variant `dance`",
            ),
            (
                r#"{"type": "verbs", "verbs": [{"verb": "say", "text": " "}]}"#,
                "verbs[0]: say: text is empty",
            ),
            (
                r#"{"type": "verbs", "verbs": [{"verb": "gather", "timeout_secs": 0}]}"#,
                "verbs[0]: gather: timeout_secs",
            ),
            (
                r#"{"type": "verbs", "verbs": [{"verb": "context", "changes": [{"op": "intent", "name": "x", "confidence": 7}]}]}"#,
                "verbs[0]: context: changes[0]: confidence",
            ),
            (
                r#"{"type": "verbs", "verbs": [], "extra": 1}"#,
                "unknown field `extra`",
            ),
        ] {
            let e = FromBot::parse(frame).unwrap_err();
            assert!(e.message.contains(expected), "{frame}: {e}");
        }
        let long = format!(
            r#"{{"type": "verbs", "verbs": [], "x": "{}"}}"#,
            "a".repeat(MAX_FRAME)
        );
        assert!(FromBot::parse(&long)
            .unwrap_err()
            .message
            .contains("at most"));
        let quoted = ToBot::refused(
            &FrameError {
                message: "bad".into(),
            },
            &"é".repeat(500),
        );
        let ToBot::Error {
            frame: Some(frame), ..
        } = quoted
        else {
            panic!()
        };
        assert_eq!(frame.chars().count(), 200);
    }

    /// `docs/bot-protocol.md` points vendors at these files; they must say what the code
    /// does. `BATON_WRITE_SCHEMAS=1 cargo test schemas` rewrites them after a change.
    #[test]
    fn the_published_schemas_match_the_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schemas");
        for (file, schema) in [
            ("bot-protocol-to-bot.json", schemars::schema_for!(ToBot)),
            ("bot-protocol-from-bot.json", schemars::schema_for!(FromBot)),
        ] {
            let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let path = dir.join(file);
            if std::env::var_os("BATON_WRITE_SCHEMAS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            }
            let published = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                published == text,
                "{} is out of date: run BATON_WRITE_SCHEMAS=1 cargo test schemas",
                path.display()
            );
        }
    }

    #[test]
    fn frames_to_the_bot_carry_their_type() {
        let text = ToBot::Dtmf { digit: "5".into() }.to_text();
        assert_eq!(text, r#"{"type":"dtmf","digit":"5"}"#);
        let text = ToBot::Gather {
            id: None,
            reason: "timeout".into(),
            text: None,
            digits: None,
        }
        .to_text();
        assert!(text.starts_with(r#"{"type":"gather""#), "{text}");
    }
}
