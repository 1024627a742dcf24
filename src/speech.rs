//! Listens to each call's caller side: cuts it into utterances, has them transcribed on
//! the speech worker pool (a partial about every second while the caller speaks, a final
//! at the end), and puts the transcripts on the call's record and its notice stream.
//!
//! The listener reads the call's audio tap, so it can never slow the media path: if it
//! falls behind, it misses frames (counted, logged) rather than holding the call up.

use crate::call::{LegFrame, Side};
use crate::calls::{self, CallHandle, CallNotice, TranscriptEntry, WordTiming};
use crate::context::document::TranscriptLine;
use crate::context::{Author, Change, ContextStore};
use crate::metrics::Metrics;
use baton_speech::prosody::{Prosody, ProsodyMeter};
use baton_speech::stt::{Done, Job, JobKind, Model, ModelError, SpeechWorkers, SttError};
use baton_speech::vad::{Vad, VadEvent};
use baton_speech::vibe::VibeTracker;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn, Instrument};

/// Frames between partial transcripts while the caller speaks (50 = 1 s).
const PARTIAL_EVERY: u64 = 50;
/// Finals waiting for a worker before new ones are refused: minutes of speech backlog.
const MAX_WAITING_FINALS: usize = 256;

/// The speech-to-text service shared by every call.
pub struct Speech {
    workers: SpeechWorkers,
    streams: AtomicU64,
}

impl Speech {
    /// Loads the model at `path` and starts `workers` transcription threads.
    pub fn start(path: &Path, workers: usize) -> Result<Speech, ModelError> {
        let model = Arc::new(Model::load(path)?);
        let info = model.info();
        info!(
            model = %path.display(),
            size = info.size_name(),
            english_only = info.english_only(),
            workers,
            "speech model loaded"
        );
        Ok(Speech {
            workers: SpeechWorkers::start(model, workers, MAX_WAITING_FINALS, workers * 2)?,
            streams: AtomicU64::new(1),
        })
    }
}

/// What a listener needs of its call.
pub struct Listener {
    pub speech: Arc<Speech>,
    pub contexts: Arc<dyn ContextStore>,
    pub metrics: Arc<Metrics>,
    pub call_id: String,
    pub info: CallHandle,
    pub audio: broadcast::Receiver<LegFrame>,
    pub notices: broadcast::Sender<CallNotice>,
    /// Words that bias recognition: what the dialplan expects callers to say.
    pub hints: String,
    /// Counts the caller's speech onsets; the call task watches it to stop a prompt the
    /// caller talks over (barge-in) on its next frame.
    pub onsets: Arc<AtomicU32>,
}

/// Starts the listener of one call; it ends when the call's audio tap closes, after the
/// last utterance's final transcript.
pub fn listen(listener: Listener) {
    tokio::spawn(listener.run().in_current_span());
}

/// A transcription result on its way back to the listener.
struct Heard {
    utterance: u32,
    kind: JobKind,
    start_frame: u64,
    /// When the job went to the pool: for a final, the end of its utterance.
    submitted: Instant,
    audio: Duration,
    result: Result<Done, SttError>,
}

