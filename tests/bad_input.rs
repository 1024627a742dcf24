//! What a trunk-facing server meets on the open internet: random bytes on its SIP and RTP
//! ports while a real call is up, oversized messages, malformed requests, and one source
//! flooding it with INVITEs. baton must keep the call going, keep answering, refuse what
//! is broken with a status that names the problem, and rate-limit the flood per source
//! without hurting other callers.

mod common;

use common::{
    caller_audio, random_u64, wait_for, Baton, SeededRng, SipCaller, SipMessage, Sipp, Transport,
};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// Garbage datagrams sent to each of the SIP and RTP ports.
const DATAGRAMS: usize = 2000;
/// Connections that send garbage and close.
const TCP_CONNECTIONS: usize = 200;

/// One random datagram or stream chunk: 0 to 1499 bytes, sometimes dressed as the start
/// of a request or response so it reaches deeper into the parser.
fn garbage(rng: &mut SeededRng) -> Vec<u8> {
    let len = rng.below(1500);
    let mut bytes = rng.bytes(len);
    let prefix: &[u8] = match rng.below(4) {
        0 => b"INVITE ",
        1 => b"SIP/2.0 ",
        _ => b"",
    };
    let n = prefix.len().min(bytes.len());
    bytes[..n].copy_from_slice(&prefix[..n]);
    bytes
}

/// Sends `count` garbage datagrams to `to`, pausing briefly every 100 so the flood is
/// fast but does not only measure the kernel's buffer size.
fn spray_udp(seed: u64, to: SocketAddr, count: usize) {
    let mut rng = SeededRng(seed);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind garbage socket");
    for i in 0..count {
        // A datagram may be refused (ICMP unreachable from an earlier one): keep going.
        let _ = sock.send_to(&garbage(&mut rng), to);
        if i % 100 == 99 {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Opens `count` TCP connections to `to`, each sending garbage then closing.
fn spray_tcp(seed: u64, to: SocketAddr, count: usize) {
    let mut rng = SeededRng(seed);
    for _ in 0..count {
        let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
            continue;
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = stream.write_all(&garbage(&mut rng));
    }
}

#[test]
fn garbage_on_every_port_does_not_disturb_a_call() {
    let mut baton = Baton::start("garbage");
    let audio = caller_audio(
        &baton.dir,
        "caller",
        "I am calling about a payment that has not arrived yet.",
        0.0,
    );
    let sipp = Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", 8000)
        .timeout(Duration::from_secs(40))
        .spawn();
    let media = sipp.answered_media(Duration::from_secs(10));
    baton.wait_state(&sipp.call_id, "active", Duration::from_secs(10));
    // The caller's media is latched before the garbage starts.
    thread::sleep(Duration::from_millis(500));

    let sip = baton.sip;
    let sprayers = [
        thread::spawn(move || spray_udp(0xbad_5150, sip, DATAGRAMS)),
        thread::spawn(move || spray_tcp(0xbad_7c90, sip, TCP_CONNECTIONS)),
        thread::spawn(move || spray_udp(0xbad_0e70, media, DATAGRAMS)),
    ];
    for s in sprayers {
        s.join().expect("garbage sender");
    }
    baton.assert_alive();
    let during = baton.call(&sipp.call_id).expect("the call is listed");
    assert_eq!(
        during["state"], "active",
        "the garbage all went in while the call was up: {during}"
    );

    let run = sipp.wait();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(10));
    assert_eq!(call["result"], "caller_bye", "{call}");
    assert_eq!(baton.get("/healthz").0, 200, "healthy after the garbage");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    assert_eq!(
        caller.options(Duration::from_secs(5)),
        Some(200),
        "OPTIONS answered after the garbage"
    );
    // Most random datagrams are not even RTP version 2: counting them shows the garbage
    // reached the call's media port and was refused there. Not all of it is counted: the
    // kernel drops part of a flood this fast when a socket buffer is full, and baton reads
    // a call's media port only a few datagrams per 20 ms, so a flood on one port overflows
    // that port's buffer rather than taking time from other calls.
    let rtp_malformed = baton.metric("baton_rtp_malformed_total");
    let sip_malformed = baton.metric("baton_sip_malformed_total");
    assert!(
        rtp_malformed >= 50.0 && sip_malformed >= DATAGRAMS as f64 / 5.0,
        "garbage counted as malformed on the RTP and SIP ports:\n{}",
        baton.metrics()
    );
    baton.assert_alive();
}

/// An out-of-dialog request from `local` over `transport` (`UDP` or `TCP`), with `cseq` as
/// the CSeq value, `extra` header lines (each ending in CRLF) and `body`; Content-Length
/// and Max-Forwards take their usual values unless `extra` sets them.
fn request(
    method: &str,
    transport: &str,
    local: SocketAddr,
    baton: SocketAddr,
    cseq: &str,
    extra: &str,
    body: &str,
) -> String {
    let sets = |name: &str| extra.to_ascii_lowercase().contains(name);
    let length = if sets("content-length:") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let hops = if sets("max-forwards:") {
        ""
    } else {
        "Max-Forwards: 70\r\n"
    };
    format!(
        "{method} sip:echo@{baton} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch:016x};rport\r\n\
         {hops}\
         From: <sip:tester@{ip}>;tag={tag:08x}\r\n\
         To: <sip:echo@{baton}>\r\n\
         Call-ID: {call:016x}@{ip}\r\n\
         CSeq: {cseq}\r\n\
         {extra}{length}\r\n{body}",
        ip = local.ip(),
        branch = random_u64(),
        tag = random_u64() as u32,
        call = random_u64(),
    )
}

/// What came back on a TCP connection within `timeout`: the bytes, and whether baton
/// closed the connection.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return (got, false);
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            // A reset is a close too (baton closed with our unread bytes in its buffer).
            Err(_) => return (got, true),
        }
    }
}

