//! Deciding when a call should go to a person, before the caller has to ask. A pure state
//! machine: it is fed the call's context events (what the caller said, their mood, how the
//! bot is doing) and key presses, each with the time, and keeps a decision — escalate or
//! not, how urgently, for which skill, and why, with the evidence behind every reason.
//!
//! Two kinds of reason escalate at once, whatever the scores: the caller asking for a
//! person ("agent", "human", key 0) and the dialplan's policy (intents or customer flags
//! that always go to a person). The others are scored from 0 to 1 and weighed; the call
//! escalates when their weighted sum reaches the dialplan's threshold.

use crate::context::archive::{Archive, ArchiveError};
use crate::context::document::{Action, BotProgress, Context};
use crate::context::store::now_ms;
use crate::context::{Change, Event};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Moods that count against the bot, with how much.
const MOOD_WEIGHT: [(&str, f64); 4] = [
    ("angry", 1.0),
    ("frustrated", 0.8),
    ("anxious", 0.6),
    ("confused", 0.5),
];
/// Readings that make up the caller's own baseline arousal: people differ, and a loud
/// speaker is not an upset one.
const BASELINE_READINGS: usize = 2;
/// Words that name a person to talk to: alone or with a request they ask for one.
const PERSON_WORDS: [&str; 6] = [
    "agent",
    "human",
    "representative",
    "operator",
    "advisor",
    "adviser",
];
/// Words that name a person only after "to" or "with" in a request ("speak to someone"):
/// "someone stole my card" asks for nobody.
const VAGUE_PERSON_WORDS: [&str; 3] = ["someone", "somebody", "person"];
/// Words of a request.
const REQUEST_WORDS: [&str; 9] = [
    "speak", "talk", "want", "need", "get", "connect", "transfer", "put", "give",
];
/// An utterance this short that names a person is a request by itself ("Agent, please").
const SHORT_REQUEST_WORDS: usize = 4;
/// How far before the person a request word may stand ("speak to a real human").
const REQUEST_REACH: usize = 6;
/// Longest evidence quoted from the caller, in characters.
const MAX_QUOTE: usize = 80;

/// How soon the caller should reach a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Low,
    Normal,
    High,
    /// The caller asked, or policy says so: no persuasion, now.
    Immediate,
}

/// Why a call should go to a person.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The caller asked for a person.
    CallerRequest,
    /// An intent the dialplan always sends to a person.
    PolicyIntent,
    /// A customer the dialplan always sends to a person (a flag in their data).
    PolicyCustomer,
    /// The caller's mood: upset, getting worse, or well above their own baseline.
    Sentiment,
    /// The bot is unsure what the caller wants.
    LowConfidence,
    /// Phrases the bot did not understand, and questions it had to ask again.
    NoMatch,
    /// The bot said it cannot go on.
    BotStuck,
    /// The bot handed the call over (its dialog, or an external bot, asked for a person).
    BotHandover,
    /// Several topics, failed attempts, or a call running long.
    Complexity,
}

impl Code {
    /// The reason as an agent reads it in the summary.
    pub fn words(self) -> &'static str {
        match self {
            Code::CallerRequest => "the caller asked for a person",
            Code::PolicyIntent => "policy for this request",
            Code::PolicyCustomer => "policy for this customer",
            Code::Sentiment => "the caller is upset",
            Code::LowConfidence => "the bot is unsure what they want",
            Code::NoMatch => "the bot did not understand",
            Code::BotStuck => "the bot is stuck",
            Code::BotHandover => "the bot handed over",
            Code::Complexity => "a complex call",
        }
    }
}

/// One reason, with its score (0 to 1) and what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reason {
    pub code: Code,
    pub score: f64,
    pub evidence: Vec<String>,
}

/// The engine's verdict at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub escalate: bool,
    pub urgency: Urgency,
    /// The weighted sum of the scored reasons.
    pub score: f64,
    /// Every reason with a score above zero, strongest first.
    pub reasons: Vec<Reason>,
    /// The skill the call needs, from its intent.
    pub skill: Option<String>,
    /// When it was reached, in ms of the call.
    pub at_ms: u64,
}

/// The weights of the scored reasons; they need not sum to one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub sentiment: f64,
    pub low_confidence: f64,
    pub no_match: f64,
    pub bot_stuck: f64,
    pub complexity: f64,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            sentiment: 0.6,
            low_confidence: 0.3,
            no_match: 0.5,
            bot_stuck: 0.7,
            complexity: 0.25,
        }
    }
}

