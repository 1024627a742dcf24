//! One task per call: it owns the call's RTP sockets and media session, runs the dialplan
//! script on a 20 ms clock, records, and publishes every leg's audio frames. The SIP
//! endpoint owns the dialog and talks to the task through [`CallEvent`] and [`Command`].

mod bot;
mod escalate;
mod prompt;
mod record;
pub mod script;
mod socket;

pub use prompt::{load_fallback, load_prompts, PromptError};

use crate::calls::{self, CallHandle, CallState};
use crate::context::document::Caller;
use crate::context::{Change, Context};
use crate::dialog::engine::Ending;
use crate::dialplan::{BotSpec, Dialplan};
use crate::rtp_ports::{PortLease, PortPool};
use crate::server::Shared;
use crate::speech::{self, Listener};
use baton_media::jitter::Playout;
use baton_media::rtp::{RtpConfig, RtpEvent, RtpSession};
use baton_media::stats::LegStats;
use baton_media::{AudioFrame, CodecKind, Decoder, Encoder};
use baton_sdp::{Codec, Negotiated};
use bot::{Bot, BotCommand, BotEvent};
use record::Recorder;
use script::{BotEnding, Script};
use socket::{MediaSocket, TickTime};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, info_span, warn, Instrument};

/// What the endpoint tells a call.
#[derive(Debug)]
pub enum CallEvent {
    /// The ACK arrived; for a delayed offer it carries the negotiated media.
    Acked(Option<Negotiated>),
    /// A re-INVITE or UPDATE changed the media (hold, unhold, new address or codec).
    Media(Negotiated),
    /// A key press signalled in SIP (INFO) rather than in the media.
    Dtmf(char),
    /// The caller hung up.
    Bye,
    /// The caller cancelled before the answer.
    Cancelled,
    /// The dialog ended for a reason the call could not see (ACK timeout, session expiry).
    Gone(&'static str),
}

/// What a call asks of the endpoint. `key` names the dialog (our To tag).
#[derive(Debug)]
pub enum Command {
    /// Send 180 Ringing.
    Ring { key: String },
    /// Send the prepared 200 OK.
    Answer { key: String },
    /// End the call: BYE, or a final error if it was never answered.
    Hangup { key: String },
}

/// Which side of a call an audio frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// What the caller said.
    Caller,
    /// What baton played to the caller.
    Baton,
}

/// One 20 ms frame of one side of a call, as published to subscribers.
#[derive(Debug, Clone)]
pub struct LegFrame {
    pub side: Side,
    pub frame: AudioFrame,
}

/// Empty playout slots concealed before the caller's side is taken as silent (80 ms, the
/// length of the G.711 concealment fade).
const CONCEAL_UNDERRUN: u32 = 4;

/// Frames (both sides, so about 1.3 s of a call) a slow subscriber may fall behind before it
/// misses the oldest; the media path never waits. A power of two, as the channel rounds up.
pub const AUDIO_TAP_DEPTH: usize = 128;

/// The RTCP socket is read every fifth tick (100 ms): reports come every few seconds and
/// carry their own arrival stamps, so a poll each tick would be a wasted system call.
const RTCP_READ_TICKS: u32 = 5;

/// An RTP/RTCP socket pair on a leased port.
pub struct RtpSockets {
    rtp: std::net::UdpSocket,
    rtcp: std::net::UdpSocket,
    lease: PortLease,
}

impl RtpSockets {
    /// Binds the next free even port and the one above it, skipping ports other programs hold.
    pub fn bind(pool: &Arc<PortPool>, ip: IpAddr) -> Option<RtpSockets> {
        for _ in 0..32 {
            let lease = pool.lease()?;
            let port = lease.port();
            let pair = std::net::UdpSocket::bind(SocketAddr::new(ip, port)).and_then(|rtp| {
                let rtcp = std::net::UdpSocket::bind(SocketAddr::new(ip, port + 1))?;
                rtp.set_nonblocking(true)?;
                rtcp.set_nonblocking(true)?;
                Ok((rtp, rtcp))
            });
            match pair {
                Ok((rtp, rtcp)) => return Some(RtpSockets { rtp, rtcp, lease }),
                Err(e) => debug!(port, error = %e, "RTP port busy; trying the next"),
            }
        }
        None
    }

    /// The RTP port (RTCP is one above).
    pub fn port(&self) -> u16 {
        self.lease.port()
    }
}

