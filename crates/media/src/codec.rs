//! Codecs a leg can negotiate, and the encoder/decoder pair that converts between the
//! internal [`AudioFrame`] (16 kHz mono, 20 ms) and RTP payloads.
//!
//! Opus runs libopus at 16 kHz directly: libopus decodes any Opus stream to 16 kHz and
//! accepts 16 kHz input, so no separate 48 kHz resampler is needed; the RTP clock stays
//! 48 kHz as RFC 7587 requires.

use crate::frame::{AudioFrame, FRAME_SAMPLES, SAMPLE_RATE};
use crate::g711;
use crate::resample::{RateConverter, NARROW_SAMPLES};

/// An audio codec a leg can use on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// Opus (RFC 7587), 48 kHz RTP clock, sent mono.
    Opus,
}

impl CodecKind {
    /// RTP clock rate in Hz.
    pub const fn clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8_000,
            Self::Opus => 48_000,
        }
    }

    /// Channel count as written in SDP rtpmap (RFC 7587 always says 2 for Opus, even for mono).
    pub const fn channels(self) -> u8 {
        match self {
            Self::Pcmu | Self::Pcma => 1,
            Self::Opus => 2,
        }
    }

    /// Payload type to offer: the static one for G.711, the customary dynamic 111 for Opus.
    pub const fn default_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
            Self::Opus => 111,
        }
    }

    /// Encoding name as written in SDP rtpmap.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::Opus => "opus",
        }
    }

    /// RTP timestamp units in one 20 ms packet.
    pub const fn samples_per_frame(self) -> u32 {
        self.clock_rate() / 50
    }

    /// Recognises an SDP rtpmap encoding name and clock rate (name case-insensitive).
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Self> {
        [Self::Pcmu, Self::Pcma, Self::Opus]
            .into_iter()
            .find(|k| k.encoding_name().eq_ignore_ascii_case(name) && k.clock_rate() == clock_rate)
    }
}

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload does not carry exactly 20 ms; other packet times are not supported.
    #[error("{codec:?} payload carries {actual} samples, expected {expected} (20 ms)")]
    UnsupportedDuration {
        /// Codec of the leg.
        codec: CodecKind,
        /// Samples per 20 ms at the codec's decoding rate.
        expected: usize,
        /// Samples the payload carried.
        actual: usize,
    },
    /// libopus rejected the packet or a setting.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
}

/// Largest Opus packet we produce; 20 ms of voice at any sane bitrate fits easily.
const MAX_OPUS_PACKET: usize = 400;
/// Opus voice bitrate: wideband speech is transparent well below this.
const OPUS_BITRATE: i32 = 32_000;
/// Opus encoder complexity (0–10): 5 roughly halves the CPU cost of the default 10 with
/// little audible difference for narrowband/wideband speech.
const OPUS_COMPLEXITY: i32 = 5;
/// Loss rate the Opus encoder plans in-band FEC for.
const OPUS_EXPECTED_LOSS_PERCENT: i32 = 5;
/// Most samples one Opus packet can decode to at 16 kHz (120 ms).
const MAX_OPUS_DECODED: usize = 1_920;
/// Gain lost per concealed G.711 frame, so a long gap fades to silence in 80 ms.
const G711_FADE_PER_FRAME: f32 = 0.25;

/// Turns internal frames into RTP payloads for one leg; keeps per-leg filter state.
pub struct Encoder {
    kind: CodecKind,
    inner: EncoderInner,
}

enum EncoderInner {
    G711 { down: Box<RateConverter> },
    Opus(Box<opus::Encoder>),
}

