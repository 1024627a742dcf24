//! RTCP for one leg: building SR/RR + SDES (and BYE) compounds, reading the remote's
//! reports (round-trip time from LSR/DLSR), and the RFC 3550 report interval.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtcp_types::{
    Bye, Compound, Packet, ReceiverReport, ReportBlock, ReportBlockBuilder, RtcpPacketWriter,
    RtcpPacketWriterExt, RtcpParseError, RtcpWriteError, Sdes, SdesChunk, SdesItem, SenderReport,
};

use crate::stats::ReceptionReport;

/// Minimum RTCP interval (RFC 3550 §6.2).
const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Compensation for the randomisation's bias (RFC 3550 §6.3.1: e - 3/2).
const RANDOM_COMPENSATION: f64 = 1.218_28;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// An RTCP datagram that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// The compound packet is malformed.
    #[error("malformed RTCP: {0}")]
    Parse(#[from] RtcpParseError),
    /// Building a report failed (a field out of range).
    #[error("cannot build RTCP: {0}")]
    Write(#[from] RtcpWriteError),
}

/// What the sender side contributes to an SR.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SenderInfo {
    pub(crate) rtp_timestamp: u32,
    pub(crate) packets: u32,
    pub(crate) octets: u32,
}

/// Something learned from an incoming compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RtcpNotice {
    /// The remote left (BYE naming its SSRC).
    Bye,
}

/// The remote's view of our stream, from its last report block about us.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RemoteView {
    pub(crate) fraction_lost: f64,
    pub(crate) rtt: Option<Duration>,
}

/// RTCP state of one leg.
#[derive(Debug)]
pub(crate) struct RtcpState {
    cname: String,
    anchor: (Instant, SystemTime),
    next_report: Instant,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    remote_view: Option<RemoteView>,
}

impl RtcpState {
    /// `wall` is the wall-clock time at `now`; it only feeds NTP timestamps.
    pub(crate) fn new(
        cname: String,
        now: Instant,
        wall: SystemTime,
        rng: &mut fastrand::Rng,
    ) -> Self {
        // The first report goes out after half the minimum interval (RFC 3550 §6.2).
        let first = randomised(MIN_INTERVAL / 2, rng);
        Self {
            cname,
            anchor: (now, wall),
            next_report: now + first,
            last_sr: None,
            remote_view: None,
        }
    }

    pub(crate) fn next_report(&self) -> Instant {
        self.next_report
    }

    pub(crate) fn remote_view(&self) -> Option<RemoteView> {
        self.remote_view
    }

    /// Whether a report is due; if so, schedules the next one.
    pub(crate) fn report_due(&mut self, now: Instant, rng: &mut fastrand::Rng) -> bool {
        if now < self.next_report {
            return false;
        }
        self.next_report = now + randomised(MIN_INTERVAL, rng);
        true
    }

    /// 64-bit NTP time corresponding to `now`.
    pub(crate) fn ntp_time(&self, now: Instant) -> u64 {
        let (at, wall) = self.anchor;
        let wall = if now >= at {
            wall + (now - at)
        } else {
            wall - (at - now)
        };
        let unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = unix.as_secs() + NTP_UNIX_OFFSET;
        let frac = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }

