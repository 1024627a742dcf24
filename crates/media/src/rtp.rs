//! The RTP session of one leg: receives datagrams (sequence and SSRC tracking,
//! symmetric-RTP latching, jitter buffer, DTMF), packetizes outgoing payloads, runs RTCP
//! and the inactivity deadline. Sans-IO: the caller passes datagrams and `now`, sends
//! what it polls, and calls [`RtpSession::handle_timeout`] at [`RtpSession::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rtp_types::{RtpPacket, RtpPacketBuilder};

use crate::codec::CodecKind;
use crate::dtmf::{DtmfReceiver, DtmfSender, DtmfTone};
use crate::frame::FRAME_DURATION;
use crate::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::rtcp::{RtcpError, RtcpNotice, RtcpState, SenderInfo};
use crate::stats::{LegStats, SeqTracker, SeqVerdict};

/// A gap between sent packets longer than this is a pause in sending (hold, silence), after
/// which the RTP clock jumps to real time; shorter gaps are late ticks being caught up.
const SEND_PAUSE: Duration = Duration::from_millis(500);

/// How the session learns where to send (symmetric RTP, RFC 4961 style latching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchMode {
    /// Always send to the SDP address; accept packets from anywhere.
    Off,
    /// Send to whoever sends the first valid packet (the usual choice behind NAT).
    FirstPacket,
    /// Expect the SDP address; switch to another source only if the current one has
    /// been silent for `relatch_after` and the new one sent `relatch_packets` in a row.
    PreferSdp,
}

/// Settings for one leg's RTP session.
#[derive(Debug, Clone)]
pub struct RtpConfig {
    /// The negotiated audio codec.
    pub codec: CodecKind,
    /// Payload type of the audio codec (sent and accepted).
    pub payload_type: u8,
    /// Payload type of telephone-event at the codec's clock rate, if negotiated.
    pub telephone_event_pt: Option<u8>,
    /// RTP address from the remote SDP.
    pub remote_rtp: Option<SocketAddr>,
    /// RTCP address from the remote SDP (port + 1, `a=rtcp`, or the RTP address with rtcp-mux).
    pub remote_rtcp: Option<SocketAddr>,
    /// Address learning policy.
    pub latch: LatchMode,
    /// Silence of the latched source after which another source may take over.
    pub relatch_after: Duration,
    /// Consecutive packets a new source must send (same SSRC) to take over.
    pub relatch_packets: u32,
    /// No RTP or RTCP for this long raises [`RtpEvent::Inactive`]; `None` disables.
    pub inactivity_timeout: Option<Duration>,
    /// Jitter buffer limits.
    pub jitter: JitterConfig,
    /// Our RTCP CNAME.
    pub cname: String,
}

impl RtpConfig {
    /// Defaults: latch on first packet, 30 s inactivity, 20–200 ms jitter buffer.
    pub fn new(codec: CodecKind, payload_type: u8, cname: impl Into<String>) -> Self {
        Self {
            codec,
            payload_type,
            telephone_event_pt: None,
            remote_rtp: None,
            remote_rtcp: None,
            latch: LatchMode::FirstPacket,
            relatch_after: Duration::from_secs(1),
            relatch_packets: 5,
            inactivity_timeout: Some(Duration::from_secs(30)),
            jitter: JitterConfig::default(),
            cname: cname.into(),
        }
    }
}

/// A setting the session cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpConfigError {
    /// Payload types are 7 bits.
    #[error("payload type {0} is above 127")]
    InvalidPayloadType(u8),
}

/// Something the call should react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpEvent {
    /// Send RTP to this address from now on.
    RemoteLatched(SocketAddr),
    /// Send RTCP to this address from now on.
    RemoteRtcpLatched(SocketAddr),
    /// The remote's SSRC changed (e.g. the carrier switched media servers); receive
    /// state was reset.
    SsrcChanged {
        /// The previous SSRC.
        old: u32,
        /// The new SSRC.
        new: u32,
    },
    /// A DTMF key press (RFC 4733), reported once per event.
    Dtmf(DtmfTone),
    /// The remote sent RTCP BYE.
    Bye,
    /// No RTP or RTCP arrived within the inactivity timeout: the call is probably dead.
    Inactive,
}

/// Receive state for the remote's current SSRC.
#[derive(Debug)]
struct Source {
    ssrc: u32,
    seq: SeqTracker,
}

