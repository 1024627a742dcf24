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
use tokio::sync::{broadcast, mpsc, watch};
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
    /// Words that bias recognition: what the dialplan, and the dialog's current question,
    /// expect the caller to say.
    pub hints: watch::Receiver<String>,
    /// Counts the speaker's onsets; the call task watches the caller's to stop a prompt
    /// the caller talks over (barge-in) on its next frame.
    pub onsets: Arc<AtomicU32>,
    /// Whose audio this listener transcribes: [`Side::Caller`] or [`Side::Agent`].
    pub side: Side,
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
    /// When the job went to the pool.
    submitted: Instant,
    /// Samples transcribed: an early final counts only if its utterance ended with as many.
    len: usize,
    /// Started at a pause, before the utterance was known to be over.
    early: bool,
    result: Result<Done, SttError>,
}

/// Audio to have transcribed.
struct Clip {
    utterance: u32,
    kind: JobKind,
    early: bool,
    start_frame: u64,
    samples: Vec<i16>,
}

/// What the listener keeps between frames about the utterances so far.
#[derive(Default)]
struct Said {
    /// The last utterance that is over (its final arrived, or it was noise): partials of
    /// it or of any before it are stale.
    finalized: u32,
    /// Prosody of utterances whose final is still being transcribed.
    measured: HashMap<u32, Prosody>,
    mood: VibeTracker,
    early: EarlyFinals,
}

/// Finals started at the caller's pause, before the hangover confirms the utterance is
/// over: when it does, and the audio is the same, the result is already there (or on its
/// way) instead of starting only then. Saves the hangover's wait on every final.
#[derive(Default)]
struct EarlyFinals {
    /// Utterance → samples its newest early final was started with.
    started: HashMap<u32, usize>,
    /// Utterance → when the detector ended it, for utterances whose early final stands in
    /// for the final (they ended with the samples in `started`).
    ended: HashMap<u32, Instant>,
    /// Early results back before their utterance ended (of the samples in `started`: a
    /// new pause clears them).
    back: HashMap<u32, Heard>,
}

impl EarlyFinals {
    /// An early final of `utterance` starts with `len` samples; earlier ones are stale.
    fn start(&mut self, utterance: u32, len: usize) {
        self.started.insert(utterance, len);
        self.back.remove(&utterance);
    }

    /// The utterance ended with `len` samples: true if its early final covers exactly
    /// that (no new final needed), with the result if it is already back.
    fn ended(&mut self, utterance: u32, len: usize) -> (bool, Option<Heard>) {
        if self.started.get(&utterance) != Some(&len) {
            self.forget(utterance);
            return (false, None);
        }
        self.ended.insert(utterance, Instant::now());
        (true, self.back.remove(&utterance))
    }

    /// An early result came back: returned if it is the final now, kept if its
    /// utterance has not ended yet, dropped if speech went on after its pause.
    fn arrived(&mut self, heard: Heard) -> Option<Heard> {
        let n = heard.utterance;
        if self.started.get(&n) != Some(&heard.len) {
            return None;
        }
        if self.ended.contains_key(&n) {
            return Some(heard);
        }
        self.back.insert(n, heard);
        None
    }

    /// When the detector ended `utterance`, if its early final stands in for the final.
    fn end_time(&self, utterance: u32) -> Option<Instant> {
        self.ended.get(&utterance).copied()
    }

    fn forget(&mut self, utterance: u32) {
        self.started.remove(&utterance);
        self.ended.remove(&utterance);
        self.back.remove(&utterance);
    }
}