impl Listener {
    async fn run(mut self) {
        let stream = self.speech.streams.fetch_add(1, Ordering::Relaxed);
        let (heard_tx, mut heard_rx) = mpsc::unbounded_channel::<Heard>();
        let mut vad = Vad::default();
        let mut frame = 0u64;
        let mut utterance = 0u32;
        // The last utterance that is over (its final arrived, or it was noise): partials of
        // it or of any before it are stale.
        let mut finalized = 0u32;
        let mut pending = 0usize;
        let mut speech_start = 0u64;
        let mut meter = ProsodyMeter::new();
        let mut measured: HashMap<u32, Prosody> = HashMap::new();
        let mut mood = VibeTracker::new();
        let mut open = true;
        while open || pending > 0 {
            tokio::select! {
                got = self.audio.recv(), if open => match got {
                    Ok(LegFrame { side: Side::Caller, frame: f }) => {
                        frame += 1;
                        let event = vad.push(&f);
                        if vad.in_speech() {
                            meter.push(&f);
                        }
                        match event {
                            Some(VadEvent::SpeechStart { frame: at }) => {
                                utterance += 1;
                                self.onsets.fetch_add(1, Ordering::Release);
                                speech_start = at;
                                let _ = self.notices.send(CallNotice::SpeechStarted {
                                    utterance,
                                    at_ms: at * 20,
                                });
                            }
                            Some(VadEvent::Utterance { first_frame, samples }) => {
                                measured.insert(utterance, meter.take());
                                self.submit(stream, utterance, JobKind::Final, first_frame, samples, &heard_tx);
                                pending += 1;
                            }
                            Some(VadEvent::Discarded) => {
                                meter.take();
                                // A partial of it may still be with a worker: it heard
                                // noise, and must not be published when it comes back.
                                finalized = finalized.max(utterance);
                                debug!("noise, not speech");
                            }
                            None => {
                                if let Some((first, audio)) = vad.current() {
                                    if (frame - speech_start) % PARTIAL_EVERY == 0 {
                                        let samples = audio.to_vec();
                                        self.submit(stream, utterance, JobKind::Partial, first, samples, &heard_tx);
                                        pending += 1;
                                    }
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(frames = n, "speech listener fell behind; audio skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        open = false;
                        // The call ended mid-utterance: what was said still counts.
                        if let Some((first, samples)) = vad.flush() {
                            measured.insert(utterance, meter.take());
                            self.submit(stream, utterance, JobKind::Final, first, samples, &heard_tx);
                            pending += 1;
                        } else {
                            // Nothing was being said, or it was noise cut short: a partial
                            // still with a worker has nothing to add.
                            finalized = finalized.max(utterance);
                        }
                    }
                },
                Some(heard) = heard_rx.recv() => {
                    pending -= 1;
                    let (kind, number) = (heard.kind, heard.utterance);
                    if kind == JobKind::Final {
                        finalized = finalized.max(number);
                    } else if number <= finalized {
                        continue; // a partial overtaken by its final, or of noise
                    }
                    let text = self.deliver(heard).await;
                    if kind == JobKind::Final {
                        let prosody = measured.remove(&number).unwrap_or_default();
                        // Only speech moves the mood: nothing heard, or no voice in it
                        // (a click, line noise at hang-up), says nothing about the caller.
                        if !text.is_empty() && prosody.pitch_hz > 0.0 {
                            self.read_mood(&mut mood, &prosody, &text).await;
                        }
                    }
                }
            }
        }
    }

    fn submit(
        &self,
        stream: u64,
        utterance: u32,
        kind: JobKind,
        start_frame: u64,
        samples: Vec<i16>,
        heard: &mpsc::UnboundedSender<Heard>,
    ) {
        let heard = heard.clone();
        let (submitted, audio) = (
            Instant::now(),
            Duration::from_millis(samples.len() as u64 / 16),
        );
        self.speech.workers.submit(Job {
            stream,
            kind,
            samples,
            prompt: self.hints.clone(),
            reply: Box::new(move |result| {
                let _ = heard.send(Heard {
                    utterance,
                    kind,
                    start_frame,
                    submitted,
                    audio,
                    result,
                });
            }),
        });
    }

    /// Publishes a transcript (and records it, if final); returns its text, empty when
    /// nothing was heard.
    async fn deliver(&self, heard: Heard) -> String {
        let done = match heard.result {
            Ok(done) => {
                self.metrics.speech_job(heard.audio, done.ran);
                if heard.kind == JobKind::Final {
                    self.metrics.observe_speech_final(heard.submitted.elapsed());
                }
                done
            }
            Err(SttError::Superseded) => return String::new(),
            Err(e) => {
                warn!(error = %e, utterance = heard.utterance, "no transcript");
                return String::new();
            }
        };
        let t = &done.transcript;
        if t.text.is_empty() {
            return String::new();
        }
        let base = heard.start_frame * 20;
        let ms = |d: std::time::Duration| base + d.as_millis() as u64;
        let entry = TranscriptEntry {
            speaker: "caller",
            text: t.text.clone(),
            is_final: heard.kind == JobKind::Final,
            utterance: heard.utterance,
            start_ms: t.words.first().map_or(base, |w| ms(w.start)),
            end_ms: t.words.last().map_or(base, |w| ms(w.end)),
            confidence: t.confidence,
            words: t
                .words
                .iter()
                .map(|w| WordTiming {
                    text: w.text.clone(),
                    start_ms: ms(w.start),
                    end_ms: ms(w.end),
                    probability: w.probability,
                })
                .collect(),
        };
        if entry.is_final {
            info!(
                utterance = entry.utterance,
                text = %entry.text,
                confidence = entry.confidence,
                queued_ms = done.queued.as_millis() as u64,
                ran_ms = done.ran.as_millis() as u64,
                "caller said"
            );
            calls::lock(&self.info).transcript.push(entry.clone());
        }
        let line = TranscriptLine {
            speaker: entry.speaker.to_owned(),
            text: entry.text.clone(),
            is_final: entry.is_final,
            utterance: entry.utterance,
            start_ms: entry.start_ms,
            end_ms: entry.end_ms,
            confidence: entry.confidence.clamp(0.0, 1.0),
        };
        self.remember(Change::Transcript(line)).await;
        let text = entry.text.clone();
        let _ = self.notices.send(CallNotice::Transcript(entry));
        text
    }

    /// Writes what was heard to the call's shared context.
    async fn remember(&self, change: Change) {
        let written = self
            .contexts
            .write(&self.call_id, Author::System, None, vec![change])
            .await;
        if let Err(e) = written {
            warn!(error = %e, "context not updated");
        }
    }

    /// Updates the caller's mood from a finished utterance and publishes it.
    async fn read_mood(&self, mood: &mut VibeTracker, prosody: &Prosody, text: &str) {
        let vibe = mood.update(prosody, text);
        info!(
            label = ?vibe.label,
            arousal = vibe.arousal,
            valence = vibe.valence,
            trend = ?vibe.trend,
            "caller's vibe"
        );
        calls::lock(&self.info).vibe = Some(vibe.clone());
        self.remember(Change::Vibe {
            label: tag(&vibe.label),
            arousal: vibe.arousal.clamp(0.0, 1.0),
            valence: vibe.valence.clamp(-1.0, 1.0),
            trend: tag(&vibe.trend),
            evidence: vibe.evidence.iter().take(16).cloned().collect(),
            utterance: vibe.utterance,
        })
        .await;
        let _ = self.notices.send(CallNotice::Vibe(vibe));
    }
}

/// The snake_case name serde gives a label or trend, as the context stores it.
fn tag(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
