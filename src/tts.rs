//! Text to speech: espeak-ng run as a child process, its WAV output decoded to baton's
//! internal format (16 kHz mono), cached in memory.
//!
//! Audio is rendered at 16 kHz, not at a leg's own rate: the media layer converts every
//! frame to the leg's codec and rate (8 kHz G.711, 48 kHz Opus, ...) once, as it does for
//! prompts, so one rendering serves every leg. Text may come from outside (a bot), so it is
//! bounded and cleaned, passed on stdin (never through a shell, never in `ps`), and
//! espeak-ng runs without SSML. Whatever goes wrong, a render returns audio: the recorded
//! fallback prompt ([`FALLBACK_PROMPT`]) when synthesis fails.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_media::SAMPLE_RATE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::{OnceCell, Semaphore};
use tracing::{debug, warn};

use crate::config::TtsConfig;
use crate::metrics::Metrics;

/// The media file played when speech cannot be rendered ("One moment, please.").
pub const FALLBACK_PROMPT: &str = "tts-fallback.wav";
/// Longest text spoken, in characters (about a minute of speech); longer text is cut at
/// a word boundary.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Most WAV bytes read from espeak-ng: three minutes at 44.1 kHz, far beyond what
/// [`MAX_TEXT_CHARS`] gives even at the slowest speed.
const MAX_WAV_BYTES: usize = 16 << 20;
/// Most bytes of espeak-ng's error output kept for the log.
const MAX_STDERR_BYTES: usize = 1024;
/// Below this peak the output is silence, whatever espeak-ng says (about -50 dBFS).
const SILENT_PEAK: u16 = 100;

/// Why speech could not be rendered; the render returns the fallback prompt instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtsError {
    /// Nothing speakable was left once the text was cleaned.
    #[error("no text to speak")]
    Empty,
    /// The voice name is not one espeak-ng could have.
    #[error("\"{0}\" is not a voice name")]
    Voice(String),
    /// The program could not be started (most often: not installed).
    #[error("cannot run {command}: {reason}")]
    Spawn {
        /// The command as configured.
        command: PathBuf,
        /// What the operating system said.
        reason: String,
        /// Whether the program does not exist.
        missing: bool,
    },
    /// The program did not finish in time and was killed.
    #[error("no speech within {0:?}; the synthesiser was killed")]
    Timeout(Duration),
    /// The program exited with an error.
    #[error("synthesiser failed ({status}): {stderr}")]
    Failed {
        /// How it exited.
        status: String,
        /// The start of what it printed on stderr.
        stderr: String,
    },
    /// The program wrote more audio than any bounded text can give.
    #[error("synthesiser wrote more than {MAX_WAV_BYTES} bytes")]
    TooLong,
    /// The output was not a WAV baton can read.
    #[error("synthesiser output is not a 16-bit PCM WAV: {0}")]
    BadWav(String),
    /// The output held no audible audio.
    #[error("synthesiser produced no audio")]
    NoAudio,
}

impl TtsError {
    /// A short, bounded label for the failure metric.
    fn reason(&self) -> &'static str {
        match self {
            TtsError::Empty => "empty",
            TtsError::Voice(_) => "voice",
            TtsError::Spawn { missing: true, .. } => "missing",
            TtsError::Spawn { .. } => "spawn",
            TtsError::Timeout(_) => "timeout",
            TtsError::Failed { .. } => "failed",
            TtsError::TooLong => "too_long",
            TtsError::BadWav(_) => "bad_wav",
            TtsError::NoAudio => "no_audio",
        }
    }
}

/// Where a render's audio came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Rendered now by the synthesiser (or by a render of the same text running at once).
    Spoken,
    /// Rendered before and kept in the cache.
    Cached,
    /// The fallback prompt, because synthesis failed.
    Fallback(TtsError),
}

/// Audio for a text: always something to play.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// 16 kHz mono samples.
    pub audio: Arc<[i16]>,
    /// Whether it is speech or the fallback, and why.
    pub source: Source,
}

