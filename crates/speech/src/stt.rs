//! Speech-to-text with whisper.cpp (through whisper-rs) on a dedicated pool of threads.
//!
//! whisper.cpp spins its threads while it works, so it never runs on the async runtime's
//! workers: each pool thread owns one whisper state and runs one job at a time on one
//! thread. The queue is bounded and ordered: a final (the end of an utterance) always goes
//! before a partial, and a newer partial of the same stream replaces an older one still
//! waiting, so under overload partials thin out and latency grows while finals still come.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperSysContext, WhisperSysState, WhisperTokenData, WhisperTokenId,
};

use crate::SAMPLE_RATE;

/// The model file cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// It could not be opened or read.
    #[error("speech model {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// It is not a ggml whisper model, or it is damaged or cut short.
    #[error("speech model {path}: {what}")]
    Invalid { path: PathBuf, what: String },
    /// whisper.cpp refused it.
    #[error("speech model {path}: whisper.cpp could not load it ({what})")]
    Load { path: PathBuf, what: String },
}

/// What a ggml whisper file says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    pub n_vocab: u32,
    pub n_audio_layer: u32,
    pub n_text_layer: u32,
    pub n_mels: u32,
    /// Tensors found, each checked to lie wholly inside the file.
    pub tensors: u32,
}

impl ModelInfo {
    /// A readable size name (tiny, base, small, medium, large) from the layer count.
    pub fn size_name(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "custom",
        }
    }

    /// English-only models have the smaller vocabulary.
    pub fn english_only(&self) -> bool {
        self.n_vocab < 51_865
    }
}

/// `ggml` in the file's first four bytes (little-endian u32).
const GGML_MAGIC: u32 = 0x6767_6d6c;

/// Walks a ggml whisper file's structure (header, mel filters, vocabulary, every tensor's
/// header and extent) without trusting any length in it: whisper.cpp reads the file as it
/// comes, so a damaged one must be caught here, with a message, first.
pub fn check_model(path: &Path) -> Result<ModelInfo, ModelError> {
    let invalid = |what: String| ModelError::Invalid {
        path: path.to_path_buf(),
        what,
    };
    let io_err = |source: io::Error| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut r = BufReader::new(file);
    let u32_at = |r: &mut BufReader<File>, what: &str| -> Result<u32, ModelError> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)
            .map_err(|_| invalid(format!("cut short while reading {what}")))?;
        Ok(u32::from_le_bytes(b))
    };
    if u32_at(&mut r, "the magic number")? != GGML_MAGIC {
        return Err(invalid(
            "not a ggml whisper model (wrong magic number)".into(),
        ));
    }
    let mut h = [0u32; 11];
    for v in &mut h {
        *v = u32_at(&mut r, "the header")?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, _, n_audio_layer, n_text_ctx, n_text_state, _, n_text_layer, n_mels, _] =
        h;
    let sane = (50_000..=52_000).contains(&n_vocab)
        && n_audio_ctx == 1_500
        && n_text_ctx == 448
        && (1..=64).contains(&n_audio_layer)
        && (1..=64).contains(&n_text_layer)
        && (64..=4_096).contains(&n_audio_state)
        && n_audio_state == n_text_state
        && (n_mels == 80 || n_mels == 128);
    if !sane {
        return Err(invalid(format!("implausible header {h:?}")));
    }
    let skip = |r: &mut BufReader<File>, bytes: u64, what: &str| -> Result<(), ModelError> {
        let at = r.stream_position().map_err(io_err)?;
        if at + bytes > len {
            return Err(invalid(format!("cut short in {what}")));
        }
        r.seek(SeekFrom::Current(bytes as i64)).map_err(io_err)?;
        Ok(())
    };
    let mel_rows = u32_at(&mut r, "the mel filters")?;
    let mel_cols = u32_at(&mut r, "the mel filters")?;
    skip(
        &mut r,
        u64::from(mel_rows) * u64::from(mel_cols) * 4,
        "the mel filters",
    )?;
    let tokens = u32_at(&mut r, "the vocabulary")?;
    if tokens > n_vocab {
        return Err(invalid(format!(
            "{tokens} tokens for a vocabulary of {n_vocab}"
        )));
    }
    for _ in 0..tokens {
        let n = u32_at(&mut r, "the vocabulary")?;
        skip(&mut r, u64::from(n), "the vocabulary")?;
    }
    let mut tensors = 0;
    while r.stream_position().map_err(io_err)? < len {
        let dims = u32_at(&mut r, "a tensor header")?;
        let name_len = u32_at(&mut r, "a tensor header")?;
        let ttype = u32_at(&mut r, "a tensor header")?;
        if !(1..=4).contains(&dims) || name_len == 0 || name_len > 256 {
            return Err(invalid(format!("tensor {tensors} has a damaged header")));
        }
        let mut elements = 1u64;
        for _ in 0..dims {
            elements *= u64::from(u32_at(&mut r, "a tensor header")?);
        }
        let mut name = vec![0u8; name_len as usize];
        r.read_exact(&mut name)
            .map_err(|_| invalid("cut short in a tensor name".into()))?;
        let name = String::from_utf8_lossy(&name).into_owned();
        let bytes = tensor_bytes(ttype, elements)
            .ok_or_else(|| invalid(format!("tensor {name} has unknown type {ttype}")))?;
        skip(&mut r, bytes, &format!("tensor {name}"))?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err(invalid("no tensors".into()));
    }
    Ok(ModelInfo {
        n_vocab,
        n_audio_layer,
        n_text_layer,
        n_mels,
        tensors,
    })
}

