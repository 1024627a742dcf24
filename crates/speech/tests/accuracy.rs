//! Word error rate of the installed models (tiny.en, the default, and base) on a set of
//! contact-centre sentences spoken by espeak-ng, fed at 16 kHz directly and through a G.711
//! µ-law leg exactly as baton's media path carries it (16 kHz → 8 kHz µ-law → 16 kHz), with
//! the dialog's hints as context.

mod common;

use baton_speech::stt::{Job, JobKind, SpeechWorkers};
use baton_speech::wer::{word_errors, words};
use common::{
    base_model_path, load, model_path, scratch, speak, through_g711, BANK_SENTENCES, EN_US,
};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// The bank dialog's hints: phrases its callers are expected to say.
const HINTS: &str = "Please block my card. My card was stolen. Check my balance.";

/// Word errors and words over the whole set.
fn score(workers: &SpeechWorkers, clips: &[Vec<i16>], hints: &str, label: &str) -> (usize, usize) {
    let (mut errors, mut total) = (0, 0);
    let mut ran = Vec::new();
    for (clip, reference) in clips.iter().zip(BANK_SENTENCES) {
        let (tx, rx) = mpsc::channel();
        workers.submit(Job {
            stream: 1,
            kind: JobKind::Final,
            samples: clip.clone(),
            prompt: hints.to_owned(),
            reply: Box::new(move |r| tx.send(r).unwrap()),
        });
        let done = rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
        ran.push(done.ran);
        let heard = done.transcript.text;
        let e = word_errors(reference, &heard);
        println!(
            "{label}: {e} errors in {:?}: {reference:?} -> {heard:?}",
            done.ran
        );
        errors += e;
        total += words(reference).len();
    }
    ran.sort();
    println!(
        "{label}: word error rate {:.1} % ({errors} of {total} words); transcription took {:?} median, {:?} longest",
        100.0 * errors as f64 / total as f64,
        ran[ran.len() / 2],
        ran[ran.len() - 1]
    );
    (errors, total)
}

/// Word error rates of the model at `path`: 16 kHz with hints, G.711 with hints, G.711
/// without.
fn measure(path: &Path, name: &str) -> (f64, f64, f64) {
    let dir = scratch(&format!("wer-{name}"));
    let wide: Vec<Vec<i16>> = BANK_SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| speak(&dir, &i.to_string(), EN_US, s))
        .collect();
    let narrow: Vec<Vec<i16>> = wide.iter().map(|c| through_g711(c)).collect();
    let workers = SpeechWorkers::start(load(path), 1, 16, 4).unwrap();
    let rate = |(e, n): (usize, usize)| e as f64 / n as f64;
    let direct = rate(score(&workers, &wide, HINTS, &format!("{name} 16 kHz")));
    let g711 = rate(score(&workers, &narrow, HINTS, &format!("{name} G.711")));
    let plain = rate(score(
        &workers,
        &narrow,
        "",
        &format!("{name} G.711 without hints"),
    ));
    std::fs::remove_dir_all(&dir).ok();
    println!("{name}: WER 16 kHz {direct:.3}, G.711 {g711:.3}, G.711 without hints {plain:.3}");
    (direct, g711, plain)
}

#[test]
fn tiny_en_word_error_rate_on_the_bank_set() {
    let (direct, g711, _) = measure(&model_path(), "tiny.en");
    // Measured on this set: 2.8 % at 16 kHz, 16.7–19.4 % through G.711 (BENCHMARKS.md);
    // tiny.en does not reach the 15 % goal on G.711 (base does, below). The bounds catch a
    // regression.
    assert!(direct <= 0.06, "16 kHz word error rate {direct:.3}");
    assert!(g711 <= 0.22, "G.711 word error rate {g711:.3}");
}

#[test]
fn base_word_error_rate_on_the_bank_set_meets_the_goal() {
    let (direct, g711, _) = measure(&base_model_path(), "base");
    // Measured on this set: 2.8 % at 16 kHz, 8.3 % through G.711 with hints.
    assert!(direct <= 0.06, "16 kHz word error rate {direct:.3}");
    assert!(g711 <= 0.15, "G.711 word error rate {g711:.3}, goal 15 %");
}
