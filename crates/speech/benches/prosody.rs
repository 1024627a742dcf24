//! CPU cost of reading a caller's mood from their voice, per call: the listener's per-frame
//! work on 20 ms frames of the bank sentences spoken by espeak-ng (voice activity detection
//! alone, then with the prosody meter's pitch tracker and level measure on every speech
//! frame, and the vibe tracker once per utterance), as a share of one core for one call
//! whose caller talks with a second's pause between sentences. Transcription is not included: it runs on the worker pool and is
//! measured by the `stt` bench.
//!
//! `cargo bench -p baton-speech --bench prosody` (passes over the audio: `BENCH_PROSODY_PASSES`,
//! default 200). Needs espeak-ng and sox.

#[path = "../tests/common/mod.rs"]
mod common;

use baton_speech::prosody::ProsodyMeter;
use baton_speech::vad::{Vad, VadEvent};
use baton_speech::vibe::VibeTracker;
use common::{scratch, speak, BANK_SENTENCES, EN_US};
use std::hint::black_box;
use std::time::Duration;

/// One frame: 20 ms at 16 kHz.
const FRAME: usize = 320;

/// Runs the listener's per-frame work over `audio`; returns utterances seen.
fn listen(audio: &[i16], with_prosody: bool) -> usize {
    let mut vad = Vad::default();
    let mut meter = ProsodyMeter::new();
    let mut mood = VibeTracker::new();
    let mut utterances = 0;
    for frame in audio.chunks_exact(FRAME) {
        let event = vad.push(frame);
        if with_prosody && vad.in_speech() {
            meter.push(frame);
        }
        if let Some(VadEvent::Utterance { .. }) = event {
            utterances += 1;
            if with_prosody {
                let prosody = meter.take();
                black_box(mood.update(&prosody, "please block my card"));
            }
        }
    }
    utterances
}

/// Thread CPU time, so that other work on the machine does not count.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let passes: usize = std::env::var("BENCH_PROSODY_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = scratch("prosody");
    let mut audio = Vec::new();
    for (i, s) in BANK_SENTENCES.iter().enumerate() {
        audio.extend(speak(&dir, &i.to_string(), EN_US, s));
        audio.resize(audio.len() + 16_000, 0); // a second between sentences
    }
    std::fs::remove_dir_all(&dir).ok();
    let audio_secs = audio.len() as f64 / 16_000.0;
    let speech_utterances = listen(&audio, false);
    println!(
        "prosody bench: {audio_secs:.1} s of audio, {speech_utterances} utterances, {passes} passes"
    );

    // Interleaved, so that both see the same machine state.
    let (mut vad_only, mut with_prosody) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..passes {
        let t = thread_cpu();
        black_box(listen(black_box(&audio), false));
        vad_only += thread_cpu() - t;
        let t = thread_cpu();
        black_box(listen(black_box(&audio), true));
        with_prosody += thread_cpu() - t;
    }
    let share = |d: Duration| 100.0 * d.as_secs_f64() / (passes as f64 * audio_secs);
    let added = share(with_prosody.saturating_sub(vad_only));
    println!("| work per call | CPU, % of one core |");
    println!("|---|---:|");
    println!("| voice activity detection | {:.3} % |", share(vad_only));
    println!(
        "| voice activity detection + prosody + vibe | {:.3} % |",
        share(with_prosody)
    );
    println!("| prosody and vibe add | {added:.3} % (goal < 2 %) |");
}