/// The text-to-speech engine; clones share one cache.
#[derive(Clone)]
pub struct Tts {
    inner: Arc<Inner>,
}

struct Inner {
    config: TtsConfig,
    fallback: Arc<[i16]>,
    metrics: Arc<Metrics>,
    cache: Mutex<Cache>,
    /// One synthesiser process per core at most, so a burst of texts cannot start a
    /// process for each.
    processes: Semaphore,
}

/// What a text is rendered with: voice, speed (words per minute) and the cleaned text.
type Key = (String, u32, String);
/// The outcome of one synthesis, shared by every render of the same key waiting on it.
type Pending = Arc<OnceCell<Result<Arc<[i16]>, TtsError>>>;

impl Tts {
    /// An engine running `config.command`; `fallback` (16 kHz mono) is played when
    /// synthesis fails, and renders are counted in `metrics`.
    pub fn new(config: TtsConfig, fallback: Arc<[i16]>, metrics: Arc<Metrics>) -> Tts {
        let limit = config.cache_bytes / std::mem::size_of::<i16>();
        Tts {
            inner: Arc::new(Inner {
                config,
                fallback,
                metrics,
                cache: Mutex::new(Cache::new(limit)),
                processes: Semaphore::new(
                    std::thread::available_parallelism().map_or(1, |n| n.get()),
                ),
            }),
        }
    }

    /// Speaks `text` in the configured voice.
    pub async fn render(&self, text: &str) -> Rendered {
        self.render_voice(text, None).await
    }

    /// Speaks `text` in `voice`, or the configured voice when `None`. Renders of the same
    /// text running at once share one synthesis.
    pub async fn render_voice(&self, text: &str, voice: Option<&str>) -> Rendered {
        let voice = voice.unwrap_or(&self.inner.config.voice);
        if !valid_voice(voice) {
            return self.fall_back(TtsError::Voice(voice.to_owned()));
        }
        let Some(text) = clean(text) else {
            return self.fall_back(TtsError::Empty);
        };
        let key = (voice.to_owned(), self.inner.config.speed, text);
        let pending = {
            let mut cache = lock(&self.inner.cache);
            if let Some(audio) = cache.get(&key) {
                self.inner.metrics.tts_rendered("cached");
                return Rendered {
                    audio,
                    source: Source::Cached,
                };
            }
            cache.pending.entry(key.clone()).or_default().clone()
        };
        // Only one waiter runs the synthesis; if it is cancelled, the next one takes over.
        let result = pending.get_or_init(|| self.synthesize(&key)).await.clone();
        {
            let mut cache = lock(&self.inner.cache);
            if cache
                .pending
                .get(&key)
                .is_some_and(|p| Arc::ptr_eq(p, &pending))
            {
                cache.pending.remove(&key);
                if let Ok(audio) = &result {
                    cache.insert(key, audio.clone());
                }
            }
        }
        match result {
            Ok(audio) => {
                self.inner.metrics.tts_rendered("spoken");
                Rendered {
                    audio,
                    source: Source::Spoken,
                }
            }
            Err(e) => self.fall_back(e),
        }
    }

    /// The prompt played when synthesis fails.
    pub fn fallback(&self) -> Arc<[i16]> {
        self.inner.fallback.clone()
    }

    fn fall_back(&self, error: TtsError) -> Rendered {
        self.inner.metrics.tts_rendered("fallback");
        self.inner.metrics.tts_failed(error.reason());
        Rendered {
            audio: self.inner.fallback.clone(),
            source: Source::Fallback(error),
        }
    }