/// Bytes of a tensor of `elements` of ggml type `ttype`: f32, f16 and the block-quantized
/// types whisper.cpp's quantizer writes.
fn tensor_bytes(ttype: u32, elements: u64) -> Option<u64> {
    let (block, size) = match ttype {
        0 => (1, 4),   // f32
        1 => (1, 2),   // f16
        2 => (32, 18), // q4_0
        3 => (32, 20), // q4_1
        6 => (32, 22), // q5_0
        7 => (32, 24), // q5_1
        8 => (32, 34), // q8_0
        _ => return None,
    };
    Some(elements.div_ceil(block) * size)
}

/// A loaded whisper model, shared by the pool's threads.
pub struct Model {
    ctx: WhisperContext,
    info: ModelInfo,
    path: PathBuf,
}

impl Model {
    /// Checks and loads a ggml whisper model.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let info = check_model(path)?;
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| ModelError::Load {
                path: path.to_path_buf(),
                what: format!("{e:?}"),
            })?;
        Ok(Model {
            ctx,
            info,
            path: path.to_path_buf(),
        })
    }

    /// What the file said about the model.
    pub fn info(&self) -> ModelInfo {
        self.info
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One word of a transcript, with its timing inside the utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub start: Duration,
    pub end: Duration,
    /// whisper's probability for the word's tokens (their mean), 0..=1.
    pub probability: f32,
}

/// What whisper heard in one piece of audio.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    pub text: String,
    pub words: Vec<Word>,
    /// Mean token probability, 0..=1; 0 for an empty transcript.
    pub confidence: f32,
}

/// Whether a job is a partial hypothesis or the final one of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Partial,
    Final,
}

/// A transcription could not be done.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SttError {
    /// The queue was full (finals) or the pool is shutting down.
    #[error("speech-to-text queue is full")]
    Busy,
    /// A newer partial of the same stream took this one's place in the queue.
    #[error("superseded by a newer partial")]
    Superseded,
    /// whisper.cpp failed on the audio.
    #[error("whisper: {0}")]
    Whisper(String),
}

/// How a job's result comes back: called once, on a pool thread.
pub type Reply = Box<dyn FnOnce(Result<Done, SttError>) + Send>;

/// A finished job: the transcript and how long it waited and ran.
#[derive(Debug, Clone)]
pub struct Done {
    pub transcript: Transcript,
    pub queued: Duration,
    pub ran: Duration,
}

/// Audio to transcribe and where the result goes.
pub struct Job {
    /// Which leg the audio comes from: a newer partial replaces an older one of the same
    /// stream still waiting.
    pub stream: u64,
    pub kind: JobKind,
    /// 16 kHz mono samples.
    pub samples: Vec<i16>,
    /// Words that bias recognition (whisper's initial prompt): what the dialog expects,
    /// the caller's name.
    pub prompt: String,
    pub reply: Reply,
}

