//! Speech latency through real SIP calls with media load: T callers talk to baton at once
//! while B other calls stream a tone, and the bench measures, per talker sentence, the time
//! from the end of speech to the final transcript on the call's event stream.
//!
//! The bench is the caller. It places T calls to the shipped `record` plan (prompt, tone,
//! then recording; it sets no speech hints) and B calls to the `echo` plan over its
//! own SIP/UDP user agent, then sends one 20 ms PCMU packet per call every 20 ms from a few
//! paced threads. Background calls carry a 400 Hz tone throughout. After a warm-up that
//! covers the plan's prompt, each talker says `BENCH_SPEECH_TURNS` of the twelve bank
//! sentences (espeak-ng, `-v en-us -s 150`, encoded to 8 kHz µ-law by baton's own G.711
//! encoder, leading and trailing silence cut), a different sentence each turn and talker,
//! with `BENCH_SPEECH_GAP_MS` of digital silence between them; talkers are staggered evenly
//! over one sentence-and-gap cycle. The sending thread notes when the last packet holding a
//! sentence's audio leaves: that is the end of speech.
//!
//! Each talker's `GET /v1/calls/{id}/events` (Server-Sent Events) is read on its own thread,
//! stamping each line as it arrives. A `speech_started` event is matched to the sentence
//! being spoken when it arrives; the sentence's latency is the arrival of the final
//! transcript of its last utterance minus its end of speech. Reported per T: finals,
//! p50/p95/max latency (baton starts a final at the caller's first pause, so it does not
//! wait out the voice activity detector's hangover in full), the real-time factor (CPU time of baton's `stt-*` threads over seconds of speech sent),
//! word error rate, baton's CPU and peak RSS, the talkers' RTP as baton counted it, and
//! how often a listener fell behind. Baton is restarted for every T.
//!
//! Parameters (environment): `BENCH_SPEECH_TALKERS` (comma-separated T, default
//! `1,5,10,15,20`), `BENCH_SPEECH_BACKGROUND` (B, default 100), `BENCH_SPEECH_TURNS`
//! (sentences per talker, default 6), `BENCH_SPEECH_GAP_MS` (silence between sentences,
//! default 1000), `BENCH_SPEECH_WARMUP_SECS` (streaming before the first sentence,
//! default 9: the record plan's 5.6 s prompt and its tone), `BENCH_SPEECH_WAIT_SECS` (the
//! longest wait for finals after the last sentence, default 60), `BENCH_SPEECH_NOISE_DB`
//! (white line noise at this level, dBFS RMS, instead of digital silence between
//! sentences, e.g. `-65`). Needs `make model`, espeak-ng and sox.

mod common;
#[path = "common/rtp.rs"]
mod rtp;
#[path = "../crates/speech/tests/common/mod.rs"]
mod spoken;
#[path = "common/talk.rs"]
mod talk;
#[path = "common/uac.rs"]
mod uac;

use baton_speech::wer::{word_errors, words};
use common::{cpu_secs, env_list, env_or, http_get, metric, print_table, rss_kib, Baton};
use rtp::{pace, rtp_socket, tone, udp_drops, ulaw_encode, Paced, PTIME, SAMPLES};
use spoken::{speak, BANK_SENTENCES, EN_US};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use talk::{api_ids, pcmu_packets, pool_times, ULAW_SILENCE};
use uac::{Offer, Uac};

