//! Per-leg counters for metrics, and the RFC 3550 receive-side bookkeeping behind them
//! (extended sequence numbers, loss, duplicates, interarrival jitter).

use std::time::{Duration, Instant};

/// Counters for one leg, as shown by the metrics endpoint. Totals survive SSRC changes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    /// RTP packets received and accepted (including duplicates and late ones).
    pub packets_in: u64,
    /// RTP bytes received and accepted (whole datagrams).
    pub bytes_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// RTP bytes sent (whole datagrams).
    pub bytes_out: u64,
    /// Packets never received (expected minus received, RFC 3550 A.3).
    pub lost: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets that arrived after their playout slot.
    pub late: u64,
    /// Packets that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// Slots the decoder had to conceal.
    pub concealed: u64,
    /// Interarrival jitter (RFC 3550 A.8), in milliseconds.
    pub jitter_ms: f64,
    /// RTP datagrams that failed to parse.
    pub malformed: u64,
    /// RTP packets with a payload type the leg did not negotiate.
    pub unknown_payload_type: u64,
    /// RTP/RTCP datagrams dropped because they came from an address not latched.
    pub foreign_source: u64,
    /// Times the remote's SSRC changed.
    pub ssrc_changes: u64,
    /// RTCP compound packets received.
    pub rtcp_in: u64,
    /// RTCP compound packets sent.
    pub rtcp_out: u64,
    /// RTCP datagrams that failed to parse.
    pub rtcp_malformed: u64,
    /// Round-trip time from the last RTCP report about our stream.
    pub rtt: Option<Duration>,
    /// Fraction of our packets the remote reports lost (0.0–1.0), from its last report.
    pub remote_fraction_lost: Option<f64>,
}

impl LegStats {
    /// The leg's figures when its session replaced an `earlier` one (a codec change
    /// starts a new session): counters are summed, while jitter and the remote's report
    /// are the current session's, or the earlier one's while the current has none.
    pub fn after(self, earlier: &LegStats) -> LegStats {
        LegStats {
            packets_in: earlier.packets_in + self.packets_in,
            bytes_in: earlier.bytes_in + self.bytes_in,
            packets_out: earlier.packets_out + self.packets_out,
            bytes_out: earlier.bytes_out + self.bytes_out,
            lost: earlier.lost + self.lost,
            duplicates: earlier.duplicates + self.duplicates,
            late: earlier.late + self.late,
            out_of_order: earlier.out_of_order + self.out_of_order,
            concealed: earlier.concealed + self.concealed,
            jitter_ms: if self.packets_in > 0 {
                self.jitter_ms
            } else {
                earlier.jitter_ms
            },
            malformed: earlier.malformed + self.malformed,
            unknown_payload_type: earlier.unknown_payload_type + self.unknown_payload_type,
            foreign_source: earlier.foreign_source + self.foreign_source,
            ssrc_changes: earlier.ssrc_changes + self.ssrc_changes,
            rtcp_in: earlier.rtcp_in + self.rtcp_in,
            rtcp_out: earlier.rtcp_out + self.rtcp_out,
            rtcp_malformed: earlier.rtcp_malformed + self.rtcp_malformed,
            rtt: self.rtt.or(earlier.rtt),
            remote_fraction_lost: self.remote_fraction_lost.or(earlier.remote_fraction_lost),
        }
    }
}

/// A sequence number jump larger than this is suspicious (RFC 3550 A.1 MAX_DROPOUT).
const MAX_DROPOUT: i32 = 3_000;
/// A sequence number this far behind the highest is a reordered packet (MAX_MISORDER).
const MAX_MISORDER: i32 = 100;
/// Sequence numbers remembered for duplicate detection.
const DUP_WINDOW: i32 = 128;

/// How a packet's sequence number relates to what was already received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqVerdict {
    /// Newer than anything received so far.
    InOrder,
    /// Older than the highest but not seen before.
    OutOfOrder,
    /// Already received.
    Duplicate,
    /// A large jump; accepted only if the next packet confirms it (the sender restarted).
    Suspicious,
}

