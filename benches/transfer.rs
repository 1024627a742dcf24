//! Warm transfer latency through real SIP and RTP over loopback: how soon baton rings an
//! agent once a call should go to a person, how soon the agent hears audio once they
//! answer, and the longest silence the caller hears while the agent is found.
//!
//! The bench is both ends. As the caller it calls a `desk` plan it writes (a `bot =
//! "dialog"` step asking "How can I help?") from its own SIP/UDP user agent, sends one 20 ms
//! PCMU packet every 20 ms (digital silence, then from the key press on a 700 Hz tone), and
//! a second after the answer presses 0 as an RFC 4733 telephone-event (or as SIP INFO with
//! `BENCH_TRANSFER_DTMF=info`), which escalates at once. As the agent it is a softphone
//! registered with MD5 digest as baton's only `[[agent]]`: it answers baton's INVITE after
//! `BENCH_TRANSFER_RING_MS` of ringing (default 0) with a PCMU answer, sends a 500 Hz tone
//! from then on, and notes when each packet from baton arrives. Once the caller's tone has
//! reached the agent the call stays bridged for a second, then the caller hangs up.
//!
//! Per transfer:
//! - decision → INVITE: from baton's log, the engine's "the call should go to a person" to
//!   the endpoint's "ringing an agent" (baton's clock, µs); on the wire, from the log's
//!   decision, and from the caller's key press leaving, to the INVITE arriving at the agent;
//! - the agent's 200 OK leaving → the first RTP packet from baton arriving at the agent, and
//!   → the first audible one (the whisper); the whisper's last audible packet → the first
//!   packet holding the caller's tone;
//! - the longest stretch without an audible packet (µ-law RMS above 100 on the i16 scale,
//!   about -50 dBFS) arriving at the caller from the decision to the bridge (both from the
//!   log), as tests/transfer.rs measures it.
//!
//! Bench instants are set on baton's wall clock through one reading of both clocks at the
//! start; baton runs on this machine. `BENCH_TRANSFER_CALLS` transfers one after another
//! (default 20) on one baton; no call starts that could not end within
//! `BENCH_TRANSFER_BUDGET_SECS` of the start (default 240). Needs `make model` (every call
//! is transcribed) and espeak-ng (the prompts and the whisper).

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "common/rtp.rs"]
mod rtp;
#[allow(dead_code)]
#[path = "common/talk.rs"]
mod talk;
#[allow(dead_code)]
#[path = "common/uac.rs"]
mod uac;

use baton_sip::auth;
use baton_sip::parse::parse_message;
use baton_sip::{Contact, Header, Message, Method, Request, Response};
use common::{env_or, http_get, print_table, Baton};
use rtp::{rtp_socket, ulaw_decode, ulaw_encode, PTIME, SAMPLES};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use talk::strip_ansi;
use uac::sdp_media;

/// Where baton takes RTP ports.
const SERVER_PORTS: (u16, u16) = (63000, 63499);
/// The agent baton knows, as the bench's softphone signs in.
const AGENT_USER: &str = "robin";
const AGENT_PASSWORD: &str = "bench-transfer-7";
/// The caller's tone once they have pressed 0, and the agent's from their answer: each
/// tells whose audio reached the other side.
const CALLER_TONE_HZ: f64 = 700.0;
const AGENT_TONE_HZ: f64 = 500.0;
/// A packet above this RMS (i16 scale) is audible: about -50 dBFS, as in tests/transfer.rs.
const AUDIBLE_RMS: f64 = 100.0;
/// A packet holds a tone when this share of its energy is at the tone's frequency; speech
/// and music spread theirs.
const TONE_SHARE: f64 = 0.7;
/// The telephone-event payload type the caller offers.
const EVENT_PT: u8 = 101;
/// A key press: 5 packets (100 ms), then the end packet three times (RFC 4733 §2.5.1.4).
const EVENT_PACKETS: u32 = 5;
const EVENT_END_REPEATS: u32 = 3;
/// The caller presses 0 this long after the answer, and hangs up this long after the
/// agent first heard them.
const PRESS_AFTER: Duration = Duration::from_secs(1);
const STAY_BRIDGED: Duration = Duration::from_secs(1);
/// The longest a transfer may take, key press to the caller heard by the agent, beyond the
/// ringing.
const TRANSFER_LIMIT: Duration = Duration::from_secs(20);
/// What one call is expected to take before any has run, to judge the budget.
const CALL_GUESS: Duration = Duration::from_secs(8);

