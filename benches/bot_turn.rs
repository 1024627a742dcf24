//! Bot turn latency through real SIP calls to the shipped bank bot: per caller answer, the
//! time from the end of the caller's speech to the first RTP packet of the bot's spoken
//! reply.
//!
//! The bench is the caller. It calls `bank` from +441234567890 (so the bot knows the
//! customer) over its own SIP/UDP user agent, sends one 20 ms PCMU packet every 20 ms for
//! the whole call (digital silence between answers) and reads baton's RTP back. A packet
//! from baton louder than the speech floor is the bot speaking; once the bot has been quiet
//! for `BENCH_BOT_QUIET_MS`, its question is over and the bench says the next of the six
//! answers of the end-to-end bank test (espeak-ng, `-v en-us -s 150`, encoded to 8 kHz
//! µ-law by baton's own encoder, leading and trailing silence cut). A turn's latency runs
//! from the moment the answer's last packet left to the arrival of the first loud packet
//! after it. The call's context events (stamped by baton's clock, which is this machine's)
//! split each turn into end of speech → the caller's final transcript → the bot's line in
//! the context (written once its speech is rendered) → the first packet; baton's log gives
//! each transcription's and each speech render's own time.
//!
//! Rounds: `BENCH_BOT_CALLS` calls one after another (default 3; the first renders every
//! prompt, later ones find them in the speech cache), then `BENCH_BOT_CONCURRENT` calls at
//! once (default 3; 0 skips it), all on one baton. A round that could not finish within
//! `BENCH_BOT_BUDGET_SECS` of the start (default 300) is skipped. Other parameters:
//! `BENCH_BOT_REPLY_SECS` (the longest wait for a reply, default 10). Needs `make model`,
//! espeak-ng and sox.

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "common/rtp.rs"]
mod rtp;
#[path = "../crates/speech/tests/common/mod.rs"]
mod spoken;
#[path = "common/talk.rs"]
mod talk;
#[path = "common/uac.rs"]
mod uac;

use baton_speech::vad::VadConfig;
use common::{env_or, http_get, print_table, Baton};
use rtp::{pace, rtp_socket, Paced, PTIME};
use serde_json::Value;
use spoken::{speak, EN_US};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use talk::{api_ids, log_field, loud, pcmu_packets, pool_times, strip_ansi, Packet, ULAW_SILENCE};
use uac::{Offer, Uac};