/// Threads that send RTP, each with one socket (and a thread draining what baton sends).
const SENDERS: usize = 2;
/// Where baton takes RTP ports (as in the media bench, above the ephemeral range).
const SERVER_PORTS: (u16, u16) = (61000, 65498);
/// The latency a sentence must stay under, at the 95th percentile, for T to count.
const GOAL: Duration = Duration::from_secs(1);
/// Finals have stopped coming when none arrived for this long after the last sentence.
const QUIET: Duration = Duration::from_secs(5);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let talkers = env_list("BENCH_SPEECH_TALKERS", &[1, 5, 10, 15, 20]);
    let params = Params {
        background: env_or("BENCH_SPEECH_BACKGROUND", 100),
        turns: env_or("BENCH_SPEECH_TURNS", 6),
        gap: Duration::from_millis(env_or("BENCH_SPEECH_GAP_MS", 1000)),
        warmup: Duration::from_secs(env_or("BENCH_SPEECH_WARMUP_SECS", 9)),
        wait: Duration::from_secs(env_or("BENCH_SPEECH_WAIT_SECS", 60)),
        noise_db: std::env::var("BENCH_SPEECH_NOISE_DB")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    let dir = common::run_dir("speech");
    println!("speech benchmark: {}", common::machine());
    let voice = Arc::new(Voice {
        clips: sentences(&dir),
        quiet: quiet(params.noise_db),
    });
    let clips = &voice.clips;
    let spoken: f64 = clips.iter().map(|c| c.secs()).sum::<f64>() / clips.len() as f64;
    println!(
        "{} sentences, {:.2} s of speech each on average ({:.2}–{:.2} s); T = {talkers:?}, \
         B = {}, {} sentences per talker, {} ms of {} between them, warm-up {} s; \
         work dir {}",
        clips.len(),
        spoken,
        clips.iter().map(Clip::secs).fold(f64::MAX, f64::min),
        clips.iter().map(Clip::secs).fold(0.0, f64::max),
        params.background,
        params.turns,
        params.gap.as_millis(),
        params
            .noise_db
            .map_or("digital silence".to_owned(), |db| format!(
                "noise at {db} dBFS"
            )),
        params.warmup.as_secs(),
        dir.display()
    );
    let mut steps: Vec<Step> = Vec::new();
    for &t in &talkers {
        let step = run_step(&dir, &voice, t as usize, &params);
        println!("{}", step.summary());
        steps.push(step);
    }
    println!("\nend of speech → final transcript:");
    print_table(
        &Step::HEADER,
        &steps.iter().map(Step::row).collect::<Vec<_>>(),
    );
    // A ladder: T counts only if it and every smaller T met the goal.
    steps.sort_by_key(|s| s.talkers);
    let largest = steps
        .iter()
        .take_while(|s| s.complete() && s.p(0.95) < GOAL)
        .map(|s| s.talkers)
        .last();
    println!(
        "largest T (with every smaller T) with every sentence transcribed and p95 < {} ms: {}",
        GOAL.as_millis(),
        largest.map_or("none".to_owned(), |t| t.to_string())
    );
    println!("load average after the run: {}", common::load_average());
}

/// The run's settings, the same for every T.
struct Params {
    background: u32,
    turns: usize,
    gap: Duration,
    warmup: Duration,
    wait: Duration,
    /// Line noise between sentences, dBFS; digital silence when `None`.
    noise_db: Option<f64>,
}

/// What talkers send: the sentences, and the packets between them, played in a loop.
struct Voice {
    clips: Vec<Clip>,
    quiet: Vec<[u8; SAMPLES as usize]>,
}

/// A second of white noise at `db` dBFS RMS, or one packet of digital silence.
fn quiet(db: Option<f64>) -> Vec<[u8; SAMPLES as usize]> {
    let Some(db) = db else {
        return vec![[ULAW_SILENCE; SAMPLES as usize]];
    };
    // Uniform noise in ±a has an RMS of a / √3.
    let amplitude = 32_768.0 * 10f64.powf(db / 20.0) * 3f64.sqrt();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..50)
        .map(|_| {
            let mut packet = [ULAW_SILENCE; SAMPLES as usize];
            for b in &mut packet {
                // xorshift64: deterministic, and enough for noise.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                *b = ulaw_encode(((u * 2.0 - 1.0) * amplitude) as i16);
            }
            packet
        })
        .collect()
}

/// One bank sentence as a talker sends it: PCMU payloads, 160 bytes a packet, from its
/// first to its last packet holding speech.
struct Clip {
    text: &'static str,
    packets: Vec<[u8; SAMPLES as usize]>,
}