/// The goals: decision → INVITE, 200 OK → first audio at the agent, caller's silence.
const GOAL_INVITE_MS: f64 = 20.0;
const GOAL_FIRST_AUDIO_MS: f64 = 60.0;
const GOAL_SILENCE_MS: f64 = 300.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let params = Params {
        calls: env_or("BENCH_TRANSFER_CALLS", 20),
        ring: Duration::from_millis(env_or("BENCH_TRANSFER_RING_MS", 0u64).min(100_000)),
        budget: Duration::from_secs(env_or("BENCH_TRANSFER_BUDGET_SECS", 240)),
        info: std::env::var("BENCH_TRANSFER_DTMF").is_ok_and(|v| v.eq_ignore_ascii_case("info")),
    };
    let began = Instant::now();
    println!(
        "command: BENCH_TRANSFER_CALLS={} BENCH_TRANSFER_RING_MS={} BENCH_TRANSFER_DTMF={} \
         cargo bench --bench transfer",
        params.calls,
        params.ring.as_millis(),
        if params.info { "info" } else { "rfc4733" }
    );
    println!("machine: {}", common::machine());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = std::env::var_os("BATON_WHISPER_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("models/ggml-tiny.en.bin"));
    if !model.exists() {
        eprintln!(
            "no speech model at {}: `make model` installs it (baton transcribes every call \
             of a plan with a bot)",
            model.display()
        );
        std::process::exit(1);
    }
    let dir = common::run_dir("transfer");
    let baton = start_baton(&dir, params.ring);
    let clock = Clock::new();
    let agent = Agent::start(baton.sip, params.ring);
    if !agent.wait_registered(Duration::from_secs(10)) {
        panic!(
            "the agent's softphone did not register: {:?}; log {}",
            agent.desk().errors,
            baton.log.display()
        );
    }
    let listed = http_get(baton.http, "/v1/agents").unwrap_or_default();
    if !listed.contains("\"registered\":true") {
        panic!("baton does not list the agent as registered: {listed}");
    }
    println!(
        "agent registered (MD5 digest); ring {} ms; key press by {}; work dir {}",
        params.ring.as_millis(),
        if params.info {
            "SIP INFO"
        } else {
            "RFC 4733 telephone-event"
        },
        dir.display()
    );

    let mut caller = Caller::new(baton.sip);
    let mut samples: Vec<Sample> = Vec::new();
    let mut longest = CALL_GUESS + params.ring;
    for n in 0..params.calls {
        if began.elapsed() + longest > params.budget {
            println!(
                "call {}: not started, it would not end within the {} s budget",
                n + 1,
                params.budget.as_secs()
            );
            break;
        }
        if !baton.alive() {
            println!("baton has exited; log {}", baton.log.display());
            break;
        }
        let t0 = Instant::now();
        let sample = one_transfer(n, &baton, &mut caller, &agent, &clock, &params);
        longest = longest.max(t0.elapsed());
        println!("call {}: {}", n + 1, sample.summary());
        samples.push(sample);
    }
    report(&samples);

    let escalations = http_get(baton.http, "/v1/escalations").unwrap_or_default();
    let completed = escalations.matches("\"outcome\":\"completed\"").count();
    println!(
        "escalations listed by baton: {} completed of {}",
        completed,
        escalations.matches("\"decided_at_ms\"").count()
    );
    let problems = baton.log_problems(10);
    if !problems.is_empty() {
        println!(
            "baton's log, warnings and errors (first {}):",
            problems.len()
        );
        for p in problems {
            println!("  {}", strip_ansi(&p));
        }
    }
    let errors = agent.stop();
    for e in errors {
        println!("agent's phone: {e}");
    }
    println!(
        "ran {:.0} s; load average now {}; baton's log {}",
        began.elapsed().as_secs_f64(),
        common::load_average(),
        baton.log.display()
    );
    let failed = samples.iter().filter(|s| !s.errors.is_empty()).count();
    if samples.is_empty() || failed * 2 > samples.len() {
        eprintln!("{failed} of {} transfers failed", samples.len());
        std::process::exit(1);
    }
}

/// The run's settings.
struct Params {
    calls: usize,
    ring: Duration,
    budget: Duration,
    /// The caller presses 0 with SIP INFO rather than a telephone-event.
    info: bool,
}

/// The bench's instants and baton's wall clock (its log and API) on one scale: ms since
/// the bench read both clocks.
struct Clock {
    instant: Instant,
    epoch_us: i64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            instant: Instant::now(),
            epoch_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
        }
    }

    /// A bench instant, in ms.
    fn ms(&self, at: Instant) -> f64 {
        at.duration_since(self.instant).as_secs_f64() * 1000.0
    }

    /// A wall time in µs since the Unix epoch, in ms.
    fn wall(&self, epoch_us: i64) -> f64 {
        (epoch_us - self.epoch_us) as f64 / 1000.0
    }
}

/// Starts baton with one agent (MD5 digest) and the bench's `desk` plan.
fn start_baton(dir: &Path, ring: Duration) -> Baton {
    let plans = dir.join("dialplans");
    fs::create_dir_all(&plans).unwrap_or_else(|e| panic!("create {}: {e}", plans.display()));
    // The phone must ring out well after the bench's own ring time.
    let ring_secs = (ring.as_secs() + 10).clamp(20, 120);
    // The tests' plan: the caller's 0 sends the call to the agent.
    let plan = include_str!("../tests/data/desk.toml")
        .replace("ring_secs = 5", &format!("ring_secs = {ring_secs}"));
    fs::write(plans.join("desk.toml"), plan).expect("write dialplan");
    let agent = format!(
        "\n[[agent]]\nid = \"a-bench\"\nname = \"Robin\"\nsip_user = \"{AGENT_USER}\"\n\
         password = \"{AGENT_PASSWORD}\"\ndigest = [\"MD5\"]\n"
    );
    Baton::start_with(dir, 10, SERVER_PORTS, &agent, &plans)
}

/// Bytes of baton's log written so far: where the next call's lines start.
fn log_len(baton: &Baton) -> u64 {
    fs::metadata(&baton.log).map_or(0, |m| m.len())
}

/// Baton's log from byte `from` on.
fn log_since(baton: &Baton, from: u64) -> String {
    let raw = fs::read(&baton.log).unwrap_or_default();
    String::from_utf8_lossy(raw.get(from as usize..).unwrap_or_default()).into_owned()
}

/// One packet from baton as a phone heard it.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    at: Instant,
    /// µ-law RMS above [`AUDIBLE_RMS`].
    audible: bool,
    /// Audible, and mostly the tone the phone listens for (the other side's).
    tone: bool,
}

/// What a phone's RTP thread sends, and what it heard; shared with the bench's driver.
#[derive(Default)]
struct Line {
    /// Where to send; nothing goes out before it is known.
    dest: Option<SocketAddr>,
    /// The payload of every audio packet: a tone, or digital silence when `None`.
    tone: Option<[u8; SAMPLES as usize]>,
    /// A key to press next (its RFC 4733 event code), and when its first packet left.
    press: Option<u8>,
    pressed_at: Option<Instant>,
    heard: Vec<Arrival>,
    stop: bool,
}

/// A line's lock; a panic on the other side leaves it usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A phone's RTP: one socket, one thread that sends a packet every 20 ms and, between
/// sends, waits on the socket, so each arrival is stamped as it comes.
struct Rtp {
    line: Arc<Mutex<Line>>,
    port: u16,
    thread: Option<JoinHandle<()>>,
}

impl Rtp {
    /// Starts a phone's RTP that recognises the other side's tone at `listen_hz`.
    fn start(listen_hz: f64) -> Rtp {
        let sock = rtp_socket();
        let port = sock.local_addr().expect("RTP address").port();
        let line = Arc::new(Mutex::new(Line::default()));
        let shared = line.clone();
        let thread = thread::spawn(move || run_rtp(&sock, &shared, listen_hz));
        Rtp {
            line,
            port,
            thread: Some(thread),
        }
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        lock(&self.line)
    }