impl Encoder {
    /// Creates an encoder for `kind`.
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        let inner = match kind {
            CodecKind::Pcmu | CodecKind::Pcma => EncoderInner::G711 {
                down: Box::new(RateConverter::downsampler()),
            },
            CodecKind::Opus => {
                let mut enc =
                    opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)?;
                enc.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))?;
                enc.set_complexity(OPUS_COMPLEXITY)?;
                enc.set_inband_fec(true)?;
                enc.set_packet_loss_perc(OPUS_EXPECTED_LOSS_PERCENT)?;
                EncoderInner::Opus(Box::new(enc))
            }
        };
        Ok(Self { kind, inner })
    }

    /// The codec this encoder produces.
    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// Encodes one frame, replacing the contents of `payload`.
    pub fn encode(&mut self, frame: &AudioFrame, payload: &mut Vec<u8>) -> Result<(), CodecError> {
        payload.clear();
        match &mut self.inner {
            EncoderInner::G711 { down } => {
                let mut narrow = [0i16; NARROW_SAMPLES];
                down.process(frame.samples(), &mut narrow);
                let law: fn(i16) -> u8 = if self.kind == CodecKind::Pcmu {
                    g711::ulaw_encode
                } else {
                    g711::alaw_encode
                };
                payload.extend(narrow.iter().map(|&s| law(s)));
            }
            EncoderInner::Opus(enc) => {
                payload.resize(MAX_OPUS_PACKET, 0);
                let len = enc.encode(frame.samples(), payload)?;
                payload.truncate(len);
            }
        }
        Ok(())
    }
}

/// Turns RTP payloads into internal frames for one leg, and conceals lost packets.
pub struct Decoder {
    kind: CodecKind,
    inner: DecoderInner,
}

enum DecoderInner {
    G711 {
        up: Box<RateConverter>,
        /// Last good 8 kHz frame, repeated (fading) to conceal losses.
        last: Box<[i16; NARROW_SAMPLES]>,
        /// Gain of the last concealed frame's end; 1.0 after a good frame.
        gain: f32,
        narrow: Vec<i16>,
    },
    Opus {
        dec: Box<opus::Decoder>,
        pcm: Vec<i16>,
    },
}

impl Decoder {
    /// Creates a decoder for `kind`.
    pub fn new(kind: CodecKind) -> Result<Self, CodecError> {
        let inner = match kind {
            CodecKind::Pcmu | CodecKind::Pcma => DecoderInner::G711 {
                up: Box::new(RateConverter::upsampler()),
                last: Box::new([0; NARROW_SAMPLES]),
                gain: 1.0,
                narrow: Vec::with_capacity(NARROW_SAMPLES),
            },
            CodecKind::Opus => DecoderInner::Opus {
                dec: Box::new(opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)?),
                pcm: vec![0; MAX_OPUS_DECODED],
            },
        };
        Ok(Self { kind, inner })
    }

    /// The codec this decoder reads.
    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// Decodes one 20 ms payload.
    pub fn decode(&mut self, payload: &[u8]) -> Result<AudioFrame, CodecError> {
        let kind = self.kind;
        match &mut self.inner {
            DecoderInner::G711 {
                up,
                last,
                gain,
                narrow,
            } => {
                if payload.len() != NARROW_SAMPLES {
                    return Err(CodecError::UnsupportedDuration {
                        codec: kind,
                        expected: NARROW_SAMPLES,
                        actual: payload.len(),
                    });
                }
                if kind == CodecKind::Pcmu {
                    g711::ulaw_decode_into(payload, narrow);
                } else {
                    g711::alaw_decode_into(payload, narrow);
                }
                last.copy_from_slice(narrow);
                *gain = 1.0;
                let mut wide = [0i16; FRAME_SAMPLES];
                up.process(narrow, &mut wide);
                Ok(AudioFrame::new(wide))
            }
            DecoderInner::Opus { dec, pcm } => {
                let n = dec.decode(payload, pcm, false)?;
                opus_frame(kind, pcm, n)
            }
        }
    }

    /// Produces a frame for a lost packet: Opus packet loss concealment (or in-band FEC
    /// recovered from `next`, the packet after the gap, when the jitter buffer has it);
    /// for G.711 the last frame repeated with a fade. Never fails: falls back to silence.
    pub fn conceal(&mut self, next: Option<&[u8]>) -> AudioFrame {
        let kind = self.kind;
        match &mut self.inner {
            DecoderInner::G711 { up, last, gain, .. } => {
                let start = *gain;
                let end = (start - G711_FADE_PER_FRAME).max(0.0);
                let mut narrow = [0i16; NARROW_SAMPLES];
                for (i, (dst, &src)) in narrow.iter_mut().zip(last.iter()).enumerate() {
                    let g = start + (end - start) * (i as f32 / NARROW_SAMPLES as f32);
                    *dst = (f32::from(src) * g) as i16;
                }
                *gain = end;
                let mut wide = [0i16; FRAME_SAMPLES];
                up.process(&narrow, &mut wide);
                AudioFrame::new(wide)
            }
            DecoderInner::Opus { dec, pcm } => {
                // FEC asks libopus for exactly one frame's worth of recovered audio.
                let fec = next.and_then(|p| {
                    let n = dec.decode(p, &mut pcm[..FRAME_SAMPLES], true).ok()?;
                    opus_frame(kind, pcm, n).ok()
                });
                fec.or_else(|| {
                    let n = dec.decode(&[], &mut pcm[..FRAME_SAMPLES], false).ok()?;
                    opus_frame(kind, pcm, n).ok()
                })
                .unwrap_or_else(AudioFrame::silence)
            }
        }
    }
}

