//! Adaptive jitter buffer: reorders packets by RTP timestamp, drops duplicates and late
//! packets, and plays out one 20 ms slot per [`JitterBuffer::pop`] on the caller's clock.
//!
//! The target delay follows the spread of packet transit times over the last few
//! seconds, between `min_delay` and `max_delay`. Growth happens by itself: an underrun
//! does not advance the playout point, so the delay grows by the gap. Shrinking drops one
//! slot at a time when the buffered level stays well above the target. A talkspurt start
//! (marker bit) after an underrun, or a timestamp jump, re-anchors playout.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::frame::FRAME_DURATION;

/// Delay limits of a jitter buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Smallest playout delay, also the initial one.
    pub min_delay: Duration,
    /// Largest playout delay the buffer adapts to; also bounds its size.
    pub max_delay: Duration,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// What to play for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The payload of the packet due now.
    Frame(Vec<u8>),
    /// The packet due now is missing but later ones are buffered: conceal it. `next` is
    /// the following packet's payload when present (Opus can recover the loss from its FEC).
    Lost {
        /// Payload of the packet after the lost one, if buffered.
        next: Option<Vec<u8>>,
    },
    /// Nothing buffered (silence, hold, or an underrun while the buffer fills).
    Empty,
}

/// What the buffer did with a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Stored for playout.
    Buffered,
    /// A packet with this timestamp is already buffered; dropped.
    Duplicate,
    /// Its slot was already played or concealed; dropped.
    Late,
}

/// Counters kept by the jitter buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets dropped because their slot had passed.
    pub late: u64,
    /// Packets dropped as duplicates of a buffered one.
    pub duplicates: u64,
    /// Slots reported as [`Playout::Lost`].
    pub concealed: u64,
    /// Pops that found nothing buffered while playing.
    pub underruns: u64,
    /// Packets dropped to bring the delay back down (or because the buffer was full).
    pub discarded: u64,
    /// Times playout was re-anchored (talkspurt, timestamp jump, reset).
    pub resyncs: u64,
}

/// Transit samples kept for the delay estimate (about 5 s at 50 packets/s).
const TRANSIT_WINDOW: usize = 256;
/// Pops between two latency-reducing drops, so shrinking is gradual.
const SHRINK_SPACING: u32 = 10;
/// Extra packets beyond `max_delay` worth the buffer holds before dropping the oldest.
const CAPACITY_SLACK: usize = 10;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for the target delay to pass since the first buffered packet arrived.
    Buffering { since: Option<Instant> },
    /// Playing; `next` is the extended timestamp of the next slot.
    Playing { next: i64 },
}