    /// Runs the synthesiser once for `key`; waiting for a free process counts toward the
    /// timeout, so a hung synthesiser delays any render by one timeout at most.
    async fn synthesize(&self, key: &Key) -> Result<Arc<[i16]>, TtsError> {
        let (voice, speed, text) = key;
        let config = &self.inner.config;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + config.timeout;
        let result = match tokio::time::timeout_at(deadline, self.inner.processes.acquire()).await {
            // The semaphore is never closed, so there is always a permit once it is our turn.
            Ok(_permit) => run(config, voice, *speed, text, deadline).await,
            Err(_) => Err(TtsError::Timeout(config.timeout)),
        };
        let took = started.elapsed();
        self.inner.metrics.observe_tts_render(took);
        match &result {
            Ok(audio) => debug!(
                ?took,
                secs = audio.len() as f64 / f64::from(SAMPLE_RATE),
                "speech rendered"
            ),
            Err(e) => warn!(error = %e, ?took, "text to speech failed; playing the fallback"),
        }
        result
    }
}

/// Whether `voice` can be an espeak-ng voice name: letters, digits, `-`, `_` and `+`
/// (for variants such as `en-us+f3`), not starting with `-` so it cannot read as an option.
pub fn valid_voice(voice: &str) -> bool {
    (1..=64).contains(&voice.len())
        && !voice.starts_with('-')
        && voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}

/// The text as espeak-ng should see it, or `None` when nothing is left: control characters
/// and runs of whitespace become one space, and brackets go, since espeak-ng reads `[[...]]`
/// as raw phonemes. Text beyond [`MAX_TEXT_CHARS`] is cut at a word boundary.
fn clean(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len().min(MAX_TEXT_CHARS * 4));
    let mut chars = 0;
    let words = text
        .split(|c: char| c.is_whitespace() || c.is_control() || c == '[' || c == ']')
        .filter(|w| !w.is_empty());
    for word in words {
        let len = word.chars().count() + usize::from(chars > 0);
        if chars + len > MAX_TEXT_CHARS {
            warn!(
                limit = MAX_TEXT_CHARS,
                "text to speak is too long; the rest is cut"
            );
            if chars == 0 {
                // One enormous "word": keep as much of it as fits.
                out.extend(word.chars().take(MAX_TEXT_CHARS));
            }
            break;
        }
        if chars > 0 {
            out.push(' ');
        }
        out.push_str(word);
        chars += len;
    }
    (!out.is_empty()).then_some(out)
}

/// Starts the synthesiser, feeds it `text` and decodes what it says, killing it if it is
/// not done by `deadline` or writes too much.
async fn run(
    config: &TtsConfig,
    voice: &str,
    speed: u32,
    text: &str,
    deadline: tokio::time::Instant,
) -> Result<Arc<[i16]>, TtsError> {
    // No `-m`: SSML stays off, so markup in the text is read, not obeyed.
    let mut child = Command::new(&config.command)
        .args(["--stdout", "--stdin", "-b", "1", "-v", voice, "-s"])
        .arg(speed.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TtsError::Spawn {
            command: config.command.clone(),
            reason: e.to_string(),
            missing: e.kind() == std::io::ErrorKind::NotFound,
        })?;
    let outcome = tokio::time::timeout_at(deadline, talk(&mut child, text)).await;
    let (status, wav, stderr) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            kill(&mut child).await;
            return Err(e);
        }
        Err(_) => {
            kill(&mut child).await;
            return Err(TtsError::Timeout(config.timeout));
        }
    };
    if !status.success() {
        return Err(TtsError::Failed {
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    let samples = decode(wav)?;
    if samples.iter().all(|s| s.unsigned_abs() < SILENT_PEAK) {
        return Err(TtsError::NoAudio);
    }
    Ok(samples.into())
}

/// Writes the text, reads the WAV and the error output, and waits for the exit.
async fn talk(child: &mut Child, text: &str) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), TtsError> {
    let io_error = |e: std::io::Error| TtsError::Failed {
        status: "running".to_owned(),
        stderr: e.to_string(),
    };
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A synthesiser that exits before reading everything (a bad voice) closes the
            // pipe; its exit status says why, so the write error is not the story.
            let _ = stdin.write_all(text.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        Ok(())
    };
    let read_wav = async move {
        match stdout {
            Some(out) => match read_bounded(out, MAX_WAV_BYTES).await {
                Ok((bytes, false)) => Ok(bytes),
                Ok((_, true)) => Err(TtsError::TooLong),
                Err(e) => Err(io_error(e)),
            },
            None => Ok(Vec::new()),
        }
    };
    let read_errors = async move {
        Ok(match stderr {
            Some(err) => read_bounded(err, MAX_STDERR_BYTES)
                .await
                .map(|(bytes, _)| bytes)
                .unwrap_or_default(),
            None => Vec::new(),
        })
    };
    let ((), wav, errors) = tokio::try_join!(write, read_wav, read_errors)?;
    let status = child.wait().await.map_err(io_error)?;
    Ok((status, wav, errors))
}

/// Reads a pipe to its end, keeping at most `limit` bytes; true when there was more.
/// Error output goes on being drained past the limit so the child never blocks on it;
/// for audio the caller stops at the first byte too many.
async fn read_bounded(
    mut pipe: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, false));
        }
        let room = limit - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
        if n > room {
            return Ok((kept, true));
        }
    }
}

