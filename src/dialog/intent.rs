//! Intent classification from a dialplan's example phrases, built to survive speech
//! recognition errors ("block my card" heard as "like my card").
//!
//! An utterance is normalised (lowercase, contractions split, stop words dropped, negations
//! kept, crude stemming) and each of its words is matched softly against every word the
//! examples use: by spelling (normalised Levenshtein) and by sound (Double Metaphone keys).
//! Adjacent words are also tried run together, since the recogniser splits words it does
//! not know ("a count" for "account"). Words are weighted by how few intents use them, so
//! "card" counts for less than "stolen".
//!
//! An intent's raw score is half its best example (a recall-leaning F-measure of the
//! example's words against the utterance's) and half the soft cosine between the utterance
//! and the intent's centre (its words weighted by how many of its examples use them). The
//! raw score is mapped to a confidence and discounted when the runner-up is close. Word data
//! of the examples is precomputed when the model is built; on the bank test set a
//! classification takes well under a tenth of a millisecond.

use crate::context::document::{Intent, IntentGuess};
use rphonetic::DoubleMetaphone;
use std::collections::HashMap;

/// Below this confidence an utterance is taken to be out of scope and
/// [`Classification::best`] is `None`.
pub const ACCEPT_CONFIDENCE: f32 = 0.35;

/// How many candidates [`Classification::ranked`] keeps at most.
const MAX_RANKED: usize = 5;
/// Candidates below this confidence are noise and left out of the ranking.
const MIN_RANKED: f32 = 0.01;
/// Words of an utterance looked at: past these, a caller is not stating a request, and the
/// bound keeps classification time bounded.
const MAX_TOKENS: usize = 128;

/// An intent and how sure the classifier is of it, 0..=1.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentScore {
    pub name: String,
    pub confidence: f32,
}

/// What an utterance was understood as.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classification {
    /// The first of `ranked` when it reaches [`ACCEPT_CONFIDENCE`].
    pub best: Option<IntentScore>,
    /// Candidates with some evidence, best first, at most five.
    pub ranked: Vec<IntentScore>,
}

impl From<&Classification> for Intent {
    /// The context's view: the accepted intent, or none, with the runners-up.
    fn from(c: &Classification) -> Self {
        let skip = usize::from(c.best.is_some());
        Intent {
            name: c.best.as_ref().map(|b| b.name.clone()),
            confidence: c.best.as_ref().map_or(0.0, |b| b.confidence),
            alternatives: c.ranked[skip.min(c.ranked.len())..]
                .iter()
                .map(|s| IntentGuess {
                    name: s.name.clone(),
                    confidence: s.confidence,
                })
                .collect(),
        }
    }
}

/// A classifier built once from example phrases per intent, then asked many times.
#[derive(Debug, Clone)]
pub struct IntentModel {
    names: Vec<String>,
    vocab: Vec<VocabWord>,
    by_stem: HashMap<String, usize>,
    examples: Vec<Example>,
    /// Per intent, each word it uses with its weight times the square root of its share of
    /// the intent's examples: the intent's centre, where words most examples use dominate.
    centroids: Vec<Centroid>,
    /// Phrases that name an intent outright: (intent, stems that must all be heard).
    cues: Vec<(usize, Vec<String>)>,
    /// Weight of an utterance word that matches no example word.
    unknown_weight: f32,
}

#[derive(Debug, Clone)]
struct VocabWord {
    word: Word,
    weight: f32,
}

#[derive(Debug, Clone)]
struct Example {
    intent: usize,
    words: Vec<usize>,
    total_weight: f32,
}

#[derive(Debug, Clone, Default)]
struct Centroid {
    words: Vec<(usize, f32)>,
    norm: f32,
}

/// A normalised word: its stem for spelling, its sound keys from the surface form.
#[derive(Debug, Clone)]
struct Word {
    stem: String,
    keys: [String; 2],
    /// How often each ASCII letter occurs in the stem, to rule out matches cheaply.
    letters: [u8; 26],
}

impl Word {
    fn new(stem: String, keys: [String; 2]) -> Word {
        let mut letters = [0u8; 26];
        for b in stem.bytes().filter(u8::is_ascii_lowercase) {
            letters[usize::from(b - b'a')] = letters[usize::from(b - b'a')].saturating_add(1);
        }
        Word {
            stem,
            keys,
            letters,
        }
    }
}