/// A dialplan's `[escalation]`: when its calls go to a person.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// The weighted score at which a call escalates.
    pub threshold: f64,
    pub weights: Weights,
    /// Intents that always go to a person (fraud, complaints).
    pub always_intents: BTreeSet<String>,
    /// Flags in the customer's data (`customer_data.<flag>` true) that always go to a
    /// person (a vulnerable customer).
    pub always_customer_flags: BTreeSet<String>,
    /// The skill each intent needs (`block_card = "fraud"`).
    pub skills: BTreeMap<String, String>,
    /// Intent confidence under this counts as the bot being unsure.
    pub low_confidence: f32,
    /// Unmatched phrases and re-prompts that make the no-match score 1.
    pub max_no_match: u32,
    /// Call length, in seconds, at which the call counts as running long.
    pub long_call_secs: u64,
    /// Arousal above the caller's baseline that counts as fully upset.
    pub arousal_rise: f32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            threshold: 0.6,
            weights: Weights::default(),
            always_intents: BTreeSet::new(),
            always_customer_flags: BTreeSet::new(),
            skills: BTreeMap::new(),
            low_confidence: 0.5,
            max_no_match: 3,
            long_call_secs: 300,
            arousal_rise: 0.3,
        }
    }
}

impl Policy {
    /// Checks the values serde cannot: the key at fault and what is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=10.0).contains(&self.threshold) {
            return Err(("threshold", "expected 0 to 10".into()));
        }
        let w = &self.weights;
        for (name, weight) in [
            ("sentiment", w.sentiment),
            ("low_confidence", w.low_confidence),
            ("no_match", w.no_match),
            ("bot_stuck", w.bot_stuck),
            ("complexity", w.complexity),
        ] {
            if !(0.0..=10.0).contains(&weight) {
                return Err(("weights", format!("{name}: expected 0 to 10")));
            }
        }
        if !(0.0..=1.0).contains(&self.low_confidence) {
            return Err(("low_confidence", "expected 0 to 1".into()));
        }
        if !(0.01..=1.0).contains(&self.arousal_rise) {
            return Err(("arousal_rise", "expected 0.01 to 1".into()));
        }
        if self.max_no_match == 0 {
            return Err(("max_no_match", "expected at least 1".into()));
        }
        Ok(())
    }
}

/// Escalations kept for the API, the most recent last.
const MAX_RECORDS: usize = 10_000;

/// One call that should go, or went, to a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub call_id: String,
    /// When the decision to escalate was reached, in ms since the Unix epoch.
    pub decided_at_ms: u64,
    pub urgency: Urgency,
    pub skill: Option<String>,
    pub reasons: Vec<Reason>,
    /// The agent who took the call, once one did (or whose phone rings now).
    pub agent_id: Option<String>,
    /// When an agent joined the caller, in ms since the Unix epoch.
    pub connected_at_ms: Option<u64>,
    /// Agents offered the call who did not take it, in order.
    pub missed: Vec<MissedAgent>,
    /// `waiting` until routing and transfer report what became of it.
    pub outcome: String,
    /// What the caller wanted, as the bot understood it when the call was escalated.
    #[serde(default)]
    pub intent: Option<String>,
    /// What the bot had tried by then: its dialog path, the phrases it did not understand,
    /// its re-prompts and the resolutions it attempted.
    #[serde(default)]
    pub bot: BotProgress,
    /// How long agents talked with the caller, in seconds, once each is done.
    #[serde(default)]
    pub handle_secs: Option<f64>,
    /// How the agent resolved the call, when they handed it back to the bot.
    #[serde(default)]
    pub disposition: Option<String>,
    /// What was said up to the decision (final lines, the newest [`RECORD_LINES`]).
    #[serde(default)]
    pub transcript: Vec<Said>,
    /// What the agents said, once the call is over (the newest [`RECORD_LINES`]).
    #[serde(default)]
    pub agent_transcript: Vec<Said>,
    /// What the agents did for the caller: the context's actions by `agent:<id>`.
    #[serde(default)]
    pub agent_actions: Vec<Action>,
}

/// Lines of a transcript a record keeps; the newest, since the last words before a
/// handoff say most about why.
pub const RECORD_LINES: usize = 100;
/// Agent actions a record keeps.
const RECORD_ACTIONS: usize = 50;