/// Everything a call task starts with.
pub struct CallSetup {
    pub id: String,
    /// The calling number (the From URI's user part), when there is one.
    pub caller: Option<String>,
    pub key: String,
    pub plan: Arc<Dialplan>,
    pub sockets: RtpSockets,
    /// Known at once for an INVITE with SDP; `None` until the ACK for a delayed offer.
    pub media: Option<Negotiated>,
    pub info: CallHandle,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Sender<Command>,
    pub events: mpsc::Receiver<CallEvent>,
}

/// A fresh id for a call: 16 hex digits, unguessable, safe in file names.
pub fn new_call_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Starts the call's task.
pub fn spawn(setup: CallSetup) {
    let span = info_span!("call", call = %setup.id);
    tokio::spawn(run(setup).instrument(span));
}

/// The media state of a negotiated leg.
struct Media {
    session: RtpSession,
    decoder: Decoder,
    encoder: Encoder,
    remote: SocketAddr,
    remote_rtcp: SocketAddr,
    can_send: bool,
    /// Consecutive slots the jitter buffer had nothing for.
    underrun: u32,
    /// What the leg's sessions before a codec change counted: the call's figures cover
    /// the whole call, not only its last codec.
    earlier: LegStats,
}

impl Media {
    fn new(n: &Negotiated, id: &str, inactivity: Duration, now: Instant) -> Result<Media, String> {
        let kind = codec_kind(n.codec.codec);
        let mut config = RtpConfig::new(kind, n.codec.payload_type, format!("{id}@baton"));
        config.telephone_event_pt = n.telephone_event.map(|t| t.payload_type);
        config.remote_rtp = Some(n.remote_rtp);
        config.remote_rtcp = Some(n.remote_rtcp);
        config.inactivity_timeout = Some(inactivity);
        Ok(Media {
            session: RtpSession::new(config, now, SystemTime::now()).map_err(|e| e.to_string())?,
            decoder: Decoder::new(kind).map_err(|e| e.to_string())?,
            encoder: Encoder::new(kind).map_err(|e| e.to_string())?,
            remote: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            can_send: n.can_send(),
            underrun: 0,
            earlier: LegStats::default(),
        })
    }

    /// The leg's figures over every session it had.
    fn stats(&self) -> LegStats {
        self.session.stats().after(&self.earlier)
    }
}

struct Call {
    id: String,
    key: String,
    info: CallHandle,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    rtp: MediaSocket,
    rtcp: MediaSocket,
    media: Option<Media>,
    script: Option<Script>,
    plan: Arc<Dialplan>,
    recorder: Option<Recorder>,
    tap: broadcast::Sender<LegFrame>,
    payload: Vec<u8>,
    /// Why the call ended, once it has.
    result: Option<&'static str>,
    /// The caller's speech onsets as the speech listener counts them, and how many the
    /// script has been told of.
    onsets: Arc<AtomicU32>,
    onsets_seen: u32,
    /// The calling number, for the bot to find the customer by.
    caller_number: Option<String>,
    /// The recogniser's hints for this call, which the bot updates question by question.
    hints: watch::Sender<String>,
    /// The bot, while a `bot` step has the call.
    bot: Option<BotLink>,
    /// The escalation engine, stopped with the call.
    escalation: Option<escalate::Watcher>,
}

/// The call's end of the channels to its bot.
struct BotLink {
    events: mpsc::Sender<BotEvent>,
    commands: mpsc::Receiver<BotCommand>,
    /// The caller's audio, frame by frame, for a bot that listens itself.
    caller_audio: Option<mpsc::Sender<Box<[i16]>>>,
}

/// Bot prompts queued to play at most; a bot saying more waits.
const MAX_QUEUED_PROMPTS: usize = 16;
/// Audio a bot may stream ahead of what the caller hears, in samples (10 s): a bot
/// sending more waits, as its WebSocket is no longer read.
const MAX_STREAMED: usize = 10 * baton_media::SAMPLE_RATE as usize;
/// Caller frames in flight to a bot that listens itself (1 s); a bot that falls further
/// behind misses frames (logged) rather than holding up the call.
const CALLER_AUDIO_FRAMES: usize = 50;

/// Bot commands and events in flight: a few sentences and key presses. The media path
/// never waits on the bot: a full channel drops the event (logged).
const BOT_CHANNEL: usize = 64;

impl BotLink {
    fn send(&self, event: BotEvent) {
        // A bot that has finished has nothing to be told.
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(event) {
            debug!(?event, "the bot is not keeping up: event dropped");
        }
    }

