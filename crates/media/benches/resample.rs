//! Cost of the per-frame 8 kHz ↔ 16 kHz conversion of a G.711 leg: baton's half-band
//! [`RateConverter`] beside rubato's synchronous FFT resampler (`FftFixedInOut`), which it
//! replaced, on the same frames in the same run. One round = one 20 ms frame up and one down,
//! what a G.711 call does every 20 ms.
//!
//! `cargo bench -p baton-media --bench resample` (rounds: `BENCH_RESAMPLE_ROUNDS`).

use baton_media::RateConverter;
use rubato::{FftFixedInOut, Resampler};
use std::hint::black_box;
use std::time::{Duration, Instant};

const NARROW: usize = 160;
const WIDE: usize = 320;

/// Rubato wrapped as the media path used it: i16 in and out, one 20 ms chunk per call.
struct Fft {
    inner: FftFixedInOut<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl Fft {
    fn new(from: usize, to: usize, chunk: usize) -> Self {
        let inner = FftFixedInOut::<f32>::new(from, to, chunk, 1).expect("rubato setup");
        let input = inner.input_buffer_allocate(true);
        let output = inner.output_buffer_allocate(true);
        Self {
            inner,
            input,
            output,
        }
    }

    fn process(&mut self, input: &[i16], output: &mut [i16]) {
        for (d, &s) in self.input[0].iter_mut().zip(input) {
            *d = f32::from(s) / 32_768.0;
        }
        let (_, n) = self
            .inner
            .process_into_buffer(&self.input, &mut self.output, None)
            .expect("rubato process");
        for (d, &s) in output.iter_mut().zip(&self.output[0][..n]) {
            *d = (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        }
    }
}

fn speech_like(len: usize, seed: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = (n + seed) as f64 / 8_000.0;
            (6_000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 2_000.0 * (2.0 * std::f64::consts::PI * 1_330.0 * t).sin()) as i16
        })
        .collect()
}

fn time(rounds: usize, mut round: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    for i in 0..rounds {
        round(i);
    }
    start.elapsed()
}

fn main() {
    let rounds: usize = std::env::var("BENCH_RESAMPLE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let frames: Vec<Vec<i16>> = (0..50).map(|k| speech_like(NARROW, k * NARROW)).collect();
    let mut wide = [0i16; WIDE];
    let mut narrow = [0i16; NARROW];

    let (mut up, mut down) = (RateConverter::upsampler(), RateConverter::downsampler());
    let (mut fft_up, mut fft_down) = (
        Fft::new(8_000, 16_000, NARROW),
        Fft::new(16_000, 8_000, WIDE),
    );
    // Interleaved halves, so that a burst of other work on the machine hits both alike.
    let (mut ours, mut rubato) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..4 {
        ours += time(rounds / 4, |i| {
            up.process(&frames[i % frames.len()], &mut wide);
            down.process(black_box(&wide), &mut narrow);
            black_box(&narrow);
        });
        rubato += time(rounds / 4, |i| {
            fft_up.process(&frames[i % frames.len()], &mut wide);
            fft_down.process(black_box(&wide), &mut narrow);
            black_box(&narrow);
        });
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / rounds as f64;
    println!("8 kHz -> 16 kHz -> 8 kHz, one 20 ms frame each way, {rounds} rounds");
    println!("| resampler | ns per round | rounds per second |");
    println!("|---|---:|---:|");
    for (name, d) in [
        ("baton half-band FIR", ours),
        ("rubato FftFixedInOut", rubato),
    ] {
        println!("| {name} | {:.0} | {:.0} |", per(d), 1e9 / per(d));
    }
    println!("ratio rubato / half-band: {:.1}", per(rubato) / per(ours));
}