    /// Stops the thread; what was heard since the last take.
    fn stop(mut self) -> Vec<Arrival> {
        self.line().stop = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut self.line().heard)
    }
}

impl Drop for Rtp {
    fn drop(&mut self) {
        self.line().stop = true;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_rtp(sock: &UdpSocket, line: &Mutex<Line>, listen_hz: f64) {
    let ssrc: u32 = rand::random();
    let mut seq: u16 = rand::random();
    let mut ts: u32 = rand::random();
    // The key being pressed: its code, its RTP timestamp, packets sent of it.
    let mut event: Option<(u8, u32, u32)> = None;
    // A phone's packets keep no particular phase to baton's 20 ms clock.
    let mut next = Instant::now() + PTIME.mul_f64(rand::random::<f64>());
    let mut buf = [0u8; 2048];
    let mut pkt = Vec::with_capacity(12 + SAMPLES as usize);
    loop {
        let now = Instant::now();
        if now < next {
            let _ = sock.set_read_timeout(Some((next - now).max(Duration::from_micros(100))));
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                let at = Instant::now();
                if let Some((0, payload)) = rtp_payload(&buf[..len]) {
                    let (audible, tone) = classify(payload, listen_hz);
                    lock(line).heard.push(Arrival { at, audible, tone });
                }
            }
            continue;
        }
        next += PTIME;
        if now > next + PTIME * 10 {
            // Far behind (the machine stalled): carry on from now rather than burst.
            next = now + PTIME;
        }
        let mut l = lock(line);
        if l.stop {
            return;
        }
        let Some(dest) = l.dest else {
            ts = ts.wrapping_add(SAMPLES);
            continue;
        };
        if event.is_none() {
            event = l.press.take().map(|code| (code, ts, 0));
        }
        pkt.clear();
        match &mut event {
            Some((code, start, sent)) => {
                *sent += 1;
                let end = *sent > EVENT_PACKETS;
                let duration = (SAMPLES * (*sent).min(EVENT_PACKETS)) as u16;
                let first = *sent == 1;
                pkt.extend_from_slice(&rtp_header(first, EVENT_PT, seq, *start, ssrc));
                pkt.extend_from_slice(&[*code, if end { 0x80 | 10 } else { 10 }]);
                pkt.extend_from_slice(&duration.to_be_bytes());
                if first {
                    l.pressed_at = Some(Instant::now());
                }
                if *sent >= EVENT_PACKETS + EVENT_END_REPEATS {
                    event = None;
                }
            }
            None => {
                pkt.extend_from_slice(&rtp_header(false, 0, seq, ts, ssrc));
                match &l.tone {
                    Some(tone) => pkt.extend_from_slice(tone),
                    None => pkt.resize(pkt.len() + SAMPLES as usize, 0xFF),
                }
            }
        }
        drop(l);
        let _ = sock.send_to(&pkt, dest);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(SAMPLES);
    }
}

fn rtp_header(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = pt | if marker { 0x80 } else { 0 };
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// The payload type and payload of an RTP packet, past any CSRCs and header extension.
fn rtp_payload(pkt: &[u8]) -> Option<(u8, &[u8])> {
    let first = *pkt.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let pt = pkt.get(1)? & 0x7f;
    let mut head = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = pkt.get(head + 2..head + 4)?;
        head += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    Some((pt, pkt.get(head..)?))
}

/// One 20 ms PCMU payload of a tone at `hz` (a whole number of periods, so every packet is
/// the same), at about -12 dBFS.
fn tone_packet(hz: f64) -> [u8; SAMPLES as usize] {
    let mut out = [0u8; SAMPLES as usize];
    for (i, b) in out.iter_mut().enumerate() {
        let x = (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 8000.0;
        *b = ulaw_encode(x as i16);
    }
    out
}

/// Whether a PCMU payload is audible, and whether it is mostly the tone at `hz` (Goertzel:
/// the tone's bin against the packet's whole energy, 1 for a pure tone).
fn classify(payload: &[u8], hz: f64) -> (bool, bool) {
    let pcm: Vec<f64> = payload.iter().map(|&b| f64::from(ulaw_decode(b))).collect();
    let n = pcm.len().max(1) as f64;
    let energy: f64 = pcm.iter().map(|s| s * s).sum();
    let audible = (energy / n).sqrt() > AUDIBLE_RMS;
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in &pcm {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let bin = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let share = if energy > 0.0 {
        bin / (n / 2.0 * energy)
    } else {
        0.0
    };
    (audible, audible && share > TONE_SHARE)
}

/// A SIP message received, with when and from where.
struct Received {
    msg: Message,
    from: SocketAddr,
    at: Instant,
}

/// The next SIP message on `sock` within `wait`; datagrams that do not parse are skipped.
fn recv_sip(sock: &UdpSocket, buf: &mut [u8], wait: Duration) -> Option<Received> {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_micros(100))));
        let (len, from) = sock.recv_from(buf).ok()?;
        let at = Instant::now();
        if let Ok(msg) = parse_message(&buf[..len]) {
            return Some(Received { msg, from, at });
        }
        if Instant::now() >= until {
            return None;
        }
    }
}

/// A 200 (or other status) to `req`, with our To tag when the request had none.
fn reply(req: &Request, status: u16, tag: &str) -> Response {
    req.response(status, None).with_to_tag(tag)
}

/// An SDP for PCMU at 127.0.0.1:`port`, with telephone-event when `events`.
fn sdp(port: u16, events: bool) -> String {
    let (pts, event_lines) = if events {
        (
            " 101",
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        )
    } else {
        ("", "")
    };
    format!(
        "v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0{pts}\r\na=rtpmap:0 PCMU/8000\r\n{event_lines}\
         a=ptime:20\r\na=sendrecv\r\n"
    )
}

/// What the agent's phone saw of one call.
#[derive(Debug, Clone)]
struct Rang {
    /// The INVITE arrived.
    invite_at: Instant,
    /// The 200 OK left.
    ok_at: Option<Instant>,
    acked_at: Option<Instant>,
    bye_at: Option<Instant>,
    /// The INVITE's Call-Info and X-Baton-Call-Id were there.
    context_headers: bool,
    cancelled: bool,
}