/// One final line of a transcript, as a record keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Said {
    /// `caller`, `bot` or `agent`.
    pub speaker: String,
    pub text: String,
}

/// The newest final lines of `doc` that `keep` picks.
fn said(doc: &Context, keep: impl Fn(&str) -> bool) -> Vec<Said> {
    let lines: Vec<Said> = doc
        .transcript
        .iter()
        .filter(|l| l.is_final && keep(&l.speaker))
        .map(|l| Said {
            speaker: l.speaker.clone(),
            text: l.text.clone(),
        })
        .collect();
    let skip = lines.len().saturating_sub(RECORD_LINES);
    lines.into_iter().skip(skip).collect()
}

/// An agent whose phone was offered a call and did not take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedAgent {
    pub agent_id: String,
    /// `no answer`, `busy`, `declined` or `unreachable`.
    pub why: String,
}

/// Every recent escalation, for `GET /v1/escalations`; with an archive, each change is
/// kept on disk too, and the records outlive the process.
#[derive(Default)]
pub struct Escalations {
    list: std::sync::Mutex<std::collections::VecDeque<Record>>,
    archive: Option<Archive>,
}

impl Escalations {
    /// The escalations `archive` holds, the newest [`MAX_RECORDS`]; changes from now on
    /// are kept there.
    pub async fn open(archive: Archive) -> Result<Escalations, ArchiveError> {
        let list = archive.escalations(MAX_RECORDS).await?;
        Ok(Escalations {
            list: std::sync::Mutex::new(list.into()),
            archive: Some(archive),
        })
    }

    /// Sends the record, as changed, to the archive. Called with the list locked, so that
    /// the writes reach it in the order of the changes.
    fn keep(&self, record: &Record) {
        if let Some(archive) = &self.archive {
            archive.keep_escalation(record);
        }
    }

    /// Lists call `call_id` as escalated for `decision`, with what its context `doc` says
    /// the bot understood and tried; a call listed already is brought up to date (the
    /// decision grew after it was taken).
    pub fn record(&self, call_id: &str, decision: &Decision, doc: Option<&Context>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = list.iter_mut().rev().find(|r| r.call_id == call_id) {
            r.urgency = decision.urgency;
            r.skill.clone_from(&decision.skill);
            r.reasons.clone_from(&decision.reasons);
            if let Some(doc) = doc {
                r.intent.clone_from(&doc.intent.name);
                r.bot.clone_from(&doc.bot);
                if r.connected_at_ms.is_none() {
                    r.transcript = said(doc, |_| true);
                }
            }
            self.keep(r);
            return;
        }
        if list.len() >= MAX_RECORDS {
            list.pop_front();
        }
        let record = Record {
            call_id: call_id.to_owned(),
            decided_at_ms: now_ms(),
            urgency: decision.urgency,
            skill: decision.skill.clone(),
            reasons: decision.reasons.clone(),
            agent_id: None,
            connected_at_ms: None,
            missed: Vec::new(),
            outcome: "waiting".to_owned(),
            intent: doc.and_then(|d| d.intent.name.clone()),
            bot: doc.map(|d| d.bot.clone()).unwrap_or_default(),
            handle_secs: None,
            disposition: None,
            transcript: doc.map(|d| said(d, |_| true)).unwrap_or_default(),
            agent_transcript: Vec::new(),
            agent_actions: Vec::new(),
        };
        self.keep(&record);
        list.push_back(record);
    }

    /// What became of call `call_id`'s escalation: the agent who has it (or last had
    /// it), its outcome, and the agents who did not take it.
    pub fn outcome(
        &self,
        call_id: &str,
        agent_id: Option<&str>,
        outcome: &str,
        missed: &[(String, &str)],
    ) {
        self.update(call_id, |r| {
            if let Some(id) = agent_id {
                r.agent_id = Some(id.to_owned());
            }
            if outcome == "connected" {
                r.connected_at_ms = Some(now_ms());
            }
            r.outcome = outcome.to_owned();
            r.missed = missed
                .iter()
                .map(|(id, why)| MissedAgent {
                    agent_id: id.clone(),
                    why: (*why).to_owned(),
                })
                .collect();
        });
    }

    /// An agent of call `call_id` is done, having talked with the caller for `handled`.
    pub fn handled(&self, call_id: &str, handled: Duration) {
        self.update(call_id, |r| {
            r.handle_secs = Some(r.handle_secs.unwrap_or(0.0) + handled.as_secs_f64());
        });
    }

