//! Routing decision latency on a large floor: `best` (one pass) and `rank` (every agent who
//! can take the call, sorted) over 10,000 agents, each decision timed on its own.
//!
//! The floor: every agent has 1 to 3 of 8 skills at levels 1 to 5, speaks English, French
//! or (one in five) both, is available four times in five, takes 1 to 3 calls at once and
//! is on 0 up to that many now, has been idle up to half an hour, and has a handle time
//! (2 to 15 minutes) three times in five. Each call needs one of the 8 skills in one of the
//! 2 languages; one in five is High urgency and about one in seven has a distressed caller.
//! Goal: p99 ≤ 1 ms per decision.
//!
//! Parameters (environment): `BENCH_ROUTING_CANDIDATES` (10000), `BENCH_ROUTING_DECISIONS`
//! (timed decisions per function, 5000), `BENCH_ROUTING_WARMUP` (untimed decisions per
//! function first, 500).

// The shared module also drives a baton process for the other benches; only its
// parameters, machine description and table are wanted here.
#[allow(dead_code)]
mod common;

use baton::routing::{best, rank, Candidate, Need, Urgency, Weights};
use common::{env_or, print_table};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

/// p99 goal per decision, in nanoseconds.
const GOAL_NS: u64 = 1_000_000;
const SKILLS: [&str; 8] = [
    "fraud",
    "billing",
    "cards",
    "loans",
    "mortgages",
    "insurance",
    "savings",
    "complaints",
];
const LANGUAGES: [&str; 2] = ["en-GB", "fr-FR"];

/// Times `best` and `rank` over one floor and prints the figures as a table.
fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let candidates: usize = env_or("BENCH_ROUTING_CANDIDATES", 10_000);
    let decisions: usize = env_or("BENCH_ROUTING_DECISIONS", 5_000);
    let warmup: usize = env_or("BENCH_ROUTING_WARMUP", 500);
    println!(
        "command: BENCH_ROUTING_CANDIDATES={candidates} BENCH_ROUTING_DECISIONS={decisions} \
         BENCH_ROUTING_WARMUP={warmup} cargo bench --bench routing"
    );
    println!("machine: {}", common::machine());

    let mut rng = StdRng::seed_from_u64(1);
    let floor: Vec<Candidate> = (0..candidates).map(|i| agent(&mut rng, i)).collect();
    let needs: Vec<Need> = (0..warmup + decisions).map(|_| need(&mut rng)).collect();
    let weights = Weights::default();

    let sample = &needs[..needs.len().min(200)];
    let (mut can_take, mut skilled) = (0, 0);
    for n in sample {
        let ranked = rank(n, &floor, &weights);
        can_take += ranked.len();
        skilled += ranked.iter().filter(|r| r.skilled).count();
    }
    let sampled = sample.len().max(1);
    println!(
        "floor: {} agents, {} available with room; per call, on average, {} can take it, \
         {} of them with the skill",
        floor.len(),
        floor
            .iter()
            .filter(|c| c.available && c.calls < c.max_calls)
            .count(),
        can_take / sampled,
        skilled / sampled
    );

    let best_timed = time(&needs, warmup, |n| {
        black_box(best(n, &floor, &weights));
    });
    let rank_timed = time(&needs, warmup, |n| {
        black_box(rank(n, &floor, &weights));
    });
    println!("\nlatency per decision (µs, nearest rank over every decision):");
    print_table(
        &[
            "function",
            "decisions",
            "p50",
            "p99",
            "max",
            "preempted",
            "goal p99",
        ],
        &[row("best", &best_timed), row("rank", &rank_timed)],
    );
    println!("load average after the run: {}", common::load_average());
}

/// One random agent of the floor.
fn agent(rng: &mut StdRng, i: usize) -> Candidate {
    let count = rng.gen_range(1..=3);
    let skills = SKILLS
        .choose_multiple(rng, count)
        .map(|s| ((*s).to_owned(), rng.gen_range(1..=5)))
        .collect();
    let languages = if rng.gen_bool(0.2) {
        LANGUAGES.iter().map(|l| (*l).to_owned()).collect()
    } else {
        vec![LANGUAGES[rng.gen_range(0..LANGUAGES.len())].to_owned()]
    };
    let max_calls = rng.gen_range(1..=3);
    Candidate {
        id: format!("agent-{i:05}"),
        skills,
        languages,
        available: rng.gen_bool(0.8),
        calls: rng.gen_range(0..=max_calls),
        max_calls,
        idle_secs: rng.gen_range(0..1800),
        handle_secs: rng.gen_bool(0.6).then(|| rng.gen_range(120.0..900.0)),
    }
}

/// One random call.
fn need(rng: &mut StdRng) -> Need {
    Need {
        skill: Some(SKILLS[rng.gen_range(0..SKILLS.len())].to_owned()),
        language: ["en", "fr"][rng.gen_range(0..2)].to_owned(),
        urgency: if rng.gen_bool(0.2) {
            Urgency::High
        } else {
            Urgency::Normal
        },
        distressed: rng.gen_bool(0.15),
    }
}

/// What one function's timed decisions measured.
struct Timed {
    /// Per decision, in nanoseconds, sorted.
    ns: Vec<u64>,
    /// Times the system took the core away during them: on a shared machine, what the
    /// tail is made of.
    preempted: u64,
}

/// Runs `decide` untimed on the first `warmup` needs, then times it on each of the rest.
fn time(needs: &[Need], warmup: usize, mut decide: impl FnMut(&Need)) -> Timed {
    for n in &needs[..warmup] {
        decide(n);
    }
    let preempted_before = involuntary_switches();
    let mut ns: Vec<u64> = needs[warmup..]
        .iter()
        .map(|n| {
            let start = Instant::now();
            decide(n);
            start.elapsed().as_nanos() as u64
        })
        .collect();
    let preempted = involuntary_switches() - preempted_before;
    ns.sort_unstable();
    Timed { ns, preempted }
}

/// Involuntary context switches of this (single-threaded) process so far.
fn involuntary_switches() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A latency table row.
fn row(function: &str, timed: &Timed) -> Vec<String> {
    let p99 = quantile(&timed.ns, 0.99);
    vec![
        function.to_owned(),
        timed.ns.len().to_string(),
        us(quantile(&timed.ns, 0.5)),
        us(p99),
        us(timed.ns.last().copied().unwrap_or(0)),
        timed.preempted.to_string(),
        format!(
            "≤ {} {}",
            us(GOAL_NS),
            if p99 <= GOAL_NS { "✓" } else { "✗" }
        ),
    ]
}

/// The `q` quantile of sorted values, by nearest rank.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

/// Nanoseconds as microseconds, to one decimal.
fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}
