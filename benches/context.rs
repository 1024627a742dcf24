//! Context store latency under call load: `MemoryStore` (in memory, no archive) holding
//! 1,000 live contexts, each with 10 subscribers, on a 2-worker tokio runtime. Writers
//! follow a caller/bot exchange (transcript partials and finals, vibe readings, slots, bot
//! steps, intents and actions) at a stated aggregate rate, and then as fast as they can;
//! readers `get` random calls and ask `events(since)` for the last few versions while the
//! writes go on.
//!
//! Measured: the `get`, `events` and `write` calls' own time, and write-to-subscriber
//! delivery (receive time minus the time just before `write` was called) for every
//! subscriber of every write; broadcast lag; the process's CPU time and RSS. Goals: read
//! p99 < 100 µs, delivery p99 < 1 ms.
//!
//! Parameters (environment): `BENCH_CONTEXT_CALLS` (1000), `BENCH_CONTEXT_SUBSCRIBERS`
//! (per call, 10), `BENCH_CONTEXT_WRITES_PER_SEC` (aggregate, 5000),
//! `BENCH_CONTEXT_READS_PER_SEC` (`get`s and as many `events`, 2000),
//! `BENCH_CONTEXT_SECS` (the paced round, 20), `BENCH_CONTEXT_FAST_SECS` (the
//! as-fast-as-possible round, 10), `BENCH_CONTEXT_WORKERS` (runtime workers, 2),
//! `BENCH_CONTEXT_PRELOAD` (caller/bot exchanges in each context before measuring, 10).

// The shared module also drives a baton process for the other benches; only its /proc
// figures, parameters and table are wanted here.
#[allow(dead_code)]
mod common;

use baton::context::document::{Summary, TranscriptLine};
use baton::context::summary::summarize;
use baton::context::{Author, Change, Context, ContextStore, MemoryStore};
use common::{cpu_secs, env_or, print_table, rss_kib};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Read p99 goal, in nanoseconds.
const READ_GOAL_NS: u64 = 100_000;
/// Write-to-subscriber delivery p99 goal, in nanoseconds.
const DELIVERY_GOAL_NS: u64 = 1_000_000;
/// Tasks that share the read rate: enough that one slow read does not hold the others up.
const READERS: usize = 20;
/// How far back `events(since)` asks: a reader that missed the last few changes.
const EVENTS_BACK: u64 = 5;
/// Send-time slots per call. A subscriber can be at most the broadcast depth (256) behind
/// the newest write before it is told it lagged, so 512 slots are never reused under it.
const RING: usize = 512;
/// Most events a one-change write makes beyond its own.
const EXTRA_EVENTS: u64 = 8;

/// Run parameters.
#[derive(Clone, Copy)]
struct Params {
    calls: usize,
    subscribers: usize,
    writes_per_sec: u64,
    reads_per_sec: u64,
    secs: u64,
    fast_secs: u64,
    workers: usize,
    /// Exchanges written into each context before measuring (10: 20 transcript lines, 10
    /// vibe readings, slots, bot steps, intents and actions, about a minute of a call).
    preload: usize,
}