fn opus_frame(kind: CodecKind, pcm: &[i16], n: usize) -> Result<AudioFrame, CodecError> {
    pcm.get(..n)
        .and_then(AudioFrame::from_slice)
        .ok_or(CodecError::UnsupportedDuration {
            codec: kind,
            expected: FRAME_SAMPLES,
            actual: n,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn tone_frame(freq: f64, index: usize, amplitude: f64) -> AudioFrame {
        let mut s = [0i16; FRAME_SAMPLES];
        for (i, v) in s.iter_mut().enumerate() {
            let n = (index * FRAME_SAMPLES + i) as f64;
            *v = (amplitude * (2.0 * std::f64::consts::PI * freq * n / 16_000.0).sin()) as i16;
        }
        AudioFrame::new(s)
    }

    /// Correlation of two signals after aligning by the best lag, 1.0 = identical shape.
    fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> f64 {
        (0..max_lag)
            .map(|lag| {
                let pairs = a.iter().zip(&b[lag..]);
                let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
                for (&x, &y) in pairs {
                    let (x, y) = (f64::from(x), f64::from(y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                ab / (aa.sqrt() * bb.sqrt()).max(1.0)
            })
            .fold(f64::MIN, f64::max)
    }

    fn round_trip(kind: CodecKind) -> (Vec<i16>, Vec<i16>) {
        let mut enc = Encoder::new(kind).unwrap();
        let mut dec = Decoder::new(kind).unwrap();
        let mut payload = Vec::new();
        let (mut sent, mut got) = (Vec::new(), Vec::new());
        for k in 0..25 {
            let frame = tone_frame(440.0, k, 10_000.0);
            enc.encode(&frame, &mut payload).unwrap();
            if kind != CodecKind::Opus {
                assert_eq!(payload.len(), 160);
            }
            sent.extend_from_slice(&frame);
            got.extend_from_slice(&dec.decode(&payload).unwrap());
        }
        (sent, got)
    }

    #[test]
    fn g711_round_trip_preserves_speech_band_tone() {
        for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
            let (sent, got) = round_trip(kind);
            let corr = best_correlation(&sent[..4_000], &got, 1_000);
            assert!(corr > 0.99, "{kind:?} correlation {corr}");
        }
    }

    #[test]
    fn opus_round_trip_preserves_tone() {
        let (sent, got) = round_trip(CodecKind::Opus);
        let corr = best_correlation(&sent[..4_000], &got, 1_000);
        assert!(corr > 0.95, "correlation {corr}");
    }

    #[test]
    fn g711_decoder_rejects_other_packet_times() {
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        assert!(matches!(
            dec.decode(&[0xFF; 80]),
            Err(CodecError::UnsupportedDuration { actual: 80, .. })
        ));
    }

    #[test]
    fn opus_decoder_rejects_garbage_without_panicking() {
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        for junk in [&[][..], &[0xFF; 3][..], &[0x0B, 0xFF, 0xFF, 0xFF][..]] {
            let _ = dec.decode(junk);
        }
        // Concealment still yields a frame afterwards.
        assert_eq!(dec.conceal(Some(&[1, 2, 3])).len(), FRAME_SAMPLES);
    }

    #[test]
    fn g711_concealment_repeats_then_fades_to_silence() {
        let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let mut payload = Vec::new();
        for k in 0..5 {
            enc.encode(&tone_frame(440.0, k, 10_000.0), &mut payload)
                .unwrap();
            dec.decode(&payload).unwrap();
        }
        let first = dec.conceal(None);
        assert!(first.rms() > 3_000.0, "first concealed rms {}", first.rms());
        let mut last = first;
        for _ in 0..5 {
            last = dec.conceal(None);
        }
        assert!(last.rms() < 50.0, "faded rms {}", last.rms());
    }

    #[test]
    fn opus_concealment_continues_the_signal() {
        let mut enc = Encoder::new(CodecKind::Opus).unwrap();
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        let mut payload = Vec::new();
        for k in 0..10 {
            enc.encode(&tone_frame(440.0, k, 10_000.0), &mut payload)
                .unwrap();
            dec.decode(&payload).unwrap();
        }
        // Packet 10 lost; recover it with FEC from packet 11.
        enc.encode(&tone_frame(440.0, 10, 10_000.0), &mut payload)
            .unwrap();
        let mut next = Vec::new();
        enc.encode(&tone_frame(440.0, 11, 10_000.0), &mut next)
            .unwrap();
        let recovered = dec.conceal(Some(&next));
        assert!(recovered.rms() > 2_000.0, "fec rms {}", recovered.rms());
        let plc = dec.conceal(None);
        assert!(plc.rms() > 500.0, "plc rms {}", plc.rms());
    }

    #[test]
    fn rtpmap_names_round_trip() {
        for kind in [CodecKind::Pcmu, CodecKind::Pcma, CodecKind::Opus] {
            assert_eq!(
                CodecKind::from_rtpmap(kind.encoding_name(), kind.clock_rate()),
                Some(kind)
            );
        }
        assert_eq!(
            CodecKind::from_rtpmap("OPUS", 48_000),
            Some(CodecKind::Opus)
        );
        assert_eq!(CodecKind::from_rtpmap("PCMU", 16_000), None);
        assert_eq!(CodecKind::Opus.samples_per_frame(), 960);
    }

    /// Cost of one 20 ms PCMU frame through decode + 8→16 kHz and 16→8 kHz + encode.
    /// Run with `cargo test -p baton-media --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_pcmu_frame_cost() {
        let mut enc = Encoder::new(CodecKind::Pcmu).unwrap();
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let mut payload = Vec::new();
        enc.encode(&tone_frame(440.0, 0, 10_000.0), &mut payload)
            .unwrap();
        let n = 50_000u32;
        let start = Instant::now();
        for _ in 0..n {
            let frame = dec.decode(&payload).unwrap();
            enc.encode(&frame, &mut payload).unwrap();
        }
        let per_frame = start.elapsed() / n;
        // 1000 calls have two legs' worth of decode+encode per call at 50 frames/s.
        let core_share = per_frame.as_secs_f64() * 50.0 * 1_000.0;
        println!("PCMU decode+resample+encode: {per_frame:?} per frame; 1000 calls use {core_share:.3} of one core");
    }

    /// Same for Opus (libopus at 16 kHz, default complexity).
    #[test]
    #[ignore]
    fn measure_opus_frame_cost() {
        let mut enc = Encoder::new(CodecKind::Opus).unwrap();
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        let mut payload = Vec::new();
        let n = 5_000u32;
        let start = Instant::now();
        for k in 0..n as usize {
            enc.encode(&tone_frame(440.0, k, 10_000.0), &mut payload)
                .unwrap();
            dec.decode(&payload).unwrap();
        }
        println!("Opus encode+decode: {:?} per frame", start.elapsed() / n);
    }
}