    /// Passes a frame of the caller's audio to a bot that listens itself.
    fn hear(&self, samples: &[i16]) {
        let Some(audio) = &self.caller_audio else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = audio.try_send(samples.into()) {
            debug!("the bot is not keeping up with the caller's audio: frame dropped");
        }
    }
}

async fn run(setup: CallSetup) {
    let CallSetup {
        id,
        caller,
        key,
        plan,
        sockets,
        media,
        info,
        shared,
        commands,
        mut events,
    } = setup;
    let (rtp, rtcp) = match (
        MediaSocket::new(sockets.rtp),
        MediaSocket::new(sockets.rtcp),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            warn!(error = %e, "RTP socket unusable");
            let _ = commands.send(Command::Hangup { key }).await;
            finish(&shared, &info, &id, "media_error", None);
            return;
        }
    };
    let _lease = sockets.lease;
    let caller_number = caller.clone();
    open_context(&shared, &id, caller).await;
    let escalation = plan.escalation.clone().map(|policy| {
        escalate::watch(
            id.clone(),
            shared.contexts.clone(),
            policy,
            shared.escalations.clone(),
        )
    });
    let (hints, hints_rx) = watch::channel(plan.speech_hints.clone());
    let tap = shared.calls.open_audio_tap(&id);
    let onsets = Arc::new(AtomicU32::new(0));
    speech::listen(Listener {
        speech: shared.speech.clone(),
        contexts: shared.contexts.clone(),
        metrics: shared.metrics.clone(),
        call_id: id.clone(),
        info: info.clone(),
        audio: tap.subscribe(),
        notices: shared.calls.open_notices(&id),
        hints: hints_rx,
        onsets: onsets.clone(),
    });
    let mut call = Call {
        id,
        key,
        info,
        shared,
        commands,
        rtp,
        rtcp,
        media: None,
        script: None,
        plan,
        recorder: None,
        tap,
        payload: Vec::with_capacity(512),
        result: None,
        onsets,
        onsets_seen: 0,
        caller_number,
        hints,
        bot: None,
        escalation,
    };
    if let Some(n) = media {
        call.set_media(&n);
    }
    call.answer(&mut events).await;
    if call.result.is_none() {
        call.set_state(CallState::Answering);
        call.serve(&mut events).await;
    }
}

