//! Digits baton keys to the caller (`send_dtmf`): a caller that offered telephone-event
//! receives each digit as one RFC 4733 event, in order, with the marker bit on its first
//! packet and end packets closing it; a caller that did not offer it gets no events and
//! the call carries on.

mod common;

use common::{Baton, SipCaller};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Half a second of silence, the digits 4, 2 and #, then two more seconds on the line.
const SEND_PLAN: &str = r##"
name = "keys-out"
description = "Keys 4, 2, # to the caller after half a second."
match = ["keys-out"]

[[step]]
pause = 0.5

[[step]]
send_dtmf = "42#"

[[step]]
pause = 2
"##;

/// The telephone-event payload type the caller offers.
const EVENT_PT: u8 = 101;
/// RFC 4733 event code of `#`.
const POUND: u8 = 11;

/// One RTP packet as the caller received it.
#[derive(Debug, Clone, Copy)]
struct RtpPacket {
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// For telephone-events: event code, end bit, duration.
    event: Option<(u8, bool, u16)>,
}

impl RtpPacket {
    /// Parses an RTP packet (RFC 3550 §5.1); `None` when it is not one.
    fn parse(bytes: &[u8]) -> Option<RtpPacket> {
        let header = bytes.get(..12)?;
        if header[0] >> 6 != 2 {
            return None;
        }
        let csrc_len = usize::from(header[0] & 0x0f) * 4;
        let mut offset = 12 + csrc_len;
        if header[0] & 0x10 != 0 {
            let ext = bytes.get(offset..offset + 4)?;
            offset += 4 + usize::from(u16::from_be_bytes([ext[2], ext[3]])) * 4;
        }
        let payload = bytes.get(offset..)?;
        let payload_type = header[1] & 0x7f;
        let event = if payload_type == EVENT_PT {
            let p = payload.get(..4)?;
            Some((p[0], p[1] & 0x80 != 0, u16::from_be_bytes([p[2], p[3]])))
        } else {
            None
        };
        Some(RtpPacket {
            marker: header[1] & 0x80 != 0,
            payload_type,
            seq: u16::from_be_bytes([header[2], header[3]]),
            timestamp: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            ssrc: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
            event,
        })
    }
}

/// Every RTP packet arriving on `sock` until `done` says the stream is complete, or
/// until `limit` passes.
fn receive_rtp(
    sock: &UdpSocket,
    limit: Duration,
    mut done: impl FnMut(&[RtpPacket]) -> bool,
) -> Vec<RtpPacket> {
    let deadline = Instant::now() + limit;
    let mut packets = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set RTP read timeout");
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(p) = RtpPacket::parse(&buf[..n]) {
                    packets.push(p);
                    if done(&packets) {
                        break;
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) => panic!("receive RTP: {e}"),
        }
    }
    packets
}

/// The telephone-events in `packets`, one list of packets per event (RFC 4733 §2.5.1.2:
/// every packet of one event carries the event's start as its timestamp).
fn events(packets: &[RtpPacket]) -> Vec<Vec<RtpPacket>> {
    let mut out: Vec<Vec<RtpPacket>> = Vec::new();
    for p in packets.iter().filter(|p| p.event.is_some()) {
        match out.last_mut() {
            Some(event) if event[0].timestamp == p.timestamp => event.push(*p),
            _ => out.push(vec![*p]),
        }
    }
    out
}

/// Whether `packets` hold three events whose last one has sent its three end packets.
fn three_events_ended(packets: &[RtpPacket]) -> bool {
    let events = events(packets);
    events.len() >= 3
        && events[2]
            .iter()
            .filter(|p| p.event.is_some_and(|(_, end, _)| end))
            .count()
            >= 3
}