/// What the caller says, in order: the conversation of the end-to-end bank test.
static ANSWERS: LazyLock<Vec<&str>> = LazyLock::new(|| {
    include_str!("../tests/data/bank-answers.txt")
        .lines()
        .collect()
});
/// The customer's number in dialplans/customers.json.
const CALLER: &str = "+441234567890";
/// Where baton takes RTP ports.
const SERVER_PORTS: (u16, u16) = (61000, 61999);
/// The median the bot's turns should meet.
const GOAL: Duration = Duration::from_millis(600);
/// Baton has hung up (or died) when it has sent nothing for this long.
const SILENT_LINE: Duration = Duration::from_secs(3);
/// The longest one conversation may take, greeting to goodbye.
const CALL_LIMIT: Duration = Duration::from_secs(150);
/// What a conversation is expected to take, to judge whether a round still fits the budget
/// before any has run.
const CALL_GUESS: Duration = Duration::from_secs(70);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let params = Arc::new(Params {
        calls: env_or("BENCH_BOT_CALLS", 3),
        concurrent: env_or("BENCH_BOT_CONCURRENT", 3),
        quiet: Duration::from_millis(env_or("BENCH_BOT_QUIET_MS", 600)),
        reply_wait: Duration::from_secs(env_or("BENCH_BOT_REPLY_SECS", 10)),
        budget: Duration::from_secs(env_or("BENCH_BOT_BUDGET_SECS", 300)),
    });
    let began = Instant::now();
    println!(
        "command: BENCH_BOT_CALLS={} BENCH_BOT_CONCURRENT={} BENCH_BOT_QUIET_MS={} \
         cargo bench --bench bot_turn",
        params.calls,
        params.concurrent,
        params.quiet.as_millis()
    );
    println!(
        "machine: {} (nproc {})",
        common::machine(),
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let dir = common::run_dir("bot-turn");
    let answers: Arc<Vec<Vec<Packet>>> = Arc::new(
        ANSWERS
            .iter()
            .enumerate()
            .map(|(i, text)| pcmu_packets(&speak(&dir, &format!("answer-{i}"), EN_US, text)))
            .collect(),
    );
    // Each speech render's time is a debug line of baton's text-to-speech module.
    if std::env::var_os("BATON_LOG").is_none() {
        std::env::set_var("BATON_LOG", "info,baton::tts=debug");
    }
    let baton = Baton::start(&dir, 50, SERVER_PORTS);
    let hangover = PTIME * VadConfig::default().hangover_frames as u32;
    println!(
        "answers {:.1} s of speech in all; bot's question over after {} ms of quiet; VAD \
         hangover {} ms; work dir {}",
        answers
            .iter()
            .map(|a| a.len() as f64 * PTIME.as_secs_f64())
            .sum::<f64>(),
        params.quiet.as_millis(),
        hangover.as_millis(),
        dir.display()
    );
    let clock = Clock::new();
    let mut rounds: Vec<(String, usize)> = (0..params.calls)
        .map(|i| (format!("1 at a time, call {}", i + 1), 1))
        .collect();
    if params.concurrent > 0 {
        rounds.push((format!("{} at once", params.concurrent), params.concurrent));
    }
    let mut batches: Vec<Batch> = Vec::new();
    let mut longest = CALL_GUESS;
    for (name, n) in rounds {
        if began.elapsed() + longest > params.budget {
            println!("{name}: skipped, it would not end within the budget");
            continue;
        }
        let t0 = Instant::now();
        let batch = run_batch(&baton, &answers, &clock, &params, &name, n);
        longest = longest.max(t0.elapsed());
        println!("{}", batch.summary());
        batches.push(batch);
        if !baton.alive() {
            println!("baton exited");
            break;
        }
    }
    report(&batches, &params, &VadConfig::default());
    for p in baton.log_problems(5) {
        println!("baton log: {p}");
    }
    println!(
        "took {:.0} s; load average after the run: {}",
        began.elapsed().as_secs_f64(),
        common::load_average()
    );
}

/// The run's settings.
struct Params {
    calls: usize,
    concurrent: usize,
    quiet: Duration,
    reply_wait: Duration,
    budget: Duration,
}

/// Turns the bench's instants into this machine's wall clock, which stamps baton's events.
struct Clock {
    instant: Instant,
    epoch_ms: f64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            instant: Instant::now(),
            epoch_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        }
    }

    /// `at` in milliseconds since the Unix epoch.
    fn ms(&self, at: Instant) -> f64 {
        self.epoch_ms + at.duration_since(self.instant).as_secs_f64() * 1000.0
    }
}

/// What a call's sender and listener share.
#[derive(Default)]
struct Line {
    /// The answer to say next, set by the listener once the bot's question is over.
    due: Option<usize>,
    /// When each answer said so far had its first and its last packet leave.
    said: Vec<(Instant, Instant)>,
}

/// The shared line; a panic on the other side leaves it usable.
fn lock(line: &Mutex<Line>) -> MutexGuard<'_, Line> {
    line.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a call's listener heard of the bot.
#[derive(Default)]
struct Heard {
    /// The first loud packet after each answer, by answer.
    replies: Vec<Option<Instant>>,
    /// Answers during which the bot was heard speaking: their turns are not clean.
    overlapped: Vec<usize>,
    /// The bot's goodbye was heard to its end.
    finished: bool,
    error: Option<String>,
}

