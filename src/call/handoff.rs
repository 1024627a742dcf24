//! The call's side of a warm transfer ([`crate::transfer`] decides; this carries it out):
//! what the caller hears while an agent is found (the bot's last words, the bridging
//! prompt and updates over hold music, never silence), the agent's leg and its media, the
//! whisper only the agent hears, and the bridge.

use super::leg::{Heard, MediaLeg};
use super::socket::TickTime;
use super::web::WebLeg;
use super::RtpSockets;
use crate::agents::{Agents, Phone, Reachable};
use crate::context::document::TranscriptLine;
use crate::context::{Author, Change, ContextStore};
use crate::desk::RingsOn;
use crate::routing::{Candidate, Need, Overflow, Queue};
use crate::server::Shared;
use crate::transfer::{Action, Outcome, Pool, Transfer};
use baton_media::{AudioFrame, FRAME_SAMPLES};
use baton_sip::dialog::Replaces;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

/// Speech rendered for the transfer, on its way back from text to speech.
pub(super) enum Spoken {
    /// For the caller, after what is queued.
    Caller(Arc<[i16]>),
    /// The summary for the agent on leg `key`.
    Whisper { key: String, audio: Arc<[i16]> },
}

/// Rendered prompts in flight: a handful at most, one per update.
const SPOKEN_CHANNEL: usize = 16;

/// Samples below this (about -46 dBFS) at the start or end of a rendered prompt are cut:
/// text to speech pads its output with silence, which would add to the gaps the caller
/// hears between prompt and music.
const TRIM_LEVEL: i16 = 160;
/// Kept on each side of a trimmed prompt (20 ms), so that words do not start abruptly.
const TRIM_MARGIN: usize = 320;

/// How loud the music plays under a prompt (about -10 dB): the pauses between a prompt's
/// sentences are never silence, and the words stay clear above it.
const MUSIC_UNDER_PROMPT: f32 = 0.3;

/// Where the music starts: 100 ms in, past the quietest part of its fade-in.
const MUSIC_START: usize = 1600;

/// What the caller hears while on hold: the music throughout, and the queued clips in
/// order over it (the music lowered beneath them).
pub(super) struct Hold {
    music: Option<Arc<[i16]>>,
    music_pos: usize,
    queue: VecDeque<(Arc<[i16]>, usize)>,
}

impl Hold {
    pub fn new(music: Option<Arc<[i16]>>) -> Hold {
        // Hold music fades in; starting past the first 100 ms spares the caller its
        // quietest frames right after the bot stops.
        let music_pos = music.as_ref().map_or(0, |m| MUSIC_START.min(m.len() / 2));
        Hold {
            music,
            music_pos,
            queue: VecDeque::new(),
        }
    }

    /// Whether a prompt is playing.
    pub fn speaking(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Drops every prompt, the one playing too.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Lets the prompt playing finish and drops those queued after it.
    pub fn finish_current(&mut self) {
        self.queue.truncate(1);
    }

    pub fn push(&mut self, clip: Arc<[i16]>) {
        if !clip.is_empty() {
            self.queue.push_back((clip, 0));
        }
    }

    pub fn frame(&mut self) -> AudioFrame {
        let mut out = [0i16; FRAME_SAMPLES];
        if let Some(music) = self.music.as_ref().filter(|m| !m.is_empty()) {
            for o in out.iter_mut() {
                *o = music[self.music_pos];
                self.music_pos = (self.music_pos + 1) % music.len();
            }
        }
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            let Some((clip, pos)) = self.queue.front_mut() else {
                break;
            };
            let n = (clip.len() - *pos).min(FRAME_SAMPLES - filled);
            for (o, s) in out[filled..filled + n]
                .iter_mut()
                .zip(&clip[*pos..*pos + n])
            {
                let under = f32::from(*o) * MUSIC_UNDER_PROMPT;
                *o = (f32::from(*s) + under).clamp(-32768.0, 32767.0) as i16;
            }
            *pos += n;
            filled += n;
            if *pos >= clip.len() {
                self.queue.pop_front();
            }
        }
        AudioFrame::new(out)
    }
}

