//! The caller's mood from how they speak and what they say: arousal from prosody (against
//! the caller's own first utterances and against population norms), valence from the
//! words, combined into a label, a trend, and the evidence behind them. One tracker per
//! caller, updated once per utterance; a pure state machine.

use std::collections::{HashSet, VecDeque};

use serde::Serialize;

use crate::prosody::Prosody;

/// What the caller seems to feel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VibeLabel {
    Calm,
    Neutral,
    Anxious,
    Frustrated,
    Angry,
    Confused,
}

impl VibeLabel {
    /// The label's name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            VibeLabel::Calm => "calm",
            VibeLabel::Neutral => "neutral",
            VibeLabel::Anxious => "anxious",
            VibeLabel::Frustrated => "frustrated",
            VibeLabel::Angry => "angry",
            VibeLabel::Confused => "confused",
        }
    }
}

/// Where the mood is heading over the last utterances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Steady,
    Improving,
    Deteriorating,
}

impl Trend {
    /// The trend's name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Steady => "steady",
            Trend::Improving => "improving",
            Trend::Deteriorating => "deteriorating",
        }
    }
}

/// The mood after an utterance, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vibe {
    pub label: VibeLabel,
    /// Activation, 0 (flat) ..= 1 (highly agitated); about 0.3 for ordinary speech.
    pub arousal: f32,
    /// −1 (negative) ..= 1 (positive), from the words.
    pub valence: f32,
    pub trend: Trend,
    /// The features that moved and the words that counted, in plain words.
    pub evidence: Vec<String>,
    /// The utterance this reading is for, from 1.
    pub utterance: u32,
}

/// Telephone speech of an adult at ease (espeak-ng's default voice through G.711 sits
/// here too): what arousal is measured against before the caller's own baseline exists.
#[derive(Debug, Clone, Copy)]
struct Norms {
    energy_db: f32,
    rate_per_sec: f32,
    pitch_spread_st: f32,
    pause_ratio: f32,
}

const POPULATION: Norms = Norms {
    energy_db: -22.0,
    rate_per_sec: 4.5,
    pitch_spread_st: 2.0,
    pause_ratio: 0.3,
};

/// Utterances (with voice) averaged into the caller's baseline.
const BASELINE_UTTERANCES: usize = 2;
/// Arousal of speech that matches its reference exactly.
const RESTING_AROUSAL: f32 = 0.3;
/// Utterances compared on each side for the trend.
const TREND_WINDOW: usize = 2;
/// A change in distress (arousal minus valence, halved) that counts as a trend: more
/// than one negative word in an otherwise calm sentence moves it.
const TREND_STEP: f32 = 0.15;

const NEGATIVE: &[&str] = &[
    "stolen",
    "lost",
    "problem",
    "wrong",
    "mistake",
    "not",
    "never",
    "no",
    "terrible",
    "awful",
    "ridiculous",
    "useless",
    "fraud",
    "unacceptable",
    "complaint",
    "complain",
    "cancel",
    "still",
    "again",
    "waiting",
    "worst",
    "angry",
    "annoyed",
    "fed",
    "hate",
    "missing",
    "nobody",
    "nothing",
    "can't",
    "won't",
    "didn't",
    "doesn't",
    "haven't",
];
const POSITIVE: &[&str] = &[
    "thank",
    "thanks",
    "great",
    "good",
    "perfect",
    "happy",
    "appreciate",
    "lovely",
    "brilliant",
    "excellent",
    "wonderful",
    "helpful",
    "fine",
];
const WORRY: &[&str] = &[
    "worried",
    "scared",
    "afraid",
    "urgent",
    "urgently",
    "help",
    "emergency",
    "panic",
    "quickly",
    "stolen",
    "fraud",
    "hacked",
];
const PROFANITY: &[&str] = &[
    "damn", "hell", "crap", "bloody", "shit", "fuck", "fucking", "bastard", "bullshit",
];
const AGENT: &[&str] = &[
    "agent",
    "human",
    "representative",
    "person",
    "operator",
    "someone",
];
const CONFUSION: &[&str] = &[
    "understand",
    "confused",
    "confusing",
    "mean",
    "pardon",
    "sorry",
    "what",
    "huh",
];
/// Words too common to show repetition.
const STOP: &[&str] = &[
    "i", "a", "an", "the", "my", "me", "to", "and", "it", "is", "was", "of", "on", "in", "you",
    "your", "for", "this", "that", "with", "do", "can", "please", "want", "need",
];

/// Follows one caller's mood.
#[derive(Debug, Default)]
pub struct VibeTracker {
    first: Vec<Prosody>,
    baseline: Option<Norms>,
    history: VecDeque<f32>,
    said: HashSet<String>,
    utterances: u32,
}