/// Where a call's listener is in the conversation.
#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for the bot to speak after `answers` answers, the last one ended at `since`.
    Reply { answers: usize, since: Instant },
    /// The bot is speaking; its last loud packet came at `last_loud`.
    Speaking { answers: usize, last_loud: Instant },
    /// The bench is saying answer `k`.
    Answering(usize),
}

/// The payload of a PCMU RTP packet.
fn pcmu_payload(pkt: &[u8]) -> Option<&[u8]> {
    if pkt.len() < 12 || pkt[0] >> 6 != 2 || pkt[1] & 0x7f != 0 {
        return None;
    }
    let mut head = 12 + 4 * usize::from(pkt[0] & 0x0f);
    if pkt[0] & 0x10 != 0 {
        let words = pkt.get(head + 2..head + 4)?;
        head += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    pkt.get(head..)
}

/// Reads baton's RTP for one call and runs the caller's side of the conversation: hears the
/// bot's questions end, asks the sender for the next answer, and notes when each reply
/// starts.
fn listen(sock: &UdpSocket, line: &Mutex<Line>, stop: &AtomicBool, params: &Params) -> Heard {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(20)));
    let mut heard = Heard {
        replies: vec![None; ANSWERS.len()],
        ..Heard::default()
    };
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    let mut phase = Phase::Reply {
        answers: 0,
        since: started,
    };
    let mut last_packet = started;
    loop {
        let got = sock.recv_from(&mut buf);
        let at = Instant::now();
        if stop.load(Ordering::Relaxed) || at.duration_since(started) > CALL_LIMIT {
            heard.error = Some("stopped before the goodbye".to_owned());
            return heard;
        }
        if let Phase::Answering(k) = phase {
            if let Some(&(_, end)) = lock(line).said.get(k) {
                phase = Phase::Reply {
                    answers: k + 1,
                    since: end,
                };
            }
        }
        let payload = match got {
            Ok((len, _)) => pcmu_payload(&buf[..len]),
            Err(_) => None,
        };
        let Some(payload) = payload else {
            if at.duration_since(last_packet) > SILENT_LINE {
                // Baton hangs up as soon as the goodbye has played, before the quiet that
                // ends any other question.
                match phase {
                    Phase::Speaking { answers, .. } if answers == ANSWERS.len() => {
                        heard.finished = true;
                    }
                    _ => heard.error = Some("baton stopped sending".to_owned()),
                }
                return heard;
            }
            continue;
        };
        last_packet = at;
        let is_loud = loud(payload);
        match phase {
            Phase::Answering(k) => {
                if is_loud && !heard.overlapped.contains(&k) {
                    heard.overlapped.push(k);
                }
            }
            Phase::Reply { answers, since } => {
                if is_loud {
                    if answers > 0 {
                        heard.replies[answers - 1] = Some(at);
                    }
                    phase = Phase::Speaking {
                        answers,
                        last_loud: at,
                    };
                } else if at.duration_since(since) > params.reply_wait {
                    heard.error = Some(format!(
                        "no reply within {} s to answer {answers}",
                        params.reply_wait.as_secs()
                    ));
                    return heard;
                }
            }
            Phase::Speaking { answers, last_loud } => {
                if is_loud {
                    phase = Phase::Speaking {
                        answers,
                        last_loud: at,
                    };
                } else if at.duration_since(last_loud) >= params.quiet {
                    if answers == ANSWERS.len() {
                        heard.finished = true;
                        return heard;
                    }
                    lock(line).due = Some(answers);
                    phase = Phase::Answering(answers);
                }
            }
        }
    }
}