/// The agent's phone as the driver sees it.
#[derive(Default)]
struct Desk {
    registered: bool,
    calls: Vec<Rang>,
    errors: Vec<String>,
}

/// The agent's softphone: a SIP thread (REGISTER with digest, answer INVITEs, ACK, BYE,
/// CANCEL) and the RTP of its calls.
struct Agent {
    desk: Arc<Mutex<Desk>>,
    rtp: Rtp,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Registers with `baton` and answers its INVITEs after `ring`.
    fn start(baton: SocketAddr, ring: Duration) -> Agent {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the agent's SIP socket");
        let rtp = Rtp::start(CALLER_TONE_HZ);
        let desk = Arc::new(Mutex::new(Desk::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let phone = Softphone {
            local: sock.local_addr().expect("agent's SIP address"),
            sock,
            baton,
            ring,
            rtp_port: rtp.port,
            line: rtp.line.clone(),
            desk: desk.clone(),
            current: None,
            register: None,
        };
        let flag = stop.clone();
        let thread = thread::spawn(move || phone.run(&flag));
        Agent {
            desk,
            rtp,
            stop,
            thread: Some(thread),
        }
    }

    fn desk(&self) -> MutexGuard<'_, Desk> {
        lock(&self.desk)
    }

    fn wait_registered(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if self.desk().registered {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the phone; what went wrong over the run.
    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut self.desk().errors)
    }
}

/// The call the agent's phone has: the INVITE, its answer and its retransmissions.
struct Inbound {
    call_id: String,
    invite: Request,
    peer: SocketAddr,
    tag: String,
    /// Where baton wants the leg's RTP.
    media: Option<SocketAddr>,
    /// When the 200 is due (the ring time is over); `None` once sent.
    answer_at: Option<Instant>,
    /// The last response sent, resent for a retransmitted INVITE, and the 200's
    /// retransmission (RFC 3261 §13.3.1.4) until the ACK.
    last: Option<Vec<u8>>,
    resend: Option<(Instant, u32)>,
}

/// The REGISTER in flight.
struct Registering {
    cseq: u32,
    sent: Instant,
    tries: u32,
    bytes: Vec<u8>,
}

/// The agent's phone's SIP side, run on its own thread: one registration, one call at a
/// time.
struct Softphone {
    sock: UdpSocket,
    local: SocketAddr,
    baton: SocketAddr,
    ring: Duration,
    rtp_port: u16,
    line: Arc<Mutex<Line>>,
    desk: Arc<Mutex<Desk>>,
    current: Option<Inbound>,
    register: Option<Registering>,
}

impl Softphone {
    fn run(mut self, stop: &AtomicBool) {
        let mut buf = vec![0u8; 65536];
        self.send_register(1, None);
        while !stop.load(Ordering::Relaxed) {
            self.timers();
            let Some(r) = recv_sip(&self.sock, &mut buf, Duration::from_millis(2)) else {
                continue;
            };
            match r.msg {
                Message::Request(req) => self.request(req, r.from, r.at),
                Message::Response(resp) => self.response(&resp),
            }
        }
    }

    fn error(&self, e: String) {
        lock(&self.desk).errors.push(e);
    }

    fn send_register(&mut self, cseq: u32, auth: Option<Header>) {
        let auth = auth.map_or(String::new(), |h| format!("{h}\r\n"));
        let text = format!(
            "REGISTER sip:{baton} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-reg{cseq}-{r:08x};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{AGENT_USER}@127.0.0.1>;tag=reg{pid}\r\n\
             To: <sip:{AGENT_USER}@127.0.0.1>\r\nCall-ID: reg-{pid}@127.0.0.1\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{AGENT_USER}@{local}>\r\nExpires: 3600\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            baton = self.baton,
            local = self.local,
            r = rand::random::<u32>(),
            pid = std::process::id(),
        );
        let _ = self.sock.send_to(text.as_bytes(), self.baton);
        self.register = Some(Registering {
            cseq,
            sent: Instant::now(),
            tries: 0,
            bytes: text.into_bytes(),
        });
    }

    fn response(&mut self, resp: &Response) {
        let Some(cseq) = resp.headers.cseq() else {
            return;
        };
        if cseq.method != Method::Register
            || self.register.as_ref().map(|r| r.cseq) != Some(cseq.seq)
        {
            return;
        }
        match resp.status {
            100..=199 => {}
            200..=299 => {
                self.register = None;
                lock(&self.desk).registered = true;
            }
            401 if cseq.seq == 1 => {
                // No `algorithm` means MD5 (RFC 3261 §22.4).
                let challenge = resp.headers.iter().find_map(|h| match h {
                    Header::WwwAuthenticate(c) => c
                        .get("algorithm")
                        .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
                        .then_some(c),
                    _ => None,
                });
                let uri = format!("sip:{}", self.baton);
                let cnonce = format!("{:08x}", rand::random::<u32>());
                match challenge.map(|c| {
                    auth::respond(c, AGENT_USER, AGENT_PASSWORD, "REGISTER", &uri, &cnonce, 1)
                }) {
                    Some(Ok(a)) => self.send_register(2, Some(Header::Authorization(a))),
                    Some(Err(e)) => self.error(format!("cannot answer the challenge: {e}")),
                    None => self.error("401 without an MD5 challenge".into()),
                }
            }
            status => {
                self.register = None;
                self.error(format!("REGISTER answered {status} {}", resp.reason));
            }
        }
    }

