//! Fundamental frequency (F0) of voiced speech, by the YIN method (de Cheveigné and
//! Kawahara, 2002): the lag that minimises the cumulative-mean-normalised difference of a
//! frame with itself. Prosody reads the caller's pitch and how much it varies from it.
//!
//! It runs at 8 kHz (the 16 kHz frames are decimated by two after a short low-pass): voice
//! pitch is far below 4 kHz, telephone audio has nothing above it anyway, and the
//! difference function, the costly part, is four times cheaper.

/// Lowest pitch looked for, in Hz (deep male voices).
pub const MIN_F0: f32 = 60.0;
/// Highest pitch looked for, in Hz (children, raised voices).
pub const MAX_F0: f32 = 500.0;
/// Rate the tracker works at.
const RATE: f32 = 8_000.0;
/// Samples compared per lag: 30 ms at 8 kHz.
const WINDOW: usize = 240;
/// YIN's absolute threshold on the normalised difference: below it a dip is a period.
const THRESHOLD: f32 = 0.15;
/// Longest lag, for [`MIN_F0`].
const MAX_LAG: usize = (RATE / MIN_F0) as usize + 1;
/// Shortest lag, for [`MAX_F0`].
const MIN_LAG: usize = (RATE / MAX_F0) as usize;

/// Tracks the pitch of one leg; keeps enough past audio to measure the lowest pitch.
#[derive(Debug, Default)]
pub struct PitchTracker {
    /// The last `WINDOW + MAX_LAG` samples at 8 kHz.
    history: Vec<f32>,
    diff: Vec<f32>,
}

impl PitchTracker {
    /// A tracker with no history yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one 20 ms frame at 16 kHz; returns its pitch in Hz if the frame is voiced.
    pub fn push(&mut self, frame: &[i16]) -> Option<f32> {
        // Decimate by two: averaging neighbours is a gentle low-pass that is enough for
        // pitch, which only needs the low harmonics.
        self.history.extend(
            frame
                .chunks_exact(2)
                .map(|p| (f32::from(p[0]) + f32::from(p[1])) * 0.5),
        );
        let keep = WINDOW + MAX_LAG;
        if self.history.len() > keep {
            self.history.drain(..self.history.len() - keep);
        }
        if self.history.len() < keep {
            return None;
        }
        self.estimate()
    }

    fn estimate(&mut self) -> Option<f32> {
        let x = &self.history;
        let energy: f32 = x[..WINDOW].iter().map(|v| v * v).sum();
        // Quieter than about −50 dBFS: no pitch to speak of.
        if energy < WINDOW as f32 * 100.0 * 100.0 {
            return None;
        }
        self.diff.clear();
        self.diff.push(1.0);
        let mut running = 0.0;
        for lag in 1..=MAX_LAG {
            let d: f32 = x[..WINDOW]
                .iter()
                .zip(&x[lag..lag + WINDOW])
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            running += d;
            // Cumulative mean normalised difference (YIN step 3).
            self.diff.push(if running > 0.0 {
                d * lag as f32 / running
            } else {
                1.0
            });
        }
        let lag = (MIN_LAG..MAX_LAG)
            .find(|&l| self.diff[l] < THRESHOLD && self.diff[l] <= self.diff[l + 1])?;
        // Parabolic interpolation around the dip for a sub-sample period.
        let (a, b, c) = (self.diff[lag - 1], self.diff[lag], self.diff[lag + 1]);
        let denom = a - 2.0 * b + c;
        let shift = if denom.abs() > f32::EPSILON {
            (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        Some(RATE / (lag as f32 + shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A voiced sound at `f0`: fundamental plus decaying harmonics, like a vowel.
    fn vowel(f0: f64, frames: usize) -> Vec<Vec<i16>> {
        (0..frames)
            .map(|f| {
                (0..320)
                    .map(|i| {
                        let t = (f * 320 + i) as f64 / 16_000.0;
                        let v: f64 = (1..=6)
                            .map(|h| {
                                (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin()
                                    / (h * h) as f64
                            })
                            .sum();
                        (8_000.0 * v) as i16
                    })
                    .collect()
            })
            .collect()
    }

    fn track(frames: &[Vec<i16>]) -> Vec<f32> {
        let mut p = PitchTracker::new();
        frames.iter().filter_map(|f| p.push(f)).collect()
    }

    #[test]
    fn finds_the_pitch_of_voices_across_the_range() {
        for f0 in [85.0, 120.0, 180.0, 240.0, 350.0] {
            let got = track(&vowel(f0, 20));
            assert!(got.len() >= 15, "{f0} Hz: voiced frames {}", got.len());
            for g in &got {
                let err = (f64::from(*g) - f0).abs() / f0;
                assert!(err < 0.02, "{f0} Hz measured as {g}");
            }
        }
    }

    #[test]
    fn a_pure_tone_is_its_own_pitch() {
        let tone: Vec<Vec<i16>> = (0..10)
            .map(|f| {
                (0..320)
                    .map(|i| {
                        let t = (f * 320 + i) as f64 / 16_000.0;
                        (10_000.0 * (2.0 * std::f64::consts::PI * 200.0 * t).sin()) as i16
                    })
                    .collect()
            })
            .collect();
        let got = track(&tone);
        assert!(!got.is_empty());
        assert!(got.iter().all(|g| (g - 200.0).abs() < 3.0), "{got:?}");
    }

    #[test]
    fn silence_and_noise_have_no_pitch() {
        assert!(track(&vec![vec![0; 320]; 10]).is_empty());
        let mut state = 12345u32;
        let noise: Vec<Vec<i16>> = (0..10)
            .map(|_| {
                (0..320)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        ((state >> 16) as i16) / 4
                    })
                    .collect()
            })
            .collect();
        let got = track(&noise);
        assert!(got.len() <= 1, "white noise gave pitches {got:?}");
    }
}
