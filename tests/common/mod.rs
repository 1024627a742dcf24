//! The end-to-end harness: a real `baton serve` process on loopback ports, SIPp as the
//! carrier, espeak-ng and sox for the caller's voice, and small readers for baton's HTTP API
//! and recordings. Everything is bounded in time so a hung server fails a test instead of
//! hanging it.

// Each test file uses a different part of the harness.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub mod browser;
pub mod capture;
pub mod ports;
pub mod softphone;
pub mod tone;
use ports::{free_tcp_port, free_udp_tcp_port};

/// Where the repository's shipped dialplans, prompts and SIPp scenarios live.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The speech model `make model` installs, or the one `BATON_WHISPER_MODEL` names.
pub fn model_path() -> PathBuf {
    std::env::var_os("BATON_WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("models/ggml-tiny.en.bin"))
}

/// How long baton may take to answer `/healthz` after it is started.
const STARTUP: Duration = Duration::from_secs(20);
/// Lines of baton's log shown when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// The SIP transport a test runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t` value: one socket (UDP) or one connection (TCP) for the whole run.
    pub fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }

    /// Lower-case name for file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// A random number that differs between calls, threads and processes (std has no RNG).
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; says whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A random range of 200 ports between 20000 and 60000, starting on an even port.
fn random_rtp_range() -> (u16, u16) {
    let low = 20000 + (random_u64() % 19900) as u16 * 2;
    (low, low + 199)
}

/// An even UDP port below baton's RTP ranges where SIPp can bind its media sockets
/// (it takes the port and the next three: RTP and RTCP for audio and video).
fn free_sipp_media_port() -> u16 {
    for _ in 0..200 {
        let port = 10000 + (random_u64() % 4900) as u16 * 2;
        let all_free = (port..port + 4).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return port;
        }
    }
    panic!("no free media port for SIPp between 10000 and 19999");
}

/// A fresh directory under the system temp dir; tests keep it when they fail.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "baton-test-{name}-{}-{:x}",
        std::process::id(),
        random_u64() & 0xffff_ffff
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The last `n` lines of a text file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How a test wants baton set up: extra dialplans beside the shipped ones, a config file.
pub struct BatonBuilder {
    name: String,
    dialplans: Vec<(String, String)>,
    config: Option<String>,
    token: Option<String>,
}

impl BatonBuilder {
    /// Adds a dialplan file `<stem>.toml` with `toml` as its text, beside copies of the
    /// shipped dialplans.
    pub fn dialplan(mut self, stem: &str, toml: &str) -> Self {
        self.dialplans.push((stem.to_owned(), toml.to_owned()));
        self
    }

    /// Starts baton with a config file holding `toml` (passed as `--config FILE`).
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// The bearer token the harness's own API reads send (for a config with
    /// `[[api_token]]`s).
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    /// Starts baton and waits until `/healthz` answers 200.
    pub fn start(self) -> Baton {
        let dir = temp_dir(&self.name);
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let dialplans = if self.dialplans.is_empty() {
            repo_path("dialplans")
        } else {
            let own = dir.join("dialplans");
            fs::create_dir_all(&own).expect("create dialplans dir");
            for entry in fs::read_dir(repo_path("dialplans")).expect("read shipped dialplans") {
                let path = entry.expect("dialplans entry").path();
                // Dialplans and the data files they name (the bank's customers).
                if path.is_file() {
                    let to = own.join(path.file_name().expect("file name"));
                    fs::copy(&path, &to).expect("copy shipped dialplan");
                }
            }
            for (stem, text) in &self.dialplans {
                fs::write(own.join(format!("{stem}.toml")), text).expect("write dialplan");
            }
            own
        };
        let config = self.config.as_ref().map(|text| {
            let path = dir.join("baton.toml");
            fs::write(&path, text).expect("write config");
            path
        });

        // Another test may grab a port between our probe and baton's bind: try again then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sip = SocketAddr::from(([127, 0, 0, 1], free_udp_tcp_port()));
            let http = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
            let (rtp_low, rtp_high) = random_rtp_range();
            let log = dir.join(format!("baton-{attempt}.log"));
            let log_file = fs::File::create(&log).expect("create baton log");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
            cmd.arg("serve")
                .env("BATON_WHISPER_MODEL", model_path())
                .args(["--sip", &sip.to_string()])
                .args(["--http", &http.to_string()])
                .args(["--rtp-ports", &format!("{rtp_low}-{rtp_high}")])
                .arg("--dialplans")
                .arg(&dialplans)
                .arg("--media")
                .arg(repo_path("media"))
                .arg("--data")
                .arg(&data);
            if let Some(config) = &config {
                cmd.arg("--config").arg(config);
            }
            let child = cmd
                .env(
                    "BATON_LOG",
                    std::env::var("BATON_LOG").unwrap_or_else(|_| "baton=debug,info".to_owned()),
                )
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", env!("CARGO_BIN_EXE_baton")));
            let mut baton = Baton {
                sip,
                http,
                dir: dir.clone(),
                data: data.clone(),
                log,
                child,
                token: self.token.clone(),
            };
            match baton.wait_healthy() {
                Ok(()) => return baton,
                Err(why) => {
                    let text = fs::read_to_string(&baton.log).unwrap_or_default();
                    let port_taken = text.contains("in use") || text.contains("AddrInUse");
                    if port_taken && attempt < 3 {
                        continue;
                    }
                    panic!(
                        "baton did not come up: {why}\nlog {}:\n{}",
                        baton.log.display(),
                        text
                    );
                }
            }
        }
    }
}