impl IntentModel {
    /// Builds the model from `(intent name, example phrases)` pairs as a dialplan lists them.
    pub fn new(intents: &[(String, Vec<String>)]) -> IntentModel {
        let mut model = IntentModel {
            names: intents.iter().map(|(n, _)| n.clone()).collect(),
            vocab: Vec::new(),
            by_stem: HashMap::new(),
            examples: Vec::new(),
            centroids: vec![Centroid::default(); intents.len()],
            cues: Vec::new(),
            unknown_weight: 1.0,
        };
        let mut intents_using: Vec<Vec<usize>> = Vec::new();
        for (intent, (_, phrases)) in intents.iter().enumerate() {
            for phrase in phrases {
                let mut ids: Vec<usize> = words(phrase)
                    .into_iter()
                    .map(|w| model.intern(w, &mut intents_using))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                if ids.is_empty() {
                    continue;
                }
                for &id in &ids {
                    if !intents_using[id].contains(&intent) {
                        intents_using[id].push(intent);
                    }
                }
                model.examples.push(Example {
                    intent,
                    words: ids,
                    total_weight: 0.0,
                });
            }
        }
        let n = intents.len().max(1) as f32;
        for (v, users) in model.vocab.iter_mut().zip(&intents_using) {
            v.weight = (1.0 + n / users.len().max(1) as f32).ln();
        }
        let mut uses = vec![HashMap::<usize, f32>::new(); intents.len()];
        let mut counts = vec![0.0f32; intents.len()];
        for e in &mut model.examples {
            e.total_weight = e.words.iter().map(|&id| model.vocab[id].weight).sum();
            counts[e.intent] += 1.0;
            for &id in &e.words {
                *uses[e.intent].entry(id).or_default() += 1.0;
            }
        }
        for ((c, uses), count) in model.centroids.iter_mut().zip(uses).zip(counts) {
            c.words = uses
                .into_iter()
                .map(|(id, k)| (id, (k / count).sqrt() * model.vocab[id].weight))
                .collect();
            c.words.sort_unstable_by_key(|&(id, _)| id);
            c.norm = c.words.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        }
        if !model.vocab.is_empty() {
            let mean = model.vocab.iter().map(|v| v.weight).sum::<f32>() / model.vocab.len() as f32;
            model.unknown_weight = UNKNOWN_WEIGHT_SHARE * mean;
        }
        model
    }

    /// Adds words or short phrases that, heard verbatim (after normalising), name `intent`
    /// outright ("agent", "human"); unknown intents are ignored.
    pub fn with_cues(mut self, intent: &str, cues: &[&str]) -> IntentModel {
        if let Some(i) = self.names.iter().position(|n| n == intent) {
            for cue in cues {
                let stems: Vec<String> = words(cue).into_iter().map(|w| w.stem).collect();
                if !stems.is_empty() {
                    self.cues.push((i, stems));
                }
            }
        }
        self
    }

    /// Scores `text` against every intent.
    pub fn classify(&self, text: &str) -> Classification {
        self.rank(&self.raw_scores(text))
    }