/// An agent's media: a SIP phone's RTP, or the desktop's WebRTC.
pub(super) enum AgentMedia {
    Sip(Box<MediaLeg>),
    Web(Box<WebLeg>),
}

impl AgentMedia {
    pub fn receive(&mut self, now: TickTime, rtcp_too: bool) {
        match self {
            AgentMedia::Sip(leg) => leg.receive(now, rtcp_too),
            AgentMedia::Web(leg) => leg.receive(now),
        }
    }

    pub fn hear(&mut self, now: Instant) -> Option<(AudioFrame, Heard)> {
        match self {
            AgentMedia::Sip(leg) => leg.hear(now),
            AgentMedia::Web(leg) => leg.hear(now),
        }
    }

    pub fn say(&mut self, frame: Option<&AudioFrame>, now: Instant) {
        match self {
            AgentMedia::Sip(leg) => leg.say(frame, now),
            AgentMedia::Web(leg) => leg.say(frame, now),
        }
    }
}

/// An agent's leg: its media, and the whisper while they hear it.
pub(super) struct AgentLeg {
    pub key: String,
    pub leg: AgentMedia,
    /// Whether the agent answered.
    pub answered: bool,
    whisper: Option<(Arc<[i16]>, usize)>,
    /// The agent answered before the whisper was rendered: it plays as soon as it is.
    whisper_due: bool,
    /// The rendered whisper, kept until the agent answers.
    whisper_ready: Option<Arc<[i16]>>,
}

impl AgentLeg {
    /// The next frame of the whisper; `None` once it has played (or before it starts).
    pub fn whisper_frame(&mut self) -> Option<(AudioFrame, bool)> {
        let (clip, pos) = self.whisper.as_mut()?;
        let mut out = [0i16; FRAME_SAMPLES];
        let n = (clip.len() - *pos).min(FRAME_SAMPLES);
        out[..n].copy_from_slice(&clip[*pos..*pos + n]);
        *pos += n;
        let done = *pos >= clip.len();
        if done {
            self.whisper = None;
        }
        Some((AudioFrame::new(out), done))
    }

    /// The agent answered: the whisper starts, or will as soon as it is rendered.
    pub fn start_whisper(&mut self) {
        match self.whisper_ready.take() {
            Some(clip) => self.whisper = Some((clip, 0)),
            None => self.whisper_due = true,
        }
    }

    fn whisper_rendered(&mut self, clip: Arc<[i16]>) {
        if self.whisper_due {
            self.whisper_due = false;
            self.whisper = Some((clip, 0));
        } else {
            self.whisper_ready = Some(clip);
        }
    }
}

/// A call's transfer in progress.
pub(super) struct Handoff {
    pub machine: Transfer,
    pub hold: Hold,
    pub agent: Option<AgentLeg>,
    /// The leg of an agent who transfers the call, while their colleague is rung.
    pub aside: Option<AgentLeg>,
    spoken: mpsc::Receiver<Spoken>,
    spoken_tx: mpsc::Sender<Spoken>,
    /// When the decision was taken, for the transfer's timing.
    pub decided: Instant,
    /// The caller gets the bot back (the transfer is over); `callback` if one was offered.
    pub returned: Option<bool>,
    /// What the caller wants, for the whisper ("block a lost or stolen card").
    want: Option<String>,
    /// Prompts for the caller still being rendered.
    rendering: usize,
    /// The prompts still to come are stale (the agent left: the bot speaks next).
    stale: bool,
    /// When the call began, for the time of the prompts' lines in the transcript.
    call_started: SystemTime,
    /// Prompts told so far, numbering their transcript lines.
    told: u32,
}

/// The agents, and the queue of calls waiting for them, as the transfer of one call sees
/// them.
pub(super) struct Live<'a> {
    pub shared: &'a Shared,
    pub call_id: &'a str,
    pub now: Instant,
}