/// A running `baton serve` on loopback ports, killed when dropped. Its temp dir (data,
/// recordings, logs, SIPp files) is removed unless the test failed.
pub struct Baton {
    /// Where SIP listens, on UDP and TCP.
    pub sip: SocketAddr,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// The test's temp dir.
    pub dir: PathBuf,
    /// baton's `--data` dir.
    pub data: PathBuf,
    /// baton's stdout and stderr.
    pub log: PathBuf,
    child: Child,
    token: Option<String>,
}

impl Baton {
    /// Starts baton with the shipped dialplans and default settings.
    pub fn start(name: &str) -> Baton {
        Baton::builder(name).start()
    }

    /// A builder for extra dialplans or a config file.
    pub fn builder(name: &str) -> BatonBuilder {
        BatonBuilder {
            name: name.to_owned(),
            dialplans: Vec::new(),
            config: None,
            token: None,
        }
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("baton exited early with {status}"));
            }
            if let Ok((200, _)) = http_get(self.http, "/healthz") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("/healthz not 200 within {STARTUP:?}"));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics (with the log's tail) when baton has exited: a crash must fail the test.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "baton exited with {status}; log {}:\n{}",
                self.log.display(),
                tail(&self.log, LOG_TAIL_LINES)
            );
        }
    }

    /// `GET path` on the API: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, "")
    }

    /// `method path` on the API with a JSON body (none when empty): status and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        http_request(self.http, method, path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path`, expecting 200 and JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// The latest escalation `/v1/escalations` lists (`null` before any).
    pub fn last_escalation(&self) -> Value {
        let list = self.get_json("/v1/escalations");
        list.as_array()
            .and_then(|l| l.last())
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The Prometheus text of `/metrics`.
    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }

    /// One series of `/metrics` (e.g. `baton_rtp_packets_total{direction="out"}`); 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series).unwrap_or(0.0)
    }

    /// Calls in `/v1/calls`, with the recently ended ones when `ended` is set.
    pub fn calls(&self, ended: bool) -> Vec<Value> {
        let path = if ended {
            "/v1/calls?include=ended"
        } else {
            "/v1/calls"
        };
        match self.get_json(path) {
            Value::Array(calls) => calls,
            other => panic!("GET {path}: expected a JSON array, got {other}"),
        }
    }

    /// The call (active or recently ended) whose SIP Call-ID is `sip_call_id`.
    pub fn call(&self, sip_call_id: &str) -> Option<Value> {
        self.calls(true)
            .into_iter()
            .find(|c| c["sip_call_id"].as_str() == Some(sip_call_id))
    }

    /// Waits until the call with `sip_call_id` is listed as ended and returns it.
    pub fn wait_ended(&self, sip_call_id: &str, timeout: Duration) -> Value {
        let mut last = None;
        let ended = wait_for(timeout, || {
            last = self.call(sip_call_id);
            last.as_ref().is_some_and(|c| c["state"] == "ended")
        });
        match (ended, last) {
            (true, Some(call)) => call,
            (_, last) => panic!(
                "call {sip_call_id} not ended within {timeout:?}; last seen: {last:?}; all: {}",
                Value::Array(self.calls(true))
            ),
        }
    }

    /// Waits until the call with `sip_call_id` is in `state` (e.g. `held`).
    pub fn wait_state(&self, sip_call_id: &str, state: &str, timeout: Duration) {
        let mut last = None;
        let reached = wait_for(timeout, || {
            last = self.call(sip_call_id);
            last.as_ref().is_some_and(|c| c["state"] == state)
        });
        assert!(
            reached,
            "call {sip_call_id} not {state} within {timeout:?}; last seen: {last:?}"
        );
    }

    /// baton's id of the call whose SIP Call-ID is `sip_call_id`, once it is active
    /// (within 10 s).
    pub fn active_call_id(&self, sip_call_id: &str) -> String {
        self.wait_state(sip_call_id, "active", Duration::from_secs(10));
        self.call(sip_call_id).expect("listed")["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// The context of the last ended call to `dialplan`.
    pub fn last_context(&self, dialplan: &str) -> Value {
        let calls = self.calls(true);
        let id = calls
            .iter()
            .rev()
            .find(|c| c["dialplan"] == dialplan)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("an ended call to {dialplan}"))
            .to_owned();
        self.get_json(&format!("/v1/calls/{id}/context"))
    }

    /// The recording a call lists whose file name ends with `suffix` (`-in.wav`, `-out.wav`).
    pub fn recording(&self, call: &Value, suffix: &str) -> PathBuf {
        let id = call["id"].as_str().expect("call id");
        let expected = self.data.join("recordings").join(format!("{id}{suffix}"));
        let listed = call["recordings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|p| p.ends_with(&format!("{id}{suffix}")));
        assert!(
            listed,
            "call {id} does not list a {suffix} recording: {call}"
        );
        assert!(expected.is_file(), "{} does not exist", expected.display());
        expected
    }
}

impl Drop for Baton {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "baton's log: {}\nkept test dir: {}\n--- last {LOG_TAIL_LINES} lines ---\n{}",
                self.log.display(),
                self.dir.display(),
                tail(&self.log, LOG_TAIL_LINES)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The value of one Prometheus series in `text`, matched on its full name and labels.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A minimal HTTP/1.1 GET (Connection: close), enough for baton's API.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    http_request(addr, "GET", path, &[], "")
}

/// `method path` on the API with extra header lines (`"Name: value"`) and a body: status
/// and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = find(&raw, b"\r\n\r\n").ok_or("no end of HTTP headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").ok_or("chunk size line without CRLF")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|e| format!("chunk size: {e}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = raw.get(..size).ok_or("chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..).ok_or("chunk without trailing CRLF")?;
    }
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as the API writes it
/// (`2024-05-01T10:00:00.123Z`).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// How long a listed call lasted, from its `started_at` and `ended_at`.
pub fn call_seconds(call: &Value) -> f64 {
    let at = |k: &str| {
        call[k]
            .as_str()
            .and_then(parse_rfc3339)
            .unwrap_or_else(|| panic!("call has no valid {k}: {call}"))
    };
    at("ended_at") - at("started_at")
}

