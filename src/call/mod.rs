//! One task per call: it owns the call's RTP sockets and media session, runs the dialplan
//! script on a 20 ms clock, records, and publishes every leg's audio frames. The SIP
//! endpoint owns the dialog and talks to the task through [`CallEvent`] and [`Command`].

mod bot;
mod escalate;
mod handoff;
mod leg;
mod prompt;
mod record;
pub mod script;
mod socket;
mod web;

pub use prompt::{load_fallback, load_prompts, PromptError};

use crate::calls::{self, CallHandle, CallState};
use crate::context::document::Caller;
use crate::context::{Author, Change, Context};
use crate::dialog::engine::Ending;
use crate::dialplan::{BotSpec, Dialplan};
use crate::escalation::{Code, Decision};
use crate::rtp_ports::{PortLease, PortPool};
use crate::server::Shared;
use crate::speech::{self, Listener};
use crate::transfer::{Missed, Transfer, Words};
use baton_media::AudioFrame;
use baton_sdp::Negotiated;
use baton_sip::dialog::Replaces;
use bot::{Bot, BotCommand, BotEvent};
use handoff::{AgentMedia, CallRef, Handoff, Hold, Live};
use leg::MediaLeg;
use record::Recorder;
use script::{BotEnding, Prompts, Script};
use socket::TickTime;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// News of an agent leg the call dialled (`key` names it).
    Agent { key: String, event: AgentEvent },
}

/// What happened on an agent leg.
#[derive(Debug)]
pub enum AgentEvent {
    /// Their phone rings (180 or 183).
    Ringing,
    /// They answered, with this media.
    Answered(Negotiated),
    /// The INVITE failed with this final status (408 for no answer at all from the phone,
    /// 503 when it could not be sent).
    Failed(u16),
    /// The agent's phone changed the media (hold, a new codec).
    Media(Negotiated),
    /// The answered leg ended: the agent hung up, or the dialog died.
    Bye,
    /// The agent's phone asks to transfer the call to this address (a REFER, RFC 3515),
    /// already accepted with 202: blind, or attended when it names the dialog of the
    /// agent's consultation with the target, which the target's new leg replaces.
    Refer {
        target: baton_sip::Uri,
        replaces: Option<Replaces>,
    },
    /// The agent accepted on their desktop's softphone, with the browser's SDP answer.
    Accepted(String),
    /// The agent declined or hung up on their desktop: the leg ends on our side too.
    HungUp,
    /// Agent `.0` gave the call back to the bot (the API or their desktop), saying how
    /// they resolved it.
    HandedBack(Box<(String, crate::desk::Handback)>),
}

/// What a call asks of the endpoint. `key` names the dialog (our To tag).
#[derive(Debug)]
pub enum Command {
    /// Send 180 Ringing.
    Ring { key: String },
    /// Send the prepared 200 OK.
    Answer { key: String },
    /// End the call: BYE, or a final error if it was never answered. For an agent leg:
    /// CANCEL while it rings, BYE once answered.
    Hangup { key: String },
    /// Ring an agent's phone: a new leg named `key` (our From tag), its news reported to
    /// the call whose caller leg is `caller`.
    Dial(Box<Dial>),
    /// Tell the agent on leg `key` how the transfer they asked for went (the final NOTIFY
    /// of their REFER): the status of the colleague's phone.
    Referred { key: String, status: u16 },
}

/// An INVITE to an agent.
#[derive(Debug)]
pub struct Dial {
    pub key: String,
    pub caller: String,
    /// The agent's registered Contact.
    pub target: baton_sip::Uri,
    /// The caller's number or name, for the agent's display.
    pub from_user: Option<String>,
    /// Where the agent's desktop finds the call's context (Call-Info), and baton's id of
    /// the call (X-Baton-Call-Id).
    pub context_url: String,
    pub call_id: String,
    /// Our RTP port for the leg.
    pub port: u16,
    /// The dialog the agent's phone is to replace with this leg (an attended transfer).
    pub replaces: Option<Replaces>,
}

