//! Speech for baton's call legs, from the 16 kHz, 20 ms frames of the media layer: voice
//! activity detection that cuts utterances, a pitch tracker for prosody, and whisper
//! speech-to-text on a dedicated worker pool. The detectors are sans-IO: they take frames
//! and give events, so tests drive them with synthetic audio.

pub mod pitch;
pub mod prosody;
pub mod stt;
pub mod vad;
pub mod vibe;
pub mod wer;

/// Sample rate of the audio everything here takes, in Hz.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 320;