impl VibeTracker {
    /// A tracker that has heard nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one utterance: how it was said and what was said.
    pub fn update(&mut self, p: &Prosody, text: &str) -> Vibe {
        self.utterances += 1;
        let mut evidence = Vec::new();
        let voiced = p.secs > 0.0 && p.energy_db > -60.0;
        let arousal = if voiced {
            let population = shift(p, &POPULATION);
            let own = self.baseline.map(|b| shift(p, &b));
            let raw = match own {
                Some(own) if own.0 > population.0 => own,
                _ => population,
            };
            evidence.extend(raw.1);
            (RESTING_AROUSAL + 0.25 * raw.0).clamp(0.0, 1.0)
        } else {
            RESTING_AROUSAL
        };
        if voiced && self.baseline.is_none() {
            self.first.push(*p);
            if self.first.len() == BASELINE_UTTERANCES {
                self.baseline = Some(average(&self.first));
            }
        }

        let words = crate::wer::words(text);
        let has = |list: &[&str]| -> Vec<String> {
            words
                .iter()
                .filter(|w| list.contains(&w.as_str()))
                .cloned()
                .collect()
        };
        let (neg, pos, worry, swear, agent, confusion) = (
            has(NEGATIVE),
            has(POSITIVE),
            has(WORRY),
            has(PROFANITY),
            has(AGENT),
            has(CONFUSION),
        );
        let content: Vec<&String> = words
            .iter()
            .filter(|w| !STOP.contains(&w.as_str()))
            .collect();
        let repeated: Vec<String> = content
            .iter()
            .filter(|w| self.said.contains(w.as_str()))
            .map(|w| (*w).clone())
            .collect();
        let repetition = if content.len() >= 2 {
            repeated.len() as f32 / content.len() as f32
        } else {
            0.0
        };
        self.said.extend(content.into_iter().cloned());

        let valence = (0.1 + 0.3 * pos.len() as f32
            - 0.2 * neg.len() as f32
            - 0.5 * swear.len() as f32
            - 0.4 * repetition
            - 0.2 * f32::from(!agent.is_empty()))
        .clamp(-1.0, 1.0);
        for (what, list) in [
            ("negative words", &neg),
            ("positive words", &pos),
            ("worry words", &worry),
            ("profanity", &swear),
            ("asks for a person", &agent),
            ("confusion", &confusion),
        ] {
            if !list.is_empty() {
                evidence.push(format!("{what}: {}", list.join(", ")));
            }
        }
        if repetition >= 0.5 {
            evidence.push(format!("repeats themselves: {}", repeated.join(", ")));
        }

        let label = if !swear.is_empty() && arousal >= 0.5 || arousal >= 0.75 && valence < -0.3 {
            VibeLabel::Angry
        } else if !confusion.is_empty() && words.len() <= 12 && arousal < 0.7 {
            VibeLabel::Confused
        } else if arousal >= 0.5 && (valence < 0.0 || repetition >= 0.5 || !agent.is_empty()) {
            if worry.is_empty() || repetition >= 0.5 || !agent.is_empty() {
                VibeLabel::Frustrated
            } else {
                VibeLabel::Anxious
            }
        } else if arousal >= 0.5 {
            VibeLabel::Anxious
        } else if arousal < 0.4 && valence >= -0.2 {
            VibeLabel::Calm
        } else {
            VibeLabel::Neutral
        };

        let distress = (arousal - valence) / 2.0;
        self.history.push_back(distress);
        if self.history.len() > 2 * TREND_WINDOW {
            self.history.pop_front();
        }
        let trend = if self.history.len() < 2 {
            Trend::Steady
        } else {
            let half = self.history.len() / 2;
            let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
            let h: Vec<f32> = self.history.iter().copied().collect();
            let change = mean(&h[half..]) - mean(&h[..half]);
            if change > TREND_STEP {
                Trend::Deteriorating
            } else if change < -TREND_STEP {
                Trend::Improving
            } else {
                Trend::Steady
            }
        };
        Vibe {
            label,
            arousal,
            valence,
            trend,
            evidence,
            utterance: self.utterances,
        }
    }
}

/// How far an utterance's prosody sits above a reference, as a score (each feature's
/// excess in units of a clearly noticeable change, summed) and what moved.
fn shift(p: &Prosody, r: &Norms) -> (f32, Vec<String>) {
    let mut score = 0.0;
    let mut moved = Vec::new();
    let mut part = |value: f32, what: String| {
        if value > 0.5 {
            moved.push(what);
        }
        score += value.clamp(-1.0, 2.0);
    };
    part(
        (p.energy_db - r.energy_db) / 6.0,
        format!("louder ({:+.0} dB)", p.energy_db - r.energy_db),
    );
    part(
        (p.rate_per_sec / r.rate_per_sec - 1.0) / 0.3,
        format!(
            "faster ({:.1} vs {:.1} syllables/s)",
            p.rate_per_sec, r.rate_per_sec
        ),
    );
    part(
        (p.pitch_spread_st - r.pitch_spread_st) / 1.5,
        format!(
            "livelier pitch ({:.1} vs {:.1} semitones)",
            p.pitch_spread_st, r.pitch_spread_st
        ),
    );
    part(
        (r.pause_ratio - p.pause_ratio) / 0.2,
        format!(
            "fewer pauses ({:.0} % vs {:.0} %)",
            100.0 * p.pause_ratio,
            100.0 * r.pause_ratio
        ),
    );
    (score, moved)
}