/// Runs a command to completion within `timeout`, panicking with its output on failure.
pub fn run_tool(cmd: &mut Command, timeout: Duration) {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (scripts/install-deps.sh installs it)"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tool") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        panic!("{what} failed with {status}: {err}");
    }
}

/// A caller's voice as a carrier sends it: 8 kHz mono G.711 µ-law WAV for SIPp.
pub struct CallerAudio {
    /// The µ-law file to stream.
    pub path: PathBuf,
    /// Silence before the speech starts.
    pub silence_secs: f64,
    /// How long the speech lasts.
    pub speech_secs: f64,
}

impl CallerAudio {
    /// The whole file's length.
    pub fn total_secs(&self) -> f64 {
        self.silence_secs + self.speech_secs
    }
}

/// espeak-ng's American voice at an ordinary pace.
pub const CALM_VOICE: &[&str] = &["-v", "en-us", "-s", "150"];
/// The same voice faster, higher and louder: an agitated caller.
pub const AGITATED_VOICE: &[&str] = &["-v", "en-us", "-s", "210", "-p", "75", "-a", "200"];

/// Speaks `text` with espeak-ng and converts it to 8 kHz µ-law with sox, after
/// `silence_secs` of silence (a caller who waits for the tone before speaking).
pub fn caller_audio(dir: &Path, stem: &str, text: &str, silence_secs: f64) -> CallerAudio {
    caller_conversation(dir, stem, &[(CALM_VOICE, text)], silence_secs, 0.0)
}

/// Several utterances, each in its own espeak-ng voice, `gap_secs` of silence after each,
/// as one 8 kHz µ-law file that starts with `silence_secs` of silence.
pub fn caller_conversation(
    dir: &Path,
    stem: &str,
    parts: &[(&[&str], &str)],
    silence_secs: f64,
    gap_secs: f64,
) -> CallerAudio {
    let path = dir.join(format!("{stem}.wav"));
    let mut pieces = Vec::new();
    let mut speech_secs = 0.0;
    for (i, (voice, text)) in parts.iter().enumerate() {
        let spoken = dir.join(format!("{stem}-{i}-spoken.wav"));
        let piece = dir.join(format!("{stem}-{i}.wav"));
        run_tool(
            Command::new("espeak-ng")
                .args(*voice)
                .arg("-w")
                .arg(&spoken)
                .arg(text),
            Duration::from_secs(30),
        );
        run_tool(
            Command::new("sox")
                .arg(&spoken)
                .args(["-r", "8000", "-c", "1", "-b", "16"])
                .arg(&piece)
                .args(["pad", "0", &format!("{gap_secs:.3}")]),
            Duration::from_secs(30),
        );
        speech_secs += measure_wav(&piece).seconds;
        pieces.push(piece);
    }
    run_tool(
        Command::new("sox")
            .args(&pieces)
            .args(["-r", "8000", "-c", "1", "-e", "u-law"])
            .arg(&path)
            .args(["pad", &format!("{silence_secs:.3}")]),
        Duration::from_secs(30),
    );
    CallerAudio {
        path,
        silence_secs,
        speech_secs,
    }
}

/// What a PCM WAV file holds, measured.
#[derive(Debug, Clone, Copy)]
pub struct WavStats {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits: u16,
    pub seconds: f64,
    /// Root mean square of all samples, full scale = 1.0 (silence is 0).
    pub rms: f64,
}

/// Reads a PCM WAV with hound and measures its length and loudness.
pub fn measure_wav(path: &Path) -> WavStats {
    measure_wav_from(path, 0.0)
}