/// Sends the call's RTP: digital silence, and each answer once the listener asks for it,
/// noting when its first and last packet leave.
fn send(
    sock: &UdpSocket,
    dest: SocketAddr,
    answers: &[Vec<Packet>],
    line: &Mutex<Line>,
    stop: &AtomicBool,
) -> rtp::PaceCount {
    let stream = [Paced {
        index: 0,
        dest,
        phase: Duration::ZERO,
    }];
    let rounds = CALL_LIMIT.as_millis() as u64 / PTIME.as_millis() as u64;
    // (answer, its first round, when its first packet left)
    let mut current: Option<(usize, u64, Instant)> = None;
    pace(
        sock,
        &stream,
        Instant::now(),
        rounds,
        stop,
        |_, round, payload| {
            if current.is_none() {
                if let Some(k) = lock(line).due.take() {
                    current = Some((k, round, Instant::now()));
                }
            }
            let Some((k, first, began)) = current else {
                payload.fill(ULAW_SILENCE);
                return;
            };
            let packets = &answers[k];
            let i = (round - first) as usize;
            payload.copy_from_slice(&packets[i]);
            if i + 1 == packets.len() {
                lock(line).said.push((began, Instant::now()));
                current = None;
            }
        },
    )
}

/// One of the bot's turns: a caller answer and the bot's reply.
struct Turn {
    batch: String,
    call: usize,
    answer: usize,
    /// End of the answer's speech → first packet of the reply.
    latency: Option<Duration>,
    /// The bot was heard while the answer was being said.
    overlapped: bool,
    /// End of speech → the caller's final transcript in the context (ms).
    to_final: Option<f64>,
    /// End of speech → the bot's line in the context (ms).
    to_line: Option<f64>,
    /// The final's transcription: waiting for a pool thread, and running (ms).
    stt: Option<(u64, u64)>,
    heard: String,
    said: String,
}

/// One batch of calls placed at once, and what they measured.
struct Batch {
    name: String,
    calls: usize,
    completed: usize,
    turns: Vec<Turn>,
    errors: Vec<String>,
    /// Transcription pool: waits and runs of each final (ms, sorted).
    stt_queued: Vec<u64>,
    stt_ran: Vec<u64>,
    /// Each speech render's time (ms, sorted); cached prompts are not rendered.
    renders: Vec<f64>,
    late_sends: u64,
    load: String,
}

impl Batch {
    fn summary(&self) -> String {
        let lat = latencies(self.turns.iter());
        let mut s = format!(
            "{}: {}/{} conversations completed, {} turns measured, p50/p95/max {}/{}/{} ms, \
             transcription queued p95 {} ms and ran p50 {} ms, {} speech renders (p50 {}), {} late sends, load {}",
            self.name,
            self.completed,
            self.calls,
            lat.len(),
            ms(quantile(&lat, 0.5)),
            ms(quantile(&lat, 0.95)),
            ms(quantile(&lat, 1.0)),
            pick(&self.stt_queued, 0.95),
            pick(&self.stt_ran, 0.5),
            self.renders.len(),
            ms(quantile(&self.renders, 0.5)),
            self.late_sends,
            self.load
        );
        for e in self.errors.iter().take(5) {
            s.push_str(&format!("\n  error: {e}"));
        }
        s
    }
}