impl Live<'_> {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic elsewhere while holding the lock leaves a usable queue.
        self.shared.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_secs(&self) -> u64 {
        crate::context::store::now_ms() / 1000
    }

    /// The agents as routing weighs them now.
    fn candidates(&self) -> Vec<Candidate> {
        self.agents()
            .reachable(self.now)
            .into_iter()
            .map(|r| r.candidate)
            .collect()
    }

    fn place(&self) -> Option<(usize, Option<u64>)> {
        let candidates = self.candidates();
        let queue = self.queue();
        let position = queue.position(self.call_id)?;
        Some((
            position,
            queue.estimated_wait_secs(self.call_id, &candidates, self.now_secs()),
        ))
    }

    fn agents(&self) -> &Agents {
        &self.shared.agents
    }
}

impl Pool for Live<'_> {
    fn reachable(&mut self) -> Vec<Reachable> {
        self.agents().reachable(self.now)
    }

    fn claim(&mut self, id: &str) -> bool {
        self.agents().claim(id)
    }

    fn new_key(&mut self) -> String {
        baton_sip::build::new_tag()
    }

    fn enqueue(&mut self, need: &Need, overflow: &Overflow) -> Option<(usize, Option<u64>)> {
        let candidates = self.candidates();
        let now_secs = self.now_secs();
        let mut queue = self.queue();
        queue.push(
            self.call_id.to_owned(),
            need.clone(),
            overflow.clone(),
            now_secs,
        );
        match queue.estimated_wait_secs(self.call_id, &candidates, now_secs) {
            // No available agent could ever take it: waiting is pointless.
            None => {
                queue.remove(self.call_id);
                None
            }
            Some(wait) => Some((queue.position(self.call_id)?, Some(wait))),
        }
    }

    fn queued(&mut self) -> Option<(usize, Option<u64>)> {
        self.place()
    }

    fn served(&mut self) -> bool {
        let reachable = self.agents().reachable(self.now);
        let now_secs = self.now_secs();
        let queue = self.queue();
        reachable
            .iter()
            .any(|r| queue.next_for(&r.candidate, now_secs) == Some(self.call_id))
    }

    fn dequeue(&mut self) {
        self.queue().remove(self.call_id);
    }
}

impl Handoff {
    /// Whether the caller has heard everything they were to be told.
    pub fn told(&self) -> bool {
        self.rendering == 0 && !self.hold.speaking()
    }

    pub fn new(
        machine: Transfer,
        hold: Hold,
        decided: Instant,
        want: Option<String>,
        call_started: SystemTime,
    ) -> Handoff {
        let (spoken_tx, spoken) = mpsc::channel(SPOKEN_CHANNEL);
        Handoff {
            machine,
            hold,
            agent: None,
            aside: None,
            spoken,
            spoken_tx,
            decided,
            returned: None,
            want,
            rendering: 0,
            stale: false,
            call_started,
            told: 0,
        }
    }

    /// Takes in the speech rendered since the last frame.
    pub fn collect_spoken(&mut self) {
        while let Ok(spoken) = self.spoken.try_recv() {
            match spoken {
                Spoken::Caller(clip) => {
                    self.rendering = self.rendering.saturating_sub(1);
                    // Once the agent has the caller, news of the wait is stale.
                    if !self.machine.bridged() && !self.stale {
                        self.hold.push(clip);
                    }
                }
                Spoken::Whisper { key, audio } => {
                    if let Some(a) = self.agent.as_mut().filter(|a| a.key == key) {
                        a.whisper_rendered(audio);
                    }
                }
            }
        }
    }

