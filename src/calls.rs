//! The registry of calls that the API reads: a snapshot per call, written by the call task
//! that owns the call, plus a bounded list of recently ended calls.

use crate::call::{LegFrame, AUDIO_TAP_DEPTH};
use baton_speech::vibe::Vibe;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use tokio::sync::broadcast;

/// How many ended calls `GET /v1/calls?include=ended` can show.
const ENDED_KEPT: usize = 1000;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE received, not answered yet.
    Ringing,
    /// 200 OK sent, ACK awaited.
    Answering,
    /// Media flowing both ways.
    Active,
    /// The caller put us on hold.
    Held,
    /// Over.
    Ended,
}

/// Receive-side media figures of a call's leg.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaStats {
    pub codec: String,
    pub packets_in: u64,
    pub packets_out: u64,
    pub lost: u64,
    pub jitter_ms: f64,
}

/// What the API shows about one call.
#[derive(Debug, Clone, Serialize)]
pub struct CallInfo {
    /// baton's own id for the call (used in the API and in recording names).
    pub id: String,
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    pub dialplan: String,
    pub state: CallState,
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    #[serde(serialize_with = "rfc3339_opt")]
    pub ended_at: Option<SystemTime>,
    /// DTMF digits received so far, in order.
    pub dtmf: String,
    /// Why the call ended (`caller_bye`, `baton_bye`, `cancelled`, `rtp_timeout`, ...).
    pub result: Option<String>,
    /// Recording files written for this call.
    pub recordings: Vec<String>,
    pub media: MediaStats,
    /// What the caller said, final transcripts in order.
    pub transcript: Vec<TranscriptEntry>,
    /// The caller's mood after their latest utterance.
    pub vibe: Option<Vibe>,
}

/// One transcribed utterance (or, in the event stream, a partial hypothesis of one).
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptEntry {
    /// Who spoke: `caller`.
    pub speaker: &'static str,
    pub text: String,
    /// A final transcript of a finished utterance, or a partial one while it goes on.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The utterance's number in the call, from 1; partials and the final share it.
    pub utterance: u32,
    /// Milliseconds from the start of the call's media to the utterance's start and end.
    pub start_ms: u64,
    pub end_ms: u64,
    /// Mean token probability, 0..=1.
    pub confidence: f32,
    pub words: Vec<WordTiming>,
}

/// A word of a transcript and when it was said, in milliseconds from the call's start.
#[derive(Debug, Clone, Serialize)]
pub struct WordTiming {
    pub text: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub probability: f32,
}

/// Something that happened in a call, for live subscribers (`GET /v1/calls/{id}/events`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallNotice {
    /// The caller started speaking.
    SpeechStarted { utterance: u32, at_ms: u64 },
    /// A partial or final transcript.
    Transcript(TranscriptEntry),
    /// The caller's mood after an utterance.
    Vibe(Vibe),
}

/// Notices a slow event subscriber may fall behind before it misses the oldest.
const NOTICE_DEPTH: usize = 64;

/// A shared, cheaply cloned handle to one call's info, written by its call task.
pub type CallHandle = Arc<Mutex<CallInfo>>;

/// Active calls by id, and the most recent ended ones.
#[derive(Default)]
pub struct Calls {
    active: RwLock<HashMap<String, CallHandle>>,
    /// Ended calls keep their handle: a transcript finished after the hang-up still lands.
    ended: Mutex<VecDeque<CallHandle>>,
    taps: RwLock<HashMap<String, broadcast::Sender<LegFrame>>>,
    notices: RwLock<HashMap<String, broadcast::Sender<CallNotice>>>,
}

impl Calls {
    /// Registers a new call and returns the handle its task updates.
    pub fn insert(&self, info: CallInfo) -> CallHandle {
        let id = info.id.clone();
        let handle = Arc::new(Mutex::new(info));
        write(&self.active).insert(id, handle.clone());
        handle
    }

    /// Creates the channel on which call `id` publishes its audio frames.
    pub fn open_audio_tap(&self, id: &str) -> broadcast::Sender<LegFrame> {
        let (tx, _) = broadcast::channel(AUDIO_TAP_DEPTH);
        write(&self.taps).insert(id.to_string(), tx.clone());
        tx
    }

    /// Creates the channel on which call `id` publishes its notices.
    pub fn open_notices(&self, id: &str) -> broadcast::Sender<CallNotice> {
        let (tx, _) = broadcast::channel(NOTICE_DEPTH);
        write(&self.notices).insert(id.to_string(), tx.clone());
        tx
    }