/// The status codes of every response in `bytes` (a TCP byte stream).
fn statuses(bytes: &[u8]) -> Vec<u16> {
    String::from_utf8_lossy(bytes)
        .split("SIP/2.0 ")
        .skip(1)
        .filter_map(|r| r.get(..3)?.parse().ok())
        .collect()
}

/// A request of exactly `size` bytes: `request` with an `X-Padding` header filling it out.
fn padded(size: usize, build: impl Fn(&str) -> String) -> String {
    let bare = build("X-Padding: \r\n").len();
    let pad = "p".repeat(size.saturating_sub(bare));
    let text = build(&format!("X-Padding: {pad}\r\n"));
    assert_eq!(text.len(), size, "padding arithmetic");
    text
}

#[test]
fn datagram_of_65000_random_bytes_gets_no_answer() {
    let mut baton = Baton::start("oversized-udp");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let mut rng = SeededRng(65_000);
    let mut junk = b"OPTIONS sip:echo@127.0.0.1 SIP/2.0\r\n".to_vec();
    junk.extend(rng.bytes(65_000 - junk.len()));
    caller.send(&junk);
    let answer = caller.recv(Duration::from_secs(1));
    assert!(
        answer.is_none(),
        "a 65,000-byte datagram of garbage was answered: {:?}",
        answer.map(|a| a.start)
    );
    baton.assert_alive();
    assert_eq!(
        caller.options(Duration::from_secs(5)),
        Some(200),
        "an ordinary OPTIONS from the same socket is answered"
    );
}

#[test]
fn datagram_with_oversized_headers_gets_513() {
    let baton = Baton::start("big-headers-udp");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let local = caller.local_addr();
    // 20,000 bytes of well-formed headers: past the 16 KiB header bound, under any MTU limit.
    let text = padded(20_000, |pad| {
        request("OPTIONS", "UDP", local, baton.sip, "1 OPTIONS", pad, "")
    });
    caller.send(text.as_bytes());
    let answer = caller
        .recv(Duration::from_secs(3))
        .expect("an answer to a request with oversized headers");
    assert_eq!(answer.status(), Some(513), "{answer:?}");
    assert!(answer.header("Warning").is_some(), "{answer:?}");
    assert_eq!(caller.options(Duration::from_secs(5)), Some(200));
}