#[test]
fn digits_reach_the_caller_as_telephone_events() {
    let baton = Baton::builder("dtmf-out")
        .dialplan("keys-out", SEND_PLAN)
        .start();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind the caller's RTP socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let mut call = caller.call("keys-out", rtp.local_addr().expect("RTP address").port());

    let packets = receive_rtp(&rtp, Duration::from_secs(6), three_events_ended);
    assert_eq!(caller.bye(&mut call), Some(200), "BYE answered 200");
    let summary = || {
        packets
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };

    let events = events(&packets);
    let codes: Vec<u8> = events
        .iter()
        .filter_map(|e| e[0].event.map(|(code, _, _)| code))
        .collect();
    assert_eq!(
        codes,
        [4, 2, POUND],
        "events 4, 2, # in order; packets:\n{}",
        summary()
    );
    for (event, code) in events.iter().zip(codes) {
        let first = event[0];
        assert!(
            first.marker,
            "the first packet of event {code} carries the marker bit: {first:?}"
        );
        assert!(
            event[1..].iter().all(|p| !p.marker),
            "only the first packet of event {code} carries the marker bit: {event:?}"
        );
        assert!(
            event
                .iter()
                .all(|p| p.event.is_some_and(|(c, _, _)| c == code)),
            "every packet of one event names the same key: {event:?}"
        );
        let durations: Vec<u16> = event.iter().filter_map(|p| p.event.map(|e| e.2)).collect();
        assert!(
            durations.windows(2).all(|w| w[0] <= w[1]),
            "the duration of event {code} only grows: {durations:?}"
        );
        let ends: Vec<&RtpPacket> = event
            .iter()
            .filter(|p| p.event.is_some_and(|(_, end, _)| end))
            .collect();
        assert!(
            !ends.is_empty(),
            "event {code} is closed by end packets: {event:?}"
        );
        let end_at = event
            .iter()
            .position(|p| p.event.is_some_and(|(_, end, _)| end))
            .unwrap_or(event.len());
        assert!(
            event[end_at..]
                .iter()
                .all(|p| p.event.is_some_and(|(_, end, _)| end)),
            "nothing but end packets follows the first end packet of event {code}: {event:?}"
        );
        // 100 ms at 8 kHz is 800 timestamp units.
        let length = durations.last().copied().unwrap_or(0);
        assert!(
            (640..=960).contains(&length),
            "event {code} lasts about 100 ms (800 units), it lasted {length}: {event:?}"
        );
    }
    for pair in events.windows(2) {
        let (a, b) = (pair[0][0], pair[1][0]);
        let length = pair[0]
            .iter()
            .filter_map(|p| p.event.map(|e| u32::from(e.2)))
            .max()
            .unwrap_or(0);
        assert!(
            b.timestamp.wrapping_sub(a.timestamp) >= length,
            "an event starts after the previous one ended: {a:?} then {b:?}"
        );
    }

    // RFC 4733 §2.1: the events belong to the call's RTP stream, so one SSRC and one run of
    // sequence numbers carry them and any audio.
    let ssrc = packets[0].ssrc;
    assert!(
        packets.iter().all(|p| p.ssrc == ssrc),
        "one SSRC for the call's audio and events:\n{}",
        summary()
    );
    for pair in packets.windows(2) {
        let step = pair[1].seq.wrapping_sub(pair[0].seq);
        assert!(
            (1..100).contains(&step),
            "sequence numbers rise through audio and events: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(
        packets
            .iter()
            .all(|p| p.payload_type == EVENT_PT || p.payload_type == 0),
        "baton sends only the negotiated PCMU and telephone-event:\n{}",
        summary()
    );

    let call = baton.wait_ended(&call.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
}

#[test]
fn caller_without_telephone_event_gets_no_events() {
    let baton = Baton::builder("dtmf-out-none")
        .dialplan("keys-out", SEND_PLAN)
        .start();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind the caller's RTP socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let port = rtp.local_addr().expect("RTP address").port();
    let (offer, call_id, from) = caller.invite_request("keys-out", port);
    // The same INVITE offering PCMU alone.
    let offer = offer
        .replace(" RTP/AVP 0 101\r\n", " RTP/AVP 0\r\n")
        .replace("a=rtpmap:101 telephone-event/8000\r\n", "")
        .replace("a=fmtp:101 0-15\r\n", "");
    let (head, body) = offer.split_once("\r\n\r\n").expect("INVITE has a body");
    let head: String = head
        .lines()
        .map(|l| {
            if l.starts_with("Content-Length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    assert!(!body.contains("telephone-event"), "{body}");
    caller.send(format!("{head}\r\n\r\n{body}").as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no 200 OK to a PCMU-only INVITE within 10 s"));
        let Some(msg) = caller.recv(left) else {
            continue;
        };
        if msg.header("Call-ID") == Some(call_id.as_str()) && msg.status() == Some(200) {
            break msg;
        }
        assert!(
            msg.status().is_none_or(|s| s < 300),
            "PCMU-only INVITE refused: {msg:?}"
        );
    };
    assert!(
        !ok.body.contains("telephone-event"),
        "the answer offers no events the caller did not offer: {}",
        ok.body
    );
    let mut call = caller.answered(&ok, call_id, from);
    caller.ack(&call);

    // The digits would have gone by 1.5 s after the answer.
    let packets = receive_rtp(&rtp, Duration::from_millis(2000), |_| false);
    assert_eq!(caller.bye(&mut call), Some(200), "BYE answered 200");
    assert!(
        packets.iter().all(|p| p.payload_type != EVENT_PT),
        "no telephone-events to a caller who did not offer them: {:?}",
        packets.iter().find(|p| p.payload_type == EVENT_PT)
    );
    let call = baton.wait_ended(&call.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
}