fn average(ps: &[Prosody]) -> Norms {
    let n = ps.len().max(1) as f32;
    Norms {
        energy_db: ps.iter().map(|p| p.energy_db).sum::<f32>() / n,
        rate_per_sec: (ps.iter().map(|p| p.rate_per_sec).sum::<f32>() / n).max(0.5),
        pitch_spread_st: ps.iter().map(|p| p.pitch_spread_st).sum::<f32>() / n,
        pause_ratio: ps.iter().map(|p| p.pause_ratio).sum::<f32>() / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_variants_in_snake_case_as_serialized() {
        use VibeLabel::*;
        for l in [Calm, Neutral, Anxious, Frustrated, Angry, Confused] {
            assert_eq!(l.as_str(), format!("{l:?}").to_lowercase());
        }
        for t in [Trend::Steady, Trend::Improving, Trend::Deteriorating] {
            assert_eq!(t.as_str(), format!("{t:?}").to_lowercase());
        }
    }

    fn calm() -> Prosody {
        Prosody {
            pitch_hz: 120.0,
            pitch_spread_st: 2.0,
            energy_db: -22.0,
            rate_per_sec: 4.5,
            pause_ratio: 0.3,
            secs: 3.0,
        }
    }

    fn agitated() -> Prosody {
        Prosody {
            pitch_hz: 180.0,
            pitch_spread_st: 4.0,
            energy_db: -12.0,
            rate_per_sec: 6.0,
            pause_ratio: 0.05,
            secs: 3.0,
        }
    }

    #[test]
    fn an_ordinary_caller_is_calm() {
        let mut t = VibeTracker::new();
        let v = t.update(&calm(), "I would like to check the balance of my account.");
        assert_eq!(v.label, VibeLabel::Calm, "{v:?}");
        assert!((0.2..=0.4).contains(&v.arousal));
        let v = t.update(&calm(), "Thank you, that is perfect.");
        assert_eq!(v.label, VibeLabel::Calm);
        assert!(v.valence > 0.3);
        assert_eq!(v.trend, Trend::Improving, "thanks lift the mood");
    }

    #[test]
    fn loud_fast_complaints_are_frustrated_or_angry() {
        let mut t = VibeTracker::new();
        let v = t.update(
            &agitated(),
            "This is ridiculous, my card is still not working.",
        );
        assert!(v.arousal >= 0.7, "{v:?}");
        assert!(
            matches!(v.label, VibeLabel::Frustrated | VibeLabel::Angry),
            "{v:?}"
        );
        assert!(v.evidence.iter().any(|e| e.starts_with("louder")), "{v:?}");
        assert!(v.evidence.iter().any(|e| e.contains("ridiculous")), "{v:?}");
        let v = t.update(&agitated(), "Damn it, get me a human.");
        assert_eq!(v.label, VibeLabel::Angry, "{v:?}");
    }

    #[test]
    fn worry_without_hostility_is_anxious() {
        let mut t = VibeTracker::new();
        let mut p = agitated();
        p.energy_db = -18.0;
        let v = t.update(&p, "Please help, I think my card was stolen.");
        assert_eq!(v.label, VibeLabel::Anxious, "{v:?}");
    }

    #[test]
    fn turning_agitated_after_a_calm_start_deteriorates() {
        let mut t = VibeTracker::new();
        t.update(&calm(), "Hello, I am calling about my card.");
        t.update(&calm(), "It has not arrived yet.");
        let v = t.update(
            &agitated(),
            "It has not arrived, I have been waiting for weeks.",
        );
        let v2 = t.update(&agitated(), "I already told you, my card has not arrived.");
        assert!(v.arousal > 0.6 && v2.arousal > 0.6, "{v:?} {v2:?}");
        assert_eq!(v2.trend, Trend::Deteriorating, "{v2:?}");
        assert!(
            v2.evidence.iter().any(|e| e.starts_with("repeats")),
            "{v2:?}"
        );
        assert!(
            matches!(v2.label, VibeLabel::Frustrated | VibeLabel::Angry),
            "{v2:?}"
        );
    }

    #[test]
    fn a_puzzled_question_is_confused() {
        let mut t = VibeTracker::new();
        let v = t.update(&calm(), "Sorry, I don't understand what you mean.");
        assert_eq!(v.label, VibeLabel::Confused, "{v:?}");
    }

    #[test]
    fn silence_moves_nothing() {
        let mut t = VibeTracker::new();
        let v = t.update(&Prosody::default(), "");
        assert_eq!(v.label, VibeLabel::Calm);
        assert_eq!(v.arousal, RESTING_AROUSAL);
        assert!(v.evidence.is_empty());
    }
}