    /// Carries out what the transfer asks, as far as it can without waiting.
    pub fn act(&mut self, call: &CallRef<'_>, now: Instant) {
        while let Some(action) = self.machine.poll() {
            match action {
                Action::Tell(text) => {
                    info!(%text, "telling the caller");
                    self.rendering += 1;
                    self.told += 1;
                    let (tts, tx) = (call.shared.tts.clone(), self.spoken_tx.clone());
                    // The caller's transcript has what baton told them, as the bot's lines.
                    let at = SystemTime::now()
                        .duration_since(self.call_started)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    let line = Change::Transcript(TranscriptLine {
                        speaker: "bot".into(),
                        text: text.clone(),
                        is_final: true,
                        utterance: self.told,
                        start_ms: at,
                        end_ms: at,
                        confidence: 1.0,
                    });
                    write(call.shared.contexts.clone(), call.id, vec![line]);
                    tokio::spawn(
                        async move {
                            let audio = trim(&tts.render(&text).await.audio);
                            let _ = tx.send(Spoken::Caller(audio)).await;
                        }
                        .in_current_span(),
                    );
                }
                Action::Dial { key, agent } => self.ring(call, key, agent, None, now),
                Action::Replace {
                    key,
                    agent,
                    replaces,
                } => self.ring(call, key, agent, Some(replaces), now),
                Action::Drop { key } => self.drop_leg(call, key),
                Action::Aside { key } => self.aside = self.agent.take_if(|a| a.key == key),
                Action::Resume { key } => {
                    if let Some(a) = self.aside.take_if(|a| a.key == key) {
                        info!(agent_leg = %key, "the agent who transferred the call has it back");
                        self.agent = Some(a);
                    }
                }
                Action::Whisper { key } => {
                    if let Some(a) = self.agent.as_mut().filter(|a| a.key == key) {
                        a.start_whisper();
                    }
                }
                Action::Bridge { key } => {
                    info!(agent_leg = %key, after_ms = now.saturating_duration_since(self.decided).as_millis() as u64, "caller and agent bridged");
                }
                Action::Referred { key, status } => {
                    let _ = call
                        .commands
                        .try_send(super::Command::Referred { key, status });
                }
                Action::Return { callback } => {
                    if !callback {
                        // Back from an agent: news of the wait is stale.
                        self.stale = true;
                        self.rendering = 0;
                        self.hold.clear();
                    }
                    self.returned = Some(callback);
                }
                Action::Release { id, handled } => {
                    call.shared.agents.release(&id, handled, now);
                    if let Some(handled) = handled {
                        call.shared.escalations.handled(call.id, handled);
                    }
                }
                Action::Outcome {
                    agent,
                    outcome,
                    missed,
                } => {
                    info!(
                        agent = agent.as_deref().unwrap_or("none"),
                        outcome = outcome.as_str(),
                        ?missed,
                        "transfer"
                    );
                    call.shared.escalations.outcome(
                        call.id,
                        agent.as_deref(),
                        outcome.as_str(),
                        &missed,
                    );
                    let change = match (outcome, agent) {
                        (Outcome::Connected, Some(id)) => Some(vec![
                            Change::Agent {
                                id: id.clone(),
                                joined: true,
                            },
                            Change::Running {
                                who: format!("agent:{id}"),
                            },
                        ]),
                        (Outcome::Returned | Outcome::Completed, Some(id)) => Some(vec![
                            Change::Agent { id, joined: false },
                            Change::Running { who: "bot".into() },
                        ]),
                        _ => None,
                    };
                    if let Some(changes) = change {
                        write(call.shared.contexts.clone(), call.id, changes);
                    }
                }
            }
        }
    }

    /// Rings the agent on leg `key`; a leg that cannot start counts as an agent out of
    /// reach, and the next is tried.
    fn ring(
        &mut self,
        call: &CallRef<'_>,
        key: String,
        agent: crate::transfer::Offer,
        replaces: Option<Replaces>,
        now: Instant,
    ) {
        if let Err(why) = self.dial(call, &key, &agent, replaces) {
            warn!(agent = %agent.id, why, "agent leg not started");
            self.machine.missed(
                &key,
                crate::transfer::Missed::Unreachable,
                &mut Live {
                    shared: call.shared,
                    call_id: call.id,
                    now,
                },
                now,
            );
        }
    }