/// Places `n` calls at once, runs every conversation to its goodbye, and matches what was
/// heard to the calls' context events.
fn run_batch(
    baton: &Baton,
    answers: &Arc<Vec<Vec<Packet>>>,
    clock: &Clock,
    params: &Arc<Params>,
    name: &str,
    n: usize,
) -> Batch {
    let log_from = std::fs::metadata(&baton.log).map_or(0, |m| m.len());
    let mut batch = Batch {
        name: name.to_owned(),
        calls: n,
        completed: 0,
        turns: Vec::new(),
        errors: Vec::new(),
        stt_queued: Vec::new(),
        stt_ran: Vec::new(),
        renders: Vec::new(),
        late_sends: 0,
        load: common::load_average(),
    };
    let sockets: Vec<UdpSocket> = (0..n).map(|_| rtp_socket()).collect();
    let offers: Vec<Offer> = sockets
        .iter()
        .map(|s| Offer {
            user: "bank".to_owned(),
            rtp_port: s.local_addr().map_or(0, |a| a.port()),
        })
        .collect();
    let mut ua = Uac::new(
        UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket"),
        baton.sip,
    );
    ua.from_user = CALLER.to_owned();
    let calls = ua.set_up(&offers, Instant::now() + Duration::from_secs(15), |_, _| {});
    let ids = api_ids(baton.http, &calls);
    let stop = Arc::new(AtomicBool::new(false));
    let mut running = Vec::new();
    for (k, call) in calls.iter().enumerate() {
        let Some(call) = call else { continue };
        let line = Arc::new(Mutex::new(Line::default()));
        let (sock, dest) = (
            sockets[k].try_clone().expect("clone RTP socket"),
            call.media,
        );
        let (answers, l, s) = (answers.clone(), line.clone(), stop.clone());
        let sender = thread::spawn(move || send(&sock, dest, &answers, &l, &s));
        let sock = sockets[k].try_clone().expect("clone RTP socket");
        let (l, s, p) = (line.clone(), stop.clone(), params.clone());
        let listener = thread::spawn(move || listen(&sock, &l, &s, &p));
        running.push((k, line, sender, listener));
    }
    // Serve SIP (baton's BYE after the goodbye) until every listener is done and baton has
    // hung up, or a little after.
    let give_up = Instant::now() + CALL_LIMIT + Duration::from_secs(5);
    let mut all_heard: Option<Instant> = None;
    while Instant::now() < give_up {
        ua.serve_requests(Duration::from_millis(50));
        if all_heard.is_none() && running.iter().all(|r| r.3.is_finished()) {
            all_heard = Some(Instant::now());
        }
        let hung_up = calls
            .iter()
            .flatten()
            .all(|c| ua.hung_up.contains(&c.call_id));
        if all_heard.is_some_and(|at| hung_up || at.elapsed() > SILENT_LINE) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for (k, line, sender, listener) in running {
        let count = sender.join().unwrap_or_default();
        batch.late_sends += count.late;
        let heard = listener.join().unwrap_or_default();
        let said = std::mem::take(&mut lock(&line).said);
        outcomes.push((k, heard, said));
    }
    let standing: Vec<Option<uac::Dialog>> = calls
        .into_iter()
        .map(|c| c.filter(|c| !ua.hung_up.contains(&c.call_id)))
        .collect();
    ua.tear_down(&standing, Instant::now() + Duration::from_secs(10));
    batch.errors.extend(
        ua.errors
            .drain(..)
            .filter(|e| !e.starts_with("baton hung up")),
    );

    let log = std::fs::read(&baton.log).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(log_from as usize..).unwrap_or_default());
    let stt = transcriptions(&log);
    for (k, heard, said) in outcomes {
        let call_no = k + 1;
        if let Some(e) = &heard.error {
            batch.errors.push(format!("call {call_no}: {e}"));
        }
        let Some(id) = &ids[k] else {
            batch
                .errors
                .push(format!("call {call_no}: not in GET /v1/calls"));
            continue;
        };
        let events = http_get(
            baton.http,
            &format!("/v1/calls/{id}/context/events?since=0"),
        )
        .and_then(|b| serde_json::from_str::<Value>(&b).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| {
            batch.errors.push(format!("call {call_no} events: {e}"));
            Value::Null
        });
        let lines = transcript(&events);
        let blocked = events
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["change"]["op"] == "action" && e["change"]["name"] == "card_blocked");
        if heard.finished && blocked {
            batch.completed += 1;
        } else if heard.finished {
            batch
                .errors
                .push(format!("call {call_no}: the card was not blocked"));
        }
        for (a, &(start, end)) in said.iter().enumerate() {
            let next = said.get(a + 1).map_or(f64::MAX, |&(s, _)| clock.ms(s));
            let reply = heard.replies.get(a).copied().flatten();
            let (start, end) = (clock.ms(start), clock.ms(end));
            let final_line = lines
                .iter()
                .find(|l| l.caller && l.at >= start && l.at < next);
            let bot_lines: Vec<&Said> = lines
                .iter()
                .filter(|l| !l.caller && l.at >= start && l.at < next)
                .collect();
            batch.turns.push(Turn {
                batch: name.to_owned(),
                call: call_no,
                answer: a,
                latency: reply
                    .map(|r| Duration::from_secs_f64((clock.ms(r) - end).max(0.0) / 1000.0)),
                overlapped: heard.overlapped.contains(&a),
                to_final: final_line.map(|l| l.at - end),
                to_line: bot_lines.first().map(|l| l.at - end),
                stt: final_line.and_then(|l| stt.get(&(id.clone(), l.utterance)).copied()),
                heard: final_line.map_or(String::new(), |l| l.text.clone()),
                said: bot_lines
                    .iter()
                    .map(|l| l.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        }
    }
    (batch.stt_queued, batch.stt_ran) = pool_times(&log);
    batch.renders = render_times(&log);
    batch
}

/// A final line of the call's transcript and when it entered the context.
struct Said {
    caller: bool,
    utterance: u64,
    text: String,
    /// Milliseconds since the Unix epoch.
    at: f64,
}

/// The final caller and bot lines among a call's context events, in order.
fn transcript(events: &Value) -> Vec<Said> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["change"]["op"] == "transcript" && e["change"]["final"] == true)
        .filter_map(|e| {
            let c = &e["change"];
            let caller = match c["speaker"].as_str()? {
                "caller" => true,
                "bot" => false,
                _ => return None,
            };
            Some(Said {
                caller,
                utterance: c["utterance"].as_u64().unwrap_or(0),
                text: c["text"].as_str().unwrap_or_default().to_owned(),
                at: e["at_ms"].as_f64()?,
            })
        })
        .collect()
}

