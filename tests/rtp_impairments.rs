//! A caller's RTP as real networks deliver it: clean, with seeded random loss, reordered
//! and duplicated, from a media server that restarts its stream (new SSRC, sequence and
//! timestamp), from behind a NAT that rewrites its port, and with RFC 4733 key presses.
//! The stream is built by hand here (12-byte RTP header, G.711 µ-law tone) and paced at
//! 20 ms; signalling is a plain SIP caller over UDP, so the test knows baton's media
//! address from the 200 OK. What counts is what baton reports (`/v1/calls`: packets, loss,
//! jitter, DTMF) and what it recorded.

mod common;

use common::{rtp_packet, ulaw_decode, Baton, SeededRng, SipCaller};
use serde_json::Value;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Records the caller from the moment the call is answered.
const RECORD_NOW_PLAN: &str = r#"
name = "record-now"
description = "Records the caller from the answer on, with no prompt."
match = ["record-now"]

[[step]]
record = { max_secs = 30 }
"#;

/// Echoes the caller from the moment the call is answered.
const ECHO_NOW_PLAN: &str = r#"
name = "echo-now"
description = "Plays the caller's voice back from the answer on, with no prompt."
match = ["echo-now"]

[[step]]
echo = {}
"#;

/// One RTP packet every 20 ms.
const PTIME: Duration = Duration::from_millis(20);
/// µ-law samples per packet at 8 kHz.
const SAMPLES_PER_PACKET: usize = 160;
/// The caller's tone: 500 Hz fits exactly ten cycles in a 20 ms frame at any rate.
const TONE_HZ: f64 = 500.0;
/// The tone's peak, full scale = 1.0 (RMS about 0.21).
const TONE_PEAK: f64 = 0.3;
/// PCMU's static payload type.
const PT_PCMU: u8 = 0;
/// telephone-event, as the caller's offer maps it.
const PT_EVENT: u8 = 101;
/// Quiet time after the last packet before the BYE, so baton has read every packet.
const TAIL: Duration = Duration::from_millis(100);
/// How far the recording's length may stray from the stream's.
const LENGTH_SLACK: f64 = 0.1;

/// G.711 µ-law encoding of one 16-bit sample.
fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// The µ-law payload of packet `index` of a continuous tone.
fn tone_payload(index: usize) -> Vec<u8> {
    (0..SAMPLES_PER_PACKET)
        .map(|i| {
            let n = (index * SAMPLES_PER_PACKET + i) as f64;
            let x = TONE_PEAK * (2.0 * std::f64::consts::PI * TONE_HZ * n / 8000.0).sin();
            ulaw_encode((x * 32_767.0) as i16)
        })
        .collect()
}

/// One RTP stream's identity and counters (RFC 3550 §5.1).
struct RtpStream {
    ssrc: u32,
    seq: u16,
    ts: u32,
}

impl RtpStream {
    /// A stream with random SSRC, sequence and timestamp bases, as RFC 3550 asks.
    fn new(rng: &mut SeededRng) -> RtpStream {
        RtpStream {
            ssrc: rng.next_u64() as u32,
            seq: rng.next_u64() as u16,
            ts: rng.next_u64() as u32,
        }
    }

    /// The next 20 ms audio packet.
    fn audio(&mut self, payload: &[u8], marker: bool) -> Vec<u8> {
        let packet = rtp_packet(PT_PCMU, marker, self.seq, self.ts, self.ssrc, payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(SAMPLES_PER_PACKET as u32);
        packet
    }

    /// The next packet of a telephone-event that started at `ts` (the timestamp does not move).
    fn event(&mut self, marker: bool, ts: u32, payload: [u8; 4]) -> Vec<u8> {
        let packet = rtp_packet(PT_EVENT, marker, self.seq, ts, self.ssrc, &payload);
        self.seq = self.seq.wrapping_add(1);
        packet
    }
}

/// A clean tone stream: packet `i` goes out in slot `i`.
fn tone_plan(stream: &mut RtpStream, packets: usize) -> Vec<(usize, Vec<u8>)> {
    (0..packets)
        .map(|i| (i, stream.audio(&tone_payload(i), i == 0)))
        .collect()
}

/// Sends each packet at the start of its 20 ms slot (slots counted from now), in order.
fn send_paced(sock: &UdpSocket, to: SocketAddr, plan: &[(usize, Vec<u8>)]) {
    let start = Instant::now();
    for (slot, packet) in plan {
        let at = start + PTIME * (*slot as u32);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        sock.send_to(packet, to)
            .unwrap_or_else(|e| panic!("send RTP to {to}: {e}"));
    }
}

/// What a streamed call left behind.
struct Streamed {
    /// Kept running until the assertions are done, so a failure prints its log.
    _baton: Baton,
    call: Value,
    /// Samples of the `-in.wav` recording, full scale = 1.0.
    recording: Vec<f64>,
    rate: u32,
    /// Seconds the stream's slots cover.
    stream_secs: f64,
}

impl Streamed {
    /// The recording's length in seconds.
    fn recording_secs(&self) -> f64 {
        self.recording.len() as f64 / f64::from(self.rate)
    }