/// Numbers for one RTCP report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceptionReport {
    pub(crate) fraction_lost: u8,
    /// 24-bit two's complement, as on the wire.
    pub(crate) cumulative_lost: u32,
    pub(crate) extended_highest_seq: u32,
    pub(crate) jitter: u32,
}

/// Receive-side state for one SSRC: RFC 3550 A.1 (sequence), A.3 (loss), A.8 (jitter).
#[derive(Debug)]
pub(crate) struct SeqTracker {
    clock_rate: u32,
    epoch: Instant,
    base: i64,
    highest: i64,
    /// Bit i set: sequence `highest - i` was received.
    window: u128,
    bad_seq: Option<u16>,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_transit: Option<u32>,
    jitter: f64,
}

impl SeqTracker {
    /// Starts tracking at the first packet's sequence number.
    pub(crate) fn new(seq: u16, clock_rate: u32, now: Instant) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            epoch: now,
            base: i64::from(seq),
            highest: i64::from(seq) - 1,
            window: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter: 0.0,
        }
    }

    /// Classifies and records one packet.
    pub(crate) fn update(&mut self, seq: u16, timestamp: u32, now: Instant) -> SeqVerdict {
        let delta = i32::from(seq.wrapping_sub(self.highest as u16) as i16);
        let verdict = if delta > 0 && delta < MAX_DROPOUT {
            self.advance(delta);
            SeqVerdict::InOrder
        } else if delta <= 0 && -delta < MAX_MISORDER {
            let bit = 1u128.checked_shl((-delta) as u32).unwrap_or(0);
            if -delta >= DUP_WINDOW || self.window & bit != 0 {
                return SeqVerdict::Duplicate;
            }
            self.window |= bit;
            self.received += 1;
            SeqVerdict::OutOfOrder
        } else if self.bad_seq == Some(seq) {
            // Two sequential packets after a jump: the sender restarted its numbering.
            // Re-base so both count as received and earlier totals carry on unchanged.
            let expected = self.expected() as i64;
            self.highest = i64::from(seq);
            self.base = self.highest - (expected + 2) + 1;
            self.window = 0b11;
            self.bad_seq = None;
            self.received += 2;
            SeqVerdict::InOrder
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            return SeqVerdict::Suspicious;
        };
        self.update_jitter(timestamp, now);
        verdict
    }

    fn advance(&mut self, delta: i32) {
        self.highest += i64::from(delta);
        self.window = self.window.checked_shl(delta as u32).unwrap_or(0) | 1;
        self.received += 1;
        self.bad_seq = None;
    }

    fn update_jitter(&mut self, timestamp: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.epoch);
        let arrival = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn expected(&self) -> u64 {
        u64::try_from(self.highest - self.base + 1).unwrap_or(0)
    }

    /// Packets lost so far (never negative: duplicates are not counted as received).
    pub(crate) fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub(crate) fn jitter_ms(&self) -> f64 {
        self.jitter * 1_000.0 / f64::from(self.clock_rate)
    }

    /// Numbers for a report block; starts a new reporting interval.
    pub(crate) fn report(&mut self) -> ReceptionReport {
        let expected = self.expected();
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let cumulative = (expected as i64 - self.received as i64).clamp(-0x80_0000, 0x7F_FFFF);
        ReceptionReport {
            fraction_lost,
            cumulative_lost: (cumulative as u32) & 0x00FF_FFFF,
            extended_highest_seq: self.highest as u32,
            jitter: self.jitter as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_session_keeps_its_totals() {
        let earlier = LegStats {
            packets_in: 150,
            packets_out: 160,
            lost: 2,
            jitter_ms: 4.0,
            rtt: Some(Duration::from_millis(30)),
            ..LegStats::default()
        };
        let fresh = LegStats::default().after(&earlier);
        assert_eq!(
            fresh, earlier,
            "nothing received yet: the earlier figures stand"
        );
        let now = LegStats {
            packets_in: 250,
            packets_out: 251,
            lost: 1,
            jitter_ms: 1.5,
            ..LegStats::default()
        };
        let both = now.after(&earlier);
        assert_eq!(
            (both.packets_in, both.packets_out, both.lost),
            (400, 411, 3)
        );
        assert_eq!(both.jitter_ms, 1.5);
        assert_eq!(both.rtt, Some(Duration::from_millis(30)));
    }

    fn feed(t: &mut SeqTracker, seqs: &[u16], t0: Instant) -> Vec<SeqVerdict> {
        seqs.iter()
            .map(|&s| t.update(s, u32::from(s) * 160, t0))
            .collect()
    }

    #[test]
    fn counts_loss_and_wraps_sequence_numbers() {
        let t0 = Instant::now();
        let mut t = SeqTracker::new(65_530, 8_000, t0);
        let seqs: Vec<u16> = (0..20u16)
            .map(|i| 65_530u16.wrapping_add(i))
            .filter(|&s| s != 2)
            .collect();
        let v = feed(&mut t, &seqs, t0);
        assert!(v.iter().all(|&x| x == SeqVerdict::InOrder));
        assert_eq!(t.lost(), 1);
        let r = t.report();
        assert_eq!(r.extended_highest_seq, 65_536 + 13);
        assert_eq!(r.cumulative_lost, 1);
        assert_eq!(r.fraction_lost, (256 / 20) as u8);
    }

    #[test]
    fn detects_duplicates_and_reordering() {
        let t0 = Instant::now();
        let mut t = SeqTracker::new(100, 8_000, t0);
        let v = feed(&mut t, &[100, 102, 101, 101, 102, 103], t0);
        use SeqVerdict::*;
        assert_eq!(
            v,
            vec![InOrder, InOrder, OutOfOrder, Duplicate, Duplicate, InOrder]
        );
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn large_jump_needs_confirmation_then_restarts() {
        let t0 = Instant::now();
        let mut t = SeqTracker::new(10, 8_000, t0);
        use SeqVerdict::*;
        assert_eq!(
            feed(&mut t, &[10, 11, 40_000], t0),
            vec![InOrder, InOrder, Suspicious]
        );
        assert_eq!(feed(&mut t, &[12], t0), vec![InOrder]);
        assert_eq!(
            feed(&mut t, &[50_000, 50_001, 50_002], t0),
            vec![Suspicious, InOrder, InOrder]
        );
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn jitter_follows_rfc3550_estimator() {
        let t0 = Instant::now();
        let mut t = SeqTracker::new(0, 8_000, t0);
        // Packets every 20 ms but alternately 10 ms late: |D| = 80 units each time.
        for i in 0..200u16 {
            let late = if i % 2 == 1 { 10 } else { 0 };
            let now = t0 + Duration::from_millis(u64::from(i) * 20 + late);
            t.update(i, u32::from(i) * 160, now);
        }
        assert!(
            (t.jitter_ms() - 10.0).abs() < 0.5,
            "jitter {}",
            t.jitter_ms()
        );
    }

    #[test]
    fn fraction_lost_is_per_interval() {
        let t0 = Instant::now();
        let mut t = SeqTracker::new(0, 8_000, t0);
        let first: Vec<u16> = (0..100).filter(|s| s % 4 != 3).collect();
        feed(&mut t, &first, t0);
        // Highest received is 98: 24 of 99 expected were lost.
        assert_eq!(t.report().fraction_lost, (24 * 256 / 99) as u8);
        let second: Vec<u16> = (100..200).collect();
        feed(&mut t, &second, t0);
        let r = t.report();
        // Only 99 was lost in the second interval.
        assert_eq!(r.fraction_lost, (256 / 101) as u8);
        assert_eq!(r.cumulative_lost, 25);
    }
}
