//! Decodes the prompts a dialplan names into the internal format (16 kHz mono) once, at
//! startup, so that calls never read the disk to play them.

use super::script::Prompts;
use crate::dialplan::Dialplans;
use baton_media::SAMPLE_RATE;
use hound::{SampleFormat, WavReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A prompt file that cannot be played.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes every media file the dialplans use.
pub fn load_prompts(plans: &Dialplans) -> Result<Prompts, PromptError> {
    let mut prompts = Prompts::new();
    for plan in plans.iter() {
        for file in plan.media_files() {
            if !prompts.contains_key(file) {
                let samples = decode(file).map_err(|reason| PromptError {
                    path: file.to_path_buf(),
                    reason,
                })?;
                prompts.insert(file.to_path_buf(), samples);
            }
        }
    }
    Ok(prompts)
}

/// Reads a WAV of any rate, width and channel count into 16 kHz mono samples.
fn decode(path: &Path) -> Result<Arc<[i16]>, String> {
    let reader = WavReader::open(path).map_err(|e| e.to_string())?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
        SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
    };
    let mono: Vec<i16> = interleaved
        .chunks(channels)
        .map(|c| {
            let avg = c.iter().sum::<f32>() / c.len() as f32;
            (avg * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
        })
        .collect();
    let converted = baton_media::convert_rate(&mono, spec.sample_rate, SAMPLE_RATE)
        .map_err(|e| e.to_string())?;
    Ok(converted.into())
}
