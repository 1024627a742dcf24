//! Runs the built-in dialog of a call beside the call's media task. The dialog hears the
//! caller through the call's shared context (the final transcripts speech writes there),
//! speaks through text to speech and the call's script, and writes what it learns back
//! to the context: the bot reads and writes the same memory an agent will.

use crate::context::document::TranscriptLine;
use crate::context::{Author, Change, ContextStore, Event};
use crate::dialog::engine::{Dialog, Ending, Input, Output};
use crate::tts::Tts;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn, Instrument};

/// What the bot asks of the call's media task.
#[derive(Debug)]
pub enum BotCommand {
    /// Play this after what is already queued.
    Play(Arc<[i16]>),
    /// The dialog is over: after the queue has played, hang up or go on to the next step.
    End(Ending),
}

/// What the media task tells the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotEvent {
    /// One queued prompt finished, or was cut short by the caller speaking.
    Played,
    /// The caller pressed a key.
    Key(char),
}

/// Everything a call's bot works with.
pub struct Bot {
    pub dialog: Dialog,
    pub call_id: String,
    pub contexts: Arc<dyn ContextStore>,
    pub tts: Tts,
    /// The recogniser's hints for this call: the dialplan's, then the current question's.
    pub hints: watch::Sender<String>,
    pub plan_hints: String,
    pub commands: mpsc::Sender<BotCommand>,
    pub events: mpsc::Receiver<BotEvent>,
    /// When the call began, for the time of the bot's lines in the transcript.
    pub call_started: SystemTime,
}

/// Starts the bot; it ends with its dialog or its call.
pub fn spawn(bot: Bot) {
    tokio::spawn(bot.run().in_current_span());
}

/// What the dialog is listening for, once asked.
struct Listening {
    timeout: Duration,
    max_digits: usize,
    keys: String,
    /// When silence counts as no answer; set once everything said has been played.
    deadline: Option<Instant>,
}

impl Bot {
    async fn run(mut self) {
        let mut feed = match self.subscribe().await {
            Some(feed) => feed,
            None => return,
        };
        let mut queued = 0usize;
        let mut listening: Option<Listening> = None;
        let mut spoken = 0u32;
        // Caller utterances up to this one were heard before the question: not answers.
        let mut heard_up_to = 0u32;
        loop {
            let mut writes = Vec::new();
            while let Some(out) = self.dialog.poll() {
                match out {
                    Output::Say(text) => {
                        spoken += 1;
                        writes.push(self.line(&text, spoken));
                        let audio = self.tts.render(&text).await.audio;
                        if self.commands.send(BotCommand::Play(audio)).await.is_err() {
                            return;
                        }
                        queued += 1;
                    }
                    Output::Listen {
                        hints,
                        timeout,
                        max_digits,
                    } => {
                        let all = [self.plan_hints.as_str(), hints.as_str()]
                            .into_iter()
                            .filter(|h| !h.is_empty())
                            .collect::<Vec<_>>()
                            .join(" ");
                        self.hints.send_replace(all);
                        listening = Some(Listening {
                            timeout,
                            max_digits,
                            keys: String::new(),
                            deadline: None,
                        });
                    }
                    Output::Write(change) => writes.push(change),
                    Output::End(ending) => {
                        self.write(writes).await;
                        let _ = self.commands.send(BotCommand::End(ending)).await;
                        return;
                    }
                }
            }
            self.write(writes).await;
            if let Some(l) = listening.as_mut() {
                if queued == 0 && l.deadline.is_none() {
                    l.deadline = Some(Instant::now() + l.timeout);
                }
            }
            let deadline = listening.as_ref().and_then(|l| l.deadline);
            tokio::select! {
                ev = self.events.recv() => match ev {
                    None => return,
                    Some(BotEvent::Played) => queued = queued.saturating_sub(1),
                    Some(BotEvent::Key(key)) => {
                        if let Some(l) = listening.as_mut() {
                            if key != '#' {
                                l.keys.push(key);
                            }
                            if key == '#' || l.keys.len() >= l.max_digits {
                                let keys = std::mem::take(&mut l.keys);
                                listening = None;
                                self.dialog.handle(Input::Keys(&keys));
                            }
                        }
                    }
                },
                ev = feed.recv() => match ev {
                    Ok(event) => {
                        let Change::Transcript(line) = &event.change else { continue };
                        if line.speaker != "caller" || line.utterance <= heard_up_to {
                            continue;
                        }
                        let Some(l) = listening.as_mut() else {
                            if line.is_final {
                                heard_up_to = line.utterance;
                            }
                            continue;
                        };
                        if !line.is_final {
                            // The caller is answering: the silence timer waits for them.
                            l.deadline = l.deadline.map(|_| Instant::now() + l.timeout);
                            continue;
                        }
                        heard_up_to = line.utterance;
                        if line.text.trim().is_empty() {
                            continue;
                        }
                        listening = None;
                        self.dialog.handle(Input::Heard(&line.text));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "bot fell behind the call's context");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = sleep_until(deadline) => {
                    debug!("no answer before the timeout");
                    listening = None;
                    self.dialog.handle(Input::Silence);
                }
            }
        }
    }

    /// The call's context events from now on.
    async fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Event>>> {
        let version = match self.contexts.get(&self.call_id).await {
            Ok(doc) => doc.version,
            Err(e) => {
                warn!(error = %e, "the bot has no context to work with");
                return None;
            }
        };
        match self.contexts.subscribe(&self.call_id, version).await {
            Ok(sub) => Some(sub.live),
            Err(e) => {
                warn!(error = %e, "the bot cannot follow the call's context");
                None
            }
        }
    }

    async fn write(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self
            .contexts
            .write(&self.call_id, Author::Bot, None, changes)
            .await
        {
            warn!(error = %e, "the bot's context write was refused");
        }
    }

    /// The bot's words as a line of the transcript.
    fn line(&self, text: &str, utterance: u32) -> Change {
        let at = SystemTime::now()
            .duration_since(self.call_started)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Change::Transcript(TranscriptLine {
            speaker: "bot".into(),
            text: text.to_owned(),
            is_final: true,
            utterance,
            start_ms: at,
            end_ms: at,
            confidence: 1.0,
        })
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