    /// Rings the agent: their SIP phone (and the call on their desktop, if it is open),
    /// or the softphone in their desktop. A phone asked to replace its consultation call
    /// gets no whisper: its agent knows the call.
    fn dial(
        &mut self,
        call: &CallRef<'_>,
        key: &str,
        agent: &crate::transfer::Offer,
        replaces: Option<Replaces>,
    ) -> Result<(), &'static str> {
        let whisper = replaces.is_none();
        let sockets = RtpSockets::bind(&call.shared.ports, call.shared.bind_ip)
            .ok_or("no free RTP port for the agent leg")?;
        let port = sockets.port();
        let ring = |phone| crate::desk::Ring {
            key: key.to_owned(),
            call_id: call.id.to_owned(),
            caller: call.caller_number.map(str::to_owned),
            phone,
            dispositions: call.dispositions.keys().cloned().collect(),
        };
        let media = match &agent.phone {
            Phone::Sip(contact) => {
                let leg = MediaLeg::new(sockets, format!("{}-{key}@baton", call.id))
                    .map_err(|_| "the agent leg's RTP socket is unusable")?;
                info!(agent = %agent.id, %contact, skilled = agent.skilled, "ringing an agent");
                let _ = call
                    .commands
                    .try_send(super::Command::Dial(Box::new(super::Dial {
                        key: key.to_owned(),
                        caller: call.key.to_owned(),
                        target: contact.clone(),
                        from_user: call.caller_number.map(str::to_owned),
                        context_url: format!(
                            "{}/v1/calls/{}/context",
                            call.shared.api_base, call.id
                        ),
                        call_id: call.id.to_owned(),
                        port,
                        replaces,
                    })));
                // The desktop shows the call while the phone rings, if it is open.
                call.shared
                    .desks
                    .ring(&agent.id, ring(RingsOn::Sip), call.events.clone());
                AgentMedia::Sip(Box::new(leg))
            }
            Phone::Desktop => {
                let (leg, offer) = WebLeg::offer(
                    sockets,
                    call.shared.advertised_ip,
                    call.shared.rtp_inactivity,
                    Instant::now(),
                )
                .map_err(|e| {
                    warn!(error = %e, "WebRTC offer failed");
                    "the WebRTC offer failed"
                })?;
                info!(agent = %agent.id, skilled = agent.skilled, "ringing an agent's desktop");
                let ring = ring(RingsOn::Web { offer });
                if !call.shared.desks.ring(&agent.id, ring, call.events.clone()) {
                    call.shared.desks.ended(key, "unreachable");
                    return Err("the agent's desktop is closed");
                }
                AgentMedia::Web(Box::new(leg))
            }
        };
        self.agent = Some(AgentLeg {
            key: key.to_owned(),
            leg: media,
            answered: false,
            whisper: None,
            whisper_due: false,
            whisper_ready: None,
        });
        if whisper {
            self.render_whisper(call, key, agent.skilled);
        }
        Ok(())
    }

    /// Ends leg `key`: the SIP phone is sent CANCEL or BYE, the desktop told.
    pub fn drop_leg(&mut self, call: &CallRef<'_>, key: String) {
        let leg = self
            .agent
            .take_if(|a| a.key == key)
            .or_else(|| self.aside.take_if(|a| a.key == key));
        let web = match leg {
            Some(a) => matches!(a.leg, AgentMedia::Web(_)),
            None => false,
        };
        call.shared.desks.ended(&key, "ended");
        if !web {
            let _ = call.commands.try_send(super::Command::Hangup { key });
        }
    }

    /// Renders, while the agent's phone rings, the short summary they hear on answering.
    fn render_whisper(&self, call: &CallRef<'_>, key: &str, skilled: bool) {
        let (tts, tx, contexts) = (
            call.shared.tts.clone(),
            self.spoken_tx.clone(),
            call.shared.contexts.clone(),
        );
        let (id, key) = (call.id.to_owned(), key.to_owned());
        let skill = self.machine.skill().map(|s| s.replace('_', " "));
        let want = self.want.clone();
        tokio::spawn(
            async move {
                let text = match contexts.get(&id).await {
                    Ok(ctx) => whisper_text(&ctx, skill.as_deref(), skilled, want.as_deref()),
                    Err(_) => "Incoming call from the bot.".to_owned(),
                };
                info!(%text, "whisper for the agent");
                let audio = trim(&tts.render(&text).await.audio);
                let _ = tx.send(Spoken::Whisper { key, audio }).await;
            }
            .in_current_span(),
        );
    }
}

