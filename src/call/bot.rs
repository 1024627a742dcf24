//! Runs the bot of a call beside the call's media task: the dialplan's built-in dialog, or
//! an external bot over the bot protocol (`crate::dialog::protocol`). Either way the bot
//! hears the caller through the call's shared context (the transcripts speech writes
//! there), speaks through text to speech and the call's script, and writes what it learns
//! back to the context: the bot reads and writes the same memory an agent will.
//!
//! An external bot that cannot be reached, or goes away mid-call, hands the call to the
//! dialplan's `[dialog]` at the node the step names, at once: the caller never waits on a
//! bot that is not there.

use crate::context::document::TranscriptLine;
use crate::context::{Author, Change, Context, ContextStore, Event};
use crate::dialog::engine::{Dialog, Ending, Input, Output};
use crate::dialog::protocol::{self, FromBot, ToBot, Verb};
use crate::dialog::BuiltinDialog;
use crate::dialplan::BotSpec;
use crate::tts::Tts;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn, Instrument};

/// How long baton waits for an external bot to accept the connection: the caller hears
/// nothing meanwhile.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a frame to an external bot may wait for the bot to read: a bot that stops
/// reading is taken for gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// What the bot asks of the call's media task.
#[derive(Debug)]
pub enum BotCommand {
    /// Play this after what is already queued.
    Play(Arc<[i16]>),
    /// The bot is over: after the queue has played, hang up or go on to the next step.
    End(Ending),
}

/// What the media task tells the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotEvent {
    /// One queued prompt finished playing.
    Played,
    /// One queued prompt was cut short: the caller spoke over it.
    Cut,
    /// The caller pressed a key.
    Key(char),
}

/// Everything a call's bot works with.
pub struct Bot {
    pub spec: BotSpec,
    /// The dialplan's `[dialog]`: the bot itself, or an external bot's fallback.
    pub dialog: Option<BuiltinDialog>,
    pub call_id: String,
    pub caller_number: Option<String>,
    /// The dialled user or number.
    pub called: String,
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

/// What the bot is listening for, once asked.
struct Listening {
    timeout: Duration,
    max_digits: usize,
    speech: bool,
    keys: String,
    /// When silence counts as no answer; set once everything said has been played.
    deadline: Option<Instant>,
}

/// Who decides what the bot does.
enum Brain {
    Local(Box<Dialog>),
    Remote(Remote),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An external bot on the other end of a WebSocket.
struct Remote {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    /// What its verbs asked for, not yet done.
    pending: VecDeque<Output>,
    /// The ids of its `say` verbs queued on the call, oldest first.
    says: VecDeque<Option<String>>,
    /// The id of the `gather` waiting for an answer.
    gather: Option<String>,
}

/// Why an external bot is no longer driving the call.
#[derive(Debug)]
struct Gone(String);

impl Remote {
    async fn connect(url: &str) -> Result<Remote, Gone> {
        let mut request = url
            .into_client_request()
            .map_err(|e| Gone(format!("bad url: {e}")))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocol::SUBPROTOCOL
                .parse()
                .map_err(|_| Gone("bad subprotocol".into()))?,
        );
        let (socket, _) =
            tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| Gone(format!("no answer within {CONNECT_TIMEOUT:?}")))?
                .map_err(|e| Gone(e.to_string()))?;
        let (sink, stream) = socket.split();
        Ok(Remote {
            sink,
            stream,
            pending: VecDeque::new(),
            says: VecDeque::new(),
            gather: None,
        })
    }

