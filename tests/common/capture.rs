//! What a peer received on the wire, with the kernel's arrival times: tcpdump records the
//! UDP sent to one loopback port into a pcap file, which is read back here, and RTP
//! helpers turn the datagrams into audio payloads and measure silences in them.
//! tcpdump needs root (or CAP_NET_RAW), as the end-to-end tests have.

use super::{random_u64, tail, ulaw_decode, wait_for};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long tcpdump may take to start capturing, and to exit once told to.
const TCPDUMP_WAIT: Duration = Duration::from_secs(10);

/// A UDP payload as captured: when it arrived and what it held.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// When the kernel saw it, in seconds since the UNIX epoch (compare with [`now_secs`]).
    pub at_secs: f64,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// The wall clock in seconds since the UNIX epoch, the clock capture times are on: a test
/// notes `now_secs()` at an event and compares packet times with it.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A running tcpdump recording the UDP sent to one loopback port; killed when dropped.
pub struct Capture {
    child: Child,
    file: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts capturing UDP to `port` on loopback into a pcap file in `dir`, and returns
    /// once tcpdump says it is listening.
    pub fn start(dir: &Path, port: u16) -> Capture {
        let stem = format!("udp-{port}-{:08x}", random_u64() & 0xffff_ffff);
        let file = dir.join(format!("{stem}.pcap"));
        let log = dir.join(format!("{stem}-tcpdump.log"));
        let out = fs::File::create(&log).expect("tcpdump log");
        // `-U` writes each packet as it comes; `-Z root` keeps tcpdump from switching to
        // its own user, who may not write to `dir`.
        let child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-Z", "root", "-w"])
            .arg(&file)
            .args(["udp", "dst", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("tcpdump log"))
            .stderr(out)
            .spawn()
            .expect("start tcpdump (scripts/install-deps.sh installs it)");
        let mut capture = Capture { child, file, log };
        wait_for(TCPDUMP_WAIT, || {
            capture.listening() || !matches!(capture.child.try_wait(), Ok(None))
        });
        assert!(
            capture.listening(),
            "tcpdump did not start capturing on lo (it needs root):\n{}",
            tail(&capture.log, 20)
        );
        capture
    }

    /// Stops tcpdump (SIGINT, so it flushes its file) and reads what it captured, in order;
    /// panics if tcpdump says the kernel dropped any of it.
    pub fn stop(mut self) -> Vec<Packet> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let exited = wait_for(TCPDUMP_WAIT, || !matches!(self.child.try_wait(), Ok(None)));
        assert!(
            exited,
            "tcpdump did not exit on SIGINT:\n{}",
            tail(&self.log, 20)
        );
        let report = fs::read_to_string(&self.log).unwrap_or_default();
        let dropped = report
            .lines()
            .find(|l| l.ends_with("packets dropped by kernel"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok());
        assert_eq!(
            dropped,
            Some(0),
            "tcpdump lost packets, so the capture is not what arrived:\n{report}"
        );
        let bytes =
            fs::read(&self.file).unwrap_or_else(|e| panic!("read {}: {e}", self.file.display()));
        parse_pcap(&bytes).unwrap_or_else(|e| panic!("{}: {e}", self.file.display()))
    }

    /// Whether tcpdump has said it is capturing.
    fn listening(&self) -> bool {
        fs::read_to_string(&self.log).is_ok_and(|l| l.contains("listening on lo"))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Link types a Linux capture gives (pcap's `LINKTYPE_*` numbers).
const LINK_NULL: u32 = 0;
const LINK_ETHERNET: u32 = 1;
const LINK_RAW: u32 = 101;
const LINK_LINUX_SLL: u32 = 113;
const LINK_LINUX_SLL2: u32 = 276;
const ETHERTYPE_IPV4: u16 = 0x0800;
const AF_INET: u32 = 2;
const IP_PROTO_UDP: u8 = 17;

/// The UDP-over-IPv4 payloads of a classic pcap file (microsecond or nanosecond, either
/// byte order), in file order; other packets are skipped. A record cut short at the end
/// (tcpdump stopped mid-write) ends the list.
pub fn parse_pcap(bytes: &[u8]) -> Result<Vec<Packet>, String> {
    let header = bytes
        .get(..24)
        .ok_or_else(|| format!("{} bytes is too short for a pcap header", bytes.len()))?;
    let magic = [header[0], header[1], header[2], header[3]];
    let (big_endian, frac_per_sec) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (false, 1e6),
        [0xa1, 0xb2, 0xc3, 0xd4] => (true, 1e6),
        [0x4d, 0x3c, 0xb2, 0xa1] => (false, 1e9),
        [0xa1, 0xb2, 0x3c, 0x4d] => (true, 1e9),
        _ => return Err(format!("not a pcap file: magic {magic:02x?}")),
    };
    let u32_at = |b: &[u8], at: usize| {
        let word = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        }
    };
    let link = u32_at(header, 20);
    let mut packets = Vec::new();
    let mut at = 24;
    while let Some(record) = bytes.get(at..at + 16) {
        let secs = f64::from(u32_at(record, 0));
        let frac = f64::from(u32_at(record, 4));
        let len = u32_at(record, 8) as usize;
        let Some(frame) = bytes.get(at + 16..at + 16 + len) else {
            break;
        };
        at += 16 + len;
        if let Some(payload) = link_payload(link, frame).and_then(udp_payload) {
            packets.push(Packet {
                at_secs: secs + frac / frac_per_sec,
                payload: payload.to_vec(),
            });
        }
    }
    Ok(packets)
}

/// The IPv4 packet a frame of link type `link` carries, if it carries one.
fn link_payload(link: u32, frame: &[u8]) -> Option<&[u8]> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    match link {
        // The address family, in the capturing host's byte order.
        LINK_NULL => {
            let family = frame.get(..4)?;
            let family = [family[0], family[1], family[2], family[3]];
            (u32::from_le_bytes(family) == AF_INET || u32::from_be_bytes(family) == AF_INET)
                .then(|| &frame[4..])
        }
        LINK_ETHERNET => (be16(12)? == ETHERTYPE_IPV4).then(|| &frame[14..]),
        LINK_RAW => Some(frame),
        LINK_LINUX_SLL => (be16(14)? == ETHERTYPE_IPV4).then(|| &frame[16..]),
        LINK_LINUX_SLL2 => (be16(0)? == ETHERTYPE_IPV4 && frame.len() >= 20).then(|| &frame[20..]),
        _ => None,
    }
}

/// The payload of an unfragmented UDP datagram in an IPv4 packet.
fn udp_payload(ip: &[u8]) -> Option<&[u8]> {
    let first = *ip.first()?;
    if first >> 4 != 4 || *ip.get(9)? != IP_PROTO_UDP {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    // More fragments, or a fragment offset: not a whole datagram.
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
    if header_len < 20 || fragment != 0 {
        return None;
    }
    let udp = ip.get(header_len..total_len.min(ip.len()))?;
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..udp_len.min(udp.len()))
}

/// The RTP payloads of payload type `payload_type` among `packets`, with their arrival
/// times, in order; anything else (RTCP, other types, malformed) is skipped.
pub fn rtp_audio(packets: &[Packet], payload_type: u8) -> Vec<(f64, Vec<u8>)> {
    packets
        .iter()
        .filter_map(|p| {
            let (pt, payload) = rtp_payload(&p.payload)?;
            (pt == payload_type).then(|| (p.at_secs, payload.to_vec()))
        })
        .collect()
}

/// The payload type and payload of an RTP packet (RFC 3550 §5.1): past the fixed header,
/// the CSRCs and any header extension, short of any padding.
fn rtp_payload(packet: &[u8]) -> Option<(u8, &[u8])> {
    let first = *packet.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let pt = packet.get(1)? & 0x7f;
    let mut start = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(start + 2)?, *packet.get(start + 3)?]);
        start += 4 + 4 * usize::from(words);
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    Some((pt, packet.get(start..end)?))
}

