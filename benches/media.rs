//! Media capacity: N concurrent calls to baton's `echo` plan, each streaming 20 ms PCMU both
//! ways. The bench is the caller: it sets the calls up over SIP/UDP itself, sends paced RTP
//! from a few threads, receives what baton sends back, and counts loss both ways, the added
//! jitter of baton's stream (arrival against one packet per 20 ms by sequence number) and
//! baton's CPU and RSS in the steady state. N rises until a step loses a packet or its p99 added jitter reaches
//! 5 ms; the largest good N is then run for the final duration, and rtpengine (userspace)
//! relays the same number of streams as the reference.
//!
//! Parameters (environment): `BENCH_MEDIA_COUNTS` (comma-separated N), `BENCH_MEDIA_STEP_SECS`
//! (measured seconds per search step), `BENCH_MEDIA_FINAL_SECS` (measured seconds of the
//! final runs), `BENCH_MEDIA_WARMUP_SECS` (streaming before measuring; covers the echo
//! plan's prompt), `BENCH_MEDIA_RTPENGINE=0` to skip the reference.

mod common;
#[path = "common/rtp.rs"]
mod rtp;
#[path = "common/uac.rs"]
mod uac;

use common::{cpu_secs, env_list, env_or, metric, print_table, rss_kib, Baton};
use rtp::{pace, rtp_socket, tone, udp_drops, ulaw_decode, Paced, PTIME, SAMPLES};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use uac::{pcmu_sdp, sdp_media, Offer, Uac};

/// Threads that send (each with a receiving twin and one UDP socket).
const WORKERS: usize = 2;
/// The p99 added jitter a passing step stays under, in microseconds.
const MAX_P99_JITTER_US: i64 = 5_000;
/// Where the servers under test take RTP ports: above the kernel's ephemeral range, so
/// that no other program's port-0 socket lands in it.
const SERVER_PORTS: (u16, u16) = (61000, 65498);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let counts = env_list(
        "BENCH_MEDIA_COUNTS",
        &[100, 200, 300, 400, 500, 750, 1000, 1500, 2000],
    );
    let step_secs: u64 = env_or("BENCH_MEDIA_STEP_SECS", 20);
    let final_secs: u64 = env_or("BENCH_MEDIA_FINAL_SECS", 60);
    let warmup_secs: u64 = env_or("BENCH_MEDIA_WARMUP_SECS", 8);
    let with_rtpengine = env_or("BENCH_MEDIA_RTPENGINE", 1) != 0;
    let dir = common::run_dir("media");
    println!("media benchmark: {}", common::machine());
    println!(
        "search steps {step_secs} s, final {final_secs} s, each after {warmup_secs} s of warm-up; N = {counts:?}; work dir {}",
        dir.display()
    );

    let mut results = Vec::new();
    let mut best = None;
    for &n in &counts {
        let r = run_baton(&dir, n, warmup_secs, step_secs);
        println!("{}", r.summary());
        let pass = r.pass();
        results.push(r);
        if !pass {
            break;
        }
        best = Some(n);
    }
    let mut finals = Vec::new();
    match best {
        Some(n) => {
            let r = run_baton(&dir, n, warmup_secs, final_secs);
            println!("{}", r.summary());
            finals.push(r);
            if with_rtpengine {
                match run_rtpengine(&dir, n, warmup_secs, final_secs) {
                    Ok(r) => {
                        println!("{}", r.summary());
                        finals.push(r);
                    }
                    Err(e) => println!("rtpengine reference not measured: {e}"),
                }
            }
        }
        None => println!("no step passed"),
    }

    println!("\nsearch steps ({step_secs} s measured each):");
    print_table(
        &Run::HEADER,
        &results.iter().map(Run::row).collect::<Vec<_>>(),
    );
    if !finals.is_empty() {
        println!("\nfinal runs ({final_secs} s measured):");
        print_table(
            &Run::HEADER,
            &finals.iter().map(Run::row).collect::<Vec<_>>(),
        );
    }
    if let [b, e] = finals.as_slice() {
        if b.streams > 0 && e.streams > 0 && e.cpu_per_stream() > 0.0 {
            println!(
                "\nCPU per stream: baton {:.3} %, rtpengine {:.3} %: baton / rtpengine = {:.2}",
                b.cpu_per_stream(),
                e.cpu_per_stream(),
                b.cpu_per_stream() / e.cpu_per_stream()
            );
            println!(
                "RSS per stream: baton {:.0} KiB, rtpengine {:.0} KiB",
                b.rss_per_stream(),
                e.rss_per_stream()
            );
        }
    }
    println!("load average after the run: {}", common::load_average());
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    server: &'static str,
    /// Streams the server received and sent (baton: one per call; rtpengine: two per call).
    streams: usize,
    calls_set_up: usize,
    setup_errors: Vec<String>,
    /// Packets the bench sent and the server did not take in.
    lost_up: i64,
    /// Packets the server sent and the bench did not receive.
    lost_down: i64,
    /// Datagrams the kernel dropped on the bench's sockets and on the server's.
    drops_bench: u64,
    drops_server: u64,
    jitter_p50_us: i64,
    jitter_p99_us: i64,
    jitter_max_us: i64,
    /// Share of baton's echoed packets that carry the bench's tone (0 for the relay).
    audible: f64,
    /// Server CPU, percent of one core, over the measured window.
    cpu_pct: f64,
    bench_cpu_pct: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    /// Packets the senders sent more than 1 ms after their slot.
    late_sends: u64,
    /// Returning packets whose RTP timestamp did not follow the previous one by 160.
    ts_jumps: u64,
    /// The most any returning stream's RTP clock ran ahead of its packets, in ms.
    ts_ahead_ms: i64,
    sent: u64,
    server_hangups: u64,
    alive: bool,
    notes: Vec<String>,
}

