//! The benches' RTP sender: G.711 µ-law packets paced one per stream every 20 ms from a
//! thread, with the payload chosen per stream and round, plus the kernel's drop counters.

use socket2::SockRef;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// One RTP packet every 20 ms.
pub const PTIME: Duration = Duration::from_millis(20);
/// PCMU samples (and payload bytes) per packet.
pub const SAMPLES: u32 = 160;

/// A UDP socket on 127.0.0.1 with 4 MiB buffers both ways, so that bursts of many streams
/// are not dropped by the bench's own kernel socket.
pub fn rtp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
    let r = SockRef::from(&s);
    let _ = r.set_recv_buffer_size(4 << 20);
    let _ = r.set_send_buffer_size(4 << 20);
    s
}

/// One stream a sending thread paces: its index (it picks the SSRC and the payload), where
/// it goes, and its offset within each 20 ms round (streams spread over the round).
pub struct Paced {
    /// The stream's number, handed to `fill`; its SSRC is derived from it.
    pub index: usize,
    /// Where its packets go.
    pub dest: SocketAddr,
    /// How long after the start of each round its packet is due.
    pub phase: Duration,
}

/// What a sending thread did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PaceCount {
    /// Packets handed to the kernel.
    pub sent: u64,
    /// Packets sent more than 1 ms after their slot.
    pub late: u64,
}

/// Sends `rounds` packets on every stream from `sock` (fewer if `stop` is set), round r of
/// a stream at `start + r × 20 ms + phase`. `fill(index, round, payload)` writes the 160
/// payload bytes just before the packet leaves, so it may also note the time it went out.
pub fn pace(
    sock: &UdpSocket,
    streams: &[Paced],
    start: Instant,
    rounds: u64,
    stop: &AtomicBool,
    mut fill: impl FnMut(usize, u64, &mut [u8]),
) -> PaceCount {
    let mut pkt = [0u8; 12 + SAMPLES as usize];
    let mut count = PaceCount::default();
    for round in 0..rounds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let base = start + PTIME * round as u32;
        for s in streams {
            let due = base + s.phase;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            } else if now - due > Duration::from_millis(1) {
                count.late += 1;
            }
            let seq = round as u16;
            let ts = (round as u32).wrapping_mul(SAMPLES);
            pkt[0] = 0x80;
            pkt[1] = if round == 0 { 0x80 } else { 0 };
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&ts.to_be_bytes());
            pkt[8..12].copy_from_slice(&(0x5eed_0000u32 ^ s.index as u32).to_be_bytes());
            fill(s.index, round, &mut pkt[12..]);
            if sock.send_to(&pkt, s.dest).is_ok() {
                count.sent += 1;
            }
        }
    }
    count
}

/// A 400 Hz tone, 20 periods of 20 samples in one PCMU packet, so every packet is the same.
pub fn tone() -> [u8; SAMPLES as usize] {
    let mut out = [0u8; SAMPLES as usize];
    for (i, b) in out.iter_mut().enumerate() {
        let x = (2.0 * std::f64::consts::PI * 400.0 * i as f64 / 8000.0).sin() * 8000.0;
        *b = ulaw_encode(x as i16);
    }
    out
}

/// G.711 µ-law encoding of one sample (the bench's own, independent of baton's).
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = (s + BIAS).min(32635 + BIAS);
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// G.711 µ-law decoding of one sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Datagrams the kernel dropped on 127.0.0.1 UDP sockets whose port matches, from the
/// `drops` column of /proc/net/udp.
pub fn udp_drops(port_matches: impl Fn(u16) -> bool) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = fields.get(1)?.split_once(':')?;
            if ip != "0100007F" {
                return None;
            }
            let port = u16::from_str_radix(port, 16).ok()?;
            if !port_matches(port) {
                return None;
            }
            fields.last()?.parse::<u64>().ok()
        })
        .sum()
}
