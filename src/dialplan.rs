//! Dialplans: TOML files in `dialplans/` that say what happens when someone calls a given
//! user or number. Each file names the numbers it answers (`match`) and a list of steps;
//! `dialplans/README.md` is the operator's reference. Loading checks every file and every
//! media file it names, and reports all problems at once with file, line and key.

mod step;

pub use step::{BotSpec, Step};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::location::{self, KeyPath, Location, SourceFile};
use crate::dialog::customers::Customers;
use crate::dialog::plan::DialogPlan;
use crate::dialog::BuiltinDialog;
use crate::escalation::Policy;
use crate::followup::spec::{FollowUpSpec, RawFollowUp};
use crate::tts;
use step::{RawStep, ACTIONS};

/// What one dialplan file says: the numbers it answers and the steps a call goes through.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialplan {
    /// `name`, or the file name without `.toml`; used in logs and the API.
    pub name: String,
    /// `description`, for people reading `baton check`.
    pub description: Option<String>,
    /// The file it was read from.
    pub file: PathBuf,
    /// `match`: the request-URI users or dialled numbers it answers.
    pub patterns: Vec<Pattern>,
    /// `ring_secs`: how long the caller hears ringing before the call is answered (0: at once).
    pub ring_secs: u32,
    /// `[[step]]`: what the call does, in order.
    pub steps: Vec<Step>,
    /// `speech_hints`: words callers of this plan are expected to say, to bias speech
    /// recognition toward them (product names, "block", "card").
    pub speech_hints: String,
    /// `[dialog]`: the built-in bot a `bot = "dialog"` step hands the call to.
    pub dialog: Option<BuiltinDialog>,
    /// `[escalation]`: when this plan's calls go from the bot to a person; the defaults
    /// when the plan has a bot but no table.
    pub escalation: Option<Policy>,
    /// `[transfer]`: how a call escalated goes to an agent and comes back.
    pub transfer: TransferPlan,
    /// `[followup.NAME]`: the messages this plan's calls may promise, by name.
    pub followups: BTreeMap<String, FollowUpSpec>,
}

/// A dialplan's `[transfer]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferPlan {
    /// `ring_secs` (default 20, 5 to 120), `update_secs` (default 20, 5 to 300),
    /// `queue_secs` (default 300, 5 to 3600), `overflow_secs` (default 0, 0 to 3600, less
    /// than `queue_secs`) and `overflow_skill` (any agent when not given).
    pub settings: crate::transfer::Settings,
    /// `return_to`: the `[dialog]` node the bot picks up at when a caller comes back from
    /// an agent (or no agent could come); the dialog's start when not given.
    pub return_to: Option<String>,
    /// `handback`: disposition code → the `[dialog]` node the bot picks up at when an
    /// agent hands the caller back with that disposition; others pick up at `return_to`.
    pub handback: BTreeMap<String, String>,
    /// `music`: what the caller hears between the transfer's prompts (absolute path;
    /// `hold-music.wav` unless named). `None` for a plan without a bot, which never
    /// transfers.
    pub music: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransfer {
    ring_secs: Option<i64>,
    update_secs: Option<i64>,
    queue_secs: Option<i64>,
    overflow_secs: Option<i64>,
    overflow_skill: Option<String>,
    return_to: Option<String>,
    handback: Option<BTreeMap<String, String>>,
    music: Option<String>,
}

/// One entry of `match`: an exact user/number, or a prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Matches this user exactly (case-sensitive, as SIP compares users).
    Exact(String),
    /// Matches every user that starts with this; `*` alone matches every call.
    Prefix(String),
}

/// Every dialplan in a directory, indexed for routing.
#[derive(Debug, Clone, Default)]
pub struct Dialplans {
    plans: Vec<Dialplan>,
    exact: HashMap<String, usize>,
    /// Longest prefix first, so the first hit is the most specific one.
    prefixes: Vec<(String, usize)>,
}

/// What `baton check` prints when every dialplan is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// One line per dialplan, in file-name order.
    pub plans: Vec<PlanSummary>,
}

/// One valid dialplan, in brief.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSummary {
    /// The dialplan's name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its `match` entries as written.
    pub matches: Vec<String>,
    /// How many steps it has.
    pub steps: usize,
    /// How many nodes its built-in dialog has, if it has one.
    pub dialog_nodes: Option<usize>,
}

