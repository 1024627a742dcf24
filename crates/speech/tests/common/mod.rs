//! What the speech tests and the speech bench share: the installed model and speech made
//! with espeak-ng.
#![allow(dead_code)]

use baton_media::{AudioFrame, CodecKind, Decoder, Encoder, FRAME_SAMPLES};
use baton_speech::stt::Model;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// espeak-ng's American voice at an ordinary pace.
pub(crate) const EN_US: &[&str] = &["-v", "en-us", "-s", "150"];

/// What callers of a bank line say.
pub(crate) const BANK_SENTENCES: [&str; 12] = [
    "Please block my credit card, it was stolen yesterday.",
    "I would like to check the balance of my savings account.",
    "I need to make a payment on my loan.",
    "Can you tell me when my salary was paid in?",
    "I lost my wallet and my debit card was inside.",
    "Someone took money from my account without asking.",
    "I want to speak to a human agent, please.",
    "My new card has not arrived yet.",
    "How do I change the address on my account?",
    "I think there is a mistake on my statement.",
    "Please send me a text message with the details.",
    "I want to open a new savings account.",
];

/// The model `make model` installs, or the one `BATON_WHISPER_MODEL` names.
pub(crate) fn model_path() -> PathBuf {
    std::env::var_os("BATON_WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/ggml-tiny.en.bin")
        })
}

/// whisper base (multilingual), which `make model-base` installs.
pub(crate) fn base_model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/ggml-base.bin")
}

/// The installed model, loaded.
pub(crate) fn model() -> Arc<Model> {
    load(&model_path())
}

/// The model at `path`, loaded.
pub(crate) fn load(path: &Path) -> Arc<Model> {
    Arc::new(Model::load(path).unwrap_or_else(|e| {
        panic!("{e}\n(run `make model` and `make model-base` to install the speech models)")
    }))
}

/// A fresh directory for this process under the system temp dir.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-speech-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `text` spoken by espeak-ng with `voice` (its options; none for its default voice), as
/// 16 kHz mono samples; the files go to `dir` under `stem`.
pub(crate) fn speak(dir: &Path, stem: &str, voice: &[&str], text: &str) -> Vec<i16> {
    let raw = dir.join(format!("{stem}.wav"));
    let wide = dir.join(format!("{stem}-16k.wav"));
    let ok = Command::new("espeak-ng")
        .args(voice)
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .expect("espeak-ng (installed by scripts/install-deps.sh)");
    assert!(ok.success(), "espeak-ng failed on {text:?}");
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wide)
        .status()
        .expect("sox (installed by scripts/install-deps.sh)");
    assert!(ok.success(), "sox failed on {}", raw.display());
    hound::WavReader::open(&wide)
        .expect("open the 16 kHz speech")
        .samples::<i16>()
        .map(|s| s.expect("a sample"))
        .collect()
}

/// The audio as it reaches speech-to-text after a G.711 µ-law leg in baton (16 kHz → 8 kHz
/// µ-law → 16 kHz, the media crate's own encoder and decoder).
pub(crate) fn through_g711(samples: &[i16]) -> Vec<i16> {
    let mut enc = Encoder::new(CodecKind::Pcmu).expect("a µ-law encoder");
    let mut dec = Decoder::new(CodecKind::Pcmu).expect("a µ-law decoder");
    let mut payload = Vec::new();
    let mut out = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(FRAME_SAMPLES) {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        enc.encode(&AudioFrame::new(frame), &mut payload)
            .expect("µ-law encodes any frame");
        out.extend_from_slice(&dec.decode(&payload).expect("µ-law decodes its own payload"));
    }
    out
}
