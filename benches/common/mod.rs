//! What both benchmarks share: a release baton on loopback ports with a config that lets
//! load through, figures read from /proc, the HTTP API, and a few run parameters.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

#[path = "../../tests/common/ports.rs"]
mod ports;
use ports::free_tcp_port;
pub use ports::free_udp_tcp_port;

/// Clock ticks per second of /proc/PID/stat CPU times (USER_HZ, 100 on every Linux port).
pub const TICKS_PER_SEC: f64 = 100.0;

/// A run parameter from the environment, or its default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list parameter from the environment, or its default.
pub fn env_list(name: &str, default: &[u32]) -> Vec<u32> {
    match std::env::var(name) {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

/// A fresh, empty directory for one benchmark run.
pub fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-bench-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(0.0, |s| stat_cpu_secs(&s))
}

/// CPU time (user + system) in seconds from the text of a /proc `stat` file, a process's
/// or one thread's (/proc/PID/task/TID/stat).
pub fn stat_cpu_secs(stat: &str) -> f64 {
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the man page (utime, stime) are 12 and 13 after the name.
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / TICKS_PER_SEC
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The machine as the report should describe it: CPU model, cores, load average.
pub fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores, load average {}", load_average())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Sends a GET to the API and returns the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no header end in {} bytes", raw.len()))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "GET {path}: {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A counter or gauge from Prometheus text: the sum of every series whose name and labels
/// start with `series` (so `baton_sip_responses_total{code="5` adds up all 5xx).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// A `baton serve` started from the release binary on free loopback ports; killed on drop.
pub struct Baton {
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Baton {
    /// Starts baton with the shipped dialplans and prompts, the INVITE rate limit off and
    /// room for `max_calls` calls, RTP on `rtp_ports`, and waits until `/healthz` says 200.
    pub fn start(dir: &Path, max_calls: u32, rtp_ports: (u16, u16)) -> Baton {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        Baton::start_with(dir, max_calls, rtp_ports, "", &repo.join("dialplans"))
    }

    /// As [`Baton::start`], with `extra` appended to the config (agents, say) and the
    /// dialplans of `dialplans`.
    pub fn start_with(
        dir: &Path,
        max_calls: u32,
        rtp_ports: (u16, u16),
        extra: &str,
        dialplans: &Path,
    ) -> Baton {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let config = dir.join("baton.toml");
        fs::write(
            &config,
            format!(
                "max_calls = {max_calls}\n\
                 invite_rate_limit = {{ per_source_per_sec = 0 }}\n{extra}"
            ),
        )
        .expect("write config");
        for attempt in 1..=3 {
            let sip = SocketAddr::from(([127, 0, 0, 1], free_udp_tcp_port()));
            let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
            let log = dir.join(format!("baton-{attempt}.log"));
            let log_file = fs::File::create(&log).expect("create baton log");
            let child = Command::new(env!("CARGO_BIN_EXE_baton"))
                .arg("serve")
                .env(
                    "BATON_WHISPER_MODEL",
                    std::env::var_os("BATON_WHISPER_MODEL")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| repo.join("models/ggml-tiny.en.bin")),
                )
                .arg("--config")
                .arg(&config)
                .args(["--sip", &sip.to_string()])
                .args(["--http", &http.to_string()])
                .args(["--rtp-ports", &format!("{}-{}", rtp_ports.0, rtp_ports.1)])
                .arg("--dialplans")
                .arg(dialplans)
                .arg("--media")
                .arg(repo.join("media"))
                .arg("--data")
                .arg(&data)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", env!("CARGO_BIN_EXE_baton")));
            let mut baton = Baton {
                sip,
                http,
                log,
                child,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if http_get(http, "/healthz").is_ok() {
                    return baton;
                }
                if let Ok(Some(_)) = baton.child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let text = fs::read_to_string(&baton.log).unwrap_or_default();
            if !text.contains("in use") || attempt == 3 {
                panic!(
                    "baton did not come up; log {}:\n{text}",
                    baton.log.display()
                );
            }
        }
        unreachable!("the loop above returns or panics on its last attempt")
    }

    /// The process id, for /proc figures.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics").unwrap_or_else(|e| panic!("baton metrics: {e}"))
    }

    /// Whether the process is still running (a crash under load is a result to report);
    /// an exited child stays a zombie until dropped, so its state is read from /proc.
    pub fn alive(&self) -> bool {
        fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with(['R', 'S', 'D']))
            })
            .unwrap_or(false)
    }

    /// Log lines at WARN or ERROR, at most `n`, for the report.
    pub fn log_problems(&self, n: usize) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .take(n)
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints rows as an aligned table with a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.to_vec());
    println!(
        "|{}|",
        width
            .iter()
            .map(|w| format!("{}:", "-".repeat(w + 1)))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
