//! Side by side on the same utterances, in one run: baton's speech-to-text, whisper.cpp's
//! own command-line transcriber (`whisper-cli`) and faster-whisper, all with the whisper
//! tiny.en weights (baton and whisper-cli read the same ggml file, faster-whisper the
//! CTranslate2 weights that file is converted from) and one thread each. The utterances
//! are the twelve bank sentences of `tests/accuracy.rs` spoken by espeak-ng, at 16 kHz and
//! through a G.711 µ-law leg as baton carries them, each written as a 16 kHz mono 16-bit
//! WAV so that every engine gets the same samples; no prompt. The engines take turns on
//! each utterance (the order rotates from one utterance to the next) and each transcribes
//! it twice in a row: the second, warm run is timed; model loading is never counted.
//!
//! - baton: `SpeechWorkers` with one thread (encoder window shrunk to the clip, greedy);
//!   the pool thread's time for the job.
//! - whisper-cli `-t 1`, one process per utterance with the WAV given twice: the time from
//!   its second `main: processing` line on stderr (printed once the WAV is read, just
//!   before `whisper_full`) to the first of its closing `whisper_print_timings` lines, as
//!   the lines arrive. What whisper.cpp itself prints for the process (`total time - load
//!   time`, covering state set-up and both runs, and its temperature fallbacks) is shown
//!   beside each utterance. Three settings: its defaults (30 s window, beam search 5, flash
//!   attention); baton's decoding (`-bs 1 -bo 1 -nfa`: greedy, no flash attention) in the
//!   30 s window; and that with `-ac N`, the window baton uses for the clip.
//! - faster-whisper, one Python process for the whole run (`scripts/faster_whisper_times.py`),
//!   `beam_size=1`, `best_of=1`, `language="en"`, no VAD filter, `cpu_threads=1`, one model
//!   per compute type: the time of `transcribe` including consuming its segments.
//!
//! Reports, per engine and input: time per utterance (median, p95), real-time factor (time
//! over audio duration, summed over the set), word error rate, and the median over the
//! utterances of the engine's time divided by baton's.
//!
//! `scripts/stt-peers.sh` installs the peers and runs this bench. Environment:
//! `BENCH_PEERS_WHISPER_CLI` (the whisper-cli binary), `BENCH_PEERS_PYTHON` (a Python with
//! faster-whisper), `BENCH_PEERS_CT2_MODEL` (the CTranslate2 tiny.en directory), all
//! required; `BENCH_PEERS_COMPUTE` (faster-whisper compute types, default `int8,float32`);
//! `BATON_WHISPER_MODEL` (the ggml model, default the one `make model` installs).

#[path = "../tests/common/mod.rs"]
mod common;

use baton_speech::stt::{audio_ctx, Job, JobKind, SpeechWorkers};
use baton_speech::wer::{word_errors, words};
use baton_speech::SAMPLE_RATE;
use common::{model, model_path, scratch, speak, through_g711, BANK_SENTENCES, EN_US};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest wait for one engine's two runs on an utterance, or for faster-whisper to load:
/// a hung peer must end the bench, not stall it.
const TIMEOUT: Duration = Duration::from_secs(180);

/// The encoder window baton's `stt::transcribe` sets for a clip of `samples` (padded to at
/// least a second).
fn baton_audio_ctx(samples: usize) -> usize {
    let secs = samples.max(SAMPLE_RATE as usize) as f32 / SAMPLE_RATE as f32;
    audio_ctx(secs) as usize
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create a WAV");
    for &s in samples {
        w.write_sample(s).expect("write a sample");
    }
    w.finalize().expect("finish a WAV");
}

/// A peer the bench needs, named by an environment variable that scripts/stt-peers.sh sets.
fn required(var: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: it names {what}. Run scripts/stt-peers.sh, which installs the \
             peers and runs this bench with it set."
        )
    });
    assert!(
        path.exists(),
        "{var}={}: not found ({what}). Run scripts/stt-peers.sh to install it.",
        path.display()
    );
    path
}

