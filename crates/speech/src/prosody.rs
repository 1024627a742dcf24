//! How an utterance was said, apart from its words: pitch and how much it moved, loudness,
//! how fast, and how much of it was pause. Fed frame by frame while the caller speaks; read
//! once per utterance.

use crate::pitch::PitchTracker;
use crate::vad::level_db;

/// Frames quieter than the utterance's loud frames by this much count as pause, in dB.
const PAUSE_BELOW_PEAK_DB: f32 = 25.0;

/// The prosodic features of one utterance.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prosody {
    /// Median pitch of the voiced frames, Hz; 0 when nothing was voiced.
    pub pitch_hz: f32,
    /// Spread of the pitch, in semitones (standard deviation); how lively the voice is.
    pub pitch_spread_st: f32,
    /// Mean level of the non-pause frames, dBFS.
    pub energy_db: f32,
    /// Syllable-like energy peaks per second of speech: how fast the caller talks.
    pub rate_per_sec: f32,
    /// Share of the utterance that was pause, 0..=1.
    pub pause_ratio: f32,
    /// Seconds of audio.
    pub secs: f32,
}

/// Collects one utterance's frames.
#[derive(Debug, Default)]
pub struct ProsodyMeter {
    pitch: PitchTracker,
    f0: Vec<f32>,
    levels: Vec<f32>,
}

impl ProsodyMeter {
    /// A meter with nothing measured.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one 20 ms frame of the utterance.
    pub fn push(&mut self, frame: &[i16]) {
        self.levels.push(level_db(frame));
        if let Some(f0) = self.pitch.push(frame) {
            self.f0.push(f0);
        }
    }

    /// The features of what was pushed since the last call, and a fresh start.
    pub fn take(&mut self) -> Prosody {
        let levels = std::mem::take(&mut self.levels);
        let mut f0 = std::mem::take(&mut self.f0);
        if levels.is_empty() {
            return Prosody::default();
        }
        let peak = levels.iter().copied().fold(f32::MIN, f32::max);
        let spoken: Vec<f32> = levels
            .iter()
            .copied()
            .filter(|l| *l > peak - PAUSE_BELOW_PEAK_DB)
            .collect();
        let secs = levels.len() as f32 * 0.02;
        let energy_db = spoken.iter().sum::<f32>() / spoken.len().max(1) as f32;
        let pause_ratio = 1.0 - spoken.len() as f32 / levels.len() as f32;
        let (pitch_hz, pitch_spread_st) = if f0.is_empty() {
            (0.0, 0.0)
        } else {
            f0.sort_by(f32::total_cmp);
            let median = f0[f0.len() / 2];
            let st: Vec<f32> = f0.iter().map(|f| 12.0 * (f / median).log2()).collect();
            let mean = st.iter().sum::<f32>() / st.len() as f32;
            let var = st.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / st.len() as f32;
            (median, var.sqrt())
        };
        Prosody {
            pitch_hz,
            pitch_spread_st,
            energy_db,
            rate_per_sec: syllable_peaks(&levels) as f32 / (secs * (1.0 - pause_ratio)).max(0.2),
            pause_ratio,
            secs,
        }
    }
}

/// Counts syllable nuclei as local maxima of the smoothed level that stand out from the
/// dips around them; a rough but language-independent measure of speaking rate.
fn syllable_peaks(levels: &[f32]) -> usize {
    const RISE_DB: f32 = 3.0;
    let smooth: Vec<f32> = levels
        .windows(3)
        .map(|w| (w[0] + w[1] + w[2]) / 3.0)
        .collect();
    let peak = smooth.iter().copied().fold(f32::MIN, f32::max);
    let mut count = 0;
    let mut low = f32::MAX;
    let mut rising = false;
    for pair in smooth.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        low = low.min(a);
        if b > a {
            rising = true;
        } else if rising && b < a {
            // A maximum at `a`: a syllable if loud enough and clear of the last dip.
            if a - low >= RISE_DB && a > peak - PAUSE_BELOW_PEAK_DB {
                count += 1;
                low = a;
            }
            rising = false;
        }
        if b < low {
            low = b;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced sound at `f0` Hz (gliding by `glide` Hz over its length), amplitude
    /// `amp`, with syllable-like bursts `rate` times a second.
    fn voice(f0: f64, glide: f64, amp: f64, rate: f64, secs: f64) -> Vec<Vec<i16>> {
        let n = (secs * 16_000.0) as usize;
        let mut phase = 0.0f64;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                let f = f0 + glide * t / secs;
                phase += 2.0 * std::f64::consts::PI * f / 16_000.0;
                let env = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * rate * t).cos()).powi(2);
                let v: f64 = (1..=4).map(|h| (phase * h as f64).sin() / h as f64).sum();
                (amp * env * v) as i16
            })
            .collect();
        samples.chunks(320).map(<[i16]>::to_vec).collect()
    }

    fn measure(frames: &[Vec<i16>]) -> Prosody {
        let mut m = ProsodyMeter::new();
        for f in frames {
            m.push(f);
        }
        m.take()
    }

    #[test]
    fn pitch_loudness_and_rate_follow_the_voice() {
        let calm = measure(&voice(120.0, 0.0, 4_000.0, 3.0, 3.0));
        let agitated = measure(&voice(220.0, 80.0, 16_000.0, 6.0, 3.0));
        assert!((calm.pitch_hz - 120.0).abs() < 6.0, "{calm:?}");
        assert!(calm.pitch_spread_st < 0.5, "{calm:?}");
        assert!(
            agitated.pitch_hz > 220.0 && agitated.pitch_hz < 300.0,
            "{agitated:?}"
        );
        assert!(agitated.pitch_spread_st > 1.5, "{agitated:?}");
        assert!(
            agitated.energy_db > calm.energy_db + 9.0,
            "{calm:?} {agitated:?}"
        );
        assert!((2.0..=4.5).contains(&calm.rate_per_sec), "{calm:?}");
        assert!(
            agitated.rate_per_sec > calm.rate_per_sec * 1.5,
            "{calm:?} {agitated:?}"
        );
        assert!((calm.secs - 3.0).abs() < 0.05);
    }

    #[test]
    fn pauses_are_measured_and_silence_is_empty() {
        let mut frames = voice(150.0, 0.0, 8_000.0, 4.0, 1.0);
        frames.extend(vec![vec![0i16; 320]; 50]);
        frames.extend(voice(150.0, 0.0, 8_000.0, 4.0, 1.0));
        let p = measure(&frames);
        assert!((0.3..=0.55).contains(&p.pause_ratio), "{p:?}");
        let silent = measure(&vec![vec![0i16; 320]; 50]);
        assert_eq!(silent.pitch_hz, 0.0);
        assert_eq!(measure(&[]), Prosody::default());
    }
}