impl Run {
    const HEADER: [&'static str; 15] = [
        "server",
        "streams",
        "set up",
        "lost up",
        "lost down",
        "drops bench/server",
        "jitter p50 ms",
        "jitter p99 ms",
        "jitter max ms",
        "echo audible %",
        "CPU %",
        "CPU %/stream",
        "RSS MiB",
        "RSS KiB/stream",
        "pass",
    ];

    fn pass(&self) -> bool {
        self.alive
            && self.calls_set_up * self.streams_per_call() == self.streams
            && self.setup_errors.is_empty()
            && self.lost_up == 0
            && self.lost_down == 0
            && self.server_hangups == 0
            && self.jitter_p99_us < MAX_P99_JITTER_US
    }

    fn streams_per_call(&self) -> usize {
        if self.server == "rtpengine" {
            2
        } else {
            1
        }
    }

    fn cpu_per_stream(&self) -> f64 {
        self.cpu_pct / self.streams.max(1) as f64
    }

    fn rss_per_stream(&self) -> f64 {
        self.rss_peak_kib.saturating_sub(self.rss_before_kib) as f64 / self.streams.max(1) as f64
    }

    fn row(&self) -> Vec<String> {
        let ms = |us: i64| format!("{:.2}", us as f64 / 1000.0);
        vec![
            self.server.to_owned(),
            self.streams.to_string(),
            self.calls_set_up.to_string(),
            self.lost_up.to_string(),
            self.lost_down.to_string(),
            format!("{}/{}", self.drops_bench, self.drops_server),
            ms(self.jitter_p50_us),
            ms(self.jitter_p99_us),
            ms(self.jitter_max_us),
            format!("{:.1}", self.audible * 100.0),
            format!("{:.1}", self.cpu_pct),
            format!("{:.3}", self.cpu_per_stream()),
            format!("{:.1}", self.rss_peak_kib as f64 / 1024.0),
            format!("{:.0}", self.rss_per_stream()),
            if self.pass() { "yes" } else { "no" }.to_owned(),
        ]
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} x{}: set up {}, sent {}, lost up {} down {}, kernel drops bench {} server {}, \
             jitter p50/p99/max {:.2}/{:.2}/{:.2} ms, echo audible {:.1} %, CPU {:.1} % \
             (bench {:.1} %), RSS {} -> {} KiB, late sends {}, RTP timestamp jumps {} (clock up to {} ms ahead), \
             server hang-ups {}, {}",
            self.server,
            self.streams,
            self.calls_set_up,
            self.sent,
            self.lost_up,
            self.lost_down,
            self.drops_bench,
            self.drops_server,
            self.jitter_p50_us as f64 / 1000.0,
            self.jitter_p99_us as f64 / 1000.0,
            self.jitter_max_us as f64 / 1000.0,
            self.audible * 100.0,
            self.cpu_pct,
            self.bench_cpu_pct,
            self.rss_before_kib,
            self.rss_peak_kib,
            self.late_sends,
            self.ts_jumps,
            self.ts_ahead_ms,
            self.server_hangups,
            if self.pass() { "PASS" } else { "FAIL" }
        );
        for e in self.setup_errors.iter().take(5) {
            s.push_str(&format!("\n  set-up error: {e}"));
        }
        for n in &self.notes {
            s.push_str(&format!("\n  {n}"));
        }
        s
    }
}