/// A source trying to take over the latch.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    packets: u32,
}

/// One leg's RTP/RTCP state machine; see the module docs.
#[derive(Debug)]
pub struct RtpSession {
    config: RtpConfig,
    rng: fastrand::Rng,
    // Receive side.
    source: Option<Source>,
    lost_before: u64,
    jitter: JitterBuffer,
    dtmf_rx: DtmfReceiver,
    latched: Option<SocketAddr>,
    latched_seen: Instant,
    candidate: Option<Candidate>,
    rtcp_remote: Option<SocketAddr>,
    // Send side.
    ssrc: u32,
    next_seq: u16,
    last_sent: Option<(Instant, u32)>,
    marker_next: bool,
    sent_since_report: bool,
    dtmf_tx: Option<DtmfSender>,
    dtmf_queue: VecDeque<(DtmfTone, Duration)>,
    // Timers and outputs.
    last_activity: Instant,
    inactive_reported: bool,
    rtcp: RtcpState,
    rtcp_out: VecDeque<Vec<u8>>,
    events: VecDeque<RtpEvent>,
    stats: LegStats,
}

impl RtpSession {
    /// Creates a session at `now`; `wall` is the wall-clock time at `now` (for RTCP NTP
    /// timestamps only). Initial SSRC, sequence number and timestamp are random.
    pub fn new(config: RtpConfig, now: Instant, wall: SystemTime) -> Result<Self, RtpConfigError> {
        Self::with_rng(config, now, wall, fastrand::Rng::new())
    }

