//! One `[[step]]` of a dialplan: how it is written in TOML and what it becomes once checked,
//! with media files resolved to absolute paths the call task can open.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;

/// One thing a call does, in order; when the last step ends, baton hangs up.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Play a WAV file to the caller; a looped file plays until the call ends.
    Play {
        /// Absolute path of the file.
        file: PathBuf,
        /// Start again from the beginning at the end of the file.
        looped: bool,
    },
    /// Speak a text to the caller (rendered once at start-up); barge-in cuts it like a
    /// prompt.
    Say {
        /// What to say, as written.
        text: String,
        /// An espeak-ng voice for this text; the configured one when `None`.
        voice: Option<String>,
    },
    /// Loop hold music for a fixed time.
    Hold {
        /// Absolute path of the music (`hold-music.wav` unless the step names other music).
        file: Option<PathBuf>,
        /// How long to hold.
        secs: u32,
    },
    /// Send the caller's own audio back until the call ends.
    Echo,
    /// Hand the call to a bot until it hangs up or hands over; the next step runs after a
    /// handover.
    Bot(BotSpec),
    /// Record the caller into `data/recordings/`.
    Record {
        /// A DTMF digit that ends the recording.
        stop_on_dtmf: Option<char>,
        /// The longest recording, after which the next step starts.
        max_secs: u32,
        /// Absolute path of `beep.wav`, to play before recording starts, when asked for.
        beep: Option<PathBuf>,
    },
    /// Collect DTMF digits from the caller.
    CollectDtmf {
        /// Stop after this many digits.
        max_digits: usize,
        /// A digit that ends collection early (not kept in the digits).
        terminator: Option<char>,
        /// Give up after this long.
        timeout_secs: u32,
    },
    /// Send DTMF digits to the caller as RFC 4733 events (e.g. to drive a carrier's menu).
    SendDtmf {
        /// The digits, in order.
        digits: String,
    },
    /// Silence for a while.
    Pause {
        /// How long, in seconds (fractions allowed).
        secs: f32,
    },
    /// End the call.
    Hangup,
}

impl Step {
    /// The media file this step plays, if any, so the call can load it before it starts.
    pub fn media_file(&self) -> Option<&Path> {
        match self {
            Step::Play { file, .. } => Some(file),
            Step::Hold { file, .. } => file.as_deref(),
            Step::Record { beep, .. } => beep.as_deref(),
            _ => None,
        }
    }

    /// Whether the step lasts until the call ends, so no step after it can run.
    pub(crate) fn ends_call(&self) -> bool {
        matches!(
            self,
            Step::Play { looped: true, .. } | Step::Echo | Step::Hangup
        )
    }
}

/// The names of the actions a step may take, in the order the docs list them.
pub(crate) const ACTIONS: [&str; 10] = [
    "play",
    "say",
    "bot",
    "hold",
    "echo",
    "record",
    "collect_dtmf",
    "send_dtmf",
    "pause",
    "hangup",
];

/// A `[[step]]` table as written; exactly one field should be set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub(crate) play: Option<PlayArg>,
    pub(crate) say: Option<SayArg>,
    pub(crate) bot: Option<BotArg>,
    pub(crate) hold: Option<HoldArg>,
    pub(crate) echo: Option<NoOptions>,
    pub(crate) record: Option<RecordArgs>,
    pub(crate) collect_dtmf: Option<CollectArgs>,
    pub(crate) send_dtmf: Option<String>,
    pub(crate) pause: Option<f64>,
    pub(crate) hangup: Option<NoOptions>,
}

impl RawStep {
    /// The names of the actions this step sets, to refuse none or several.
    pub(crate) fn actions(&self) -> Vec<&'static str> {
        let set = [
            self.play.is_some(),
            self.say.is_some(),
            self.bot.is_some(),
            self.hold.is_some(),
            self.echo.is_some(),
            self.record.is_some(),
            self.collect_dtmf.is_some(),
            self.send_dtmf.is_some(),
            self.pause.is_some(),
            self.hangup.is_some(),
        ];
        ACTIONS
            .iter()
            .zip(set)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect()
    }
}