/// Each final's transcription, waiting and running (ms), by the call's API id and the
/// utterance, from the `caller said` lines of baton's log.
fn transcriptions(log: &str) -> HashMap<(String, u64), (u64, u64)> {
    log.lines()
        .filter(|l| l.contains("caller said"))
        .filter_map(|l| {
            let plain = strip_ansi(l);
            let (_, rest) = plain.split_once("call{call=")?;
            let id = rest.split('}').next()?.to_owned();
            let utterance = log_field(&plain, " utterance=")?;
            let queued = log_field(&plain, " queued_ms=")?;
            let ran = log_field(&plain, " ran_ms=")?;
            Some(((id, utterance), (queued, ran)))
        })
        .collect()
}

/// The time of each speech render in baton's log (`speech rendered took=...`), in ms, sorted.
fn render_times(log: &str) -> Vec<f64> {
    let mut out: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("speech rendered"))
        .filter_map(|l| {
            let plain = strip_ansi(l);
            let (_, rest) = plain.split_once("took=")?;
            let value = rest.split_whitespace().next()?;
            let digits = value.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
            let n: f64 = digits.parse().ok()?;
            let scale = match &value[digits.len()..] {
                "s" => 1000.0,
                "ms" => 1.0,
                "µs" | "us" => 0.001,
                "ns" => 0.000_001,
                _ => return None,
            };
            Some(n * scale)
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

/// The clean turns' latencies in ms, sorted.
fn latencies<'a>(turns: impl Iterator<Item = &'a Turn>) -> Vec<f64> {
    let mut v: Vec<f64> = turns
        .filter(|t| !t.overlapped)
        .filter_map(|t| t.latency)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The `q` quantile of sorted values (nearest rank), `None` when there are none.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// The `q` quantile of sorted milliseconds, as text.
fn pick(sorted: &[u64], q: f64) -> String {
    if sorted.is_empty() {
        return "–".to_owned();
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].to_string()
}

/// Milliseconds as text, `–` for none.
fn ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.0}"))
}