/// Waits for `child` until `deadline`, killing it past that.
fn wait_until(child: &mut Child, deadline: Instant, what: &str) -> ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("poll a child process") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in time");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Sends each line `from` gives, with the time it arrived, until it ends.
fn lines_of(from: impl Read + Send + 'static) -> Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(from).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line).into_owned();
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// What whisper-cli says its version is (the library's, which is whisper-rs-sys's).
fn cli_version(cli: &Path) -> String {
    let mut child = Command::new(cli)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_until(&mut child, deadline, "whisper-cli --version");
    let mut version = String::new();
    let stdout = child.stdout.take().expect("whisper-cli's stdout");
    BufReader::new(stdout)
        .read_to_string(&mut version)
        .expect("read whisper-cli's version");
    version.trim().to_owned()
}

/// One engine's timed (second) run on an utterance.
struct Run {
    took: Duration,
    text: String,
    cli: Option<CliTimings>,
}

/// What whisper-cli's `whisper_print_timings` said of its whole process: both runs.
struct CliTimings {
    /// `total time - load time`: state set-up, both runs and their output.
    own: Duration,
    /// Temperature fallbacks, as it prints them (`N p / N h`).
    fallbacks: String,
}

/// Runs whisper-cli on `wav` twice in one process and times the second run from its stderr.
fn whisper_cli(cli: &Path, model: &Path, args: &[String], wav: &Path, out: &Path) -> Run {
    let (warm, timed) = (out.join("warm"), out.join("timed"));
    let _ = std::fs::remove_file(timed.with_extension("txt"));
    let mut child = Command::new(cli)
        .arg("-m")
        .arg(model)
        .args(["-t", "1", "-otxt"])
        .args(args)
        .arg("-of")
        .arg(&warm)
        .arg("-of")
        .arg(&timed)
        .arg("-f")
        .arg(wav)
        .arg("-f")
        .arg(wav)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
    let rx = lines_of(child.stderr.take().expect("whisper-cli's stderr"));
    let deadline = Instant::now() + TIMEOUT;
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "whisper-cli {args:?} took over {TIMEOUT:?} on {}",
                    wav.display()
                );
            }
        }
    }
    let status = wait_until(&mut child, deadline, "whisper-cli");
    let log = || {
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        status.success(),
        "whisper-cli {args:?} failed ({status}):\n{}",
        log()
    );
    let at = |prefix: &str| -> Vec<Instant> {
        lines
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .map(|(t, _)| *t)
            .collect()
    };
    let (starts, ends) = (
        at("main: processing"),
        at("whisper_print_timings:     load time"),
    );
    assert!(
        starts.len() == 2 && ends.len() == 1,
        "whisper-cli printed no timings to time by:\n{}",
        log()
    );
    let value = |key: &str| -> String {
        lines
            .iter()
            .find_map(|(_, l)| {
                let v = l.split_once(key)?.1.split_whitespace();
                Some(v.collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| panic!("whisper-cli printed no {key}:\n{}", log()))
    };
    let ms = |key: &str| -> f64 {
        let v = value(key);
        v.strip_suffix(" ms")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("whisper-cli's {key} {v:?} is no time in ms"))
    };
    let own = ms("total time =") - ms("load time =");
    let text = std::fs::read_to_string(timed.with_extension("txt"))
        .expect("whisper-cli's transcript (-otxt)");
    Run {
        took: ends[0] - starts[1],
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        cli: Some(CliTimings {
            own: Duration::from_secs_f64(own.max(0.0) / 1000.0),
            fallbacks: value("fallbacks ="),
        }),
    }
}

/// The faster-whisper process, its models loaded, answering one request at a time.
struct FasterWhisper {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    /// faster-whisper's and CTranslate2's versions, as it reported them.
    versions: String,
}

impl FasterWhisper {
    fn start(python: &Path, ct2_model: &Path, computes: &str) -> FasterWhisper {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/faster_whisper_times.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg(ct2_model)
            .arg(computes)
            // One thread, like the others: numpy's BLAS must not add its own.
            .envs([
                ("OMP_NUM_THREADS", "1"),
                ("OPENBLAS_NUM_THREADS", "1"),
                ("MKL_NUM_THREADS", "1"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let lines = lines_of(child.stdout.take().expect("faster-whisper's stdout"));
        let stdin = child.stdin.take();
        let mut fw = FasterWhisper {
            child,
            stdin,
            lines,
            versions: String::new(),
        };
        let ready = fw.reply();
        let v: Vec<&str> = ready.split('\t').collect();
        assert!(
            v.len() == 3 && v[0] == "ready",
            "faster-whisper did not start: {ready}"
        );
        fw.versions = format!("faster-whisper {}, CTranslate2 {}", v[1], v[2]);
        fw
    }

    fn reply(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok((_, line)) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("faster-whisper gave no answer in {TIMEOUT:?} ({e:?})");
            }
        }
    }

    fn transcribe(&mut self, compute: &str, wav: &Path) -> (Duration, String) {
        let stdin = self.stdin.as_mut().expect("faster-whisper's stdin");
        writeln!(stdin, "{compute}\t{}", wav.display()).expect("send to faster-whisper");
        stdin.flush().expect("send to faster-whisper");
        let line = self.reply();
        let mut parts = line.splitn(3, '\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("ok"), Some(secs), text) => (
                Duration::from_secs_f64(secs.parse().expect("faster-whisper's seconds")),
                text.unwrap_or_default().to_owned(),
            ),
            _ => panic!("faster-whisper failed on {}: {line}", wav.display()),
        }
    }
}