/// What the transfer needs of its call.
pub(super) struct CallRef<'a> {
    pub id: &'a str,
    pub key: &'a str,
    pub shared: &'a Arc<Shared>,
    pub commands: &'a mpsc::Sender<super::Command>,
    pub caller_number: Option<&'a str>,
    /// The call's own news channel, for the desktops' answers.
    pub events: &'a mpsc::WeakSender<super::CallEvent>,
    /// The dialplan's `[transfer] handback`: the dispositions the agent's desktop offers.
    pub dispositions: &'a std::collections::BTreeMap<String, String>,
}

/// What the agent hears before the caller, in a few seconds: what kind of call, who, what
/// they want and how they sound. Their screen has the rest.
fn whisper_text(
    ctx: &crate::context::Context,
    skill: Option<&str>,
    skilled: bool,
    want: Option<&str>,
) -> String {
    let mut text = match (skill, skilled) {
        (Some(skill), true) => format!("{} call.", capitalized(skill)),
        _ => "Call from the bot.".to_owned(),
    };
    let name = ctx
        .customer_data
        .get("name")
        .and_then(|v| v.as_str())
        .filter(|_| ctx.identity.verified);
    text.push_str(&match name {
        Some(name) => format!(" {name}, verified."),
        None => " Not verified.".to_owned(),
    });
    if let Some(want) = want {
        text.push_str(&format!(" Wants to {want}."));
    }
    if let Some(mood) = ctx
        .vibe
        .label
        .as_deref()
        .filter(|l| !matches!(*l, "neutral" | "calm" | "positive"))
    {
        text.push_str(&format!(" Sounds {mood}."));
    }
    text
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Cuts the silence text to speech puts around its words.
fn trim(audio: &Arc<[i16]>) -> Arc<[i16]> {
    let loud = |s: &i16| s.unsigned_abs() > TRIM_LEVEL as u16;
    let (Some(first), Some(last)) = (audio.iter().position(loud), audio.iter().rposition(loud))
    else {
        return audio.clone();
    };
    let from = first.saturating_sub(TRIM_MARGIN);
    let to = (last + TRIM_MARGIN).min(audio.len() - 1);
    audio[from..=to].into()
}

fn write(contexts: Arc<dyn ContextStore>, id: &str, changes: Vec<Change>) {
    let id = id.to_owned();
    tokio::spawn(
        async move {
            if let Err(e) = contexts.write(&id, Author::System, None, changes).await {
                warn!(error = %e, "transfer not written to the context");
            }
        }
        .in_current_span(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_plays_clips_in_order_over_the_music_lowered() {
        let music: Arc<[i16]> = vec![1000; 1000].into();
        let mut hold = Hold::new(Some(music));
        assert!(hold.frame().samples().iter().all(|s| *s == 1000));
        hold.push(vec![7000; 400].into());
        let f = hold.frame();
        assert!(f.samples().iter().all(|s| *s == 7300));
        // The clip's last 80 samples, then the music alone again.
        let f = hold.frame();
        assert_eq!(&f.samples()[..80], &[7300; 80]);
        assert_eq!(f.samples()[80], 1000);
    }

    #[test]
    fn text_to_speech_padding_is_trimmed() {
        let mut audio = vec![0i16; 8000];
        audio.extend([5000i16; 1600]);
        audio.extend(vec![0i16; 8000]);
        let trimmed = trim(&audio.into());
        assert_eq!(trimmed.len(), 1600 + 2 * TRIM_MARGIN);
    }
}
