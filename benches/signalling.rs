//! Signalling throughput: SIPp's built-in UAC (INVITE with SDP, 200, ACK, pause, BYE, 200;
//! no audio) at rising call rates against baton's `echo` plan, and against SIPp's own UAS
//! in the same run as the ceiling. A rate is sustained when under 0.1 % of its calls fail
//! and the rate achieved (successful calls / elapsed) reaches 90 % of the target.
//!
//! Parameters (environment): `BENCH_SIP_RATES` (calls/s, comma-separated), `BENCH_SIP_SECS`
//! (seconds per step), `BENCH_SIP_PAUSE_MS` (the UAC's pause between ACK and BYE).

mod common;

use common::{cpu_secs, env_list, env_or, metric, print_table, rss_kib, Baton};
use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Highest failure ratio a sustained rate may show.
const MAX_FAILED: f64 = 0.001;
/// Share of the target rate that must be achieved.
const MIN_ACHIEVED: f64 = 0.9;

/// What SIPp's statistics file said about one step.
#[derive(Debug, Default, Clone)]
struct Step {
    target: u32,
    attempted: u64,
    successful: u64,
    failed: u64,
    retransmissions: u64,
    elapsed: f64,
    /// Mean INVITE to 200 time, ms.
    response_ms: f64,
    /// CPU seconds the server used during the step.
    server_cpu: f64,
    /// CPU seconds the SIPp UAC used (sampled every 50 ms, so slightly low).
    client_cpu: f64,
    /// Server RSS after the step, KiB.
    server_rss: u64,
    /// 5xx responses baton sent during the step, by code ("503:12 500:1"; empty for SIPp).
    server_5xx: String,
    exit: String,
}

impl Step {
    fn achieved(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.successful as f64 / self.elapsed
        } else {
            0.0
        }
    }

    fn failed_ratio(&self) -> f64 {
        let total = self.successful + self.failed;
        if total == 0 {
            1.0
        } else {
            self.failed as f64 / total as f64
        }
    }

    fn sustained(&self, calls: u64) -> bool {
        self.attempted == calls
            && self.successful + self.failed == calls
            && self.failed_ratio() < MAX_FAILED
            && self.achieved() >= MIN_ACHIEVED * f64::from(self.target)
    }
}

/// One server under test: where it listens and how to read its figures.
struct Server<'a> {
    name: &'static str,
    addr: SocketAddr,
    pid: u32,
    baton: Option<&'a Baton>,
    service: &'static str,
    steps: Vec<Step>,
    done: bool,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rates = env_list(
        "BENCH_SIP_RATES",
        &[
            250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000,
        ],
    );
    let secs: u32 = env_or("BENCH_SIP_SECS", 10);
    let pause_ms: u32 = env_or("BENCH_SIP_PAUSE_MS", 0);
    let dir = common::run_dir("signalling");
    println!("signalling benchmark: {}", common::machine());
    println!(
        "steps of {secs} s at {rates:?} calls/s, UAC pause {pause_ms} ms, work dir {}",
        dir.display()
    );

    let baton = Baton::start(&dir, 100_000, (61000, 64999));
    let uas_port = common::free_udp_tcp_port();
    let mut uas = start_uas(&dir, uas_port);
    let mut servers = [
        Server {
            name: "baton",
            addr: baton.sip,
            pid: baton.pid(),
            baton: Some(&baton),
            service: "echo",
            steps: Vec::new(),
            done: false,
        },
        Server {
            name: "sipp-uas",
            addr: SocketAddr::from(([127, 0, 0, 1], uas_port)),
            pid: uas.id(),
            baton: None,
            service: "service",
            steps: Vec::new(),
            done: false,
        },
    ];

    // Interleaved, so that load from other work on the machine hits both sides alike.
    for &rate in &rates {
        for server in servers.iter_mut().filter(|s| !s.done) {
            let step = run_step(&dir, server, rate, secs, pause_ms);
            let calls = u64::from(rate) * u64::from(secs);
            println!(
                "{:>8} @ {rate:>5}/s: {} ok, {} failed, {:.0}/s achieved, {} retrans, {:.1} ms INVITE->200, exit {}",
                server.name,
                step.successful,
                step.failed,
                step.achieved(),
                step.retransmissions,
                step.response_ms,
                step.exit
            );
            server.done = !step.sustained(calls);
            server.steps.push(step);
            if server.baton.is_some_and(|b| !b.alive()) {
                println!("baton exited during the step; log {}", baton.log.display());
                server.done = true;
            }
        }
        if servers.iter().all(|s| s.done) {
            break;
        }
    }
    let _ = uas.kill();
    let _ = uas.wait();

    let mut rows = Vec::new();
    for server in &servers {
        for s in &server.steps {
            let calls = u64::from(s.target) * u64::from(secs);
            rows.push(vec![
                server.name.to_owned(),
                s.target.to_string(),
                format!("{:.0}", s.achieved()),
                s.successful.to_string(),
                s.failed.to_string(),
                format!("{:.3}", s.failed_ratio() * 100.0),
                s.retransmissions.to_string(),
                format!("{:.2}", s.response_ms),
                format!("{:.0}", per_thousand(s.server_cpu, s.successful)),
                format!("{:.0}", per_thousand(s.client_cpu, s.successful)),
                format!("{}", s.server_rss / 1024),
                s.server_5xx.clone(),
                if s.sustained(calls) { "yes" } else { "no" }.to_owned(),
            ]);
        }
    }
    println!();
    print_table(
        &[
            "server",
            "target/s",
            "achieved/s",
            "ok",
            "failed",
            "failed %",
            "retrans",
            "INVITE->200 ms",
            "server CPU ms/1000 calls",
            "UAC CPU ms/1000 calls",
            "server RSS MiB",
            "5xx",
            "sustained",
        ],
        &rows,
    );
    println!();
    let best = |s: &Server<'_>| {
        s.steps
            .iter()
            .filter(|st| st.sustained(u64::from(st.target) * u64::from(secs)))
            .map(Step::achieved)
            .fold(0.0, f64::max)
    };
    let (b, u) = (best(&servers[0]), best(&servers[1]));
    println!("highest sustained rate: baton {b:.0} calls/s, SIPp UAS {u:.0} calls/s");
    if b > 0.0 {
        println!("SIPp UAS / baton = {:.2}", u / b);
    }
    let problems = baton.log_problems(10);
    if !problems.is_empty() {
        println!("\nbaton logged problems (first {}):", problems.len());
        for p in problems {
            println!("  {p}");
        }
    }
    println!("load average after the run: {}", common::load_average());
}