/// Measures the idle store, then the paced round and the as-fast-as-possible one, and
/// prints the figures as tables.
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let p = Params {
        calls: env_or("BENCH_CONTEXT_CALLS", 1000),
        subscribers: env_or("BENCH_CONTEXT_SUBSCRIBERS", 10),
        writes_per_sec: env_or("BENCH_CONTEXT_WRITES_PER_SEC", 5000),
        reads_per_sec: env_or("BENCH_CONTEXT_READS_PER_SEC", 2000),
        secs: env_or("BENCH_CONTEXT_SECS", 20),
        fast_secs: env_or("BENCH_CONTEXT_FAST_SECS", 10),
        workers: env_or("BENCH_CONTEXT_WORKERS", 2),
        preload: env_or("BENCH_CONTEXT_PRELOAD", 10),
    };
    println!(
        "command: BENCH_CONTEXT_CALLS={} BENCH_CONTEXT_SUBSCRIBERS={} BENCH_CONTEXT_WRITES_PER_SEC={} \
         BENCH_CONTEXT_READS_PER_SEC={} BENCH_CONTEXT_SECS={} BENCH_CONTEXT_FAST_SECS={} \
         BENCH_CONTEXT_WORKERS={} BENCH_CONTEXT_PRELOAD={} cargo bench --bench context",
        p.calls,
        p.subscribers,
        p.writes_per_sec,
        p.reads_per_sec,
        p.secs,
        p.fast_secs,
        p.workers,
        p.preload
    );
    println!("argv: {}", std::env::args().collect::<Vec<_>>().join(" "));
    println!("machine: {}", common::machine());
    println!(
        "store: MemoryStore::new() (in memory, no archive); tokio multi-thread runtime, {} workers",
        p.workers
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(p.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let idle = runtime.block_on(idle_reads(p));
    println!(
        "idle store: document {} B of JSON, {} transcript lines, {} vibe readings; \
         Context::clone p50 {} / p99 {} µs; serde_json::to_vec p50 {} µs; \
         summarize p50 {} / p99 {} µs",
        idle.json_bytes,
        idle.transcript_lines,
        idle.vibe_readings,
        us(idle.clone.quantile(0.5)),
        us(idle.clone.quantile(0.99)),
        us(idle.to_json.quantile(0.5)),
        us(idle.summarize.quantile(0.5)),
        us(idle.summarize.quantile(0.99)),
    );
    let paced = runtime.block_on(round(p, Some(p.writes_per_sec), p.secs));
    println!("{}", paced.summary());
    let fast = runtime.block_on(round(p, None, p.fast_secs));
    println!("{}", fast.summary());
    runtime.shutdown_timeout(Duration::from_secs(2));

    let rounds = [&paced, &fast];
    println!(
        "\nlatency (µs; p50/p99 are the upper edge of a 1/128-wide histogram bucket, max exact):"
    );
    let mut rows = vec![
        lat_row("idle, no writes", "get", &idle.gets, Some(READ_GOAL_NS)),
        lat_row("idle, no writes", "events(since)", &idle.events, None),
    ];
    for r in rounds {
        rows.push(lat_row(&r.name, "get", &r.gets, Some(READ_GOAL_NS)));
        rows.push(lat_row(&r.name, "events(since)", &r.events, None));
        rows.push(lat_row(&r.name, "write", &r.writes, None));
        rows.push(lat_row(
            &r.name,
            "write → subscriber",
            &r.deliveries,
            Some(DELIVERY_GOAL_NS),
        ));
    }
    print_table(
        &[
            "round",
            "operation",
            "samples",
            "p50",
            "p99",
            "max",
            "goal p99",
        ],
        &rows,
    );
    println!("\nload:");
    print_table(
        &[
            "round",
            "secs",
            "writes/s",
            "events/write",
            "deliveries (expected)",
            "lagged receivers (events missed)",
            "CPU (of one core)",
            "context switches vol / invol",
            "RSS start → end",
            "doc JSON start → end",
        ],
        &rounds.iter().map(|r| r.load_row()).collect::<Vec<_>>(),
    );
    println!("load average after the run: {}", common::load_average());
}

/// Latency distribution in nanoseconds, shared between tasks: 128 buckets per power of
/// two, so a quantile read from it is at most 1/128 above the true value.
struct Histogram {
    counts: Vec<AtomicU64>,
    max: AtomicU64,
}

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 7;
/// Buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: (0..((64 - SUB_BITS as usize + 1) << SUB_BITS))
                .map(|_| AtomicU64::new(0))
                .collect(),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, ns: u64) {
        self.counts[bucket(ns)].fetch_add(1, Ordering::Relaxed);
        // A plain load first: most samples are not a new maximum, and a read keeps the
        // line shared between the workers instead of bouncing it on every sample.
        if ns > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(ns, Ordering::Relaxed);
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The `q` quantile by nearest rank, as its bucket's upper edge (never above the max).
    fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return upper(i).min(self.max());
            }
        }
        self.max()
    }
}