    /// Builds SR (when `sender` is given) or RR, with a report block about the remote's
    /// stream when given, followed by SDES CNAME; plus BYE when `bye` is set.
    pub(crate) fn build(
        &self,
        now: Instant,
        ssrc: u32,
        sender: Option<SenderInfo>,
        reception: Option<(u32, ReceptionReport)>,
        bye: bool,
    ) -> Result<Vec<u8>, RtcpError> {
        let block = reception.map(|(remote, r)| self.report_block(now, remote, r));
        let mut compound = Compound::builder();
        compound = match sender {
            Some(s) => {
                let mut sr = SenderReport::builder(ssrc)
                    .ntp_timestamp(self.ntp_time(now))
                    .rtp_timestamp(s.rtp_timestamp)
                    .packet_count(s.packets)
                    .octet_count(s.octets);
                if let Some(b) = block {
                    sr = sr.add_report_block(b);
                }
                compound.add_packet(sr)
            }
            None => {
                let mut rr = ReceiverReport::builder(ssrc);
                if let Some(b) = block {
                    rr = rr.add_report_block(b);
                }
                compound.add_packet(rr)
            }
        };
        let chunk =
            SdesChunk::builder(ssrc).add_item(SdesItem::builder(SdesItem::CNAME, &self.cname));
        compound = compound.add_packet(Sdes::builder().add_chunk(chunk));
        if bye {
            compound = compound.add_packet(Bye::builder().add_source(ssrc));
        }
        let mut buf = vec![0; compound.calculate_size()?];
        let n = compound.write_into(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn report_block(&self, now: Instant, remote: u32, r: ReceptionReport) -> ReportBlockBuilder {
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => {
                let delay = now.saturating_duration_since(at);
                let units = delay.as_micros() * 65_536 / 1_000_000;
                (lsr, u32::try_from(units).unwrap_or(u32::MAX))
            }
            None => (0, 0),
        };
        ReportBlock::builder(remote)
            .fraction_lost(r.fraction_lost)
            .cumulative_lost(r.cumulative_lost)
            .extended_sequence_number(r.extended_highest_seq)
            .interarrival_jitter(r.jitter)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(dlsr)
    }

    /// Reads an incoming compound packet. `ours` is our SSRC (report blocks about us give
    /// RTT and remote loss); `remote` is the SSRC we receive, if known (for BYE).
    pub(crate) fn handle(
        &mut self,
        bytes: &[u8],
        now: Instant,
        ours: u32,
        remote: Option<u32>,
    ) -> Result<Option<RtcpNotice>, RtcpError> {
        let mut notice = None;
        for packet in Compound::parse(bytes)? {
            match packet? {
                Packet::Sr(sr) => {
                    if sr.ssrc() != ours {
                        self.last_sr = Some(((sr.ntp_timestamp() >> 16) as u32, now));
                    }
                    for block in sr.report_blocks() {
                        self.read_block(&block, now, ours);
                    }
                }
                Packet::Rr(rr) => {
                    for block in rr.report_blocks() {
                        self.read_block(&block, now, ours);
                    }
                }
                Packet::Bye(bye) if bye.ssrcs().any(|s| Some(s) == remote || remote.is_none()) => {
                    notice = Some(RtcpNotice::Bye);
                }
                _ => {}
            }
        }
        Ok(notice)
    }

    fn read_block(&mut self, block: &ReportBlock<'_>, now: Instant, ours: u32) {
        if block.ssrc() != ours {
            return;
        }
        let lsr = block.last_sender_report_timestamp();
        let rtt = (lsr != 0)
            .then(|| {
                let arrival = (self.ntp_time(now) >> 16) as u32;
                let units = arrival
                    .wrapping_sub(lsr)
                    .wrapping_sub(block.delay_since_last_sender_report_timestamp());
                // A "negative" result means clocks or fields are bogus; ignore it.
                (units < 0x8000_0000)
                    .then(|| Duration::from_micros(u64::from(units) * 1_000_000 / 65_536))
            })
            .flatten();
        self.remote_view = Some(RemoteView {
            fraction_lost: f64::from(block.fraction_lost()) / 256.0,
            rtt: rtt.or(self.remote_view.and_then(|v| v.rtt)),
        });
    }
}

/// The RFC 3550 randomised interval: uniform in [0.5, 1.5] × base, over e − 3/2.
fn randomised(base: Duration, rng: &mut fastrand::Rng) -> Duration {
    base.mul_f64((0.5 + rng.f64()) / RANDOM_COMPENSATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(now: Instant) -> RtcpState {
        RtcpState::new(
            "leg@baton".into(),
            now,
            SystemTime::now(),
            &mut fastrand::Rng::with_seed(1),
        )
    }

    fn report() -> ReceptionReport {
        ReceptionReport {
            fraction_lost: 12,
            cumulative_lost: 0x00FF_FFFF,
            extended_highest_seq: 70_000,
            jitter: 80,
        }
    }

    #[test]
    fn sender_report_with_block_and_cname_parses_back() {
        let now = Instant::now();
        let s = state(now);
        let sender = SenderInfo {
            rtp_timestamp: 1234,
            packets: 10,
            octets: 1720,
        };
        let bytes = s
            .build(now, 0xAAAA, Some(sender), Some((0xBBBB, report())), false)
            .unwrap();
        let packets: Vec<_> = Compound::parse(&bytes).unwrap().collect();
        assert_eq!(packets.len(), 2);
        match packets[0].as_ref().unwrap() {
            Packet::Sr(sr) => {
                assert_eq!(sr.ssrc(), 0xAAAA);
                assert_eq!(sr.packet_count(), 10);
                let b = sr.report_blocks().next().unwrap();
                assert_eq!(b.ssrc(), 0xBBBB);
                assert_eq!(b.fraction_lost(), 12);
                assert_eq!(b.cumulative_lost(), 0x00FF_FFFF);
                assert_eq!(b.extended_sequence_number(), 70_000);
                assert_eq!(b.interarrival_jitter(), 80);
            }
            other => panic!("expected SR, got {other:?}"),
        }
        match packets[1].as_ref().unwrap() {
            Packet::Sdes(sdes) => {
                let chunk = sdes.chunks().next().unwrap();
                let item = chunk.items().next().unwrap();
                assert_eq!(item.type_(), SdesItem::CNAME);
                assert_eq!(item.value(), b"leg@baton");
            }
            other => panic!("expected SDES, got {other:?}"),
        }
    }

    #[test]
    fn receiver_report_and_bye() {
        let now = Instant::now();
        let s = state(now);
        let bytes = s.build(now, 1, None, None, true).unwrap();
        let kinds: Vec<bool> = Compound::parse(&bytes)
            .unwrap()
            .map(|p| matches!(p.unwrap(), Packet::Rr(_) | Packet::Sdes(_) | Packet::Bye(_)))
            .collect();
        assert_eq!(kinds, vec![true, true, true]);
        let mut other = state(now);
        assert_eq!(
            other.handle(&bytes, now, 2, Some(1)).unwrap(),
            Some(RtcpNotice::Bye)
        );
    }

    #[test]
    fn round_trip_time_from_lsr_and_dlsr() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut us = RtcpState::new("a".into(), t0, wall, &mut rng);
        // The peer's clock is an hour off: RTT must not depend on it.
        let mut peer = RtcpState::new("b".into(), t0, wall + Duration::from_secs(3_600), &mut rng);
        let sender = SenderInfo {
            rtp_timestamp: 0,
            packets: 1,
            octets: 160,
        };
        // Our SR takes 30 ms to reach the peer; the peer answers 400 ms later; 30 ms back.
        let sr = us.build(t0, 10, Some(sender), None, false).unwrap();
        peer.handle(&sr, t0 + Duration::from_millis(30), 20, Some(10))
            .unwrap();
        let reception = ReceptionReport {
            fraction_lost: 64,
            cumulative_lost: 5,
            extended_highest_seq: 100,
            jitter: 0,
        };
        let rr = peer
            .build(
                t0 + Duration::from_millis(430),
                20,
                None,
                Some((10, reception)),
                false,
            )
            .unwrap();
        us.handle(&rr, t0 + Duration::from_millis(460), 10, Some(20))
            .unwrap();
        let view = us.remote_view().unwrap();
        let rtt = view.rtt.unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(60)) < Duration::from_millis(1),
            "rtt {rtt:?}"
        );
        assert_eq!(view.fraction_lost, 0.25);
    }

    #[test]
    fn interval_is_randomised_around_five_seconds() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(9);
        let mut s = RtcpState::new("a".into(), t0, SystemTime::now(), &mut rng);
        let first = s.next_report() - t0;
        assert!(first >= Duration::from_millis(1_000) && first <= Duration::from_millis(3_100));
        assert!(!s.report_due(t0, &mut rng));
        let mut now = s.next_report();
        let mut gaps = Vec::new();
        for _ in 0..50 {
            assert!(s.report_due(now, &mut rng));
            gaps.push(s.next_report() - now);
            now = s.next_report();
        }
        assert!(gaps
            .iter()
            .all(|g| *g >= Duration::from_millis(2_000) && *g <= Duration::from_millis(6_200)));
        assert!(gaps.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn malformed_compounds_are_errors_not_panics() {
        use proptest::prelude::*;
        let now = Instant::now();
        proptest!(|(bytes in proptest::collection::vec(any::<u8>(), 0..120))| {
            let _ = state(now).handle(&bytes, now, 1, Some(2));
        });
        let mut s = state(now);
        assert!(s.handle(&[0x80, 200, 0, 50], now, 1, None).is_err());
    }
}
