//! Speech-to-text latency under load: N callers talk at once, each saying the bank
//! sentences one after another in real time (a partial every second while speaking, the
//! final when the sentence ends), on baton's worker pool with one thread per core. Reports
//! end of speech → final transcript (p50, p95) and the real-time factor (thread time per
//! second of audio) for each N.
//!
//! `cargo bench -p baton-speech --bench stt` (talker counts: `BENCH_STT_TALKERS`, default
//! `1,5,10`; sentences per talker: `BENCH_STT_ROUNDS`, default 4). Needs `make model`.

#[path = "../tests/common/mod.rs"]
mod common;

use baton_speech::stt::{Job, JobKind, SpeechWorkers};
use common::{model, scratch, speak, BANK_SENTENCES, EN_US};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = scratch("bench-stt");
    let clips: Arc<Vec<Vec<i16>>> = Arc::new(
        BANK_SENTENCES
            .iter()
            .enumerate()
            .map(|(i, s)| speak(&dir, &i.to_string(), EN_US, s))
            .collect(),
    );
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let model = model();
    let rounds = env_list("BENCH_STT_ROUNDS", "4")[0];
    println!("speech-to-text under load: {cores} worker threads, {rounds} sentences per talker");
    println!("| talkers | finals | end of speech → final p50 | p95 | max | real-time factor |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for talkers in env_list("BENCH_STT_TALKERS", "1,5,10") {
        let workers = Arc::new(
            SpeechWorkers::start(model.clone(), cores, 1_024, 2 * cores).expect("workers"),
        );
        let (tx, rx) = mpsc::channel::<(JobKind, Duration, Duration)>();
        let started = Instant::now();
        let handles: Vec<_> = (0..talkers)
            .map(|t| {
                let (workers, clips, tx) = (workers.clone(), clips.clone(), tx.clone());
                thread::spawn(move || {
                    // Talkers start a little apart, as calls do.
                    thread::sleep(Duration::from_millis(137 * t as u64));
                    for r in 0..rounds {
                        let clip = &clips[(t + r) % clips.len()];
                        let secs = clip.len() / 16_000;
                        // Real time: a partial after each second of speech, the final at its end.
                        for s in 1..=secs {
                            thread::sleep(Duration::from_secs(1));
                            let tx = tx.clone();
                            let at = Instant::now();
                            workers.submit(Job {
                                stream: t as u64,
                                kind: JobKind::Partial,
                                samples: clip[..s * 16_000].to_vec(),
                                prompt: String::new(),
                                reply: Box::new(move |r| {
                                    if let Ok(d) = r {
                                        let _ = tx.send((JobKind::Partial, at.elapsed(), d.ran));
                                    }
                                }),
                            });
                        }
                        thread::sleep(Duration::from_millis((clip.len() % 16_000) as u64 / 16));
                        let tx = tx.clone();
                        let at = Instant::now();
                        workers.submit(Job {
                            stream: t as u64,
                            kind: JobKind::Final,
                            samples: clip.clone(),
                            prompt: String::new(),
                            reply: Box::new(move |r| {
                                let done = r.expect("every final is transcribed");
                                let _ = tx.send((JobKind::Final, at.elapsed(), done.ran));
                            }),
                        });
                        // A pause between sentences.
                        thread::sleep(Duration::from_millis(800));
                    }
                })
            })
            .collect();
        drop(tx);
        for h in handles {
            h.join().expect("talker");
        }
        let mut finals = Vec::new();
        let mut busy = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(300);
        while finals.len() < talkers * rounds && Instant::now() < deadline {
            let Ok((kind, latency, ran)) = rx.recv_timeout(Duration::from_secs(60)) else {
                break;
            };
            busy += ran;
            if kind == JobKind::Final {
                finals.push(latency);
            }
        }
        let wall = started.elapsed();
        finals.sort();
        let audio_secs: f64 = (0..talkers)
            .flat_map(|t| (0..rounds).map(move |r| (t + r) % BANK_SENTENCES.len()))
            .map(|i| clips[i].len() as f64 / 16_000.0)
            .sum();
        println!(
            "| {talkers} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.3} ({:.1} s of work for {:.1} s of audio in {:.1} s) |",
            finals.len(),
            percentile(&finals, 0.5).as_secs_f64() * 1000.0,
            percentile(&finals, 0.95).as_secs_f64() * 1000.0,
            finals.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            busy.as_secs_f64() / audio_secs,
            busy.as_secs_f64(),
            audio_secs,
            wall.as_secs_f64()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