// ---------------------------------------------------------------------------------------
// Baton: the bench calls the echo plan.

fn run_baton(dir: &Path, n: u32, warmup_secs: u64, secs: u64) -> Run {
    let n = n as usize;
    let baton = Baton::start(dir, (n as u32 + 100).max(4000), SERVER_PORTS);
    let pid = baton.pid();
    let mut run = Run {
        server: "baton",
        ..Run::default()
    };
    thread::sleep(Duration::from_millis(300));
    run.rss_before_kib = rss_kib(pid);
    let metrics_before = baton.metrics();
    let gen = Generator::new(Mode::Echo);
    let drops_before = (gen.drops(), udp_drops(is_server_port));
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket");
    let mut ua = Uac::new(sip, baton.sip);
    let setup_deadline = Instant::now() + Duration::from_secs(30 + n as u64 / 50);
    let offers: Vec<Offer> = (0..n)
        .map(|i| Offer {
            user: "echo".to_owned(),
            rtp_port: gen.local_port(i),
        })
        .collect();
    let calls = ua.set_up(&offers, setup_deadline, |idx, media| {
        gen.expect_from(idx % WORKERS, media.port(), idx);
    });
    run.calls_set_up = calls.iter().filter(|c| c.is_some()).count();
    run.setup_errors = std::mem::take(&mut ua.errors);
    let streams: Vec<StreamPlan> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.as_ref().map(|d| StreamPlan {
                index: i,
                worker: i % WORKERS,
                dest: d.media,
            })
        })
        .collect();
    run.streams = n;

    let cpu = gen.stream(&streams, pid, warmup_secs, secs, || {
        ua.serve_requests(Duration::from_millis(100));
    });
    run.cpu_pct = cpu.server_pct;
    run.bench_cpu_pct = cpu.bench_pct;
    run.rss_peak_kib = cpu.server_rss_peak;

    // Packets still in flight reach baton before the BYE does.
    thread::sleep(Duration::from_millis(300));
    ua.tear_down(
        &calls,
        Instant::now() + Duration::from_secs(30 + n as u64 / 50),
    );
    run.setup_errors.append(&mut ua.errors);
    run.server_hangups = ua.hangups;
    // Calls publish their packet counts when they end.
    let end_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end_deadline && baton.alive() {
        if metric(&baton.metrics(), "baton_active_calls ") == 0.0 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    let rx = gen.finish();
    run.alive = baton.alive();
    if !run.alive {
        run.notes.push(format!(
            "baton exited during the run; log {}",
            baton.log.display()
        ));
        return run;
    }
    let after = baton.metrics();
    let delta = |series: &str| (metric(&after, series) - metric(&metrics_before, series)) as i64;
    let packets_in = delta("baton_rtp_packets_total{direction=\"in\"}");
    let packets_out = delta("baton_rtp_packets_total{direction=\"out\"}");
    run.sent = rx.sent;
    run.lost_up = rx.sent as i64 - packets_in;
    run.lost_down = packets_out - rx.received as i64;
    run.drops_bench = rx.drops.saturating_sub(drops_before.0);
    run.drops_server = udp_drops(is_server_port).saturating_sub(drops_before.1);
    (run.jitter_p50_us, run.jitter_p99_us, run.jitter_max_us) = rx.jitter;
    run.audible = rx.audible;
    run.late_sends = rx.late_sends;
    run.ts_jumps = rx.ts_jumps;
    run.ts_ahead_ms = rx.ts_ahead_ms;
    let baton_lost = delta("baton_rtp_lost_packets_total");
    if baton_lost != 0 || run.lost_up != 0 || run.lost_down != 0 {
        run.notes.push(format!(
            "baton counted {packets_in} packets in ({baton_lost} lost by sequence), {packets_out} out; \
             the bench sent {} and received {}",
            rx.sent, rx.received
        ));
    }
    let active = metric(&after, "baton_active_calls ");
    if active != 0.0 {
        run.notes
            .push(format!("{active} calls still active after the BYEs"));
    }
    for p in baton.log_problems(5) {
        run.notes.push(format!("baton log: {p}"));
    }
    run
}

// ---------------------------------------------------------------------------------------
// rtpengine: the bench is both ends of each call and the relay sits in the middle.