/// Adaptive jitter buffer for one RTP stream (one SSRC); see the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    clock_rate: i64,
    step: i64,
    capacity: usize,
    packets: BTreeMap<i64, Vec<u8>>,
    last_ts: Option<i64>,
    state: State,
    transit_epoch: Option<(Instant, i64)>,
    transits: TransitWindow,
    target: Duration,
    pops_since_shrink: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates a buffer for a stream with the given RTP clock rate (20 ms packets).
    pub fn new(config: JitterConfig, clock_rate: u32) -> Self {
        let clock_rate = i64::from(clock_rate.max(1));
        let frame_ms = FRAME_DURATION.as_millis().max(1) as usize;
        let capacity = config.max_delay.as_millis() as usize / frame_ms + CAPACITY_SLACK;
        Self {
            config,
            clock_rate,
            step: (clock_rate / 50).max(1),
            capacity,
            packets: BTreeMap::new(),
            last_ts: None,
            state: State::Buffering { since: None },
            transit_epoch: None,
            transits: TransitWindow::default(),
            target: config.min_delay,
            pops_since_shrink: 0,
            stats: JitterStats::default(),
        }
    }

    /// Forgets all packets and timing, e.g. when the sender's SSRC changes.
    pub fn reset(&mut self) {
        self.packets.clear();
        self.last_ts = None;
        self.transit_epoch = None;
        self.transits.clear();
        self.target = self.config.min_delay;
        self.restart();
    }

    /// Current target playout delay.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// Number of packets buffered.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Counters since creation.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Offers a packet that arrived at `now`.
    pub fn push(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: Vec<u8>,
        now: Instant,
    ) -> Arrival {
        let ts = self.unwrap_timestamp(timestamp);
        let max_ahead = self.duration_to_ts(self.config.max_delay) + self.step;
        match self.state {
            State::Playing { next } => {
                let jumped = ts - next > max_ahead || next - ts > 2 * max_ahead;
                let new_talkspurt = marker && self.packets.is_empty() && ts >= next;
                if jumped || new_talkspurt {
                    self.packets.clear();
                    self.forget_transits();
                    self.restart();
                } else if ts < next {
                    self.observe_transit(ts, now);
                    self.stats.late += 1;
                    return Arrival::Late;
                }
            }
            State::Buffering { .. } => {
                let far = self
                    .packets
                    .keys()
                    .next()
                    .is_some_and(|&first| (ts - first).abs() > max_ahead);
                if far {
                    self.packets.clear();
                    self.forget_transits();
                    self.restart();
                }
            }
        }
        self.observe_transit(ts, now);
        if self.packets.contains_key(&ts) {
            self.stats.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.packets.insert(ts, payload);
        if self.packets.len() > self.capacity {
            self.packets.pop_first();
            self.stats.discarded += 1;
        }
        if let State::Buffering { since: None } = self.state {
            self.state = State::Buffering { since: Some(now) };
        }
        Arrival::Buffered
    }

    /// Returns what to play for the 20 ms starting at `now`. Call once per 20 ms.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let mut next = match self.state {
            State::Playing { next } => next,
            State::Buffering { since } => {
                let ready = since.is_some_and(|t| now.saturating_duration_since(t) >= self.target);
                match self.packets.keys().next() {
                    Some(&first) if ready => first,
                    _ => return Playout::Empty,
                }
            }
        };
        self.pops_since_shrink = self.pops_since_shrink.saturating_add(1);
        if let Some(&newest) = self.packets.keys().next_back() {
            let level = self.ts_to_duration(newest + self.step - next);
            if level > self.target + 2 * FRAME_DURATION && self.pops_since_shrink >= SHRINK_SPACING
            {
                if self.take_due(next).is_some() {
                    self.stats.discarded += 1;
                }
                next += self.step;
                self.pops_since_shrink = 0;
            }
        }
        let playout = if let Some((ts, payload)) = self.take_due(next) {
            next = ts + self.step;
            Playout::Frame(payload)
        } else if self.packets.is_empty() {
            self.stats.underruns += 1;
            Playout::Empty
        } else {
            next += self.step;
            self.stats.concealed += 1;
            let upcoming = self
                .packets
                .range(next..next + self.step)
                .next()
                .map(|(_, p)| p.clone());
            Playout::Lost { next: upcoming }
        };
        self.state = State::Playing { next };
        playout
    }

    /// Removes the packet due in the slot starting at `next` (tolerating timestamps that
    /// are not multiples of 20 ms apart).
    fn take_due(&mut self, next: i64) -> Option<(i64, Vec<u8>)> {
        let (&ts, _) = self.packets.range(..next + self.step).next()?;
        self.packets.remove_entry(&ts)
    }

    fn restart(&mut self) {
        self.state = State::Buffering { since: None };
        self.stats.resyncs += 1;
        self.pops_since_shrink = 0;
    }

    fn forget_transits(&mut self) {
        self.transit_epoch = None;
        self.transits.clear();
    }

    fn unwrap_timestamp(&mut self, ts: u32) -> i64 {
        let ext = match self.last_ts {
            // Reinterpreting the wrapped difference as i32 picks the nearest candidate.
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
            None => i64::from(ts),
        };
        self.last_ts = Some(ext);
        ext
    }

    fn observe_transit(&mut self, ts: i64, now: Instant) {
        let (epoch, epoch_ts) = *self.transit_epoch.get_or_insert((now, ts));
        let arrival_us = now.saturating_duration_since(epoch).as_micros() as i64;
        let media_us = (ts - epoch_ts) * 1_000_000 / self.clock_rate;
        let (min, max) = self.transits.push(arrival_us - media_us);
        let spread = Duration::from_micros(u64::try_from(max - min).unwrap_or(0));
        self.target = spread.clamp(self.config.min_delay, self.config.max_delay);
    }

    fn duration_to_ts(&self, d: Duration) -> i64 {
        d.as_micros() as i64 * self.clock_rate / 1_000_000
    }

    fn ts_to_duration(&self, ts: i64) -> Duration {
        Duration::from_micros(u64::try_from(ts * 1_000_000 / self.clock_rate).unwrap_or(0))
    }
}