    fn request(&mut self, req: Request, from: SocketAddr, at: Instant) {
        let call_id = req.headers.call_id().unwrap_or_default().to_owned();
        let ours = self.current.as_ref().is_some_and(|c| c.call_id == call_id);
        match req.method {
            Method::Invite if ours => {
                // A retransmission: our last answer again.
                if let Some(last) = self.current.as_ref().and_then(|c| c.last.clone()) {
                    let _ = self.sock.send_to(&last, from);
                }
            }
            Method::Invite => self.ring(req, from, at, call_id),
            Method::Ack => {
                if let Some(c) = self.current.as_mut().filter(|_| ours) {
                    c.resend = None;
                    if let Some(r) = lock(&self.desk).calls.last_mut() {
                        r.acked_at.get_or_insert(at);
                    }
                }
            }
            Method::Bye => {
                let _ = self
                    .sock
                    .send_to(&reply(&req, 200, "agent").to_bytes(), from);
                if ours {
                    self.current = None;
                    lock(&self.line).dest = None;
                    if let Some(r) = lock(&self.desk).calls.last_mut() {
                        r.bye_at.get_or_insert(at);
                    }
                }
            }
            Method::Cancel => {
                let _ = self
                    .sock
                    .send_to(&reply(&req, 200, "agent").to_bytes(), from);
                if let Some(c) = self.current.take_if(|_| ours) {
                    if c.answer_at.is_some() {
                        let gone = reply(&c.invite, 487, &c.tag).to_bytes();
                        let _ = self.sock.send_to(&gone, c.peer);
                    }
                    if let Some(r) = lock(&self.desk).calls.last_mut() {
                        r.cancelled = true;
                    }
                }
            }
            _ => {
                let _ = self
                    .sock
                    .send_to(&reply(&req, 200, "agent").to_bytes(), from);
            }
        }
    }

    /// A new call: noted, rung (180 when the ring time is not zero) and answered now or
    /// when the ring time is over.
    fn ring(&mut self, req: Request, from: SocketAddr, at: Instant, call_id: String) {
        let context_headers = req.headers.other("Call-Info").next().is_some()
            && req.headers.other("X-Baton-Call-Id").next().is_some();
        lock(&self.desk).calls.push(Rang {
            invite_at: at,
            ok_at: None,
            acked_at: None,
            bye_at: None,
            context_headers,
            cancelled: false,
        });
        {
            let mut line = lock(&self.line);
            line.dest = None;
            line.heard.clear();
        }
        let media = sdp_media(&String::from_utf8_lossy(&req.body));
        let tag = baton_sip::build::new_tag();
        let mut last = None;
        if !self.ring.is_zero() {
            let ringing = reply(&req, 180, &tag).to_bytes();
            let _ = self.sock.send_to(&ringing, from);
            last = Some(ringing);
        }
        self.current = Some(Inbound {
            call_id,
            invite: req,
            peer: from,
            tag,
            media,
            answer_at: Some(at + self.ring),
            last,
            resend: None,
        });
        self.timers();
    }

    /// Answers when the ring time is over, and retransmits an unanswered REGISTER and an
    /// unacknowledged 200.
    fn timers(&mut self) {
        let now = Instant::now();
        let mut unanswered = false;
        if let Some(r) = &mut self.register {
            if now.duration_since(r.sent) > Duration::from_millis(500) {
                r.tries += 1;
                r.sent = now;
                unanswered = r.tries > 6;
                let _ = self.sock.send_to(&r.bytes, self.baton);
            }
        }
        if unanswered {
            self.register = None;
            self.error("no answer to REGISTER".into());
        }
        let Some(c) = &mut self.current else {
            return;
        };
        if c.answer_at.is_some_and(|t| now >= t) {
            c.answer_at = None;
            let mut ok = reply(&c.invite, 200, &c.tag);
            ok.headers.push(Header::Other {
                name: "Contact".into(),
                value: format!("<sip:{AGENT_USER}@{}>", self.local),
            });
            ok.headers
                .push(Header::ContentType("application/sdp".into()));
            ok.body = sdp(self.rtp_port, false).into_bytes();
            let bytes = ok.to_bytes();
            let sent_at = Instant::now();
            let _ = self.sock.send_to(&bytes, c.peer);
            c.last = Some(bytes);
            c.resend = Some((sent_at, 0));
            if let Some(r) = lock(&self.desk).calls.last_mut() {
                r.ok_at = Some(sent_at);
            }
            let mut line = lock(&self.line);
            line.dest = c.media;
            line.tone = Some(tone_packet(AGENT_TONE_HZ));
        }
        if let (Some((sent, tries)), Some(last)) = (&mut c.resend, &c.last) {
            if now.duration_since(*sent) > Duration::from_millis(500 << (*tries).min(2)) {
                if *tries >= 6 {
                    c.resend = None;
                } else {
                    *tries += 1;
                    *sent = now;
                    let _ = self.sock.send_to(last, c.peer);
                }
            }
        }
    }
}

/// The caller's dialog.
struct Leg {
    call_id: String,
    from: String,
    to: String,
    target: String,
    cseq: u32,
    /// Where baton wants the caller's RTP.
    media: SocketAddr,
}

/// The caller's SIP user agent: INVITE (with telephone-event), ACK, INFO, BYE, and 200 to
/// whatever baton sends.
struct Caller {
    sock: UdpSocket,
    local: SocketAddr,
    baton: SocketAddr,
    buf: Vec<u8>,
    /// The last call's ACK, resent for a retransmitted 200.
    ack: Option<Vec<u8>>,
    /// Baton hung up the current call.
    hung_up: bool,
}

impl Caller {
    fn new(baton: SocketAddr) -> Caller {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the caller's SIP socket");
        Caller {
            local: sock.local_addr().expect("caller's SIP address"),
            sock,
            baton,
            buf: vec![0; 65536],
            ack: None,
            hung_up: false,
        }
    }

    fn request(&self, method: &str, leg: &Leg, cseq: u32, extra: &str, body: &str) -> String {
        format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{r:016x};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:caller@{local}>\r\n{extra}\
             Content-Length: {len}\r\n\r\n{body}",
            target = leg.target,
            local = self.local,
            r = rand::random::<u64>(),
            from = leg.from,
            to = leg.to,
            call_id = leg.call_id,
            len = body.len(),
        )
    }

