//! RFC 4475's SIP torture messages sent to a running baton, every one over UDP (one socket
//! per message) and over TCP (one connection per message), bytes exactly as in the RFC's
//! archive. baton must answer each as the table below says — an endpoint that serves the
//! users `echo`, `record` and `bank`, is no registrar and no proxy — keep running, and
//! still serve a normal call afterwards.
//!
//! baton answers a request to the address it came from (symmetric response routing, as
//! trunk-facing endpoints do behind NAT): the Via sent-by hosts in these messages do not
//! exist.

mod common;

use common::{caller_audio, repo_path, Baton, Sipp, Transport};
use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long a message may take to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// How long to listen to be sure a message gets no answer.
const SILENCE_WAIT: Duration = Duration::from_secs(1);
/// How long to keep listening on UDP after the answer, for responses that must not come.
const UDP_GRACE: Duration = Duration::from_millis(300);

/// What baton must do with one message.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// A final response with one of these status codes.
    Final(&'static [u16]),
    /// No response at all (a response to nobody's request; a message still incomplete).
    Nothing,
    /// Either a final response with one of these codes, or nothing.
    FinalOrNothing(&'static [u16]),
}

use Answer::{Final, FinalOrNothing, Nothing};

/// One torture message and baton's answer over each transport.
struct Case {
    file: &'static str,
    udp: Answer,
    tcp: Answer,
}

const fn both(file: &'static str, answer: Answer) -> Case {
    Case {
        file,
        udp: answer,
        tcp: answer,
    }
}

/// An out-of-dialog OPTIONS to a user baton does not serve. RFC 3261 11.2 asks for the code
/// an INVITE would get (404); trunk endpoints commonly answer every ping 200. Either is fine.
const OPTIONS_TO_NOBODY: &[u16] = &[200, 404];

const CASES: &[Case] = &[
    // Valid INVITE with wild whitespace, folding and case; its To has a tag, so it is a
    // re-INVITE for a dialog baton never had: 481 (RFC 3261 12.2.2), or 404 for the unknown
    // user vivekg.
    both("wsinv.dat", Final(&[481, 404])),
    // Valid request with a method baton does not know: 501 with Allow (RFC 3261 8.2.1).
    both("intmeth.dat", Final(&[501])),
    // Valid INVITE to the user "sips:user@example.com" (escapes decoded once): nobody here, 404.
    both("esc01.dat", Final(&[404])),
    // Valid REGISTER with %00 in users: challenged like any registration, 401.
    both("escnull.dat", Final(&[401])),
    // Method "RE%47IST%45R" is an unknown method, not REGISTER: 501 with Allow.
    both("esc02.dat", Final(&[501])),
    // Valid OPTIONS (no space before <) to the unknown user "user".
    both("lwsdisp.dat", Final(OPTIONS_TO_NOBODY)),
    // Valid INVITE with very long values, to the unknown user "user": 404.
    both("longreq.dat", Final(&[404])),
    // REGISTER then, after the Content-Length, a CRLF and an INVITE: over UDP the rest of the
    // datagram is ignored (and no response may name the INVITE's Call-ID); over TCP the
    // stream carries the REGISTER, challenged with 401, then the INVITE, whose answer is
    // not checked here.
    both("dblreq.dat", Final(&[401])),
    // Valid OPTIONS to the user "user;par=u@example.net", unknown here.
    both("semiuri.dat", Final(OPTIONS_TO_NOBODY)),
    // Valid OPTIONS whose lower Vias name unknown transports; only the top one matters.
    both("transports.dat", Final(OPTIONS_TO_NOBODY)),
    // MESSAGE: a method baton knows of but does not support (405, RFC 3261 8.2.1) or does not
    // implement (501); either way with Allow. Method checks come before the user lookup.
    both("mpart01.dat", Final(&[405, 501])),
    // A 200 OK response (UTF-8 reason phrase) matching no request of baton's: dropped.
    both("unreason.dat", Nothing),
    // A 100 response with an empty reason phrase, matching nothing: dropped.
    both("noreason.dat", Nothing),
    // Extraneous separators in Via and Contact: malformed, 400.
    both("badinv01.dat", Final(&[400])),
    // Content-Length 9999 with a 154-byte body. UDP: the datagram is all there is, 400.
    // TCP: the rest may still come, so baton waits (and may close the connection later).
    Case {
        file: "clerr.dat",
        udp: Final(&[400]),
        tcp: Nothing,
    },
    // Negative Content-Length: 400; over TCP the stream cannot be framed after it, so the
    // connection may close, but only after the 400.
    both("ncl.dat", Final(&[400])),
    // CSeq number above 2**32-1 (and other huge scalars): 400, before any method check.
    both("scalar02.dat", Final(&[400])),
    // A 503 response with overlarge scalars: dropped.
    both("scalarlg.dat", Nothing),
    // Unterminated quoted string in To: 400.
    both("quotbal.dat", Final(&[400])),
    // Request-URI in <>: 400.
    both("ltgtruri.dat", Final(&[400])),
    // Whitespace inside the Request-URI: 400.
    both("lwsruri.dat", Final(&[400])),
    // Double spaces in the request line: rejected as malformed (400) or tolerated, and then
    // an INVITE to the unknown user "user" (404).
    both("lwsstart.dat", Final(&[400, 404])),
    // Trailing space after SIP/2.0: rejected as malformed (400) or tolerated, and then an
    // OPTIONS to the unknown user "remote-target".
    both("trws.dat", Final(&[400, 200, 404])),
    // Escaped headers in the Request-URI, forbidden there (RFC 3261 19.1.1): 400.
    both("escruri.dat", Final(&[400])),
    // INVITE with a non-GMT Date, which does not matter to baton: ignored, so 404 for the
    // unknown user "user"; a 400 for the Date is allowed.
    both("baddate.dat", Final(&[404, 400])),
    // REGISTER whose Contact has an escaped header outside <>: a parser that reads Contact
    // says 400; a registrar may challenge first, 401.
    both("regbadct.dat", Final(&[400, 401])),
    // Spaces inside the To addr-spec: 400.
    both("badaspec.dat", Final(&[400])),
    // Unquoted display name with a comma: 400. The file has no empty line after its
    // headers: over UDP the datagram ends the message; over TCP baton may wait for the rest.
    Case {
        file: "baddn.dat",
        udp: Final(&[400]),
        tcp: FinalOrNothing(&[400]),
    },
    // SIP/7.0: 505 Version Not Supported.
    both("badvers.dat", Final(&[505])),
    // CSeq method INVITE on an OPTIONS request: 400.
    both("mismatch01.dat", Final(&[400])),
    // Unknown method NEWMETHOD with CSeq INVITE: 501 preferred, 400 acceptable.
    both("mismatch02.dat", Final(&[501, 400])),
    // A response with code 4294967301: dropped.
    both("bigcode.dat", Nothing),
    // OPTIONS whose branch is only the magic cookie: 400, or RFC 2543 matching and the
    // usual answer to an OPTIONS for the unknown user "user".
    both("badbranch.dat", Final(&[400, 200, 404])),
    // INVITE without To, From, Call-ID and Max-Forwards: 400.
    both("insuf.dat", Final(&[400])),
    // OPTIONS to a URI of an unknown scheme: 416 Unsupported URI Scheme.
    both("unkscm.dat", Final(&[416])),
    // OPTIONS to soap.beep://, a scheme baton never accepts: 416.
    both("novelsc.dat", Final(&[416])),
    // REGISTER with non-SIP URIs in To, From and Contact: 400 if the To is refused while
    // parsing, or 401 from the registrar's challenge.
    both("unksm2.dat", Final(&[400, 401])),
    // OPTIONS requiring unknown extensions: 420 with Unsupported listing both (Proxy-Require
    // is for proxies). RFC 3261 8.2.2 puts the user check first, so 404 for "user" is
    // also correct if baton refuses OPTIONS to unknown users.
    both("bext01.dat", Final(&[420, 404])),
    // INVITE with a body of unknown type: 415 (RFC 3261 8.2.3); the user check comes first
    // (8.2.2.1), so 404 for the unknown user "user" is also correct.
    both("invut.dat", Final(&[415, 404])),
    // REGISTER with an unknown Authorization scheme: a registrar that authenticates
    // challenges with a scheme it understands, 401 (RFC 4475 3.3.12).
    both("regaut01.dat", Final(&[401])),
    // Several Call-ID, CSeq, From and To headers: 400.
    both("multi01.dat", Final(&[400])),
    // Two different Content-Length headers: 400 (then, over TCP, the connection may close).
    both("mcl01.dat", Final(&[400])),
    // A 200 OK with a broadcast Via: dropped, never answered or forwarded.
    both("bcast.dat", Nothing),
    // OPTIONS with Max-Forwards 0: an endpoint processes it normally, never 483.
    both("zeromf.dat", Final(OPTIONS_TO_NOBODY)),
    // REGISTER, Contact without <>: challenged, 401.
    both("cparam01.dat", Final(&[401])),
    // REGISTER, Contact in <>: 401.
    both("cparam02.dat", Final(&[401])),
    // REGISTER with an escaped Route in the Contact: 401.
    both("regescrt.dat", Final(&[401])),
    // INVITE whose Accept lacks application/sdp: 406 (or 400) from the element that would
    // answer with SDP; baton refuses the unknown user "user" first, and a 404 carries no
    // body, so 404 is correct too.
    both("sdp01.dat", Final(&[406, 400, 404])),
    // RFC 2543 INVITE (no branch, From tag, Max-Forwards or Content-Length) to the unknown
    // user "UserB": accepted for compatibility, so 404. Over TCP a missing Content-Length
    // is a framing error (RFC 3261 18.3), so 400 is allowed there.
    Case {
        file: "inv2543.dat",
        udp: Final(&[404]),
        tcp: Final(&[404, 400]),
    },
    // No SIP version on the request line: 400 or dropped, never a crash.
    both("test.dat", FinalOrNothing(&[400])),
];

/// A SIP response as received: status code and headers (compact names expanded).
#[derive(Debug)]
struct Response {
    code: u16,
    headers: Vec<(String, String)>,
    first_line: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Header names in lower case, compact forms (RFC 3261 7.3.3) expanded.
fn header_name(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    match lower.as_str() {
        "i" => "call-id",
        "l" => "content-length",
        "f" => "from",
        "t" => "to",
        "v" => "via",
        "m" => "contact",
        "c" => "content-type",
        "k" => "supported",
        "s" => "subject",
        "e" => "content-encoding",
        _ => return lower,
    }
    .to_owned()
}

/// The header lines of a message (before the first empty line), unfolded.
fn header_lines(head: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((header_name(name), value.trim().to_owned()));
        }
    }
    (first, headers)
}

