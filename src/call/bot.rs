//! Runs the bot of a call beside the call's media task: the dialplan's built-in dialog, or
//! an external bot over the bot protocol (`crate::dialog::protocol`). Either way the bot
//! hears the caller through the call's shared context (the transcripts speech writes
//! there), speaks through text to speech and the call's script, and writes what it learns
//! back to the context: the bot reads and writes the same memory an agent will.
//!
//! An external bot that cannot be reached, or goes away mid-call, hands the call to the
//! dialplan's `[dialog]` at the node the step names, at once: the caller never waits on a
//! bot that is not there.

use super::script::Prompts;
use crate::context::document::TranscriptLine;
use crate::context::{Author, Change, Context, ContextStore, Event};
use crate::dialog::crm;
use crate::dialog::engine::{Carried, Dialog, Ending, Input, Output};
use crate::dialog::protocol::{self, AudioFormat, FromBot, ToBot, Verb};
use crate::dialog::BuiltinDialog;
use crate::dialplan::BotSpec;
use crate::outbound::Outbound;
use crate::tts::Tts;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, warn, Instrument};

/// How long baton waits for an external bot to accept the connection: the caller hears
/// nothing meanwhile.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a frame to an external bot may wait for the bot to read: a bot that stops
/// reading is taken for gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest message a bot may send: bigger frames up to this get an error frame, bigger
/// still end the connection (a bot flooding baton is taken for gone).
const MAX_MESSAGE: usize = 1 << 20;
/// How long the recording of a `play` may take to fetch; the caller hears nothing meanwhile.
const PLAY_FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest recording a `play` fetches: about four minutes of 16 kHz audio.
const MAX_PLAY_BYTES: usize = 8 << 20;

/// What the bot asks of the call's media task.
#[derive(Debug)]
pub enum BotCommand {
    /// Play this after what is already queued.
    Play(Arc<[i16]>),
    /// Audio the bot streams itself, played seamlessly after what it streamed before.
    Stream(Vec<i16>),
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
    /// The bot's streamed audio has all been played.
    AudioPlayed,
    /// The bot's streamed audio was dropped: the caller spoke over it.
    AudioCut,
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
    /// The recorded prompts the dialplans name, decoded at start-up.
    pub prompts: Arc<Prompts>,
    pub outbound: Outbound,
    /// The recogniser's hints for this call: the dialplan's, then the current question's.
    pub hints: watch::Sender<String>,
    pub plan_hints: String,
    pub commands: mpsc::Sender<BotCommand>,
    pub events: mpsc::Receiver<BotEvent>,
    /// The caller's audio, for an external bot that listens itself (`audio = "l16"`).
    pub caller_audio: Option<mpsc::Receiver<Box<[i16]>>>,
    /// When the call began, for the time of the bot's lines in the transcript.
    pub call_started: SystemTime,
    /// The `[dialog]` node to start at (the caller is back from an agent); the dialog's
    /// start when `None`.
    pub start_at: Option<String>,
    /// The plan's follow-ups, which its dialog's nodes may ask for.
    pub followups: crate::followup::ForCall,
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

/// What the bot does next: what the dialog decided, or a recording an external bot asked
/// to play.
enum Todo {
    Dialog(Output),
    Clip(Arc<[i16]>),
}

/// A bot's connection, plain or over TLS.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

type Socket = WebSocketStream<Box<dyn Connection>>;

/// An external bot on the other end of a WebSocket.
struct Remote {
    sink: SplitSink<Socket, Message>,
    stream: SplitStream<Socket>,
    /// What its verbs asked for, not yet done.
    pending: VecDeque<Todo>,
    /// The verb (`say`, `play`) and id of each prompt queued on the call, oldest first.
    queued: VecDeque<(&'static str, Option<String>)>,
    /// The id of the `gather` waiting for an answer.
    gather: Option<String>,
}

/// Why an external bot is no longer driving the call.
#[derive(Debug)]
struct Gone(String);

impl Remote {
    async fn connect(url: &str, outbound: &Outbound) -> Result<Remote, Gone> {
        let socket = tokio::time::timeout(CONNECT_TIMEOUT, open(url, outbound))
            .await
            .map_err(|_| Gone(format!("no answer within {CONNECT_TIMEOUT:?}")))??;
        let (sink, stream) = socket.split();
        Ok(Remote {
            sink,
            stream,
            pending: VecDeque::new(),
            queued: VecDeque::new(),
            gather: None,
        })
    }