    /// Calls `desk` offering PCMU and telephone-event at `rtp_port`; the dialog once
    /// answered and acknowledged.
    fn call(&mut self, n: usize, rtp_port: u16) -> Result<Leg, String> {
        self.hung_up = false;
        self.ack = None;
        let mut leg = Leg {
            call_id: format!("transfer-{}-{n}@127.0.0.1", std::process::id()),
            from: format!("<sip:+15550100{n:03}@127.0.0.1>;tag=c{n}"),
            to: "<sip:desk@127.0.0.1>".to_owned(),
            target: format!("sip:desk@{}", self.baton),
            cseq: 1,
            media: self.baton,
        };
        let body = sdp(rtp_port, true);
        let invite = self.request(
            "INVITE",
            &leg,
            1,
            "Content-Type: application/sdp\r\n",
            &body,
        );
        let until = Instant::now() + Duration::from_secs(10);
        let mut resend = Instant::now();
        let mut gap = Duration::from_millis(500);
        let mut provisional = false;
        while Instant::now() < until {
            if !provisional && Instant::now() >= resend {
                let _ = self.sock.send_to(invite.as_bytes(), self.baton);
                resend = Instant::now() + gap;
                gap = (gap * 2).min(Duration::from_secs(4));
            }
            let Some(r) = recv_sip(&self.sock, &mut self.buf, Duration::from_millis(20)) else {
                continue;
            };
            let resp = match r.msg {
                Message::Request(req) => {
                    self.answer(&req, r.from);
                    continue;
                }
                Message::Response(resp) => resp,
            };
            if resp.headers.call_id() != Some(leg.call_id.as_str())
                || resp.headers.cseq().map(|c| &c.method) != Some(&Method::Invite)
            {
                continue;
            }
            match resp.status {
                100..=199 => provisional = true,
                200..=299 => {
                    leg.to = resp.headers.to().map(|t| t.to_string()).unwrap_or_default();
                    if let Some(Contact::Addr(c)) = resp.headers.contacts().next() {
                        leg.target = c.uri.to_string();
                    }
                    leg.media = sdp_media(&String::from_utf8_lossy(&resp.body))
                        .ok_or("200 OK without an SDP audio address")?;
                    let ack = self.request("ACK", &leg, 1, "", "");
                    let _ = self.sock.send_to(ack.as_bytes(), self.baton);
                    self.ack = Some(ack.into_bytes());
                    return Ok(leg);
                }
                status => {
                    let to = resp.headers.to().map(|t| t.to_string()).unwrap_or_default();
                    let ack = invite
                        .lines()
                        .filter(|l| {
                            ["Via:", "From:", "Call-ID:"]
                                .iter()
                                .any(|h| l.starts_with(h))
                        })
                        .collect::<Vec<_>>()
                        .join("\r\n");
                    let ack = format!(
                        "ACK {} SIP/2.0\r\n{ack}\r\nTo: {to}\r\nCSeq: 1 ACK\r\n\
                         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                        leg.target
                    );
                    let _ = self.sock.send_to(ack.as_bytes(), self.baton);
                    return Err(format!("INVITE answered {status} {}", resp.reason));
                }
            }
        }
        Err("no final answer to the INVITE within 10 s".into())
    }

    /// Presses `digit` with SIP INFO; when the INFO left.
    fn info(&mut self, leg: &mut Leg, digit: char) -> Instant {
        leg.cseq += 1;
        let body = format!("Signal={digit}\r\nDuration=100\r\n");
        let info = self.request(
            "INFO",
            leg,
            leg.cseq,
            "Content-Type: application/dtmf-relay\r\n",
            &body,
        );
        let at = Instant::now();
        let _ = self.sock.send_to(info.as_bytes(), self.baton);
        at
    }

    /// Answers what baton sends for up to `wait`.
    fn serve(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while let Some(r) = recv_sip(
            &self.sock,
            &mut self.buf,
            until.saturating_duration_since(Instant::now()),
        ) {
            match r.msg {
                Message::Request(req) => self.answer(&req, r.from),
                Message::Response(resp) => {
                    let invite_ok = resp.is_success()
                        && resp.headers.cseq().map(|c| &c.method) == Some(&Method::Invite);
                    if let (true, Some(ack)) = (invite_ok, &self.ack) {
                        // A retransmitted 200: our ACK was lost.
                        let _ = self.sock.send_to(ack, self.baton);
                    }
                }
            }
            if Instant::now() >= until {
                break;
            }
        }
    }

    fn answer(&mut self, req: &Request, from: SocketAddr) {
        match req.method {
            Method::Ack => {}
            Method::Bye => {
                self.hung_up = true;
                let _ = self
                    .sock
                    .send_to(&reply(req, 200, "caller").to_bytes(), from);
            }
            _ => {
                let _ = self
                    .sock
                    .send_to(&reply(req, 200, "caller").to_bytes(), from);
            }
        }
    }

    /// Hangs up: BYE until answered (at most 5 s).
    fn bye(&mut self, leg: &mut Leg) -> Result<(), String> {
        if self.hung_up {
            return Ok(());
        }
        leg.cseq += 1;
        let bye = self.request("BYE", leg, leg.cseq, "", "");
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            let _ = self.sock.send_to(bye.as_bytes(), self.baton);
            let retry = Instant::now() + Duration::from_millis(500);
            while let Some(r) = recv_sip(
                &self.sock,
                &mut self.buf,
                retry.saturating_duration_since(Instant::now()),
            ) {
                match r.msg {
                    Message::Request(req) => self.answer(&req, r.from),
                    Message::Response(resp)
                        if resp.headers.cseq().map(|c| &c.method) == Some(&Method::Bye) =>
                    {
                        return if resp.is_success() {
                            Ok(())
                        } else {
                            Err(format!("BYE answered {} {}", resp.status, resp.reason))
                        };
                    }
                    Message::Response(_) => {}
                }
            }
        }
        Err("no answer to BYE within 5 s".into())
    }
}

/// The figures of one transfer, in ms; `None` where it could not be measured.
#[derive(Default)]
struct Sample {
    /// Baton's log: decision → the endpoint sent the INVITE.
    invite_log: Option<f64>,
    /// Decision (log) → the INVITE at the agent.
    invite_wire: Option<f64>,
    /// The key press left the caller → the INVITE at the agent.
    press_to_invite: Option<f64>,
    /// The key press left the caller → the decision (log).
    press_to_decision: Option<f64>,
    /// The agent's 200 OK left → the first RTP packet at the agent.
    ok_to_rtp: Option<f64>,
    /// The agent's 200 OK left → the first audible packet at the agent (the whisper).
    ok_to_audible: Option<f64>,
    /// The whisper's last audible packet → the first packet of the caller's tone.
    whisper_to_caller: Option<f64>,
    /// The whisper's first to last audible packet.
    whisper: Option<f64>,
    /// The caller's longest silence, decision → bridge, and when it started (after the
    /// decision).
    silence: Option<f64>,
    silence_at: Option<f64>,
    /// Decision → bridge (log).
    to_bridge: Option<f64>,
    /// Bridge (log) → the agent's tone at the caller.
    bridge_to_agent: Option<f64>,
    errors: Vec<String>,
}

