//! Pure tones as test audio: one side of a call plays a tone, and the other side's audio is
//! searched for it, so that whose audio reached whom is told by pitch alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A WAV of `secs` of a `hz` tone at a third of full scale, at `rate` samples a second.
pub fn wav(path: &Path, hz: f64, rate: u32, secs: f64) -> PathBuf {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).expect("tone wav");
    let rate = f64::from(rate);
    for i in 0..(secs * rate) as usize {
        let s = (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin() * 11_000.0;
        wav.write_sample(s as i16).expect("sample");
    }
    wav.finalize().expect("tone wav");
    path.to_owned()
}

/// The frequency of a stretch of audio, from its zero crossings.
pub fn pitch(samples: &[f64], rate: f64) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / rate)
}

pub fn rms(samples: &[f64]) -> f64 {
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// The 100 ms windows of -1..1 samples at `rate`: each one's start (seconds), level and
/// pitch.
pub fn windows_of(samples: &[f64], rate: f64) -> Vec<(f64, f64, f64)> {
    let n = (rate / 10.0) as usize;
    samples
        .chunks(n)
        .enumerate()
        .map(|(i, w)| (i as f64 / 10.0, rms(w), pitch(w, rate)))
        .collect()
}

/// The 100 ms windows of a WAV file.
pub fn windows(path: &Path) -> Vec<(f64, f64, f64)> {
    let mut reader = hound::WavReader::open(path).expect("recording");
    let rate = f64::from(reader.spec().sample_rate);
    let samples: Vec<f64> = reader
        .samples::<i16>()
        .map(|s| f64::from(s.unwrap_or(0)) / 32768.0)
        .collect();
    windows_of(&samples, rate)
}

/// Level (RMS, full scale 1) above which a window counts as loud.
pub const LOUD: f64 = 0.05;

/// Whether a window holds the tone at `hz` (within 4%), loud enough to be heard.
pub fn is_tone(level: f64, hz_heard: f64, hz: f64) -> bool {
    level > LOUD && is_pitch(hz_heard, hz)
}

fn is_pitch(hz_heard: f64, hz: f64) -> bool {
    (hz_heard - hz).abs() < hz * 0.04
}

/// When the first second (ten windows in a row) of the `hz` tone above `min_level` starts,
/// if it does.
pub fn first_second_of(windows: &[(f64, f64, f64)], hz: f64, min_level: f64) -> Option<f64> {
    windows
        .windows(10)
        .find(|run| {
            run.iter()
                .all(|(_, l, h)| *l > min_level && is_pitch(*h, hz))
        })
        .map(|run| run[0].0)
}

/// A caller's audio for SIPp (8 kHz µ-law): `talk`, `pause_secs` of silence, then `tone`;
/// written to `out`.
pub fn after_pause(talk: &Path, pause_secs: f64, tone: &Path, out: &Path) -> PathBuf {
    let pause = out.with_extension("pause.wav");
    super::run_tool(
        Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-e", "u-law"])
            .arg(&pause)
            .args(["trim", "0", &format!("{pause_secs:.3}")]),
        Duration::from_secs(30),
    );
    super::run_tool(
        Command::new("sox")
            .arg(talk)
            .arg(&pause)
            .arg(tone)
            .args(["-r", "8000", "-c", "1", "-e", "u-law"])
            .arg(out),
        Duration::from_secs(30),
    );
    out.to_owned()
}