    /// Each intent's evidence in `text`, 0..=1, before calibration.
    fn raw_scores(&self, text: &str) -> Vec<f32> {
        let mut heard = words(text);
        heard.sort_by(|a, b| a.stem.cmp(&b.stem));
        heard.dedup_by(|a, b| a.stem == b.stem);
        let mut raw = vec![0.0f32; self.names.len()];
        if heard.is_empty() || self.examples.is_empty() {
            return raw;
        }
        let content = heard.len();
        // Run-together pairs go after the content words, each with the content words it
        // was made of.
        let mut parts: Vec<Vec<usize>> = Vec::new();
        for (joined, pair) in joined_pairs(text) {
            if heard.iter().any(|h| h.stem == joined.stem) {
                continue;
            }
            let of: Vec<usize> = pair
                .iter()
                .filter_map(|p| heard[..content].iter().position(|h| &h.stem == p))
                .collect();
            heard.push(joined);
            parts.push(of);
        }

        // sims[i * V + v]: how well heard word i matches vocabulary word v.
        let nv = self.vocab.len();
        let mut sims = vec![0.0f32; heard.len() * nv];
        let mut heard_weight = Vec::with_capacity(heard.len());
        for (i, h) in heard.iter().enumerate() {
            let row = &mut sims[i * nv..(i + 1) * nv];
            let mut best = (0.0f32, self.unknown_weight);
            for (v, vw) in self.vocab.iter().enumerate() {
                let s = similarity(h, &vw.word);
                row[v] = s;
                if s > best.0 {
                    best = (s, vw.weight);
                }
            }
            if i >= content {
                // A run-together pair counts only where it makes a word the examples use.
                row.iter_mut()
                    .filter(|s| **s < CONFIDENT_MATCH)
                    .for_each(|s| *s = 0.0);
                heard_weight.push(0.0);
                continue;
            }
            // A near miss counts with its match's weight; a stranger with a modest one, so
            // garbled filler dilutes the score without drowning it.
            heard_weight.push(if best.0 >= CONFIDENT_MATCH {
                best.1
            } else {
                self.unknown_weight
            });
        }
        let heard_total: f32 = heard_weight.iter().sum();
        let heard_norm = heard_weight.iter().map(|w| w * w).sum::<f32>().sqrt();
        if heard_total <= 0.0 {
            return raw;
        }

        let mut best_example = vec![0.0f32; self.names.len()];
        let mut explained = vec![0.0f32; heard.len()];
        for e in &self.examples {
            explained.iter_mut().for_each(|b| *b = 0.0);
            let mut recall = 0.0;
            for &v in &e.words {
                let mut m = 0.0f32;
                for (i, b) in explained.iter_mut().enumerate() {
                    let s = sims[i * nv + v];
                    m = m.max(s);
                    *b = b.max(s);
                }
                recall += self.vocab[v].weight * m;
            }
            let recall = recall / e.total_weight;
            // A pair that made an example word explains the words it was made of.
            for (j, of) in parts.iter().enumerate() {
                let s = explained[content + j];
                for &i in of {
                    explained[i] = explained[i].max(s);
                }
            }
            let precision = explained
                .iter()
                .zip(&heard_weight)
                .map(|(s, w)| s * w)
                .sum::<f32>()
                / heard_total;
            let f = f_beta(precision, recall);
            best_example[e.intent] = best_example[e.intent].max(f);
        }
        for (intent, c) in self.centroids.iter().enumerate() {
            if c.norm <= 0.0 {
                continue;
            }
            // Soft cosine to the intent's centre: each heard word counts once, through the
            // centre word it best stands for.
            let dot: f32 = heard_weight
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let row = &sims[i * nv..(i + 1) * nv];
                    w * c.words.iter().map(|&(v, x)| row[v] * x).fold(0.0, f32::max)
                })
                .sum();
            let cosine = dot / (heard_norm * c.norm);
            raw[intent] = (1.0 - CENTROID_SHARE) * best_example[intent] + CENTROID_SHARE * cosine;
        }
        for (intent, stems) in &self.cues {
            if stems.iter().all(|s| heard.iter().any(|h| &h.stem == s)) {
                raw[*intent] = raw[*intent].max(CUE_RAW);
            }
        }
        raw
    }

    fn rank(&self, raw: &[f32]) -> Classification {
        let mut order: Vec<usize> = (0..raw.len()).filter(|&i| raw[i] > 0.0).collect();
        order.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]).then(a.cmp(&b)));
        let first = order.first().map_or(0.0, |&i| raw[i]);
        let second = order.get(1).map_or(0.0, |&i| raw[i]);
        // A near tie is a coin toss however well both matched: the runner-up's closeness
        // discounts every confidence alike, so the order stays the raw order.
        let margin = if first > 0.0 {
            ((first - second) / (MARGIN_FULL * first)).min(1.0)
        } else {
            0.0
        };
        let discount = 1.0 - MARGIN_WEIGHT * (1.0 - margin);
        let ranked: Vec<IntentScore> = order
            .iter()
            .take(MAX_RANKED)
            .map(|&i| IntentScore {
                name: self.names[i].clone(),
                confidence: calibrate(raw[i]) * discount,
            })
            .filter(|s| s.confidence >= MIN_RANKED)
            .collect();
        let best = ranked
            .first()
            .filter(|s| s.confidence >= ACCEPT_CONFIDENCE)
            .cloned();
        Classification { best, ranked }
    }

    fn intern(&mut self, w: Word, intents_using: &mut Vec<Vec<usize>>) -> usize {
        if let Some(&id) = self.by_stem.get(&w.stem) {
            return id;
        }
        let id = self.vocab.len();
        self.by_stem.insert(w.stem.clone(), id);
        self.vocab.push(VocabWord {
            word: w,
            weight: 0.0,
        });
        intents_using.push(Vec::new());
        id
    }
}

/// Share of the mean word weight an unknown utterance word carries.
const UNKNOWN_WEIGHT_SHARE: f32 = 0.6;
/// A word similarity from which the heard word is taken to be that vocabulary word.
const CONFIDENT_MATCH: f32 = 0.8;
/// Word similarities below this are noise and count as no match.
const MIN_SIMILARITY: f32 = 0.65;
/// Similarity of two words that sound the same but share no letters in place.
const SOUND_FLOOR: f32 = 0.5;
/// Share of an intent's raw score from its centre rather than its best example: the centre
/// knows which words the intent is about, an example only which words it happens to use.
const CENTROID_SHARE: f32 = 0.5;
/// Recall's weight over precision in an example's score: callers pad and ASR garbles,
/// so covering the example matters more than explaining every heard word.
const BETA2: f32 = 2.0;
/// Raw score a cue phrase guarantees its intent.
const CUE_RAW: f32 = 0.8;
/// Raw score that calibrates to a confidence of about one half.
const CALIBRATION_MID: f32 = 0.45;
/// How sharply confidence rises around [`CALIBRATION_MID`].
const CALIBRATION_SLOPE: f32 = 10.0;
/// Raw margin, as a share of the winner's score, at which the runner-up stops discounting.
const MARGIN_FULL: f32 = 0.35;
/// Largest discount a tie costs the winner's confidence.
const MARGIN_WEIGHT: f32 = 0.3;