/// Sends what `build` makes (given the connection's local address) on a new connection
/// and reads until baton closes it or `timeout` passes: the bytes back, and whether it closed.
fn on_new_connection(
    baton: &Baton,
    timeout: Duration,
    build: impl FnOnce(SocketAddr) -> Vec<u8>,
) -> (Vec<u8>, bool) {
    let mut stream =
        TcpStream::connect_timeout(&baton.sip, Duration::from_secs(5)).expect("connect to baton");
    let bytes = build(stream.local_addr().expect("local address"));
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("set write timeout");
    // baton may close before taking everything; what matters is what it does then.
    let _ = stream.write_all(&bytes);
    read_until_closed(&mut stream, timeout)
}

/// An OPTIONS whose body alone is past the 64 KiB limit.
fn body_past_limit(local: SocketAddr, baton: SocketAddr) -> Vec<u8> {
    let body = "b".repeat(70_000);
    let extra = "Content-Type: text/plain\r\n";
    request("OPTIONS", "TCP", local, baton, "1 OPTIONS", extra, &body).into_bytes()
}

/// 70,000 bytes of an OPTIONS header section that never ends (no empty line).
fn headers_without_end(local: SocketAddr, baton: SocketAddr) -> Vec<u8> {
    let text = padded(70_000, |extra| {
        request("OPTIONS", "TCP", local, baton, "1 OPTIONS", extra, "")
    });
    text.trim_end_matches("\r\n").as_bytes().to_vec()
}