impl Sample {
    fn summary(&self) -> String {
        let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
        let mut s = format!(
            "decision → INVITE {} ms (log) / {} ms (wire), key press → INVITE {} ms; 200 OK → \
             first RTP {} ms, → whisper {} ms; whisper {} ms, → caller's audio {} ms; \
             decision → bridge {} ms, caller's longest silence {} ms (from +{} ms)",
            f(self.invite_log),
            f(self.invite_wire),
            f(self.press_to_invite),
            f(self.ok_to_rtp),
            f(self.ok_to_audible),
            f(self.whisper),
            f(self.whisper_to_caller),
            f(self.to_bridge),
            f(self.silence),
            f(self.silence_at),
        );
        if !self.errors.is_empty() {
            s.push_str(&format!("; FAILED: {}", self.errors.join("; ")));
        }
        s
    }
}

/// One call: the caller calls, presses 0, is put through, stays a second and hangs up.
fn one_transfer(
    n: usize,
    baton: &Baton,
    caller: &mut Caller,
    agent: &Agent,
    clock: &Clock,
    params: &Params,
) -> Sample {
    let mut sample = Sample::default();
    let log_from = log_len(baton);
    let calls_before = agent.desk().calls.len();
    let rtp = Rtp::start(AGENT_TONE_HZ);
    let mut leg = match caller.call(n, rtp.port) {
        Ok(leg) => leg,
        Err(e) => {
            sample.errors.push(e);
            return sample;
        }
    };
    rtp.line().dest = Some(leg.media);
    caller.serve(PRESS_AFTER);
    let mut pressed = None;
    {
        let mut line = rtp.line();
        line.tone = Some(tone_packet(CALLER_TONE_HZ));
        if params.info {
            pressed = Some(caller.info(&mut leg, '0'));
        } else {
            line.press = Some(0);
        }
    }
    // Put through once the agent hears the caller's tone.
    let until = Instant::now() + params.ring + TRANSFER_LIMIT;
    let mut through = false;
    while Instant::now() < until && !caller.hung_up {
        caller.serve(PTIME);
        let ok_at = agent.desk().calls.get(calls_before).and_then(|r| r.ok_at);
        if let Some(ok_at) = ok_at {
            through = agent
                .rtp
                .line()
                .heard
                .iter()
                .any(|a| a.tone && a.at >= ok_at);
        }
        if through {
            break;
        }
    }
    if through {
        caller.serve(STAY_BRIDGED);
    } else if caller.hung_up {
        sample.errors.push("baton hung up on the caller".into());
    } else {
        sample.errors.push(format!(
            "the agent did not hear the caller within {} s of the key press",
            (params.ring + TRANSFER_LIMIT).as_secs()
        ));
    }
    if let Err(e) = caller.bye(&mut leg) {
        sample.errors.push(e);
    }
    // Baton lets the agent go with the caller.
    let until = Instant::now() + Duration::from_secs(3);
    let mut let_go = false;
    while Instant::now() < until && !let_go {
        caller.serve(PTIME);
        let_go = agent
            .desk()
            .calls
            .get(calls_before)
            .is_some_and(|r| r.bye_at.is_some() || r.cancelled);
    }
    if !let_go {
        sample
            .errors
            .push("baton did not hang up the agent's leg within 3 s".into());
    }
    let pressed = pressed.or(rtp.line().pressed_at);
    let at_caller = rtp.stop();
    let at_agent = std::mem::take(&mut agent.rtp.line().heard);
    let rang = agent.desk().calls.get(calls_before).cloned();
    if agent.desk().calls.len() > calls_before + 1 {
        sample
            .errors
            .push("the agent's phone was rung more than once".into());
    }
    let log = Events::parse(&log_since(baton, log_from), &leg.call_id);
    measure(
        &mut sample,
        clock,
        pressed,
        rang.as_ref(),
        &at_agent,
        &at_caller,
        &log,
    );
    sample
}

/// The times (µs since the Unix epoch) of the transfer's steps in baton's log.
#[derive(Default, Debug)]
struct Events {
    decision: Option<i64>,
    invite: Option<i64>,
    bridged: Option<i64>,
}

impl Events {
    /// The first of each step in `log`, the lines of call `sip_call_id` (the endpoint's
    /// INVITE line names no call: the first after the decision).
    fn parse(log: &str, sip_call_id: &str) -> Events {
        let mut ev = Events::default();
        let span = format!("call_id=\"{sip_call_id}\"");
        for line in log.lines() {
            let plain = strip_ansi(line);
            let Some(at) = plain.split_whitespace().next().and_then(rfc3339_us) else {
                continue;
            };
            let ours = plain.contains(&span);
            if ours && plain.contains("the call should go to a person") {
                ev.decision.get_or_insert(at);
            } else if ev.decision.is_some() && plain.contains("baton::endpoint: ringing an agent") {
                ev.invite.get_or_insert(at);
            } else if ours && plain.contains("caller and agent bridged") {
                ev.bridged.get_or_insert(at);
            }
        }
        ev
    }
}

/// `2026-11-24T13:49:04.071452Z` in µs since the Unix epoch.
fn rfc3339_us(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let digits: String = frac.chars().take(6).collect();
    let us = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + min * 60 + sec) * 1_000_000) + us)
}

