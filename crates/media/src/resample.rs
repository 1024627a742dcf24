//! 8 kHz ↔ 16 kHz conversion for G.711 legs, with per-leg filter state so consecutive
//! frames join without clicks.
//!
//! rubato's synchronous FFT resampler was measured at about 3 µs per 20 ms frame for
//! up plus down on this class of machine, which is cheap enough for thousands of legs;
//! it adds 10 ms of delay per direction.

use rubato::{FftFixedIn, FftFixedInOut, Resampler};

use crate::frame::FRAME_SAMPLES;

/// Samples in 20 ms at 8 kHz.
pub(crate) const NARROW_SAMPLES: usize = FRAME_SAMPLES / 2;

/// The resampler failed; only possible if rubato's buffer contract is broken.
#[derive(Debug, thiserror::Error)]
#[error("resampler: {0}")]
pub struct ResampleError(String);

/// Converts between 8 kHz and 16 kHz in fixed 20 ms chunks.
pub(crate) struct RateConverter {
    inner: FftFixedInOut<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl RateConverter {
    /// 8 kHz → 16 kHz.
    pub(crate) fn upsampler() -> Result<Self, ResampleError> {
        Self::new(8_000, 16_000, NARROW_SAMPLES)
    }

    /// 16 kHz → 8 kHz.
    pub(crate) fn downsampler() -> Result<Self, ResampleError> {
        Self::new(16_000, 8_000, FRAME_SAMPLES)
    }

    fn new(from: usize, to: usize, chunk: usize) -> Result<Self, ResampleError> {
        let inner = FftFixedInOut::<f32>::new(from, to, chunk, 1)
            .map_err(|e| ResampleError(e.to_string()))?;
        let input = inner.input_buffer_allocate(true);
        let output = inner.output_buffer_allocate(true);
        Ok(Self {
            inner,
            input,
            output,
        })
    }

    /// Converts one 20 ms chunk; `input` must hold exactly one chunk at the source rate,
    /// `output` receives one chunk at the target rate.
    pub(crate) fn process(
        &mut self,
        input: &[i16],
        output: &mut [i16],
    ) -> Result<(), ResampleError> {
        for (dst, &src) in self.input[0].iter_mut().zip(input) {
            *dst = f32::from(src) / 32_768.0;
        }
        let (_, written) = self
            .inner
            .process_into_buffer(&self.input, &mut self.output, None)
            .map_err(|e| ResampleError(e.to_string()))?;
        for (dst, &src) in output.iter_mut().zip(&self.output[0][..written]) {
            *dst = (src * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16;
        }
        Ok(())
    }
}

/// Converts a whole buffer between any two rates (prompts and hold music, once at load).
/// The output is trimmed of the filter's delay, so it starts and ends where the input does.
pub fn convert_rate(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, ResampleError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|e| ResampleError(e.to_string()))?;
    let delay = r.output_delay();
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + CHUNK);
    let samples: Vec<f32> = input.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    let mut chunks = samples.chunks_exact(CHUNK);
    for chunk in chunks.by_ref() {
        let produced = r
            .process(&[chunk], None)
            .map_err(|e| ResampleError(e.to_string()))?;
        out.extend_from_slice(&produced[0]);
    }
    let tail = chunks.remainder();
    // Flush: the remainder, then silence until the delayed samples are out.
    let mut pending = Some(tail);
    while out.len() < expected + delay {
        let produced = r
            .process_partial(pending.take().map(|t| [t]).as_ref().map(|a| &a[..]), None)
            .map_err(|e| ResampleError(e.to_string()))?;
        out.extend_from_slice(&produced[0]);
    }
    Ok(out
        .iter()
        .skip(delay)
        .take(expected)
        .map(|&s| (s * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {

    #[test]
    fn whole_buffer_conversion_keeps_length_and_tone() {
        let input = tone(440.0, 22_050.0, 0, 22_050);
        let out = convert_rate(&input, 22_050, 16_000).unwrap();
        assert_eq!(out.len(), 16_000);
        let expect = tone(440.0, 16_000.0, 0, 16_000);
        let err: f64 = out[1000..15000]
            .iter()
            .zip(&expect[1000..15000])
            .map(|(a, b)| f64::from(*a - *b).abs())
            .sum::<f64>()
            / 14_000.0;
        assert!(err < 200.0, "mean error {err}");
        assert_eq!(convert_rate(&input[..5], 16_000, 16_000).unwrap().len(), 5);
    }

    use super::*;

    fn tone(freq: f64, rate: f64, start: usize, len: usize) -> Vec<i16> {
        (start..start + len)
            .map(|n| (8_000.0 * (2.0 * std::f64::consts::PI * freq * n as f64 / rate).sin()) as i16)
            .collect()
    }

    #[test]
    fn upsampled_tone_is_continuous_across_frames() {
        let mut up = RateConverter::upsampler().unwrap();
        let mut all = Vec::new();
        for k in 0..10 {
            let mut out = [0i16; FRAME_SAMPLES];
            up.process(
                &tone(1_000.0, 8_000.0, k * NARROW_SAMPLES, NARROW_SAMPLES),
                &mut out,
            )
            .unwrap();
            all.extend_from_slice(&out);
        }
        // After the filter delay, the largest step between neighbours must match a clean
        // 1 kHz sine at 16 kHz (8000 * 2π * 1000/16000 ≈ 3142), i.e. no clicks at joins.
        let max_step = all[640..]
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        assert!(max_step < 3_300, "max step {max_step}");
        let peak = all[640..].iter().map(|s| s.abs()).max().unwrap();
        assert!((7_600..=8_400).contains(&peak), "peak {peak}");
    }

    #[test]
    fn downsampling_removes_content_above_4khz() {
        let mut down = RateConverter::downsampler().unwrap();
        let mut energy = 0.0;
        for k in 0..10 {
            let mut out = [0i16; NARROW_SAMPLES];
            down.process(
                &tone(6_000.0, 16_000.0, k * FRAME_SAMPLES, FRAME_SAMPLES),
                &mut out,
            )
            .unwrap();
            if k > 2 {
                energy += out.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            }
        }
        let rms = (energy / (7.0 * NARROW_SAMPLES as f64)).sqrt();
        assert!(rms < 100.0, "aliased rms {rms}");
    }
}