/// The smallest and largest of the last [`TRANSIT_WINDOW`] transit times, kept in
/// monotonic queues so each packet costs O(1) instead of a scan of the window.
#[derive(Debug, Default)]
struct TransitWindow {
    pushed: u64,
    /// Candidates for the maximum: values decrease from front to back.
    max: VecDeque<(u64, i64)>,
    /// Candidates for the minimum: values increase from front to back.
    min: VecDeque<(u64, i64)>,
}

impl TransitWindow {
    fn clear(&mut self) {
        self.max.clear();
        self.min.clear();
    }

    /// Adds a transit time; the window's (min, max) after it.
    fn push(&mut self, value: i64) -> (i64, i64) {
        let index = self.pushed;
        self.pushed += 1;
        while self.max.back().is_some_and(|&(_, v)| v <= value) {
            self.max.pop_back();
        }
        self.max.push_back((index, value));
        while self.min.back().is_some_and(|&(_, v)| v >= value) {
            self.min.pop_back();
        }
        self.min.push_back((index, value));
        let oldest = (index + 1).saturating_sub(TRANSIT_WINDOW as u64);
        for queue in [&mut self.max, &mut self.min] {
            while queue.front().is_some_and(|&(i, _)| i < oldest) {
                queue.pop_front();
            }
        }
        let min = self.min.front().map_or(value, |&(_, v)| v);
        let max = self.max.front().map_or(value, |&(_, v)| v);
        (min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: u32 = 160;

    #[test]
    fn transit_window_matches_a_scan_of_the_last_values() {
        let mut window = TransitWindow::default();
        let mut all = Vec::new();
        let mut x: i64 = 12_345;
        for n in 0..2_000 {
            // A deterministic wobbly sequence with drifts, spikes and plateaus.
            x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
            let v = (x % 40_000) - 20_000 + if n % 300 < 20 { 150_000 } else { 0 };
            all.push(v);
            let (min, max) = window.push(v);
            let recent = &all[all.len().saturating_sub(TRANSIT_WINDOW)..];
            assert_eq!(min, *recent.iter().min().unwrap(), "min after {n}");
            assert_eq!(max, *recent.iter().max().unwrap(), "max after {n}");
        }
    }

    /// One packet of a simulated schedule: slot index, arrival time in ms, marker.
    #[derive(Clone, Copy)]
    struct Sent {
        index: u32,
        arrival_ms: u64,
        marker: bool,
    }

    fn steady(count: u32) -> Vec<Sent> {
        (0..count)
            .map(|i| Sent {
                index: i,
                arrival_ms: u64::from(i) * 20,
                marker: i == 0,
            })
            .collect()
    }

    /// Drives a buffer through a schedule with pops every 20 ms (phase 7 ms) and returns
    /// the playout sequence: Some(index) for frames, None for Lost, and Empty skipped
    /// (but counted).
    struct Run {
        played: Vec<Option<u32>>,
        empties: usize,
        lost_next: Vec<Option<u32>>,
        arrivals: Vec<Arrival>,
        buffer: JitterBuffer,
    }

    fn run(schedule: &[Sent], base_ts: u32, duration_ms: u64) -> Run {
        let t0 = Instant::now();
        let mut buffer = JitterBuffer::new(JitterConfig::default(), 8_000);
        let mut schedule = schedule.to_vec();
        schedule.sort_by_key(|s| s.arrival_ms);
        let mut pending = schedule.into_iter().peekable();
        let mut out = Run {
            played: Vec::new(),
            empties: 0,
            lost_next: Vec::new(),
            arrivals: Vec::new(),
            buffer: JitterBuffer::new(JitterConfig::default(), 8_000),
        };
        let mut tick = 7;
        while tick < duration_ms {
            while let Some(s) = pending.next_if(|s| s.arrival_ms <= tick) {
                let ts = base_ts.wrapping_add(s.index * STEP);
                let now = t0 + Duration::from_millis(s.arrival_ms);
                out.arrivals
                    .push(buffer.push(ts, s.marker, s.index.to_be_bytes().to_vec(), now));
            }
            match buffer.pop(t0 + Duration::from_millis(tick)) {
                Playout::Frame(p) => out.played.push(Some(index_of(&p))),
                Playout::Lost { next } => {
                    out.played.push(None);
                    out.lost_next.push(next.as_deref().map(index_of));
                }
                Playout::Empty => out.empties += 1,
            }
            tick += 20;
        }
        out.buffer = buffer;
        out
    }

    fn index_of(payload: &[u8]) -> u32 {
        u32::from_be_bytes(payload.try_into().unwrap())
    }

    fn frames(played: &[Option<u32>]) -> Vec<u32> {
        played.iter().flatten().copied().collect()
    }

    #[test]
    fn in_order_stream_plays_every_packet_once() {
        let r = run(&steady(50), 1_000, 1_200);
        assert_eq!(frames(&r.played), (0..50).collect::<Vec<_>>());
        assert!(r.played.iter().all(Option::is_some));
        assert_eq!(r.buffer.stats().late, 0);
        // Only the initial fill and the tail after the stream ends are empty.
        assert!(r.empties <= 12, "empties {}", r.empties);
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let mut s = steady(50);
        for pair in s.chunks_mut(2) {
            if let [a, _] = pair {
                // a is held 25 ms, so the packet after it overtakes it by 5 ms.
                a.arrival_ms += 25;
            }
        }
        let r = run(&s, 0, 1_400);
        assert_eq!(frames(&r.played), (0..50).collect::<Vec<_>>());
        assert_eq!(r.buffer.stats().concealed, 0);
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut s = steady(30);
        let dups: Vec<Sent> = s
            .iter()
            .map(|p| Sent {
                arrival_ms: p.arrival_ms + 3,
                marker: false,
                ..*p
            })
            .collect();
        s.extend(dups);
        let r = run(&s, 0, 900);
        assert_eq!(frames(&r.played), (0..30).collect::<Vec<_>>());
        // Each duplicate is caught either while buffered or as late after playout.
        let st = r.buffer.stats();
        assert_eq!(st.duplicates + st.late, 30);
    }

    #[test]
    fn lost_packets_are_reported_with_the_following_payload() {
        let s: Vec<Sent> = steady(40)
            .into_iter()
            .filter(|p| p.index != 10 && p.index != 11 && p.index != 20)
            .collect();
        let r = run(&s, 0, 1_000);
        let expected: Vec<Option<u32>> = (0..40)
            .map(|i| (![10, 11, 20].contains(&i)).then_some(i))
            .collect();
        assert_eq!(r.played, expected);
        assert_eq!(r.lost_next, vec![None, Some(12), Some(21)]);
        assert_eq!(r.buffer.stats().concealed, 3);
    }

    #[test]
    fn late_packet_after_concealment_is_dropped() {
        let mut s = steady(30);
        s[10].arrival_ms += 200;
        let r = run(&s, 0, 900);
        assert_eq!(r.buffer.stats().late, 1);
        assert!(r.played.contains(&None));
        assert!(!frames(&r.played).contains(&10));
    }

    #[test]
    fn bursty_jitter_raises_the_target_and_stops_late_drops() {
        // Every 50th packet the network stalls 120 ms, then delivers the backlog at once.
        let s: Vec<Sent> = steady(500)
            .into_iter()
            .map(|mut p| {
                let in_burst = p.index % 50;
                if (1..=6).contains(&in_burst) {
                    p.arrival_ms = (u64::from(p.index - in_burst) * 20) + 140;
                }
                p
            })
            .collect();
        let r = run(&s, 0, 10_500);
        let target = r.buffer.target_delay();
        assert!(target >= Duration::from_millis(100), "target {target:?}");
        // Growth by underrun keeps every packet after the first stall.
        assert_eq!(frames(&r.played).len(), 500);
        assert_eq!(r.buffer.stats().late, 0);
        assert!(target <= JitterConfig::default().max_delay);
    }

    #[test]
    fn delay_shrinks_after_a_one_off_stall() {
        // One 150 ms stall early on, then a clean stream for 8 s.
        let s: Vec<Sent> = steady(450)
            .into_iter()
            .map(|mut p| {
                if (5..13).contains(&p.index) {
                    p.arrival_ms = 13 * 20;
                }
                p
            })
            .collect();
        let r = run(&s, 0, 9_000);
        // The stall grew the delay; once it left the window, slots were dropped to shrink it.
        assert!(r.buffer.stats().discarded > 0);
        assert_eq!(r.buffer.target_delay(), JitterConfig::default().min_delay);
        assert!(r.buffer.len() <= 3, "buffered {}", r.buffer.len());
    }

    #[test]
    fn timestamp_wraparound_is_seamless() {
        let r = run(&steady(60), u32::MAX - 20 * STEP, 1_400);
        assert_eq!(frames(&r.played), (0..60).collect::<Vec<_>>());
        assert_eq!(r.buffer.stats().concealed, 0);
    }

    #[test]
    fn forward_timestamp_jump_reanchors_instead_of_concealing() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig::default(), 8_000);
        let mut played = 0;
        for i in 0..100u32 {
            // Halfway, the sender's timestamps jump by ten minutes (no marker bit).
            let ts = if i < 50 {
                i * STEP
            } else {
                4_800_000 + i * STEP
            };
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            b.push(ts, false, vec![0; 160], now);
            if matches!(b.pop(now + Duration::from_millis(7)), Playout::Frame(_)) {
                played += 1;
            }
        }
        assert_eq!(b.stats().concealed, 0);
        assert!(played >= 95, "played {played}");
        assert_eq!(b.stats().resyncs, 1);
    }