fn parse_response(bytes: &[u8]) -> Option<Response> {
    let end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let (first_line, headers) = header_lines(&bytes[..end]);
    let code = first_line
        .strip_prefix("SIP/2.0 ")?
        .get(..3)?
        .parse()
        .ok()?;
    Some(Response {
        code,
        headers,
        first_line,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The Call-ID of a torture request, when it has exactly one.
fn request_call_id(raw: &[u8]) -> Option<String> {
    let end = find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let (_, headers) = header_lines(&raw[..end]);
    let ids: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == "call-id")
        .map(|(_, v)| v)
        .collect();
    match ids.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// The RFC 3261 17.2.3 transaction key of a request: top Via branch (when it has the magic
/// cookie), top Via sent-by, and method. Several RFC 4475 messages share one.
fn transaction_key(raw: &[u8]) -> Option<(String, String, String)> {
    let end = find(raw, b"\r\n\r\n").unwrap_or(raw.len());
    let (first, headers) = header_lines(&raw[..end]);
    let method = first.split(' ').next()?.to_owned();
    if method.starts_with("SIP/") {
        return None;
    }
    let via = headers.iter().find(|(n, _)| n == "via")?.1.as_str();
    let mut parts = via.split(',').next()?.split(';');
    let sent_by = parts
        .next()?
        .split_whitespace()
        .last()?
        .to_ascii_lowercase();
    let branch = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("branch"))
        .map(|(_, v)| v.trim().to_owned())
        .filter(|b| b.starts_with("z9hG4bK"))?;
    Some((branch, sent_by, method))
}

/// Sends one datagram and collects every response until a final one plus a grace period,
/// or until `wait` passes.
fn exchange_udp(target: SocketAddr, raw: &[u8], wait: Duration) -> Vec<Response> {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    socket.send_to(raw, target).expect("send datagram");
    let mut deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let mut graced = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() {
            break;
        }
        socket.set_read_timeout(Some(left)).expect("read timeout");
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                if let Some(r) = parse_response(&buf[..n]) {
                    if r.code >= 200 && !graced {
                        graced = true;
                        deadline = Instant::now() + UDP_GRACE;
                    }
                    got.push(r);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            // ICMP errors from earlier sends surface here on Linux; keep listening.
            Err(_) => continue,
        }
    }
    got
}

/// Splits complete SIP messages off the front of a TCP buffer (CRLF keep-alives skipped).
fn take_tcp_messages(buf: &mut Vec<u8>, out: &mut Vec<Response>) {
    loop {
        let skip = buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        buf.drain(..skip);
        let Some(end) = find(buf, b"\r\n\r\n") else {
            return;
        };
        let (_, headers) = header_lines(&buf[..end]);
        let body = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() < end + 4 + body {
            return;
        }
        if let Some(r) = parse_response(&buf[..end + 4]) {
            out.push(r);
        }
        buf.drain(..end + 4 + body);
    }
}

/// Sends the message on a fresh TCP connection and collects responses until a final one,
/// the connection closing, or `wait` passing.
fn exchange_tcp(target: SocketAddr, raw: &[u8], wait: Duration) -> Vec<Response> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(3)).expect("connect");
    stream.write_all(raw).expect("send message");
    let deadline = Instant::now() + wait;
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || got.iter().any(|r: &Response| r.code >= 200) {
            break;
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                take_tcp_messages(&mut buf, &mut got);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    got
}

