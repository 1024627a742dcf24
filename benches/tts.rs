//! Text-to-speech render time: ten bank-style sentences through baton's `Tts` with the
//! default settings (espeak-ng, `en-gb`, 160 words a minute), cold (one espeak-ng process
//! per sentence, decoded and resampled to 16 kHz) and from the cache, as p50/p95, with the
//! real-time factor of cold renders (render time over the length of the speech).
//!
//! `cargo bench --bench tts`; `BENCH_TTS_ROUNDS` (default 20) sets how many times each
//! sentence is rendered cold, each round with a fresh engine and so an empty cache.

use baton::config::TtsConfig;
use baton::metrics::Metrics;
use baton::tts::{Source, Tts};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a bank's bot says.
const SENTENCES: [&str; 10] = [
    "Your balance is four hundred and twelve pounds.",
    "I have blocked your card. A new one will arrive within five working days.",
    "Please tell me the last four digits of your card.",
    "Your last payment of thirty pounds went to the electricity company on Monday.",
    "I am bringing in a fraud specialist who can already see everything we have discussed.",
    "Can you confirm your date of birth, please?",
    "Your salary was paid in on the twenty-eighth.",
    "I have sent a text message with a link to the dispute form.",
    "We will call you back within forty-eight hours.",
    "Is there anything else I can help you with today?",
];

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("BENCH_TTS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let config = TtsConfig::default();
    println!(
        "tts benchmark: {} sentences x {rounds} rounds, {} voice {} at {} words/min",
        SENTENCES.len(),
        config.command.display(),
        config.voice,
        config.speed
    );

    let mut cold = Vec::new();
    let mut cached = Vec::new();
    let mut factors = Vec::new();
    let mut audio_secs = 0.0;
    runtime.block_on(async {
        for _ in 0..rounds {
            let tts = Tts::new(
                config.clone(),
                vec![0i16; 320].into(),
                Arc::new(Metrics::default()),
            );
            for text in SENTENCES {
                let started = Instant::now();
                let r = tts.render(text).await;
                let took = started.elapsed();
                assert_eq!(
                    r.source,
                    Source::Spoken,
                    "espeak-ng must be installed (scripts/install-deps.sh)"
                );
                let secs = r.audio.len() as f64 / 16_000.0;
                audio_secs += secs;
                cold.push(took);
                factors.push(took.as_secs_f64() / secs);

                let started = Instant::now();
                let again = tts.render(text).await;
                cached.push(started.elapsed());
                assert_eq!(again.source, Source::Cached);
            }
        }
    });
    let n = cold.len();
    println!(
        "cold (espeak-ng process): p50 {:.1} ms, p95 {:.1} ms over {n} renders of {:.2} s of speech on average",
        ms(percentile(&mut cold, 0.5)),
        ms(percentile(&mut cold, 0.95)),
        audio_secs / n as f64
    );
    println!(
        "cached: p50 {:.2} µs, p95 {:.2} µs",
        us(percentile(&mut cached, 0.5)),
        us(percentile(&mut cached, 0.95))
    );
    factors.sort_by(f64::total_cmp);
    println!(
        "real-time factor (cold render time / speech length): p50 {:.4}, p95 {:.4}",
        factors[n / 2],
        factors[((n as f64 * 0.95) as usize).min(n - 1)]
    );
}

/// The `q` quantile (0..=1) of `samples`, nearest rank.
fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