    #[test]
    fn backward_timestamp_jump_is_not_dropped_as_late_forever() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig::default(), 8_000);
        for i in 0..100u32 {
            let ts = if i < 50 {
                9_000_000 + i * STEP
            } else {
                i * STEP
            };
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            b.push(ts, false, vec![0; 160], now);
            b.pop(now + Duration::from_millis(7));
        }
        assert_eq!(b.stats().late, 0);
    }

    #[test]
    fn talkspurt_after_silence_is_rebuffered_without_concealment() {
        let mut s = steady(20);
        // 2 s of silence suppression, then a new talkspurt with the clock advanced.
        s.extend((0..20).map(|i| Sent {
            index: 120 + i,
            arrival_ms: 2_400 + u64::from(i) * 20,
            marker: i == 0,
        }));
        let r = run(&s, 0, 3_200);
        let expected: Vec<u32> = (0..20).chain(120..140).collect();
        assert_eq!(frames(&r.played), expected);
        assert_eq!(r.buffer.stats().concealed, 0);
    }

    #[test]
    fn reset_starts_a_new_stream_cleanly() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig::default(), 8_000);
        for i in 0..10u32 {
            b.push(
                5_000 + i * STEP,
                false,
                vec![1],
                t0 + Duration::from_millis(u64::from(i) * 20),
            );
        }
        b.reset();
        assert!(b.is_empty());
        let t1 = t0 + Duration::from_millis(200);
        b.push(77, true, vec![2], t1);
        assert_eq!(b.pop(t1), Playout::Empty);
        assert_eq!(
            b.pop(t1 + Duration::from_millis(20)),
            Playout::Frame(vec![2])
        );
    }

    #[test]
    fn size_is_bounded_without_pops() {
        let t0 = Instant::now();
        let mut b = JitterBuffer::new(JitterConfig::default(), 8_000);
        for i in 0..1_000u32 {
            b.push(
                i * STEP,
                false,
                vec![0; 160],
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(b.len() <= 20, "len {}", b.len());
    }

    #[test]
    fn wire_timestamps_never_panic() {
        use proptest::prelude::*;
        proptest!(|(ops in proptest::collection::vec((any::<u32>(), any::<bool>(), 0u64..50, any::<bool>()), 0..200))| {
            let mut now = Instant::now();
            let mut b = JitterBuffer::new(JitterConfig::default(), 48_000);
            for (ts, marker, advance, pop) in ops {
                now += Duration::from_millis(advance);
                b.push(ts, marker, vec![0], now);
                if pop {
                    b.pop(now);
                }
                prop_assert!(b.len() <= 20);
            }
        });
    }
}