    /// The agent of call `call_id` handed it back to the bot with this disposition.
    pub fn disposition(&self, call_id: &str, disposition: &str) {
        self.update(call_id, |r| r.disposition = Some(disposition.to_owned()));
    }

    /// Call `call_id` is over and `doc` is its final context: the record gets what the
    /// agents said and did.
    pub fn ended(&self, doc: &Context) {
        self.update(&doc.call_id, |r| {
            r.agent_transcript = said(doc, |speaker| speaker == "agent");
            r.agent_actions = doc
                .actions
                .iter()
                .filter(|a| a.by.starts_with("agent:"))
                .take(RECORD_ACTIONS)
                .cloned()
                .collect();
        });
    }

    /// Changes call `call_id`'s record, if it is listed, and keeps it as changed.
    fn update(&self, call_id: &str, change: impl FnOnce(&mut Record)) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = list.iter_mut().rev().find(|r| r.call_id == call_id) {
            change(r);
            self.keep(r);
        }
    }

    /// Every escalation kept, oldest first.
    pub fn list(&self) -> Vec<Record> {
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().cloned().collect()
    }
}

/// What the engine has seen of one call.
#[derive(Debug, Default)]
struct Signals {
    asked_for_person: Option<String>,
    intent: Option<(String, f32)>,
    /// Distinct intents heard: several topics make a call complex.
    topics: BTreeSet<String>,
    mood: Option<(String, String, f32)>,
    arousal_readings: Vec<f32>,
    unmatched: Vec<String>,
    reprompts: u32,
    stuck: Option<String>,
    failed_attempts: u32,
    flagged: Option<String>,
    handover: Option<String>,
    elapsed_ms: u64,
}

/// One call's escalation engine.
#[derive(Debug)]
pub struct Engine {
    policy: Policy,
    signals: Signals,
    decision: Option<Decision>,
}

impl Engine {
    pub fn new(policy: Policy) -> Engine {
        Engine {
            policy,
            signals: Signals::default(),
            decision: None,
        }
    }

    /// The decision as it stands.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// A change to the call's context, at `at_ms` of the call. Returns the new decision
    /// when it changed (to escalate, or its urgency, skill or reasons).
    pub fn observe(&mut self, event: &Event, at_ms: u64) -> Option<&Decision> {
        let s = &mut self.signals;
        match &event.change {
            Change::Transcript(line) if line.speaker == "caller" && line.is_final => {
                if s.asked_for_person.is_none() && asks_for_person(&line.text) {
                    s.asked_for_person = Some(format!("caller said \"{}\"", quote(&line.text)));
                }
            }
            Change::Intent {
                name, confidence, ..
            } => {
                s.intent = Some((name.clone(), *confidence));
                s.topics.insert(name.clone());
            }
            Change::Vibe {
                label,
                arousal,
                trend,
                ..
            } => {
                s.mood = Some((label.clone(), trend.clone(), *arousal));
                s.arousal_readings.push(*arousal);
            }
            Change::BotUnmatched { phrase } => s.unmatched.push(quote(phrase)),
            Change::BotReprompt => s.reprompts += 1,
            Change::BotStuck { reason } => s.stuck = Some(reason.clone()),
            Change::BotAttempt { attempt } if attempt.contains("failed") => {
                s.failed_attempts += 1;
            }
            Change::CustomerData { data } => {
                if let Some(flag) = self
                    .policy
                    .always_customer_flags
                    .iter()
                    .find(|f| data.get(f.as_str()).is_some_and(|v| *v == true))
                {
                    s.flagged = Some(flag.clone());
                }
            }
            _ => return self.tick(at_ms),
        }
        self.evaluate(at_ms)
    }

    /// A key the caller pressed: 0 asks for a person.
    pub fn key(&mut self, digit: char, at_ms: u64) -> Option<&Decision> {
        if digit == '0' && self.signals.asked_for_person.is_none() {
            self.signals.asked_for_person = Some("caller pressed 0".into());
        }
        self.evaluate(at_ms)
    }

    /// The bot handed the call over for `reason`: a person now, as when the caller asks.
    pub fn handover(&mut self, reason: &str, at_ms: u64) -> Option<&Decision> {
        if self.signals.handover.is_none() {
            self.signals.handover = Some(format!("the bot handed over: {}", quote(reason)));
        }
        self.evaluate(at_ms)
    }