/// The bucket of a value: exact below 128, then 128 per power of two.
fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    ((u64::from(shift + 1) << SUB_BITS) | ((v >> shift) - SUB)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    let mantissa = (i & (SUB - 1)) + SUB;
    u64::try_from((u128::from(mantissa + 1) << shift) - 1).unwrap_or(u64::MAX)
}

/// When each call's recent writes started, by the first version each write makes, so that
/// a subscriber can tell its delivery latency the moment it receives (no per-delivery
/// record is kept, which at a few hundred thousand deliveries a second would itself
/// dominate memory). A write may make more events than its changes (the store appends a
/// rewritten summary): those follow its first version and share its stamp.
struct Stamps {
    /// Per call, `RING` slots of (version, ns since the round's base).
    slots: Vec<[AtomicU64; 2]>,
}

impl Stamps {
    fn new(calls: usize) -> Stamps {
        Stamps {
            slots: (0..calls * RING).map(|_| Default::default()).collect(),
        }
    }

    fn set(&self, call: usize, version: u64, ns: u64) {
        let slot = &self.slots[call * RING + version as usize % RING];
        slot[1].store(ns, Ordering::Relaxed);
        slot[0].store(version, Ordering::Release);
    }

    /// The start of the write that made `version`: the newest stamp at or before it.
    fn get(&self, call: usize, version: u64) -> Option<u64> {
        (version.saturating_sub(EXTRA_EVENTS)..=version)
            .rev()
            .find_map(|v| {
                let slot = &self.slots[call * RING + v as usize % RING];
                (slot[0].load(Ordering::Acquire) == v).then(|| slot[1].load(Ordering::Relaxed))
            })
    }
}

/// What the tasks of one round share.
struct Shared {
    store: MemoryStore,
    base: Instant,
    stamps: Stamps,
    gets: Histogram,
    events: Histogram,
    writes: Histogram,
    deliveries: Histogram,
    /// Deliveries whose send time was not found (would mean a bug in the bench).
    unstamped: AtomicU64,
    lagged_receivers: AtomicU64,
    lagged_events: AtomicU64,
}

/// One step of a call's exchange.
#[derive(Clone, Copy)]
enum Turn {
    /// The caller's utterance so far, in fifths.
    CallerPartial(usize),
    CallerFinal,
    Vibe,
    Slot,
    BotStep,
    BotFinal,
    /// An intent on even exchanges, an action on odd ones.
    IntentOrAction,
}

/// One caller/bot exchange: what speech, the vibe reader and the dialog write for it, 60 %
/// of it transcript.
const CYCLE: [Turn; 10] = [
    Turn::CallerPartial(1),
    Turn::CallerPartial(2),
    Turn::CallerPartial(3),
    Turn::CallerPartial(4),
    Turn::CallerFinal,
    Turn::Vibe,
    Turn::Slot,
    Turn::BotStep,
    Turn::BotFinal,
    Turn::IntentOrAction,
];

/// What callers say.
const CALLER_LINES: [&str; 6] = [
    "hi I think my card has been stolen and I need to block it right away please",
    "the last four digits are four eight two one and it is the debit card",
    "yes my date of birth is the third of March nineteen eighty four",
    "there was a payment of two hundred pounds yesterday that I did not make",
    "can you send me a new card to my home address please",
    "no that is everything thank you very much for your help",
];

/// What the bot answers.
const BOT_LINES: [&str; 6] = [
    "I can help with that. First I need to confirm who you are.",
    "Thank you. Can you tell me your date of birth, please?",
    "Thanks, you are verified. Which card would you like to block?",
    "I have blocked the card ending four eight two one.",
    "I can see that payment. I will raise a dispute for it now.",
    "A new card will arrive within five working days.",
];