    /// The recording from `from` to `to` seconds.
    fn window(&self, from: f64, to: f64) -> &[f64] {
        let at = |t: f64| ((t * f64::from(self.rate)) as usize).min(self.recording.len());
        &self.recording[at(from)..at(to).max(at(from))]
    }

    fn media(&self, key: &str) -> u64 {
        self.call["media"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("media.{key} missing: {}", self.call))
    }

    /// The recording is as long as the stream (plus the quiet tail before the BYE).
    fn assert_length(&self) {
        let secs = self.recording_secs();
        let (low, high) = (
            self.stream_secs - LENGTH_SLACK,
            self.stream_secs + TAIL.as_secs_f64() + LENGTH_SLACK,
        );
        assert!(
            (low..=high).contains(&secs),
            "{:.3} s of stream were recorded as {secs:.3} s (expected {low:.3}..{high:.3}): {}",
            self.stream_secs,
            self.call
        );
    }
}

/// Calls the `record-now` plan on a fresh baton, sends `plan` (slots of 20 ms) to baton's
/// media address, waits [`TAIL`], hangs up, and collects the ended call and its recording.
fn stream_call(name: &str, plan: &[(usize, Vec<u8>)]) -> Streamed {
    let baton = Baton::builder(name)
        .dialplan("record-now", RECORD_NOW_PLAN)
        .start();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind the caller's RTP socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let mut call = caller.call("record-now", rtp.local_addr().expect("RTP address").port());
    send_paced(&rtp, call.media, plan);
    thread::sleep(TAIL);
    assert_eq!(caller.bye(&mut call), Some(200), "BYE answered 200");
    let info = baton.wait_ended(&call.call_id, Duration::from_secs(10));
    assert_eq!(info["result"], "caller_bye", "{info}");
    assert_eq!(info["media"]["codec"], "PCMU", "{info}");
    let path = baton.recording(&info, "-in.wav");
    let (recording, rate) = read_wav(&path);
    let slots = plan.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
    Streamed {
        _baton: baton,
        call: info,
        recording,
        rate,
        stream_secs: slots as f64 * PTIME.as_secs_f64(),
    }
}

/// A mono 16-bit WAV's samples (full scale = 1.0) and sample rate.
fn read_wav(path: &Path) -> (Vec<f64>, u32) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "{}",
        path.display()
    );
    let samples = reader
        .samples::<i16>()
        .map(|s| f64::from(s.unwrap_or_else(|e| panic!("{}: {e}", path.display()))) / 32_768.0)
        .collect();
    (samples, spec.sample_rate)
}

fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt()
}