impl Listener {
    async fn run(mut self) {
        let stream = self.speech.streams.fetch_add(1, Ordering::Relaxed);
        let (heard_tx, mut heard_rx) = mpsc::unbounded_channel::<Heard>();
        let mut vad = Vad::default();
        let mut frame = 0u64;
        let mut utterance = 0u32;
        let mut pending = 0usize;
        let mut speech_start = 0u64;
        let mut meter = ProsodyMeter::new();
        let mut said = Said::default();
        let mut open = true;
        while open || pending > 0 {
            tokio::select! {
                got = self.audio.recv(), if open => match got {
                    Ok(LegFrame { side, frame: f }) if side == self.side => {
                        frame += 1;
                        let event = vad.push(&f);
                        if vad.in_speech() {
                            meter.push(&f);
                        }
                        let clip = match event {
                            Some(VadEvent::SpeechStart { frame: at }) => {
                                utterance += 1;
                                self.onsets.fetch_add(1, Ordering::Release);
                                speech_start = at;
                                let _ = self.notices.send(CallNotice::SpeechStarted {
                                    utterance,
                                    at_ms: at * 20,
                                });
                                None
                            }
                            Some(VadEvent::Pause { first_frame, samples }) => {
                                said.early.start(utterance, samples.len());
                                Some(Clip { utterance, kind: JobKind::Final, early: true, start_frame: first_frame, samples })
                            }
                            Some(VadEvent::Utterance { first_frame, samples }) => {
                                said.measured.insert(utterance, meter.take());
                                self.ended(&mut said, utterance, first_frame, samples).await
                            }
                            Some(VadEvent::Discarded) => {
                                meter.take();
                                // A partial of it may still be with a worker: it heard
                                // noise, and must not be published when it comes back.
                                said.finalized = said.finalized.max(utterance);
                                said.early.forget(utterance);
                                debug!("noise, not speech");
                                None
                            }
                            None => vad.current().and_then(|(first, audio)| {
                                (frame - speech_start).is_multiple_of(PARTIAL_EVERY).then(|| Clip {
                                    utterance,
                                    kind: JobKind::Partial,
                                    early: false,
                                    start_frame: first,
                                    samples: audio.to_vec(),
                                })
                            }),
                        };
                        if let Some(clip) = clip {
                            self.submit(stream, clip, &heard_tx);
                            pending += 1;
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
                            said.measured.insert(utterance, meter.take());
                            if let Some(clip) = self.ended(&mut said, utterance, first, samples).await {
                                self.submit(stream, clip, &heard_tx);
                                pending += 1;
                            }
                        } else {
                            // Nothing was being said, or it was noise cut short: a partial
                            // still with a worker has nothing to add. (An early final of an
                            // utterance that did end still counts: it may be on its way.)
                            said.finalized = said.finalized.max(utterance);
                        }
                    }
                },
                Some(heard) = heard_rx.recv() => {
                    pending -= 1;
                    let heard = if heard.early { said.early.arrived(heard) } else { Some(heard) };
                    if let Some(heard) = heard {
                        self.take(&mut said, heard).await;
                    }
                }
            }
        }
    }

    /// The detector ended an utterance: the final to start, unless an early one already
    /// covers it (whose result, if back, is published now).
    async fn ended(
        &self,
        said: &mut Said,
        utterance: u32,
        start_frame: u64,
        samples: Vec<i16>,
    ) -> Option<Clip> {
        match said.early.ended(utterance, samples.len()) {
            (true, Some(heard)) => {
                self.take(said, heard).await;
                None
            }
            (true, None) => None,
            (false, _) => Some(Clip {
                utterance,
                kind: JobKind::Final,
                early: false,
                start_frame,
                samples,
            }),
        }
    }

    /// Publishes a transcript that came back, unless it is stale; a final also moves the
    /// mood.
    async fn take(&self, said: &mut Said, heard: Heard) {
        let (kind, number) = (heard.kind, heard.utterance);
        if kind == JobKind::Final {
            said.finalized = said.finalized.max(number);
        } else if number <= said.finalized {
            return; // a partial overtaken by its final, or of noise
        }
        let ended = said.early.end_time(number).unwrap_or(heard.submitted);
        let text = self.deliver(heard, ended).await;
        if kind == JobKind::Final {
            said.early.forget(number);
            let prosody = said.measured.remove(&number).unwrap_or_default();
            // Only the caller's speech moves the mood: nothing heard, or no voice in it (a
            // click, line noise at hang-up), says nothing about the caller.
            if self.side == Side::Caller && !text.is_empty() && prosody.pitch_hz > 0.0 {
                self.read_mood(&mut said.mood, &prosody, &text).await;
            }
        }
    }