fn per_thousand(cpu: f64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        cpu * 1000.0 * 1000.0 / calls as f64
    }
}

/// SIPp's built-in UAS on loopback, answering every call.
fn start_uas(dir: &Path, port: u16) -> Child {
    let child = Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &port.to_string(),
            "-mp",
            &free_media_port().to_string(),
        ])
        .arg("-nostdin")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp (install sip-tester)");
    thread::sleep(Duration::from_millis(500));
    child
}

/// An even UDP port above baton's RTP range where SIPp can bind its media sockets (it takes
/// the port and the next three: RTP and RTCP for audio and video).
fn free_media_port() -> u16 {
    (65000..65500)
        .step_by(4)
        .find(|&p| (p..p + 4).all(|q| UdpSocket::bind(("127.0.0.1", q)).is_ok()))
        .expect("a free media port for SIPp between 65000 and 65500")
}

fn run_step(dir: &Path, server: &Server<'_>, rate: u32, secs: u32, pause_ms: u32) -> Step {
    let calls = u64::from(rate) * u64::from(secs);
    let stf = dir.join(format!("{}-{rate}.csv", server.name));
    let _ = fs::remove_file(&stf);
    let before = server.baton.map(|b| b.metrics()).unwrap_or_default();
    let cpu_before = cpu_secs(server.pid);
    let mut child = Command::new("sipp")
        .args(["-sn", "uac", "-s", server.service, "-t", "u1"])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-mp", &free_media_port().to_string()])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-d", &pause_ms.to_string(), "-nostdin"])
        .args(["-timeout", &format!("{}s", secs + 60)])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stf)
        .arg(server.addr.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 90);
    let mut client_cpu = 0.0;
    let exit = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code().map_or("signal".into(), |c| c.to_string()),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break "killed at deadline".into();
            }
            Ok(None) => {
                client_cpu = cpu_secs(pid).max(client_cpu);
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break format!("wait failed: {e}"),
        }
    };
    let server_cpu = cpu_secs(server.pid) - cpu_before;
    let server_5xx = server.baton.map_or(String::new(), |b| {
        let after = b.metrics();
        let mut codes = Vec::new();
        for code in 500..600 {
            let series = format!("baton_sip_responses_total{{code=\"{code}\",direction=\"out\"}}");
            let n = metric(&after, &series) - metric(&before, &series);
            if n > 0.0 {
                codes.push(format!("{code}:{n}"));
            }
        }
        codes.join(" ")
    });
    let mut step = read_stats(&stf);
    step.target = rate;
    step.exit = exit;
    step.server_cpu = server_cpu;
    step.client_cpu = client_cpu;
    step.server_rss = rss_kib(server.pid);
    step.server_5xx = server_5xx;
    step
}

/// Reads the last line of a SIPp `-trace_stat` file.
fn read_stats(path: &Path) -> Step {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Step::default();
    };
    let Some(last) = lines.last() else {
        return Step::default();
    };
    let row: HashMap<&str, &str> = header.split(';').zip(last.split(';')).collect();
    let count = |k: &str| {
        row.get(k)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Time columns read "2026-11-23\t23:02:27.070518\t1795474947.070518": the last field is
    // the Unix time with microseconds.
    let epoch = |k: &str| {
        row.get(k)
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Step {
        attempted: count("OutgoingCall(C)"),
        successful: count("SuccessfulCall(C)"),
        failed: count("FailedCall(C)"),
        retransmissions: count("Retransmissions(C)"),
        elapsed: epoch("CurrentTime") - epoch("StartTime"),
        response_ms: row.get("ResponseTime1(C)").map_or(0.0, |v| duration_ms(v)),
        ..Step::default()
    }
}

/// SIPp's "HH:MM:SS:uuuuuu" durations, in milliseconds.
fn duration_ms(v: &str) -> f64 {
    let parts: Vec<f64> = v.split(':').filter_map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [h, m, s, us] => ((h * 60.0 + m) * 60.0 + s) * 1000.0 + us / 1000.0,
        _ => 0.0,
    }
}