/// Works out one transfer's figures from what each phone heard and baton's log.
fn measure(
    s: &mut Sample,
    clock: &Clock,
    pressed: Option<Instant>,
    rang: Option<&Rang>,
    at_agent: &[Arrival],
    at_caller: &[Arrival],
    log: &Events,
) {
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1000.0;
    let decision = log.decision.map(|us| clock.wall(us));
    let bridged = log.bridged.map(|us| clock.wall(us));
    let Some(rang) = rang else {
        s.errors.push("the agent's phone never rang".into());
        return;
    };
    if rang.ok_at.is_some() && rang.acked_at.is_none() {
        s.errors
            .push("baton never acknowledged the agent's 200 OK".into());
    }
    if !rang.context_headers {
        s.errors
            .push("the INVITE lacked Call-Info or X-Baton-Call-Id".into());
    }
    if let (Some(d), Some(i)) = (log.decision, log.invite) {
        s.invite_log = Some((i - d) as f64 / 1000.0);
    }
    s.invite_wire = decision.map(|d| clock.ms(rang.invite_at) - d);
    s.press_to_invite = pressed.map(|p| ms(p, rang.invite_at));
    s.press_to_decision = pressed.zip(decision).map(|(p, d)| d - clock.ms(p));
    s.to_bridge = decision.zip(bridged).map(|(d, b)| b - d);
    if let Some(ok) = rang.ok_at {
        let after: Vec<&Arrival> = at_agent.iter().filter(|a| a.at >= ok).collect();
        s.ok_to_rtp = after.first().map(|a| ms(ok, a.at));
        let first_audible = after.iter().find(|a| a.audible);
        s.ok_to_audible = first_audible.map(|a| ms(ok, a.at));
        if let Some(tone) = after.iter().position(|a| a.tone) {
            let whisper_end = after[..tone].iter().rev().find(|a| a.audible);
            s.whisper_to_caller = whisper_end.map(|w| ms(w.at, after[tone].at));
            s.whisper = first_audible.zip(whisper_end).map(|(a, b)| ms(a.at, b.at));
        }
    }
    if let (Some(from), Some(to)) = (decision, bridged) {
        let (quiet, at) = longest_quiet(at_caller, clock, from, to);
        s.silence = Some(quiet);
        s.silence_at = Some(at - from);
        s.bridge_to_agent = at_caller
            .iter()
            .find(|a| a.tone && clock.ms(a.at) >= to)
            .map(|a| clock.ms(a.at) - to);
    }
    for (what, missing) in [
        ("the decision in baton's log", log.decision.is_none()),
        ("the INVITE in baton's log", log.invite.is_none()),
        ("the bridge in baton's log", log.bridged.is_none()),
        ("the agent's 200 OK", rang.ok_at.is_none()),
        ("the key press", pressed.is_none()),
    ] {
        if missing {
            s.errors.push(format!("no {what}"));
        }
    }
}

/// The longest time in `[from, to]` (ms on the bench's scale) without an audible packet
/// arriving: the largest gap between consecutive audible arrivals, the window's ends
/// counting as bounds (tests/common/capture.rs `longest_quiet`), and where it started.
fn longest_quiet(heard: &[Arrival], clock: &Clock, from: f64, to: f64) -> (f64, f64) {
    let mut last = from;
    // (length, where it started)
    let mut longest = (0.0, from);
    for a in heard.iter().filter(|a| a.audible) {
        let at = clock.ms(a.at);
        if at < from || at > to {
            continue;
        }
        if at - last > longest.0 {
            longest = (at - last, last);
        }
        last = at;
    }
    if to - last > longest.0 {
        longest = (to - last, last);
    }
    longest
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// The table: p50, p99 and max of each figure over the transfers, and the goals.
fn report(samples: &[Sample]) {
    type Figure = fn(&Sample) -> Option<f64>;
    let rows: [(&str, Figure, Option<f64>); 11] = [
        (
            "1. decision → INVITE sent (baton's log)",
            |s| s.invite_log,
            Some(GOAL_INVITE_MS),
        ),
        (
            "1. decision (log) → INVITE at the agent",
            |s| s.invite_wire,
            Some(GOAL_INVITE_MS),
        ),
        (
            "   caller's key press sent → INVITE at the agent",
            |s| s.press_to_invite,
            None,
        ),
        (
            "   caller's key press sent → decision (log)",
            |s| s.press_to_decision,
            None,
        ),
        (
            "2. agent's 200 OK sent → first RTP at the agent",
            |s| s.ok_to_rtp,
            Some(GOAL_FIRST_AUDIO_MS),
        ),
        (
            "   agent's 200 OK sent → first audible packet (whisper)",
            |s| s.ok_to_audible,
            None,
        ),
        (
            "2. end of the whisper → caller's audio at the agent",
            |s| s.whisper_to_caller,
            None,
        ),
        (
            "   whisper, first to last audible packet",
            |s| s.whisper,
            None,
        ),
        (
            "3. caller's longest silence, decision → bridge",
            |s| s.silence,
            Some(GOAL_SILENCE_MS),
        ),
        ("   decision → bridge (log)", |s| s.to_bridge, None),
        (
            "   bridge (log) → agent's audio at the caller",
            |s| s.bridge_to_agent,
            None,
        ),
    ];
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.errors.is_empty()).collect();
    println!(
        "\nwarm transfer, {} of {} transfers complete (figures from complete ones), ms:",
        ok.len(),
        samples.len()
    );
    let f = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.1}"));
    let mut verdicts = Vec::new();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, get, goal)| {
            let mut v: Vec<f64> = ok.iter().filter_map(|s| get(s)).collect();
            v.sort_by(f64::total_cmp);
            let p99 = quantile(&v, 0.99);
            if let Some(goal) = goal {
                verdicts.push(format!(
                    "{}: goal p99 ≤ {goal:.0} ms {}",
                    name.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' '),
                    match p99 {
                        Some(p) if p <= *goal => "met",
                        Some(_) => "missed",
                        None => "not measured",
                    }
                ));
            }
            vec![
                name.to_string(),
                v.len().to_string(),
                f(quantile(&v, 0.5)),
                f(p99),
                f(quantile(&v, 1.0)),
                goal.map_or(String::new(), |g| format!("≤ {g:.0}")),
            ]
        })
        .collect();
    print_table(&["figure", "samples", "p50", "p99", "max", "goal"], &table);
    for v in verdicts {
        println!("{v}");
    }
    for (i, s) in samples.iter().enumerate() {
        if !s.errors.is_empty() {
            println!("call {} failed: {}", i + 1, s.errors.join("; "));
        }
    }
}