    async fn send(&mut self, frame: &ToBot) -> Result<(), Gone> {
        let text = frame.to_text();
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Gone(e.to_string())),
            Err(_) => Err(Gone(format!("the bot did not read for {SEND_TIMEOUT:?}"))),
        }
    }

    /// Turns the verbs of one frame into outputs; context writes are answered at once.
    async fn take(&mut self, verbs: Vec<Verb>, bot: &Bot) -> Result<(), Gone> {
        for verb in verbs {
            match verb {
                Verb::Say { text, id } => {
                    self.says.push_back(id);
                    self.pending.push_back(Output::Say(text));
                }
                Verb::Gather {
                    id,
                    input,
                    timeout_secs,
                    hints,
                    max_digits,
                } => {
                    self.gather = id;
                    let keys = input.contains(&protocol::Input::Dtmf);
                    self.pending.push_back(Output::Listen {
                        hints,
                        timeout: Duration::from_secs(u64::from(timeout_secs)),
                        max_digits: if keys { max_digits as usize } else { 0 },
                        speech: input.contains(&protocol::Input::Speech),
                    });
                }
                Verb::Context {
                    id,
                    changes,
                    expected_version,
                } => {
                    let reply = match bot
                        .contexts
                        .write(&bot.call_id, Author::Bot, expected_version, changes)
                        .await
                    {
                        Ok(events) => ToBot::ContextResult {
                            id,
                            version: events.last().map_or(0, |e| e.version),
                        },
                        Err(e) => ToBot::Error {
                            message: format!("context: {e}"),
                            frame: None,
                        },
                    };
                    self.send(&reply).await?;
                }
                Verb::Escalate { reason } => self.end(Ending::Escalate(reason)),
                Verb::Transfer { to } => self.end(Ending::Escalate(format!("transfer:{to}"))),
                Verb::Hangup {} => self.end(Ending::Hangup),
            }
        }
        Ok(())
    }

    fn end(&mut self, ending: Ending) {
        if let Ending::Escalate(reason) = &ending {
            self.pending.push_back(Output::Write(Change::Action {
                name: "escalation_requested".into(),
                detail: serde_json::json!({ "reason": reason }),
            }));
        }
        self.pending.push_back(Output::End(ending));
    }

    /// The answer to the waiting `gather`.
    fn answer(&mut self, input: Input<'_>) -> ToBot {
        let id = self.gather.take();
        match input {
            Input::Heard(text) => ToBot::Gather {
                id,
                reason: "speech".into(),
                text: Some(text.to_owned()),
                digits: None,
            },
            Input::Keys(keys) => ToBot::Gather {
                id,
                reason: "dtmf".into(),
                text: None,
                digits: Some(keys.to_owned()),
            },
            Input::Silence => ToBot::Gather {
                id,
                reason: "timeout".into(),
                text: None,
                digits: None,
            },
        }
    }
}

impl Brain {
    fn poll(&mut self) -> Option<Output> {
        match self {
            Brain::Local(dialog) => dialog.poll(),
            Brain::Remote(remote) => remote.pending.pop_front(),
        }
    }
}