/// One call's writer: where it is in its exchange and the version its next write makes
/// (each call has exactly one writer, so the version is known before the write).
struct Script {
    call: usize,
    id: String,
    step: usize,
    exchange: usize,
    utterance: u32,
    t_ms: u64,
    version: u64,
}

impl Script {
    fn new(call: usize) -> Script {
        Script {
            call,
            id: call_id(call),
            step: 0,
            exchange: 0,
            utterance: 1,
            t_ms: 0,
            version: 0,
        }
    }

    fn line(&self, speaker: &str, text: String, is_final: bool) -> Change {
        Change::Transcript(TranscriptLine {
            speaker: speaker.into(),
            text,
            is_final,
            utterance: self.utterance,
            start_ms: self.t_ms,
            end_ms: self.t_ms + 2_400,
            confidence: 0.87,
        })
    }

    /// The next write of the exchange.
    fn next(&mut self) -> (Author, Change) {
        let said = CALLER_LINES[(self.exchange + self.call) % CALLER_LINES.len()];
        let step = CYCLE[self.step];
        self.step = (self.step + 1) % CYCLE.len();
        let out = match step {
            Turn::CallerPartial(fifths) => {
                let words: Vec<&str> = said.split(' ').collect();
                let upto = (words.len() * fifths / 5).max(1);
                (
                    Author::System,
                    self.line("caller", words[..upto].join(" "), false),
                )
            }
            Turn::CallerFinal => (Author::System, self.line("caller", said.into(), true)),
            Turn::Vibe => {
                let labels = ["anxious", "frustrated", "neutral", "calm"];
                let trends = ["deteriorating", "steady", "improving"];
                (
                    Author::System,
                    Change::Vibe {
                        label: labels[self.exchange % labels.len()].into(),
                        arousal: 0.6,
                        valence: -0.3,
                        trend: trends[self.exchange % trends.len()].into(),
                        evidence: vec!["raised pitch".into(), "says stolen".into()],
                        utterance: self.utterance,
                    },
                )
            }
            Turn::Slot => {
                let slots = [
                    ("card_last4", json!("4821")),
                    ("date_of_birth", json!("1984-03-03")),
                    ("disputed_amount", json!({"value": 200, "currency": "GBP"})),
                    ("card_type", json!("debit")),
                ];
                let (name, value) = slots[self.exchange % slots.len()].clone();
                (
                    Author::Bot,
                    Change::Slot {
                        name: name.into(),
                        value,
                    },
                )
            }
            Turn::BotStep => (
                Author::Bot,
                Change::BotStep {
                    step: format!("step_{}", self.exchange % 12),
                },
            ),
            Turn::BotFinal => {
                self.utterance += 1;
                let text = BOT_LINES[self.exchange % BOT_LINES.len()].to_owned();
                (Author::Bot, self.line("bot", text, true))
            }
            Turn::IntentOrAction if self.exchange.is_multiple_of(2) => (
                Author::Bot,
                Change::Intent {
                    name: "block_card".into(),
                    confidence: 0.91,
                    alternatives: vec![],
                },
            ),
            Turn::IntentOrAction => (
                Author::Bot,
                Change::Action {
                    name: "card_blocked".into(),
                    detail: json!({"card": "4821", "reason": "stolen", "ticket": self.exchange}),
                },
            ),
        };
        if self.step == 0 {
            self.exchange += 1;
            self.utterance += 1;
            self.t_ms += 6_000;
        }
        out
    }