impl Clip {
    fn secs(&self) -> f64 {
        self.packets.len() as f64 * PTIME.as_secs_f64()
    }
}

/// The bank sentences spoken by espeak-ng, through baton's G.711 encoder as a phone would
/// send them, without the silence espeak puts around them.
fn sentences(dir: &Path) -> Vec<Clip> {
    BANK_SENTENCES
        .iter()
        .enumerate()
        .map(|(i, &text)| {
            let samples = speak(dir, &format!("sentence-{i}"), EN_US, text);
            Clip {
                text,
                packets: pcmu_packets(&samples),
            }
        })
        .collect()
}

/// What one talker says: sentence numbers, and the round each starts at.
struct Script {
    /// (sentence, first round) per turn.
    turns: Vec<(usize, u64)>,
}

impl Script {
    /// The packet of the sentence being said in `round`, with its turn and where it sits in
    /// the sentence; `None` between sentences.
    fn packet<'a>(&self, clips: &'a [Clip], round: u64) -> Option<(&'a [u8], usize, Edge)> {
        let k = self.turns.partition_point(|&(_, start)| start <= round);
        let (sentence, start) = *self.turns.get(k.checked_sub(1)?)?;
        let clip = &clips[sentence];
        let i = (round - start) as usize;
        let packet = clip.packets.get(i)?;
        let edge = if i + 1 == clip.packets.len() {
            Edge::End
        } else if i == 0 {
            Edge::Start
        } else {
            Edge::Inside
        };
        Some((packet, k - 1, edge))
    }

    /// The round after the last sentence's last packet.
    fn end_round(&self, clips: &[Clip]) -> u64 {
        self.turns
            .last()
            .map_or(0, |&(s, start)| start + clips[s].packets.len() as u64)
    }
}

/// Where a packet sits in its sentence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    Inside,
    End,
}

/// When a talker's sentence was sent: its first and its last packet.
#[derive(Clone, Copy)]
struct Spoken {
    start: Instant,
    end: Instant,
}

/// What a talker's event stream said, stamped when the line arrived.
enum Heard {
    Started {
        utterance: u32,
        at: Instant,
    },
    Final {
        utterance: u32,
        text: String,
        at: Instant,
    },
}

/// What one step (one T) measured.
#[derive(Default)]
struct Step {
    talkers: usize,
    background: usize,
    calls_set_up: usize,
    errors: Vec<String>,
    /// Sentences spoken, and the latency of each that got a final.
    sentences: usize,
    latencies: Vec<Duration>,
    /// Sentences the detector cut into more than one utterance, and utterances heard where
    /// no sentence was being said.
    split: usize,
    stray: usize,
    word_errors: usize,
    words: usize,
    speech_secs: f64,
    stt_cpu_secs: f64,
    cpu_pct: f64,
    bench_cpu_pct: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    /// Talkers' packets: sent by the bench, received by baton, lost by sequence number.
    talker_sent: u64,
    talker_in: u64,
    talker_lost: u64,
    /// All packets the bench sent that baton did not count in, and kernel drops on
    /// baton's sockets.
    lost_up: i64,
    drops_server: u64,
    late_sends: u64,
    listener_lag: usize,
    /// The pool's own timing of each final, from baton's log: waiting for a thread, and
    /// transcribing (ms).
    queued_ms: Vec<u64>,
    ran_ms: Vec<u64>,
    examples: Vec<String>,
    notes: Vec<String>,
    /// The load average when the last sentence ended.
    load: String,
    alive: bool,
}

impl Step {
    const HEADER: [&'static str; 15] = [
        "talkers",
        "background",
        "finals",
        "p50 ms",
        "p95 ms",
        "max ms",
        "queued p50/p95",
        "ran p50/p95",
        "RTF",
        "WER %",
        "baton CPU %",
        "RSS MiB",
        "talker RTP sent/in/lost",
        "lost up",
        "listener lag",
    ];