    /// Subscribes to the notices of an active call.
    pub fn subscribe_notices(&self, id: &str) -> Option<broadcast::Receiver<CallNotice>> {
        read(&self.notices).get(id).map(|tx| tx.subscribe())
    }

    /// Subscribes to the audio frames of both sides of an active call (16 kHz, 20 ms).
    /// A subscriber that falls behind misses frames; it never slows the call down.
    pub fn subscribe_audio(&self, id: &str) -> Option<broadcast::Receiver<LegFrame>> {
        read(&self.taps).get(id).map(|tx| tx.subscribe())
    }

    /// Moves a call from active to ended, stamping its end time.
    pub fn finish(&self, id: &str) {
        write(&self.taps).remove(id);
        write(&self.notices).remove(id);
        let Some(handle) = write(&self.active).remove(id) else {
            return;
        };
        {
            let mut info = lock(&handle);
            info.state = CallState::Ended;
            info.ended_at.get_or_insert_with(SystemTime::now);
        }
        let mut ended = lock(&self.ended);
        if ended.len() == ENDED_KEPT {
            ended.pop_front();
        }
        ended.push_back(handle);
    }

    /// Number of calls in progress.
    pub fn active_count(&self) -> usize {
        read(&self.active).len()
    }

    /// Snapshots of active calls (oldest first), then ended ones when asked.
    pub fn list(&self, include_ended: bool) -> Vec<CallInfo> {
        let mut out: Vec<CallInfo> = read(&self.active)
            .values()
            .map(|h| lock(h).clone())
            .collect();
        out.sort_by_key(|c| c.started_at);
        if include_ended {
            out.extend(lock(&self.ended).iter().rev().map(|h| lock(h).clone()));
        }
        out
    }

    /// One call by id, active or recently ended.
    pub fn get(&self, id: &str) -> Option<CallInfo> {
        if let Some(h) = read(&self.active).get(id) {
            return Some(lock(h).clone());
        }
        lock(&self.ended).iter().rev().find_map(|h| {
            let info = lock(h);
            (info.id == id).then(|| info.clone())
        })
    }
}

/// Locks a call's info; a poisoned lock still holds a usable snapshot.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str) -> CallInfo {
        CallInfo {
            id: id.into(),
            sip_call_id: format!("{id}@example"),
            from: "sip:a@example".into(),
            to: "sip:b@example".into(),
            dialplan: "echo".into(),
            state: CallState::Ringing,
            started_at: SystemTime::now(),
            ended_at: None,
            dtmf: String::new(),
            result: None,
            recordings: vec![],
            media: MediaStats::default(),
            transcript: Vec::new(),
            vibe: None,
        }
    }

    #[test]
    fn audio_tap_reaches_subscribers_and_closes_with_the_call() {
        use crate::call::{LegFrame, Side};
        use baton_media::AudioFrame;
        let calls = Calls::default();
        calls.insert(info("c1"));
        let tap = calls.open_audio_tap("c1");
        let mut a = calls.subscribe_audio("c1").unwrap();
        let mut b = calls.subscribe_audio("c1").unwrap();
        let frame = AudioFrame::new([7; baton_media::FRAME_SAMPLES]);
        tap.send(LegFrame {
            side: Side::Caller,
            frame: frame.clone(),
        })
        .unwrap();
        for rx in [&mut a, &mut b] {
            let got = rx.try_recv().unwrap();
            assert_eq!(got.side, Side::Caller);
            assert_eq!(got.frame.samples(), frame.samples());
        }
        // A subscriber that falls behind loses the oldest frames; the sender never waits.
        for _ in 0..AUDIO_TAP_DEPTH + 10 {
            let _ = tap.send(LegFrame {
                side: Side::Baton,
                frame: frame.clone(),
            });
        }
        assert!(matches!(
            a.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(10))
        ));
        calls.finish("c1");
        assert!(calls.subscribe_audio("c1").is_none());
    }

    #[test]
    fn ended_calls_are_kept_bounded_and_findable() {
        let calls = Calls::default();
        for i in 0..ENDED_KEPT + 5 {
            let id = format!("c{i}");
            calls.insert(info(&id));
            calls.finish(&id);
        }
        assert_eq!(calls.active_count(), 0);
        assert_eq!(calls.list(true).len(), ENDED_KEPT);
        assert!(calls.get("c0").is_none());
        let last = calls.get(&format!("c{}", ENDED_KEPT + 4)).unwrap();
        assert_eq!(last.state, CallState::Ended);
        assert!(last.ended_at.is_some());
        let json = serde_json::to_value(&last).unwrap();
        for key in [
            "id",
            "sip_call_id",
            "from",
            "to",
            "state",
            "started_at",
            "ended_at",
            "dtmf",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }
}
