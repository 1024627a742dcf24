//! Decodes the prompts a dialplan names into the internal format (16 kHz mono) once, at
//! startup, and renders the texts of its `say` steps, so that calls never read the disk
//! nor wait for speech to play them.

use super::script::Prompts;
use crate::dialplan::{Dialplans, Step};
use crate::tts::{self, Source, Tts};
use baton_media::SAMPLE_RATE;
use hound::{SampleFormat, WavReader};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::warn;

/// A prompt file that cannot be played.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PromptError {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes every media file the dialplans use and speaks every `say` text and the bots'
/// fixed lines with `tts`. A text that cannot be spoken gets the fallback prompt (and a
/// warning): start-up does not depend on the synthesiser.
pub async fn load_prompts(plans: &Dialplans, tts: &Tts) -> Result<Prompts, PromptError> {
    let mut prompts = Prompts::default();
    let mut texts = HashSet::new();
    for plan in plans.iter() {
        for file in plan.media_files() {
            if prompts.file(file).is_none() {
                let samples = decode(file).map_err(|reason| PromptError {
                    path: file.to_path_buf(),
                    reason,
                })?;
                prompts.insert_file(file.to_path_buf(), samples);
            }
        }
        for step in &plan.steps {
            if let Step::Say { text, voice } = step {
                texts.insert((voice.clone(), text.clone()));
            }
        }
        // The bot's fixed lines (those without values to fill in), so that they come from
        // the cache when a call needs them.
        if let Some(dialog) = &plan.dialog {
            for node in dialog.plan.nodes.values() {
                for text in [&node.say, &node.reprompt].into_iter().flatten() {
                    if !text.contains('{') {
                        texts.insert((None, text.clone()));
                    }
                }
            }
        }
    }
    // All at once: with a hung synthesiser, start-up waits one timeout, not one per text.
    let mut renders = tokio::task::JoinSet::new();
    for (voice, text) in texts {
        let tts = tts.clone();
        renders.spawn(async move {
            let rendered = tts.render_voice(&text, voice.as_deref()).await;
            (voice, text, rendered)
        });
    }
    while let Some(done) = renders.join_next().await {
        let (voice, text, rendered) = match done {
            Ok(done) => done,
            Err(e) => {
                // A render never panics; should one, its step plays nothing rather than
                // keep baton from starting.
                warn!(error = %e, "a say text could not be rendered");
                continue;
            }
        };
        if let Source::Fallback(error) = &rendered.source {
            warn!(%error, %text, "say: speech could not be rendered; the step plays the fallback prompt");
        }
        prompts.insert_spoken(voice, text, rendered.audio);
    }
    Ok(prompts)
}

/// The prompt text to speech falls back on: [`tts::FALLBACK_PROMPT`] in `media`. Dialplans
/// with `say` steps cannot load without it; if it is missing otherwise, a soft tone stands
/// in, so that a failed render is still never silence.
pub fn load_fallback(media: &Path) -> Arc<[i16]> {
    let path = media.join(tts::FALLBACK_PROMPT);
    decode(&path).unwrap_or_else(|reason| {
        warn!(file = %path.display(), %reason, "no fallback prompt for text to speech; a tone stands in");
        tone()
    })
}

/// Half a second of a quiet 440 Hz tone with 20 ms fades, so it does not click.
fn tone() -> Arc<[i16]> {
    let rate = SAMPLE_RATE as f32;
    let len = SAMPLE_RATE as usize / 2;
    let fade = rate * 0.02;
    (0..len)
        .map(|i| {
            let t = i as f32;
            let ramp = (t / fade).min((len - i) as f32 / fade).min(1.0);
            let wave = (2.0 * std::f32::consts::PI * 440.0 * t / rate).sin();
            (wave * ramp * 6_000.0) as i16
        })
        .collect()
}

/// Reads a WAV file of any rate, width and channel count into 16 kHz mono samples.
fn decode(path: &Path) -> Result<Arc<[i16]>, String> {
    decode_wav(WavReader::open(path).map_err(|e| e.to_string())?)
}

/// Reads a WAV held in memory (fetched for a bot's `play`), as [`decode`] does a file.
pub(super) fn decode_wav_bytes(bytes: &[u8]) -> Result<Arc<[i16]>, String> {
    decode_wav(WavReader::new(bytes).map_err(|e| e.to_string())?)
}

fn decode_wav<R: std::io::Read>(reader: WavReader<R>) -> Result<Arc<[i16]>, String> {
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