/// A problem found while loading dialplans; each one names where it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialplanError {
    /// The dialplan directory could not be listed.
    #[error("{}: cannot read dialplan directory: {source}", dir.display())]
    ReadDir {
        /// The directory as given.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A dialplan file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The media directory could not be listed, so no media file could be checked.
    #[error("{}: cannot read media directory: {source}", dir.display())]
    MediaDir {
        /// The directory as given.
        dir: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file is not valid TOML.
    #[error("{at}: {message}")]
    Syntax {
        /// Where parsing stopped.
        at: Location,
        /// What the parser expected.
        message: String,
    },
    /// A key is unknown, has the wrong type, or holds a value baton cannot use.
    #[error("{at}: {message}")]
    Invalid {
        /// The key and where it is.
        at: Location,
        /// What is wrong with it.
        message: String,
    },
    /// A step names a media file that is missing or not usable.
    #[error("{at}: media file \"{file}\" {problem}")]
    Media {
        /// The step key that names it.
        at: Location,
        /// The file as written in the dialplan.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Two dialplans claim the same `match` entry or the same name.
    #[error("{at}: \"{value}\" is already used by {}:{}", other_file.display(), other_line)]
    Duplicate {
        /// The second claim.
        at: Location,
        /// `match` or `name`.
        what: &'static str,
        /// The entry both claim.
        value: String,
        /// The file of the first claim.
        other_file: PathBuf,
        /// The line of the first claim.
        other_line: usize,
    },
}

/// Loads and checks every dialplan in `dialplans` against the media in `media`, for
/// `baton check DIR`: all problems are reported, not just the first.
pub fn check_dir(dialplans: &Path, media: &Path) -> Result<Summary, Vec<DialplanError>> {
    Dialplans::load(dialplans, media).map(|plans| plans.summary())
}

impl Dialplans {
    /// Reads every `*.toml` file in `dir` (in file-name order; other files are ignored) and
    /// checks each media file it names in `media`.
    pub fn load(dir: &Path, media: &Path) -> Result<Dialplans, Vec<DialplanError>> {
        let mut errors = Vec::new();
        let files = match dialplan_files(dir) {
            Ok(files) => files,
            Err(source) => {
                return Err(vec![DialplanError::ReadDir {
                    dir: dir.to_owned(),
                    source,
                }])
            }
        };
        let mut media = MediaDir::open(media);
        if let Some(error) = media.error.take() {
            errors.push(error);
        }

        let mut plans = Vec::new();
        // Where each match entry and name was first seen, to name both files on a clash.
        let mut claimed: HashMap<(&'static str, String), (PathBuf, usize)> = HashMap::new();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(source) => {
                    errors.push(DialplanError::ReadFile { file, source });
                    continue;
                }
            };
            let Some((plan, name_at, match_at)) =
                Dialplan::parse_located(&text, &file, &mut media, &mut errors)
            else {
                continue;
            };
            let claims = std::iter::once(("name", plan.name.clone(), name_at)).chain(
                plan.patterns
                    .iter()
                    .zip(match_at)
                    .map(|(p, at)| ("match", p.to_string(), at)),
            );
            for (what, value, at) in claims {
                match claimed.get(&(what, value.clone())) {
                    Some((other_file, other_line)) => errors.push(DialplanError::Duplicate {
                        at,
                        what,
                        value,
                        other_file: other_file.clone(),
                        other_line: *other_line,
                    }),
                    None => {
                        claimed.insert((what, value), (at.file, at.line));
                    }
                }
            }
            plans.push(plan);
        }
        if errors.is_empty() {
            Ok(Dialplans::index(plans))
        } else {
            Err(errors)
        }
    }

    fn index(plans: Vec<Dialplan>) -> Dialplans {
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            for pattern in &plan.patterns {
                match pattern {
                    Pattern::Exact(user) => {
                        exact.insert(user.clone(), i);
                    }
                    Pattern::Prefix(prefix) => prefixes.push((prefix.clone(), i)),
                }
            }
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Dialplans {
            plans,
            exact,
            prefixes,
        }
    }

    /// The dialplan for a called user or number: an exact match first, then the longest
    /// matching prefix.
    pub fn route(&self, user: &str) -> Option<&Dialplan> {
        let index = self.exact.get(user).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| user.starts_with(prefix.as_str()))
                .map(|(_, i)| *i)
        })?;
        self.plans.get(index)
    }

    /// Every dialplan, in file-name order.
    pub fn iter(&self) -> impl Iterator<Item = &Dialplan> {
        self.plans.iter()
    }

    /// How many dialplans there are.
    pub fn len(&self) -> usize {
        self.plans.len()
    }

    /// Whether there are none (every call would be refused).
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// A brief of every dialplan, for `baton check`.
    pub fn summary(&self) -> Summary {
        Summary {
            plans: self
                .plans
                .iter()
                .map(|plan| PlanSummary {
                    name: plan.name.clone(),
                    file: plan.file.clone(),
                    matches: plan.patterns.iter().map(Pattern::to_string).collect(),
                    steps: plan.steps.len(),
                    dialog_nodes: plan.dialog.as_ref().map(|d| d.plan.nodes.len()),
                })
                .collect(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for plan in &self.plans {
            write!(
                f,
                "{}: \"{}\" answers {}; {} step{}",
                plan.file.display(),
                plan.name,
                plan.matches.join(", "),
                plan.steps,
                if plan.steps == 1 { "" } else { "s" }
            )?;
            if let Some(nodes) = plan.dialog_nodes {
                write!(f, ", a dialog of {nodes} nodes")?;
            }
            writeln!(f)?;
        }
        let n = self.plans.len();
        write!(f, "{n} dialplan{} OK", if n == 1 { "" } else { "s" })
    }
}

impl Dialplan {
    /// Parses one dialplan file's text, checking media in `media`; `file` names it in errors.
    pub fn parse(text: &str, file: &Path, media: &Path) -> Result<Dialplan, Vec<DialplanError>> {
        let mut media = MediaDir::open(media);
        let mut errors: Vec<DialplanError> = media.error.take().into_iter().collect();
        let plan = Dialplan::parse_located(text, file, &mut media, &mut errors);
        match plan {
            Some((plan, _, _)) if errors.is_empty() => Ok(plan),
            _ => Err(errors),
        }
    }

    /// Every media file the steps play, for loading before the call starts.
    pub fn media_files(&self) -> impl Iterator<Item = &Path> {
        let prompts = self
            .dialog
            .iter()
            .flat_map(|d| d.plan.nodes.values())
            .filter_map(|node| node.play.as_deref().map(Path::new));
        self.steps
            .iter()
            .filter_map(Step::media_file)
            .chain(prompts)
            .chain(self.transfer.music.as_deref())
    }

    /// Parses one file, pushing every problem found onto `errors`. Returns the plan (when
    /// its header is usable) with the locations of its name and of each match entry.
    fn parse_located(
        text: &str,
        file: &Path,
        media: &mut MediaDir,
        errors: &mut Vec<DialplanError>,
    ) -> Option<(Dialplan, Location, Vec<Location>)> {
        let source = match SourceFile::parse(file, text) {
            Ok(source) => source,
            Err((at, message)) => {
                errors.push(DialplanError::Syntax { at, message });
                return None;
            }
        };
        let invalid = |path: KeyPath, message: String| DialplanError::Invalid {
            at: source.at_key(&path),
            message,
        };

        let header: Option<RawHeader> = match location::deserialize_table(source.root()) {
            Ok(header) => Some(header),
            Err(e) => {
                let (at, message) = source.at_error(&e);
                errors.push(DialplanError::Invalid { at, message });
                None
            }
        };

        let steps = parse_steps(&source, media, errors, header.is_some());
        let dialog = parse_dialog(&source, file, &steps, media, errors);
        let escalation = parse_escalation(&source, &steps, errors);
        let transfer = parse_transfer(&source, dialog.as_ref(), &steps, media, errors);
        let followups = parse_followups(&source, dialog.as_ref(), errors);

        // Problems in the steps do not stop the name and match entries from being claimed,
        // so a clash with another file is reported in the same run.
        let header = header?;
        let header_errors_before = errors.len();
        let name = match header.name {
            Some(name) if name.trim().is_empty() => {
                errors.push(invalid(KeyPath::keys(&["name"]), "is empty".to_owned()));
                String::new()
            }
            Some(name) => name,
            None => file
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
        };
        let mut patterns = Vec::new();
        let mut match_at = Vec::new();
        match header.matches {
            None => errors.push(invalid(
                KeyPath::keys(&["match"]),
                "is missing: list the users or numbers this dialplan answers, \
                 e.g. match = [\"600\"]"
                    .to_owned(),
            )),
            Some(entries) if entries.is_empty() => errors.push(invalid(
                KeyPath::keys(&["match"]),
                "is empty: list the users or numbers this dialplan answers".to_owned(),
            )),
            Some(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    let path = KeyPath::keys(&["match"]).index(i);
                    match Pattern::parse(entry) {
                        Ok(pattern) if patterns.contains(&pattern) => {
                            errors.push(invalid(path, format!("\"{entry}\" is listed twice")));
                        }
                        Ok(pattern) => {
                            patterns.push(pattern);
                            match_at.push(source.at_key(&path));
                        }
                        Err(message) => errors.push(invalid(path, message)),
                    }
                }
            }
        }
        let ring_secs = header.ring_secs.unwrap_or(0);
        if !(0..=MAX_RING_SECS).contains(&ring_secs) {
            errors.push(invalid(
                KeyPath::keys(&["ring_secs"]),
                format!("expected 0 to {MAX_RING_SECS} seconds, got {ring_secs}"),
            ));
        }
        let speech_hints = header.speech_hints.unwrap_or_default();
        if speech_hints.len() > MAX_SPEECH_HINTS {
            errors.push(invalid(
                KeyPath::keys(&["speech_hints"]),
                format!(
                    "{} characters; at most {MAX_SPEECH_HINTS} (the recogniser reads only so much)",
                    speech_hints.len()
                ),
            ));
        }
        if errors.len() > header_errors_before {
            return None;
        }
        let plan = Dialplan {
            name,
            description: header.description,
            file: file.to_owned(),
            patterns,
            ring_secs: u32::try_from(ring_secs).ok()?,
            steps,
            speech_hints,
            dialog,
            escalation,
            transfer,
            followups,
        };
        let name_at = source.at_key(&KeyPath::keys(&["name"]));
        Some((plan, name_at, match_at))
    }
}

/// The top level of a dialplan file; `step` is read table by table so that a bad step
/// does not hide problems in the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    description: Option<String>,
    #[serde(rename = "match")]
    matches: Option<Vec<String>>,
    ring_secs: Option<i64>,
    speech_hints: Option<String>,
    #[serde(rename = "step")]
    _step: Option<serde::de::IgnoredAny>,
    #[serde(rename = "dialog")]
    _dialog: Option<serde::de::IgnoredAny>,
    #[serde(rename = "escalation")]
    _escalation: Option<serde::de::IgnoredAny>,
    #[serde(rename = "transfer")]
    _transfer: Option<serde::de::IgnoredAny>,
    #[serde(rename = "followup")]
    _followup: Option<serde::de::IgnoredAny>,
}

/// Reads and checks the `[followup.NAME]` tables, and that every follow-up a dialog node
/// names is one of them.
fn parse_followups(
    source: &SourceFile<'_>,
    dialog: Option<&BuiltinDialog>,
    errors: &mut Vec<DialplanError>,
) -> BTreeMap<String, FollowUpSpec> {
    let mut followups = BTreeMap::new();
    let invalid = |path: KeyPath, message: String| DialplanError::Invalid {
        at: source.at_key(&path),
        message,
    };
    match source.root().get("followup") {
        None => {}
        Some(toml_edit::Item::Table(table)) => {
            for (name, item) in table.iter() {
                let path = KeyPath::keys(&["followup", name]);
                if !crate::followup::spec::is_code(name) {
                    errors.push(invalid(
                        path,
                        "a follow-up's name is 1 to 64 letters, digits, _ or -".to_owned(),
                    ));
                    continue;
                }
                let Some(table) = item.as_table() else {
                    errors.push(invalid(path, "expected a [followup.NAME] table".to_owned()));
                    continue;
                };
                let raw: RawFollowUp = match location::deserialize_table(table) {
                    Ok(raw) => raw,
                    Err(e) => {
                        let (at, message) = source.at_error(&e);
                        errors.push(DialplanError::Invalid { at, message });
                        continue;
                    }
                };
                match FollowUpSpec::check(raw) {
                    Ok(spec) => {
                        followups.insert(name.to_owned(), spec);
                    }
                    Err(problems) => errors.extend(
                        problems
                            .into_iter()
                            .map(|(key, message)| invalid(path.clone().key(key), message)),
                    ),
                }
            }
        }
        Some(_) => errors.push(invalid(
            KeyPath::keys(&["followup"]),
            "expected [followup.NAME] tables".to_owned(),
        )),
    }
    for (name, node) in dialog.iter().flat_map(|d| &d.plan.nodes) {
        for (i, followup) in node.followup.iter().enumerate() {
            if !followups.contains_key(followup) {
                errors.push(invalid(
                    KeyPath::keys(&["dialog", "node", name, "followup"]).index(i),
                    format!("no [followup.{followup}] in this dialplan"),
                ));
            }
        }
    }
    followups
}

