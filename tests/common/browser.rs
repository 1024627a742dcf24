//! Headless Chromium for end-to-end tests of the web pages baton serves, driven through the
//! Chrome DevTools Protocol (CDP) over a WebSocket. The browser gets a fake microphone that
//! plays a WAV file in a loop, grants media permissions without asking and may run WebRTC
//! over loopback, so a page can place a call through baton with no human and no sound card.
//!
//! [`Browser::open`] starts `/usr/bin/chromium` (or the binary `BATON_CHROMIUM` names) with
//! a fresh profile in a temp dir, attaches to its page and navigates it; [`Browser::eval`]
//! and [`Browser::wait_for`] run JavaScript in the page; [`Browser::console`] gives what the
//! page logged. Every read has a deadline, so a stuck or dead browser fails the test with a
//! message (and the tail of chromium's own log) instead of hanging it. Dropping the
//! [`Browser`] kills chromium with all its helper processes and removes the temp dir.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{HandshakeError, Message, WebSocket};

use super::random_u64;

/// The browser run when `BATON_CHROMIUM` names none: Debian's `chromium` package.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long chromium may take to start, open its DevTools port and load the first page.
const STARTUP: Duration = Duration::from_secs(20);
/// How long one CDP command may take to be answered (an eval that awaits a promise has
/// [`EVAL_TIMEOUT`]).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Browser::eval`] waits for an expression (and the promise it returns).
const EVAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a single socket read blocks, so deadlines are checked this often.
const READ_SLICE: Duration = Duration::from_millis(200);
/// Lines of chromium's stderr shown when it fails.
const LOG_TAIL_LINES: usize = 30;

/// A headless Chromium with one page attached over CDP. Killed when dropped.
pub struct Browser {
    /// The CDP connection to the page target; dropped before the process.
    ws: WebSocket<TcpStream>,
    next_id: u64,
    console: Vec<String>,
    /// Set when the page's renderer crashed or the inspector detached: no reply will come.
    gone: Option<String>,
    process: Process,
}