/// The median of some per-turn figure over `turns`.
fn median<'a>(turns: &[&'a Turn], f: impl Fn(&'a Turn) -> Option<f64>) -> Option<f64> {
    let mut v: Vec<f64> = turns.iter().filter_map(|&t| f(t)).collect();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

/// The tables: latency and its split per group of calls, per answer, and the slowest turns.
fn report(batches: &[Batch], params: &Params, vad: &VadConfig) {
    let hangover = PTIME * vad.hangover_frames as u32;
    // The early final starts this long into the pause; by the hangover's end it has had
    // the rest.
    let head_start = PTIME * (vad.hangover_frames - vad.preroll_frames) as u32;
    let all: Vec<&Turn> = batches.iter().flat_map(|b| &b.turns).collect();
    let clean: Vec<&Turn> = all.iter().copied().filter(|t| !t.overlapped).collect();
    // The first call renders every prompt; the others play them from the cache.
    let mut groups: Vec<(String, Vec<&Batch>)> = Vec::new();
    let one: Vec<&Batch> = batches.iter().filter(|b| b.calls == 1).collect();
    if let Some((first, rest)) = one.split_first() {
        groups.push((
            "1 at a time, call 1 (prompts rendered)".to_owned(),
            vec![*first],
        ));
        if !rest.is_empty() {
            groups.push((
                format!("1 at a time, calls 2–{} (prompts cached)", rest.len() + 1),
                rest.to_vec(),
            ));
        }
    }
    for b in batches.iter().filter(|b| b.calls > 1) {
        groups.push((b.name.clone(), vec![b]));
    }
    groups.push(("all".to_owned(), batches.iter().collect()));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|(name, bs)| {
            let turns: Vec<&Turn> = bs
                .iter()
                .flat_map(|b| &b.turns)
                .filter(|t| !t.overlapped)
                .collect();
            let lat = latencies(turns.iter().copied());
            let calls: usize = bs.iter().map(|b| b.calls).sum();
            let completed: usize = bs.iter().map(|b| b.completed).sum();
            let mut renders: Vec<f64> = bs.iter().flat_map(|b| b.renders.clone()).collect();
            renders.sort_by(f64::total_cmp);
            let reply = |t: &Turn| t.latency.map(|d| d.as_secs_f64() * 1000.0);
            vec![
                name.clone(),
                format!("{completed}/{calls}"),
                lat.len().to_string(),
                ms(quantile(&lat, 0.5)),
                ms(quantile(&lat, 0.95)),
                ms(quantile(&lat, 1.0)),
                ms(median(&turns, |t| t.to_final)),
                ms(median(&turns, |t| Some(t.to_line? - t.to_final?))),
                ms(median(&turns, |t| Some(reply(t)? - t.to_line?))),
                ms(median(&turns, |t| t.stt.map(|(_, ran)| ran as f64))),
                format!("{} × {}", renders.len(), ms(quantile(&renders, 0.5))),
            ]
        })
        .collect();
    println!(
        "\nbot turn latency: end of the caller's speech (last packet sent) → first loud RTP \
         packet of the bot's reply; the split uses the context's event stamps:"
    );
    print_table(
        &[
            "calls",
            "done",
            "turns",
            "p50 ms",
            "p95 ms",
            "max ms",
            "→ final p50",
            "final → bot line p50",
            "bot line → 1st packet p50",
            "transcription ran p50",
            "TTS renders × p50 ms",
        ],
        &rows,
    );

    println!("\nper answer, every call:");
    let rows: Vec<Vec<String>> = ANSWERS
        .iter()
        .enumerate()
        .map(|(a, text)| {
            let turns: Vec<&Turn> = clean.iter().copied().filter(|t| t.answer == a).collect();
            let lat = latencies(turns.iter().copied());
            let prompt = turns.first().map_or("", |t| t.said.as_str());
            vec![
                format!("{}. {text}", a + 1),
                lat.len().to_string(),
                ms(quantile(&lat, 0.5)),
                ms(quantile(&lat, 1.0)),
                ms(median(&turns, |t| t.to_final)),
                ms(median(&turns, |t| t.stt.map(|(_, ran)| ran as f64))),
                ms(median(&turns, |t| Some(t.to_line? - t.to_final?))),
                shorten(prompt, 60),
            ]
        })
        .collect();
    print_table(
        &[
            "answer",
            "turns",
            "p50 ms",
            "max ms",
            "→ final p50",
            "transcription ran p50",
            "final → bot line p50",
            "bot's reply",
        ],
        &rows,
    );

    let mut slow: Vec<&Turn> = clean
        .iter()
        .copied()
        .filter(|t| t.latency.is_some())
        .collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.latency));
    println!("\nslowest turns:");
    for t in slow.iter().take(5) {
        println!(
            "  {:.0} ms ({}{}, answer {}: final after {} ms, transcription ran {} ms, bot line \
             after {} ms) heard {:?} → {:?}",
            t.latency.unwrap_or_default().as_secs_f64() * 1000.0,
            t.batch,
            if t.batch.contains("at once") {
                format!(" call {}", t.call)
            } else {
                String::new()
            },
            t.answer + 1,
            ms(t.to_final),
            t.stt.map_or("–".to_owned(), |(_, ran)| ran.to_string()),
            ms(t.to_line),
            t.heard,
            shorten(&t.said, 70)
        );
    }
    let overlapped = all.len() - clean.len();
    if overlapped > 0 {
        println!("{overlapped} turns left out: the bot spoke while the answer was being said");
    }
    let lat = latencies(clean.iter().copied());
    let p50 = quantile(&lat, 0.5);
    println!(
        "goal p50 ≤ {} ms: {} (p50 {} ms over {} turns; the VAD's hangover alone is {} ms; \
         quiet before answering {} ms)",
        GOAL.as_millis(),
        match p50 {
            Some(p) if p <= GOAL.as_secs_f64() * 1000.0 => "met",
            Some(_) => "missed",
            None => "no turns",
        },
        ms(p50),
        lat.len(),
        hangover.as_millis(),
        params.quiet.as_millis()
    );
    let reply = |t: &Turn| t.latency.map(|d| d.as_secs_f64() * 1000.0);
    println!(
        "where the time goes (medians of clean turns): end of speech → final {} ms, of \
         which the VAD hangover {} ms and {} ms beyond it (jitter buffer, frame clock, \
         transcription longer than its {} ms head start); final → bot line {} ms (dialog, \
         speech render); bot line → first packet {} ms (frame clock, speech lead-in)",
        ms(median(&clean, |t| t.to_final)),
        hangover.as_millis(),
        ms(median(&clean, |t| Some(
            t.to_final? - hangover.as_secs_f64() * 1000.0
        ))),
        head_start.as_millis(),
        ms(median(&clean, |t| Some(t.to_line? - t.to_final?))),
        ms(median(&clean, |t| Some(reply(t)? - t.to_line?))),
    );
    let budget = head_start.as_millis() as u64;
    for (what, within) in [("within", true), ("beyond", false)] {
        let turns: Vec<&Turn> = clean
            .iter()
            .copied()
            .filter(|t| t.stt.is_some_and(|(q, r)| (q + r <= budget) == within))
            .collect();
        println!(
            "  transcription done {what} its head start: {} turns, end of speech → final p50 \
             {} ms, turn p50 {} ms, transcription ran p50 {} ms",
            turns.len(),
            ms(median(&turns, |t| t.to_final)),
            ms(median(&turns, reply)),
            ms(median(&turns, |t| t.stt.map(|(_, ran)| ran as f64))),
        );
    }
}

/// At most `n` characters of `s`.
fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    out
}