async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Decodes espeak-ng's WAV into 16 kHz mono samples. Written to a pipe, the WAV cannot say
/// how long it is (its sizes are placeholders), so they are set from what arrived first.
fn decode(mut wav: Vec<u8>) -> Result<Vec<i16>, TtsError> {
    fix_sizes(&mut wav).map_err(|e| TtsError::BadWav(e.to_owned()))?;
    let reader =
        hound::WavReader::new(Cursor::new(wav)).map_err(|e| TtsError::BadWav(e.to_string()))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int
        || spec.bits_per_sample != 16
        || spec.channels != 1
    {
        return Err(TtsError::BadWav(format!(
            "{} channels of {}-bit {:?}",
            spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| TtsError::BadWav(e.to_string()))?;
    if samples.is_empty() {
        return Err(TtsError::NoAudio);
    }
    baton_media::convert_rate(&samples, spec.sample_rate, SAMPLE_RATE)
        .map_err(|e| TtsError::BadWav(e.to_string()))
}

/// Sets the RIFF size and the `data` chunk's size to the bytes actually there.
fn fix_sizes(wav: &mut [u8]) -> Result<(), &'static str> {
    if wav.len() < 12 || &wav[0..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return Err("no RIFF/WAVE header");
    }
    let total = u32::try_from(wav.len() - 8).map_err(|_| "too long")?;
    wav[4..8].copy_from_slice(&total.to_le_bytes());
    let mut at = 12;
    while at + 8 <= wav.len() {
        let size = u32::from_le_bytes([wav[at + 4], wav[at + 5], wav[at + 6], wav[at + 7]]);
        if &wav[at..at + 4] == b"data" {
            // Whole 16-bit samples only: a write cut short may end mid-sample.
            let present = (wav.len() - at - 8) & !1;
            let size = u32::try_from(present).map_err(|_| "too long")?;
            wav[at + 4..at + 8].copy_from_slice(&size.to_le_bytes());
            return Ok(());
        }
        at = at.saturating_add(8 + size as usize + (size as usize & 1));
    }
    Err("no data chunk")
}

/// Rendered speech by key, bounded by total samples; the least recently used goes first.
struct Cache {
    entries: HashMap<Key, Entry>,
    /// Keys by when they were last used, oldest first.
    by_use: BTreeMap<u64, Key>,
    clock: u64,
    samples: usize,
    limit: usize,
    /// Syntheses under way, so renders of the same key wait for one instead of starting
    /// their own.
    pending: HashMap<Key, Pending>,
}

struct Entry {
    audio: Arc<[i16]>,
    used: u64,
}

impl Cache {
    fn new(limit: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
            samples: 0,
            limit,
            pending: HashMap::new(),
        }
    }

    fn get(&mut self, key: &Key) -> Option<Arc<[i16]>> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        let key = self.by_use.remove(&entry.used)?;
        entry.used = self.clock;
        let audio = entry.audio.clone();
        self.by_use.insert(self.clock, key);
        Some(audio)
    }

    fn insert(&mut self, key: Key, audio: Arc<[i16]>) {
        if audio.len() > self.limit || self.entries.contains_key(&key) {
            return;
        }
        while self.samples + audio.len() > self.limit {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                self.samples -= gone.audio.len();
            }
        }
        self.clock += 1;
        self.samples += audio.len();
        self.by_use.insert(self.clock, key.clone());
        self.entries.insert(
            key,
            Entry {
                audio,
                used: self.clock,
            },
        );
    }
}