/// The share of the signal's energy at [`TONE_HZ`], measured per 20 ms frame (so a frame
/// boundary where the phase jumps costs only that frame): 1.0 for a pure tone.
fn tone_share(samples: &[f64], rate: u32) -> f64 {
    let frame = rate as usize / 50;
    let (mut tone, mut total) = (0.0, 0.0);
    for chunk in samples.chunks_exact(frame) {
        let w = 2.0 * std::f64::consts::PI * TONE_HZ / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for x in chunk {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        tone += 2.0 * power / frame as f64;
        total += chunk.iter().map(|x| x * x).sum::<f64>();
    }
    if total == 0.0 {
        0.0
    } else {
        tone / total
    }
}

/// The tone is in `samples`: loud enough and mostly at its frequency.
fn assert_tone(what: &str, samples: &[f64], rate: u32, min_share: f64, call: &Value) {
    let level = rms(samples);
    let share = tone_share(samples, rate);
    assert!(
        level > 0.12 && share > min_share,
        "{what}: RMS {level:.3} (tone sent at {:.3}), {:.0}% of it at {TONE_HZ} Hz \
         (need > {:.0}%): {call}",
        TONE_PEAK / 2f64.sqrt(),
        share * 100.0,
        min_share * 100.0
    );
}

#[test]
fn clean_stream_is_counted_and_recorded_whole() {
    let mut rng = SeededRng(1);
    let packets = 150;
    let plan = tone_plan(&mut RtpStream::new(&mut rng), packets);
    let s = stream_call("rtp-clean", &plan);
    assert_eq!(s.media("packets_in"), packets as u64, "{}", s.call);
    assert_eq!(s.media("lost"), 0, "{}", s.call);
    let jitter = s.call["media"]["jitter_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("media.jitter_ms missing: {}", s.call));
    assert!(
        (0.0..25.0).contains(&jitter),
        "packets paced every 20 ms over loopback: jitter {jitter} ms: {}",
        s.call
    );
    s.assert_length();
    let body = s.window(0.3, s.stream_secs - 0.1);
    assert_tone("the recording", body, s.rate, 0.9, &s.call);
}

#[test]
fn random_loss_is_counted_exactly_and_concealed() {
    let mut rng = SeededRng(0x5eed_0005);
    let packets = 250;
    let mut stream = RtpStream::new(&mut rng);
    // Loss at the very start or end is invisible to RFC 3550 accounting (nothing before or
    // after it to show the gap), so the first and last packets always go through.
    let mut dropped = 0u64;
    let plan: Vec<(usize, Vec<u8>)> = tone_plan(&mut stream, packets)
        .into_iter()
        .filter(|(i, _)| {
            let keep = *i < 5 || *i >= packets - 5 || !rng.chance(0.05);
            dropped += u64::from(!keep);
            keep
        })
        .collect();
    assert!(dropped >= 5, "the seed drops a fair number: {dropped}");
    let s = stream_call("rtp-loss", &plan);
    assert_eq!(s.media("lost"), dropped, "{}", s.call);
    assert_eq!(
        s.media("packets_in"),
        packets as u64 - dropped,
        "{}",
        s.call
    );
    s.assert_length();
    let body = s.window(0.3, s.stream_secs - 0.1);
    assert_tone("the recording with 5% loss", body, s.rate, 0.8, &s.call);
}

#[test]
fn reordered_and_duplicated_packets_are_not_loss() {
    let mut rng = SeededRng(7);
    let packets = 150;
    let mut plan = tone_plan(&mut RtpStream::new(&mut rng), packets);
    // Every 10th packet swaps places with its neighbour (each goes out in the other's slot).
    for i in (5..packets - 1).step_by(10) {
        let (a, b) = (plan[i].1.clone(), plan[i + 1].1.clone());
        plan[i].1 = b;
        plan[i + 1].1 = a;
    }
    // Every 7th packet arrives twice.
    let mut duplicates = 0u64;
    let plan: Vec<(usize, Vec<u8>)> = plan
        .into_iter()
        .flat_map(|(slot, p)| {
            let twice = slot % 7 == 3;
            duplicates += u64::from(twice);
            let copies = if twice { 2 } else { 1 };
            std::iter::repeat_n((slot, p), copies)
        })
        .collect();
    let s = stream_call("rtp-reorder", &plan);
    assert_eq!(s.media("lost"), 0, "{}", s.call);
    assert_eq!(
        s.media("packets_in"),
        packets as u64 + duplicates,
        "every datagram is counted, duplicates too: {}",
        s.call
    );
    s.assert_length();
    let body = s.window(0.3, s.stream_secs - 0.1);
    assert_tone("the reordered recording", body, s.rate, 0.85, &s.call);
}

#[test]
fn stream_restarting_with_new_ssrc_keeps_being_recorded() {
    let mut rng = SeededRng(42);
    let half = 100;
    let mut first = RtpStream::new(&mut rng);
    let mut second = RtpStream::new(&mut rng);
    assert_ne!(first.ssrc, second.ssrc);
    let plan: Vec<(usize, Vec<u8>)> = (0..2 * half)
        .map(|i| {
            let stream = if i < half { &mut first } else { &mut second };
            (i, stream.audio(&tone_payload(i), i == 0 || i == half))
        })
        .collect();
    let s = stream_call("rtp-ssrc", &plan);
    assert_eq!(s.call["state"], "ended", "{}", s.call);
    assert_eq!(s.media("packets_in"), 2 * half as u64, "{}", s.call);
    assert_eq!(s.media("lost"), 0, "a new SSRC is not loss: {}", s.call);
    s.assert_length();
    let switch = half as f64 * PTIME.as_secs_f64();
    let before = s.window(0.3, switch - 0.1);
    let after = s.window(switch + 0.3, s.stream_secs - 0.1);
    assert_tone("before the SSRC change", before, s.rate, 0.9, &s.call);
    assert_tone("after the SSRC change", after, s.rate, 0.9, &s.call);
}

#[test]
fn media_goes_back_to_where_the_caller_sends_from() {
    let baton = Baton::builder("rtp-symmetric")
        .dialplan("echo-now", ECHO_NOW_PLAN)
        .start();
    // The SDP names this port, but nothing is ever sent from it: the caller is behind a
    // NAT that maps its media to another port.
    let advertised = UdpSocket::bind("127.0.0.1:0").expect("bind the advertised port");
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind the sending socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let mut call = caller.call(
        "echo-now",
        advertised.local_addr().expect("advertised address").port(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let listen = |sock: &UdpSocket| {
        let sock = sock.try_clone().expect("clone socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set read timeout");
        let stop = stop.clone();
        thread::spawn(move || {
            let mut got: Vec<(Instant, Vec<u8>)> = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    got.push((Instant::now(), buf[..n].to_vec()));
                }
            }
            got
        })
    };
    let at_advertised = listen(&advertised);
    let at_sender = listen(&sender);

    let mut rng = SeededRng(9);
    let packets = 150;
    let started = Instant::now();
    send_paced(
        &sender,
        call.media,
        &tone_plan(&mut RtpStream::new(&mut rng), packets),
    );
    let stream_end = Instant::now();
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let at_advertised = at_advertised.join().expect("advertised listener");
    let at_sender = at_sender.join().expect("sender listener");
    assert_eq!(caller.bye(&mut call), Some(200), "BYE answered 200");
    let info = baton.wait_ended(&call.call_id, Duration::from_secs(10));
    assert_eq!(info["result"], "caller_bye", "{info}");

    // Once the caller's first packet is in, baton sends to its source, every 20 ms.
    let latched = started + Duration::from_millis(200);
    let stray = at_advertised.iter().filter(|(t, _)| *t > latched).count();
    assert_eq!(
        stray, 0,
        "baton kept sending to the SDP port after the caller's media arrived from elsewhere: {info}"
    );
    let stream_secs = packets as f64 * PTIME.as_secs_f64();
    assert!(
        at_sender.len() as f64 >= (stream_secs - 0.5) * 50.0,
        "{} packets came back to the sending socket during {stream_secs} s of stream: {info}",
        at_sender.len()
    );
    // The echo carries the caller's tone: decode the last second baton sent while the
    // caller was still sending.
    let window =
        (stream_end - Duration::from_millis(1100))..(stream_end - Duration::from_millis(100));
    let echoed: Vec<f64> = at_sender
        .iter()
        .filter(|(t, p)| window.contains(t) && p.len() > 12 && p[1] & 0x7f == PT_PCMU)
        .flat_map(|(_, p)| p[12..].iter().map(|b| ulaw_decode(*b)))
        .collect();
    assert_tone("the echo", &echoed, 8000, 0.8, &info);
}

/// RFC 4733 packets of one key press starting in `slot` (five 20 ms updates, then the end
/// packet three times), sent in place of the audio of those slots.
fn key_press(stream: &mut RtpStream, code: u8, slot: usize) -> Vec<(usize, Vec<u8>)> {
    let start_ts = stream.ts;
    let volume = 10u8;
    let mut out = Vec::new();
    for n in 1..=5u16 {
        let duration = n * SAMPLES_PER_PACKET as u16;
        let d = duration.to_be_bytes();
        let payload = [code, volume, d[0], d[1]];
        out.push((
            slot + usize::from(n) - 1,
            stream.event(n == 1, start_ts, payload),
        ));
    }
    let d = (6 * SAMPLES_PER_PACKET as u16).to_be_bytes();
    for _ in 0..3 {
        let payload = [code, 0x80 | volume, d[0], d[1]];
        out.push((slot + 5, stream.event(false, start_ts, payload)));
    }
    // The audio after the key press carries on from where the event's time ends.
    stream.ts = start_ts.wrapping_add(6 * SAMPLES_PER_PACKET as u32);
    out
}

#[test]
fn rfc4733_key_presses_show_as_digits() {
    let mut rng = SeededRng(4733);
    let mut stream = RtpStream::new(&mut rng);
    // Digit, event code: a repeated key must count twice, # and * are keys too.
    let keys = [
        ('1', 1u8),
        ('5', 5),
        ('5', 5),
        ('9', 9),
        ('#', 11),
        ('*', 10),
    ];
    let mut plan = Vec::new();
    let mut slot = 0;
    for (_, code) in keys {
        for _ in 0..10 {
            plan.push((slot, stream.audio(&tone_payload(slot), slot == 0)));
            slot += 1;
        }
        plan.extend(key_press(&mut stream, code, slot));
        slot += 6;
    }
    for _ in 0..10 {
        plan.push((slot, stream.audio(&tone_payload(slot), false)));
        slot += 1;
    }
    let s = stream_call("rtp-dtmf", &plan);
    let expected: String = keys.iter().map(|(d, _)| d).collect();
    assert_eq!(s.call["dtmf"], expected.as_str(), "{}", s.call);
    assert_eq!(s.media("lost"), 0, "{}", s.call);
    assert_eq!(
        s.media("packets_in"),
        plan.len() as u64,
        "audio and event packets: {}",
        s.call
    );
    s.assert_length();
}

/// An Opus leg (RFC 7587: 48 kHz RTP clock, 20 ms per packet): the caller's tone, encoded
/// with libopus, is decoded by baton, recorded whole and still a tone.
#[test]
fn opus_stream_is_decoded_and_recorded() {
    use baton_media::{AudioFrame, CodecKind, Encoder, FRAME_SAMPLES};
    const PT_OPUS: u8 = 111;
    const PACKETS: usize = 150;

    let baton = Baton::builder("opus")
        .dialplan("record-now", RECORD_NOW_PLAN)
        .start();
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind the caller's RTP socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let port = rtp.local_addr().expect("RTP address").port();
    let (pcmu_invite, call_id, from) = caller.invite_request("record-now", port);
    let head = &pcmu_invite[..pcmu_invite.find("v=0").expect("an SDP body")];
    let sdp = format!(
        "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {PT_OPUS}\r\na=rtpmap:{PT_OPUS} opus/48000/2\r\n\
         a=fmtp:{PT_OPUS} useinbandfec=1\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let length_at = head.find("Content-Length: ").expect("Content-Length");
    let invite = format!(
        "{}Content-Length: {}\r\n\r\n{sdp}",
        &head[..length_at],
        sdp.len()
    );
    caller.send(invite.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    let ok = loop {
        assert!(Instant::now() < deadline, "no 200 to the Opus offer");
        if let Some(m) = caller.recv(Duration::from_secs(1)) {
            if m.status().is_some_and(|s| s >= 200) {
                break m;
            }
        }
    };
    assert_eq!(ok.status(), Some(200), "{ok:?}");
    assert!(ok.body.contains("opus/48000/2"), "{}", ok.body);
    let mut call = caller.answered(&ok, call_id, from);
    caller.ack(&call);

    let mut encoder = Encoder::new(CodecKind::Opus).expect("an Opus encoder");
    let mut rng = SeededRng(7587);
    let mut stream = RtpStream::new(&mut rng);
    let plan: Vec<(usize, Vec<u8>)> = (0..PACKETS)
        .map(|i| {
            let mut samples = [0i16; FRAME_SAMPLES];
            for (n, s) in samples.iter_mut().enumerate() {
                let t = (i * FRAME_SAMPLES + n) as f64 / 16_000.0;
                *s = (TONE_PEAK * 32_767.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin())
                    as i16;
            }
            let mut payload = Vec::new();
            encoder
                .encode(&AudioFrame::new(samples), &mut payload)
                .expect("encode a frame");
            let packet = rtp_packet(
                PT_OPUS,
                i == 0,
                stream.seq,
                stream.ts,
                stream.ssrc,
                &payload,
            );
            stream.seq = stream.seq.wrapping_add(1);
            stream.ts = stream.ts.wrapping_add(960);
            (i, packet)
        })
        .collect();
    send_paced(&rtp, call.media, &plan);
    thread::sleep(TAIL);
    assert_eq!(caller.bye(&mut call), Some(200), "BYE answered 200");
    let info = baton.wait_ended(&call.call_id, Duration::from_secs(10));
    assert_eq!(info["media"]["codec"], "opus", "{info}");
    assert_eq!(info["media"]["packets_in"], PACKETS as u64, "{info}");
    assert_eq!(info["media"]["lost"], 0, "{info}");
    let (recording, rate) = read_wav(&baton.recording(&info, "-in.wav"));
    let secs = recording.len() as f64 / f64::from(rate);
    let sent = PACKETS as f64 * PTIME.as_secs_f64();
    assert!(
        (sent - LENGTH_SLACK..=sent + TAIL.as_secs_f64() + LENGTH_SLACK).contains(&secs),
        "{sent:.2} s of Opus recorded as {secs:.2} s: {info}"
    );
    // Past the codec's start-up, the middle of the recording is the tone.
    let at = |t: f64| (t * f64::from(rate)) as usize;
    assert_tone("Opus tone", &recording[at(0.5)..at(2.5)], rate, 0.8, &info);
}