struct Queued {
    job: Job,
    at: Instant,
}

#[derive(Default)]
struct Queue {
    finals: VecDeque<Queued>,
    partials: VecDeque<Queued>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_finals: usize,
    max_partials: usize,
}

/// The pool of transcription threads.
pub struct SpeechWorkers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Encoder positions per second of audio (whisper's 30 s window has 1,500).
const AUDIO_CTX_PER_SEC: f32 = 50.0;
/// Text tokens allowed per second of audio, and on top of that per clip.
const MAX_TOKENS_PER_SEC: f32 = 8.0;
const MAX_TOKENS_SLACK: usize = 16;
/// Positions added to the shrunk encoder window: whisper mis-hears the last word of a
/// clip when its window ends exactly with the audio.
const AUDIO_CTX_MARGIN: i32 = 64;

/// The encoder window for a clip of `secs` seconds: fitted to the clip (whisper's 30 s
/// window costs 7–8 times as much on a short utterance), plus a margin.
pub fn audio_ctx(secs: f32) -> i32 {
    ((secs * AUDIO_CTX_PER_SEC).ceil() as i32 + AUDIO_CTX_MARGIN).min(1_500)
}

impl SpeechWorkers {
    /// Starts `threads` pool threads on `model`, with room for `max_finals` waiting finals
    /// and `max_partials` waiting partials.
    pub fn start(
        model: Arc<Model>,
        threads: usize,
        max_finals: usize,
        max_partials: usize,
    ) -> Result<SpeechWorkers, ModelError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            max_finals,
            max_partials,
        });
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let state = model.ctx.create_state().map_err(|e| ModelError::Load {
                path: model.path.clone(),
                what: format!("no whisper state: {e:?}"),
            })?;
            let (shared, worker_model) = (shared.clone(), model.clone());
            let handle = std::thread::Builder::new()
                .name(format!("stt-{i}"))
                .spawn(move || work(&shared, &worker_model, state))
                .map_err(|source| ModelError::Io {
                    path: model.path.clone(),
                    source,
                })?;
            handles.push(handle);
        }
        Ok(SpeechWorkers {
            shared,
            threads: handles,
        })
    }

    /// Queues a job. A final is refused (its reply called with [`SttError::Busy`]) only
    /// when the final queue is full; a partial displaces the stream's older waiting
    /// partial, or the oldest partial of all when that queue is full.
    pub fn submit(&self, job: Job) {
        let mut q = lock(&self.shared.queue);
        if q.closed {
            drop(q);
            (job.reply)(Err(SttError::Busy));
            return;
        }
        let queued = Queued {
            job,
            at: Instant::now(),
        };
        let displaced = match queued.job.kind {
            JobKind::Final if q.finals.len() >= self.shared.max_finals => {
                drop(q);
                (queued.job.reply)(Err(SttError::Busy));
                return;
            }
            JobKind::Final => {
                q.finals.push_back(queued);
                None
            }
            JobKind::Partial => {
                let stream = queued.job.stream;
                let old = match q.partials.iter().position(|p| p.job.stream == stream) {
                    Some(i) => q.partials.remove(i),
                    None if q.partials.len() >= self.shared.max_partials => q.partials.pop_front(),
                    None => None,
                };
                q.partials.push_back(queued);
                old
            }
        };
        drop(q);
        self.shared.ready.notify_one();
        if let Some(old) = displaced {
            (old.job.reply)(Err(SttError::Superseded));
        }
    }

    /// Jobs waiting, finals and partials.
    pub fn waiting(&self) -> (usize, usize) {
        let q = lock(&self.shared.queue);
        (q.finals.len(), q.partials.len())
    }
}