/// Like [`measure_wav`], but the loudness only counts audio from `from_secs` on (the
/// length is still the whole file's).
pub fn measure_wav_from(path: &Path, from_secs: f64) -> WavStats {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = reader.spec();
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let full = f64::from(1u32 << (spec.bits_per_sample - 1));
            reader
                .samples::<i32>()
                .map(|s| f64::from(s.unwrap_or_else(|e| panic!("{}: {e}", path.display()))) / full)
                .collect()
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| f64::from(s.unwrap_or_else(|e| panic!("{}: {e}", path.display()))))
            .collect(),
    };
    let channels = usize::from(spec.channels.max(1));
    let rate = f64::from(spec.sample_rate.max(1));
    let skip = ((from_secs * rate) as usize)
        .saturating_mul(channels)
        .min(samples.len());
    let counted = &samples[skip..];
    let rms = if counted.is_empty() {
        0.0
    } else {
        (counted.iter().map(|s| s * s).sum::<f64>() / counted.len() as f64).sqrt()
    };
    WavStats {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits: spec.bits_per_sample,
        seconds: (samples.len() / channels) as f64 / rate,
        rms,
    }
}

/// Fills `@NAME@` placeholders of a scenario template; panics if one is left unfilled.
pub fn fill_template(template: &str, vars: &[(String, String)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in vars {
        text = text.replace(&format!("@{name}@"), value);
    }
    let parts: Vec<&str> = text.split('@').collect();
    let inner = parts
        .get(1..parts.len().saturating_sub(1))
        .unwrap_or_default();
    if let Some(name) = inner
        .iter()
        .find(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    {
        panic!("placeholder @{name}@ left unfilled");
    }
    text
}

/// One SIPp run of a scenario from `tests/sipp/` against a running baton.
pub struct Sipp {
    scenario: String,
    transport: Transport,
    target: SocketAddr,
    dir: PathBuf,
    user: String,
    vars: Vec<(String, String)>,
    args: Vec<String>,
    timeout: Duration,
    media_port: u16,
}

impl Sipp {
    /// A run of `tests/sipp/<scenario>` towards baton's SIP address over `transport`.
    pub fn new(baton: &Baton, scenario: &str, transport: Transport) -> Sipp {
        Sipp {
            scenario: scenario.to_owned(),
            transport,
            target: baton.sip,
            dir: baton.dir.clone(),
            user: "echo".to_owned(),
            vars: Vec::new(),
            args: Vec::new(),
            timeout: Duration::from_secs(30),
            media_port: free_sipp_media_port(),
        }
    }

    /// The port SIPp sends and receives its RTP on (`-mp`), for a capture of what the
    /// caller hears.
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// The user dialled (SIPp's `-s`, the scenario's `[service]`).
    pub fn user(mut self, user: &str) -> Sipp {
        user.clone_into(&mut self.user);
        self
    }

    /// Sets the value of placeholder `@name@` in the scenario.
    pub fn var(mut self, name: &str, value: impl ToString) -> Sipp {
        self.vars.push((name.to_owned(), value.to_string()));
        self
    }

    /// SIPp's own run time limit (`-timeout`); the process gets 15 s more before it is killed.
    pub fn timeout(mut self, timeout: Duration) -> Sipp {
        self.timeout = timeout;
        self
    }

    /// An extra command-line argument for SIPp.
    pub fn arg(mut self, arg: &str) -> Sipp {
        self.args.push(arg.to_owned());
        self
    }

    /// Starts SIPp in the background; [`SippProcess::wait`] collects the outcome.
    pub fn spawn(mut self) -> SippProcess {
        let tag = format!(
            "{}-{}-{:08x}",
            self.scenario.trim_end_matches(".xml"),
            self.transport.name(),
            random_u64() & 0xffff_ffff
        );
        let template_path = repo_path("tests/sipp").join(&self.scenario);
        let template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("read {}: {e}", template_path.display()));
        let scenario = self.dir.join(format!("{tag}.xml"));
        fs::write(&scenario, fill_template(&template, &self.vars)).expect("write scenario");
        // The Call-ID is fixed by us so the test can find the call in the API.
        let call_id = format!("{tag}-1@127.0.0.1");
        let errors = self.dir.join(format!("{tag}-errors.log"));
        let messages = self.dir.join(format!("{tag}-messages.log"));
        let output = self.dir.join(format!("{tag}-output.log"));
        let mut attempt = 0;
        let child = loop {
            attempt += 1;
            let out = fs::File::create(&output).expect("create SIPp output file");
            let mut cmd = Command::new("sipp");
            cmd.arg("-sf")
                .arg(&scenario)
                .args(["-nostdin", "-m", "1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
                .args(["-mp", &self.media_port.to_string()])
                .args(["-t", self.transport.sipp_flag()])
                .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))])
                .args(["-timeout_error", "-trace_err", "-error_file"])
                .arg(&errors)
                .args(["-trace_msg", "-message_file"])
                .arg(&messages)
                .args(["-cid_str", &format!("{tag}-%u@%s")])
                .args(["-s", &self.user])
                .args(&self.args)
                .arg(self.target.to_string())
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone output handle"))
                .stderr(out);
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!("start sipp: {e} (scripts/install-deps.sh installs it)")
            });
            // SIPp exits at once (254) when its media port was taken since we probed it.
            thread::sleep(Duration::from_millis(200));
            let bind_failed = matches!(child.try_wait(), Ok(Some(s)) if s.code() == Some(254))
                && fs::read_to_string(&errors).is_ok_and(|e| e.contains("Unable to bind"));
            if bind_failed && attempt < 3 {
                let _ = fs::remove_file(&errors);
                self.media_port = free_sipp_media_port();
                continue;
            }
            break child;
        };
        SippProcess {
            child,
            deadline: Instant::now() + self.timeout + Duration::from_secs(15),
            call_id,
            scenario,
            errors,
            messages,
            output,
        }
    }

    /// Runs SIPp to completion.
    pub fn run(self) -> SippRun {
        self.spawn().wait()
    }
}