fn f_beta(precision: f32, recall: f32) -> f32 {
    let d = BETA2 * precision + recall;
    if d <= 0.0 {
        0.0
    } else {
        (1.0 + BETA2) * precision * recall / d
    }
}

/// Maps a raw score to a confidence: a logistic centred on the score where garbled but
/// recognisable requests sit, rescaled so 0 and 1 stay 0 and 1.
fn calibrate(raw: f32) -> f32 {
    let sigmoid = |x: f32| 1.0 / (1.0 + (-CALIBRATION_SLOPE * (x - CALIBRATION_MID)).exp());
    let (lo, hi) = (sigmoid(0.0), sigmoid(1.0));
    ((sigmoid(raw) - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// How alike two words are, 0..=1, by spelling or by sound.
fn similarity(a: &Word, b: &Word) -> f32 {
    if a.stem == b.stem {
        return 1.0;
    }
    let (la, lb) = (a.stem.len(), b.stem.len());
    let short = la.min(lb);
    let long = la.max(lb);
    let same_sound = a
        .keys
        .iter()
        .any(|k| !k.is_empty() && b.keys.iter().any(|l| l == k));
    // Cheap bounds first: a gap in length or in letters used puts a floor under the edit
    // distance.
    let floor = if same_sound {
        (1.0 - (MIN_SIMILARITY - SOUND_FLOOR) / (1.0 - SOUND_FLOOR)) * long as f32
    } else {
        (1.0 - MIN_SIMILARITY) * long as f32
    } + 1e-3;
    if (long - short) as f32 > floor {
        return 0.0;
    }
    let (mut more, mut fewer) = (0u32, 0u32);
    for (x, y) in a.letters.iter().zip(&b.letters) {
        if x > y {
            more += u32::from(x - y);
        } else {
            fewer += u32::from(y - x);
        }
    }
    if more.max(fewer) as f32 > floor {
        return 0.0;
    }
    // Sound alone is weak evidence: Double Metaphone folds vowels, so "steal" and "still"
    // share a key. It lifts a spelling match ("lone" for "loan", "knew" for "new") instead.
    let spelling = normalized_levenshtein(&a.stem, &b.stem);
    let mut s = spelling;
    if same_sound {
        s = s.max(SOUND_FLOOR + (1.0 - SOUND_FLOOR) * spelling);
    }
    if s < MIN_SIMILARITY {
        0.0
    } else {
        s
    }
}

/// 1 minus the edit distance over the longer length. Words are short and nearly always
/// ASCII, so the common case runs on bytes without allocating.
fn normalized_levenshtein(a: &str, b: &str) -> f32 {
    const MAX: usize = 32;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if !(a.is_ascii() && b.is_ascii()) || a.len() >= MAX || b.len() >= MAX {
        return strsim::normalized_levenshtein(
            &String::from_utf8_lossy(a),
            &String::from_utf8_lossy(b),
        ) as f32;
    }
    let long = a.len().max(b.len());
    if long == 0 {
        return 1.0;
    }
    let mut row = [0usize; MAX];
    for (j, r) in row.iter_mut().enumerate().take(b.len() + 1) {
        *r = j;
    }
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    1.0 - row[b.len()] as f32 / long as f32
}

/// The content words of `text`, normalised.
fn words(text: &str) -> Vec<Word> {
    tokens(text)
        .into_iter()
        .filter(|t| !STOP_WORDS.contains(&t.as_str()))
        .map(|t| word(&t))
        .collect()
}

/// Adjacent pairs of `text`'s words run together, stop words included, each with the stems
/// of its halves: the recogniser splits words it does not know ("a count", "purse on").
fn joined_pairs(text: &str) -> Vec<(Word, [String; 2])> {
    let tokens = tokens(text);
    tokens
        .windows(2)
        .filter(|p| p.iter().all(|t| t.chars().all(|c| c.is_ascii_alphabetic())))
        .map(|p| {
            (
                word(&format!("{}{}", p[0], p[1])),
                [stem_of(&p[0]), stem_of(&p[1])],
            )
        })
        .collect()
}

/// `text` lowercased and split into words, contractions opened ("can't" -> "can not").
fn tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase().replace(['\u{2019}', '`'], "'");
    let mut out = Vec::new();
    let raws = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .take(MAX_TOKENS);
    for raw in raws {
        let raw = raw.trim_matches('\'');
        if raw.is_empty() {
            continue;
        }
        let (base, negated) = split_contraction(raw);
        if !base.is_empty() {
            out.push(base.to_string());
        }
        if negated {
            out.push("not".to_string());
        }
    }
    out
}

/// One token as the model compares it.
fn word(token: &str) -> Word {
    if token.chars().all(|c| c.is_ascii_digit()) {
        return Word::new("#".into(), Default::default());
    }
    // Sound keys come from ASCII letters only: the encoder is meant for them.
    let letters: String = token.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    if letters.is_empty() {
        return Word::new(token.to_string(), Default::default());
    }
    // Keys from the surface form: "stolen" must not sound like "still" the way its root
    // "steal" does.
    let r = DoubleMetaphone::new(None).double_metaphone(&letters);
    Word::new(stem_of(&letters), [r.primary(), r.alternate()])
}

/// The stem of an ASCII word, irregular forms folded first.
fn stem_of(letters: &str) -> String {
    let lemma = LEMMAS
        .iter()
        .find(|(from, _)| *from == letters)
        .map_or(letters, |(_, to)| to);
    stem(lemma)
}

/// Splits "can't" into ("can", true), "I'm" into ("i", false): the negation is kept as a
/// word, other clitics are dropped.
fn split_contraction(w: &str) -> (&str, bool) {
    match w {
        "can't" | "cannot" => return ("can", true),
        "won't" => return ("will", true),
        "shan't" => return ("shall", true),
        _ => {}
    }
    if let Some(base) = w.strip_suffix("n't") {
        return (base, true);
    }
    if let Some((base, _)) = w.split_once('\'') {
        return (base, false);
    }
    (w, false)
}

/// Strips common English inflections so "cards", "blocked" and "arriving" meet their roots.
fn stem(w: &str) -> String {
    let mut s = w.to_string();
    if s.len() <= 3 {
        return s;
    }
    if let Some(b) = s.strip_suffix("ies").filter(|b| b.len() >= 2) {
        s = format!("{b}y");
    } else if s.ends_with("sses") {
        s.truncate(s.len() - 2);
    } else if s.ends_with('s') && !(s.ends_with("ss") || s.ends_with("us") || s.ends_with("is")) {
        s.pop();
    }
    for suffix in ["ing", "ed"] {
        if s.len() >= suffix.len() + 3 && s.ends_with(suffix) {
            s.truncate(s.len() - suffix.len());
            let b = s.as_bytes();
            let n = b.len();
            if n >= 2 && b[n - 1] == b[n - 2] && !matches!(b[n - 1], b'l' | b's' | b'z') {
                s.pop();
            }
            break;
        }
    }
    if s.len() > 3 && s.ends_with('e') {
        s.pop();
    }
    s
}

/// Irregular forms callers use about cards and money, folded to one root.
const LEMMAS: &[(&str, &str)] = &[
    ("took", "take"),
    ("taken", "take"),
    ("stole", "steal"),
    ("stolen", "steal"),
    ("lost", "lose"),
    ("sent", "send"),
    ("paid", "pay"),
    ("came", "come"),
    ("gone", "go"),
    ("went", "go"),
    ("spent", "spend"),
    ("moving", "move"),
    ("money", "money"),
];

/// Function words that carry no intent. Negations are deliberately absent: "not arrived"
/// and "arrived" mean different things.
const STOP_WORDS: &[&str] = &[
    "a", "about", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being",
    "but", "by", "can", "could", "did", "do", "does", "er", "erm", "for", "from", "get", "got",
    "had", "has", "have", "hello", "hi", "how", "i", "if", "in", "into", "is", "it", "its", "just",
    "know", "let", "like", "may", "me", "might", "must", "my", "myself", "need", "of", "ok",
    "okay", "on", "or", "our", "please", "shall", "should", "so", "some", "someone", "somebody",
    "see", "tell", "than", "thank", "thanks", "that", "the", "then", "there", "these", "think",
    "this", "those", "to", "uh", "um", "us", "very", "want", "wanna", "was", "we", "were", "what",
    "when", "where", "which", "who", "why", "will", "with", "would", "yes", "yeah", "you", "your",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// The bank line's intents, as a dialplan would list them.
    fn bank() -> IntentModel {
        let intents: &[(&str, &[&str])] = &[
            (
                "block_card",
                &[
                    "block my card",
                    "please freeze my debit card",
                    "my card was stolen",
                    "someone stole my credit card",
                    "I lost my card",
                    "I can't find my card anywhere",
                    "cancel my card because it has been stolen",
                    "my purse was stolen with my cards in it",
                    "stop anyone using my card",
                ],
            ),
            (
                "balance",
                &[
                    "what is my balance",
                    "check my account balance",
                    "how much money do I have",
                    "how much is in my current account",
                    "tell me my balance",
                    "what's left in my savings",
                    "balance enquiry",
                    "how much can I spend",
                ],
            ),
            (
                "dispute_transaction",
                &[
                    "I don't recognise a payment on my account",
                    "there's a transaction I didn't make",
                    "money was taken out of my account without my permission",
                    "I want to dispute a charge",
                    "I've been charged twice",
                    "someone used my card without asking me",
                    "there's a payment I never authorised",
                    "fraudulent transaction on my account",
                ],
            ),
            (
                "payment",
                &[
                    "I want to make a payment",
                    "pay my credit card bill",
                    "pay off my loan",
                    "transfer money to someone",
                    "send money to my friend",
                    "set up a direct debit",
                    "pay a bill",
                    "I'd like to pay my mortgage",
                ],
            ),
            (
                "card_not_arrived",
                &[
                    "my card hasn't arrived",
                    "I'm still waiting for my new card",
                    "my replacement card never came",
                    "when will my card be delivered",
                    "I haven't received my card",
                    "the card you sent didn't come",
                    "where is my new debit card",
                ],
            ),
            (
                "change_address",
                &[
                    "I've moved house",
                    "update my address",
                    "change my address please",
                    "I have a new address",
                    "I need to change my postcode",
                    "my address is wrong",
                    "I'm moving to a new home",
                ],
            ),
            (
                "speak_to_agent",
                &[
                    "can I speak to a person",
                    "let me talk to a human",
                    "put me through to an agent",
                    "I want a real person",
                    "operator please",
                    "connect me to someone",
                    "speak to customer service",
                    "transfer me to a representative",
                ],
            ),
            (
                "open_account",
                &[
                    "I'd like to open an account",
                    "open a new savings account",
                    "how do I become a customer",
                    "set up a new current account",
                    "I want to open a joint account",
                    "sign up for an account",
                    "create an account for my son",
                ],
            ),
            (
                "statement_question",
                &[
                    "I have a question about my statement",
                    "something looks wrong on my statement",
                    "send me a copy of my statement",
                    "I didn't get my monthly statement",
                    "can I get a paper statement",
                    "my bank statement is incorrect",
                    "explain my statement",
                ],
            ),
            (
                "change_pin",
                &[
                    "I forgot my pin",
                    "reset my pin number",
                    "change my pin",
                    "my pin is locked",
                    "I keep entering the wrong pin",
                    "unlock my pin",
                ],
            ),
            (
                "branch_hours",
                &[
                    "what time does the branch open",
                    "when are you open",
                    "opening hours",
                    "where is my nearest branch",
                    "is the branch open on saturday",
                    "find a branch near me",
                ],
            ),
        ];
        let owned: Vec<(String, Vec<String>)> = intents
            .iter()
            .map(|(n, ex)| (n.to_string(), ex.iter().map(|e| e.to_string()).collect()))
            .collect();
        IntentModel::new(&owned).with_cues("speak_to_agent", &["agent", "human", "operator"])
    }

    /// Utterances none of which is an example: references, what tiny.en made of them over
    /// G.711, and paraphrases. `None` means out of scope.
    const HEARD: &[(&str, Option<&str>)] = &[
        // Recognised as said.
        (
            "I would like to check the balance of my savings account.",
            Some("balance"),
        ),
        (
            "Someone took money from my account without asking.",
            Some("dispute_transaction"),
        ),
        (
            "I lost my wallet and my debit card was inside.",
            Some("block_card"),
        ),
        (
            "I think there is a mistake on my statement.",
            Some("statement_question"),
        ),
        (
            "Please block my credit card, it was stolen yesterday.",
            Some("block_card"),
        ),
        ("My new card has not arrived yet.", Some("card_not_arrived")),
        // The same, as tiny.en heard them.
        (
            "I would like to check the map and some of my savings account.",
            Some("balance"),
        ),
        (
            "I'm one talk money from my account without asking.",
            Some("dispute_transaction"),
        ),
        (
            "I lost my wallet and my nervous card when inside.",
            Some("block_card"),
        ),
        (
            "I think, and I remember that I could take on my statement.",
            Some("statement_question"),
        ),
        (
            "Please like my credit card. It was stolen yesterday.",
            Some("block_card"),
        ),
        (
            "My new cards have not arrived yet.",
            Some("card_not_arrived"),
        ),
        // More garbles of the kind tiny.en makes.
        (
            "unlock my credit card, it once told them",
            Some("block_card"),
        ),
        ("how much money is in my current a count", Some("balance")),
        ("I want to speak to a real purse on", Some("speak_to_agent")),
        ("I've moved to a new adress", Some("change_address")),
        ("I need to pay my credit card bil", Some("payment")),
        (
            "there is a trans action I did not make",
            Some("dispute_transaction"),
        ),
        ("I forget my pin numb her", Some("change_pin")),
        // Paraphrases.
        ("my card has been stolen", Some("block_card")),
        (
            "somebody nicked my purse with all my cards",
            Some("block_card"),
        ),
        ("can you cancel my debit card", Some("block_card")),
        ("what's my current balance", Some("balance")),
        ("how much have I got left in my account", Some("balance")),
        (
            "I was charged for something I didn't buy",
            Some("dispute_transaction"),
        ),
        (
            "I don't recognise this transaction",
            Some("dispute_transaction"),
        ),
        ("I'd like to pay my gas bill", Some("payment")),
        ("can I make a payment to my loan", Some("payment")),
        (
            "I'm still waiting for my replacement card",
            Some("card_not_arrived"),
        ),
        (
            "you sent me a new card weeks ago and it never came",
            Some("card_not_arrived"),
        ),
        ("I need to update my home address", Some("change_address")),
        ("I have moved house recently", Some("change_address")),
        ("let me speak to an agent", Some("speak_to_agent")),
        ("can I talk to a real person please", Some("speak_to_agent")),
        ("I'd like to open a savings account", Some("open_account")),
        ("how do I open a new account with you", Some("open_account")),
        (
            "can you send me a paper copy of my statement",
            Some("statement_question"),
        ),
        ("my statement looks wrong", Some("statement_question")),
        ("I've forgotten my pin number", Some("change_pin")),
        ("what time do you open on saturday", Some("branch_hours")),
        ("where is the nearest branch", Some("branch_hours")),
        // Out of scope.
        ("what's the weather like", None),
        ("my dog is called Rex", None),
        ("I'd like to order a large pizza", None),
        ("who won the football last night", None),
        ("tell me a joke", None),
        ("can you tell me the time", None),
        ("I'm looking for a good restaurant nearby", None),
        ("play some music", None),
        ("my sister lives in Spain", None),
        ("I love walking by the sea", None),
        ("the quick brown fox jumps over the lazy dog", None),
        ("um", None),
        ("", None),
        // Added after the weights were tuned on the lines above, and not tuned on since.
        ("I need to freeze my card right now", Some("block_card")),
        ("my wallet got stolen on the bus", Some("block_card")),
        ("how much is in my savings", Some("balance")),
        (
            "can you tell me how much money I have left",
            Some("balance"),
        ),
        (
            "there's a charge on my card I don't recognise",
            Some("dispute_transaction"),
        ),
        ("I want to pay off my credit card", Some("payment")),
        (
            "my new debit card still hasn't come",
            Some("card_not_arrived"),
        ),
        ("I've changed address", Some("change_address")),
        ("put me through to a human being", Some("speak_to_agent")),
        ("I'd like to become a customer", Some("open_account")),
        ("why is my statement wrong", Some("statement_question")),
        ("I can't remember my pin", Some("change_pin")),
        ("are you open on sundays", Some("branch_hours")),
        ("I want to set up a new account", Some("open_account")),
        ("I need to freeze my cart", Some("block_card")),
        ("put me through to a human bean", Some("speak_to_agent")),
        ("what's my balanse", Some("balance")),
        ("can you book me a taxi", None),
        ("I'm going on holiday next week", None),
        ("what is the capital of France", None),
    ];

    #[test]
    fn bank_utterances_map_to_their_intents() {
        let model = bank();
        let mut right = 0;
        let mut wrong = Vec::new();
        let mut in_scope = 0;
        for (text, want) in HEARD {
            let c = model.classify(text);
            let got = c.best.as_ref().map(|b| b.name.as_str());
            if want.is_some() {
                in_scope += 1;
            }
            if got == *want {
                if want.is_some() {
                    right += 1;
                }
            } else {
                wrong.push(format!("{text:?}: want {want:?}, got {:?}", c.ranked));
            }
        }
        let accuracy = right as f32 / in_scope as f32;
        assert!(accuracy >= 0.9, "accuracy {accuracy}: {wrong:#?}");
        // Out of scope must never be accepted, whatever the in-scope accuracy.
        let false_accepts: Vec<_> = wrong.iter().filter(|w| w.contains("want None")).collect();
        assert!(false_accepts.is_empty(), "{false_accepts:#?}");
    }

    #[test]
    fn the_six_tiny_en_garbles_still_map_with_usable_confidence() {
        let model = bank();
        for (text, want) in &HEARD[6..12] {
            let c = model.classify(text);
            let best = c.best.unwrap_or_else(|| panic!("{text:?}: {:?}", c.ranked));
            assert_eq!(Some(best.name.as_str()), *want, "{text:?}");
            assert!(best.confidence >= ACCEPT_CONFIDENCE, "{text:?}: {best:?}");
        }
    }

    #[test]
    fn a_clear_paraphrase_scores_high_and_beats_the_runner_up() {
        let model = bank();
        for text in [
            "my credit card was stolen",
            "what is my account balance",
            "I want to speak to a person",
        ] {
            let c = model.classify(text);
            let best = c.best.clone().expect(text);
            assert!(best.confidence > 0.7, "{text:?}: {:?}", c.ranked);
            let second = c.ranked.get(1).map_or(0.0, |s| s.confidence);
            assert!(best.confidence - second > 0.2, "{text:?}: {:?}", c.ranked);
        }
    }

    #[test]
    fn out_of_scope_scores_low() {
        let model = bank();
        for (text, _) in HEARD.iter().filter(|(_, w)| w.is_none()) {
            let c = model.classify(text);
            let top = c.ranked.first().map_or(0.0, |s| s.confidence);
            assert!(top < ACCEPT_CONFIDENCE, "{text:?}: {:?}", c.ranked);
        }
    }

    #[test]
    fn a_cue_names_its_intent_outright() {
        let c = bank().classify("agent");
        assert_eq!(c.best.map(|b| b.name), Some("speak_to_agent".into()));
    }

    #[test]
    fn the_context_intent_carries_the_runners_up() {
        let c = bank().classify("my card was stolen and I can't find it");
        let intent = Intent::from(&c);
        assert_eq!(intent.name.as_deref(), Some("block_card"));
        assert_eq!(intent.alternatives.len(), c.ranked.len() - 1);
        let none = Intent::from(&Classification::default());
        assert_eq!(none.name, None);
    }

    #[test]
    fn odd_input_does_not_panic() {
        let model = bank();
        let long = "card ".repeat(2000);
        for text in [
            "",
            "   ",
            "'''",
            "ÄÖÜ ß 日本語 🙂",
            "n't 's",
            "1234 5678",
            long.as_str(),
        ] {
            let c = model.classify(text);
            assert!(c.ranked.iter().all(|s| (0.0..=1.0).contains(&s.confidence)));
        }
        assert_eq!(
            IntentModel::new(&[]).classify("block my card"),
            Classification::default()
        );
    }

    #[test]
    fn classify_takes_well_under_a_millisecond() {
        let model = bank();
        let texts: Vec<&str> = HEARD.iter().map(|(t, _)| *t).collect();
        let start = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            for t in &texts {
                std::hint::black_box(model.classify(t));
            }
        }
        let each = start.elapsed() / (rounds * texts.len()) as u32;
        // An optimised build runs near 50 µs; leave room for slow, busy machines.
        let limit = if cfg!(debug_assertions) { 5000 } else { 500 };
        assert!(each.as_micros() < limit, "{each:?} per utterance");
    }

    #[test]
    fn stems_meet_their_roots() {
        for (a, b) in [
            ("cards", "card"),
            ("blocked", "block"),
            ("arrived", "arrive"),
            ("arriving", "arrive"),
            ("addresses", "address"),
            ("stopped", "stop"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
    }

    /// Prints every utterance's ranking; run with `--ignored --nocapture` when tuning.
    #[test]
    #[ignore]
    fn report() {
        let model = bank();
        for (text, want) in HEARD {
            let c = model.classify(text);
            let top: Vec<String> = c
                .ranked
                .iter()
                .take(3)
                .map(|s| format!("{} {:.2}", s.name, s.confidence))
                .collect();
            let ok = c.best.as_ref().map(|b| b.name.as_str()) == *want;
            let mut raw = model.raw_scores(text);
            raw.sort_by(|a, b| b.total_cmp(a));
            println!(
                "{} {text:?} -> {} (raw {:.2} {:.2})",
                if ok { "ok " } else { "BAD" },
                top.join(", "),
                raw.first().unwrap_or(&0.0),
                raw.get(1).unwrap_or(&0.0)
            );
        }
        let rounds = 100;
        let start = Instant::now();
        for _ in 0..rounds {
            for (text, _) in HEARD {
                std::hint::black_box(model.classify(text));
            }
        }
        println!(
            "{:?} per utterance",
            start.elapsed() / (rounds * HEARD.len()) as u32
        );
    }
}