    /// Like [`RtpSession::new`] with a seeded generator, for reproducible tests.
    pub fn with_seed(
        config: RtpConfig,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Result<Self, RtpConfigError> {
        Self::with_rng(config, now, wall, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(
        config: RtpConfig,
        now: Instant,
        wall: SystemTime,
        mut rng: fastrand::Rng,
    ) -> Result<Self, RtpConfigError> {
        for pt in std::iter::once(config.payload_type).chain(config.telephone_event_pt) {
            if pt > 0x7F {
                return Err(RtpConfigError::InvalidPayloadType(pt));
            }
        }
        let rtcp = RtcpState::new(config.cname.clone(), now, wall, &mut rng);
        let ssrc = rng.u32(..);
        let next_seq = rng.u16(..);
        let latched = match config.latch {
            LatchMode::PreferSdp => config.remote_rtp,
            LatchMode::Off | LatchMode::FirstPacket => None,
        };
        Ok(Self {
            jitter: JitterBuffer::new(config.jitter, config.codec.clock_rate()),
            source: None,
            lost_before: 0,
            dtmf_rx: DtmfReceiver::new(),
            latched,
            latched_seen: now,
            candidate: None,
            rtcp_remote: config.remote_rtcp,
            ssrc,
            next_seq,
            last_sent: None,
            marker_next: true,
            sent_since_report: false,
            dtmf_tx: None,
            dtmf_queue: VecDeque::new(),
            last_activity: now,
            inactive_reported: false,
            rtcp,
            rtcp_out: VecDeque::new(),
            events: VecDeque::new(),
            stats: LegStats::default(),
            rng,
            config,
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The SSRC currently received, once known.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// Where to send RTP: the latched source, else the SDP address.
    pub fn remote_rtp_addr(&self) -> Option<SocketAddr> {
        self.latched.or(self.config.remote_rtp)
    }

    /// Where to send RTCP: the source of the remote's RTCP, else the SDP address.
    pub fn remote_rtcp_addr(&self) -> Option<SocketAddr> {
        self.rtcp_remote
    }

    /// Changes the inactivity timeout (e.g. `None` while the call is on hold).
    pub fn set_inactivity_timeout(&mut self, timeout: Option<Duration>, now: Instant) {
        self.config.inactivity_timeout = timeout;
        self.last_activity = now;
        self.inactive_reported = false;
    }

    /// Counters for metrics.
    pub fn stats(&self) -> LegStats {
        let jb = self.jitter.stats();
        let mut s = self.stats;
        s.duplicates += jb.duplicates;
        s.late = jb.late;
        s.concealed = jb.concealed;
        s.lost = self.lost_before + self.source.as_ref().map_or(0, |src| src.seq.lost());
        s.jitter_ms = self.source.as_ref().map_or(0.0, |src| src.seq.jitter_ms());
        if let Some(view) = self.rtcp.remote_view() {
            s.rtt = view.rtt;
            s.remote_fraction_lost = Some(view.fraction_lost);
        }
        s
    }

    /// The current jitter buffer target delay.
    pub fn playout_delay(&self) -> Duration {
        self.jitter.target_delay()
    }

    /// Handles one datagram received on the RTP port. Malformed or unwanted packets are
    /// counted and dropped.
    pub fn handle_rtp(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let Ok(packet) = RtpPacket::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.accept_source(from, packet.ssrc(), now) {
            self.stats.foreign_source += 1;
            return;
        }
        self.touch(now);
        let pt = packet.payload_type();
        let is_event = Some(pt) == self.config.telephone_event_pt;
        if pt != self.config.payload_type && !is_event {
            // Comfort noise and anything not negotiated.
            self.stats.unknown_payload_type += 1;
            return;
        }
        let ssrc = packet.ssrc();
        let clock_rate = self.config.codec.clock_rate();
        match &mut self.source {
            Some(src) if src.ssrc == ssrc => {}
            current => {
                if let Some(old) = current.take() {
                    self.lost_before += old.seq.lost();
                    self.stats.ssrc_changes += 1;
                    self.jitter.reset();
                    self.dtmf_rx = DtmfReceiver::new();
                    self.events.push_back(RtpEvent::SsrcChanged {
                        old: old.ssrc,
                        new: ssrc,
                    });
                }
                *current = Some(Source {
                    ssrc,
                    seq: SeqTracker::new(packet.sequence_number(), clock_rate, now),
                });
            }
        }
        let Some(src) = &mut self.source else {
            return;
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        match src
            .seq
            .update(packet.sequence_number(), packet.timestamp(), now)
        {
            SeqVerdict::InOrder => {}
            SeqVerdict::OutOfOrder => self.stats.out_of_order += 1,
            SeqVerdict::Duplicate => {
                self.stats.duplicates += 1;
                return;
            }
            SeqVerdict::Suspicious => return,
        }
        if is_event {
            match self
                .dtmf_rx
                .handle(packet.timestamp(), packet.marker_bit(), packet.payload())
            {
                Ok(Some(tone)) => self.events.push_back(RtpEvent::Dtmf(tone)),
                Ok(None) => {}
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        self.jitter.push(
            packet.timestamp(),
            packet.marker_bit(),
            packet.payload().to_vec(),
            now,
        );
    }

    /// Handles one datagram received on the RTCP port (or demultiplexed from RTP with
    /// rtcp-mux).
    pub fn handle_rtcp(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if self.config.latch != LatchMode::Off {
            if let Some(rtp) = self.latched {
                if rtp.ip() != from.ip() {
                    self.stats.foreign_source += 1;
                    return;
                }
            }
        }
        let remote = self.remote_ssrc();
        match self.rtcp.handle(bytes, now, self.ssrc, remote) {
            Ok(notice) => {
                self.stats.rtcp_in += 1;
                self.touch(now);
                if self.config.latch != LatchMode::Off && self.rtcp_remote != Some(from) {
                    self.rtcp_remote = Some(from);
                    self.events.push_back(RtpEvent::RemoteRtcpLatched(from));
                }
                if notice == Some(RtcpNotice::Bye) {
                    self.events.push_back(RtpEvent::Bye);
                }
            }
            Err(_) => self.stats.rtcp_malformed += 1,
        }
    }

    /// What to play for the next 20 ms of this leg; call every 20 ms.
    pub fn pop_playout(&mut self, now: Instant) -> Playout {
        self.jitter.pop(now)
    }

    /// Queues a DTMF key press; it replaces the audio of the next packetized slots.
    /// Returns false (and sends nothing) when telephone-event was not negotiated.
    pub fn send_dtmf(&mut self, tone: DtmfTone, duration: Duration) -> bool {
        if self.config.telephone_event_pt.is_none() {
            return false;
        }
        self.dtmf_queue.push_back((tone, duration));
        true
    }

    /// Wraps one 20 ms encoded payload in an RTP packet, to send to
    /// [`RtpSession::remote_rtp_addr`]. Call every 20 ms; while a DTMF key press is being
    /// sent, returns its telephone-event packet instead of `payload`.
    pub fn packetize(&mut self, payload: &[u8], now: Instant) -> Vec<u8> {
        let step = self.config.codec.samples_per_frame();
        let timestamp = match self.last_sent {
            None => self.rng.u32(..),
            Some((at, ts)) => {
                let gap = now.saturating_duration_since(at);
                if gap > SEND_PAUSE {
                    // The caller stopped sending (hold, silence): keep the RTP clock in step
                    // with real time across the pause, and mark the new talkspurt. A shorter
                    // gap is a late tick whose missed slots the caller is catching up on one
                    // packet each, so jumping here would count the gap twice.
                    self.marker_next = true;
                    let slots = (gap.as_micros() + FRAME_DURATION.as_micros() / 2)
                        / FRAME_DURATION.as_micros();
                    ts.wrapping_add((slots as u32).wrapping_mul(step))
                } else {
                    ts.wrapping_add(step)
                }
            }
        };
        self.last_sent = Some((now, timestamp));
        if self.dtmf_tx.is_none() {
            if let Some((tone, duration)) = self.dtmf_queue.pop_front() {
                let clock = self.config.codec.clock_rate();
                self.dtmf_tx = Some(DtmfSender::new(tone, duration, clock, timestamp));
            }
        }
        if let (Some(tx), Some(te_pt)) = (&mut self.dtmf_tx, self.config.telephone_event_pt) {
            if let Some(p) = tx.next_packet() {
                if tx.is_done() {
                    self.dtmf_tx = None;
                    self.marker_next = true;
                }
                return self.write(te_pt, p.marker, p.timestamp, &p.payload);
            }
        }
        let marker = std::mem::take(&mut self.marker_next);
        self.write(self.config.payload_type, marker, timestamp, payload)
    }

    fn write(&mut self, pt: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        // Payload types were checked at construction, no CSRCs, padding or extensions:
        // nothing the unchecked writer would reject.
        let bytes = RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(pt)
            .marker_bit(marker)
            .sequence_number(seq)
            .timestamp(timestamp)
            .ssrc(self.ssrc)
            .payload(payload)
            .write_vec_unchecked();
        self.stats.packets_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.sent_since_report = true;
        bytes
    }

    /// The next instant [`RtpSession::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Instant {
        let report = self.rtcp.next_report();
        match self.inactivity_deadline() {
            Some(deadline) => deadline.min(report),
            None => report,
        }
    }

    /// Runs timers: RTCP reports and the inactivity deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.inactivity_deadline() {
            if now >= deadline {
                self.inactive_reported = true;
                self.events.push_back(RtpEvent::Inactive);
            }
        }
        if self.rtcp.report_due(now, &mut self.rng) {
            match self.build_rtcp(now, false) {
                Ok(bytes) => self.rtcp_out.push_back(bytes),
                Err(_) => self.stats.rtcp_malformed += 1,
            }
        }
    }

    /// Final RTCP compound with BYE, to send when the leg ends.
    pub fn bye(&mut self, now: Instant) -> Result<Vec<u8>, RtcpError> {
        self.build_rtcp(now, true)
    }

    /// Next event for the call, if any.
    pub fn poll_event(&mut self) -> Option<RtpEvent> {
        self.events.pop_front()
    }

    /// Next RTCP datagram to send to [`RtpSession::remote_rtcp_addr`], if any.
    pub fn poll_rtcp(&mut self) -> Option<Vec<u8>> {
        self.rtcp_out.pop_front()
    }

    fn build_rtcp(&mut self, now: Instant, bye: bool) -> Result<Vec<u8>, RtcpError> {
        let sender = match self.last_sent {
            Some((at, ts)) if self.sent_since_report => {
                let elapsed = now.saturating_duration_since(at);
                let units =
                    elapsed.as_micros() * u128::from(self.config.codec.clock_rate()) / 1_000_000;
                Some(SenderInfo {
                    rtp_timestamp: ts.wrapping_add(units as u32),
                    packets: self.stats.packets_out as u32,
                    octets: (self.stats.bytes_out - 12 * self.stats.packets_out) as u32,
                })
            }
            _ => None,
        };
        let reception = self.source.as_mut().map(|s| (s.ssrc, s.seq.report()));
        let bytes = self.rtcp.build(now, self.ssrc, sender, reception, bye)?;
        self.sent_since_report = false;
        self.stats.rtcp_out += 1;
        Ok(bytes)
    }

    fn inactivity_deadline(&self) -> Option<Instant> {
        let timeout = self.config.inactivity_timeout?;
        (!self.inactive_reported).then(|| self.last_activity + timeout)
    }

    fn touch(&mut self, now: Instant) {
        self.last_activity = now;
        self.inactive_reported = false;
    }

    /// Applies the latch policy to a packet's source; false means drop it.
    fn accept_source(&mut self, from: SocketAddr, ssrc: u32, now: Instant) -> bool {
        if self.config.latch == LatchMode::Off {
            return true;
        }
        match self.latched {
            Some(addr) if addr == from => {
                self.latched_seen = now;
                self.candidate = None;
                true
            }
            None => {
                self.latch(from, now);
                true
            }
            Some(_) => {
                let quiet =
                    now.saturating_duration_since(self.latched_seen) >= self.config.relatch_after;
                let packets = match self.candidate {
                    Some(c) if quiet && c.addr == from && c.ssrc == ssrc => c.packets + 1,
                    // Only packets sent while the latched source is quiet count.
                    _ => u32::from(quiet),
                };
                self.candidate = Some(Candidate {
                    addr: from,
                    ssrc,
                    packets,
                });
                if quiet && packets >= self.config.relatch_packets {
                    self.latch(from, now);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn latch(&mut self, addr: SocketAddr, now: Instant) {
        self.latched = Some(addr);
        self.latched_seen = now;
        self.candidate = None;
        self.events.push_back(RtpEvent::RemoteLatched(addr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::DtmfTone;

    const CARRIER: &str = "192.0.2.10:20000";
    const NAT: &str = "198.51.100.7:31000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn config() -> RtpConfig {
        let mut c = RtpConfig::new(CodecKind::Pcmu, 0, "leg@baton");
        c.telephone_event_pt = Some(101);
        c.remote_rtp = Some(addr(CARRIER));
        c
    }

    fn session(c: RtpConfig, t0: Instant) -> RtpSession {
        RtpSession::with_seed(c, t0, SystemTime::now(), 7).unwrap()
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        RtpPacketBuilder::<&[u8], &[u8]>::new()
            .payload_type(pt)
            .sequence_number(seq)
            .timestamp(ts)
            .ssrc(ssrc)
            .marker_bit(marker)
            .payload(payload)
            .write_vec()
            .unwrap()
    }

    fn events(s: &mut RtpSession) -> Vec<RtpEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn latches_to_first_source_and_drops_others() {
        let t0 = Instant::now();
        let mut s = session(config(), t0);
        assert_eq!(s.remote_rtp_addr(), Some(addr(CARRIER)));
        s.handle_rtp(&packet(0, 1, 160, 9, true, &[0xFF; 160]), addr(NAT), t0);
        assert_eq!(events(&mut s), vec![RtpEvent::RemoteLatched(addr(NAT))]);
        assert_eq!(s.remote_rtp_addr(), Some(addr(NAT)));
        s.handle_rtp(
            &packet(0, 2, 320, 9, false, &[0xFF; 160]),
            addr(CARRIER),
            at(t0, 20),
        );
        assert_eq!(s.stats().foreign_source, 1);
        assert_eq!(s.stats().packets_in, 1);
    }

    #[test]
    fn prefer_sdp_relatches_when_sdp_address_never_sends() {
        let t0 = Instant::now();
        let mut c = config();
        c.latch = LatchMode::PreferSdp;
        let mut s = session(c, t0);
        // Within the first second, another source is refused.
        for i in 0..5u16 {
            s.handle_rtp(
                &packet(0, i, u32::from(i) * 160, 5, false, &[0xFF; 160]),
                addr(NAT),
                at(t0, u64::from(i) * 20),
            );
        }
        assert_eq!(s.remote_rtp_addr(), Some(addr(CARRIER)));
        // After a second of silence from the SDP address, five steady packets take over.
        for i in 50..55u16 {
            s.handle_rtp(
                &packet(0, i, u32::from(i) * 160, 5, false, &[0xFF; 160]),
                addr(NAT),
                at(t0, u64::from(i) * 20),
            );
        }
        assert_eq!(s.remote_rtp_addr(), Some(addr(NAT)));
        assert_eq!(events(&mut s), vec![RtpEvent::RemoteLatched(addr(NAT))]);
        assert_eq!(s.stats().packets_in, 1);
    }

    #[test]
    fn ssrc_change_resets_receive_state_and_playout_continues() {
        let t0 = Instant::now();
        let mut s = session(config(), t0);
        let mut frames = 0;
        for i in 0..100u16 {
            // Media server switch at packet 50: new SSRC, sequence and timestamp base.
            let (ssrc, seq, ts) = if i < 50 {
                (1, 1_000 + i, 50_000 + u32::from(i) * 160)
            } else {
                (2, 40_000 + i, 9_000_000 + u32::from(i) * 160)
            };
            s.handle_rtp(
                &packet(0, seq, ts, ssrc, i == 50, &[0xFF; 160]),
                addr(CARRIER),
                at(t0, u64::from(i) * 20),
            );
            if matches!(
                s.pop_playout(at(t0, u64::from(i) * 20 + 5)),
                Playout::Frame(_)
            ) {
                frames += 1;
            }
        }
        let ev = events(&mut s);
        assert!(ev.contains(&RtpEvent::SsrcChanged { old: 1, new: 2 }));
        assert_eq!(s.remote_ssrc(), Some(2));
        let st = s.stats();
        assert_eq!(st.lost, 0);
        assert_eq!(st.ssrc_changes, 1);
        assert_eq!(st.concealed, 0);
        assert!(frames >= 96, "frames {frames}");
    }

    #[test]
    fn counts_loss_duplicates_reordering_and_malformed() {
        let t0 = Instant::now();
        let mut s = session(config(), t0);
        let seqs = [0u16, 1, 3, 2, 2, 5, 6];
        for (k, &seq) in seqs.iter().enumerate() {
            s.handle_rtp(
                &packet(0, seq, u32::from(seq) * 160, 3, false, &[0xFF; 160]),
                addr(CARRIER),
                at(t0, k as u64 * 20),
            );
        }
        s.handle_rtp(&[0x80, 0], addr(CARRIER), t0);
        s.handle_rtp(&[0x00; 20], addr(CARRIER), t0);
        s.handle_rtp(
            &packet(13, 7, 7 * 160, 3, false, &[0; 1]),
            addr(CARRIER),
            t0,
        );
        let st = s.stats();
        assert_eq!(st.lost, 1);
        assert_eq!(st.duplicates, 1);
        assert_eq!(st.out_of_order, 1);
        assert_eq!(st.malformed, 2);
        assert_eq!(st.unknown_payload_type, 1);
        assert_eq!(st.packets_in, 7);
    }

    #[test]
    fn packetizer_numbers_packets_and_marks_talkspurts() {
        let t0 = Instant::now();
        let mut s = session(config(), t0);
        let parse = |b: &[u8]| {
            let p = RtpPacket::parse(b).unwrap();
            (
                p.sequence_number(),
                p.timestamp(),
                p.marker_bit(),
                p.ssrc(),
                p.payload_type(),
            )
        };
        let a = parse(&s.packetize(&[1; 160], t0));
        let b = parse(&s.packetize(&[1; 160], at(t0, 20)));
        // One second of silence, then talk again.
        let c = parse(&s.packetize(&[1; 160], at(t0, 1_040)));
        assert!(a.2 && !b.2 && c.2);
        assert_eq!(b.0, a.0.wrapping_add(1));
        assert_eq!(c.0, a.0.wrapping_add(2));
        assert_eq!(b.1, a.1.wrapping_add(160));
        assert_eq!(c.1, b.1.wrapping_add(8_160));
        assert_eq!((a.3, a.4), (s.ssrc(), 0));
        assert_eq!(s.stats().packets_out, 3);
    }

    #[test]
    fn dtmf_send_replaces_audio_and_is_received_once() {
        let t0 = Instant::now();
        let mut tx = session(config(), t0);
        let mut rx = session(config(), t0);
        assert!(tx.send_dtmf(DtmfTone::Star, Duration::from_millis(100)));
        let mut pts = Vec::new();
        for k in 0..10u64 {
            let bytes = tx.packetize(&[0xFF; 160], at(t0, k * 20));
            pts.push(RtpPacket::parse(&bytes).unwrap().payload_type());
            rx.handle_rtp(&bytes, addr(CARRIER), at(t0, k * 20 + 30));
        }
        assert_eq!(pts, vec![101, 101, 101, 101, 101, 101, 101, 0, 0, 0]);
        let dtmf: Vec<RtpEvent> = events(&mut rx)
            .into_iter()
            .filter(|e| matches!(e, RtpEvent::Dtmf(_)))
            .collect();
        assert_eq!(dtmf, vec![RtpEvent::Dtmf(DtmfTone::Star)]);
        let mut no_te = config();
        no_te.telephone_event_pt = None;
        assert!(!session(no_te, t0).send_dtmf(DtmfTone::D1, Duration::from_millis(100)));
    }

    #[test]
    fn inactivity_deadline_fires_once_and_rtcp_counts_as_activity() {
        let t0 = Instant::now();
        let mut c = config();
        c.inactivity_timeout = Some(Duration::from_secs(30));
        let mut s = session(c, t0);
        let peer = session(config(), t0);
        let rr = peer.rtcp.build(t0, peer.ssrc(), None, None, false).unwrap();
        s.handle_rtcp(&rr, addr(CARRIER), at(t0, 20_000));
        let mut inactive_at = None;
        let mut now = t0;
        while now < at(t0, 60_000) {
            now = s.poll_timeout().max(now);
            s.handle_timeout(now);
            while let Some(out) = s.poll_rtcp() {
                assert!(rtcp_types::Compound::parse(&out).is_ok());
            }
            if events(&mut s).contains(&RtpEvent::Inactive) {
                assert!(inactive_at.is_none(), "reported twice");
                inactive_at = Some(now);
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(inactive_at, Some(at(t0, 50_000)));
        assert!(s.stats().rtcp_out >= 8);
    }

    #[test]
    fn rtcp_exchange_gives_round_trip_time_and_bye() {
        let t0 = Instant::now();
        let mut a = session(config(), t0);
        let mut b = RtpSession::with_seed(config(), t0, SystemTime::now(), 99).unwrap();
        // a sends audio to b for 3 s; each direction takes 25 ms.
        for k in 0..150u64 {
            let now = at(t0, k * 20);
            let bytes = a.packetize(&[0xFF; 160], now);
            b.handle_rtp(&bytes, addr(NAT), now + Duration::from_millis(25));
        }
        // Drive both report timers for 20 s, delivering reports after 25 ms.
        let mut now = t0;
        while now < at(t0, 20_000) {
            a.handle_timeout(now);
            b.handle_timeout(now);
            while let Some(r) = a.poll_rtcp() {
                b.handle_rtcp(&r, addr(NAT), now + Duration::from_millis(25));
            }
            while let Some(r) = b.poll_rtcp() {
                a.handle_rtcp(&r, addr(CARRIER), now + Duration::from_millis(25));
            }
            now += Duration::from_millis(10);
        }
        let rtt = a.stats().rtt.expect("rtt");
        assert!(
            rtt.abs_diff(Duration::from_millis(50)) <= Duration::from_millis(11),
            "rtt {rtt:?}"
        );
        assert_eq!(a.stats().remote_fraction_lost, Some(0.0));
        let bye = b.bye(now).unwrap();
        a.handle_rtcp(&bye, addr(CARRIER), now);
        assert!(events(&mut a).contains(&RtpEvent::Bye));
    }

    #[test]
    fn rejects_payload_types_above_127() {
        let t0 = Instant::now();
        let c = RtpConfig::new(CodecKind::Opus, 200, "x");
        assert_eq!(
            RtpSession::new(c, t0, SystemTime::now()).unwrap_err(),
            RtpConfigError::InvalidPayloadType(200)
        );
    }

    #[test]
    fn arbitrary_datagrams_never_panic() {
        use proptest::prelude::*;
        let t0 = Instant::now();
        proptest!(|(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..30))| {
            let mut s = session(config(), t0);
            for (k, d) in datagrams.iter().enumerate() {
                let now = at(t0, k as u64 * 20);
                let mut d = d.clone();
                if let Some(first) = d.first_mut() {
                    *first = (*first & 0x3F) | 0x80; // mostly version 2, to get past the first check
                }
                s.handle_rtp(&d, addr(CARRIER), now);
                s.handle_rtcp(&d, addr(CARRIER), now);
                let _ = s.pop_playout(now);
            }
        });
    }
}