/// Checks baton's responses to one message against the table; returns what is wrong.
fn judge(case: &Case, answer: Answer, raw: &[u8], got: &[Response], udp: bool) -> Option<String> {
    let finals: Vec<&Response> = got.iter().filter(|r| r.code >= 200).collect();
    let heard = || {
        got.iter()
            .map(|r| r.first_line.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let (codes, nothing_ok): (&[u16], bool) = match answer {
        Final(codes) => (codes, false),
        Nothing => (&[], true),
        FinalOrNothing(codes) => (codes, true),
    };
    let Some(first) = finals.first() else {
        return (!nothing_ok).then(|| {
            format!(
                "{}: no final response, want one of {codes:?} (heard: {})",
                case.file,
                heard()
            )
        });
    };
    if !codes.contains(&first.code) {
        return Some(if codes.is_empty() {
            format!("{}: must not be answered, got {}", case.file, heard())
        } else {
            format!("{}: got {}, want one of {codes:?}", case.file, heard())
        });
    }
    if let Some(call_id) = request_call_id(raw) {
        // Over UDP every response must be to this message's request (dblreq's second
        // request is ignored); over TCP later messages on the stream may be answered too.
        let checked: Vec<&Response> = if udp {
            got.iter().collect()
        } else {
            vec![first]
        };
        if let Some(bad) = checked
            .iter()
            .find(|r| r.header("call-id") != Some(call_id.as_str()))
        {
            return Some(format!(
                "{}: a response does not carry the request's Call-ID {call_id:?}: {} {:?}",
                case.file,
                bad.first_line,
                bad.header("call-id")
            ));
        }
    }
    match first.code {
        405 | 501 if first.header("allow").is_none_or(str::is_empty) => Some(format!(
            "{}: {} without an Allow header",
            case.file, first.first_line
        )),
        420 => {
            let unsupported = first.header("unsupported").unwrap_or_default();
            let lists_both = ["nothingSupportsThis", "nothingSupportsThisEither"]
                .iter()
                .all(|opt| unsupported.split(',').any(|u| u.trim() == *opt));
            (!lists_both).then(|| {
                format!(
                    "{}: 420 must list both unknown options in Unsupported, got {unsupported:?}",
                    case.file
                )
            })
        }
        _ => None,
    }
}

fn torture(transport: Transport) {
    let mut baton = Baton::start(&format!("torture-{}", transport.name()));
    let dir = repo_path("tests/data/sip/rfc4475");

    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("read torture dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".dat"))
        .collect();
    let in_table: BTreeSet<String> = CASES.iter().map(|c| c.file.to_owned()).collect();
    assert_eq!(
        on_disk, in_table,
        "every torture message has a row in the table"
    );

    let mut wrong = Vec::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for case in CASES {
        let raw = std::fs::read(dir.join(case.file)).expect("read torture message");
        let (mut answer, udp) = match transport {
            Transport::Udp => (case.udp, true),
            Transport::Tcp => (case.tcp, false),
        };
        // A message with the branch, sent-by and method of an earlier one is, by RFC 3261
        // 17.2.3, a retransmission of it while that transaction lasts: baton answers the
        // earlier sender again, so this socket may hear nothing.
        if let Some(key) = transaction_key(&raw) {
            if keys.contains(&key) {
                if let Final(codes) = answer {
                    answer = FinalOrNothing(codes);
                }
            }
            keys.push(key);
        }
        let wait = match answer {
            Final(_) => ANSWER_WAIT,
            Nothing | FinalOrNothing(_) => SILENCE_WAIT,
        };
        let got = if udp {
            exchange_udp(baton.sip, &raw, wait)
        } else {
            exchange_tcp(baton.sip, &raw, wait)
        };
        if let Some(problem) = judge(case, answer, &raw, &got, udp) {
            wrong.push(problem);
        }
        baton.assert_alive();
    }
    assert!(
        wrong.is_empty(),
        "{} of {} torture messages over {} got the wrong answer:\n{}",
        wrong.len(),
        CASES.len(),
        transport.name(),
        wrong.join("\n")
    );

    // Still serving: a trunk's OPTIONS ping and a normal call with audio.
    Sipp::new(&baton, "options.xml", transport)
        .user("echo")
        .timeout(Duration::from_secs(10))
        .run()
        .assert_ok();
    let audio = caller_audio(&baton.dir, "caller", "Are you still there?", 0.0);
    let run = Sipp::new(&baton, "uac_audio.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", 2000)
        .timeout(Duration::from_secs(15))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
    baton.assert_alive();
}

#[test]
fn torture_messages_over_udp() {
    torture(Transport::Udp);
}

#[test]
fn torture_messages_over_tcp() {
    torture(Transport::Tcp);
}