impl Drop for SpeechWorkers {
    fn drop(&mut self) {
        let pending: Vec<Queued> = {
            let mut q = lock(&self.shared.queue);
            q.closed = true;
            let q = &mut *q;
            q.finals.drain(..).chain(q.partials.drain(..)).collect()
        };
        self.shared.ready.notify_all();
        for p in pending {
            (p.job.reply)(Err(SttError::Busy));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A panicking reply closure must not take the whole pool down with a poisoned lock.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn work(shared: &Shared, model: &Model, mut state: WhisperState) {
    loop {
        let next = {
            let mut q = lock(&shared.queue);
            loop {
                if q.closed {
                    return;
                }
                if let Some(j) = q.finals.pop_front().or_else(|| q.partials.pop_front()) {
                    break j;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let started = Instant::now();
        let result = transcribe(model, &mut state, &next.job.samples, &next.job.prompt);
        let done = result.map(|transcript| Done {
            transcript,
            queued: started - next.at,
            ran: started.elapsed(),
        });
        (next.job.reply)(done);
    }
}

/// Runs whisper on one clip, on this thread only, with the encoder window shrunk to the
/// clip (a 3 s clip encodes about seven times faster than in the full 30 s window).
pub fn transcribe(
    model: &Model,
    state: &mut WhisperState,
    samples: &[i16],
    prompt: &str,
) -> Result<Transcript, SttError> {
    if samples.is_empty() {
        return Ok(Transcript::default());
    }
    // whisper.cpp needs at least a second of audio; pad short clips with silence.
    let min = SAMPLE_RATE as usize;
    let audio: Vec<f32> = samples
        .iter()
        .map(|&s| f32::from(s) / 32_768.0)
        .chain(std::iter::repeat(0.0))
        .take(samples.len().max(min))
        .collect();
    let secs = audio.len() as f32 / SAMPLE_RATE as f32;
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(1);
    params.set_language(Some("en"));
    params.set_no_context(true);
    params.set_single_segment(true);
    params.set_token_timestamps(true);
    params.set_suppress_blank(true);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_special(false);
    params.set_print_timestamps(false);
    params.set_audio_ctx(audio_ctx(secs));
    // Speech runs at about four tokens a second; twice that plus a sentence of slack
    // bounds the time a decoding loop (see `drop_decoding_loop`) can waste.
    let budget = (secs * MAX_TOKENS_PER_SEC) as usize + MAX_TOKENS_SLACK;
    params.set_max_tokens(budget as i32);
    // No temperature fallback: it decodes the clip again, up to five times, whenever the
    // first pass looks repetitive or unsure, which made one final in ten take three times
    // as long. Loops are stopped by `stop_decoding_loops` instead.
    params.set_temperature_inc(0.0);
    let guard = LoopGuard {
        eot: model.ctx.token_eot(),
        n_vocab: usize::try_from(model.ctx.n_vocab()).unwrap_or(0),
    };
    // SAFETY: `stop_decoding_loops` reads the user data as a `LoopGuard`, which lives on
    // this stack frame until `full` below has returned.
    unsafe {
        params.set_filter_logits_callback(Some(stop_decoding_loops));
        params.set_filter_logits_callback_user_data(&guard as *const LoopGuard as *mut c_void);
    }
    if !prompt.is_empty() {
        params.set_initial_prompt(prompt);
    }
    state
        .full(params, &audio)
        .map_err(|e| SttError::Whisper(format!("{e:?}")))?;
    let eot = model.ctx.token_eot();
    let mut t = Transcript::default();
    let mut probs = Vec::new();
    let mut word_probs: Vec<f32> = Vec::new();
    for segment in state.as_iter() {
        for i in 0..segment.n_tokens() {
            let Some(token) = segment.get_token(i) else {
                continue;
            };
            if token.token_id() >= eot {
                continue; // special and timestamp tokens
            }
            let Ok(piece) = token.to_str_lossy() else {
                continue;
            };
            let data = token.token_data();
            let p = token.token_probability();
            probs.push(p);
            let starts_word = piece.starts_with(' ') || t.words.is_empty();
            let at = |cs: i64| Duration::from_millis(u64::try_from(cs).unwrap_or(0) * 10);
            if starts_word {
                close_word(&mut t.words, &mut word_probs);
                t.words.push(Word {
                    text: piece.trim_start().to_string(),
                    start: at(data.t0),
                    end: at(data.t1),
                    probability: 0.0,
                });
            } else if let Some(w) = t.words.last_mut() {
                w.text.push_str(&piece);
                w.end = at(data.t1);
            }
            word_probs.push(p);
        }
    }
    close_word(&mut t.words, &mut word_probs);
    t.words.retain(|w| !w.text.is_empty());
    drop_decoding_loop(&mut t.words, probs.len() >= budget);
    t.text = t
        .words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    t.confidence = if probs.is_empty() {
        0.0
    } else {
        probs.iter().sum::<f32>() / probs.len() as f32
    };
    Ok(t)
}

/// Length of a run of text tokens that, seen a second time in one clip, is taken for a
/// decoding loop: a sentence or more. Short repeats ("thank you, thank you") are things
/// people say and stay far below it.
const LOOP_TOKENS: usize = 8;

/// What the logits filter needs to end a decoding loop.
struct LoopGuard {
    eot: WhisperTokenId,
    n_vocab: usize,
}

/// Whether the text tokens end with [`LOOP_TOKENS`] tokens that appeared, in the same
/// order, earlier in the text: whisper has started over, whether on the whole clip or on
/// its last sentence, and whether or not the first copy differed in its last words.
fn ends_in_loop(tokens: &[WhisperTokenId]) -> bool {
    let Some(start) = tokens.len().checked_sub(LOOP_TOKENS) else {
        return false;
    };
    let tail = &tokens[start..];
    // Every earlier start: the windows of all tokens but the last.
    tokens[..tokens.len() - 1]
        .windows(LOOP_TOKENS)
        .any(|w| w == tail)
}

/// whisper.cpp's logits filter, called before each token is chosen: once the text has
/// started over (see [`drop_decoding_loop`]), only the end of text may follow. A loop
/// otherwise runs until the token budget is spent, which made the slowest finals several
/// times slower than the rest.
unsafe extern "C" fn stop_decoding_loops(
    _ctx: *mut WhisperSysContext,
    _state: *mut WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    let Ok(n_tokens) = usize::try_from(n_tokens) else {
        return;
    };
    if tokens.is_null() || logits.is_null() || user_data.is_null() || n_tokens == 0 {
        return;
    }
    // SAFETY: whisper.cpp passes the decoder's `n_tokens` tokens and its logits, one per
    // vocabulary entry; the user data is the `LoopGuard` that `transcribe` set.
    let (guard, tokens) = unsafe {
        (
            &*(user_data as *const LoopGuard),
            std::slice::from_raw_parts(tokens, n_tokens),
        )
    };
    let text: Vec<WhisperTokenId> = tokens
        .iter()
        .map(|t| t.id)
        .filter(|&id| id < guard.eot)
        .collect();
    if !ends_in_loop(&text) {
        return;
    }
    // SAFETY: as above.
    let logits = unsafe { std::slice::from_raw_parts_mut(logits, guard.n_vocab) };
    for (id, logit) in logits.iter_mut().enumerate() {
        if id != guard.eot as usize {
            *logit = f32::NEG_INFINITY;
        }
    }
}

/// Shortest repeated run of words taken for a decoding loop; shorter repeats ("no, no",
/// "thank you, thank you") are things people say.
const MIN_LOOP_WORDS: usize = 3;

/// With its encoder window shrunk to the clip, whisper sometimes reaches the end of the
/// speech without ending the text and starts over, repeating the last sentence or the
/// whole clip until the token budget runs out, often in the middle of a word. A
/// transcript whose tail repeats a run of at least [`MIN_LOOP_WORDS`] words back to back
/// up to the end has looped: the repeats are cut. The very last word is not compared when
/// it may have been cut short or garbled: the budget ran out (`cut_off`), or the run was
/// already repeated whole before it.
fn drop_decoding_loop(words: &mut Vec<Word>, cut_off: bool) {
    let norm: Vec<String> = words
        .iter()
        .map(|w| {
            w.text
                .chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    let n = norm.len();
    for start in MIN_LOOP_WORDS..n {
        let looped = (MIN_LOOP_WORDS..=start).any(|period| {
            let tail = n - start;
            // The tail repeats the `period` words before it; the last word may differ
            // when the repeat was cut off.
            let checked = if (cut_off || tail > period + 1) && tail > MIN_LOOP_WORDS {
                n - 1
            } else {
                n
            };
            tail >= MIN_LOOP_WORDS.min(period)
                && (start..checked).all(|i| norm[i] == norm[i - period])
        });
        if looped {
            words.truncate(start);
            return;
        }
    }
    // A shorter run said three times over ("Yes. Clean. Yes. Clean. Yes. Clean.") has
    // looped too; said twice ("thank you, thank you") it is speech.
    for period in 2..MIN_LOOP_WORDS {
        if n < 3 * period {
            continue;
        }
        let mut first = n - period;
        while first >= period && norm[first - period..first] == norm[first..first + period] {
            first -= period;
        }
        if (n - first) / period >= 3 {
            words.truncate(first + period);
            return;
        }
    }
}

fn close_word(words: &mut [Word], probs: &mut Vec<f32>) {
    if let Some(w) = words.last_mut() {
        if !probs.is_empty() {
            w.probability = probs.iter().sum::<f32>() / probs.len() as f32;
        }
    }
    probs.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Word> {
        text.split_whitespace()
            .map(|w| Word {
                text: w.to_string(),
                start: Duration::ZERO,
                end: Duration::ZERO,
                probability: 1.0,
            })
            .collect()
    }

    fn unloop_at(text: &str, cut_off: bool) -> String {
        let mut w = words(text);
        drop_decoding_loop(&mut w, cut_off);
        w.iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn unloop(text: &str) -> String {
        unloop_at(text, false)
    }

    #[test]
    fn a_transcript_that_starts_over_is_cut_back() {
        assert_eq!(
            unloop("I need a payment. I need a payment. I need a"),
            "I need a payment."
        );
        assert_eq!(unloop("4 8 2 1 4 8 2 1"), "4 8 2 1");
        assert_eq!(unloop("Yes. Clean. Yes. Clean. Yes. Clean."), "Yes. Clean.");
        assert_eq!(
            unloop("Well, yes please, yes please, yes please"),
            "Well, yes please,"
        );
        assert_eq!(
            unloop("I want to speak to a human agent. Please. I want to speak to a human agent. Please."),
            "I want to speak to a human agent. Please."
        );
        assert_eq!(
            unloop("Please block my card. It was stolen yesterday. It was stolen yesterday."),
            "Please block my card. It was stolen yesterday."
        );
        // Stopped in the middle of a word, by the token budget or by whisper itself.
        assert_eq!(
            unloop("Hello I am calling about my card. Hello I am calling about my card. Hello I am calling amount"),
            "Hello I am calling about my card."
        );
        assert_eq!(
            unloop_at(
                "Hello I am calling about my card. Hello I am calling about my card. Hello I am calling amount",
                true
            ),
            "Hello I am calling about my card."
        );
    }

    #[test]
    fn decoding_stops_once_the_text_starts_over() {
        // A sentence of ten tokens, said again from its start.
        let sentence: Vec<i32> = (10..20).collect();
        let mut tokens = sentence.clone();
        for (i, &t) in sentence.iter().take(LOOP_TOKENS).enumerate() {
            assert!(
                !ends_in_loop(&tokens),
                "stopped after {i} tokens of the repeat"
            );
            tokens.push(t);
        }
        assert!(ends_in_loop(&tokens));
        // A short sentence repeated back to back: caught once a run of the loop's length recurs.
        let short = [1, 2, 3, 4, 5];
        let looped: Vec<i32> = short.iter().cycle().take(13).copied().collect();
        assert!(ends_in_loop(&looped));
        assert!(!ends_in_loop(&looped[..12]));
        // Short repeats are speech: "thank you thank you thank you".
        assert!(!ends_in_loop(&[1, 2, 1, 2, 1, 2, 1]));
        assert!(!ends_in_loop(&[]));
    }

    #[test]
    fn what_people_repeat_is_kept() {
        for text in [
            "thank you thank you",
            "no no no",
            "my card my card was stolen",
            "I want an agent. I want an agent now.",
        ] {
            assert_eq!(unloop(text), text);
        }
    }
}