    /// The writes that give a fresh context what a call a minute in has.
    fn preload(&mut self, exchanges: usize) -> Vec<(Author, Change)> {
        let mut out = vec![
            (
                Author::System,
                Change::Caller {
                    number: format!("+44700900{:04}", self.call),
                },
            ),
            (
                Author::Bot,
                Change::Identity {
                    verified: true,
                    method: Some("date_of_birth".into()),
                    customer_id: Some(format!("cust-{}", self.call)),
                },
            ),
            (
                Author::System,
                Change::CustomerData {
                    data: json!({
                        "name": "Alex Example",
                        "segment": "retail",
                        "cards": [{"last4": "4821", "type": "debit"}, {"last4": "9904", "type": "credit"}],
                        "balance": {"value": 1412.55, "currency": "GBP"},
                    })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                },
            ),
        ];
        for _ in 0..exchanges * CYCLE.len() {
            out.push(self.next());
        }
        out.push((
            Author::System,
            Change::Summary(Summary {
                text: "Verified caller reports a stolen debit card and an unknown payment. \
                       Card blocked by the bot. Raise a dispute for 200 GBP."
                    .into(),
                situation: Some("Verified caller reports a stolen debit card.".into()),
                actions: Some("Card blocked by the bot.".into()),
                next_step: Some("Raise a dispute for 200 GBP.".into()),
                ..Summary::default()
            }),
        ));
        out
    }
}

/// The call id of call number `i`.
fn call_id(i: usize) -> String {
    format!("call-{i:05}")
}

/// A store with `p.calls` preloaded contexts, and each call's writer positioned after
/// them.
async fn preloaded(p: Params) -> (MemoryStore, Vec<Script>) {
    let store = MemoryStore::new();
    let mut scripts = Vec::with_capacity(p.calls);
    for i in 0..p.calls {
        let mut script = Script::new(i);
        store
            .create(Context {
                call_id: script.id.clone(),
                ..Context::default()
            })
            .await
            .expect("create");
        // Written change by change, as the call would have, so that the log holds them.
        for (author, change) in script.preload(p.preload) {
            let made = store
                .write(&script.id, author, None, vec![change])
                .await
                .expect("preload write");
            script.version = made.last().map_or(script.version, |e| e.version);
        }
        scripts.push(script);
    }
    (store, scripts)
}

/// Reads on an idle store, and the document's own clone and serialisation cost: what a
/// `get` costs when nothing contends with it.
struct Idle {
    gets: Histogram,
    events: Histogram,
    clone: Histogram,
    to_json: Histogram,
    summarize: Histogram,
    json_bytes: usize,
    transcript_lines: usize,
    vibe_readings: usize,
}

/// Measures reads on a preloaded store with no writers and no subscribers.
async fn idle_reads(p: Params) -> Idle {
    let (store, scripts) = preloaded(p).await;
    let idle = Idle {
        gets: Histogram::new(),
        events: Histogram::new(),
        clone: Histogram::new(),
        to_json: Histogram::new(),
        summarize: Histogram::new(),
        json_bytes: 0,
        transcript_lines: 0,
        vibe_readings: 0,
    };
    let mut rng = StdRng::seed_from_u64(1);
    let mut doc = std::sync::Arc::new(Context::default());
    for _ in 0..20_000 {
        let s = &scripts[rng.gen_range(0..scripts.len())];
        let t = Instant::now();
        doc = store.get(&s.id).await.expect("get");
        idle.gets.record(ns(t.elapsed()));
        let t = Instant::now();
        let got = store
            .events(&s.id, doc.version.saturating_sub(EVENTS_BACK))
            .await
            .expect("events");
        idle.events.record(ns(t.elapsed()));
        drop(got);
        let t = Instant::now();
        let copy = Context::clone(&doc);
        idle.clone.record(ns(t.elapsed()));
        drop(copy);
        let t = Instant::now();
        let bytes = serde_json::to_vec(&doc).expect("json");
        idle.to_json.record(ns(t.elapsed()));
        drop(bytes);
        let t = Instant::now();
        let summary = summarize(&doc);
        idle.summarize.record(ns(t.elapsed()));
        drop(summary);
    }
    Idle {
        json_bytes: serde_json::to_vec(&doc).expect("json").len(),
        transcript_lines: doc.transcript.len(),
        vibe_readings: doc.vibe.history.len() + 1,
        ..idle
    }
}