    /// The `q` quantile of the latencies; `Duration::MAX` when there are none.
    fn p(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::MAX;
        }
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    fn complete(&self) -> bool {
        self.alive
            && self.errors.is_empty()
            && self.calls_set_up == self.talkers + self.background
            && self.latencies.len() == self.sentences
    }

    fn row(&self) -> Vec<String> {
        let ms = |d: Duration| {
            if d == Duration::MAX {
                "–".to_owned()
            } else {
                format!("{:.0}", d.as_secs_f64() * 1000.0)
            }
        };
        vec![
            self.talkers.to_string(),
            self.background.to_string(),
            format!("{}/{}", self.latencies.len(), self.sentences),
            ms(self.p(0.5)),
            ms(self.p(0.95)),
            ms(self.p(1.0)),
            format!(
                "{}/{}",
                pick(&self.queued_ms, 0.5),
                pick(&self.queued_ms, 0.95)
            ),
            format!("{}/{}", pick(&self.ran_ms, 0.5), pick(&self.ran_ms, 0.95)),
            format!("{:.3}", self.rtf()),
            format!(
                "{:.1}",
                100.0 * self.word_errors as f64 / self.words.max(1) as f64
            ),
            format!("{:.1}", self.cpu_pct),
            format!("{:.0}", self.rss_peak_kib as f64 / 1024.0),
            format!(
                "{}/{}/{}",
                self.talker_sent, self.talker_in, self.talker_lost
            ),
            self.lost_up.to_string(),
            self.listener_lag.to_string(),
        ]
    }

    fn rtf(&self) -> f64 {
        self.stt_cpu_secs / self.speech_secs.max(0.001)
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "T={} B={}: set up {}, finals {}/{} (split {}, stray {}), end of speech → final \
             p50/p95/max {:.0}/{:.0}/{:.0} ms, stt threads {:.1} s CPU for {:.1} s of speech \
             (RTF {:.3}), {} word errors in {} words, baton CPU {:.1} % (bench {:.1} %), RSS {} → {} KiB, \
             talker RTP sent {} / in {} / lost {}, lost up {} (kernel drops at baton {}), \
             late sends {}, listener lag warnings {}, load average {}",
            self.talkers,
            self.background,
            self.calls_set_up,
            self.latencies.len(),
            self.sentences,
            self.split,
            self.stray,
            self.p(0.5).as_secs_f64() * 1000.0,
            self.p(0.95).as_secs_f64() * 1000.0,
            self.p(1.0).as_secs_f64() * 1000.0,
            self.stt_cpu_secs,
            self.speech_secs,
            self.rtf(),
            self.word_errors,
            self.words,
            self.cpu_pct,
            self.bench_cpu_pct,
            self.rss_before_kib,
            self.rss_peak_kib,
            self.talker_sent,
            self.talker_in,
            self.talker_lost,
            self.lost_up,
            self.drops_server,
            self.late_sends,
            self.listener_lag,
            self.load
        );
        if !self.alive {
            s.push_str("\n  baton exited during the run");
        }
        for e in self.errors.iter().take(5) {
            s.push_str(&format!("\n  error: {e}"));
        }
        for e in &self.examples {
            s.push_str(&format!("\n  heard: {e}"));
        }
        for n in &self.notes {
            s.push_str(&format!("\n  {n}"));
        }
        s
    }
}