impl Call {
    /// Rings for the dialplan's ring time (so a caller can still CANCEL), then answers.
    async fn answer(&mut self, events: &mut mpsc::Receiver<CallEvent>) {
        let ring = Duration::from_secs(u64::from(self.plan.ring_secs));
        if !ring.is_zero() {
            self.command(Command::Ring {
                key: self.key.clone(),
            })
            .await;
            let deadline = tokio::time::sleep(ring);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    ev = events.recv() => match ev {
                        Some(ev) => if self.handle_event(ev) { return },
                        None => { self.result = Some("dialog_gone"); return }
                    },
                }
            }
        }
        self.command(Command::Answer {
            key: self.key.clone(),
        })
        .await;
    }

    async fn command(&mut self, cmd: Command) {
        // The endpoint outlives every call; a closed channel means shutdown, nothing to do.
        let _ = self.commands.send(cmd).await;
    }

    /// The answered call: media in and out on a 20 ms clock until someone hangs up.
    async fn serve(&mut self, events: &mut mpsc::Receiver<CallEvent>) {
        let mut tick = tokio::time::interval(baton_media::FRAME_DURATION);
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut ticks = 0u32;
        while self.result.is_none() {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => { self.handle_event(ev); }
                    None => self.result = Some("dialog_gone"),
                },
                _ = tick.tick() => {
                    let now = TickTime::now();
                    self.receive(now, ticks % RTCP_READ_TICKS == 0);
                    ticks = ticks.wrapping_add(1);
                    self.frame(now.now);
                }
            }
        }
    }

    /// Feeds the session what arrived since the last tick (without a session, it is read
    /// and dropped so that it does not pile up).
    fn receive(&mut self, now: TickTime, rtcp_too: bool) {
        let mut media = self.media.as_mut();
        self.rtp.drain(now, |data, from, at| {
            if let Some(m) = media.as_mut() {
                m.session.handle_rtp(data, from, at);
            }
        });
        if rtcp_too {
            self.rtcp.drain(now, |data, from, at| {
                if let Some(m) = media.as_mut() {
                    m.session.handle_rtcp(data, from, at);
                }
            });
        }
    }

    /// Applies an endpoint event; true when the call is over.
    fn handle_event(&mut self, ev: CallEvent) -> bool {
        match ev {
            // The first ACK starts the call; later ones close re-INVITEs, and carry the
            // answer when our re-INVITE 200 held the offer.
            CallEvent::Acked(media) if self.script.is_none() => {
                if let Some(n) = media {
                    self.set_media(&n);
                }
                self.set_state(CallState::Active);
                self.script = Some(Script::new(
                    self.plan.steps.clone(),
                    self.shared.prompts.clone(),
                ));
            }
            CallEvent::Acked(media) => {
                if let Some(n) = media {
                    self.media_changed(&n);
                }
            }
            CallEvent::Media(n) => self.media_changed(&n),
            CallEvent::Dtmf(digit) => {
                feed_digits(
                    &mut self.script,
                    self.bot.as_ref(),
                    self.escalation.as_ref(),
                    &self.info,
                    &[digit],
                );
            }
            CallEvent::Bye => self.result = Some("caller_bye"),
            CallEvent::Cancelled => self.result = Some("cancelled"),
            CallEvent::Gone(why) => self.result = Some(why),
        }
        self.result.is_some()
    }

    fn media_changed(&mut self, n: &Negotiated) {
        let held = !n.can_send() || n.remote_rtp.ip().is_unspecified();
        self.set_state(if held {
            CallState::Held
        } else {
            CallState::Active
        });
        self.update_media(n);
    }

    fn set_media(&mut self, n: &Negotiated) {
        let inactivity = self.shared.rtp_inactivity;
        match Media::new(n, &self.id, inactivity, Instant::now()) {
            Ok(mut m) => {
                if let Some(old) = &self.media {
                    m.earlier = old.stats();
                }
                calls::lock(&self.info).media.codec = n.codec.name().to_string();
                self.media = Some(m);
            }
            Err(e) => {
                warn!(error = %e, "media setup failed");
                self.hang_up("media_error");
            }
        }
    }

    /// A re-negotiation: same codec keeps the session (sequence numbers continue, RFC 3550);
    /// a new codec starts a new one.
    fn update_media(&mut self, n: &Negotiated) {
        match &mut self.media {
            Some(m) if m.encoder.kind() == codec_kind(n.codec.codec) => {
                m.remote = n.remote_rtp;
                m.remote_rtcp = n.remote_rtcp;
                m.can_send = n.can_send() && !n.remote_rtp.ip().is_unspecified();
            }
            _ => self.set_media(n),
        }
    }

    fn hang_up(&mut self, why: &'static str) {
        if self.result.is_none() {
            self.result = Some(why);
            let _ = self.commands.try_send(Command::Hangup {
                key: self.key.clone(),
            });
        }
    }

    fn set_state(&self, state: CallState) {
        calls::lock(&self.info).state = state;
    }

    /// One 20 ms step: what the caller said in, what the script says out.
    fn frame(&mut self, now: Instant) {
        let Some(m) = &mut self.media else { return };
        if now >= m.session.poll_timeout() {
            m.session.handle_timeout(now);
        }
        let mut digits = Vec::new();
        let mut inactive = false;
        while let Some(ev) = m.session.poll_event() {
            match ev {
                RtpEvent::RemoteLatched(addr) => m.remote = addr,
                RtpEvent::RemoteRtcpLatched(addr) => m.remote_rtcp = addr,
                RtpEvent::Dtmf(tone) => digits.push(tone.as_char()),
                RtpEvent::Inactive => inactive = true,
                RtpEvent::SsrcChanged { old, new } => debug!(old, new, "caller SSRC changed"),
                RtpEvent::Bye => debug!("caller sent RTCP BYE"),
            }
        }
        let input = match m.session.pop_playout(now) {
            Playout::Frame(p) => {
                m.underrun = 0;
                m.decoder
                    .decode(&p)
                    .unwrap_or_else(|_| m.decoder.conceal(None))
            }
            Playout::Lost { next } => {
                m.underrun = 0;
                m.decoder.conceal(next.as_deref())
            }
            // A packet late for its slot mid-stream is concealed like a lost one; once the
            // caller has been silent for a while (hold, end of talkspurt) it is silence.
            Playout::Empty if m.underrun < CONCEAL_UNDERRUN => {
                m.underrun += 1;
                m.decoder.conceal(None)
            }
            Playout::Empty => AudioFrame::silence(),
        };
        let mut out = None;
        let mut hangup = false;
        feed_digits(
            &mut self.script,
            self.bot.as_ref(),
            self.escalation.as_ref(),
            &self.info,
            &digits,
        );
        let onsets = self.onsets.load(Ordering::Acquire);
        if onsets != self.onsets_seen {
            self.onsets_seen = onsets;
            let cut = self
                .script
                .as_mut()
                .map(Script::barge_in)
                .unwrap_or_default();
            if cut.prompts > 0 || cut.bot_audio {
                info!("the caller spoke over a prompt: prompt stopped");
                if let Some(bot) = &self.bot {
                    (0..cut.prompts).for_each(|_| bot.send(BotEvent::Cut));
                    if cut.bot_audio {
                        bot.send(BotEvent::AudioCut);
                    }
                }
            }
        }
        if let Some(script) = &mut self.script {
            if let Some(spec) = script.bot() {
                if self.bot.is_none() {
                    self.bot = Some(start_bot(
                        &self.shared,
                        &self.plan,
                        spec.clone(),
                        &self.id,
                        self.caller_number.as_deref(),
                        &self.hints,
                        &self.info,
                    ));
                }
                if let Some(bot) = &mut self.bot {
                    // What is not taken waits in the channel, and a bot that says more
                    // than the caller can hear waits on it: memory stays bounded.
                    while script.bot_queued() < MAX_QUEUED_PROMPTS
                        && script.bot_streamed() < MAX_STREAMED
                    {
                        let Ok(cmd) = bot.commands.try_recv() else {
                            break;
                        };
                        match cmd {
                            BotCommand::Play(samples) => script.bot_play(samples),
                            BotCommand::Stream(samples) => script.bot_stream(&samples),
                            BotCommand::End(ending) => {
                                info!(?ending, "the bot is done");
                                script.bot_end(match ending {
                                    Ending::Hangup => BotEnding::Hangup,
                                    Ending::Escalate(_) => BotEnding::NextStep,
                                });
                            }
                        }
                    }
                }
            }
            let turn = script.turn(input.samples());
            if let Some(bot) = &self.bot {
                (0..turn.bot_played).for_each(|_| bot.send(BotEvent::Played));
                if turn.bot_audio_played {
                    bot.send(BotEvent::AudioPlayed);
                }
                bot.hear(input.samples());
            }
            let frame = AudioFrame::new(turn.out);
            if turn.record {
                let rec = self.recorder.get_or_insert_with(|| {
                    Recorder::create(&self.shared.recordings, &self.id, &self.info)
                });
                rec.write(&input, &frame);
            }
            hangup = turn.hangup;
            out = Some(frame);
            if let Some(digit) = turn.send_dtmf {
                let sent = baton_media::dtmf::DtmfTone::from_char(digit)
                    .is_some_and(|tone| m.session.send_dtmf(tone, script::DTMF_TONE));
                if !sent {
                    debug!(%digit, "DTMF not sent: the caller did not offer telephone-event");
                }
            }
        }
        if m.can_send {
            if let Some(frame) = &out {
                self.payload.clear();
                if m.encoder.encode(frame, &mut self.payload).is_ok() {
                    let pkt = m.session.packetize(&self.payload, now);
                    self.rtp.send_to(&pkt, m.remote);
                }
            }
        }
        while let Some(pkt) = m.session.poll_rtcp() {
            self.rtcp.send_to(&pkt, m.remote_rtcp);
        }
        // Subscribers get the frames after the packet left: they never delay the media.
        let _ = self.tap.send(LegFrame {
            side: Side::Caller,
            frame: input,
        });
        if let Some(frame) = out {
            let _ = self.tap.send(LegFrame {
                side: Side::Baton,
                frame,
            });
        }
        if inactive {
            info!("no RTP from the caller: ending the call");
            self.hang_up("rtp_timeout");
        } else if hangup {
            self.hang_up("baton_bye");
        }
    }
}

