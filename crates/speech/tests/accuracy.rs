//! Word error rate of the installed model on a set of contact-centre sentences spoken by
//! espeak-ng, fed at 16 kHz directly and through a G.711 µ-law leg exactly as baton's media
//! path carries it (16 kHz → 8 kHz µ-law → 16 kHz), with the dialog's hints as context.

mod common;

use baton_media::{AudioFrame, CodecKind, Decoder, Encoder, FRAME_SAMPLES};
use baton_speech::stt::{Job, JobKind, SpeechWorkers};
use baton_speech::wer::{word_errors, words};
use common::{model, scratch, speak, EN_US};
use std::sync::mpsc;
use std::time::Duration;

/// What callers of a bank line say.
const SENTENCES: [&str; 12] = [
    "Please block my credit card, it was stolen yesterday.",
    "I would like to check the balance of my savings account.",
    "I need to make a payment on my loan.",
    "Can you tell me when my salary was paid in?",
    "I lost my wallet and my debit card was inside.",
    "Someone took money from my account without asking.",
    "I want to speak to a human agent, please.",
    "My new card has not arrived yet.",
    "How do I change the address on my account?",
    "I think there is a mistake on my statement.",
    "Please send me a text message with the details.",
    "I want to open a new savings account.",
];

/// The bank dialog's hints: phrases its callers are expected to say.
const HINTS: &str = "Please block my card. My card was stolen. Check my balance.";

/// The audio as it reaches speech-to-text after a G.711 µ-law leg in baton.
fn through_g711(samples: &[i16]) -> Vec<i16> {
    let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
    let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
    let mut payload = Vec::new();
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(FRAME_SAMPLES) {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        enc.encode(&AudioFrame::new(frame), &mut payload).unwrap();
        out.extend_from_slice(&dec.decode(&payload).unwrap());
    }
    out
}

/// Word errors and words over the whole set.
fn score(workers: &SpeechWorkers, clips: &[Vec<i16>], hints: &str, label: &str) -> (usize, usize) {
    let (mut errors, mut total) = (0, 0);
    let mut ran = Vec::new();
    for (clip, reference) in clips.iter().zip(SENTENCES) {
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
        println!("{label}: {e} errors: {reference:?} -> {heard:?}");
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

#[test]
fn word_error_rate_on_the_bank_set() {
    let dir = scratch("wer");
    let wide: Vec<Vec<i16>> = SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| speak(&dir, &i.to_string(), EN_US, s))
        .collect();
    let narrow: Vec<Vec<i16>> = wide.iter().map(|c| through_g711(c)).collect();
    let workers = SpeechWorkers::start(model(), 1, 16, 4).unwrap();
    let rate = |(e, n): (usize, usize)| e as f64 / n as f64;
    let direct = rate(score(&workers, &wide, HINTS, "16 kHz"));
    let g711 = rate(score(&workers, &narrow, HINTS, "G.711"));
    let g711_plain = rate(score(&workers, &narrow, "", "G.711 without hints"));
    std::fs::remove_dir_all(&dir).ok();
    println!("WER 16 kHz {direct:.3}, G.711 {g711:.3}, G.711 without hints {g711_plain:.3}");
    // Measured on this set: 2.8 % at 16 kHz, 16.7 % through G.711 (BENCHMARKS.md). The
    // bounds catch a regression; the G.711 goal of 15 % is not reached yet.
    assert!(direct <= 0.06, "16 kHz word error rate {direct:.3}");
    assert!(g711 <= 0.20, "G.711 word error rate {g711:.3}");
}