fn run_rtpengine(dir: &Path, streams: u32, warmup_secs: u64, secs: u64) -> Result<Run, String> {
    let calls = (streams / 2) as usize;
    let ng_port = common::free_udp_tcp_port();
    let log = dir.join("rtpengine.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new("rtpengine")
        .args([
            "--config-file=none",
            "--table=-1",
            "--foreground",
            "--log-stderr",
        ])
        .arg("--interface=127.0.0.1")
        .arg(format!("--listen-ng=127.0.0.1:{ng_port}"))
        .arg(format!("--port-min={}", SERVER_PORTS.0))
        .arg(format!("--port-max={}", SERVER_PORTS.1))
        .arg("--log-level=4")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start rtpengine (install rtpengine-daemon): {e}"))?;
    let mut relay = Relay(child);
    let pid = relay.0.id();
    let ng = Ng::new(SocketAddr::from(([127, 0, 0, 1], ng_port)))?;
    let up = Instant::now() + Duration::from_secs(10);
    loop {
        match ng.command(&[("command", Ben::str("ping"))]) {
            Ok(_) => break,
            Err(e) if Instant::now() > up => {
                return Err(format!("rtpengine does not answer ping: {e}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
    let mut run = Run {
        server: "rtpengine",
        streams: calls * 2,
        ..Run::default()
    };
    thread::sleep(Duration::from_millis(300));
    run.rss_before_kib = rss_kib(pid);
    // Stream 2c goes A -> B and 2c+1 goes B -> A; A's socket is worker 0's, B's worker 1's.
    let gen = Generator::new(Mode::Relay);
    let drops_before = (gen.drops(), udp_drops(is_server_port));
    let (a, b) = (gen.local_port(0), gen.local_port(1));
    let mut plans = Vec::new();
    let tag = std::process::id();
    for c in 0..calls {
        let call_id = format!("bench-{tag}-{c}");
        let offer = ng.command(&[
            ("command", Ben::str("offer")),
            ("call-id", Ben::str(&call_id)),
            ("from-tag", Ben::str(&format!("a{c}"))),
            ("sdp", Ben::str(&pcmu_sdp(a, c))),
            ("ICE", Ben::str("remove")),
        ]);
        let answer = offer.and_then(|to_b| {
            let towards_b = sdp_media(&to_b).ok_or("offer answer without SDP address")?;
            let to_a = ng.command(&[
                ("command", Ben::str("answer")),
                ("call-id", Ben::str(&call_id)),
                ("from-tag", Ben::str(&format!("a{c}"))),
                ("to-tag", Ben::str(&format!("b{c}"))),
                ("sdp", Ben::str(&pcmu_sdp(b, c))),
                ("ICE", Ben::str("remove")),
            ])?;
            let towards_a = sdp_media(&to_a).ok_or("answer answer without SDP address")?;
            Ok::<_, String>((towards_a, towards_b))
        });
        match answer {
            Ok((towards_a, towards_b)) => {
                // A sends to the port rtpengine gave A; B receives it from the port given B.
                gen.expect_from(1, towards_b.port(), 2 * c);
                gen.expect_from(0, towards_a.port(), 2 * c + 1);
                plans.push(StreamPlan {
                    index: 2 * c,
                    worker: 0,
                    dest: towards_a,
                });
                plans.push(StreamPlan {
                    index: 2 * c + 1,
                    worker: 1,
                    dest: towards_b,
                });
                run.calls_set_up += 1;
            }
            Err(e) => run.setup_errors.push(format!("call {c}: {e}")),
        }
    }
    let cpu = gen.stream(&plans, pid, warmup_secs, secs, || {
        thread::sleep(Duration::from_millis(100));
    });
    run.cpu_pct = cpu.server_pct;
    run.bench_cpu_pct = cpu.bench_pct;
    run.rss_peak_kib = cpu.server_rss_peak;
    thread::sleep(Duration::from_millis(300));
    let rx = gen.finish();
    for c in 0..calls {
        let _ = ng.command(&[
            ("command", Ben::str("delete")),
            ("call-id", Ben::str(&format!("bench-{tag}-{c}"))),
            ("from-tag", Ben::str(&format!("a{c}"))),
        ]);
    }
    run.alive = matches!(relay.0.try_wait(), Ok(None));
    run.sent = rx.sent;
    run.lost_up = 0;
    run.lost_down = rx.sent as i64 - rx.received as i64;
    run.drops_bench = rx.drops.saturating_sub(drops_before.0);
    run.drops_server = udp_drops(is_server_port).saturating_sub(drops_before.1);
    (run.jitter_p50_us, run.jitter_p99_us, run.jitter_max_us) = rx.jitter;
    run.late_sends = rx.late_sends;
    run.notes
        .push("rtpengine: lost down = relayed packets the bench sent and did not get back".into());
    Ok(run)
}

/// The rtpengine process, stopped when dropped.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The values of rtpengine's ng protocol (bencode).
enum Ben {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Ben>),
    Dict(Vec<(Vec<u8>, Ben)>),
}

impl Ben {
    fn str(s: &str) -> Ben {
        Ben::Bytes(s.as_bytes().to_vec())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Ben::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Ben::List(items) => {
                out.push(b'l');
                for i in items {
                    i.encode(out);
                }
                out.push(b'e');
            }
            Ben::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    Ben::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value from the front of `input`; returns it and what follows.
    fn decode(input: &[u8], depth: u32) -> Result<(Ben, &[u8]), String> {
        if depth > 16 {
            return Err("bencode nested too deeply".into());
        }
        match input.first() {
            Some(b'i') => {
                let end = input
                    .iter()
                    .position(|&c| c == b'e')
                    .ok_or("unterminated integer")?;
                let text = std::str::from_utf8(&input[1..end]).map_err(|e| e.to_string())?;
                let i = text.parse().map_err(|_| format!("bad integer {text:?}"))?;
                Ok((Ben::Int(i), &input[end + 1..]))
            }
            Some(b'l') => {
                let mut rest = &input[1..];
                let mut items = Vec::new();
                while rest.first() != Some(&b'e') {
                    let (item, r) = Ben::decode(rest, depth + 1)?;
                    items.push(item);
                    rest = r;
                }
                Ok((Ben::List(items), &rest[1..]))
            }
            Some(b'd') => {
                let mut rest = &input[1..];
                let mut entries = Vec::new();
                while rest.first() != Some(&b'e') {
                    let (Ben::Bytes(k), r) = Ben::decode(rest, depth + 1)? else {
                        return Err("dictionary key is not a string".into());
                    };
                    let (v, r) = Ben::decode(r, depth + 1)?;
                    entries.push((k, v));
                    rest = r;
                }
                Ok((Ben::Dict(entries), &rest[1..]))
            }
            Some(c) if c.is_ascii_digit() => {
                let colon = input
                    .iter()
                    .position(|&c| c == b':')
                    .ok_or("string without length")?;
                let text = std::str::from_utf8(&input[..colon]).map_err(|e| e.to_string())?;
                let len: usize = text.parse().map_err(|_| format!("bad length {text:?}"))?;
                let body = input
                    .get(colon + 1..colon + 1 + len)
                    .ok_or("string runs past the end")?;
                Ok((Ben::Bytes(body.to_vec()), &input[colon + 1 + len..]))
            }
            _ => Err("not bencode".into()),
        }
    }

    fn get(&self, key: &str) -> Option<&Ben> {
        match self {
            Ben::Dict(entries) => entries
                .iter()
                .find(|(k, _)| k.as_slice() == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match self {
            Ben::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Ben::Int(i) => i.to_string(),
            Ben::List(_) | Ben::Dict(_) => String::new(),
        }
    }
}

/// A client of rtpengine's ng control protocol over UDP.
struct Ng {
    sock: UdpSocket,
    server: SocketAddr,
    cookie: AtomicU64,
}

impl Ng {
    fn new(server: SocketAddr) -> Result<Ng, String> {
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        Ok(Ng {
            sock,
            server,
            cookie: AtomicU64::new(1),
        })
    }

    /// Sends one command and returns the SDP of the reply (empty when it has none).
    fn command(&self, args: &[(&str, Ben)]) -> Result<String, String> {
        let cookie = format!("c{}", self.cookie.fetch_add(1, Ordering::Relaxed));
        let mut msg = format!("{cookie} ").into_bytes();
        let dict: Vec<(Vec<u8>, Ben)> = args
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), clone_ben(v)))
            .collect();
        Ben::Dict(dict).encode(&mut msg);
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            self.sock
                .send_to(&msg, self.server)
                .map_err(|e| format!("send to rtpengine: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let Ok((len, _)) = self.sock.recv_from(&mut buf) else {
                    break;
                };
                let reply = &buf[..len];
                let Some(space) = reply.iter().position(|&c| c == b' ') else {
                    continue;
                };
                if &reply[..space] != cookie.as_bytes() {
                    continue;
                }
                let (value, _) = Ben::decode(&reply[space + 1..], 0)?;
                let result = value.get("result").map(Ben::text).unwrap_or_default();
                if result != "ok" && result != "pong" {
                    let why = value.get("error-reason").map(Ben::text).unwrap_or_default();
                    return Err(format!("rtpengine said {result}: {why}"));
                }
                return Ok(value.get("sdp").map(Ben::text).unwrap_or_default());
            }
        }
        Err("rtpengine did not answer".into())
    }
}

fn clone_ben(b: &Ben) -> Ben {
    match b {
        Ben::Int(i) => Ben::Int(*i),
        Ben::Bytes(v) => Ben::Bytes(v.clone()),
        Ben::List(items) => Ben::List(items.iter().map(clone_ben).collect()),
        Ben::Dict(entries) => Ben::Dict(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), clone_ben(v)))
                .collect(),
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The RTP generator: paced senders, timestamping receivers.

/// How returning packets are timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Baton sends its own stream: arrival is compared with one packet per 20 ms.
    Echo,
    /// A relay forwards the bench's packets: arrival is compared with the send time the
    /// bench wrote into the payload.
    Relay,
}

/// One stream the bench sends: from worker `worker`'s socket to `dest`.
struct StreamPlan {
    index: usize,
    worker: usize,
    dest: SocketAddr,
}

struct Generator {
    mode: Mode,
    sockets: Vec<UdpSocket>,
    /// Source port of returning packets -> stream index + 1 (0: unknown), per worker.
    demux: Arc<Vec<AtomicU32>>,
    stop: Arc<AtomicBool>,
    receivers: Vec<thread::JoinHandle<RxStats>>,
    sent: Arc<AtomicU64>,
    late: Arc<AtomicU64>,
    window: Arc<(AtomicU64, AtomicU64)>,
}

/// CPU and memory over the measured window.
struct Usage {
    server_pct: f64,
    bench_pct: f64,
    server_rss_peak: u64,
}

/// What the window of a streaming run saw, to be turned into CPU figures.
struct Window {
    start: Instant,
    end: Instant,
    server_cpu: (f64, f64),
    bench_cpu: (f64, f64),
    rss_peak: u64,
}

impl Window {
    fn usage(&self) -> Usage {
        let secs = self.end.duration_since(self.start).as_secs_f64().max(0.001);
        Usage {
            server_pct: (self.server_cpu.1 - self.server_cpu.0) / secs * 100.0,
            bench_pct: (self.bench_cpu.1 - self.bench_cpu.0) / secs * 100.0,
            server_rss_peak: self.rss_peak,
        }
    }
}

/// What the receivers counted.
struct RxResult {
    sent: u64,
    received: u64,
    jitter: (i64, i64, i64),
    audible: f64,
    late_sends: u64,
    drops: u64,
    ts_jumps: u64,
    ts_ahead_ms: i64,
}

#[derive(Default)]
struct RxStats {
    received: u64,
    audible: u64,
    window_packets: u64,
    /// Consecutive packets whose RTP timestamps do not differ by one packet's samples.
    ts_jumps: u64,
    /// Per stream: the first sequence number, the last (sequence, timestamp), and the
    /// transit times in the window (µs).
    first_seq: HashMap<usize, u16>,
    last: HashMap<usize, (u16, u32)>,
    /// How far each stream's RTP clock ran ahead of its packet count, in samples.
    ts_ahead: HashMap<usize, i64>,
    transits: HashMap<usize, Vec<i64>>,
}

impl Generator {
    fn new(mode: Mode) -> Generator {
        let sockets: Vec<UdpSocket> = (0..WORKERS).map(|_| rtp_socket()).collect();
        Generator {
            mode,
            sockets,
            demux: Arc::new((0..WORKERS * 65536).map(|_| AtomicU32::new(0)).collect()),
            stop: Arc::new(AtomicBool::new(false)),
            receivers: Vec::new(),
            sent: Arc::new(AtomicU64::new(0)),
            late: Arc::new(AtomicU64::new(0)),
            window: Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX))),
        }
        .with_receivers()
    }

    fn with_receivers(mut self) -> Generator {
        for (w, sock) in self.sockets.iter().enumerate() {
            let sock = sock.try_clone().expect("clone RTP socket");
            let demux = self.demux.clone();
            let stop = self.stop.clone();
            let window = self.window.clone();
            let mode = self.mode;
            self.receivers.push(thread::spawn(move || {
                receive(&sock, w, &demux, &stop, &window, mode)
            }));
        }
        self
    }

    /// The local RTP port stream `i` uses in its SDP.
    fn local_port(&self, i: usize) -> u16 {
        self.sockets[i % WORKERS]
            .local_addr()
            .map_or(0, |a| a.port())
    }

    /// Routes packets arriving on worker `w`'s socket from `port` to stream `i`.
    fn expect_from(&self, w: usize, port: u16, i: usize) {
        self.demux[w * 65536 + usize::from(port)].store(i as u32 + 1, Ordering::Relaxed);
    }

    /// Sends every planned stream for `warmup + secs` seconds, paced from one thread per
    /// worker; `tick` runs on this thread meanwhile and should return within ~100 ms. The
    /// CPU and memory of process `pid` are measured over the last `secs` seconds.
    fn stream(
        &self,
        plans: &[StreamPlan],
        pid: u32,
        warmup: u64,
        secs: u64,
        mut tick: impl FnMut(),
    ) -> Usage {
        let n = plans.len().max(1);
        let rounds = (warmup + secs) * 1000 / PTIME.as_millis() as u64;
        let start = Instant::now() + Duration::from_millis(200);
        let window_start = start + Duration::from_secs(warmup);
        let window_end = window_start + Duration::from_secs(secs);
        let (now_wall, now) = (wall_us(), Instant::now());
        let us = |t: Instant| (now_wall + t.duration_since(now).as_micros() as i64) as u64;
        self.window.0.store(us(window_start), Ordering::Relaxed);
        self.window.1.store(us(window_end), Ordering::Relaxed);
        let mut senders = Vec::new();
        for w in 0..WORKERS {
            let mine: Vec<Paced> = plans
                .iter()
                .enumerate()
                .filter(|(_, p)| p.worker == w)
                .map(|(k, p)| Paced {
                    index: p.index,
                    dest: p.dest,
                    phase: PTIME * k as u32 / n as u32,
                })
                .collect();
            let sock = self.sockets[w].try_clone().expect("clone RTP socket");
            let (sent, late, mode) = (self.sent.clone(), self.late.clone(), self.mode);
            let stop = self.stop.clone();
            senders.push(thread::spawn(move || {
                let tone = tone();
                let count = pace(&sock, &mine, start, rounds, &stop, |_, _, payload| {
                    payload.copy_from_slice(&tone);
                    if mode == Mode::Relay {
                        payload[..8].copy_from_slice(&(wall_us() as u64).to_be_bytes());
                    }
                });
                sent.fetch_add(count.sent, Ordering::Relaxed);
                late.fetch_add(count.late, Ordering::Relaxed);
            }));
        }
        let deadline = window_end + Duration::from_secs(5);
        let mut win = Window {
            start: window_start,
            end: window_end,
            server_cpu: (0.0, 0.0),
            bench_cpu: (0.0, 0.0),
            rss_peak: 0,
        };
        let mut started = false;
        while Instant::now() < deadline {
            let now = Instant::now();
            if !started && now >= window_start {
                started = true;
                win.start = now;
                win.server_cpu.0 = cpu_secs(pid);
                win.bench_cpu.0 = cpu_secs(std::process::id());
            }
            if started {
                win.rss_peak = win.rss_peak.max(rss_kib(pid));
            }
            if now >= window_end {
                win.end = now;
                win.server_cpu.1 = cpu_secs(pid);
                win.bench_cpu.1 = cpu_secs(std::process::id());
                break;
            }
            tick();
        }
        for s in senders {
            let _ = s.join();
        }
        win.usage()
    }

    /// Datagrams the kernel dropped so far on the bench's RTP sockets.
    fn drops(&self) -> u64 {
        let ports: Vec<u16> = (0..WORKERS).map(|w| self.local_port(w)).collect();
        udp_drops(|p| ports.contains(&p))
    }

    /// Stops the receivers and sums up what they saw.
    fn finish(mut self) -> RxResult {
        let drops = self.drops();
        self.stop.store(true, Ordering::Relaxed);
        let mut received = 0;
        let mut ts_jumps = 0;
        let mut ts_ahead_max = 0;
        let mut audible = 0;
        let mut window_packets = 0;
        let mut all = Vec::new();
        for r in self.receivers.drain(..) {
            let Ok(stats) = r.join() else { continue };
            received += stats.received;
            ts_jumps += stats.ts_jumps;
            ts_ahead_max = stats
                .ts_ahead
                .values()
                .copied()
                .fold(ts_ahead_max, i64::max);
            audible += stats.audible;
            window_packets += stats.window_packets;
            for mut t in stats.transits.into_values() {
                let min = t.iter().copied().min().unwrap_or(0);
                t.iter_mut().for_each(|v| *v -= min);
                all.append(&mut t);
            }
        }
        all.sort_unstable();
        let pick = |q: f64| {
            if all.is_empty() {
                0
            } else {
                all[((all.len() - 1) as f64 * q) as usize]
            }
        };
        RxResult {
            sent: self.sent.load(Ordering::Relaxed),
            received,
            jitter: (pick(0.5), pick(0.99), pick(1.0)),
            audible: if window_packets == 0 {
                0.0
            } else {
                audible as f64 / window_packets as f64
            },
            late_sends: self.late.load(Ordering::Relaxed),
            drops,
            ts_jumps,
            ts_ahead_ms: ts_ahead_max / 8,
        }
    }
}