/// Final bookkeeping, however the task ends (a panic included, so that no call is left
/// half-registered): recordings closed, figures counted, the call moved to ended.
impl Drop for Call {
    fn drop(&mut self) {
        let result = match self.result {
            Some(r) => r,
            None => {
                let _ = self.commands.try_send(Command::Hangup {
                    key: self.key.clone(),
                });
                "internal_error"
            }
        };
        if let Some(rec) = self.recorder.take() {
            rec.finish();
        }
        let stats = self.media.as_ref().map(Media::stats);
        finish(&self.shared, &self.info, &self.id, result, stats);
    }
}

/// Key presses from either path (RFC 4733 in the media, INFO in SIP): to the script and the
/// bot, and to the call's record in the order they came.
fn feed_digits(
    script: &mut Option<Script>,
    bot: Option<&BotLink>,
    escalation: Option<&escalate::Watcher>,
    info: &CallHandle,
    digits: &[char],
) {
    if digits.is_empty() {
        return;
    }
    if let Some(script) = script {
        for d in digits {
            script.dtmf(*d);
        }
    }
    if let Some(bot) = bot {
        digits.iter().for_each(|d| bot.send(BotEvent::Key(*d)));
    }
    if let Some(escalation) = escalation {
        digits.iter().for_each(|d| escalation.key(*d));
    }
    let mut info = calls::lock(info);
    info.dtmf.extend(digits);
    debug!(digits = %info.dtmf, "DTMF");
}