    /// Time passing: a call that runs long grows complex.
    pub fn tick(&mut self, at_ms: u64) -> Option<&Decision> {
        let long = self.policy.long_call_secs.saturating_mul(1000);
        let was_long = self.signals.elapsed_ms >= long;
        self.signals.elapsed_ms = self.signals.elapsed_ms.max(at_ms);
        if was_long || self.signals.elapsed_ms < long {
            return None;
        }
        self.evaluate(at_ms)
    }

    fn evaluate(&mut self, at_ms: u64) -> Option<&Decision> {
        self.signals.elapsed_ms = self.signals.elapsed_ms.max(at_ms);
        let next = self.judge(at_ms);
        let changed = match &self.decision {
            None => next.escalate || !next.reasons.is_empty(),
            Some(d) => {
                d.escalate != next.escalate
                    || d.urgency != next.urgency
                    || d.skill != next.skill
                    || codes(&d.reasons) != codes(&next.reasons)
            }
        };
        // Once escalating, the call stays escalating: a caller handed over does not get
        // the bot back because they calmed down waiting.
        if self.decision.as_ref().is_some_and(|d| d.escalate) && !next.escalate {
            return None;
        }
        if !changed {
            return None;
        }
        self.decision = Some(next);
        self.decision.as_ref()
    }

