//! RFC 4733 telephone-events (DTMF) over RTP: receiving reports each key press once,
//! however many update and end packets carry it; sending produces the packet train
//! for one key press, one packet per 20 ms.

use std::time::Duration;

/// A DTMF key or hook flash (RFC 4733 §3.2 events 0–16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfTone {
    /// Key 0.
    D0,
    /// Key 1.
    D1,
    /// Key 2.
    D2,
    /// Key 3.
    D3,
    /// Key 4.
    D4,
    /// Key 5.
    D5,
    /// Key 6.
    D6,
    /// Key 7.
    D7,
    /// Key 8.
    D8,
    /// Key 9.
    D9,
    /// Key *.
    Star,
    /// Key #.
    Pound,
    /// Key A.
    A,
    /// Key B.
    B,
    /// Key C.
    C,
    /// Key D.
    D,
    /// Hook flash.
    Flash,
}

/// Tones in event-code order, so the code is the index.
const TONES: [DtmfTone; 17] = [
    DtmfTone::D0,
    DtmfTone::D1,
    DtmfTone::D2,
    DtmfTone::D3,
    DtmfTone::D4,
    DtmfTone::D5,
    DtmfTone::D6,
    DtmfTone::D7,
    DtmfTone::D8,
    DtmfTone::D9,
    DtmfTone::Star,
    DtmfTone::Pound,
    DtmfTone::A,
    DtmfTone::B,
    DtmfTone::C,
    DtmfTone::D,
    DtmfTone::Flash,
];
/// Characters in event-code order; `!` is the customary spelling of flash (SIP INFO, dialplans).
const CHARS: [char; 17] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D', '!',
];

impl DtmfTone {
    /// The tone for an RFC 4733 event code, if it is a DTMF key or flash.
    pub fn from_event_code(code: u8) -> Option<Self> {
        TONES.get(usize::from(code)).copied()
    }

    /// The RFC 4733 event code.
    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// Parses `0-9 * # A-D` (case-insensitive) or `!` for flash.
    pub fn from_char(c: char) -> Option<Self> {
        let c = c.to_ascii_uppercase();
        CHARS
            .iter()
            .position(|&x| x == c)
            .and_then(|i| TONES.get(i).copied())
    }

    /// The key as a character (`!` for flash).
    pub fn as_char(self) -> char {
        CHARS[usize::from(self.event_code())]
    }
}

/// A telephone-event payload that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// The payload is shorter than the 4-byte event block.
    #[error("telephone-event payload is {0} bytes, need 4")]
    Truncated(usize),
}

/// One telephone-event payload block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventBlock {
    code: u8,
    end: bool,
    volume: u8,
    duration: u16,
}

impl EventBlock {
    fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        match payload {
            [code, flags, d0, d1, ..] => Ok(Self {
                code: *code,
                end: flags & 0x80 != 0,
                volume: flags & 0x3F,
                duration: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => Err(DtmfError::Truncated(payload.len())),
        }
    }

    fn to_bytes(self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let end = if self.end { 0x80 } else { 0 };
        [self.code, end | (self.volume & 0x3F), d0, d1]
    }
}

/// The event currently being received.
#[derive(Debug, Clone, Copy)]
struct CurrentEvent {
    timestamp: u32,
    code: u8,
    ended: bool,
}

/// Turns received telephone-event packets into one report per key press.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<CurrentEvent>,
}

impl DtmfReceiver {
    /// Creates a receiver with no event in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one telephone-event packet; returns the tone the first time an event
    /// (identified by its RTP timestamp) is seen. Events other than keys and flash are
    /// ignored.
    pub fn handle(
        &mut self,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Option<DtmfTone>, DtmfError> {
        let block = EventBlock::parse(payload)?;
        if let Some(cur) = &mut self.current {
            let age = timestamp.wrapping_sub(cur.timestamp) as i32;
            if age == 0 {
                cur.ended |= block.end;
                return Ok(None);
            }
            if age < 0 {
                // A straggler from an earlier event.
                return Ok(None);
            }
            // A long event continues in a new segment with a new timestamp and no marker
            // (RFC 4733 §2.5.1.3); it is still the same key press.
            if !cur.ended && !marker && cur.code == block.code {
                cur.timestamp = timestamp;
                cur.ended = block.end;
                return Ok(None);
            }
        }
        self.current = Some(CurrentEvent {
            timestamp,
            code: block.code,
            ended: block.end,
        });
        Ok(DtmfTone::from_event_code(block.code))
    }
}

/// Volume sent with generated events: -10 dBm0, a typical keypad level.
const SEND_VOLUME: u8 = 10;
/// How many times the final (end) packet is sent (RFC 4733 §2.5.1.4).
const END_REPEATS: u8 = 3;

/// One telephone-event packet to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The 4-byte payload.
    pub payload: [u8; 4],
    /// Marker bit: set on the first packet of the event.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same for every packet.
    pub timestamp: u32,
}

/// Generates the packet train for one key press; call [`DtmfSender::next_packet`] every 20 ms.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    code: u8,
    timestamp: u32,
    step: u32,
    total: u16,
    sent: u32,
    ends_sent: u8,
}