/// One step: a fresh baton, T talking and B background calls, and what they measured.
fn run_step(dir: &Path, voice: &Arc<Voice>, talkers: usize, params: &Params) -> Step {
    let clips = &voice.clips;
    let background = params.background as usize;
    let n = talkers + background;
    let baton = Baton::start(dir, n as u32 + 100, SERVER_PORTS);
    let pid = baton.pid();
    let mut step = Step {
        talkers,
        background,
        ..Step::default()
    };
    thread::sleep(Duration::from_millis(300));
    step.rss_before_kib = rss_kib(pid);
    let metrics_before = baton.metrics();
    let drops_before = udp_drops(is_server_port);

    // Streams 0..talkers are the talkers, the rest the background calls.
    let sockets: Vec<UdpSocket> = (0..SENDERS).map(|_| rtp_socket()).collect();
    let offers: Vec<Offer> = (0..n)
        .map(|i| Offer {
            user: if i < talkers { "record" } else { "echo" }.to_owned(),
            rtp_port: sockets[i % SENDERS].local_addr().map_or(0, |a| a.port()),
        })
        .collect();
    let mut ua = Uac::new(
        UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket"),
        baton.sip,
    );
    let calls = ua.set_up(
        &offers,
        Instant::now() + Duration::from_secs(30 + n as u64 / 50),
        |_, _| {},
    );
    step.calls_set_up = calls.iter().flatten().count();
    step.errors.append(&mut ua.errors);
    let ids = api_ids(baton.http, &calls[..talkers]);
    let unknown = calls[..talkers]
        .iter()
        .zip(&ids)
        .filter(|(c, id)| c.is_some() && id.is_none())
        .count();
    if unknown > 0 {
        step.errors
            .push(format!("{unknown} talker calls missing from GET /v1/calls"));
    }

    // Listen before anyone speaks.
    let stop_events = Arc::new(AtomicBool::new(false));
    let (heard_tx, heard_rx) = mpsc::channel::<(usize, Heard)>();
    let listeners: Vec<_> = ids
        .iter()
        .enumerate()
        .filter_map(|(k, id)| Some((k, id.clone()?)))
        .map(|(k, id)| {
            let (http, stop, tx) = (baton.http, stop_events.clone(), heard_tx.clone());
            thread::spawn(move || follow_events(http, &id, k, &stop, &tx))
        })
        .collect();
    drop(heard_tx);

    let scripts = Arc::new(scripts(clips, talkers, params));
    let speech_end = scripts
        .iter()
        .map(|s| s.end_round(clips))
        .max()
        .unwrap_or(0);
    // RTP goes on while finals are awaited, so that no call times out for silence.
    let rounds = speech_end + (params.wait + QUIET).as_millis() as u64 / PTIME.as_millis() as u64;
    let stop_rtp = Arc::new(AtomicBool::new(false));
    let drains: Vec<_> = sockets
        .iter()
        .map(|s| {
            let (sock, stop) = (s.try_clone().expect("clone RTP socket"), stop_rtp.clone());
            thread::spawn(move || drain(&sock, &stop))
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(200);
    let senders: Vec<_> = (0..SENDERS)
        .map(|w| {
            let mine: Vec<Paced> = calls
                .iter()
                .enumerate()
                .filter(|(i, _)| i % SENDERS == w)
                .filter_map(|(i, c)| {
                    c.as_ref().map(|d| Paced {
                        index: i,
                        dest: d.media,
                        phase: PTIME * i as u32 / n as u32,
                    })
                })
                .collect();
            let sock = sockets[w].try_clone().expect("clone RTP socket");
            let (scripts, voice, stop) = (scripts.clone(), voice.clone(), stop_rtp.clone());
            thread::spawn(move || send(&sock, &mine, start, rounds, &stop, &scripts, &voice))
        })
        .collect();

    let talk_start = start + params.warmup;
    let talk_end = start + PTIME * speech_end as u32;
    let mut heard: Vec<Vec<Heard>> = (0..talkers).map(|_| Vec::new()).collect();
    let window = Window {
        start: talk_start,
        end: talk_end,
        give_up: talk_end + params.wait,
        turns: params.turns,
    };
    talk(&baton, &mut ua, &heard_rx, &mut heard, &window, &mut step);
    stop_rtp.store(true, Ordering::Relaxed);
    let mut spoken = BTreeMap::new();
    let mut sent = 0;
    for s in senders {
        let Ok((count, marks)) = s.join() else {
            continue;
        };
        sent += count.sent;
        step.late_sends += count.late;
        step.talker_sent += marks.talker_sent;
        spoken.extend(marks.spoken);
    }
    for d in drains {
        let _ = d.join();
    }

    // Hang up, then read what baton counted.
    thread::sleep(Duration::from_millis(300));
    ua.tear_down(
        &calls,
        Instant::now() + Duration::from_secs(30 + n as u64 / 50),
    );
    step.errors.append(&mut ua.errors);
    stop_events.store(true, Ordering::Relaxed);
    for l in listeners {
        if let Ok(Err(e)) = l.join() {
            step.errors.push(e);
        }
    }
    while let Ok((k, h)) = heard_rx.try_recv() {
        heard[k].push(h);
    }
    let end_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end_deadline && baton.alive() {
        if metric(&baton.metrics(), "baton_active_calls ") == 0.0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    step.alive = baton.alive();
    if !step.alive {
        return step;
    }
    score(&mut step, clips, &scripts, &spoken, &heard);
    for id in ids.iter().flatten() {
        let call = http_get(baton.http, &format!("/v1/calls/{id}"))
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).map_err(|e| e.to_string()));
        match call {
            Ok(call) => {
                let count = |k: &str| call["media"][k].as_u64().unwrap_or(0);
                step.talker_in += count("packets_in");
                step.talker_lost += count("lost");
            }
            Err(e) => step.errors.push(format!("call {id} after the run: {e}")),
        }
    }
    let after = baton.metrics();
    let series = "baton_rtp_packets_total{direction=\"in\"}";
    step.lost_up = sent as i64 - (metric(&after, series) - metric(&metrics_before, series)) as i64;
    step.drops_server = udp_drops(is_server_port).saturating_sub(drops_before);
    let log = std::fs::read_to_string(&baton.log).unwrap_or_default();
    step.listener_lag = log.matches("speech listener fell behind").count();
    (step.queued_ms, step.ran_ms) = pool_times(&log);
    step.notes = baton
        .log_problems(5)
        .into_iter()
        .map(|p| format!("baton log: {p}"))
        .collect();
    // The record plan records every talker: megabytes a step that nothing reads.
    let _ = std::fs::remove_dir_all(dir.join("data").join("recordings"));
    step
}

/// The talking part of a step: when it starts and ends, and how long finals are awaited.
struct Window {
    start: Instant,
    end: Instant,
    give_up: Instant,
    /// Sentences per talker.
    turns: usize,
}

/// Serves SIP and follows baton's CPU and memory while the talkers speak, and collects
/// what their listeners hear until every utterance has its final, finals stop coming, or
/// the window gives up.
fn talk(
    baton: &Baton,
    ua: &mut Uac,
    heard_rx: &mpsc::Receiver<(usize, Heard)>,
    heard: &mut [Vec<Heard>],
    window: &Window,
    step: &mut Step,
) {
    let pid = baton.pid();
    let mut last_final = window.end;
    let mut before = None;
    let mut usage = None;
    loop {
        let now = Instant::now();
        if before.is_none() && now >= window.start {
            before = Some((
                cpu_secs(pid),
                cpu_secs(std::process::id()),
                stt_cpu_secs(pid),
            ));
        }
        if let (Some((cpu, bench, _)), None) = (before, usage) {
            step.rss_peak_kib = step.rss_peak_kib.max(rss_kib(pid));
            if now >= window.end {
                let secs = now.duration_since(window.start).as_secs_f64();
                usage = Some((
                    (cpu_secs(pid) - cpu) / secs * 100.0,
                    (cpu_secs(std::process::id()) - bench) / secs * 100.0,
                ));
                step.load = common::load_average();
            }
        }
        while let Ok((k, h)) = heard_rx.try_recv() {
            if let Heard::Final { at, .. } = h {
                last_final = last_final.max(at);
            }
            heard[k].push(h);
        }
        let all_in = heard.iter().all(|h| {
            let (starts, finals) = counts(h);
            finals >= window.turns && finals >= starts
        });
        let done = now >= window.end && (all_in || now.duration_since(last_final) >= QUIET);
        if done || now >= window.give_up || !baton.alive() {
            break;
        }
        ua.serve_requests(Duration::from_millis(50));
    }
    step.stt_cpu_secs = before.map_or(0.0, |(_, _, stt)| stt_cpu_secs(pid) - stt);
    (step.cpu_pct, step.bench_cpu_pct) = usage.unwrap_or_default();
}

/// Who says what when: talker k starts `k / talkers` of a sentence-and-gap cycle after the
/// warm-up, so that ends of speech spread evenly, and says a different sentence each turn.
fn scripts(clips: &[Clip], talkers: usize, params: &Params) -> Vec<Script> {
    let ptime = PTIME.as_millis() as u64;
    let mean = clips.iter().map(|c| c.packets.len() as u64).sum::<u64>() / clips.len() as u64;
    let gap = params.gap.as_millis() as u64 / ptime;
    let cycle = mean + gap;
    (0..talkers)
        .map(|k| {
            let mut round =
                params.warmup.as_millis() as u64 / ptime + cycle * k as u64 / talkers as u64;
            let turns = (0..params.turns)
                .map(|r| {
                    let sentence = (k * 5 + r) % clips.len();
                    let turn = (sentence, round);
                    round += clips[sentence].packets.len() as u64 + gap;
                    turn
                })
                .collect();
            Script { turns }
        })
        .collect()
}

/// What a sending thread noted about the talkers.
#[derive(Default)]
struct Marks {
    /// By (talker, turn).
    spoken: BTreeMap<(usize, usize), Spoken>,
    talker_sent: u64,
}

/// Paces `streams`: talkers (index below `scripts.len()`) say their script, the others
/// send the tone.
fn send(
    sock: &UdpSocket,
    streams: &[Paced],
    start: Instant,
    rounds: u64,
    stop: &AtomicBool,
    scripts: &[Script],
    voice: &Voice,
) -> (rtp::PaceCount, Marks) {
    let tone = tone();
    let mut marks = Marks::default();
    let count = pace(
        sock,
        streams,
        start,
        rounds,
        stop,
        |index, round, payload| {
            let Some(script) = scripts.get(index) else {
                payload.copy_from_slice(&tone);
                return;
            };
            marks.talker_sent += 1;
            let Some((audio, turn, edge)) = script.packet(&voice.clips, round) else {
                payload.copy_from_slice(&voice.quiet[round as usize % voice.quiet.len()]);
                return;
            };
            payload.copy_from_slice(audio);
            let now = Instant::now();
            match edge {
                Edge::Start => {
                    marks.spoken.insert(
                        (index, turn),
                        Spoken {
                            start: now,
                            end: now,
                        },
                    );
                }
                Edge::End => {
                    if let Some(s) = marks.spoken.get_mut(&(index, turn)) {
                        s.end = now;
                    }
                }
                Edge::Inside => {}
            }
        },
    );
    (count, marks)
}

/// Reads and drops what baton sends, so that its packets do not pile up in the kernel.
fn drain(sock: &UdpSocket, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 2048];
    // Bounded: the step's own deadlines stop it long before this.
    let give_up = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        let _ = sock.recv_from(&mut buf);
    }
}