/// The chromium process group and its temp dir; killed and removed when dropped, also when
/// [`Browser::open`] fails half-way.
struct Process {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

impl Process {
    /// The last lines chromium wrote to stdout and stderr, for error messages.
    fn log_tail(&self) -> String {
        let text = fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()));
        let lines: Vec<&str> = text
            .lines()
            // The D-Bus complaints of a machine with no bus say nothing useful.
            .filter(|l| !l.contains(":ERROR:dbus/"))
            .collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// An error message ending with chromium's exit status (if it ended) and its log tail.
    fn fail(&mut self, what: &str) -> String {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => format!("chromium exited ({status})"),
            Ok(None) => "chromium is still running".to_owned(),
            Err(e) => format!("chromium's status unknown: {e}"),
        };
        format!(
            "browser: {what}; {status}; its log ends:\n{}",
            self.log_tail()
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Chromium runs in a process group of its own (see `open`): kill the zygotes,
        // renderers and utility processes with it.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Helpers still dying may write into the profile for a moment; retry briefly.
        for _ in 0..20 {
            if fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Browser {
    /// Starts headless chromium with a fake microphone that plays `fake_mic_wav` (16-bit PCM
    /// WAV, looped), attaches to its page and navigates it to `url`, waiting until the page
    /// has loaded (`document.readyState == "complete"`). Fails within about 20 s, with the
    /// tail of chromium's log, when the browser won't start or the page won't load.
    pub fn open(url: &str, fake_mic_wav: &Path) -> Result<Browser, String> {
        let started = Instant::now();
        let deadline = started + STARTUP;
        let wav = fs::canonicalize(fake_mic_wav)
            .map_err(|e| format!("browser: fake microphone {}: {e}", fake_mic_wav.display()))?;
        let binary = std::env::var_os("BATON_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CHROMIUM));
        if !binary.exists() {
            return Err(format!(
                "browser: {} not found (install Debian's chromium package, \
                 or set BATON_CHROMIUM)",
                binary.display()
            ));
        }

        let dir = std::env::temp_dir().join(format!(
            "baton-browser-{}-{:x}",
            std::process::id(),
            random_u64() & 0xffff_ffff
        ));
        let profile = dir.join("profile");
        fs::create_dir_all(&profile)
            .map_err(|e| format!("browser: create {}: {e}", profile.display()))?;
        let log = dir.join("chromium.log");
        let log_file = fs::File::create(&log)
            .map_err(|e| format!("browser: create {}: {e}", log.display()))?;
        let log_file2 = log_file
            .try_clone()
            .map_err(|e| format!("browser: {}: {e}", log.display()))?;

        let mut cmd = Command::new(&binary);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            &format!("--use-file-for-fake-audio-capture={}", wav.display()),
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            &format!("--user-data-dir={}", profile.display()),
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "--window-size=1280,900",
            "about:blank",
        ])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_file2)
        // A group of its own, so dropping the browser kills every helper process.
        .process_group(0);
        // SAFETY: prctl is async-signal-safe; this runs in the child between fork and exec
        // (the Debian wrapper script execs chromium, which keeps the setting). A test runner
        // killed by a timeout takes chromium with it; note that it is the *thread* that
        // opened the browser whose end kills it, so open it on the thread that uses it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("browser: cannot run {}: {e}", binary.display()))?;
        let mut process = Process { child, dir, log };

        let port = wait_devtools_port(&mut process, &profile.join("DevToolsActivePort"), deadline)?;
        let ws_url = wait_page_target(&mut process, port, deadline)?;
        let ws = connect_ws(&ws_url, deadline).map_err(|e| process.fail(&e))?;
        let mut browser = Browser {
            ws,
            next_id: 1,
            console: Vec::new(),
            gone: None,
            process,
        };
        for domain in ["Runtime", "Page", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({}), CALL_TIMEOUT)?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let nav = browser.call(
            "Page.navigate",
            json!({ "url": url }),
            left.max(Duration::from_secs(5)),
        )?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            return Err(format!("browser: navigating to {url} failed: {err}"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        browser
            .wait_for(
                "document.readyState === 'complete'",
                left.max(Duration::from_secs(5)),
            )
            .map_err(|e| format!("browser: page {url} did not load: {e}"))?;
        Ok(browser)
    }

    /// Evaluates a JS expression in the page (awaiting the promise it returns) and gives its
    /// value as JSON: `undefined` becomes `null`, and values JSON can't hold (`NaN`,
    /// `Infinity`, `-0`, bigints) their text. A JS exception becomes `Err` with its text.
    /// Waits at most 30 s; [`Browser::eval_within`] chooses.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        self.eval_within(js, EVAL_TIMEOUT)
    }

    /// [`Browser::eval`] waiting at most `within` for the value.
    pub fn eval_within(&mut self, js: &str, within: Duration) -> Result<Value, String> {
        self.try_eval(js, within)?
    }

    /// Polls `js` (a boolean expression) every 100 ms until it is `true` or `within` passes.
    /// An exception while polling counts as not yet true (`window.pc.x` before `pc` exists);
    /// a dead browser fails at once. On timeout the error holds the last value or exception.
    pub fn wait_for(&mut self, js: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let mut last: String;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_eval(js, left.max(Duration::from_millis(500)))? {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => last = v.to_string(),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "browser: `{js}` was not true within {within:?}; last value: {last}"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG screenshot of the page's viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png" }),
            CALL_TIMEOUT,
        )?;
        let data = shot
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("browser: screenshot reply has no data: {shot}"))?;
        let png = base64_decode(data).map_err(|e| format!("browser: screenshot data: {e}"))?;
        fs::write(path, png).map_err(|e| format!("browser: write {}: {e}", path.display()))
    }

    /// The console messages, uncaught exceptions and browser log entries of the page seen
    /// so far (in the replies read by `eval`, `wait_for` and the like), one line each, such
    /// as `console.log: hello 3` or `log.error(network): Failed to load resource: ...`.
    pub fn console(&self) -> Vec<String> {
        self.console.clone()
    }

    /// The last lines of chromium's own stdout and stderr, for diagnosing failures.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Evaluates `js`: the outer `Err` is a failure of the browser or the connection, the
    /// inner one an exception thrown by the page's JavaScript.
    fn try_eval(&mut self, js: &str, within: Duration) -> Result<Result<Value, String>, String> {
        let reply = self.call(
            "Runtime.evaluate",
            json!({
                "expression": js,
                "awaitPromise": true,
                "returnByValue": true,
                "userGesture": true,
            }),
            within,
        )?;
        if let Some(ex) = reply.get("exceptionDetails") {
            return Ok(Err(exception_text(ex)));
        }
        let result = reply.get("result").cloned().unwrap_or(Value::Null);
        if let Some(v) = result.get("unserializableValue").and_then(Value::as_str) {
            return Ok(Ok(Value::String(v.to_owned())));
        }
        Ok(Ok(result.get("value").cloned().unwrap_or(Value::Null)))
    }

    /// Sends a CDP command and reads messages until its reply (or `within` passes), keeping
    /// the events that arrive in between. A CDP error reply becomes `Err`.
    fn call(&mut self, method: &str, params: Value, within: Duration) -> Result<Value, String> {
        if let Some(why) = &self.gone {
            return Err(format!("browser: {method}: the page is gone ({why})"));
        }
        let deadline = Instant::now() + within;
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        if let Err(e) = self.ws.send(Message::text(msg)) {
            if !is_timeout(&e) {
                return Err(self.process.fail(&format!("sending {method}: {e}")));
            }
        }
        loop {
            if Instant::now() >= deadline {
                return Err(self.process.fail(&format!(
                    "no reply to {method} within {within:?}{}",
                    short_js(&params)
                )));
            }
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(frame)) => {
                    return Err(self.process.fail(&format!(
                        "DevTools closed the connection during {method}: {frame:?}"
                    )))
                }
                Ok(_) => continue,
                Err(e) if is_timeout(&e) => {
                    // Anything the last send left queued goes out now.
                    let _ = self.ws.flush();
                    continue;
                }
                Err(e) => {
                    return Err(self
                        .process
                        .fail(&format!("reading the reply to {method}: {e}")))
                }
            };
            let msg: Value = match serde_json::from_str(text.as_str()) {
                Ok(v) => v,
                Err(e) => return Err(format!("browser: bad CDP message ({e}): {text}")),
            };
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(err) = msg.get("error") {
                    return Err(format!(
                        "browser: {method} failed: {}{}",
                        err.get("message").and_then(Value::as_str).unwrap_or("?"),
                        err.get("data")
                            .and_then(Value::as_str)
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ));
                }
                return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
            }
            if let Some(event) = msg.get("method").and_then(Value::as_str) {
                let params = msg.get("params").unwrap_or(&Value::Null);
                self.event(event, params);
                if let Some(why) = &self.gone {
                    return Err(self
                        .process
                        .fail(&format!("{method}: the page is gone ({why})")));
                }
            }
            // Replies to earlier calls that timed out are dropped.
        }
    }

    /// Keeps what a CDP event tells about the page.
    fn event(&mut self, method: &str, params: &Value) {
        match method {
            "Runtime.consoleAPICalled" => {
                let kind = params.get("type").and_then(Value::as_str).unwrap_or("log");
                let args: Vec<String> = params
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(remote_object_text).collect())
                    .unwrap_or_default();
                self.console
                    .push(format!("console.{kind}: {}", args.join(" ")));
            }
            "Runtime.exceptionThrown" => {
                let ex = params.get("exceptionDetails").unwrap_or(&Value::Null);
                self.console
                    .push(format!("uncaught: {}", exception_text(ex)));
            }
            "Log.entryAdded" => {
                let entry = params.get("entry").unwrap_or(&Value::Null);
                let field = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or("");
                let url = match field("url") {
                    "" => String::new(),
                    u => format!(" [{u}]"),
                };
                self.console.push(format!(
                    "log.{}({}): {}{url}",
                    field("level"),
                    field("source"),
                    field("text")
                ));
            }
            "Inspector.targetCrashed" => self.gone = Some("its renderer crashed".to_owned()),
            "Inspector.detached" => {
                let reason = params.get("reason").and_then(Value::as_str).unwrap_or("?");
                self.gone = Some(format!("DevTools detached: {reason}"));
            }
            _ => {}
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Say goodbye without waiting for an answer; `process` is dropped next, which kills
        // chromium and removes its temp dir.
        let _ = self.ws.get_mut().set_write_timeout(Some(READ_SLICE));
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// Waits for chromium to write the DevTools port it listens on (it picks one itself, as
/// `--remote-debugging-port=0` asks) into `DevToolsActivePort` in the profile.
fn wait_devtools_port(
    process: &mut Process,
    file: &Path,
    deadline: Instant,
) -> Result<u16, String> {
    loop {
        if let Ok(text) = fs::read_to_string(file) {
            // Complete once the second line (the browser target's path) is there.
            if let Some((first, _)) = text.split_once('\n') {
                if let Ok(port) = first.trim().parse::<u16>() {
                    return Ok(port);
                }
            }
        }
        if let Ok(Some(_)) = process.child.try_wait() {
            return Err(process.fail("chromium ended before opening its DevTools port"));
        }
        if Instant::now() >= deadline {
            return Err(process.fail(&format!(
                "no DevTools port in {} within {STARTUP:?}",
                file.display()
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asks DevTools' HTTP endpoint for its targets until there is a page, and gives that
/// page's WebSocket URL.
fn wait_page_target(process: &mut Process, port: u16, deadline: Instant) -> Result<String, String> {
    let mut last: String;
    loop {
        match http_get(port, "/json/list", deadline) {
            Ok(body) => match serde_json::from_str::<Value>(&body) {
                Ok(Value::Array(targets)) => {
                    let page = targets
                        .iter()
                        .find(|t| t.get("type").and_then(Value::as_str) == Some("page"));
                    if let Some(ws) = page
                        .and_then(|t| t.get("webSocketDebuggerUrl"))
                        .and_then(Value::as_str)
                    {
                        return Ok(ws.to_owned());
                    }
                    last = format!("no page target yet: {body}");
                }
                Ok(other) => last = format!("unexpected /json/list: {other}"),
                Err(e) => last = format!("bad /json/list ({e}): {body}"),
            },
            Err(e) => last = e,
        }
        if let Ok(Some(_)) = process.child.try_wait() {
            return Err(process.fail(&format!("chromium ended before showing a page ({last})")));
        }
        if Instant::now() >= deadline {
            return Err(process.fail(&format!("no page target within {STARTUP:?}: {last}")));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET to DevTools on loopback; gives the body.
fn http_get(port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(READ_SLICE));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // The reply is complete at EOF, or once Content-Length bytes follow the headers.
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if buf.len() >= end + 4 + len {
                    return finish_http(path, &buf, end, len);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("GET {path}: no complete reply in time"));
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                let end = find(&buf, b"\r\n\r\n")
                    .ok_or_else(|| format!("GET {path}: connection closed mid-headers"))?;
                return finish_http(path, &buf, end, buf.len() - end - 4);
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("GET {path}: {e}")),
        }
    }
}

fn finish_http(path: &str, buf: &[u8], end: usize, len: usize) -> Result<String, String> {
    let head = String::from_utf8_lossy(&buf[..end]);
    let status = head.lines().next().unwrap_or("");
    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
    if !status.contains(" 200") {
        return Err(format!("GET {path}: {status}: {body}"));
    }
    Ok(body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Opens the CDP WebSocket `url` (`ws://127.0.0.1:PORT/devtools/page/ID`) over a TCP stream
/// whose reads time out every [`READ_SLICE`], so no read blocks past a deadline.
fn connect_ws(url: &str, deadline: Instant) -> Result<WebSocket<TcpStream>, String> {
    let host = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("unexpected DevTools WebSocket URL {url}"))?;
    let addr: SocketAddr = host
        .parse()
        .map_err(|e| format!("DevTools WebSocket address {host}: {e}"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(READ_SLICE))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("socket timeouts: {e}"))?;
    // Screenshots come as one large base64 message.
    let config = WebSocketConfig::default()
        .max_message_size(Some(256 << 20))
        .max_frame_size(Some(256 << 20));
    let mut attempt = tungstenite::client::client_with_config(url, stream, Some(config));
    loop {
        match attempt {
            Ok((ws, _)) => return Ok(ws),
            Err(HandshakeError::Interrupted(mid)) => {
                if Instant::now() >= deadline {
                    return Err(format!("WebSocket handshake with {url} timed out"));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(e)) => {
                return Err(format!("WebSocket handshake with {url}: {e}"))
            }
        }
    }
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io)
        if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// For timeout messages: the start of the expression being evaluated, if any.
fn short_js(params: &Value) -> String {
    match params.get("expression").and_then(Value::as_str) {
        Some(js) if js.chars().count() > 80 => {
            format!(" (`{}...`)", js.chars().take(80).collect::<String>())
        }
        Some(js) => format!(" (`{js}`)"),
        None => String::new(),
    }
}

/// A CDP `RemoteObject` as console text.
fn remote_object_text(obj: &Value) -> String {
    if let Some(v) = obj.get("value") {
        return match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
    for key in ["unserializableValue", "description"] {
        if let Some(s) = obj.get(key).and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    obj.get("type")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned()
}

/// A CDP `ExceptionDetails` as one line: the text, then the exception's description
/// (`Error: boom\n    at ...` shortened to its first line) and where it happened.
fn exception_text(ex: &Value) -> String {
    let text = ex
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("exception");
    let desc = ex
        .get("exception")
        .map(remote_object_text)
        .map(|d| d.lines().next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let line = ex.get("lineNumber").and_then(Value::as_u64);
    let col = ex.get("columnNumber").and_then(Value::as_u64);
    let at = match (line, col) {
        (Some(l), Some(c)) => format!(" (at {}:{})", l + 1, c + 1),
        _ => String::new(),
    };
    if desc.is_empty() || text.contains(&desc) {
        format!("{text}{at}")
    } else {
        format!("{text} {desc}{at}")
    }
}

/// Standard base64 (with or without padding), as CDP sends binary data.
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for (i, c) in text.bytes().enumerate() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' => continue,
            _ => return Err(format!("not base64: byte {c:#04x} at {i}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