/// A SIPp process running one call.
pub struct SippProcess {
    child: Child,
    deadline: Instant,
    /// The SIP Call-ID of the call SIPp places.
    pub call_id: String,
    scenario: PathBuf,
    errors: PathBuf,
    messages: PathBuf,
    output: PathBuf,
}

impl SippProcess {
    /// Waits for SIPp to exit (killing it past its deadline) and collects what it reported.
    pub fn wait(mut self) -> SippRun {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < self.deadline => {
                    thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let mut report = String::new();
        let _ = writeln!(
            report,
            "sipp {} exited with {}",
            self.scenario.display(),
            status.map_or("nothing (killed at its deadline)".to_owned(), |s| s
                .to_string())
        );
        let _ = writeln!(report, "--- errors ---\n{}", tail(&self.errors, 40));
        let _ = writeln!(
            report,
            "--- messages (last 80 lines) ---\n{}",
            tail(&self.messages, 80)
        );
        let _ = writeln!(
            report,
            "--- output (last 20 lines) ---\n{}",
            tail(&self.output, 20)
        );
        SippRun {
            status,
            call_id: std::mem::take(&mut self.call_id),
            report,
            messages: fs::read_to_string(&self.messages).unwrap_or_default(),
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a SIPp run ended with.
pub struct SippRun {
    /// SIPp's exit status; `None` when it had to be killed.
    pub status: Option<ExitStatus>,
    /// The SIP Call-ID of the call it placed.
    pub call_id: String,
    /// Exit status, error log and message trace, for assertion messages.
    pub report: String,
    /// Every message SIPp sent and received, as it traced them.
    pub messages: String,
}

impl SippRun {
    /// Whether every call of the run succeeded (SIPp exit code 0).
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with SIPp's report unless the call succeeded.
    pub fn assert_ok(&self) {
        assert!(self.ok(), "SIPp call failed\n{}", self.report);
    }
}

impl Baton {
    /// baton's process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to baton, as an init system does to stop it.
    pub fn terminate(&self) {
        run_tool(
            Command::new("kill").args(["-TERM", &self.pid().to_string()]),
            Duration::from_secs(5),
        );
    }

    /// Waits up to `timeout` for baton to exit by itself; its status, or `None` if it is
    /// still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_for(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl SippProcess {
    /// Where baton receives the call's RTP: the address in its 200 OK's SDP, read from
    /// SIPp's message trace once it shows there.
    pub fn answered_media(&self, timeout: Duration) -> SocketAddr {
        let mut found = None;
        wait_for(timeout, || {
            let text = fs::read_to_string(&self.messages).unwrap_or_default();
            found = text.split("SIP/2.0 200").skip(1).find_map(sdp_audio_addr);
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no 200 OK with an SDP audio address in SIPp's trace within {timeout:?}:\n{}",
                tail(&self.messages, 60)
            )
        })
    }
}

/// The RTP address in an SDP (`c=IN IP4 ...` and `m=audio PORT ...`) found in `text`.
pub fn sdp_audio_addr(text: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next().and_then(|p| p.parse().ok());
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// One SIP message as a test reads it: start line, headers in order, body.
#[derive(Debug, Clone)]
pub struct SipMessage {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl SipMessage {
    /// Splits a received message; `None` when it has no header/body separator.
    pub fn parse(bytes: &[u8]) -> Option<SipMessage> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Some(SipMessage {
            start,
            headers,
            body: body.to_owned(),
        })
    }

    /// The status code of a response; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        self.start
            .strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The request method; `None` for a response.
    pub fn method(&self) -> Option<&str> {
        if self.start.starts_with("SIP/") {
            return None;
        }
        self.start.split_whitespace().next()
    }

    /// The first value of header `name` (long or compact form, any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let compact = match name.to_ascii_lowercase().as_str() {
            "call-id" => "i",
            "from" => "f",
            "to" => "t",
            "via" => "v",
            "contact" => "m",
            "content-length" => "l",
            "content-type" => "c",
            _ => "",
        };
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The method named in CSeq (`INVITE`, `BYE`, ...).
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

/// An answered call placed by a [`SipCaller`]: what later requests in its dialog need.
#[derive(Debug, Clone)]
pub struct SipCall {
    pub call_id: String,
    pub from: String,
    /// baton's To header, with its tag.
    pub to: String,
    /// Where baton receives the call's RTP (from the 200's SDP).
    pub media: SocketAddr,
    cseq: u32,
}

/// A caller that speaks SIP over one UDP socket, for tests that need what SIPp cannot do:
/// its own source address, exact timing, or raw bytes. Every wait is bounded.
pub struct SipCaller {
    sock: UdpSocket,
    target: SocketAddr,
}

impl SipCaller {
    /// A caller on an ephemeral port of `ip` (any 127.x.y.z address is loopback) that
    /// sends to baton's SIP address.
    pub fn bind(ip: &str, baton: &Baton) -> SipCaller {
        let sock = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind UDP on {ip}: {e}"));
        SipCaller {
            sock,
            target: baton.sip,
        }
    }

    /// The address the caller sends from.
    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("caller's local address")
    }

    /// Sends raw bytes to baton's SIP port.
    pub fn send(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.target)
            .unwrap_or_else(|e| panic!("send to {}: {e}", self.target));
    }

    /// The next SIP message within `timeout` (datagrams that do not parse are skipped).
    pub fn recv(&self, timeout: Duration) -> Option<SipMessage> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set read timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(msg) = SipMessage::parse(&buf[..n]) {
                        return Some(msg);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("receive SIP: {e}"),
            }
        }
    }