/// Which side of a call an audio frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// What the caller said.
    Caller,
    /// What baton played to the caller (the bot, prompts, or the agent once bridged).
    Baton,
    /// What the agent said, on their leg.
    Agent,
}

/// One 20 ms frame of one side of a call, as published to subscribers.
#[derive(Debug, Clone)]
pub struct LegFrame {
    pub side: Side,
    pub frame: AudioFrame,
}

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
    /// The prompts of the dialplans `plan` was loaded with.
    pub prompts: Arc<Prompts>,
    pub sockets: RtpSockets,
    /// Known at once for an INVITE with SDP; `None` until the ACK for a delayed offer.
    pub media: Option<Negotiated>,
    pub info: CallHandle,
    pub shared: Arc<Shared>,
    pub commands: mpsc::Sender<Command>,
    pub events: mpsc::Receiver<CallEvent>,
    /// The sending end of `events`, for the agents' desktops to answer through.
    pub events_tx: mpsc::WeakSender<CallEvent>,
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

struct Call {
    id: String,
    key: String,
    info: CallHandle,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    caller: MediaLeg,
    script: Option<Script>,
    plan: Arc<Dialplan>,
    prompts: Arc<Prompts>,
    recorder: Option<Recorder>,
    tap: broadcast::Sender<LegFrame>,
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
    /// The warm transfer to an agent, while one runs.
    handoff: Option<Handoff>,
    /// The bot handed the call over itself: its last words are its goodbye, and play whole.
    handed_over: bool,
    /// The `[dialog]` node the next bot starts at (the caller is back from a transfer).
    resume_at: Option<String>,
    /// An agent is handing the caller back to the bot.
    handing_back: Option<HandingBack>,
    /// The agents' side of the call is being transcribed.
    agent_listening: bool,
    /// The call's own news channel (weak: the endpoint's end keeps it open).
    me: mpsc::WeakSender<CallEvent>,
}