impl DtmfSender {
    /// Plans a key press of `duration` starting at RTP `timestamp` on a clock of
    /// `clock_rate` Hz. Durations beyond the 16-bit field are cut to it.
    pub fn new(tone: DtmfTone, duration: Duration, clock_rate: u32, timestamp: u32) -> Self {
        let step = (clock_rate / 50).max(1);
        let units = duration.as_micros() * u128::from(clock_rate) / 1_000_000;
        let total = u16::try_from(units).unwrap_or(u16::MAX).max(1);
        Self {
            code: tone.event_code(),
            timestamp,
            step,
            total,
            sent: 0,
            ends_sent: 0,
        }
    }

    /// True once every packet, including the repeated end packets, has been produced.
    pub fn is_done(&self) -> bool {
        self.ends_sent >= END_REPEATS
    }

    /// The next packet, or `None` when the event is complete.
    pub fn next_packet(&mut self) -> Option<DtmfPacket> {
        if self.is_done() {
            return None;
        }
        let first = self.sent == 0;
        let duration = (self.sent + self.step).min(u32::from(self.total));
        self.sent = duration;
        let end = duration >= u32::from(self.total);
        if end {
            self.ends_sent += 1;
        }
        let block = EventBlock {
            code: self.code,
            end,
            volume: SEND_VOLUME,
            duration: u16::try_from(duration).unwrap_or(u16::MAX),
        };
        Some(DtmfPacket {
            payload: block.to_bytes(),
            marker: first,
            timestamp: self.timestamp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tone_codes_and_chars_round_trip() {
        for code in 0..=16u8 {
            let tone = DtmfTone::from_event_code(code).unwrap();
            assert_eq!(tone.event_code(), code);
            assert_eq!(DtmfTone::from_char(tone.as_char()), Some(tone));
        }
        assert_eq!(DtmfTone::from_event_code(17), None);
        assert_eq!(DtmfTone::from_char('#'), Some(DtmfTone::Pound));
        assert_eq!(DtmfTone::from_char('b'), Some(DtmfTone::B));
        assert_eq!(DtmfTone::from_char('x'), None);
    }

    #[test]
    fn one_report_per_event_despite_updates_and_end_repeats() {
        let mut sender = DtmfSender::new(DtmfTone::D5, Duration::from_millis(100), 8_000, 1_000);
        let mut rx = DtmfReceiver::new();
        let mut reports = Vec::new();
        while let Some(p) = sender.next_packet() {
            if let Some(t) = rx.handle(p.timestamp, p.marker, &p.payload).unwrap() {
                reports.push(t);
            }
        }
        assert_eq!(reports, vec![DtmfTone::D5]);
    }

    #[test]
    fn sender_produces_rfc4733_train() {
        let mut sender = DtmfSender::new(DtmfTone::Pound, Duration::from_millis(100), 8_000, 42);
        let packets: Vec<DtmfPacket> = std::iter::from_fn(|| sender.next_packet()).collect();
        let durations: Vec<u16> = packets
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<bool> = packets.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends, vec![false, false, false, false, true, true, true]);
        assert!(packets[0].marker);
        assert!(packets[1..].iter().all(|p| !p.marker));
        assert!(packets
            .iter()
            .all(|p| p.timestamp == 42 && p.payload[0] == 11));
        assert!(sender.is_done());
    }

    #[test]
    fn repeated_digit_is_two_events_by_timestamp() {
        let mut rx = DtmfReceiver::new();
        let mut reports = Vec::new();
        for start in [0u32, 1_600] {
            let mut s = DtmfSender::new(DtmfTone::D1, Duration::from_millis(60), 8_000, start);
            while let Some(p) = s.next_packet() {
                reports.extend(rx.handle(p.timestamp, p.marker, &p.payload).unwrap());
            }
        }
        assert_eq!(reports, vec![DtmfTone::D1, DtmfTone::D1]);
    }

    #[test]
    fn event_seen_only_through_end_packets_is_still_reported() {
        let mut rx = DtmfReceiver::new();
        let end = EventBlock {
            code: 16,
            end: true,
            volume: 10,
            duration: 800,
        }
        .to_bytes();
        assert_eq!(rx.handle(500, false, &end).unwrap(), Some(DtmfTone::Flash));
        assert_eq!(rx.handle(500, false, &end).unwrap(), None);
    }

    #[test]
    fn long_event_segments_are_one_key_press() {
        let mut rx = DtmfReceiver::new();
        let block = |duration| {
            EventBlock {
                code: 9,
                end: false,
                volume: 10,
                duration,
            }
            .to_bytes()
        };
        assert_eq!(rx.handle(0, true, &block(160)).unwrap(), Some(DtmfTone::D9));
        // Second segment after the 16-bit duration filled up: new timestamp, no marker.
        assert_eq!(rx.handle(65_535, false, &block(160)).unwrap(), None);
        // Stragglers from before are ignored.
        assert_eq!(rx.handle(0, false, &block(65_535)).unwrap(), None);
    }

    #[test]
    fn truncated_and_unknown_events() {
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.handle(0, true, &[1, 2]), Err(DtmfError::Truncated(2)));
        assert_eq!(rx.handle(0, true, &[40, 0, 0, 160]), Ok(None));
    }

    #[test]
    fn short_event_is_a_single_marked_end_train() {
        let mut s = DtmfSender::new(DtmfTone::D0, Duration::from_millis(5), 8_000, 0);
        let first = s.next_packet().unwrap();
        assert!(first.marker);
        assert_eq!(first.payload[1] & 0x80, 0x80);
        assert_eq!(std::iter::from_fn(|| s.next_packet()).count(), 2);
    }
}