    /// Every message received until `quiet` passes without one (at most `limit` in all).
    pub fn drain(&self, quiet: Duration, limit: Duration) -> Vec<SipMessage> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            match self.recv(quiet) {
                Some(m) => out.push(m),
                None => break,
            }
        }
        out
    }

    /// A new INVITE to `user` offering PCMU and telephone-event at `sdp_port` on the
    /// caller's own IP, with its Call-ID and From header.
    pub fn invite_request(&self, user: &str, sdp_port: u16) -> (String, String, String) {
        let local = self.local_addr();
        let call_id = format!("{:016x}@{}", random_u64(), local.ip());
        let from = format!(
            "<sip:+441234567890@{}>;tag={:08x}",
            local.ip(),
            random_u64() as u32
        );
        let sdp = format!(
            "v=0\r\no=caller 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {sdp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
            ip = local.ip()
        );
        let text = format!(
            "INVITE sip:{user}@{baton} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: <sip:{user}@{baton}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{local}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            baton = self.target,
            branch = random_u64(),
            len = sdp.len(),
        );
        (text, call_id, from)
    }

    /// Sends an INVITE to `user` (SDP port `sdp_port`) and waits up to `timeout` for its
    /// final response, retransmitting as RFC 3261 Timer A does until something comes back.
    /// A non-2xx final response is acknowledged. `None` when no final response came.
    pub fn invite(
        &self,
        user: &str,
        sdp_port: u16,
        timeout: Duration,
    ) -> Option<(SipMessage, String, String)> {
        let (request, call_id, from) = self.invite_request(user, sdp_port);
        let deadline = Instant::now() + timeout;
        let mut retransmit = Duration::from_millis(500);
        let mut next_send = Instant::now();
        let mut answered = false;
        while Instant::now() < deadline {
            if !answered && Instant::now() >= next_send {
                self.send(request.as_bytes());
                next_send = Instant::now() + retransmit;
                retransmit = (retransmit * 2).min(Duration::from_secs(4));
            }
            let wait = if answered {
                deadline
            } else {
                next_send.min(deadline)
            };
            let Some(msg) = self.recv(wait.saturating_duration_since(Instant::now())) else {
                continue;
            };
            if msg.header("Call-ID") != Some(call_id.as_str()) {
                continue;
            }
            match msg.status() {
                Some(s) if s < 200 => answered = true,
                Some(s) => {
                    if s >= 300 {
                        self.ack_final(&request, &msg);
                    }
                    return Some((msg, call_id, from));
                }
                None => {}
            }
        }
        None
    }

    /// The hop-by-hop ACK for a non-2xx final response (same branch as the INVITE).
    fn ack_final(&self, invite: &str, resp: &SipMessage) {
        let line = |name: &str| {
            invite
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_default()
                .to_owned()
        };
        let uri = invite.split_whitespace().nth(1).unwrap_or_default();
        let ack = format!(
            "ACK {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\nTo: {}\r\n{}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            line("Via:"),
            line("From:"),
            resp.header("To").unwrap_or_default(),
            line("Call-ID:"),
        );
        self.send(ack.as_bytes());
    }

    /// Places a call to `user` whose SDP offers `sdp_port`, expects 200 and sends the ACK.
    pub fn call(&self, user: &str, sdp_port: u16) -> SipCall {
        let (resp, call_id, from) = self
            .invite(user, sdp_port, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no final response to an INVITE to {user} within 15 s"));
        assert_eq!(
            resp.status(),
            Some(200),
            "INVITE to {user} answered {resp:?}"
        );
        let call = self.answered(&resp, call_id, from);
        self.ack(&call);
        call
    }

    /// The dialog a 200 OK to one of this caller's INVITEs created.
    pub fn answered(&self, ok: &SipMessage, call_id: String, from: String) -> SipCall {
        SipCall {
            call_id,
            from,
            to: ok.header("To").expect("200 OK has a To header").to_owned(),
            media: sdp_audio_addr(&ok.body)
                .unwrap_or_else(|| panic!("200 OK without an SDP audio address: {ok:?}")),
            cseq: 1,
        }
    }

    /// An in-dialog request of `call` with the next CSeq (the ACK reuses the INVITE's).
    fn in_dialog(&self, call: &mut SipCall, method: &str) -> String {
        let local = self.local_addr();
        if method != "ACK" {
            call.cseq += 1;
        }
        format!(
            "{method} sip:baton@{baton} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            baton = self.target,
            branch = random_u64(),
            from = call.from,
            to = call.to,
            call_id = call.call_id,
            cseq = call.cseq,
        )
    }

    /// Acknowledges the 200 OK of `call`.
    pub fn ack(&self, call: &SipCall) {
        let mut c = call.clone();
        self.send(self.in_dialog(&mut c, "ACK").as_bytes());
    }

    /// Hangs up `call`: BYE, retransmitted until answered; the status of the answer.
    pub fn bye(&self, call: &mut SipCall) -> Option<u16> {
        let bye = self.in_dialog(call, "BYE");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            self.send(bye.as_bytes());
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(msg) = self.recv(until.saturating_duration_since(Instant::now())) {
                if msg.header("Call-ID") == Some(call.call_id.as_str())
                    && msg.cseq_method() == Some("BYE")
                {
                    if let Some(s) = msg.status() {
                        return Some(s);
                    }
                }
            }
        }
        None
    }

    /// Sends an OPTIONS ping; the status of its answer within `timeout`.
    pub fn options(&self, timeout: Duration) -> Option<u16> {
        let local = self.local_addr();
        let call_id = format!("{:016x}@{}", random_u64(), local.ip());
        let ping = format!(
            "OPTIONS sip:echo@{baton} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:016x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:monitor@{ip}>;tag={tag:08x}\r\n\
             To: <sip:echo@{baton}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            baton = self.target,
            ip = local.ip(),
            branch = random_u64(),
            tag = random_u64() as u32,
        );
        self.send(ping.as_bytes());
        let deadline = Instant::now() + timeout;
        while let Some(msg) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            if msg.header("Call-ID") == Some(call_id.as_str()) {
                if let Some(s) = msg.status() {
                    return Some(s);
                }
            }
        }
        None
    }
}