/// Reads and checks `[transfer]`; the defaults without one.
fn parse_transfer(
    source: &SourceFile<'_>,
    dialog: Option<&BuiltinDialog>,
    steps: &[Step],
    media: &mut MediaDir,
    errors: &mut Vec<DialplanError>,
) -> TransferPlan {
    let mut plan = TransferPlan::default();
    let has_bot = steps.iter().any(|s| matches!(s, Step::Bot(_)));
    let mut music = |name: &str, errors: &mut Vec<DialplanError>| match media.check(name) {
        Ok(path) => Some(path),
        Err(problem) => {
            errors.push(DialplanError::Media {
                at: source.at_key(&KeyPath::keys(&["transfer", "music"])),
                file: name.to_owned(),
                problem,
            });
            None
        }
    };
    let Some(item) = source.root().get("transfer") else {
        if has_bot {
            plan.music = music("hold-music.wav", errors);
        }
        return plan;
    };
    let at = |name: &str| source.at_key(&KeyPath::keys(&["transfer", name]));
    let Some(table) = item.as_table() else {
        errors.push(DialplanError::Invalid {
            at: source.at_key(&KeyPath::keys(&["transfer"])),
            message: "expected a [transfer] table".to_owned(),
        });
        return plan;
    };
    let raw: RawTransfer = match location::deserialize_table(table) {
        Ok(raw) => raw,
        Err(e) => {
            let (at, message) = source.at_error(&e);
            errors.push(DialplanError::Invalid { at, message });
            return plan;
        }
    };
    let mut secs = |name: &str, value: Option<i64>, min: u64, max: u64, into: &mut Duration| {
        let Some(v) = value else { return };
        match u64::try_from(v) {
            Ok(v) if (min..=max).contains(&v) => *into = Duration::from_secs(v),
            _ => errors.push(DialplanError::Invalid {
                at: at(name),
                message: format!("expected {min} to {max} seconds, got {v}"),
            }),
        }
    };
    let settings = &mut plan.settings;
    secs("ring_secs", raw.ring_secs, 5, 120, &mut settings.ring);
    secs("update_secs", raw.update_secs, 5, 300, &mut settings.update);
    secs("queue_secs", raw.queue_secs, 5, 3600, &mut settings.queue);
    let mut overflow = Duration::ZERO;
    secs("overflow_secs", raw.overflow_secs, 0, 3600, &mut overflow);
    if overflow >= settings.queue {
        errors.push(DialplanError::Invalid {
            at: at("overflow_secs"),
            message: format!(
                "expected less than queue_secs ({} seconds), got {}: the caller would be \
                 offered a callback before the call overflows",
                settings.queue.as_secs(),
                overflow.as_secs()
            ),
        });
    } else {
        settings.overflow.after_secs = overflow.as_secs();
    }
    match raw.overflow_skill {
        Some(skill) if skill.trim().is_empty() => errors.push(DialplanError::Invalid {
            at: at("overflow_skill"),
            message: "expected a skill's name, got an empty string".to_owned(),
        }),
        skill => settings.overflow.skill = skill,
    }
    plan.music = music(raw.music.as_deref().unwrap_or("hold-music.wav"), errors);
    if let Some(node) = raw.return_to {
        match dialog {
            Some(d) if d.plan.nodes.contains_key(&node) => plan.return_to = Some(node),
            Some(_) => errors.push(DialplanError::Invalid {
                at: at("return_to"),
                message: format!("no [dialog] node is named {node:?}"),
            }),
            None => errors.push(DialplanError::Invalid {
                at: at("return_to"),
                message: "names a [dialog] node, but the plan has no [dialog]".to_owned(),
            }),
        }
    }
    if let Some(handback) = raw.handback {
        plan.handback = parse_handback(source, dialog, handback, errors);
    }
    plan
}

/// Checks `[transfer] handback`: each disposition code a code an agent can send, each
/// node one of the `[dialog]`'s.
fn parse_handback(
    source: &SourceFile<'_>,
    dialog: Option<&BuiltinDialog>,
    handback: BTreeMap<String, String>,
    errors: &mut Vec<DialplanError>,
) -> BTreeMap<String, String> {
    let Some(dialog) = dialog else {
        if !handback.is_empty() {
            errors.push(DialplanError::Invalid {
                at: source.at_key(&KeyPath::keys(&["transfer", "handback"])),
                message: "names [dialog] nodes, but the plan has no [dialog]".to_owned(),
            });
        }
        return BTreeMap::new();
    };
    let mut checked = BTreeMap::new();
    for (code, node) in handback {
        let at = source.at_key(&KeyPath::keys(&["transfer", "handback", &code]));
        if !crate::desk::is_disposition(&code) {
            errors.push(DialplanError::Invalid {
                at,
                message: format!(
                    "{code:?} is not a disposition code: expected 1 to {} letters, digits, \
                     _ or -",
                    crate::desk::MAX_DISPOSITION
                ),
            });
        } else if !dialog.plan.nodes.contains_key(&node) {
            errors.push(DialplanError::Invalid {
                at,
                message: format!("no [dialog] node is named {node:?}"),
            });
        } else {
            checked.insert(code, node);
        }
    }
    checked
}

/// Reads and checks `[escalation]`; a plan with a bot and no table gets the defaults.
fn parse_escalation(
    source: &SourceFile<'_>,
    steps: &[Step],
    errors: &mut Vec<DialplanError>,
) -> Option<Policy> {
    let has_bot = steps.iter().any(|s| matches!(s, Step::Bot(_)));
    let Some(item) = source.root().get("escalation") else {
        return has_bot.then(Policy::default);
    };
    let key = |name: &str| KeyPath::keys(&["escalation", name]);
    let Some(table) = item.as_table() else {
        errors.push(DialplanError::Invalid {
            at: source.at_key(&KeyPath::keys(&["escalation"])),
            message: "expected an [escalation] table".to_owned(),
        });
        return None;
    };
    let policy: Policy = match location::deserialize_table(table) {
        Ok(policy) => policy,
        Err(e) => {
            let (at, message) = source.at_error(&e);
            errors.push(DialplanError::Invalid { at, message });
            return None;
        }
    };
    if let Err((name, message)) = policy.check() {
        errors.push(DialplanError::Invalid {
            at: source.at_key(&key(name)),
            message,
        });
        return None;
    }
    Some(policy)
}

/// Reads and checks `[dialog]` and its customer file, which must go together with a
/// `bot = "dialog"` step.
fn parse_dialog(
    source: &SourceFile<'_>,
    file: &Path,
    steps: &[Step],
    media: &mut MediaDir,
    errors: &mut Vec<DialplanError>,
) -> Option<BuiltinDialog> {
    let invalid = |path: &KeyPath, message: String| DialplanError::Invalid {
        at: source.at_key(path),
        message,
    };
    let needs_dialog = |s: &Step| match s {
        Step::Bot(BotSpec::Dialog) => true,
        Step::Bot(BotSpec::Remote { fallback, .. }) => fallback.is_some(),
        _ => false,
    };
    let bot_step = steps.iter().any(needs_dialog);
    let table = match source.root().get("dialog") {
        None => {
            if bot_step {
                errors.push(invalid(
                    &KeyPath::keys(&["step"]),
                    "a step hands the call to the bot, but there is no [dialog]".to_owned(),
                ));
            }
            return None;
        }
        Some(toml_edit::Item::Table(table)) => table,
        Some(_) => {
            errors.push(invalid(
                &KeyPath::keys(&["dialog"]),
                "expected a [dialog] table".to_owned(),
            ));
            return None;
        }
    };
    if !bot_step {
        errors.push(invalid(
            &KeyPath::keys(&["dialog"]),
            "is never used: add a [[step]] with bot = \"dialog\", or name one of its nodes \
             as an external bot's fallback"
                .to_owned(),
        ));
    }
    let raw = match location::deserialize_table(table) {
        Ok(raw) => raw,
        Err(e) => {
            let (at, message) = source.at_error(&e);
            errors.push(DialplanError::Invalid { at, message });
            return None;
        }
    };
    let mut plan = match DialogPlan::check(raw) {
        Ok(plan) => plan,
        Err(problems) => {
            errors.extend(
                problems
                    .iter()
                    .map(|(path, message)| invalid(path, message.clone())),
            );
            return None;
        }
    };
    for (i, step) in steps.iter().enumerate() {
        if let Step::Bot(BotSpec::Remote {
            fallback: Some(node),
            ..
        }) = step
        {
            if !plan.nodes.contains_key(node) {
                errors.push(invalid(
                    &KeyPath::keys(&["step"]).index(i).key("bot").key("fallback"),
                    format!("names node \"{node}\", which [dialog] does not have"),
                ));
            }
        }
    }
    let mut prompts_ok = true;
    for (name, node) in &mut plan.nodes {
        let Some(prompt) = &mut node.play else {
            continue;
        };
        match media.check(prompt) {
            Ok(path) => *prompt = path.display().to_string(),
            Err(problem) => {
                prompts_ok = false;
                errors.push(DialplanError::Media {
                    at: source.at_key(&KeyPath::keys(&["dialog", "node", name, "play"])),
                    file: prompt.clone(),
                    problem,
                });
            }
        }
    }
    if !prompts_ok {
        return None;
    }
    let customers = match &plan.customers {
        None => Customers::default(),
        Some(name) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(name);
            match Customers::load(&path) {
                Ok(customers) => customers,
                Err(e) => {
                    errors.push(invalid(
                        &KeyPath::keys(&["dialog", "customers"]),
                        format!("{}: {e}", path.display()),
                    ));
                    return None;
                }
            }
        }
    };
    Some(BuiltinDialog::new(plan, customers))
}