/// What a test sends: a description and a builder taking the local and baton addresses.
type Oversized = (&'static str, fn(SocketAddr, SocketAddr) -> Vec<u8>);

#[test]
fn oversized_tcp_message_closes_the_connection() {
    let mut baton = Baton::start("oversized-tcp");
    let sip = baton.sip;
    let cases: [Oversized; 2] = [
        ("a 70,000-byte body", body_past_limit),
        (
            "70,000 bytes of headers that never end",
            headers_without_end,
        ),
    ];
    for (what, build) in cases {
        let (back, closed) =
            on_new_connection(&baton, Duration::from_secs(10), |local| build(local, sip));
        assert!(closed, "{what}: connection still open after 10 s");
        let codes = statuses(&back);
        assert!(
            codes.iter().all(|&c| c == 513),
            "{what}: the only answer allowed is 513 Message Too Large, got {codes:?}"
        );
        baton.assert_alive();
    }
    let (back, _) = on_new_connection(&baton, Duration::from_secs(2), |local| {
        request("OPTIONS", "TCP", local, sip, "1 OPTIONS", "", "").into_bytes()
    });
    assert_eq!(
        statuses(&back),
        vec![200],
        "a normal OPTIONS over a new connection"
    );
}

/// One malformed request, and the word its 400's Warning must contain.
struct Malformed {
    what: &'static str,
    cseq: &'static str,
    extra: &'static str,
    names: &'static str,
}

const MALFORMED: &[Malformed] = &[
    Malformed {
        what: "a CSeq number that is not a number",
        cseq: "one OPTIONS",
        extra: "",
        names: "CSeq",
    },
    Malformed {
        what: "a CSeq method other than the request's",
        cseq: "1 INVITE",
        extra: "",
        names: "CSeq",
    },
    Malformed {
        what: "a Max-Forwards that is not a number",
        cseq: "1 OPTIONS",
        extra: "Max-Forwards: many\r\n",
        names: "Max-Forwards",
    },
];

/// The 400's Warning header names the problem (RFC 3261 §20.43, code 399 for free text).
fn assert_names_problem(
    case: &Malformed,
    transport: &str,
    status: Option<u16>,
    warning: Option<&str>,
) {
    assert_eq!(status, Some(400), "{transport}, {}: status", case.what);
    let warning =
        warning.unwrap_or_else(|| panic!("{transport}, {}: 400 without Warning", case.what));
    assert!(
        warning.starts_with("399 ") && warning.contains(case.names),
        "{transport}, {}: Warning {warning:?} should be 399 and name {}",
        case.what,
        case.names
    );
}

#[test]
fn malformed_request_gets_400_naming_the_problem() {
    let baton = Baton::start("malformed");
    for case in MALFORMED {
        let caller = SipCaller::bind("127.0.0.1", &baton);
        let text = request(
            "OPTIONS",
            "UDP",
            caller.local_addr(),
            baton.sip,
            case.cseq,
            case.extra,
            "",
        );
        caller.send(text.as_bytes());
        let answer = caller
            .recv(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("UDP, {}: no answer", case.what));
        assert_names_problem(case, "UDP", answer.status(), answer.header("Warning"));

        let (back, _) = on_new_connection(&baton, Duration::from_secs(2), |local| {
            request(
                "OPTIONS", "TCP", local, baton.sip, case.cseq, case.extra, "",
            )
            .into_bytes()
        });
        let answer = SipMessage::parse(&back).unwrap_or_else(|| {
            panic!(
                "TCP, {}: no answer: {:?}",
                case.what,
                String::from_utf8_lossy(&back)
            )
        });
        assert_names_problem(case, "TCP", answer.status(), answer.header("Warning"));
    }
}

#[test]
fn invite_flood_from_one_source_is_limited_and_others_still_get_through() {
    let baton = Baton::builder("rate-limit")
        .config("[invite_rate_limit]\nper_source_per_sec = 5\nburst = 5\n")
        .start();
    let flooder = SipCaller::bind("127.0.0.1", &baton);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
    let rtp_port = rtp.local_addr().expect("RTP address").port();

    // A caller from another address places a call while the flood runs.
    let other = {
        let other = SipCaller::bind("127.0.0.2", &baton);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            let mut call = other.call("echo", rtp_port);
            thread::sleep(Duration::from_millis(500));
            let bye = other.bye(&mut call);
            (call.call_id, bye)
        })
    };

    // 50 INVITEs, one every 20 ms: one second's worth from one source.
    let started = Instant::now();
    let mut sent = Vec::new();
    for i in 0..50u32 {
        let at = started + Duration::from_millis(20) * i;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let (text, call_id, from) = flooder.invite_request("echo", rtp_port);
        flooder.send(text.as_bytes());
        sent.push((call_id, from));
    }
    let flood_secs = started.elapsed().as_secs_f64();
    let answers = flooder.drain(Duration::from_secs(2), Duration::from_secs(10));

    // Which INVITEs got any answer, and the 200 OK of each answered call.
    let mut answered: BTreeMap<String, Option<SipMessage>> = BTreeMap::new();
    for msg in answers {
        let (Some(id), Some(status)) = (msg.header("Call-ID"), msg.status()) else {
            continue;
        };
        let entry = answered.entry(id.to_owned()).or_default();
        if status == 200 && entry.is_none() {
            *entry = Some(msg.clone());
        }
    }
    // Tokens: the burst, plus the rate over the flood's length, plus one for rounding.
    let allowed = 5 + (5.0 * flood_secs).ceil() as usize + 1;
    assert!(
        (5..=allowed).contains(&answered.len()),
        "{} of 50 INVITEs sent over {flood_secs:.2} s were answered; the limit allows 5 at once \
         and 5 a second (at most {allowed})",
        answered.len()
    );
    let dropped = baton.metric("baton_sip_dropped_total");
    assert!(
        dropped >= (50 - allowed) as f64,
        "the refused INVITEs are counted as dropped: {dropped}\n{}",
        baton.metrics()
    );

    let (other_id, other_bye) = other.join().expect("other caller");
    assert_eq!(
        other_bye,
        Some(200),
        "the other source's call was hung up cleanly"
    );
    let other_call = baton.wait_ended(&other_id, Duration::from_secs(10));
    assert_eq!(other_call["result"], "caller_bye", "{other_call}");

    // Hang up every flood call that was answered.
    for (call_id, ok) in &answered {
        let ok = ok
            .as_ref()
            .unwrap_or_else(|| panic!("INVITE {call_id} was answered but never with 200"));
        let from = &sent
            .iter()
            .find(|(id, _)| id == call_id)
            .unwrap_or_else(|| panic!("an answer for a Call-ID never sent: {call_id}"))
            .1;
        let mut call = flooder.answered(ok, call_id.clone(), from.clone());
        flooder.ack(&call);
        assert_eq!(flooder.bye(&mut call), Some(200), "BYE for {call_id}");
    }
    assert!(
        wait_for(Duration::from_secs(10), || baton.calls(false).is_empty()),
        "calls left active: {:?}",
        baton.calls(false)
    );
}