/// splitmix64: a seeded, reproducible random sequence for impairments and garbage (std has
/// no RNG), so a failing run can be replayed exactly.
pub struct SeededRng(pub u64);

impl SeededRng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// G.711 µ-law decoding of one byte, full scale = 1.0.
pub fn ulaw_decode(byte: u8) -> f64 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    let s = if u & 0x80 != 0 { -magnitude } else { magnitude };
    f64::from(s) / 32_768.0
}

/// An RTP packet: version 2, no padding, extension or CSRC.
pub fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.push(0x80);
    p.push(pt | if marker { 0x80 } else { 0 });
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Reads `GET path` as a stream until the server closes it (a call's event stream closes
/// once its last transcript is out) or `limit` passes; the raw text.
pub fn read_event_stream(addr: SocketAddr, path: &str, limit: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// The JSON `data:` payloads of a Server-Sent Events text, in order.
pub fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .collect()
}

impl Baton {
    /// baton's resident memory (`VmRSS` of `/proc/PID/status`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {path}"))
    }
}

/// A dialplan `listen` that echoes the caller (so the call is two-way) while baton listens,
/// with `hints` as its speech hints: what its callers are expected to say.
pub fn listen_plan(hints: &str) -> String {
    format!("name = \"listen\"\nmatch = [\"listen\"]\nspeech_hints = \"{hints}\"\n\n[[step]]\necho = {{}}\n")
}

/// Starts a SIPp caller to the `listen` plan (see [`listen_plan`]) who says `audio` and
/// hangs up 2.5 s after it ends.
pub fn talk_to_listen(baton: &Baton, transport: Transport, audio: &CallerAudio) -> SippProcess {
    let millis = ((audio.total_secs() + 2.5) * 1000.0) as u64;
    Sipp::new(baton, "uac_audio.xml", transport)
        .user("listen")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(20))
        .spawn()
}

/// µ-law silence.
const ULAW_SILENCE: u8 = 0xff;
/// Quieter than this (RMS, full scale 1.0; about −46 dBFS) a 20 ms packet is silence.
pub const QUIET: f64 = 0.005;

/// What a caller heard: baton's 20 ms µ-law payloads, in order of arrival, with the time
/// each arrived.
pub struct Heard {
    pub packets: Vec<(Instant, Vec<u8>)>,
}

impl Heard {
    /// As 16 kHz samples, the rate the recogniser takes.
    pub fn samples_16k(&self) -> Vec<i16> {
        let narrow: Vec<i16> = self
            .packets
            .iter()
            .flat_map(|(_, p)| p)
            .map(|&b| (ulaw_decode(b) * 32_768.0).clamp(-32_768.0, 32_767.0) as i16)
            .collect();
        baton_media::convert_rate(&narrow, 8000, 16000).expect("8 to 16 kHz")
    }

    /// From the first loud packet to the last, in seconds.
    pub fn loud_secs(&self) -> f64 {
        let loud: Vec<usize> = (0..self.packets.len())
            .filter(|&i| payload_rms(&self.packets[i].1) > QUIET)
            .collect();
        match (loud.first(), loud.last()) {
            (Some(first), Some(last)) => (last - first + 1) as f64 * 0.02,
            _ => 0.0,
        }
    }