/// Locks the cache; a panic elsewhere while holding it leaves entries that are still valid.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temp dir for one test, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "baton-tts-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        /// An executable shell script. It is written by a child shell, so this process
        /// never holds it open for writing: a fork elsewhere in the test binary would
        /// otherwise make running it fail with "text file busy".
        fn script(&self, name: &str, body: &str) -> PathBuf {
            let path = self.0.join(name);
            let mut child = std::process::Command::new("sh")
                .args(["-c", "cat > \"$1\" && chmod +x \"$1\"", "sh"])
                .arg(&path)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(
                child.stdin.as_mut().unwrap(),
                format!("#!/bin/sh\n{body}\n").as_bytes(),
            )
            .unwrap();
            drop(child.stdin.take());
            assert!(child.wait().unwrap().success());
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fallback() -> Arc<[i16]> {
        vec![1234i16; 800].into()
    }

    fn engine(command: &Path, timeout: Duration, cache_bytes: usize) -> (Tts, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        let config = TtsConfig {
            command: command.to_owned(),
            timeout,
            cache_bytes,
            ..TtsConfig::default()
        };
        (Tts::new(config, fallback(), metrics.clone()), metrics)
    }

    fn metric(metrics: &Metrics, series: &str) -> u64 {
        metrics
            .render()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// espeak-ng behind a script that counts its runs in `runs`.
    fn counting_espeak(scratch: &Scratch) -> (PathBuf, PathBuf) {
        let runs = scratch.0.join("runs");
        let script = scratch.script(
            "espeak",
            &format!("echo run >> '{}'\nexec espeak-ng \"$@\"", runs.display()),
        );
        (script, runs)
    }

    fn runs(file: &Path) -> usize {
        std::fs::read_to_string(file).map_or(0, |t| t.lines().count())
    }

    #[tokio::test]
    async fn speaks_then_answers_from_the_cache_without_a_second_process() {
        let scratch = Scratch::new();
        let (command, runs_file) = counting_espeak(&scratch);
        let (tts, metrics) = engine(&command, Duration::from_secs(10), 1 << 20);
        let first = tts.render("Your card has been blocked.").await;
        assert_eq!(first.source, Source::Spoken);
        let secs = first.audio.len() as f64 / f64::from(SAMPLE_RATE);
        assert!((1.0..4.0).contains(&secs), "{secs} s of speech");
        let again = tts.render("  Your card has been\tblocked. ").await;
        assert_eq!(again.source, Source::Cached, "same text once cleaned");
        assert!(Arc::ptr_eq(&first.audio, &again.audio));
        assert_eq!(runs(&runs_file), 1);
        let other_voice = tts
            .render_voice("Your card has been blocked.", Some("en-us"))
            .await;
        assert_eq!(
            other_voice.source,
            Source::Spoken,
            "the voice is in the key"
        );
        assert_eq!(runs(&runs_file), 2);
        assert_eq!(
            metric(&metrics, "baton_tts_renders_total{source=\"cached\"}"),
            1
        );
        assert_eq!(
            metric(&metrics, "baton_tts_renders_total{source=\"spoken\"}"),
            2
        );
        assert_eq!(metric(&metrics, "baton_tts_render_seconds_count"), 2);
    }

    #[tokio::test]
    async fn renders_of_the_same_text_at_once_share_one_process() {
        let scratch = Scratch::new();
        let (command, runs_file) = counting_espeak(&scratch);
        let (tts, _) = engine(&command, Duration::from_secs(10), 1 << 20);
        let text = "Please hold while I check that for you.";
        let (a, b, c) = tokio::join!(tts.render(text), tts.render(text), tts.render(text));
        assert_eq!(runs(&runs_file), 1);
        assert!(Arc::ptr_eq(&a.audio, &b.audio) && Arc::ptr_eq(&b.audio, &c.audio));
        assert_ne!(a.audio, fallback());
    }

    #[tokio::test]
    async fn a_missing_program_gives_the_fallback_and_counts_a_failure() {
        let (tts, metrics) = engine(
            Path::new("/nonexistent/espeak-ng"),
            Duration::from_secs(5),
            1 << 20,
        );
        let r = tts.render("Your balance is twelve pounds.").await;
        assert!(
            matches!(
                r.source,
                Source::Fallback(TtsError::Spawn { missing: true, .. })
            ),
            "{:?}",
            r.source
        );
        assert!(Arc::ptr_eq(&r.audio, &tts.fallback()));
        assert_eq!(
            metric(&metrics, "baton_tts_failures_total{reason=\"missing\"}"),
            1
        );
        let again = tts.render("Your balance is twelve pounds.").await;
        assert!(
            matches!(again.source, Source::Fallback(_)),
            "failures are not cached: the program is tried again"
        );
        assert_eq!(
            metric(&metrics, "baton_tts_failures_total{reason=\"missing\"}"),
            2
        );
    }

    #[tokio::test]
    async fn a_hung_synthesiser_is_killed_at_the_timeout() {
        let scratch = Scratch::new();
        let pid_file = scratch.0.join("pid");
        let command = scratch.script(
            "hang",
            &format!("echo $$ > '{}'\nexec sleep 30", pid_file.display()),
        );
        let (tts, metrics) = engine(&command, Duration::from_millis(300), 1 << 20);
        let started = Instant::now();
        let r = tts.render("Hello.").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            r.source,
            Source::Fallback(TtsError::Timeout(Duration::from_millis(300)))
        );
        assert_eq!(&*r.audio, &*fallback());
        assert_eq!(
            metric(&metrics, "baton_tts_failures_total{reason=\"timeout\"}"),
            1
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()));
        assert!(
            status.is_err(),
            "the synthesiser was killed and reaped: {status:?}"
        );
    }

    #[tokio::test]
    async fn failures_and_garbage_give_the_fallback() {
        let scratch = Scratch::new();
        let cases = [
            ("exit 3", "failed"),
            ("echo 'not a wav'", "bad_wav"),
            ("exec head -c 17000000 /dev/zero", "too_long"),
        ];
        for (body, reason) in cases {
            let command = scratch.script(reason, body);
            let (tts, metrics) = engine(&command, Duration::from_secs(10), 1 << 20);
            let r = tts.render("Hello.").await;
            assert!(
                matches!(r.source, Source::Fallback(_)),
                "{body}: {:?}",
                r.source
            );
            let series = format!("baton_tts_failures_total{{reason=\"{reason}\"}}");
            assert_eq!(metric(&metrics, &series), 1, "{body}: {:?}", r.source);
        }
        let (tts, metrics) = engine(Path::new("espeak-ng"), Duration::from_secs(10), 1 << 20);
        let r = tts.render_voice("Hello.", Some("nosuchvoice")).await;
        assert!(
            matches!(&r.source, Source::Fallback(TtsError::Failed { stderr, .. }) if stderr.contains("voice")),
            "{:?}",
            r.source
        );
        let r = tts.render_voice("Hello.", Some("-m")).await;
        assert_eq!(r.source, Source::Fallback(TtsError::Voice("-m".into())));
        assert_eq!(
            metric(&metrics, "baton_tts_failures_total{reason=\"voice\"}"),
            1
        );
    }

    #[tokio::test]
    async fn control_characters_markup_and_overlong_text_are_tamed() {
        let (tts, metrics) = engine(Path::new("espeak-ng"), Duration::from_secs(10), 1 << 20);
        for empty in ["", " \t\r\n", "\u{7}\u{1b}\u{0}", "[[]]"] {
            let r = tts.render(empty).await;
            assert_eq!(r.source, Source::Fallback(TtsError::Empty), "{empty:?}");
        }
        assert_eq!(
            metric(&metrics, "baton_tts_failures_total{reason=\"empty\"}"),
            4
        );
        let r = tts.render("Hello\u{0}\u{1b}[2J there\u{7}.").await;
        assert_eq!(r.source, Source::Spoken);
        let long = "one two three four five six seven eight nine ten. ".repeat(100);
        let r = tts.render(&long).await;
        assert_eq!(r.source, Source::Spoken);
        let secs = r.audio.len() as f64 / f64::from(SAMPLE_RATE);
        assert!(
            (30.0..150.0).contains(&secs),
            "{secs} s for the first {MAX_TEXT_CHARS} characters"
        );
    }

    #[test]
    fn cleaning_text() {
        assert_eq!(clean("  a\u{0}b\n\nc\t"), Some("a b c".to_owned()));
        assert_eq!(
            clean("say [[h@'loU]] now"),
            Some("say h@'loU now".to_owned())
        );
        assert_eq!(
            clean("<speak>hi</speak>"),
            Some("<speak>hi</speak>".to_owned()),
            "left as text: SSML is off"
        );
        assert_eq!(clean("\u{1}\u{2}"), None);
        let long = "word ".repeat(1000);
        let cut = clean(&long).unwrap();
        assert!(cut.chars().count() <= MAX_TEXT_CHARS);
        assert!(cut.ends_with("word"), "cut at a word boundary");
        let blob = "x".repeat(5000);
        assert_eq!(clean(&blob).unwrap().len(), MAX_TEXT_CHARS);
    }

    #[test]
    fn voice_names() {
        for good in ["en-gb", "en-us+f3", "mb_en1", "de"] {
            assert!(valid_voice(good), "{good}");
        }
        for bad in ["", "-m", "en gb", "../x", "en/gb", &"a".repeat(65)] {
            assert!(!valid_voice(bad), "{bad}");
        }
    }

    #[test]
    fn cache_evicts_the_least_recently_used() {
        let key = |t: &str| ("en-gb".to_owned(), 160, t.to_owned());
        let audio = |n: usize| -> Arc<[i16]> { vec![0i16; n].into() };
        let mut cache = Cache::new(10);
        cache.insert(key("a"), audio(4));
        cache.insert(key("b"), audio(4));
        assert!(cache.get(&key("a")).is_some(), "a is now the most recent");
        cache.insert(key("c"), audio(4));
        assert!(
            cache.get(&key("b")).is_none(),
            "b was the least recently used"
        );
        assert!(cache.get(&key("a")).is_some() && cache.get(&key("c")).is_some());
        assert_eq!(cache.samples, 8);
        cache.insert(key("huge"), audio(11));
        assert!(
            cache.get(&key("huge")).is_none(),
            "larger than the whole cache"
        );
        let mut off = Cache::new(0);
        off.insert(key("a"), audio(1));
        assert!(off.get(&key("a")).is_none(), "a cache of 0 keeps nothing");
    }

    #[test]
    fn streamed_wav_sizes_are_fixed() {
        let mut wav = Vec::new();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 22050,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(Cursor::new(&mut wav), spec).unwrap();
        for i in 0..2205 {
            writer.write_sample(((i % 50) * 400) as i16).unwrap();
        }
        writer.finalize().unwrap();
        // What a pipe gets: placeholder sizes, and a last sample cut in half.
        wav[4..8].copy_from_slice(&0x7fff_f024u32.to_le_bytes());
        wav[40..44].copy_from_slice(&0x7fff_f000u32.to_le_bytes());
        wav.push(0x12);
        let samples = decode(wav).unwrap();
        assert!(
            (1590..1610).contains(&samples.len()),
            "0.1 s at 16 kHz: {}",
            samples.len()
        );
        assert!(matches!(
            decode(b"garbage".to_vec()),
            Err(TtsError::BadWav(_))
        ));
    }
}
