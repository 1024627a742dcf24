//! What the benches that speak to baton share: speech as the PCMU packets a phone sends,
//! whether a packet holds speech, the API ids of the bench's calls, and the speech pool's
//! timings from baton's log.

use crate::common::http_get;
use crate::rtp::{ulaw_decode, SAMPLES};
use crate::uac::Dialog;
use baton_media::{AudioFrame, CodecKind, Encoder, FRAME_SAMPLES};
use baton_speech::vad::level_db;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A packet quieter than this holds no speech: where speech starts and ends.
pub const SPEECH_FLOOR_DB: f32 = -60.0;
/// µ-law of a zero sample: digital silence.
pub const ULAW_SILENCE: u8 = 0xFF;

/// One 20 ms PCMU payload.
pub type Packet = [u8; SAMPLES as usize];

/// 16 kHz speech through baton's G.711 encoder as a phone would send it, without the
/// silence around it.
pub fn pcmu_packets(samples: &[i16]) -> Vec<Packet> {
    let mut enc = Encoder::new(CodecKind::Pcmu).expect("PCMU encoder");
    let mut payload = Vec::new();
    let mut packets: Vec<Packet> = Vec::new();
    // A frame of silence after the speech flushes the encoder's resampler.
    for chunk in samples
        .chunks(FRAME_SAMPLES)
        .chain([[0i16; FRAME_SAMPLES].as_slice()])
    {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        enc.encode(&AudioFrame::new(frame), &mut payload)
            .expect("encode PCMU");
        packets.push(
            payload
                .as_slice()
                .try_into()
                .expect("a 20 ms PCMU frame is 160 bytes"),
        );
    }
    let first = packets
        .iter()
        .position(|p| loud(p))
        .expect("the speech is silent");
    let last = packets
        .iter()
        .rposition(|p| loud(p))
        .expect("a loud packet");
    packets[first..=last].to_vec()
}

/// Whether a PCMU payload holds speech (is louder than [`SPEECH_FLOOR_DB`]).
pub fn loud(payload: &[u8]) -> bool {
    let pcm: Vec<i16> = payload.iter().map(|&b| ulaw_decode(b)).collect();
    level_db(&pcm) > SPEECH_FLOOR_DB
}

/// Baton's API ids of the calls, by their SIP Call-IDs (`None` for a call not set up).
pub fn api_ids(http: SocketAddr, calls: &[Option<Dialog>]) -> Vec<Option<String>> {
    let list: serde_json::Value = http_get(http, "/v1/calls")
        .ok()
        .and_then(|b| serde_json::from_str(&b).ok())
        .unwrap_or_default();
    let by_sip: BTreeMap<&str, &str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["sip_call_id"].as_str()?, c["id"].as_str()?)))
        .collect();
    calls
        .iter()
        .map(|c| {
            let c = c.as_ref()?;
            by_sip.get(c.call_id.as_str()).map(|id| id.to_string())
        })
        .collect()
}

/// Each final's time waiting for a pool thread and time transcribing, in ms, sorted, from
/// the `caller said` lines of baton's log.
pub fn pool_times(log: &str) -> (Vec<u64>, Vec<u64>) {
    let (mut queued, mut ran) = (Vec::new(), Vec::new());
    for line in log.lines().filter(|l| l.contains("caller said")) {
        let plain = strip_ansi(line);
        if let (Some(q), Some(r)) = (
            log_field(&plain, " queued_ms="),
            log_field(&plain, " ran_ms="),
        ) {
            queued.push(q);
            ran.push(r);
        }
    }
    queued.sort_unstable();
    ran.sort_unstable();
    (queued, ran)
}

/// The whole number after `name` in a log line (`name` includes the `=`).
pub fn log_field(line: &str, name: &str) -> Option<u64> {
    let (_, rest) = line.split_once(name)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse::<u64>()
        .ok()
}

/// A log line without its terminal colour codes (`ESC [ ... m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}