fn codec_kind(c: Codec) -> CodecKind {
    match c {
        Codec::Pcmu => CodecKind::Pcmu,
        Codec::Pcma => CodecKind::Pcma,
        Codec::Opus => CodecKind::Opus,
    }
}

fn finish(
    shared: &Shared,
    info: &CallHandle,
    id: &str,
    result: &'static str,
    stats: Option<baton_media::stats::LegStats>,
) {
    {
        let mut i = calls::lock(info);
        i.result = Some(result.to_string());
        if let Some(s) = &stats {
            i.media.packets_in = s.packets_in;
            i.media.packets_out = s.packets_out;
            i.media.lost = s.lost;
            i.media.jitter_ms = s.jitter_ms;
        }
    }
    if let Some(s) = stats {
        shared
            .metrics
            .rtp(s.packets_in, s.packets_out, s.lost, s.malformed);
        if s.packets_in > 0 {
            shared.metrics.observe_jitter(s.jitter_ms);
        }
    }
    shared.metrics.call_ended(result);
    shared.calls.finish(id);
    let (contexts, id) = (shared.contexts.clone(), id.to_owned());
    // Called from Drop, which cannot wait; the close, and the final snapshot's way to
    // disk, goes on in its own task.
    tokio::spawn(async move {
        if let Err(e) = contexts.close(&id).await {
            warn!(error = %e, "context not closed");
        }
    });
    info!(result, "call ended");
}

/// Starts the bot of a `bot` step: the dialplan's built-in dialog.
fn start_bot(
    shared: &Arc<Shared>,
    plan: &Dialplan,
    spec: BotSpec,
    call_id: &str,
    caller_number: Option<&str>,
    hints: &watch::Sender<String>,
    info: &CallHandle,
) -> BotLink {
    let (events_tx, events) = mpsc::channel(BOT_CHANNEL);
    let (commands, commands_rx) = mpsc::channel(BOT_CHANNEL);
    let (caller_audio_tx, caller_audio) = match &spec {
        BotSpec::Remote { audio: true, .. } => {
            let (tx, rx) = mpsc::channel(CALLER_AUDIO_FRAMES);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let (called, call_started) = {
        let info = calls::lock(info);
        (info.to.clone(), info.started_at)
    };
    bot::spawn(Bot {
        spec,
        dialog: plan.dialog.clone(),
        call_id: call_id.to_owned(),
        caller_number: caller_number.map(str::to_owned),
        called,
        contexts: shared.contexts.clone(),
        tts: shared.tts.clone(),
        prompts: shared.prompts.clone(),
        outbound: shared.outbound.clone(),
        hints: hints.clone(),
        plan_hints: plan.speech_hints.clone(),
        commands,
        events,
        caller_audio,
        call_started,
    });
    BotLink {
        events: events_tx,
        commands: commands_rx,
        caller_audio: caller_audio_tx,
    }
}

/// Starts the call's shared context with what the network says about the caller. The
/// number is in the first version, so that the store can start it with the caller's
/// memory of earlier calls.
async fn open_context(shared: &Shared, id: &str, caller: Option<String>) {
    let number = caller.filter(|number| {
        let change = Change::Caller {
            number: number.clone(),
        };
        // A From user the context refuses (too long) is no reason to fail the call.
        change
            .validate()
            .map_err(|e| warn!(error = %e, "caller number not recorded"))
            .is_ok()
    });
    let doc = Context {
        call_id: id.to_owned(),
        caller: Caller {
            number,
            memory: None,
        },
        ..Context::default()
    };
    if let Err(e) = shared.contexts.create(doc).await {
        warn!(error = %e, "no context for this call");
    }
}