/// Above this RMS (on the i16 scale, full scale 32768; about −50 dBFS) a µ-law packet is
/// audible. Speech, prompts and hold music sit tens of dB above it, while µ-law silence
/// decodes to 0 and an idle channel's noise (the smallest µ-law steps, ±8 to ±40) stays
/// below it, so the threshold tells "heard something" from "heard nothing" with margin.
pub const AUDIBLE_RMS: f64 = 100.0;

/// Whether a PCMU payload is audible (see [`AUDIBLE_RMS`]).
pub fn audible(payload: &[u8]) -> bool {
    let energy: f64 = payload
        .iter()
        .map(|&b| (ulaw_decode(b) * 32_768.0).powi(2))
        .sum();
    (energy / payload.len().max(1) as f64).sqrt() > AUDIBLE_RMS
}

/// The longest time within `[from_secs, to_secs]` in which no audible PCMU packet arrived:
/// the largest gap between the arrival times of consecutive audible packets, the window's
/// ends counting as bounds. Quiet and missing packets both count as quiet; an unbroken
/// stream of audible 20 ms packets gives about 0.02.
pub fn longest_quiet(audio: &[(f64, Vec<u8>)], from_secs: f64, to_secs: f64) -> f64 {
    let mut last = from_secs;
    let mut longest: f64 = 0.0;
    for (at, payload) in audio {
        if *at < from_secs || *at > to_secs || !audible(payload) {
            continue;
        }
        longest = longest.max(at - last);
        last = *at;
    }
    longest.max(to_secs - last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::rtp_packet;

    /// A UDP datagram from 127.0.0.1:4000 to 127.0.0.1:5000 in an IPv4 packet.
    fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, IP_PROTO_UDP, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        ip.extend_from_slice(&4000u16.to_be_bytes());
        ip.extend_from_slice(&5000u16.to_be_bytes());
        ip.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ip
    }

    /// A little-endian microsecond pcap of `frames`, each with its (seconds, micros).
    fn pcap(link: u32, frames: &[((u32, u32), Vec<u8>)]) -> Vec<u8> {
        let mut file = Vec::new();
        file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&4u16.to_le_bytes());
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&262_144u32.to_le_bytes());
        file.extend_from_slice(&link.to_le_bytes());
        for ((secs, micros), frame) in frames {
            file.extend_from_slice(&secs.to_le_bytes());
            file.extend_from_slice(&micros.to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            file.extend_from_slice(frame);
        }
        file
    }

    fn ethernet(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(ip);
        frame
    }

    #[test]
    fn pcap_gives_udp_payloads_with_their_times() {
        let file = pcap(
            LINK_ETHERNET,
            &[
                (
                    (1_700_000_000, 250_000),
                    ethernet(0x0800, &ipv4_udp(b"first")),
                ),
                ((1_700_000_000, 260_000), ethernet(0x86dd, &[0x60; 48])),
                ((1_700_000_001, 5), ethernet(0x0800, &ipv4_udp(b"second"))),
            ],
        );
        let packets = parse_pcap(&file).expect("pcap");
        assert_eq!(packets.len(), 2, "the IPv6 frame is skipped: {packets:?}");
        assert_eq!(packets[0].payload, b"first");
        assert!((packets[0].at_secs - 1_700_000_000.25).abs() < 1e-6);
        assert_eq!(packets[1].payload, b"second");
        assert!((packets[1].at_secs - 1_700_000_001.000_005).abs() < 1e-6);
    }

    #[test]
    fn pcap_reads_other_link_types_byte_orders_and_a_cut_record() {
        let mut sll = vec![0; 14];
        sll.extend_from_slice(&0x0800u16.to_be_bytes());
        sll.extend_from_slice(&ipv4_udp(b"sll"));
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ipv4_udp(b"null"));
        let packets = |link, frame: Vec<u8>| parse_pcap(&pcap(link, &[((1, 0), frame)]));
        assert_eq!(packets(LINK_LINUX_SLL, sll).unwrap()[0].payload, b"sll");
        assert_eq!(packets(LINK_NULL, null).unwrap()[0].payload, b"null");

        // Big-endian, nanoseconds.
        let mut file = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&262_144u32.to_be_bytes());
        file.extend_from_slice(&LINK_RAW.to_be_bytes());
        let ip = ipv4_udp(b"raw");
        for word in [7u32, 500_000_000, ip.len() as u32, ip.len() as u32] {
            file.extend_from_slice(&word.to_be_bytes());
        }
        file.extend_from_slice(&ip);
        // A record tcpdump was stopped in the middle of.
        file.extend_from_slice(&[0, 0, 0, 8, 0, 0]);
        let read = parse_pcap(&file).expect("pcap");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].payload, b"raw");
        assert!((read[0].at_secs - 7.5).abs() < 1e-9);

        assert!(parse_pcap(b"not a capture file at all").is_err());
    }

    #[test]
    fn rtp_payloads_skip_csrcs_extensions_and_padding() {
        let plain = rtp_packet(0, false, 1, 160, 7, &[1, 2, 3]);
        let mut fancy = vec![0x80 | 0x20 | 0x10 | 1, 0];
        fancy.extend_from_slice(&[0; 10]); // seq, timestamp, SSRC
        fancy.extend_from_slice(&[0; 4]); // one CSRC
        fancy.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        fancy.extend_from_slice(&[4, 5, 0, 2]); // payload, then two bytes of padding
        let other = rtp_packet(8, false, 2, 320, 7, &[6]);
        let packets: Vec<Packet> = [plain, fancy, other, vec![0x80]]
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Packet {
                at_secs: i as f64,
                payload,
            })
            .collect();
        assert_eq!(
            rtp_audio(&packets, 0),
            vec![(0.0, vec![1, 2, 3]), (1.0, vec![4, 5])]
        );
        assert_eq!(rtp_audio(&packets, 8), vec![(2.0, vec![6])]);
    }

    #[test]
    fn longest_quiet_counts_quiet_and_missing_packets_between_audible_ones() {
        // µ-law 0xff is silence; 0x9f decodes to about −1000 (−30 dBFS).
        let (quiet, loud) = (vec![0xff; 160], vec![0x9f; 160]);
        assert!(!audible(&quiet) && audible(&loud));
        assert!(
            !audible(&[0xfe; 160]),
            "the smallest µ-law step is not audible"
        );
        let mut audio = Vec::new();
        for i in 0..100 {
            let at = 10.0 + f64::from(i) * 0.02;
            // Loud until 10.5 s, quiet until 11.0 s, nothing 11.0–11.5 s, loud again.
            match i {
                0..=24 | 75.. => audio.push((at, loud.clone())),
                25..=49 => audio.push((at, quiet.clone())),
                _ => {}
            }
        }
        let gap = longest_quiet(&audio, 10.0, 12.0);
        assert!((gap - 1.02).abs() < 1e-6, "{gap}");
        let steady = longest_quiet(&audio, 10.0, 10.4);
        assert!((steady - 0.02).abs() < 1e-6, "{steady}");
        // The window's ends bound the stretches: quiet from 10.6 s to the first loud packet.
        let tail_gap = longest_quiet(&audio, 10.6, 11.6);
        assert!((tail_gap - 0.9).abs() < 1e-6, "{tail_gap}");
        assert_eq!(longest_quiet(&[], 3.0, 5.0), 2.0);
    }
}