impl Drop for FasterWhisper {
    fn drop(&mut self) {
        // Closing its input is what ends it.
        drop(self.stdin.take());
        wait_until(
            &mut self.child,
            Instant::now() + Duration::from_secs(10),
            "faster-whisper",
        );
    }
}

enum Engine {
    Baton,
    /// whisper-cli with these options; `fit` adds `-ac` with baton's window for the clip.
    Cli {
        label: &'static str,
        args: &'static [&'static str],
        fit: bool,
    },
    Faster(String),
}

impl Engine {
    fn label(&self) -> String {
        match self {
            Engine::Baton => "baton (window fit to the clip, greedy)".to_owned(),
            Engine::Cli { label, .. } => (*label).to_owned(),
            Engine::Faster(compute) => format!("faster-whisper {compute} (30 s window, greedy)"),
        }
    }
}

/// One utterance as the engines get it.
struct Clip {
    input: &'static str,
    sentence: usize,
    samples: usize,
    wav: PathBuf,
}

impl Clip {
    fn secs(&self) -> f64 {
        self.samples as f64 / f64::from(SAMPLE_RATE)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let cli = required(
        "BENCH_PEERS_WHISPER_CLI",
        "whisper.cpp's whisper-cli binary",
    );
    let python = required("BENCH_PEERS_PYTHON", "a Python that has faster-whisper");
    let ct2 = required(
        "BENCH_PEERS_CT2_MODEL",
        "the CTranslate2 tiny.en model directory",
    );
    assert!(
        ct2.join("model.bin").is_file(),
        "BENCH_PEERS_CT2_MODEL={}: no model.bin there. Run scripts/stt-peers.sh.",
        ct2.display()
    );
    let computes = std::env::var("BENCH_PEERS_COMPUTE").unwrap_or_else(|_| "int8,float32".into());
    let ggml = model_path();

    let dir = scratch("bench-peers");
    let mut clips = Vec::new();
    for (i, sentence) in BANK_SENTENCES.iter().enumerate() {
        let wide = speak(&dir, &format!("say-{i}"), EN_US, sentence);
        let narrow = through_g711(&wide);
        for (input, tag, samples) in [("16 kHz", "16k", wide), ("G.711", "g711", narrow)] {
            let wav = dir.join(format!("{i}-{tag}.wav"));
            write_wav(&wav, &samples);
            clips.push((
                Clip {
                    input,
                    sentence: i,
                    samples: samples.len(),
                    wav,
                },
                samples,
            ));
        }
    }
    let out = dir.join("cli-out");
    std::fs::create_dir_all(&out).expect("create the whisper-cli output dir");

    let workers = SpeechWorkers::start(model(), 1, 4, 4).expect("baton's worker");
    let mut fw = FasterWhisper::start(&python, &ct2, &computes);
    let cli_version = cli_version(&cli);

    let mut engines = vec![
        Engine::Baton,
        Engine::Cli {
            label: "whisper-cli, its defaults (30 s window, beam 5, flash attention)",
            args: &[],
            fit: false,
        },
        Engine::Cli {
            label: "whisper-cli -bs 1 -bo 1 -nfa (30 s window, greedy)",
            args: &["-bs", "1", "-bo", "1", "-nfa"],
            fit: false,
        },
        Engine::Cli {
            label: "whisper-cli -bs 1 -bo 1 -nfa -ac N (baton's window, greedy)",
            args: &["-bs", "1", "-bo", "1", "-nfa"],
            fit: true,
        },
    ];
    engines.extend(
        computes
            .split(',')
            .map(|c| Engine::Faster(c.trim().to_owned())),
    );

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "speech-to-text peers: {} utterances ({} sentences × 16 kHz, G.711), each engine on one thread",
        clips.len(),
        BANK_SENTENCES.len()
    );
    println!(
        "machine: {cpu}, {cores} cores; load average at start {}",
        load_average()
    );
    println!("model: {} and {}", ggml.display(), ct2.display());
    println!(
        "whisper-cli: {} ({cli_version}); {}",
        cli.display(),
        fw.versions
    );