/// A hand back under way: once the agent's leg has ended, the bot picks up at `node`, the
/// `[dialog]` node the dialplan's `[transfer] handback` leads the disposition to, or at
/// `return_to` when it leads nowhere.
struct HandingBack {
    node: Option<String>,
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
        prompts,
        sockets,
        media,
        info,
        shared,
        commands,
        mut events,
        events_tx,
    } = setup;
    let caller_leg = match MediaLeg::new(sockets, format!("{id}@baton")) {
        Ok(leg) => leg,
        Err(e) => {
            warn!(error = %e, "RTP socket unusable");
            let _ = commands.send(Command::Hangup { key }).await;
            finish(&shared, &info, &id, "media_error", None);
            return;
        }
    };
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
        side: Side::Caller,
    });
    let mut call = Call {
        id,
        key,
        info,
        shared,
        commands,
        caller: caller_leg,
        script: None,
        plan,
        prompts,
        recorder: None,
        tap,
        result: None,
        onsets,
        onsets_seen: 0,
        caller_number,
        hints,
        bot: None,
        escalation,
        handoff: None,
        handed_over: false,
        resume_at: None,
        handing_back: None,
        agent_listening: false,
        me: events_tx,
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
        // The decision to hand the call to a person is acted on the moment it is taken,
        // not on the next tick.
        let mut decisions = self.escalation.as_ref().map(escalate::Watcher::decisions);
        while self.result.is_none() {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => { self.handle_event(ev); }
                    None => self.result = Some("dialog_gone"),
                },
                Some(decision) = escalate::next(decisions.as_mut()) => {
                    self.start_transfer(decision).await;
                }
                _ = tick.tick() => {
                    let now = TickTime::now();
                    self.receive(now, ticks.is_multiple_of(RTCP_READ_TICKS));
                    ticks = ticks.wrapping_add(1);
                    self.frame(now.now);
                }
            }
        }
    }

    /// Feeds each leg's session what arrived since the last tick.
    fn receive(&mut self, now: TickTime, rtcp_too: bool) {
        self.caller.receive(now, rtcp_too);
        if let Some(agent) = self.handoff.as_mut().and_then(|h| h.agent.as_mut()) {
            agent.leg.receive(now, rtcp_too);
        }
    }

    /// Whether this call can go to an agent: its plan has a bot (and so an escalation
    /// policy), and there are agents.
    fn transfers(&self) -> bool {
        self.escalation.is_some() && !self.shared.agents.is_empty()
    }

    /// The decision to hand the call to a person: the bot stops (its words in progress
    /// finish), the best agent's phone rings, and the caller hears what is happening.
    async fn start_transfer(&mut self, decision: Decision) {
        if self.handoff.is_some() || !self.transfers() || self.result.is_some() {
            return;
        }
        let decided = Instant::now();
        self.bot = None;
        self.handing_back = None;
        let rest = self
            .script
            .as_mut()
            .map(|s| s.take_bot_audio(self.handed_over))
            .unwrap_or_default();
        self.handed_over = false;
        let ctx = self.shared.contexts.get(&self.id).await.ok();
        let want = ctx.as_ref().and_then(|c| {
            let intent = c.intent.name.as_ref()?;
            let dialog = self.plan.dialog.as_ref()?;
            dialog.plan.intents.get(intent)?.description.clone()
        });
        let words = Words {
            first_name: ctx
                .as_ref()
                .filter(|c| c.identity.verified)
                .and_then(|c| c.customer_data.get("first_name"))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            skill: decision.skill.clone(),
            want: want.clone(),
        };
        let need = crate::routing::Need {
            skill: decision.skill.clone(),
            language: "en".into(),
            urgency: decision.urgency,
            distressed: decision
                .reasons
                .iter()
                .any(|r| r.code == Code::Sentiment && r.score >= 0.5),
        };
        let music = self
            .plan
            .transfer
            .music
            .as_deref()
            .and_then(|p| self.prompts.file(p).cloned());
        let mut hold = Hold::new(music);
        hold.push(rest.into());
        let now = Instant::now();
        let machine = Transfer::start(
            self.plan.transfer.settings.clone(),
            need,
            crate::routing::Weights::default(),
            words,
            &mut Live {
                shared: &self.shared,
                call_id: &self.id,
                now,
            },
            now,
        );
        let started = calls::lock(&self.info).started_at;
        let mut h = Handoff::new(machine, hold, decided, want, started);
        h.act(&self.call_ref(), now);
        info!(
            took_us = decided.elapsed().as_micros() as u64,
            "transfer started"
        );
        self.handoff = Some(h);
    }

    fn call_ref(&self) -> CallRef<'_> {
        CallRef {
            id: &self.id,
            key: &self.key,
            shared: &self.shared,
            commands: &self.commands,
            caller_number: self.caller_number.as_deref(),
            events: &self.me,
            dispositions: &self.plan.transfer.handback,
        }
    }

    /// News of an agent leg.
    fn agent_event(&mut self, key: String, event: AgentEvent) {
        let now = Instant::now();
        let inactivity = self.shared.rtp_inactivity;
        let Some(h) = self.handoff.as_mut() else {
            if matches!(event, AgentEvent::Answered(_)) {
                // Answered after the transfer ended: nobody is there for them.
                let _ = self.commands.try_send(Command::Hangup { key });
            }
            return;
        };
        let mut pool = Live {
            shared: &self.shared,
            call_id: &self.id,
            now,
        };
        let current = h.agent.as_mut().filter(|a| a.key == key);
        match event {
            AgentEvent::Ringing => debug!(agent_leg = %key, "agent's phone rings"),
            AgentEvent::Answered(n) => match current {
                Some(a) => {
                    let started = match &mut a.leg {
                        AgentMedia::Sip(leg) => leg.set_media(&n, inactivity).map(drop),
                        AgentMedia::Web(_) => Err("a SIP answer on a WebRTC leg".into()),
                    };
                    answered(h, &self.commands, &mut pool, key, started, now);
                }
                None => {
                    let _ = self.commands.try_send(Command::Hangup { key });
                }
            },
            AgentEvent::Accepted(sdp) => {
                if let Some(a) = current.filter(|a| !a.answered) {
                    let started = match &mut a.leg {
                        AgentMedia::Web(leg) => leg.answer(&sdp, now),
                        AgentMedia::Sip(_) => Err("a desktop answer on a SIP leg".into()),
                    };
                    answered(h, &self.commands, &mut pool, key, started, now);
                }
            }
            AgentEvent::Failed(status) => {
                info!(agent_leg = %key, status, "agent did not take the call");
                h.machine
                    .missed(&key, Missed::of_status(status), &mut pool, now);
                self.shared.desks.ended(&key, "missed");
            }
            AgentEvent::Bye => {
                h.machine.agent_left(&key, now);
                h.aside.take_if(|a| a.key == key);
                self.shared.desks.ended(&key, "hung up");
            }
            AgentEvent::HungUp => {
                let (sip, answered) = match current {
                    Some(a) => (matches!(a.leg, AgentMedia::Sip(_)), a.answered),
                    None => (false, false),
                };
                info!(agent_leg = %key, answered, "the agent's leg ends: declined or hung up on their desktop, or handed back");
                self.shared.desks.ended(&key, "hung up");
                if answered {
                    h.machine.agent_left(&key, now);
                } else {
                    h.machine.missed(&key, Missed::Declined, &mut pool, now);
                }
                if sip {
                    let _ = self.commands.try_send(Command::Hangup { key });
                }
            }
            AgentEvent::HandedBack(back) => {
                let (agent, back) = *back;
                if !current.is_some_and(|a| a.answered) || self.handing_back.is_some() {
                    return;
                }
                self.hand_back(key, agent, back, None);
            }
            AgentEvent::Refer { target, replaces } => {
                match crate::desk::Handback::from_refer(&target) {
                    // The agent's phone transfers the caller to the bot: a hand back.
                    Some(back) => {
                        let agent = current
                            .filter(|a| a.answered)
                            .and_then(|_| h.machine.agent_on(&key))
                            .map(str::to_owned);
                        let refused = match (back, agent) {
                            (_, None) => Some(481),
                            // The endpoint refuses these before accepting the REFER.
                            (Err(_), _) => Some(400),
                            (Ok(_), _) if replaces.is_some() => Some(400),
                            (Ok(_), _) if self.handing_back.is_some() => Some(491),
                            (Ok(back), Some(agent)) => {
                                info!(agent_leg = %key, "the agent's phone transfers the caller to the bot");
                                let done = Command::Referred {
                                    key: key.clone(),
                                    status: 200,
                                };
                                self.hand_back(key.clone(), agent, back, Some(done));
                                None
                            }
                        };
                        if let Some(status) = refused {
                            let _ = self.commands.try_send(Command::Referred { key, status });
                        }
                    }
                    None => {
                        let to = target
                            .user()
                            .and_then(|user| self.shared.agents.by_sip_user(user));
                        info!(agent_leg = %key, %target, to = to.as_deref().unwrap_or("nobody"), attended = replaces.is_some(), "the agent transfers the call");
                        if let Err(status) =
                            h.machine
                                .referred(&key, to.as_deref(), replaces, &mut pool, now)
                        {
                            let _ = self.commands.try_send(Command::Referred { key, status });
                        }
                    }
                }
            }
            AgentEvent::Media(n) => {
                // The phone of an agent set aside may hold or resume the call meanwhile.
                let aside = h.aside.as_mut().filter(|a| a.key == key);
                if let Some(AgentMedia::Sip(leg)) = current.or(aside).map(|a| &mut a.leg) {
                    if let Err(e) = leg.update_media(&n, inactivity) {
                        warn!(error = %e, "agent leg's new media unusable");
                    }
                }
            }
        }
        self.after_transfer_step(now);
    }

    /// Agent `agent` gives the caller on leg `key` back to the bot (the API, their desktop,
    /// or their phone's REFER to the bot): the disposition goes into the escalation record,
    /// the slots and a `handback` action into the context; once written, `then` is sent
    /// (the final NOTIFY of the phone's REFER) and the leg ends. The bot then picks up at
    /// the node the disposition leads to.
    fn hand_back(
        &mut self,
        key: String,
        agent: String,
        back: crate::desk::Handback,
        then: Option<Command>,
    ) {
        info!(agent_leg = %key, disposition = %back.disposition, "the agent hands the caller back to the bot");
        self.handing_back = Some(HandingBack {
            node: self.plan.transfer.handback.get(&back.disposition).cloned(),
        });
        self.shared
            .escalations
            .disposition(&self.id, &back.disposition);
        // Their desktop shows the call over, and no second hand back can come from it.
        self.shared.desks.ended(&key, "handed back");
        let mut changes: Vec<Change> = back
            .slots
            .into_iter()
            .map(|(name, value)| Change::Slot { name, value })
            .collect();
        changes.push(Change::Action {
            name: "handback".into(),
            detail: serde_json::json!({
                "agent": agent,
                "disposition": back.disposition,
                "notes": back.notes,
            }),
        });
        // The leg ends once this is in the context, so that the bot picking the call up
        // starts from it.
        let (contexts, id, me, commands) = (
            self.shared.contexts.clone(),
            self.id.clone(),
            self.me.clone(),
            self.commands.clone(),
        );
        tokio::spawn(
            async move {
                if let Err(e) = contexts
                    .write(&id, Author::Agent(agent), None, changes)
                    .await
                {
                    warn!(error = %e, "hand back not written to the context");
                }
                if let Some(cmd) = then {
                    let _ = commands.send(cmd).await;
                }
                if let Some(me) = me.upgrade() {
                    let _ = me
                        .send(CallEvent::Agent {
                            key,
                            event: AgentEvent::HungUp,
                        })
                        .await;
                }
            }
            .in_current_span(),
        );
    }

    /// Carries out what the transfer decided, and gives the caller back to the bot when
    /// it is over.
    fn after_transfer_step(&mut self, now: Instant) {
        let Some(mut h) = self.handoff.take() else {
            return;
        };
        h.act(&self.call_ref(), now);
        if h.agent.as_ref().is_some_and(|a| a.answered) && !self.agent_listening {
            self.agent_listening = true;
            self.listen_to_agents();
        }
        match h.returned {
            // What the caller is being told (no one could come, we will call back) is
            // heard to the end before the bot speaks again.
            Some(_) if !h.told() => self.handoff = Some(h),
            None => self.handoff = Some(h),
            Some(callback) => {
                let handed_back = self.handing_back.take().and_then(|b| b.node);
                info!(callback, node = ?handed_back, "the caller is back with the bot");
                self.resume_at = handed_back.or_else(|| self.plan.transfer.return_to.clone());
                if callback {
                    let change = Change::Action {
                        name: "callback_offered".into(),
                        detail: serde_json::json!({ "number": self.caller_number }),
                    };
                    let (contexts, id) = (self.shared.contexts.clone(), self.id.clone());
                    tokio::spawn(
                        async move {
                            let _ = contexts
                                .write(&id, Author::System, None, vec![change])
                                .await;
                        }
                        .in_current_span(),
                    );
                }
                if let Some(w) = &self.escalation {
                    w.rearm();
                }
            }
        }
    }

    /// Transcribes what agents say, as the agent's lines of the call's transcript.
    fn listen_to_agents(&self) {
        speech::listen(Listener {
            speech: self.shared.speech.clone(),
            contexts: self.shared.contexts.clone(),
            metrics: self.shared.metrics.clone(),
            call_id: self.id.clone(),
            info: self.info.clone(),
            audio: self.tap.subscribe(),
            notices: self.shared.calls.open_notices(&self.id),
            hints: self.hints.subscribe(),
            onsets: Arc::new(AtomicU32::new(0)),
            side: Side::Agent,
        });
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
                self.script = Some(Script::new(self.plan.steps.clone(), self.prompts.clone()));
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
            CallEvent::Agent { key, event } => self.agent_event(key, event),
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
        let changed = self.caller.set_media(n, self.shared.rtp_inactivity);
        self.media_set(changed.map(Some));
    }

    /// A re-negotiation: same codec keeps the session (sequence numbers continue, RFC 3550);
    /// a new codec starts a new one.
    fn update_media(&mut self, n: &Negotiated) {
        let changed = self.caller.update_media(n, self.shared.rtp_inactivity);
        self.media_set(changed);
    }

    fn media_set(&mut self, changed: Result<Option<&'static str>, String>) {
        match changed {
            Ok(Some(codec)) => calls::lock(&self.info).media.codec = codec.to_string(),
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "media setup failed");
                self.hang_up("media_error");
            }
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

    /// One 20 ms step: what the caller said in, and what they hear: the script's output,
    /// or during a transfer the hold audio and then the agent.
    fn frame(&mut self, now: Instant) {
        let Some((input, heard)) = self.caller.hear(now) else {
            return;
        };
        feed_digits(
            &mut self.script,
            self.bot.as_ref(),
            self.escalation.as_ref(),
            &self.info,
            &heard.digits,
        );
        let mut hangup = false;
        let out = if self.handoff.is_some() {
            self.transfer_frame(&input, now)
        } else {
            self.barge_in();
            self.script_frame(&input, &mut hangup)
        };
        self.caller.say(out.as_ref(), now);
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
        if heard.inactive {
            info!("no RTP from the caller: ending the call");
            self.hang_up("rtp_timeout");
        } else if hangup {
            self.hang_up("baton_bye");
        }
    }

    /// The caller spoke: a prompt playing stops, and the bot is told.
    fn barge_in(&mut self) {
        let onsets = self.onsets.load(Ordering::Acquire);
        if onsets == self.onsets_seen {
            return;
        }
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

    /// The script's frame for the caller (the bot's included); `hangup` when it is done.
    fn script_frame(&mut self, input: &AudioFrame, hangup: &mut bool) -> Option<AudioFrame> {
        let transfers = self.transfers();
        let script = self.script.as_mut()?;
        if let Some(spec) = script.bot() {
            if self.bot.is_none() {
                self.bot = Some(start_bot(
                    &self.shared,
                    &self.plan,
                    spec.clone(),
                    BotStart {
                        call_id: &self.id,
                        prompts: &self.prompts,
                        caller_number: self.caller_number.as_deref(),
                        node: self.resume_at.take(),
                    },
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
                        BotCommand::End(Ending::Escalate(reason)) if transfers => {
                            // The transfer starts on the engine's decision; the bot's
                            // last words play out meanwhile.
                            info!(%reason, "the bot hands the call over");
                            self.handed_over = true;
                            if let Some(w) = &self.escalation {
                                w.handover(reason);
                            }
                        }
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
            rec.write(input, &frame);
        }
        *hangup = turn.hangup;
        if let Some(digit) = turn.send_dtmf {
            let sent = baton_media::dtmf::DtmfTone::from_char(digit).is_some_and(|tone| {
                self.caller
                    .media
                    .as_mut()
                    .is_some_and(|m| m.session.send_dtmf(tone, script::DTMF_TONE))
            });
            if !sent {
                debug!(%digit, "DTMF not sent: the caller did not offer telephone-event");
            }
        }
        Some(frame)
    }

    /// A frame of a transfer: the agent's leg hears the whisper and then the caller; the
    /// caller hears the hold audio and then the agent.
    fn transfer_frame(&mut self, input: &AudioFrame, now: Instant) -> Option<AudioFrame> {
        let h = self.handoff.as_mut()?;
        h.collect_spoken();
        h.machine.tick(
            &mut Live {
                shared: &self.shared,
                call_id: &self.id,
                now,
            },
            now,
        );
        // Once joined, the prompt the caller is hearing finishes first (those queued after
        // it do not play); the agent hears it too, so both know where they are.
        let bridged = h.machine.bridged();
        if bridged {
            h.hold.finish_current();
        }
        let held = (!bridged || h.hold.speaking()).then(|| h.hold.frame());
        let mut from_agent = None;
        let mut whispered = None;
        let mut agent_silent = None;
        if let Some(a) = h.agent.as_mut() {
            if let Some((frame, heard)) = a.leg.hear(now) {
                if heard.inactive {
                    agent_silent = Some((a.key.clone(), matches!(a.leg, AgentMedia::Sip(_))));
                }
                from_agent = Some(frame);
            }
            let to_agent = match a.whisper_frame() {
                Some((frame, done)) => {
                    if done {
                        whispered = Some(a.key.clone());
                    }
                    Some(frame)
                }
                None if bridged => Some(held.clone().unwrap_or_else(|| input.clone())),
                // Answered, whisper still rendering: silence keeps the stream going.
                None if a.answered => Some(AudioFrame::silence()),
                None => None,
            };
            a.leg.say(to_agent.as_ref(), now);
        }
        if let Some(key) = whispered {
            h.machine.whispered(&key, now);
        }
        if let Some((key, sip)) = agent_silent {
            info!("no media from the agent: their leg ends");
            h.machine.agent_left(&key, now);
            self.shared.desks.ended(&key, "no audio");
            if sip {
                let _ = self.commands.try_send(Command::Hangup { key });
            }
        }
        let out = held.unwrap_or_else(|| from_agent.clone().unwrap_or_else(AudioFrame::silence));
        if let Some(frame) = from_agent {
            let _ = self.tap.send(LegFrame {
                side: Side::Agent,
                frame,
            });
        }
        self.after_transfer_step(now);
        Some(out)
    }
}

/// The agent on leg `key` answered, and their media started (or could not).
fn answered(
    h: &mut Handoff,
    commands: &mpsc::Sender<Command>,
    pool: &mut Live<'_>,
    key: String,
    started: Result<(), String>,
    now: Instant,
) {
    let shared = pool.shared;
    let Some(a) = h.agent.as_mut().filter(|a| a.key == key) else {
        return;
    };
    match started {
        Err(e) => {
            // An answer whose media cannot work is no answer: the next agent is tried.
            warn!(error = %e, "agent leg's media unusable");
            h.machine.missed(&key, Missed::Unreachable, pool, now);
            shared.desks.ended(&key, "media failed");
            if matches!(a.leg, AgentMedia::Sip(_)) {
                let _ = commands.try_send(Command::Hangup { key });
            }
        }
        Ok(()) => {
            a.answered = true;
            info!(
                agent_leg = %key,
                after_ms = now.saturating_duration_since(h.decided).as_millis() as u64,
                "agent answered"
            );
            shared.desks.connected(&key);
            h.machine.answered(&key, now);
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
        // An agent still ringing or talking is let go with the caller.
        if let Some(mut h) = self.handoff.take() {
            let now = Instant::now();
            h.machine.caller_left(
                &mut Live {
                    shared: &self.shared,
                    call_id: &self.id,
                    now,
                },
                now,
            );
            h.act(&self.call_ref(), now);
        }
        let stats = self.caller.stats();
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
    let (contexts, escalations, id) = (
        shared.contexts.clone(),
        shared.escalations.clone(),
        id.to_owned(),
    );
    // Called from Drop, which cannot wait; the close, and the final snapshot's way to
    // disk, goes on in its own task.
    tokio::spawn(async move {
        if let Ok(doc) = contexts.get(&id).await {
            escalations.ended(&doc);
        }
        if let Err(e) = contexts.close(&id).await {
            warn!(error = %e, "context not closed");
        }
    });
    info!(result, "call ended");
}

/// Which call a bot starts for, and where in its dialog.
struct BotStart<'a> {
    call_id: &'a str,
    prompts: &'a Arc<Prompts>,
    caller_number: Option<&'a str>,
    /// The `[dialog]` node to start at; the start node when `None`.
    node: Option<String>,
}

/// Starts the bot of a `bot` step: the dialplan's built-in dialog.
fn start_bot(
    shared: &Arc<Shared>,
    plan: &Arc<Dialplan>,
    spec: BotSpec,
    start: BotStart<'_>,
    hints: &watch::Sender<String>,
    info: &CallHandle,
) -> BotLink {
    let BotStart {
        call_id,
        prompts,
        caller_number,
        node,
    } = start;
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
        prompts: prompts.clone(),
        outbound: shared.outbound.clone(),
        hints: hints.clone(),
        plan_hints: plan.speech_hints.clone(),
        commands,
        events,
        caller_audio,
        call_started,
        start_at: node,
        followups: crate::followup::ForCall {
            service: shared.followups.clone(),
            plan: plan.clone(),
        },
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