/// Follows one call's event stream until the call ends or `stop` is set, sending each
/// `speech_started` and final transcript, stamped on arrival, to `heard`.
fn follow_events(
    http: SocketAddr,
    id: &str,
    talker: usize,
    stop: &AtomicBool,
    heard: &mpsc::Sender<(usize, Heard)>,
) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2))
        .map_err(|e| format!("events of {id}: connect {http}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the body simply ends with the call, with no chunked framing to undo.
    write!(
        s,
        "GET /v1/calls/{id}/events HTTP/1.0\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .map_err(|e| format!("events of {id}: {e}"))?;
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut in_body = false;
    // Bounded: the step's own deadlines stop it long before this.
    let give_up = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        // A read that times out keeps what it read of the line; the next one goes on.
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => return Err(format!("events of {id}: {e}")),
        }
        let at = Instant::now();
        if !in_body {
            if line.starts_with("HTTP/") && !line.contains(" 200") {
                return Err(format!("events of {id}: {}", line.trim()));
            }
            in_body = line.trim().is_empty();
        } else if let Some(data) = line.strip_prefix("data:") {
            let v: serde_json::Value = serde_json::from_str(data.trim())
                .map_err(|e| format!("events of {id}: {e} in {data:?}"))?;
            let utterance = v["utterance"].as_u64().unwrap_or(0) as u32;
            let event = match v["type"].as_str() {
                Some("speech_started") => Some(Heard::Started { utterance, at }),
                Some("transcript") if v["final"] == true => Some(Heard::Final {
                    utterance,
                    text: v["text"].as_str().unwrap_or_default().to_owned(),
                    at,
                }),
                _ => None,
            };
            if let Some(e) = event {
                let _ = heard.send((talker, e));
            }
        }
        line.clear();
    }
    Ok(())
}