/// An external bot's address: plain WebSocket on a host and port baton can reach.
fn check_bot_url(url: &str) -> Result<(), String> {
    let bad = || format!("expected ws://host:port/path or wss://host/path, got \"{url}\"");
    let rest = match url.split_once("://") {
        Some(("ws" | "wss", rest)) => rest,
        _ => return Err(bad()),
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || url.len() > 512
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

/// Reads and checks every step, pushing each problem onto `errors`.
fn parse_steps(
    source: &SourceFile<'_>,
    media: &mut MediaDir,
    errors: &mut Vec<DialplanError>,
    header_ok: bool,
) -> Vec<Step> {
    let step_key = KeyPath::keys(&["step"]);
    let invalid = |path: &KeyPath, message: String| DialplanError::Invalid {
        at: source.at_key(path),
        message,
    };
    let raw: Vec<Result<RawStep, toml_edit::de::Error>> = match source.root().get("step") {
        None => {
            if header_ok {
                errors.push(invalid(
                    &step_key,
                    "is missing: add at least one [[step]], e.g. [[step]] echo = {}".to_owned(),
                ));
            }
            return Vec::new();
        }
        Some(toml_edit::Item::ArrayOfTables(tables)) => {
            tables.iter().map(location::deserialize_table).collect()
        }
        Some(toml_edit::Item::Value(toml_edit::Value::Array(array))) => array
            .iter()
            .map(|value| location::deserialize_value(value.clone()))
            .collect(),
        Some(_) => {
            errors.push(invalid(
                &step_key,
                "expected a list of [[step]] tables".to_owned(),
            ));
            return Vec::new();
        }
    };

    let mut steps = Vec::new();
    let mut ended_by: Option<(usize, &'static str)> = None;
    for (i, raw) in raw.into_iter().enumerate() {
        let path = step_key.clone().index(i);
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                let (at, message) = source.at_error(&e);
                errors.push(DialplanError::Invalid { at, message });
                continue;
            }
        };
        let actions = raw.actions();
        let action = match actions.as_slice() {
            [one] => *one,
            [] => {
                errors.push(invalid(
                    &path,
                    format!("has no action; give one of {}", ACTIONS.join(", ")),
                ));
                continue;
            }
            several => {
                errors.push(invalid(
                    &path,
                    format!(
                        "has {}; give one action per [[step]]",
                        several.join(" and ")
                    ),
                ));
                continue;
            }
        };
        if let Some((earlier, what)) = ended_by {
            errors.push(invalid(
                &path,
                format!(
                    "never runs: step {} ({what}) lasts until the call ends",
                    earlier + 1
                ),
            ));
            ended_by = None;
        }
        let mut check = StepCheck {
            source,
            path: path.clone().key(action),
            media,
            errors,
        };
        if let Some(step) = check.resolve(raw) {
            if step.ends_call() {
                ended_by = Some((i, action));
            }
            steps.push(step);
        }
    }
    steps
}

/// Longest ringing before answering: carriers give up on unanswered calls after a few minutes.
const MAX_RING_SECS: i64 = 120;
/// Longest `speech_hints`: whisper's initial prompt holds about 220 tokens.
const MAX_SPEECH_HINTS: usize = 600;
/// Longest recording a step may ask for: four hours.
const MAX_RECORD_SECS: i64 = 4 * 3600;
/// Longest hold or pause: an hour.
const MAX_WAIT_SECS: i64 = 3600;
/// Most digits one `collect_dtmf` may gather.
const MAX_DIGITS: i64 = 64;
/// Longest wait for digits.
const MAX_DTMF_TIMEOUT_SECS: i64 = 300;

/// Turns one step as written into a checked [`Step`], reporting problems at its keys.
struct StepCheck<'s, 'a> {
    source: &'s SourceFile<'a>,
    /// `step N` plus the action key, e.g. `step 2 key "record"`.
    path: KeyPath,
    media: &'s mut MediaDir,
    errors: &'s mut Vec<DialplanError>,
}

impl StepCheck<'_, '_> {
    fn resolve(&mut self, raw: RawStep) -> Option<Step> {
        if let Some(play) = raw.play {
            let key = play.table.then_some("file");
            let file = self.media_file(key, &play.file)?;
            return Some(Step::Play {
                file,
                looped: play.looped,
            });
        }
        if let Some(say) = raw.say {
            let text_key = say.table.then_some("text");
            let text = say.text.trim();
            let chars = text.chars().count();
            let text_ok = if text.is_empty() {
                self.invalid(text_key, "is empty: write what to say".to_owned());
                false
            } else if chars > tts::MAX_TEXT_CHARS {
                self.invalid(
                    text_key,
                    format!(
                        "{chars} characters; at most {} (about a minute of speech)",
                        tts::MAX_TEXT_CHARS
                    ),
                );
                false
            } else {
                true
            };
            let voice_ok = match &say.voice {
                Some(voice) if !tts::valid_voice(voice) => {
                    self.invalid(
                        Some("voice"),
                        format!(
                            "expected an espeak-ng voice name such as \"en-gb\" \
                             (letters, digits, -, _ and +), got \"{voice}\""
                        ),
                    );
                    false
                }
                _ => true,
            };
            // What the caller hears when speech cannot be rendered must be there.
            self.media_file(None, tts::FALLBACK_PROMPT)?;
            return (text_ok && voice_ok).then(|| Step::Say {
                text: text.to_owned(),
                voice: say.voice,
            });
        }
        if let Some(hold) = raw.hold {
            let secs_key = hold.table.then_some("secs");
            let secs = self.in_range(secs_key, hold.secs, 1, MAX_WAIT_SECS, "seconds");
            let file = match &hold.music {
                Some(music) => self.media_file(Some("music"), music),
                None => self.media_file(None, "hold-music.wav"),
            };
            return Some(Step::Hold {
                file: Some(file?),
                secs: u32::try_from(secs?).ok()?,
            });
        }
        if raw.echo.is_some() {
            return Some(Step::Echo);
        }
        if let Some(bot) = raw.bot {
            let spec = match (bot.name, bot.remote) {
                (Some(name), _) if name == "dialog" => BotSpec::Dialog,
                (Some(name), _) => {
                    self.invalid(
                        None,
                        format!("expected \"dialog\" (the [dialog] of this file), or a table with the url of an external bot, got \"{name}\""),
                    );
                    return None;
                }
                (None, Some(remote)) => {
                    if let Err(problem) = check_bot_url(&remote.url) {
                        self.invalid(Some("url"), problem);
                        return None;
                    }
                    let audio = match remote.audio.as_deref() {
                        None => false,
                        Some("l16") => true,
                        Some(other) => {
                            self.invalid(
                                Some("audio"),
                                format!("expected \"l16\" (the caller's audio to the bot and the bot's to the caller, as binary frames), got \"{other}\""),
                            );
                            return None;
                        }
                    };
                    BotSpec::Remote {
                        url: remote.url,
                        fallback: remote.fallback,
                        audio,
                    }
                }
                (None, None) => return None,
            };
            // The bot speaks with text to speech, which falls back to this prompt.
            self.media_file(None, tts::FALLBACK_PROMPT)?;
            return Some(Step::Bot(spec));
        }
        if let Some(record) = raw.record {
            let stop_on_dtmf = match &record.stop_on_dtmf {
                Some(text) => Some(self.digit("stop_on_dtmf", text)?),
                None => None,
            };
            let max_secs = self.in_range(
                Some("max_secs"),
                record.max_secs.unwrap_or(300),
                1,
                MAX_RECORD_SECS,
                "seconds",
            );
            let beep = if record.beep {
                Some(self.media_file(Some("beep"), "beep.wav")?)
            } else {
                None
            };
            return Some(Step::Record {
                stop_on_dtmf,
                max_secs: u32::try_from(max_secs?).ok()?,
                beep,
            });
        }
        if let Some(collect) = raw.collect_dtmf {
            let max_digits = self.in_range(
                Some("max_digits"),
                collect.max_digits.unwrap_or(16),
                1,
                MAX_DIGITS,
                "digits",
            );
            let timeout_secs = self.in_range(
                Some("timeout_secs"),
                collect.timeout_secs.unwrap_or(5),
                1,
                MAX_DTMF_TIMEOUT_SECS,
                "seconds",
            );
            // A terminator of "" turns it off; without the key, `#` ends the digits.
            let terminator = match collect.terminator.as_deref() {
                None => Some('#'),
                Some("") => None,
                Some(text) => Some(self.digit("terminator", text)?),
            };
            return Some(Step::CollectDtmf {
                max_digits: usize::try_from(max_digits?).ok()?,
                terminator,
                timeout_secs: u32::try_from(timeout_secs?).ok()?,
            });
        }
        if let Some(digits) = raw.send_dtmf {
            let bad: Vec<char> = digits
                .chars()
                .filter(|c| step::dtmf_digit(&c.to_string()).is_none())
                .collect();
            if digits.is_empty() || digits.chars().count() > MAX_DIGITS as usize || !bad.is_empty()
            {
                self.invalid(
                    None,
                    format!(
                        "expected 1 to {MAX_DIGITS} DTMF digits (0-9, *, #, A-D), got \"{digits}\""
                    ),
                );
                return None;
            }
            return Some(Step::SendDtmf { digits });
        }
        if let Some(secs) = raw.pause {
            if !(secs > 0.0 && secs <= MAX_WAIT_SECS as f64) {
                self.invalid(
                    None,
                    format!("expected more than 0 and at most {MAX_WAIT_SECS} seconds, got {secs}"),
                );
                return None;
            }
            return Some(Step::Pause { secs: secs as f32 });
        }
        raw.hangup.map(|_| Step::Hangup)
    }

    fn key_path(&self, key: Option<&str>) -> KeyPath {
        match key {
            Some(key) => self.path.clone().key(key),
            None => self.path.clone(),
        }
    }

    fn invalid(&mut self, key: Option<&str>, message: String) {
        let at = self.source.at_key(&self.key_path(key));
        self.errors.push(DialplanError::Invalid { at, message });
    }

    fn in_range(
        &mut self,
        key: Option<&str>,
        value: i64,
        low: i64,
        high: i64,
        unit: &str,
    ) -> Option<i64> {
        if (low..=high).contains(&value) {
            Some(value)
        } else {
            self.invalid(key, format!("expected {low} to {high} {unit}, got {value}"));
            None
        }
    }

    fn digit(&mut self, key: &str, text: &str) -> Option<char> {
        let digit = step::dtmf_digit(text);
        if digit.is_none() {
            self.invalid(
                Some(key),
                format!("expected one DTMF digit (0-9, *, #, A-D), got \"{text}\""),
            );
        }
        digit
    }

    fn media_file(&mut self, key: Option<&str>, name: &str) -> Option<PathBuf> {
        match self.media.check(name) {
            Ok(path) => Some(path),
            Err(problem) => {
                let at = self.source.at_key(&self.key_path(key));
                self.errors.push(DialplanError::Media {
                    at,
                    file: name.to_owned(),
                    problem,
                });
                None
            }
        }
    }
}

impl Pattern {
    /// Reads a `match` entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<Pattern, String> {
        let (body, prefix) = match entry.strip_suffix('*') {
            Some(body) => (body, true),
            None => (entry, false),
        };
        if entry.is_empty() {
            return Err("is empty; write a user or number such as \"600\"".to_owned());
        }
        if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("\"{entry}\" contains a space or control character"));
        }
        if entry.contains(['@', ':', ';', '<', '>']) {
            return Err(format!(
                "\"{entry}\" looks like a URI; write only the user part, e.g. \"600\" for sip:600@host"
            ));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_owned())
        } else {
            Pattern::Exact(body.to_owned())
        })
    }

    /// Whether a called user or number matches this entry.
    pub fn matches(&self, user: &str) -> bool {
        match self {
            Pattern::Exact(exact) => user == exact,
            Pattern::Prefix(prefix) => user.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(user) => f.write_str(user),
            Pattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// The media directory, with each file checked once however many steps name it.
struct MediaDir {
    /// As given, for messages ("not found in media/").
    shown: PathBuf,
    /// Absolute, for the paths handed to the call task.
    absolute: PathBuf,
    /// Whether the directory could be listed; if not, files are not checked one by one.
    readable: bool,
    /// The directory's own problem, reported once.
    error: Option<DialplanError>,
    checked: HashMap<String, Result<PathBuf, String>>,
}

impl MediaDir {
    fn open(dir: &Path) -> MediaDir {
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let error = std::fs::read_dir(dir)
            .err()
            .map(|source| DialplanError::MediaDir {
                dir: dir.to_owned(),
                source,
            });
        MediaDir {
            shown: dir.to_owned(),
            absolute,
            readable: error.is_none(),
            error,
            checked: HashMap::new(),
        }
    }

    /// The absolute path of a media file named in a dialplan, once it is known to be a WAV
    /// with audio in it.
    fn check(&mut self, name: &str) -> Result<PathBuf, String> {
        if let Some(result) = self.checked.get(name) {
            return result.clone();
        }
        let result = self.check_uncached(name);
        self.checked.insert(name.to_owned(), result.clone());
        result
    }

    fn check_uncached(&self, name: &str) -> Result<PathBuf, String> {
        let relative = Path::new(name);
        if name.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(format!(
                "must be a file name inside {}/ (no leading /, no ..)",
                self.shown.display()
            ));
        }
        let path = self.absolute.join(relative);
        if !self.readable {
            return Ok(path);
        }
        if !path.is_file() {
            return Err(format!("not found in {}/", self.shown.display()));
        }
        let reader = hound::WavReader::open(&path)
            .map_err(|e| format!("is not a readable WAV file: {e}"))?;
        if reader.duration() == 0 {
            return Err("has no audio in it".to_owned());
        }
        Ok(path)
    }
}

/// The `*.toml` files of a directory, sorted by name; hidden files are skipped.
fn dialplan_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") || !entry.path().is_file() {
            continue;
        }
        files.push(dir.join(&*name));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Tests run from the crate root, so the shipped directories are at these paths.
    const MEDIA: &str = "media";
    const DIALPLANS: &str = "dialplans";

    fn media_file(name: &str) -> PathBuf {
        std::path::absolute(Path::new(MEDIA).join(name)).unwrap()
    }

    /// A directory of dialplan files for one test, removed when dropped.
    struct PlanDir(PathBuf);

    impl PlanDir {
        fn new(files: &[(&str, &str)]) -> PlanDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "baton-dialplans-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            PlanDir(dir)
        }

        fn file(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for PlanDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn messages(errors: &[DialplanError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    /// Parses one file as if it were `dialplans/test.toml`, against the shipped media.
    fn parse_errors(text: &str) -> Vec<String> {
        match Dialplan::parse(text, Path::new("dialplans/test.toml"), Path::new(MEDIA)) {
            Ok(plan) => panic!("expected errors, got {plan:?}"),
            Err(errors) => messages(&errors),
        }
    }

    fn parse_ok(text: &str) -> Dialplan {
        Dialplan::parse(text, Path::new("dialplans/test.toml"), Path::new(MEDIA))
            .unwrap_or_else(|errors| panic!("{:#?}", messages(&errors)))
    }

    #[test]
    fn shipped_dialplans_load_against_shipped_media() {
        let plans = Dialplans::load(Path::new(DIALPLANS), Path::new(MEDIA))
            .unwrap_or_else(|errors| panic!("{:#?}", messages(&errors)));
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bank", "echo", "record"]);

        let bank = plans.route("+441000000000").unwrap();
        assert_eq!(bank.name, "bank");
        assert_eq!(
            bank.steps,
            [
                Step::Bot(BotSpec::Dialog),
                Step::Hold {
                    file: Some(media_file("hold-music.wav")),
                    secs: 600
                },
            ]
        );
        let dialog = bank.dialog.as_ref().expect("the bank bot's dialog");
        assert_eq!(dialog.plan.start, "greet");
        assert!(dialog.plan.intents.contains_key("block_card"));
        assert!(
            dialog.customers.get("C-1001").is_some(),
            "the customer file is loaded"
        );
        let echo = plans.route("600").unwrap();
        assert_eq!(echo.steps.last(), Some(&Step::Echo));
        assert_eq!(
            echo.media_files().collect::<Vec<_>>(),
            [media_file("echo-welcome.wav"), media_file("beep.wav")]
        );
        let record = plans.route("record").unwrap();
        assert_eq!(
            record.steps.last(),
            Some(&Step::Record {
                stop_on_dtmf: Some('#'),
                max_secs: 300,
                beep: None
            })
        );

        let summary = check_dir(Path::new(DIALPLANS), Path::new(MEDIA)).unwrap();
        let text = summary.to_string();
        assert!(
            text.contains(
                "dialplans/bank.toml: \"bank\" answers bank, 1000, +441000000000; 2 steps, \
                 a dialog of 16 nodes"
            ),
            "{text}"
        );
        assert!(text.ends_with("3 dialplans OK"), "{text}");
    }

    #[test]
    fn shipped_prompts_are_small_16k_mono_wavs() {
        for name in [
            "bank-welcome.wav",
            "record-after-tone.wav",
            "echo-welcome.wav",
            "beep.wav",
            "hold-music.wav",
            tts::FALLBACK_PROMPT,
        ] {
            let path = media_file(name);
            let reader = hound::WavReader::open(&path).unwrap();
            let spec = reader.spec();
            assert_eq!(
                (spec.sample_rate, spec.channels, spec.bits_per_sample),
                (16000, 1, 16),
                "{name}"
            );
            assert!(reader.duration() > 0, "{name}");
            assert!(
                std::fs::metadata(&path).unwrap().len() < 400 * 1024,
                "{name}"
            );
        }
    }

    #[test]
    fn every_step_kind_parses() {
        let plan = parse_ok(
            r##"
match = ["demo"]
[[step]]
pause = 1
[[step]]
hold = 5
[[step]]
hold = { secs = 2, music = "beep.wav" }
[[step]]
collect_dtmf = {}
[[step]]
collect_dtmf = { max_digits = 4, terminator = "", timeout_secs = 10 }
[[step]]
record = {}
[[step]]
pause = 0.5
[[step]]
play = { file = "hold-music.wav", loop = true }
"##,
        );
        assert_eq!(plan.name, "test");
        assert_eq!(plan.ring_secs, 0);
        assert_eq!(plan.patterns, [Pattern::Exact("demo".to_owned())]);
        assert_eq!(
            plan.steps,
            [
                Step::Pause { secs: 1.0 },
                Step::Hold {
                    file: Some(media_file("hold-music.wav")),
                    secs: 5
                },
                Step::Hold {
                    file: Some(media_file("beep.wav")),
                    secs: 2
                },
                Step::CollectDtmf {
                    max_digits: 16,
                    terminator: Some('#'),
                    timeout_secs: 5
                },
                Step::CollectDtmf {
                    max_digits: 4,
                    terminator: None,
                    timeout_secs: 10
                },
                Step::Record {
                    stop_on_dtmf: None,
                    max_secs: 300,
                    beep: None
                },
                Step::Pause { secs: 0.5 },
                Step::Play {
                    file: media_file("hold-music.wav"),
                    looped: true
                },
            ]
        );
        let inline = parse_ok("match = [\"x\"]\nstep = [{ echo = {} }]\n");
        assert_eq!(inline.steps, [Step::Echo]);
        let hangup = parse_ok("match = [\"x\"]\nring_secs = 3\n[[step]]\nhangup = {}\n");
        assert_eq!(hangup.steps, [Step::Hangup]);
        assert_eq!(hangup.ring_secs, 3);
        let beep = parse_ok("match = [\"x\"]\n[[step]]\nrecord = { beep = true }\n");
        assert_eq!(
            beep.steps,
            [Step::Record {
                stop_on_dtmf: None,
                max_secs: 300,
                beep: Some(media_file("beep.wav"))
            }]
        );
    }

    #[test]
    fn routing_prefers_exact_then_longest_prefix() {
        let dir = PlanDir::new(&[
            (
                "a.toml",
                "match = [\"+442071234567\", \"desk\"]\n[[step]]\necho = {}\n",
            ),
            ("b.toml", "match = [\"+4420*\"]\n[[step]]\necho = {}\n"),
            ("c.toml", "match = [\"+44207*\"]\n[[step]]\necho = {}\n"),
            ("d.toml", "match = [\"*\"]\n[[step]]\nhangup = {}\n"),
            ("notes.txt", "not a dialplan"),
        ]);
        let plans = Dialplans::load(&dir.0, Path::new(MEDIA)).unwrap();
        assert_eq!(plans.len(), 4);
        let route = |user| plans.route(user).map(|p| p.name.as_str());
        assert_eq!(route("+442071234567"), Some("a"));
        assert_eq!(route("desk"), Some("a"));
        assert_eq!(route("Desk"), Some("d"), "users are case-sensitive");
        assert_eq!(route("+442079999999"), Some("c"));
        assert_eq!(route("+442012345678"), Some("b"));
        assert_eq!(route("+4420"), Some("b"));
        assert_eq!(route("600"), Some("d"));
        assert_eq!(route(""), Some("d"));

        let without_catch_all =
            PlanDir::new(&[("b.toml", "match = [\"+4420*\"]\n[[step]]\necho = {}\n")]);
        let plans = Dialplans::load(&without_catch_all.0, Path::new(MEDIA)).unwrap();
        assert!(plans.route("+4421").is_none());
        assert!(plans.route("600").is_none());
    }

    #[test]
    fn send_dtmf_takes_keypad_digits_only() {
        let plan = parse_ok("match = [\"x\"]\n[[step]]\nsend_dtmf = \"12#\"\n");
        assert_eq!(
            plan.steps,
            [Step::SendDtmf {
                digits: "12#".into()
            }]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nsend_dtmf = \"1x\"\n"),
            ["dialplans/test.toml:3:1: step 1 key \"send_dtmf\": expected 1 to 64 DTMF digits (0-9, *, #, A-D), got \"1x\""]
        );
    }

    #[test]
    fn say_takes_a_bounded_text_and_a_voice() {
        let plan = parse_ok(
            "match = [\"x\"]\n[[step]]\nsay = \" Your balance is twelve pounds. \"\n\
             [[step]]\nsay = { text = \"Goodbye.\", voice = \"en-us+f3\" }\n",
        );
        assert_eq!(
            plan.steps,
            [
                Step::Say {
                    text: "Your balance is twelve pounds.".into(),
                    voice: None
                },
                Step::Say {
                    text: "Goodbye.".into(),
                    voice: Some("en-us+f3".into())
                },
            ]
        );
        assert_eq!(plan.media_files().count(), 0);
        let long = "a".repeat(tts::MAX_TEXT_CHARS + 1);
        assert_eq!(
            parse_errors(&format!(
                "match = [\"x\"]\n[[step]]\nsay = \"  \"\n[[step]]\nsay = {{ text = \"{long}\" }}\n\
                 [[step]]\nsay = {{ text = \"Hi.\", voice = \"--help\" }}\n[[step]]\nsay = {{ voice = \"en\" }}\n"
            )),
            [
                "dialplans/test.toml:3:1: step 1 key \"say\": is empty: write what to say".to_owned(),
                "dialplans/test.toml:5:9: step 2 key \"say.text\": 1001 characters; at most 1000 (about a minute of speech)".to_owned(),
                "dialplans/test.toml:7:23: step 3 key \"say.voice\": expected an espeak-ng voice name such as \"en-gb\" (letters, digits, -, _ and +), got \"--help\"".to_owned(),
                "dialplans/test.toml:9:7: step 4 key \"say\": missing field `text`".to_owned(),
            ]
        );
        let dir = PlanDir::new(&[("beep.wav", "")]);
        std::fs::copy(media_file("beep.wav"), dir.0.join("beep.wav")).unwrap();
        let errors = Dialplan::parse(
            "match = [\"x\"]\n[[step]]\nsay = \"Hello.\"\n",
            Path::new("dialplans/test.toml"),
            &dir.0,
        )
        .unwrap_err();
        assert_eq!(
            messages(&errors),
            [format!(
                "dialplans/test.toml:3:1: step 1 key \"say\": media file \"tts-fallback.wav\" not found in {}/",
                dir.0.display()
            )],
            "the fallback prompt must be there for when speech fails"
        );
    }

    #[test]
    fn escalation_is_read_with_defaults_and_bad_values_are_located() {
        let bot = "match = [\"x\"]\n[[step]]\nbot = { url = \"ws://127.0.0.1:9/\" }\n";
        let plan = parse_ok(bot);
        assert_eq!(
            plan.escalation,
            Some(Policy::default()),
            "a bot gets the defaults"
        );
        let plan = parse_ok(&format!(
            "{bot}[escalation]\nthreshold = 0.4\nalways_intents = [\"complaint\"]\n"
        ));
        let policy = plan.escalation.expect("a policy");
        assert_eq!(policy.threshold, 0.4);
        assert!(policy.always_intents.contains("complaint"));
        assert_eq!(
            parse_ok("match = [\"x\"]\n[[step]]\nhangup = {}\n").escalation,
            None,
            "no bot, nothing to escalate from"
        );
        assert_eq!(
            parse_errors(&format!("{bot}[escalation]\nthreshold = 11.0\n")),
            ["dialplans/test.toml:5:1: key \"escalation.threshold\": expected 0 to 10"]
        );
        let errors = parse_errors(&format!("{bot}[escalation]\ntreshold = 0.5\n"));
        assert!(
            errors[0].contains("key \"escalation.treshold\": unknown key `treshold`"),
            "{errors:?}"
        );
    }

    #[test]
    fn transfer_is_read_with_defaults_and_bad_values_are_located() {
        let bot = "match = [\"x\"]\n[[step]]\nbot = { url = \"ws://127.0.0.1:9/\" }\n";
        let plan = parse_ok(bot);
        assert_eq!(plan.transfer.settings, crate::transfer::Settings::default());
        assert!(
            plan.transfer
                .music
                .is_some_and(|m| m.ends_with("hold-music.wav")),
            "a bot's plan holds to the default music"
        );
        let plan = parse_ok(&format!(
            "{bot}[transfer]\nring_secs = 8\nqueue_secs = 60\n"
        ));
        assert_eq!(plan.transfer.settings.ring, Duration::from_secs(8));
        assert_eq!(plan.transfer.settings.queue, Duration::from_secs(60));
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\nring_secs = 3\n")),
            ["dialplans/test.toml:5:1: key \"transfer.ring_secs\": expected 5 to 120 seconds, got 3"]
        );
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\nreturn_to = \"menu\"\n")),
            ["dialplans/test.toml:5:1: key \"transfer.return_to\": names a [dialog] node, but the plan has no [dialog]"]
        );
        let errors = parse_errors(&format!("{bot}[transfer]\nmusic = \"nope.wav\"\n"));
        assert!(errors[0].contains("\"nope.wav\" not found"), "{errors:?}");
    }

    #[test]
    fn handback_maps_dispositions_to_dialog_nodes_and_bad_entries_are_located() {
        let head = "match = [\"x\"]\n[[step]]\nbot = \"dialog\"\n[dialog]\nstart = \"a\"\n\
                    [dialog.node.a]\nsay = \"Hi.\"\nnext = \"b\"\n\
                    [dialog.node.b]\nhangup = true\n";
        let plan = parse_ok(&format!(
            "{head}[transfer]\nreturn_to = \"a\"\nhandback = {{ card_blocked = \"b\", Sent-2 = \"a\" }}\n"
        ));
        let want: BTreeMap<String, String> = [("Sent-2", "a"), ("card_blocked", "b")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(plan.transfer.handback, want);
        assert!(parse_ok(head).transfer.handback.is_empty());

        let long = "x".repeat(65);
        assert_eq!(
            parse_errors(&format!(
                "{head}[transfer]\nhandback = {{ ok = \"b\", gone = \"menu\", \"a b\" = \"a\", \
                 {long} = \"a\" }}\n"
            )),
            [
                "dialplans/test.toml:12:39: key \"transfer.handback.a b\": \"a b\" is not a \
                 disposition code: expected 1 to 64 letters, digits, _ or -"
                    .to_owned(),
                "dialplans/test.toml:12:24: key \"transfer.handback.gone\": no [dialog] node is \
                 named \"menu\""
                    .to_owned(),
                format!(
                    "dialplans/test.toml:12:52: key \"transfer.handback.{long}\": \"{long}\" is not \
                     a disposition code: expected 1 to 64 letters, digits, _ or -"
                ),
            ]
        );
        assert_eq!(
            parse_errors(
                "match = [\"x\"]\n[[step]]\nbot = { url = \"ws://127.0.0.1:9/\" }\n\
                 [transfer]\nhandback = { card_blocked = \"confirmed\" }\n"
            ),
            ["dialplans/test.toml:5:1: key \"transfer.handback\": names [dialog] nodes, but the \
              plan has no [dialog]"]
        );
        let errors = parse_errors(&format!("{head}[transfer]\nhandback = {{ x = 1 }}\n"));
        assert!(
            errors[0].starts_with("dialplans/test.toml:12:") && errors[0].contains("string"),
            "{errors:?}"
        );
    }

    #[test]
    fn overflow_is_read_with_defaults_and_bad_values_are_located() {
        let bot = "match = [\"x\"]\n[[step]]\nbot = { url = \"ws://127.0.0.1:9/\" }\n";
        let overflow = |table: &str| {
            parse_ok(&format!("{bot}{table}"))
                .transfer
                .settings
                .overflow
        };
        assert_eq!(overflow(""), crate::routing::Overflow::default());
        assert_eq!(
            overflow(
                "[transfer]\nqueue_secs = 60\noverflow_secs = 30\noverflow_skill = \"billing\"\n"
            ),
            crate::routing::Overflow {
                after_secs: 30,
                skill: Some("billing".into())
            }
        );
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\noverflow_secs = -1\n")),
            ["dialplans/test.toml:5:1: key \"transfer.overflow_secs\": expected 0 to 3600 seconds, got -1"]
        );
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\nqueue_secs = 60\noverflow_secs = 60\n")),
            ["dialplans/test.toml:6:1: key \"transfer.overflow_secs\": expected less than queue_secs (60 seconds), got 60: the caller would be offered a callback before the call overflows"]
        );
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\noverflow_secs = 300\n")),
            ["dialplans/test.toml:5:1: key \"transfer.overflow_secs\": expected less than queue_secs (300 seconds), got 300: the caller would be offered a callback before the call overflows"],
            "the default queue_secs counts too"
        );
        assert_eq!(
            parse_errors(&format!("{bot}[transfer]\noverflow_skill = \" \"\n")),
            ["dialplans/test.toml:5:1: key \"transfer.overflow_skill\": expected a skill's name, got an empty string"]
        );
    }

    #[test]
    fn missing_media_names_file_line_and_step_key() {
        let text = "# Baton Bank\nname = \"bank\"\nmatch = [\"bank\"]\n\n[[step]]\npause = 1\n[[step]]\nplay = \"welcom.wav\"\n";
        assert_eq!(
            parse_errors(text),
            ["dialplans/test.toml:8:1: step 2 key \"play\": media file \"welcom.wav\" not found in media/"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nplay = { file = \"nope.wav\", loop = true }\n"),
            ["dialplans/test.toml:3:10: step 1 key \"play.file\": media file \"nope.wav\" not found in media/"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nplay = \"../Cargo.toml\"\n"),
            ["dialplans/test.toml:3:1: step 1 key \"play\": media file \"../Cargo.toml\" must be a file name inside media/ (no leading /, no ..)"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nplay = \"README.md\"\n"),
            ["dialplans/test.toml:3:1: step 1 key \"play\": media file \"README.md\" is not a readable WAV file: Ill-formed WAVE file: no RIFF tag found"]
        );
        assert_eq!(
            parse_errors(
                "match = [\"x\"]\n[[step]]\nbot = \"dialog\"\n[dialog]\nstart = \"a\"\n\
                 [dialog.node.a]\nplay = \"chime.wav\"\nhangup = true\n"
            ),
            ["dialplans/test.toml:7:1: key \"dialog.node.a.play\": media file \"chime.wav\" not found in media/"]
        );
    }

    #[test]
    fn syntax_error_names_line_and_key() {
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nplay = \"beep.wav\n[[step]]\nhangup = {}\n"),
            ["dialplans/test.toml:3:17: step 1 key \"play\": invalid basic string"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\npause = 1\n[[step]]\nrecord = { max_secs = }\n"),
            ["dialplans/test.toml:5:23: step 2 key \"record\": invalid string; expected `\"`, `'`"]
        );
    }

    #[test]
    fn dialog_problems_name_their_line_and_key() {
        let head = "match = [\"x\"]\n[[step]]\nbot = \"dialog\"\n";
        assert_eq!(
            parse_errors(head),
            ["dialplans/test.toml:2:3: key \"step\": a step hands the call to the bot, but there is no [dialog]"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nbot = \"robot\"\n"),
            ["dialplans/test.toml:3:1: step 1 key \"bot\": expected \"dialog\" (the [dialog] of this file), or a table with the url of an external bot, got \"robot\""]
        );
        let errors = parse_errors(&format!(
            "{head}[dialog]\nstart = \"hello\"\ncustomers = \"missing.json\"\n\
             [dialog.node.hello]\nsay = \"Hi {{caller.name}}\"\nnext = \"nowhere\"\n"
        ));
        assert_eq!(
            errors,
            [
                "dialplans/test.toml:8:1: key \"dialog.node.hello.say\": \"{caller.name}\" is not a value the bot has: write {slot.NAME} or {customer.FIELD}",
                "dialplans/test.toml:9:1: key \"dialog.node.hello.next\": names node \"nowhere\", which does not exist",
            ]
        );
        let errors = parse_errors(&format!(
            "{head}[dialog]\nstart = \"hello\"\ncustomers = \"missing.json\"\n\
             [dialog.node.hello]\nhangup = true\n"
        ));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "dialplans/test.toml:6:1: key \"dialog.customers\": dialplans/missing.json:"
            ),
            "{errors:?}"
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nbot = { url = \"https://bot.example/\" }\n"),
            ["dialplans/test.toml:3:9: step 1 key \"bot.url\": expected ws://host:port/path or wss://host/path, got \"https://bot.example/\""]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\nbot = { url = \"wss://bot.example/\", audio = \"mp3\" }\n"),
            ["dialplans/test.toml:3:37: step 1 key \"bot.audio\": expected \"l16\" (the caller's audio to the bot and the bot's to the caller, as binary frames), got \"mp3\""]
        );
        assert_eq!(
            parse_errors(
                "match = [\"x\"]\n[[step]]\nbot = { url = \"ws://127.0.0.1:9000/\", fallback = \"b\" }\n\
                 [dialog]\nstart = \"a\"\n[dialog.node.a]\nhangup = true\n"
            ),
            ["dialplans/test.toml:3:39: step 1 key \"bot.fallback\": names node \"b\", which [dialog] does not have"]
        );
        let errors =
            parse_errors("match = [\"x\"]\n[[step]]\necho = {}\n[dialog]\nstart = \"a\"\n");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("key \"dialog\": is never used")),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_step_names_the_key_and_the_choices() {
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\necho = {}\n[[step]]\nspeak = \"hello\"\n"),
            ["dialplans/test.toml:5:1: step 2 key \"speak\": unknown key `speak`, expected one of \
              `play`, `say`, `bot`, `hold`, `echo`, `record`, `collect_dtmf`, `send_dtmf`, `pause`, `hangup`"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[steps]]\necho = {}\n"),
            [
                "dialplans/test.toml:2:3: key \"steps\": unknown key `steps`, expected one of \
              `name`, `description`, `match`, `ring_secs`, `speech_hints`, `step`, `dialog`, `escalation`, `transfer`, `followup`"
            ]
        );
    }

    #[test]
    fn bad_steps_are_all_reported() {
        let errors = parse_errors(
            r###"match = ["x"]
[[step]]
record = { stop_on_dtmf = "##", max_secs = 0 }
[[step]]
[[step]]
play = "beep.wav"
pause = 1
[[step]]
hold = -3
[[step]]
collect_dtmf = { max_digits = 100, terminator = "x" }
[[step]]
echo = { forever = true }
[[step]]
pause = 0
"###,
        );
        assert_eq!(
            errors,
            [
                "dialplans/test.toml:3:12: step 1 key \"record.stop_on_dtmf\": expected one DTMF digit (0-9, *, #, A-D), got \"##\"",
                "dialplans/test.toml:4:1: step 2: has no action; give one of play, say, bot, hold, echo, record, collect_dtmf, send_dtmf, pause, hangup",
                "dialplans/test.toml:5:1: step 3: has play and pause; give one action per [[step]]",
                "dialplans/test.toml:9:1: step 4 key \"hold\": expected 1 to 3600 seconds, got -3",
                "dialplans/test.toml:11:18: step 5 key \"collect_dtmf.max_digits\": expected 1 to 64 digits, got 100",
                "dialplans/test.toml:11:36: step 5 key \"collect_dtmf.terminator\": expected one DTMF digit (0-9, *, #, A-D), got \"x\"",
                "dialplans/test.toml:13:8: step 6 key \"echo\": unknown key `forever`: this action takes no options, write {}",
                "dialplans/test.toml:15:1: step 7 key \"pause\": expected more than 0 and at most 3600 seconds, got 0",
            ]
        );
    }

    #[test]
    fn a_step_after_one_that_never_ends_is_refused() {
        assert_eq!(
            parse_errors("match = [\"x\"]\n[[step]]\necho = {}\n[[step]]\nhangup = {}\n"),
            ["dialplans/test.toml:4:1: step 2: never runs: step 1 (echo) lasts until the call ends"]
        );
    }

    #[test]
    fn bad_headers_name_their_key() {
        assert_eq!(
            parse_errors("name = \"x\"\n[[step]]\necho = {}\n"),
            ["dialplans/test.toml:1:1: key \"match\": is missing: list the users or numbers this \
              dialplan answers, e.g. match = [\"600\"]"]
        );
        assert_eq!(
            parse_errors("match = [\"600\", \"sip:700@host\", \"600\"]\n[[step]]\necho = {}\n"),
            [
                "dialplans/test.toml:1:17: match 2: \"sip:700@host\" looks like a URI; write only the user part, e.g. \"600\" for sip:600@host",
                "dialplans/test.toml:1:33: match 3: \"600\" is listed twice",
            ]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\nring_secs = 600\n[[step]]\necho = {}\n"),
            ["dialplans/test.toml:2:1: key \"ring_secs\": expected 0 to 120 seconds, got 600"]
        );
        assert_eq!(
            parse_errors("match = [\"x\"]\n"),
            ["dialplans/test.toml:1:1: key \"step\": is missing: add at least one [[step]], e.g. [[step]] echo = {}"]
        );
        assert_eq!(
            parse_errors("match = \"600\"\n[[step]]\necho = {}\n"),
            ["dialplans/test.toml:1:9: key \"match\": invalid type: string \"600\", expected a sequence"]
        );
    }

    #[test]
    fn duplicate_match_names_both_files() {
        let dir = PlanDir::new(&[
            (
                "echo.toml",
                "name = \"echo\"\nmatch = [\"echo\", \"600\"]\n[[step]]\necho = {}\n",
            ),
            (
                "test.toml",
                "name = \"test\"\nmatch = [\"test\",\n  \"600\"]\n[[step]]\necho = {}\n",
            ),
        ]);
        let errors = messages(&Dialplans::load(&dir.0, Path::new(MEDIA)).unwrap_err());
        assert_eq!(
            errors,
            [format!(
                "{}:3:3: match 2: \"600\" is already used by {}:2",
                dir.file("test.toml"),
                dir.file("echo.toml")
            )]
        );
    }

    #[test]
    fn every_file_is_checked_and_all_errors_reported() {
        let dir = PlanDir::new(&[
            (
                "a.toml",
                "match = [\"a\"]\n[[step]]\nplay = \"missing.wav\"\n",
            ),
            ("b.toml", "match = [\"b\"\n"),
            ("c.toml", "match = [\"c\"]\n[[step]]\nwait = 1\n"),
            (
                "d.toml",
                "name = \"a\"\nmatch = [\"d\"]\n[[step]]\nhangup = {}\n",
            ),
        ]);
        let errors = messages(&Dialplans::load(&dir.0, Path::new(MEDIA)).unwrap_err());
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with(&format!("{}:3:1: step 1 key \"play\"", dir.file("a.toml"))));
        assert!(errors[1].starts_with(&format!("{}:2:1", dir.file("b.toml"))));
        assert!(errors[2].starts_with(&format!("{}:3:1: step 1 key \"wait\"", dir.file("c.toml"))));
        assert_eq!(
            errors[3],
            format!(
                "{}:1:1: key \"name\": \"a\" is already used by {}:1",
                dir.file("d.toml"),
                dir.file("a.toml")
            )
        );
    }

    #[test]
    fn unreadable_directories_are_errors() {
        let errors =
            Dialplans::load(Path::new("/nonexistent/dialplans"), Path::new(MEDIA)).unwrap_err();
        assert!(matches!(errors.as_slice(), [DialplanError::ReadDir { .. }]));
        let dir = PlanDir::new(&[("a.toml", "match = [\"a\"]\n[[step]]\nplay = \"x.wav\"\n")]);
        let errors = Dialplans::load(&dir.0, Path::new("/nonexistent/media")).unwrap_err();
        assert_eq!(
            messages(&errors),
            ["/nonexistent/media: cannot read media directory: No such file or directory (os error 2)"]
        );
    }

    #[test]
    fn patterns() {
        assert_eq!(Pattern::parse("600"), Ok(Pattern::Exact("600".to_owned())));
        assert_eq!(
            Pattern::parse("+4420*"),
            Ok(Pattern::Prefix("+4420".to_owned()))
        );
        assert_eq!(Pattern::parse("*98"), Ok(Pattern::Exact("*98".to_owned())));
        assert_eq!(Pattern::parse("*"), Ok(Pattern::Prefix(String::new())));
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("6 00").is_err());
        assert!(Pattern::Prefix("+44".to_owned()).matches("+441000"));
        assert!(!Pattern::Exact("+44".to_owned()).matches("+441000"));
        assert_eq!(Pattern::Prefix("+44".to_owned()).to_string(), "+44*");
    }
}