    async fn send(&mut self, frame: &ToBot) -> Result<(), Gone> {
        self.send_message(Message::text(frame.to_text())).await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), Gone> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Gone(e.to_string())),
            Err(_) => Err(Gone(format!("the bot did not read for {SEND_TIMEOUT:?}"))),
        }
    }

    /// Turns the verbs of one frame into things to do; context writes are answered at
    /// once, and recordings to play are fetched at once.
    async fn take(&mut self, verbs: Vec<Verb>, bot: &Bot) -> Result<(), Gone> {
        for verb in verbs {
            match verb {
                Verb::Say { text, id } => {
                    self.queued.push_back(("say", id));
                    self.pending.push_back(Todo::Dialog(Output::Say(text)));
                }
                Verb::Play { url, id } => match bot.recording(&url).await {
                    Ok(audio) => {
                        self.queued.push_back(("play", id));
                        self.pending.push_back(Todo::Clip(audio));
                    }
                    Err(why) => {
                        warn!(%url, reason = %why, "the bot's recording cannot be played");
                        let refused = ToBot::Error {
                            id,
                            message: format!("play {url}: {why}"),
                            frame: None,
                        };
                        self.send(&refused).await?;
                    }
                },
                Verb::Gather {
                    id,
                    input,
                    timeout_secs,
                    hints,
                    max_digits,
                } => {
                    self.gather = id;
                    let keys = input.contains(&protocol::Input::Dtmf);
                    self.pending.push_back(Todo::Dialog(Output::Listen {
                        hints,
                        timeout: Duration::from_secs(u64::from(timeout_secs)),
                        max_digits: if keys { max_digits as usize } else { 0 },
                        speech: input.contains(&protocol::Input::Speech),
                    }));
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
                            id: None,
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
            self.pending
                .push_back(Todo::Dialog(Output::Write(Change::Action {
                    name: "escalation_requested".into(),
                    detail: serde_json::json!({ "reason": reason }),
                })));
        }
        self.pending.push_back(Todo::Dialog(Output::End(ending)));
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
    fn poll(&mut self) -> Option<Todo> {
        match self {
            Brain::Local(dialog) => dialog.poll().map(Todo::Dialog),
            Brain::Remote(remote) => remote.pending.pop_front(),
        }
    }

    /// Whether an external bot hears the caller's audio and streams its own.
    fn streams_audio(&self, spec: &BotSpec) -> bool {
        matches!(
            (self, spec),
            (Brain::Remote(_), BotSpec::Remote { audio: true, .. })
        )
    }
}

impl Bot {
    async fn run(mut self) {
        let Some((mut feed, doc)) = self.subscribe().await else {
            return;
        };
        let mut brain = match self.spec.clone() {
            BotSpec::Dialog => match self.local(self.start_at.clone().as_deref(), &doc) {
                Some(dialog) => Brain::Local(Box::new(dialog)),
                None => return self.finish(Ending::Escalate("no_dialog".into())).await,
            },
            BotSpec::Remote {
                url,
                fallback,
                audio,
            } => {
                let started = Remote::connect(&url, &self.outbound).await;
                let hello = ToBot::SessionNew {
                    call_id: self.call_id.clone(),
                    from: self.caller_number.clone(),
                    to: self.called.clone(),
                    context: doc,
                    audio: audio.then(AudioFormat::l16),
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
            while let Some(todo) = brain.poll() {
                let audio = match todo {
                    Todo::Clip(audio) => audio,
                    Todo::Dialog(Output::Say(text)) => {
                        spoken += 1;
                        writes.push(self.line(&text, spoken));
                        self.tts.render(&text).await.audio
                    }
                    // Decoded at start-up, as the dialplan was checked.
                    Todo::Dialog(Output::Play(file)) => self
                        .prompts
                        .file(Path::new(&file))
                        .cloned()
                        .unwrap_or_else(|| self.tts.fallback()),
                    Todo::Dialog(out) => {
                        if !self.act(out, &mut listening, &mut writes, &mut brain).await {
                            return;
                        }
                        continue;
                    }
                };
                if self.commands.send(BotCommand::Play(audio)).await.is_err() {
                    return;
                }
                queued += 1;
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
            let streams = brain.streams_audio(&self.spec);
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
                            if let Some((verb, id)) = remote.queued.pop_front() {
                                to_remote = Some(ToBot::VerbDone {
                                    id,
                                    verb: verb.into(),
                                    interrupted: ev == BotEvent::Cut,
                                });
                            }
                        }
                    }
                    Some(ev @ (BotEvent::AudioPlayed | BotEvent::AudioCut)) => {
                        to_remote = Some(ToBot::VerbDone {
                            id: None,
                            verb: "audio".into(),
                            interrupted: ev == BotEvent::AudioCut,
                        });
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
                    Ok(Frame::Binary(bytes)) if streams => {
                        match l16_samples(&bytes) {
                            Ok(samples) => {
                                if self.commands.send(BotCommand::Stream(samples)).await.is_err() {
                                    return;
                                }
                            }
                            Err(message) => {
                                to_remote = Some(ToBot::Error { id: None, message, frame: None });
                            }
                        }
                    }
                    Ok(Frame::Binary(_)) => {
                        to_remote = Some(ToBot::Error {
                            id: None,
                            message: "binary frames are audio, and this bot's dialplan step has no audio = \"l16\"".into(),
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
                Some(samples) = caller_audio(&mut self.caller_audio, streams) => {
                    if let Brain::Remote(remote) = &mut brain {
                        if let Err(g) = remote.send_message(Message::binary(l16_bytes(&samples))).await {
                            gone = Some(g);
                        }
                    }
                }
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

    /// Does what the dialog decided other than speaking; false once the bot's part is over.
    async fn act(
        &self,
        out: Output,
        listening: &mut Option<Listening>,
        writes: &mut Vec<Change>,
        brain: &mut Brain,
    ) -> bool {
        match out {
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
                *listening = Some(Listening {
                    timeout,
                    max_digits,
                    speech,
                    keys: String::new(),
                    deadline: None,
                });
            }
            Output::Write(change) => writes.push(change),
            Output::FollowUp(names) => {
                // Filled from the context, so what the dialog wrote before goes first.
                self.write(std::mem::take(writes)).await;
                self.followups
                    .ask(&names, self.contexts.as_ref(), &self.call_id)
                    .await;
            }
            Output::Fetch { into, url, timeout } => {
                let result = crm::get_json(&self.outbound, &url, timeout).await;
                if let Err(why) = &result {
                    warn!(%into, reason = %why, "customer data fetch failed");
                }
                if let Brain::Local(dialog) = brain {
                    dialog.fetched(result);
                }
            }
            Output::End(ending) => {
                self.write(std::mem::take(writes)).await;
                if let Brain::Remote(remote) = brain {
                    let end = ToBot::SessionEnd {
                        reason: "the bot ended its part".into(),
                    };
                    let _ = remote.send(&end).await;
                }
                self.finish(ending).await;
                return false;
            }
            // Prompts are queued by the caller of this.
            Output::Say(_) | Output::Play(_) => {}
        }
        true
    }

    /// The built-in dialog, at its start or at `node`, carrying what the call's context
    /// `doc` holds already.
    fn local(&self, node: Option<&str>, doc: &Context) -> Option<Dialog> {
        let carried = Carried {
            slots: doc.slots.clone(),
            verified: doc
                .identity
                .customer_id
                .clone()
                .filter(|_| doc.identity.verified),
        };
        self.dialog
            .as_ref()
            .map(|d| d.start(self.caller_number.as_deref(), node, carried))
    }

    /// The external bot is not (or no longer) there: the built-in dialog takes over at
    /// `fallback`, or the bot's part ends.
    async fn take_over(&mut self, fallback: Option<&str>, why: &str) -> Option<Dialog> {
        warn!(reason = why, fallback, "external bot unavailable");
        // The built-in dialog listens through speech, not to the raw audio.
        self.caller_audio = None;
        // What the external bot wrote to the context is carried over.
        let doc = self.contexts.get(&self.call_id).await.ok();
        let dialog = match (fallback, doc) {
            (Some(node), Some(doc)) => self.local(Some(node), &doc),
            _ => None,
        };
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

    /// The recording at `url`, fetched and decoded for the call; the error says why not.
    async fn recording(&self, url: &str) -> Result<Arc<[i16]>, String> {
        let bytes = self
            .outbound
            .get(url, "audio/wav", PLAY_FETCH_TIMEOUT, MAX_PLAY_BYTES)
            .await?;
        // The WAV comes from the network: a decoder panic must not take the bot with it.
        std::panic::catch_unwind(|| super::prompt::decode_wav_bytes(&bytes))
            .unwrap_or_else(|_| Err("not a WAV baton can read".into()))
            .map_err(|e| format!("not a playable WAV: {e}"))
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
    Binary(Vec<u8>),
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
        Some(Ok(Message::Binary(bytes))) => Ok(Frame::Binary(bytes.into())),
        Some(Ok(Message::Close(_))) | None => Err(Gone("the bot closed the connection".into())),
        Some(Ok(_)) => Ok(Frame::Control),
        Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
            Err(Gone("the connection dropped without a close".into()))
        }
        Some(Err(e)) => Err(Gone(e.to_string())),
    }
}

/// Opens the WebSocket to an external bot, over TLS for `wss://`, asking for the bot
/// protocol.
async fn open(url: &str, outbound: &Outbound) -> Result<Socket, Gone> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Gone(format!("bad url: {e}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        protocol::SUBPROTOCOL
            .parse()
            .map_err(|_| Gone("bad subprotocol".into()))?,
    );
    let uri = request.uri();
    let secure = uri.scheme_str() == Some("wss");
    // A literal IPv6 address comes bracketed in a URI.
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Gone(format!("connect to {host}:{port}: {e}")))?;
    // Frames are small and each one is a turn of the conversation: no Nagle delay.
    let _ = tcp.set_nodelay(true);
    let connection: Box<dyn Connection> = if secure {
        let name = ServerName::try_from(host.clone())
            .map_err(|_| Gone(format!("not a host name for TLS: {host}")))?;
        let tls = tokio_rustls::TlsConnector::from(outbound.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| Gone(format!("TLS with {host}: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, connection, Some(config))
            .await
            .map_err(|e| Gone(e.to_string()))?;
    Ok(socket)
}

/// The next frame of the caller's audio, for an external bot that listens itself; never
/// ready otherwise.
async fn caller_audio(
    audio: &mut Option<mpsc::Receiver<Box<[i16]>>>,
    streams: bool,
) -> Option<Box<[i16]>> {
    match audio {
        Some(rx) if streams => rx.recv().await,
        _ => std::future::pending().await,
    }
}

/// Samples as the bot protocol's binary frames carry them: 16-bit little-endian.
fn l16_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The samples of a binary frame from a bot.
fn l16_samples(bytes: &[u8]) -> Result<Vec<i16>, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err(format!(
            "an audio frame of {} bytes: L16 samples are 2 bytes each",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