/// Utterances started and finals heard so far on one call.
fn counts(heard: &[Heard]) -> (usize, usize) {
    heard.iter().fold((0, 0), |(s, f), h| match h {
        Heard::Started { .. } => (s + 1, f),
        Heard::Final { .. } => (s, f + 1),
    })
}

/// Matches what each talker's listener heard to the sentences it said: an utterance
/// belongs to the sentence being said when it started, and a sentence's latency runs from
/// its end of speech to the final of its last utterance.
fn score(
    step: &mut Step,
    clips: &[Clip],
    scripts: &[Script],
    spoken: &BTreeMap<(usize, usize), Spoken>,
    heard: &[Vec<Heard>],
) {
    step.sentences = spoken.len();
    step.speech_secs = spoken
        .keys()
        .map(|&(k, turn)| clips[scripts[k].turns[turn].0].secs())
        .sum();
    for (k, events) in heard.iter().enumerate() {
        let said: Vec<(usize, Spoken)> = spoken
            .range((k, 0)..(k + 1, 0))
            .map(|(&(_, turn), &s)| (turn, s))
            .collect();
        let mut utterances: Vec<Vec<u32>> = vec![Vec::new(); said.len()];
        let mut finals: BTreeMap<u32, (&str, Instant)> = BTreeMap::new();
        for e in events {
            match e {
                Heard::Started { utterance, at } => {
                    match said.iter().rposition(|(_, s)| s.start <= *at) {
                        Some(j) => utterances[j].push(*utterance),
                        None => step.stray += 1,
                    }
                }
                Heard::Final {
                    utterance,
                    text,
                    at,
                } => {
                    finals.insert(*utterance, (text.as_str(), *at));
                }
            }
        }
        for ((turn, s), us) in said.iter().zip(&utterances) {
            step.split += us.len().saturating_sub(1);
            let reference = clips[scripts[k].turns[*turn].0].text;
            let texts: Vec<&str> = us
                .iter()
                .filter_map(|u| finals.get(u).map(|f| f.0))
                .collect();
            let hypothesis = texts.join(" ");
            step.words += words(reference).len();
            step.word_errors += word_errors(reference, &hypothesis);
            if let Some((_, at)) = us.iter().rev().find_map(|u| finals.get(u)) {
                step.latencies.push(at.saturating_duration_since(s.end));
            }
            if k == 0 {
                step.examples
                    .push(format!("{reference:?} → {hypothesis:?}"));
            }
        }
    }
}

/// The `q` quantile of sorted milliseconds, as text (`–` when there are none).
fn pick(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "–".to_owned();
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].to_string()
}

/// CPU time of baton's transcription threads (`stt-N`, one whisper job at a time each), in
/// seconds.
fn stt_cpu_secs(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| stat.contains("(stt-"))
        .map(|stat| common::stat_cpu_secs(&stat))
        .sum()
}

fn is_server_port(port: u16) -> bool {
    (SERVER_PORTS.0..=SERVER_PORTS.1).contains(&port)
}