    fn judge(&self, at_ms: u64) -> Decision {
        let p = &self.policy;
        let s = &self.signals;
        let mut reasons = Vec::new();
        let mut immediate = false;
        if let Some(evidence) = &s.asked_for_person {
            immediate = true;
            reasons.push(reason(Code::CallerRequest, 1.0, vec![evidence.clone()]));
        }
        if let Some((name, _)) = s
            .intent
            .as_ref()
            .filter(|(n, _)| p.always_intents.contains(n))
        {
            immediate = true;
            reasons.push(reason(
                Code::PolicyIntent,
                1.0,
                vec![format!("intent {name} always goes to a person")],
            ));
        }
        if let Some(evidence) = &s.handover {
            immediate = true;
            reasons.push(reason(Code::BotHandover, 1.0, vec![evidence.clone()]));
        }
        if let Some(flag) = &s.flagged {
            immediate = true;
            reasons.push(reason(
                Code::PolicyCustomer,
                1.0,
                vec![format!("customer flagged {flag}")],
            ));
        }
        let mut weighted = 0.0;
        let mut scored = |code: Code, weight: f64, (score, evidence): (f64, Vec<String>)| {
            if score > 0.0 {
                weighted += weight * score;
                reasons.push(reason(code, score, evidence));
            }
        };
        scored(Code::Sentiment, p.weights.sentiment, self.sentiment());
        scored(
            Code::LowConfidence,
            p.weights.low_confidence,
            self.confidence(),
        );
        scored(Code::NoMatch, p.weights.no_match, self.no_match());
        scored(
            Code::BotStuck,
            p.weights.bot_stuck,
            match &s.stuck {
                Some(why) => (1.0, vec![format!("bot stuck: {why}")]),
                None => (0.0, Vec::new()),
            },
        );
        scored(Code::Complexity, p.weights.complexity, self.complexity());
        reasons.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.code.cmp(&b.code)));
        let escalate = immediate || weighted >= p.threshold;
        let distressed = reasons
            .iter()
            .any(|r| r.code == Code::Sentiment && r.score >= 0.75);
        let urgency = if immediate {
            Urgency::Immediate
        } else if escalate && distressed {
            Urgency::High
        } else if escalate {
            Urgency::Normal
        } else {
            Urgency::Low
        };
        Decision {
            escalate,
            urgency,
            score: weighted,
            reasons,
            skill: s
                .intent
                .as_ref()
                .and_then(|(name, _)| p.skills.get(name).cloned()),
            at_ms,
        }
    }

    /// Upset, getting worse, or louder than the caller's own start.
    fn sentiment(&self) -> (f64, Vec<String>) {
        let s = &self.signals;
        let Some((label, trend, arousal)) = &s.mood else {
            return (0.0, Vec::new());
        };
        let mut evidence = Vec::new();
        let mood = MOOD_WEIGHT
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0.0, |(_, w)| *w);
        if mood > 0.0 {
            evidence.push(format!("caller sounds {label}"));
        }
        let worse = if trend == "deteriorating" {
            evidence.push("mood deteriorating".to_owned());
            0.3
        } else {
            0.0
        };
        let rise = if s.arousal_readings.len() > BASELINE_READINGS {
            let baseline = s.arousal_readings[..BASELINE_READINGS].iter().sum::<f32>()
                / BASELINE_READINGS as f32;
            let rise = arousal - baseline;
            if rise > 0.05 {
                evidence.push(format!(
                    "arousal {arousal:.2}, {rise:.2} above the caller's baseline {baseline:.2}"
                ));
            }
            f64::from((rise / self.policy.arousal_rise).clamp(0.0, 1.0))
        } else {
            0.0
        };
        ((0.6 * mood + worse + 0.3 * rise).min(1.0), evidence)
    }

    /// An intent heard with little confidence.
    fn confidence(&self) -> (f64, Vec<String>) {
        match &self.signals.intent {
            Some((name, c)) if *c < self.policy.low_confidence => {
                let shortfall = (self.policy.low_confidence - c) / self.policy.low_confidence;
                (
                    f64::from(shortfall.clamp(0.0, 1.0)),
                    vec![format!("intent {name} at confidence {c:.2}")],
                )
            }
            _ => (0.0, Vec::new()),
        }
    }

    /// Phrases not understood and questions asked again.
    fn no_match(&self) -> (f64, Vec<String>) {
        let s = &self.signals;
        let count = s.unmatched.len() as u32 + s.reprompts;
        if count == 0 {
            return (0.0, Vec::new());
        }
        let mut evidence: Vec<String> = s
            .unmatched
            .iter()
            .map(|p| format!("not understood: \"{p}\""))
            .collect();
        if s.reprompts > 0 {
            evidence.push(format!("{} re-prompts", s.reprompts));
        }
        let score = f64::from(count) / f64::from(self.policy.max_no_match.max(1));
        (score.min(1.0), evidence)
    }

    /// Several topics, failed attempts, a long call.
    fn complexity(&self) -> (f64, Vec<String>) {
        let s = &self.signals;
        let mut score = 0.0;
        let mut evidence = Vec::new();
        if s.topics.len() > 1 {
            score += 0.4 * (s.topics.len() - 1) as f64;
            evidence.push(format!(
                "{} topics: {}",
                s.topics.len(),
                s.topics.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if s.failed_attempts > 0 {
            score += 0.4 * f64::from(s.failed_attempts);
            evidence.push(format!("{} failed attempts", s.failed_attempts));
        }
        let long = self.policy.long_call_secs.saturating_mul(1000);
        if long > 0 && s.elapsed_ms >= long {
            score += 0.5;
            evidence.push(format!("call running {} s", s.elapsed_ms / 1000));
        }
        (score.min(1.0), evidence)
    }
}

fn reason(code: Code, score: f64, evidence: Vec<String>) -> Reason {
    Reason {
        code,
        score,
        evidence,
    }
}

fn codes(reasons: &[Reason]) -> Vec<Code> {
    let mut codes: Vec<Code> = reasons.iter().map(|r| r.code).collect();
    codes.sort();
    codes
}

/// Whether the caller asks for a person: "I want to speak to a human", "agent please",
/// "can I talk to someone".
fn asks_for_person(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let is = |w: &String, list: &[&str]| list.contains(&w.as_str());
    // A request for the person stands before them: "my travel agent ... I need" is not one.
    let asked = |i: usize| {
        words[i.saturating_sub(REQUEST_REACH)..i]
            .iter()
            .any(|b| is(b, &REQUEST_WORDS))
    };
    words.iter().enumerate().any(|(i, w)| {
        (is(w, &PERSON_WORDS) && (words.len() <= SHORT_REQUEST_WORDS || asked(i)))
            || (is(w, &VAGUE_PERSON_WORDS)
                && asked(i)
                && words[i.saturating_sub(3)..i]
                    .iter()
                    .any(|b| b == "to" || b == "with"))
    })
}

fn quote(text: &str) -> String {
    let mut q: String = text.trim().chars().take(MAX_QUOTE).collect();
    if text.trim().chars().count() > MAX_QUOTE {
        q.push('…');
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::document::TranscriptLine;
    use crate::context::Author;

    fn event(change: Change) -> Event {
        Event {
            version: 1,
            author: Author::System,
            at_ms: 0,
            change,
        }
    }

    fn said(text: &str) -> Event {
        event(Change::Transcript(TranscriptLine {
            speaker: "caller".into(),
            text: text.into(),
            is_final: true,
            utterance: 1,
            ..TranscriptLine::default()
        }))
    }

    fn vibe(label: &str, trend: &str, arousal: f32) -> Event {
        event(Change::Vibe {
            label: label.into(),
            arousal,
            valence: 0.0,
            trend: trend.into(),
            evidence: Vec::new(),
            utterance: 1,
        })
    }

    fn intent(name: &str, confidence: f32) -> Event {
        event(Change::Intent {
            name: name.into(),
            confidence,
            alternatives: Vec::new(),
        })
    }

    fn bank() -> Policy {
        Policy {
            always_intents: ["block_card".to_owned()].into(),
            always_customer_flags: ["vulnerable".to_owned()].into(),
            skills: [
                ("block_card".to_owned(), "fraud".to_owned()),
                ("balance".to_owned(), "billing".to_owned()),
            ]
            .into(),
            ..Policy::default()
        }
    }

    fn codes_of(d: &Decision) -> Vec<Code> {
        d.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn asking_for_a_person_escalates_at_once() {
        for text in [
            "I want to speak to a human.",
            "Agent, please.",
            "Representative",
            "Can I talk to someone about this?",
            "Put me through to a real person",
        ] {
            let mut e = Engine::new(bank());
            let d = e.observe(&said(text), 1_000).expect("a decision").clone();
            assert!(d.escalate, "{text}");
            assert_eq!(d.urgency, Urgency::Immediate, "{text}");
            assert_eq!(d.reasons[0].code, Code::CallerRequest, "{text}");
        }
        for text in [
            "Someone stole my card.",
            "I paid the person at the shop.",
            "What is my balance?",
            "My travel agent booked the flight and I need the charge explained to me today",
        ] {
            let mut e = Engine::new(bank());
            e.observe(&said(text), 1_000);
            assert!(e.decision().is_none_or(|d| !d.escalate), "{text}");
        }
        let mut e = Engine::new(bank());
        let d = e.key('0', 500).expect("a decision");
        assert_eq!((d.escalate, d.urgency), (true, Urgency::Immediate));
        assert_eq!(d.reasons[0].evidence, ["caller pressed 0"]);
    }

    #[test]
    fn policy_sends_a_stolen_card_to_fraud_with_the_mood_as_evidence() {
        let mut e = Engine::new(bank());
        e.observe(&vibe("neutral", "steady", 0.3), 1_000);
        e.observe(&vibe("anxious", "steady", 0.35), 4_000);
        e.observe(&vibe("angry", "deteriorating", 0.8), 8_000);
        let d = e
            .observe(&intent("block_card", 0.9), 9_000)
            .expect("escalates");
        assert!(d.escalate);
        assert_eq!(d.urgency, Urgency::Immediate);
        assert_eq!(d.skill.as_deref(), Some("fraud"));
        let codes = codes_of(d);
        assert!(codes.contains(&Code::PolicyIntent), "{codes:?}");
        let mood = d
            .reasons
            .iter()
            .find(|r| r.code == Code::Sentiment)
            .expect("the mood is a reason");
        assert!(mood.score >= 0.9, "{mood:?}");
        assert!(
            mood.evidence
                .iter()
                .any(|e| e.contains("above the caller's baseline")),
            "{mood:?}"
        );
        assert!(mood.evidence.contains(&"mood deteriorating".to_owned()));
    }

    #[test]
    fn a_struggling_bot_escalates_once_the_weighted_score_reaches_the_threshold() {
        let mut e = Engine::new(bank());
        e.observe(&intent("balance", 0.3), 1_000);
        let first = e.decision().expect("low confidence is a reason").clone();
        assert!(!first.escalate, "{first:?}");
        assert_eq!(first.urgency, Urgency::Low);
        assert!(e
            .observe(
                &event(Change::BotUnmatched {
                    phrase: "blah".into()
                }),
                2_000
            )
            .is_some_and(|d| !d.escalate));
        e.observe(&event(Change::BotReprompt), 3_000);
        let d = e
            .observe(&event(Change::BotReprompt), 4_000)
            .expect("escalates");
        assert!(d.escalate, "{d:?}");
        assert_eq!(d.urgency, Urgency::Normal);
        assert_eq!(d.skill.as_deref(), Some("billing"));
        assert!(d.score >= bank().threshold);
        let no_match = d.reasons.iter().find(|r| r.code == Code::NoMatch).unwrap();
        assert_eq!(no_match.score, 1.0);
        assert!(no_match
            .evidence
            .contains(&"not understood: \"blah\"".to_owned()));
    }

    #[test]
    fn a_flagged_customer_and_a_stuck_bot_escalate() {
        let mut e = Engine::new(bank());
        let mut data = serde_json::Map::new();
        data.insert("vulnerable".into(), true.into());
        let d = e
            .observe(&event(Change::CustomerData { data }), 1_000)
            .expect("escalates");
        assert_eq!(codes_of(d), [Code::PolicyCustomer]);

        let mut e = Engine::new(bank());
        let d = e
            .observe(
                &event(Change::BotStuck {
                    reason: "identity not verified after 3 attempts".into(),
                }),
                1_000,
            )
            .expect("escalates");
        assert!(d.escalate);
        assert_eq!(codes_of(d), [Code::BotStuck]);
    }

    #[test]
    fn a_long_call_grows_complex_and_only_changes_are_reported() {
        let policy = Policy {
            long_call_secs: 60,
            threshold: 0.2,
            ..bank()
        };
        let mut e = Engine::new(policy);
        assert!(e.tick(30_000).is_none(), "nothing to say yet");
        e.observe(&intent("balance", 0.9), 31_000);
        assert!(e.decision().is_none(), "a confident intent is no reason");
        let d = e
            .observe(&intent("dispute", 0.9), 40_000)
            .expect("two topics");
        assert!(!d.escalate, "{d:?}");
        assert!(e.tick(50_000).is_none(), "nothing changed");
        let d = e.tick(61_000).expect("running long");
        assert!(d.escalate, "{d:?}");
        let complexity = d
            .reasons
            .iter()
            .find(|r| r.code == Code::Complexity)
            .unwrap();
        assert!(complexity.evidence.iter().any(|e| e.contains("61 s")));
        assert!(e.tick(70_000).is_none());
        e.observe(&vibe("calm", "improving", 0.1), 80_000);
        assert!(
            e.decision().unwrap().escalate,
            "a call handed over stays handed over"
        );
    }

    #[test]
    fn the_policy_reads_from_toml_with_defaults() {
        let policy: Policy = toml::from_str(
            "threshold = 0.5\nalways_intents = [\"complaint\"]\n\
             [weights]\nsentiment = 0.6\n[skills]\nblock_card = \"fraud\"\n",
        )
        .unwrap();
        assert_eq!(policy.threshold, 0.5);
        assert_eq!(policy.weights.sentiment, 0.6);
        assert_eq!(policy.weights.no_match, Weights::default().no_match);
        assert!(policy.always_intents.contains("complaint"));
        assert_eq!(policy.long_call_secs, 300);
        assert!(toml::from_str::<Policy>("treshold = 1\n").is_err());
    }

    #[test]
    fn a_record_keeps_what_was_said_before_the_handoff_and_what_the_agent_did_after() {
        let line = |speaker: &str, text: &str| TranscriptLine {
            speaker: speaker.into(),
            text: text.into(),
            is_final: true,
            ..TranscriptLine::default()
        };
        let mut doc = Context {
            call_id: "c1".into(),
            ..Context::default()
        };
        doc.transcript = vec![
            line("bot", "How can I help?"),
            TranscriptLine {
                is_final: false,
                ..line("caller", "my ca")
            },
            line("caller", "my card was stolen"),
        ];
        let decision = Decision {
            escalate: true,
            urgency: Urgency::High,
            score: 1.0,
            reasons: Vec::new(),
            skill: None,
            at_ms: 0,
        };
        let escalations = Escalations::default();
        escalations.record("c1", &decision, Some(&doc));
        doc.transcript.push(line("agent", "I have blocked it"));
        doc.actions.push(Action {
            name: "handback".into(),
            detail: serde_json::json!({"disposition": "card_blocked"}),
            by: "agent:a1".into(),
            at_ms: 5,
        });
        doc.actions.push(Action {
            name: "card_blocked".into(),
            detail: serde_json::Value::Null,
            by: "bot".into(),
            at_ms: 6,
        });
        escalations.ended(&doc);
        let r = &escalations.list()[0];
        let text = |lines: &[Said]| -> Vec<String> {
            lines
                .iter()
                .map(|l| format!("{}: {}", l.speaker, l.text))
                .collect()
        };
        assert_eq!(
            text(&r.transcript),
            ["bot: How can I help?", "caller: my card was stolen"]
        );
        assert_eq!(text(&r.agent_transcript), ["agent: I have blocked it"]);
        let actions: Vec<&str> = r.agent_actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(actions, ["handback"]);
    }
}