fn receive(
    sock: &UdpSocket,
    worker: usize,
    demux: &[AtomicU32],
    stop: &AtomicBool,
    window: &(AtomicU64, AtomicU64),
    mode: Mode,
) -> RxStats {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value of the size given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut stats = RxStats::default();
    let mut buf = [0u8; 2048];
    // Bounded: the run's own deadlines stop it long before this.
    let give_up = Instant::now() + Duration::from_secs(3600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
        let Some((len, from, arrival)) = recv_stamped(sock, &mut buf) else {
            continue;
        };
        let Some(slot) = demux.get(worker * 65536 + usize::from(from.port())) else {
            continue;
        };
        let idx = slot.load(Ordering::Relaxed);
        if idx == 0 || len < 12 + 8 {
            continue;
        }
        let stream = idx as usize - 1;
        stats.received += 1;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let first = *stats.first_seq.entry(stream).or_insert(seq);
        if let Some((prev_seq, prev_ts)) = stats.last.insert(stream, (seq, ts)) {
            if seq == prev_seq.wrapping_add(1) && ts.wrapping_sub(prev_ts) != SAMPLES {
                stats.ts_jumps += 1;
                *stats.ts_ahead.entry(stream).or_default() +=
                    i64::from(ts.wrapping_sub(prev_ts) as i32) - i64::from(SAMPLES);
            }
        }
        let (w0, w1) = (
            window.0.load(Ordering::Relaxed) as i64,
            window.1.load(Ordering::Relaxed) as i64,
        );
        if arrival < w0 || arrival > w1 {
            continue;
        }
        stats.window_packets += 1;
        let transit = match mode {
            Mode::Echo => {
                let payload = &buf[12..len];
                let level: i64 = payload
                    .iter()
                    .map(|&b| i64::from(ulaw_decode(b)).abs())
                    .sum::<i64>()
                    / payload.len().max(1) as i64;
                if level > 1000 {
                    stats.audible += 1;
                }
                // Baton's schedule: one packet every 20 ms, by sequence number.
                arrival - i64::from(seq.wrapping_sub(first)) * PTIME.as_micros() as i64
            }
            Mode::Relay => {
                let mut at = [0u8; 8];
                at.copy_from_slice(&buf[12..20]);
                arrival - u64::from_be_bytes(at) as i64
            }
        };
        stats.transits.entry(stream).or_default().push(transit);
    }
    stats
}

/// Wall-clock time in microseconds: the clock of the kernel's receive timestamps.
fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Receives one datagram with the time the kernel queued it (SO_TIMESTAMPNS), so that a
/// receiving thread that runs late does not count as jitter; falls back to the clock now.
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, i64)> {
    // SAFETY: every pointer handed to recvmsg points into a live local buffer of the
    // length given, and the control messages are read only within `msg_controllen`.
    unsafe {
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let len = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
        if len < 0 || i32::from(addr.sin_family) != libc::AF_INET {
            return None;
        }
        let mut arrival = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                arrival = Some(ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr))),
            u16::from_be(addr.sin_port),
        );
        Some((len as usize, from, arrival.unwrap_or_else(wall_us)))
    }
}

// ---------------------------------------------------------------------------------------
// Kernel counters and small things.

fn is_server_port(port: u16) -> bool {
    (SERVER_PORTS.0..=SERVER_PORTS.1).contains(&port)
}