/// What one round measured.
struct Round {
    name: String,
    secs: f64,
    writes_per_sec: f64,
    events_per_write: f64,
    gets: Histogram,
    events: Histogram,
    writes: Histogram,
    deliveries: Histogram,
    expected_deliveries: u64,
    unstamped: u64,
    lagged_receivers: u64,
    lagged_events: u64,
    cpu_secs: f64,
    /// Times a thread of the process slept (idle, or waiting for a lock held elsewhere).
    voluntary_switches: u64,
    /// Times the system took a core from a thread of the process for other work.
    involuntary_switches: u64,
    /// RSS when the round starts (what earlier rounds left) and when it ends.
    rss_kib: (u64, u64),
    json_start: usize,
    json_end: usize,
}

/// One round: a fresh preloaded store, subscribers on every call, writers at `rate` writes
/// a second in all (`None`: as fast as they can) and paced readers, for `secs` seconds.
async fn round(p: Params, rate: Option<u64>, secs: u64) -> Round {
    let name = match rate {
        Some(r) => format!("{r} writes/s"),
        None => "as fast as possible".to_owned(),
    };
    let rss_before = rss_kib(std::process::id());
    let (store, scripts) = preloaded(p).await;
    let json_start = json_len(&store, &scripts[0].id).await;
    let shared = Arc::new(Shared {
        store,
        base: Instant::now(),
        stamps: Stamps::new(p.calls),
        gets: Histogram::new(),
        events: Histogram::new(),
        writes: Histogram::new(),
        deliveries: Histogram::new(),
        unstamped: AtomicU64::new(0),
        lagged_receivers: AtomicU64::new(0),
        lagged_events: AtomicU64::new(0),
    });

    let mut subscribers = Vec::with_capacity(p.calls * p.subscribers);
    for s in &scripts {
        for _ in 0..p.subscribers {
            let sub = shared
                .store
                .subscribe(&s.id, s.version)
                .await
                .expect("subscribe");
            assert!(sub.backlog.is_empty());
            subscribers.push(tokio::spawn(subscriber(shared.clone(), s.call, sub.live)));
        }
    }

    let cpu_before = cpu_secs(std::process::id());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let switches_before = context_switches();
    let writers: Vec<JoinHandle<Written>> = match rate {
        Some(r) => {
            let mut rng = StdRng::seed_from_u64(2);
            let period = Duration::from_secs_f64(p.calls as f64 / r as f64);
            scripts
                .into_iter()
                .map(|script| {
                    let phase = period.mul_f64(rng.gen::<f64>());
                    tokio::spawn(paced_writer(
                        shared.clone(),
                        script,
                        period,
                        phase,
                        deadline,
                    ))
                })
                .collect()
        }
        None => {
            // One writer per worker: more could not write at once anyway, and would only
            // queue behind each other and the subscribers.
            let mut shares: Vec<Vec<Script>> = (0..p.workers).map(|_| Vec::new()).collect();
            for script in scripts {
                shares[script.call % p.workers].push(script);
            }
            shares
                .into_iter()
                .map(|share| tokio::spawn(fast_writer(shared.clone(), share, deadline)))
                .collect()
        }
    };
    let readers: Vec<JoinHandle<()>> = (0..READERS)
        .map(|i| {
            let period = Duration::from_secs_f64(READERS as f64 / p.reads_per_sec as f64);
            let phase = period.mul_f64(i as f64 / READERS as f64);
            tokio::spawn(reader(
                shared.clone(),
                p.calls,
                period,
                phase,
                deadline,
                i as u64,
            ))
        })
        .collect();

    let mut written = Written::default();
    for w in writers {
        let w = w.await.expect("writer");
        written.writes += w.writes;
        written.events += w.events;
    }
    for r in readers {
        r.await.expect("reader");
    }
    // Deliveries still in flight when the writers stop belong to the round: wait for them.
    let expected = written.events * p.subscribers as u64;
    let drain = Instant::now();
    while shared.deliveries.count() + shared.lagged_events.load(Ordering::Relaxed) < expected
        && drain.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_secs(std::process::id()) - cpu_before;
    let switches = context_switches();
    let elapsed = started.elapsed().as_secs_f64();
    let rss = rss_kib(std::process::id());
    let json_end = json_len(&shared.store, &call_id(0)).await;
    // Ending the subscribers before the store goes keeps teardown out of the next round.
    for s in &subscribers {
        s.abort();
    }
    for s in subscribers {
        let _ = s.await;
    }
    let shared = Arc::into_inner(shared).expect("every task has ended");
    Round {
        name,
        secs: elapsed,
        writes_per_sec: written.writes as f64 / secs as f64,
        events_per_write: written.events as f64 / written.writes.max(1) as f64,
        gets: shared.gets,
        events: shared.events,
        writes: shared.writes,
        deliveries: shared.deliveries,
        expected_deliveries: expected,
        unstamped: shared.unstamped.into_inner(),
        lagged_receivers: shared.lagged_receivers.into_inner(),
        lagged_events: shared.lagged_events.into_inner(),
        cpu_secs: cpu,
        voluntary_switches: switches.0 - switches_before.0,
        involuntary_switches: switches.1 - switches_before.1,
        rss_kib: (rss_before, rss),
        json_start,
        json_end,
    }
}