    let n = engines.len();
    let mut times = vec![vec![Duration::ZERO; clips.len()]; n];
    let mut texts = vec![vec![String::new(); clips.len()]; n];
    let mut own = vec![Vec::new(); n];
    let started = Instant::now();
    for (c, (clip, samples)) in clips.iter().enumerate() {
        for k in 0..n {
            let e = (c + k) % n;
            let mut run = || match &engines[e] {
                Engine::Baton => {
                    let (tx, rx) = mpsc::channel();
                    workers.submit(Job {
                        stream: 1,
                        kind: JobKind::Final,
                        samples: samples.clone(),
                        prompt: String::new(),
                        reply: Box::new(move |r| {
                            let _ = tx.send(r);
                        }),
                    });
                    let done = rx
                        .recv_timeout(TIMEOUT)
                        .expect("baton answers in time")
                        .expect("baton transcribes");
                    Run {
                        took: done.ran,
                        text: done.transcript.text,
                        cli: None,
                    }
                }
                Engine::Cli { args, fit, .. } => {
                    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
                    if *fit {
                        args.extend(["-ac".to_owned(), baton_audio_ctx(clip.samples).to_string()]);
                    }
                    whisper_cli(&cli, &ggml, &args, &clip.wav, &out)
                }
                Engine::Faster(compute) => {
                    let (took, text) = fw.transcribe(compute, &clip.wav);
                    Run {
                        took,
                        text,
                        cli: None,
                    }
                }
            };
            // whisper-cli warms up inside its own process; the others get a run of their own.
            if !matches!(engines[e], Engine::Cli { .. }) {
                run();
            }
            let r = run();
            let whisper = r.cli.as_ref().map_or(String::new(), |t| {
                format!(
                    "  [whisper-cli's own, both runs: total − load {:.0} ms, fallbacks {}]",
                    ms(t.own),
                    t.fallbacks
                )
            });
            println!(
                "{:>6} #{:<2} {:.1} s  {:<62} {:>6.0} ms  {} errors  {:?}{whisper}",
                clip.input,
                clip.sentence + 1,
                clip.secs(),
                engines[e].label(),
                ms(r.took),
                word_errors(BANK_SENTENCES[clip.sentence], &r.text),
                r.text
            );
            times[e][c] = r.took;
            texts[e][c] = r.text;
            own[e].extend(r.cli.map(|t| t.own));
        }
    }
    drop(fw);
    println!(
        "ran for {:.0} s; load average at the end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );

    println!();
    println!("| engine | input | median | p95 | real-time factor | word error rate | time ÷ baton's, median |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for input in ["16 kHz", "G.711"] {
        let set: Vec<usize> = (0..clips.len())
            .filter(|&c| clips[c].0.input == input)
            .collect();
        let audio: f64 = set.iter().map(|&c| clips[c].0.secs()).sum();
        let total_words: usize = set
            .iter()
            .map(|&c| words(BANK_SENTENCES[clips[c].0.sentence]).len())
            .sum();
        for (e, engine) in engines.iter().enumerate() {
            let mut sorted: Vec<Duration> = set.iter().map(|&c| times[e][c]).collect();
            sorted.sort();
            let busy: f64 = sorted.iter().map(Duration::as_secs_f64).sum();
            let errors: usize = set
                .iter()
                .map(|&c| word_errors(BANK_SENTENCES[clips[c].0.sentence], &texts[e][c]))
                .sum();
            let mut ratios: Vec<f64> = set
                .iter()
                .map(|&c| times[e][c].as_secs_f64() / times[0][c].as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = if e == 0 {
                "1".to_owned()
            } else {
                format!("{:.2}", ratios[ratios.len() / 2])
            };
            println!(
                "| {} | {input} | {:.0} ms | {:.0} ms | {:.3} | {:.1} % ({errors} of {total_words}) | {ratio} |",
                engine.label(),
                ms(percentile(&sorted, 0.5)),
                ms(percentile(&sorted, 0.95)),
                busy / audio,
                100.0 * errors as f64 / total_words as f64,
            );
        }
    }
    for (e, engine) in engines.iter().enumerate() {
        let mut own = own[e].clone();
        if own.is_empty() {
            continue;
        }
        own.sort();
        let mut timed = times[e].clone();
        timed.sort();
        println!(
            "{}: whisper's own total − load time per process (state set-up and both runs), median {:.0} ms; the timed second run, median {:.0} ms",
            engine.label(),
            ms(percentile(&own, 0.5)),
            ms(percentile(&timed, 0.5))
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