/// `play = "file.wav"` or `play = { file = "music.wav", loop = true }`.
#[derive(Debug)]
pub(crate) struct PlayArg {
    pub(crate) file: String,
    pub(crate) looped: bool,
    /// Written as a table, so problems with the file point at its `file` key.
    pub(crate) table: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayTable {
    file: String,
    #[serde(default, rename = "loop")]
    looped: bool,
}

/// `say = "Hello."` or `say = { text = "Hello.", voice = "en-us" }`.
#[derive(Debug)]
pub(crate) struct SayArg {
    pub(crate) text: String,
    pub(crate) voice: Option<String>,
    /// Written as a table, so problems with the text point at its `text` key.
    pub(crate) table: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SayTable {
    text: String,
    voice: Option<String>,
}

/// Which bot a `bot` step hands the call to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotSpec {
    /// The dialplan's built-in dialog, `[dialog]`.
    Dialog,
    /// An external bot speaking the bot protocol over a WebSocket.
    Remote {
        /// `ws://host:port/path` or `wss://host/path`.
        url: String,
        /// The `[dialog]` node that takes the call over when the bot cannot be reached or
        /// goes away mid-call; without one, the call goes on to the next step.
        fallback: Option<String>,
        /// `audio = "l16"`: the caller's audio goes to the bot, and the bot's binary frames
        /// play to the caller, for bots with their own speech stack.
        audio: bool,
    },
}

/// `bot = "dialog"` or `bot = { url = "ws://...", fallback = "takeover" }`.
#[derive(Debug)]
pub(crate) struct BotArg {
    /// `None` for the built-in dialog.
    pub(crate) remote: Option<BotTable>,
    /// The string form, checked to be `dialog`.
    pub(crate) name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BotTable {
    pub(crate) url: String,
    pub(crate) fallback: Option<String>,
    pub(crate) audio: Option<String>,
}

impl<'de> Deserialize<'de> for BotArg {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BotVisitor;
        impl<'de> Visitor<'de> for BotVisitor {
            type Value = BotArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "\"dialog\", or a table like { url = \"ws://bot:9000/\", fallback = \"node\" }",
                )
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<BotArg, E> {
                Ok(BotArg {
                    remote: None,
                    name: Some(name.to_owned()),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BotArg, A::Error> {
                let table = BotTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(BotArg {
                    remote: Some(table),
                    name: None,
                })
            }
        }
        deserializer.deserialize_any(BotVisitor)
    }
}

/// `hold = 30` or `hold = { secs = 30, music = "other.wav" }`.
#[derive(Debug)]
pub(crate) struct HoldArg {
    pub(crate) secs: i64,
    pub(crate) music: Option<String>,
    /// Written as a table, so problems with the time point at its `secs` key.
    pub(crate) table: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldTable {
    secs: i64,
    music: Option<String>,
}

/// `record = { stop_on_dtmf = "#", max_secs = 300, beep = true }`, every key optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordArgs {
    pub(crate) stop_on_dtmf: Option<String>,
    pub(crate) max_secs: Option<i64>,
    #[serde(default)]
    pub(crate) beep: bool,
}

/// `collect_dtmf = { max_digits = 4, terminator = "#", timeout_secs = 10 }`, every key optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CollectArgs {
    pub(crate) max_digits: Option<i64>,
    pub(crate) terminator: Option<String>,
    pub(crate) timeout_secs: Option<i64>,
}

/// `echo = {}` and `hangup = {}`: actions without options.
#[derive(Debug)]
pub(crate) struct NoOptions;

impl<'de> Deserialize<'de> for PlayArg {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PlayVisitor;
        impl<'de> Visitor<'de> for PlayVisitor {
            type Value = PlayArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file name, or a table like { file = \"music.wav\", loop = true }")
            }
            fn visit_str<E: de::Error>(self, file: &str) -> Result<PlayArg, E> {
                Ok(PlayArg {
                    file: file.to_owned(),
                    looped: false,
                    table: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PlayArg, A::Error> {
                let table = PlayTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PlayArg {
                    file: table.file,
                    looped: table.looped,
                    table: true,
                })
            }
        }
        deserializer.deserialize_any(PlayVisitor)
    }
}

impl<'de> Deserialize<'de> for SayArg {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SayVisitor;
        impl<'de> Visitor<'de> for SayVisitor {
            type Value = SayArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text, or a table like { text = \"Hello.\", voice = \"en-us\" }")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SayArg, E> {
                Ok(SayArg {
                    text: text.to_owned(),
                    voice: None,
                    table: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SayArg, A::Error> {
                let table = SayTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(SayArg {
                    text: table.text,
                    voice: table.voice,
                    table: true,
                })
            }
        }
        deserializer.deserialize_any(SayVisitor)
    }
}

impl<'de> Deserialize<'de> for HoldArg {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HoldVisitor;
        impl<'de> Visitor<'de> for HoldVisitor {
            type Value = HoldArg;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds, or a table like { secs = 30, music = \"other.wav\" }")
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<HoldArg, E> {
                Ok(HoldArg {
                    secs,
                    music: None,
                    table: false,
                })
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<HoldArg, E> {
                Ok(HoldArg {
                    secs: i64::try_from(secs).unwrap_or(i64::MAX),
                    music: None,
                    table: false,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HoldArg, A::Error> {
                let table = HoldTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(HoldArg {
                    secs: table.secs,
                    music: table.music,
                    table: true,
                })
            }
        }
        deserializer.deserialize_any(HoldVisitor)
    }
}

impl<'de> Deserialize<'de> for NoOptions {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EmptyVisitor;
        impl<'de> Visitor<'de> for EmptyVisitor {
            type Value = NoOptions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an empty table {}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOptions, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoOptions),
                    Some(key) => Err(de::Error::custom(format!(
                        "unknown key `{key}`: this action takes no options, write {{}}"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(EmptyVisitor)
    }
}

/// Reads a DTMF digit written as a one-character string: 0-9, `*`, `#` or A-D.
pub(crate) fn dtmf_digit(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    let valid = digit.is_ascii_digit() || matches!(digit, '*' | '#' | 'A'..='D');
    (chars.next().is_none() && valid).then_some(digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_digits() {
        assert_eq!(dtmf_digit("#"), Some('#'));
        assert_eq!(dtmf_digit("*"), Some('*'));
        assert_eq!(dtmf_digit("7"), Some('7'));
        assert_eq!(dtmf_digit("d"), Some('D'));
        for bad in ["", "##", "E", "x", " "] {
            assert_eq!(dtmf_digit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn steps_that_end_the_call() {
        let play = |looped| Step::Play {
            file: PathBuf::from("/m/a.wav"),
            looped,
        };
        assert!(play(true).ends_call());
        assert!(!play(false).ends_call());
        assert!(Step::Echo.ends_call());
        assert!(Step::Hangup.ends_call());
        assert!(!Step::Pause { secs: 1.0 }.ends_call());
        assert_eq!(play(false).media_file(), Some(Path::new("/m/a.wav")));
        assert_eq!(Step::Echo.media_file(), None);
    }
}