/// Voluntary and involuntary context switches of all the process's threads so far.
fn context_switches() -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            let count = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(n) = count("voluntary_ctxt_switches:") {
                total.0 += n;
            } else if let Some(n) = count("nonvoluntary_ctxt_switches:") {
                total.1 += n;
            }
        }
    }
    total
}

/// The size of a call's document as JSON, in bytes.
async fn json_len(store: &MemoryStore, id: &str) -> usize {
    let doc = store.get(id).await.expect("get");
    serde_json::to_vec(&doc).expect("json").len()
}

/// Receives a call's events and records each one's delivery latency.
async fn subscriber(
    shared: Arc<Shared>,
    call: usize,
    mut live: tokio::sync::broadcast::Receiver<Arc<baton::context::Event>>,
) {
    let mut lagged = false;
    loop {
        match live.recv().await {
            Ok(event) => {
                let now = ns(shared.base.elapsed());
                match shared.stamps.get(call, event.version) {
                    Some(sent) => shared.deliveries.record(now.saturating_sub(sent)),
                    None => {
                        shared.unstamped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(RecvError::Lagged(n)) => {
                if !lagged {
                    lagged = true;
                    shared.lagged_receivers.fetch_add(1, Ordering::Relaxed);
                }
                shared.lagged_events.fetch_add(n, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => break,
        }
    }
}

/// Makes the script's next write, timed, with its start stamped for the subscribers;
/// returns how many events it made.
async fn write_one(shared: &Shared, script: &mut Script) -> u64 {
    let (author, change) = script.next();
    let changes = vec![change];
    let version = script.version + 1;
    let start = Instant::now();
    shared
        .stamps
        .set(script.call, version, ns(start - shared.base));
    let made = shared
        .store
        .write(&script.id, author, None, changes)
        .await
        .expect("write");
    shared.writes.record(ns(start.elapsed()));
    assert_eq!(made[0].version, version, "one writer per call");
    assert!(made.len() as u64 <= 1 + EXTRA_EVENTS);
    script.version = made.last().map_or(version, |e| e.version);
    made.len() as u64
}

/// Writes one call's changes every `period`, starting after `phase`, until `deadline`.
async fn paced_writer(
    shared: Arc<Shared>,
    mut script: Script,
    period: Duration,
    phase: Duration,
    deadline: Instant,
) -> Written {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    let mut n = Written::default();
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            return n;
        }
        n.events += write_one(&shared, &mut script).await;
        n.writes += 1;
    }
}

/// Writes to its calls in turn, back to back, until `deadline`, yielding after each write
/// so that the subscribers it woke run before its next one.
async fn fast_writer(shared: Arc<Shared>, mut scripts: Vec<Script>, deadline: Instant) -> Written {
    let mut n = Written::default();
    'writing: loop {
        for script in &mut scripts {
            if Instant::now() >= deadline {
                break 'writing;
            }
            n.events += write_one(&shared, script).await;
            n.writes += 1;
            tokio::task::yield_now().await;
        }
    }
    n
}

/// What a writer did.
#[derive(Default)]
struct Written {
    writes: u64,
    /// Events the writes made, the store's own among them.
    events: u64,
}

/// Every `period` until `deadline`, gets a random call's document and then its last few
/// events, each timed.
async fn reader(
    shared: Arc<Shared>,
    calls: usize,
    period: Duration,
    phase: Duration,
    deadline: Instant,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(100 + seed);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    loop {
        tick.tick().await;
        if Instant::now() >= deadline {
            return;
        }
        let id = call_id(rng.gen_range(0..calls));
        let t = Instant::now();
        let doc = shared.store.get(&id).await.expect("get");
        shared.gets.record(ns(t.elapsed()));
        let since = doc.version.saturating_sub(EVENTS_BACK);
        drop(doc);
        let t = Instant::now();
        let events = shared.store.events(&id, since).await.expect("events");
        shared.events.record(ns(t.elapsed()));
        drop(events);
    }
}

impl Round {
    fn summary(&self) -> String {
        format!(
            "{}: {:.1} s, {:.0} writes/s, get p99 {} µs, write p99 {} µs, delivery p99 {} µs, \
             {} of {} deliveries, {} lagged receivers, {} unstamped",
            self.name,
            self.secs,
            self.writes_per_sec,
            us(self.gets.quantile(0.99)),
            us(self.writes.quantile(0.99)),
            us(self.deliveries.quantile(0.99)),
            self.deliveries.count(),
            self.expected_deliveries,
            self.lagged_receivers,
            self.unstamped
        )
    }

    fn load_row(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            format!("{:.1}", self.secs),
            format!("{:.0}", self.writes_per_sec),
            format!("{:.2}", self.events_per_write),
            format!(
                "{} ({})",
                thousands(self.deliveries.count()),
                thousands(self.expected_deliveries)
            ),
            format!(
                "{} ({})",
                self.lagged_receivers,
                thousands(self.lagged_events)
            ),
            format!("{:.0} %", 100.0 * self.cpu_secs / self.secs),
            format!(
                "{} / {}",
                thousands(self.voluntary_switches),
                thousands(self.involuntary_switches)
            ),
            format!(
                "{:.0} → {:.0} MiB",
                self.rss_kib.0 as f64 / 1024.0,
                self.rss_kib.1 as f64 / 1024.0
            ),
            format!("{} → {} B", self.json_start, self.json_end),
        ]
    }
}

/// A latency table row.
fn lat_row(round: &str, op: &str, h: &Histogram, goal_ns: Option<u64>) -> Vec<String> {
    let p99 = h.quantile(0.99);
    vec![
        round.to_owned(),
        op.to_owned(),
        thousands(h.count()),
        us(h.quantile(0.5)),
        us(p99),
        us(h.max()),
        match goal_ns {
            Some(g) if p99 < g => format!("< {} ✓", us(g)),
            Some(g) => format!("< {} ✗", us(g)),
            None => "–".to_owned(),
        },
    ]
}

/// A duration in whole nanoseconds.
fn ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Nanoseconds as microseconds, to one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

/// A count with thousands separators.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