    fn submit(&self, stream: u64, clip: Clip, heard: &mpsc::UnboundedSender<Heard>) {
        let heard = heard.clone();
        let Clip {
            utterance,
            kind,
            early,
            start_frame,
            samples,
        } = clip;
        let (submitted, len) = (Instant::now(), samples.len());
        self.speech.workers.submit(Job {
            stream,
            kind,
            samples,
            prompt: self.hints.borrow().clone(),
            reply: Box::new(move |result| {
                let _ = heard.send(Heard {
                    utterance,
                    kind,
                    start_frame,
                    submitted,
                    len,
                    early,
                    result,
                });
            }),
        });
    }

    /// Publishes a transcript (and records it, if final); returns its text, empty when
    /// nothing was heard.
    async fn deliver(&self, heard: Heard, ended: Instant) -> String {
        let done = match heard.result {
            Ok(done) => {
                let audio = Duration::from_millis(heard.len as u64 / 16);
                self.metrics.speech_job(audio, done.ran);
                if heard.kind == JobKind::Final {
                    self.metrics.observe_speech_final(ended.elapsed());
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
            speaker: if self.side == Side::Agent {
                "agent"
            } else {
                "caller"
            },
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
                speaker = entry.speaker,
                "said"
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
            label: vibe.label.as_str().to_owned(),
            arousal: vibe.arousal.clamp(0.0, 1.0),
            valence: vibe.valence.clamp(-1.0, 1.0),
            trend: vibe.trend.as_str().to_owned(),
            evidence: vibe.evidence.iter().take(16).cloned().collect(),
            utterance: vibe.utterance,
        })
        .await;
        let _ = self.notices.send(CallNotice::Vibe(vibe));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_speech::stt::Transcript;

    fn early(utterance: u32, len: usize) -> Heard {
        Heard {
            utterance,
            kind: JobKind::Final,
            start_frame: 0,
            submitted: Instant::now(),
            len,
            early: true,
            result: Ok(Done {
                transcript: Transcript::default(),
                queued: Duration::ZERO,
                ran: Duration::ZERO,
            }),
        }
    }

    #[test]
    fn an_early_final_back_before_its_utterance_ends_is_published_at_the_end() {
        let mut e = EarlyFinals::default();
        e.start(1, 100);
        assert!(
            e.arrived(early(1, 100)).is_none(),
            "held until the utterance ends"
        );
        let (covered, back) = e.ended(1, 100);
        assert!(covered);
        assert_eq!(back.map(|h| h.len), Some(100));
    }

    #[test]
    fn an_early_final_back_after_its_utterance_ended_is_published_at_once() {
        let mut e = EarlyFinals::default();
        e.start(1, 100);
        assert!(e.ended(1, 100).0);
        assert!(e.end_time(1).is_some());
        assert_eq!(e.arrived(early(1, 100)).map(|h| h.len), Some(100));
    }

    #[test]
    fn speech_after_the_pause_makes_the_early_final_stale() {
        let mut e = EarlyFinals::default();
        e.start(1, 100);
        assert!(e.arrived(early(1, 100)).is_none());
        // The caller went on: the utterance ended longer, and needs its own final.
        let (covered, back) = e.ended(1, 180);
        assert!(!covered && back.is_none());
        assert!(
            e.arrived(early(1, 100)).is_none(),
            "a late stale result is dropped"
        );
        // A second pause's early final that does match still counts.
        e.start(2, 50);
        e.start(2, 90);
        assert!(
            e.arrived(early(2, 50)).is_none(),
            "the first pause's is stale"
        );
        assert!(e.ended(2, 90).0);
        assert!(e.arrived(early(2, 90)).is_some());
    }
}