impl Bot {
    async fn run(mut self) {
        let Some((mut feed, doc)) = self.subscribe().await else {
            return;
        };
        let mut brain = match self.spec.clone() {
            BotSpec::Dialog => match self.local(None) {
                Some(dialog) => Brain::Local(Box::new(dialog)),
                None => return self.finish(Ending::Escalate("no_dialog".into())).await,
            },
            BotSpec::Remote { url, fallback } => {
                let started = Remote::connect(&url).await;
                let hello = ToBot::SessionNew {
                    call_id: self.call_id.clone(),
                    from: self.caller_number.clone(),
                    to: self.called.clone(),
                    context: doc,
                };
                let connected = match started {
                    Ok(mut remote) => remote.send(&hello).await.map(|()| remote),
                    Err(gone) => Err(gone),
                };
                match connected {
                    Ok(remote) => {
                        info!(%url, "external bot connected");
                        Brain::Remote(remote)
                    }
                    Err(Gone(why)) => match self.take_over(fallback.as_deref(), &why).await {
                        Some(dialog) => Brain::Local(Box::new(dialog)),
                        None => return,
                    },
                }
            }
        };
        let mut queued = 0usize;
        let mut listening: Option<Listening> = None;
        let mut spoken = 0u32;
        // Caller utterances up to this one were heard before the question: not answers.
        let mut heard_up_to = 0u32;
        loop {
            let mut writes = Vec::new();
            while let Some(out) = brain.poll() {
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
                        speech,
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
                            speech,
                            keys: String::new(),
                            deadline: None,
                        });
                    }
                    Output::Write(change) => writes.push(change),
                    Output::End(ending) => {
                        self.write(writes).await;
                        if let Brain::Remote(remote) = &mut brain {
                            let end = ToBot::SessionEnd {
                                reason: "the bot ended its part".into(),
                            };
                            let _ = remote.send(&end).await;
                        }
                        return self.finish(ending).await;
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
            // What happened, and what the bot should be told (None: nothing).
            let mut answer: Option<Input<'_>> = None;
            let heard_text;
            let keys;
            let mut gone: Option<Gone> = None;
            let mut to_remote: Option<ToBot> = None;
            tokio::select! {
                ev = self.events.recv() => match ev {
                    None => {
                        if let Brain::Remote(remote) = &mut brain {
                            let end = ToBot::SessionEnd { reason: "the call ended".into() };
                            let _ = remote.send(&end).await;
                        }
                        return;
                    }
                    Some(ev @ (BotEvent::Played | BotEvent::Cut)) => {
                        queued = queued.saturating_sub(1);
                        if let Brain::Remote(remote) = &mut brain {
                            if let Some(id) = remote.says.pop_front() {
                                to_remote = Some(ToBot::VerbDone {
                                    id,
                                    verb: "say".into(),
                                    interrupted: ev == BotEvent::Cut,
                                });
                            }
                        }
                    }
                    Some(BotEvent::Key(key)) => {
                        if matches!(brain, Brain::Remote(_)) {
                            to_remote = Some(ToBot::Dtmf { digit: key.to_string() });
                        }
                        if let Some(l) = listening.as_mut().filter(|l| l.max_digits > 0) {
                            if key != '#' {
                                l.keys.push(key);
                            }
                            if key == '#' || l.keys.len() >= l.max_digits {
                                keys = std::mem::take(&mut l.keys);
                                listening = None;
                                answer = Some(Input::Keys(&keys));
                            }
                        }
                    }
                },
                ev = feed.recv() => match ev {
                    Ok(event) => {
                        if let Brain::Remote(_) = &brain {
                            to_remote = forwarded(&event);
                        }
                        if let Change::Transcript(line) = &event.change {
                            if line.speaker == "caller" && line.utterance > heard_up_to {
                                match listening.as_mut().filter(|l| l.speech) {
                                    None if line.is_final => heard_up_to = line.utterance,
                                    None => {}
                                    // The caller is answering: the silence timer waits.
                                    Some(l) if !line.is_final => {
                                        l.deadline = l.deadline.map(|_| Instant::now() + l.timeout);
                                    }
                                    Some(_) => {
                                        heard_up_to = line.utterance;
                                        if !line.text.trim().is_empty() {
                                            heard_text = line.text.clone();
                                            listening = None;
                                            answer = Some(Input::Heard(&heard_text));
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "bot fell behind the call's context");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                frame = next_frame(&mut brain) => match frame {
                    Ok(Frame::Binary) => {
                        to_remote = Some(ToBot::Error {
                            message: "binary frames are not part of this protocol".into(),
                            frame: None,
                        });
                    }
                    Ok(Frame::Text(text)) => match FromBot::parse(&text) {
                        Ok(FromBot::Verbs { verbs }) => {
                            if let Brain::Remote(remote) = &mut brain {
                                if let Err(g) = remote.take(verbs, &self).await {
                                    gone = Some(g);
                                }
                            }
                        }
                        Err(e) => {
                            debug!(error = %e, "refused a frame from the bot");
                            to_remote = Some(ToBot::refused(&e, &text));
                        }
                    },
                    Ok(Frame::Control) => {}
                    Err(g) => gone = Some(g),
                },
                _ = sleep_until(deadline) => {
                    debug!("no answer before the timeout");
                    listening = None;
                    answer = Some(Input::Silence);
                }
            }
            if let Some(input) = answer {
                match &mut brain {
                    Brain::Local(dialog) => dialog.handle(input),
                    Brain::Remote(remote) => {
                        let frame = remote.answer(input);
                        if let Err(g) = remote.send(&frame).await {
                            gone = Some(g);
                        }
                    }
                }
            }
            if let (Some(frame), Brain::Remote(remote), None) = (&to_remote, &mut brain, &gone) {
                if let Err(g) = remote.send(frame).await {
                    gone = Some(g);
                }
            }
            if let Some(Gone(why)) = gone {
                let BotSpec::Remote { fallback, .. } = self.spec.clone() else {
                    return;
                };
                listening = None;
                match self.take_over(fallback.as_deref(), &why).await {
                    Some(dialog) => brain = Brain::Local(Box::new(dialog)),
                    None => return,
                }
            }
        }
    }

    /// The built-in dialog, at its start or at `node`.
    fn local(&self, node: Option<&str>) -> Option<Dialog> {
        self.dialog
            .as_ref()
            .map(|d| d.start(self.caller_number.as_deref(), node))
    }

    /// The external bot is not (or no longer) there: the built-in dialog takes over at
    /// `fallback`, or the bot's part ends.
    async fn take_over(&mut self, fallback: Option<&str>, why: &str) -> Option<Dialog> {
        warn!(reason = why, fallback, "external bot unavailable");
        let dialog = fallback.and_then(|node| self.local(Some(node)));
        let what = match (&dialog, fallback) {
            (Some(_), Some(node)) => format!("the built-in dialog took over at {node}"),
            _ => "no fallback dialog".to_owned(),
        };
        self.write(vec![Change::BotAttempt {
            attempt: format!("external bot: {why}; {what}"),
        }])
        .await;
        if dialog.is_none() {
            self.finish(Ending::Escalate("bot_unavailable".into()))
                .await;
        }
        dialog
    }

    async fn finish(&self, ending: Ending) {
        let _ = self.commands.send(BotCommand::End(ending)).await;
    }

    /// The call's context as it is, and its events from now on.
    async fn subscribe(&self) -> Option<(broadcast::Receiver<Arc<Event>>, Arc<Context>)> {
        let doc = match self.contexts.get(&self.call_id).await {
            Ok(doc) => doc,
            Err(e) => {
                warn!(error = %e, "the bot has no context to work with");
                return None;
            }
        };
        match self.contexts.subscribe(&self.call_id, doc.version).await {
            Ok(sub) => Some((sub.live, doc)),
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

/// What an external bot is told of a change to the context: the caller's transcript as it
/// comes, and every change made by someone other than the bot itself.
fn forwarded(event: &Event) -> Option<ToBot> {
    match &event.change {
        Change::Transcript(line) if line.speaker == "caller" => Some(ToBot::Transcript {
            speaker: line.speaker.clone(),
            text: line.text.clone(),
            is_final: line.is_final,
            utterance: line.utterance,
            confidence: line.confidence,
        }),
        Change::Transcript(_) => None,
        _ if event.author == Author::Bot => None,
        _ => Some(ToBot::Context {
            event: Box::new(event.clone()),
        }),
    }
}

/// A frame from an external bot.
enum Frame {
    Text(String),
    Binary,
    /// Pings and pongs, which the WebSocket layer answers itself.
    Control,
}

/// The next frame of an external bot; `Err` when it is gone. Never ready for the built-in
/// dialog.
async fn next_frame(brain: &mut Brain) -> Result<Frame, Gone> {
    let Brain::Remote(remote) = brain else {
        return std::future::pending().await;
    };
    match remote.stream.next().await {
        Some(Ok(Message::Text(text))) => Ok(Frame::Text(text.to_string())),
        Some(Ok(Message::Binary(_))) => Ok(Frame::Binary),
        Some(Ok(Message::Close(_))) | None => Err(Gone("the bot closed the connection".into())),
        Some(Ok(_)) => Ok(Frame::Control),
        Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
            Err(Gone("the connection dropped without a close".into()))
        }
        Some(Err(e)) => Err(Gone(e.to_string())),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
