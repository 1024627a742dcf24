//! The internal audio frame every leg decodes to and encodes from.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// Sample rate of the internal audio, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one internal frame (20 ms at 16 kHz).
pub const FRAME_SAMPLES: usize = 320;
/// Duration of one frame; playout and packetization step by this.
pub const FRAME_DURATION: Duration = Duration::from_millis(20);

/// 20 ms of 16 kHz mono PCM. Cloning shares the samples, so recorders and speech-to-text
/// can subscribe to every leg's frames without copying.
#[derive(Clone, PartialEq, Eq)]
pub struct AudioFrame(Arc<[i16; FRAME_SAMPLES]>);

impl AudioFrame {
    /// Wraps 320 samples.
    pub fn new(samples: [i16; FRAME_SAMPLES]) -> Self {
        Self(Arc::new(samples))
    }

    /// A frame of digital silence.
    pub fn silence() -> Self {
        Self::new([0; FRAME_SAMPLES])
    }

    /// Copies a slice of exactly [`FRAME_SAMPLES`] samples; `None` for any other length.
    pub fn from_slice(samples: &[i16]) -> Option<Self> {
        let array: [i16; FRAME_SAMPLES] = samples.try_into().ok()?;
        Some(Self::new(array))
    }

    /// The samples.
    pub fn samples(&self) -> &[i16; FRAME_SAMPLES] {
        &self.0
    }

    /// Root-mean-square level, 0.0 ..= 32768.0; handy for VAD and tests.
    pub fn rms(&self) -> f64 {
        let sum: f64 = self.0.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        (sum / FRAME_SAMPLES as f64).sqrt()
    }
}

impl Deref for AudioFrame {
    type Target = [i16];

    fn deref(&self) -> &[i16] {
        &self.0[..]
    }
}

impl fmt::Debug for AudioFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioFrame")
            .field("rms", &self.rms())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_shares_samples() {
        let a = AudioFrame::new([7; FRAME_SAMPLES]);
        let b = a.clone();
        assert!(std::ptr::eq(a.samples(), b.samples()));
    }

    #[test]
    fn from_slice_requires_exact_length() {
        assert!(AudioFrame::from_slice(&[0; 319]).is_none());
        assert!(AudioFrame::from_slice(&[0; 321]).is_none());
        assert_eq!(
            AudioFrame::from_slice(&[0; FRAME_SAMPLES]),
            Some(AudioFrame::silence())
        );
    }
}