    /// RMS over the loud stretch.
    pub fn loud_rms(&self) -> f64 {
        let loud: Vec<&Vec<u8>> = self
            .packets
            .iter()
            .map(|(_, p)| p)
            .filter(|p| payload_rms(p) > QUIET)
            .collect();
        let n: usize = loud.iter().map(|p| p.len()).sum();
        let energy: f64 = loud
            .iter()
            .flat_map(|p| p.iter())
            .map(|&b| ulaw_decode(b).powi(2))
            .sum();
        (energy / n.max(1) as f64).sqrt()
    }
}

/// The RMS of a µ-law payload, full scale 1.0.
pub fn payload_rms(payload: &[u8]) -> f64 {
    (payload.iter().map(|&b| ulaw_decode(b).powi(2)).sum::<f64>() / payload.len().max(1) as f64)
        .sqrt()
}

/// Calls `user` as a phone would (sending silence every 20 ms), keeps every RTP payload
/// baton sends until baton hangs up (within `limit`), and answers its BYE.
pub fn listen_until_bye(baton: &Baton, user: &str, limit: Duration) -> Heard {
    talk_until_bye(baton, user, limit, |_| [ULAW_SILENCE; 160])
}

/// As [`listen_until_bye`], sending `payload(n)` (160 PCMU bytes) as the n-th packet.
pub fn talk_until_bye(
    baton: &Baton,
    user: &str,
    limit: Duration,
    payload: impl Fn(u32) -> [u8; 160] + Send + 'static,
) -> Heard {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("caller RTP socket");
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("RTP read timeout");
    let caller = SipCaller::bind("127.0.0.1", baton);
    let call = caller.call(user, rtp.local_addr().expect("RTP address").port());
    let stop = Arc::new(AtomicBool::new(false));
    let media = {
        let stop = stop.clone();
        let to = call.media;
        thread::spawn(move || {
            let started = Instant::now();
            let mut heard = Vec::new();
            let mut buf = [0u8; 2048];
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                let due = Duration::from_millis(20 * u64::from(sent));
                if started.elapsed() >= due {
                    let packet = rtp_packet(
                        0,
                        sent == 0,
                        sent as u16,
                        160 * sent,
                        0x7755,
                        &payload(sent),
                    );
                    let _ = rtp.send_to(&packet, to);
                    sent += 1;
                }
                if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                    // Audio only: PCMU is payload type 0.
                    if n > 12 && buf[1] & 0x7f == 0 {
                        heard.push((Instant::now(), buf[12..n].to_vec()));
                    }
                }
            }
            heard
        })
    };
    let deadline = Instant::now() + limit;
    let bye = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "baton did not hang up within {limit:?}");
        if let Some(msg) = caller.recv(left) {
            if msg.method() == Some("BYE") && msg.header("Call-ID") == Some(&call.call_id) {
                break msg;
            }
        }
    };
    let header = |name: &str| bye.header(name).unwrap_or_default().to_owned();
    caller.send(
        format!(
            "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             Content-Length: 0\r\n\r\n",
            header("Via"),
            header("From"),
            header("To"),
            header("Call-ID"),
            header("CSeq"),
        )
        .as_bytes(),
    );
    // The last packets may still be on their way.
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    Heard {
        packets: media.join().expect("RTP thread"),
    }
}

/// An HTTP answer: status, content type, body.
pub type HttpAnswer = (u16, &'static str, Vec<u8>);

/// An HTTP server for what baton fetches (customer data, recordings): answers every
/// request with `answer(path)` as (status, content type, body), and keeps the paths asked
/// for. Stops with the test process.
pub struct HttpStub {
    pub addr: SocketAddr,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl HttpStub {
    pub fn start(answer: impl Fn(&str) -> HttpAnswer + Send + Sync + 'static) -> HttpStub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("HTTP stub listener");
        let addr = listener.local_addr().expect("HTTP stub address");
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answer = Arc::new(answer);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let answer = answer.clone();
                thread::spawn(move || {
                    let _ = HttpStub::serve(stream, &*answer, &seen);
                });
            }
        });
        HttpStub { addr, requests }
    }

    fn serve(
        mut stream: TcpStream,
        answer: &dyn Fn(&str) -> HttpAnswer,
        seen: &std::sync::Mutex<Vec<String>>,
    ) -> std::io::Result<()> {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
            if stream.read(&mut byte)? == 0 {
                return Ok(());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        seen.lock().expect("requests").push(path.clone());
        let (status, content_type, body) = answer(&path);
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(&body)?;
        stream.flush()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// The server side of a WebSocket handshake for a test bot: agrees to baton's bot protocol
/// whatever baton offers.
// The callback's error type is tungstenite's own.
#[allow(clippy::result_large_err)]
pub fn agree_to_bot_protocol(
    _: &tungstenite::handshake::server::Request,
    mut response: tungstenite::handshake::server::Response,
) -> Result<tungstenite::handshake::server::Response, tungstenite::handshake::server::ErrorResponse>
{
    let protocol = "baton.bot.v1".parse().expect("header value");
    response
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol);
    Ok(response)
}
