//! Sans-IO media for baton's call legs: G.711 and Opus codecs, the internal 16 kHz audio
//! frame, the RTP session (sequence tracking, symmetric-RTP latching, jitter buffer,
//! DTMF, RTCP reports) and per-leg statistics. Nothing here opens a socket or reads a
//! clock: callers feed datagrams with an explicit `now` and poll for outputs.

pub mod codec;
pub mod dtmf;
pub mod frame;
pub mod g711;
pub mod jitter;
mod resample;
pub mod rtcp;
pub mod rtp;
pub mod stats;

pub use codec::{CodecError, CodecKind, Decoder, Encoder};
pub use dtmf::{DtmfReceiver, DtmfSender, DtmfTone};
pub use frame::{AudioFrame, FRAME_DURATION, FRAME_SAMPLES, SAMPLE_RATE};
pub use jitter::{JitterBuffer, JitterConfig, Playout};
pub use resample::{convert_rate, RateConverter, ResampleError};
pub use rtcp::RtcpError;
pub use rtp::{LatchMode, RtpConfig, RtpConfigError, RtpEvent, RtpSession};
pub use stats::LegStats;
