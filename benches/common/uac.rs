//! The benches' SIP caller: a minimal user agent client over UDP that places many calls at
//! once (INVITE with a PCMU offer, ACK, BYE), answers what the server sends, and reads the
//! server's SDP for where to send RTP.

use socket2::SockRef;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One call's dialog as the caller sees it.
pub struct Dialog {
    /// The SIP Call-ID the bench chose.
    pub call_id: String,
    from: String,
    to: String,
    target: String,
    /// Where the server wants the call's RTP.
    pub media: SocketAddr,
}

/// A call to place: the user part of the request URI (which dialplan answers) and the
/// bench's RTP port to put in the offer.
pub struct Offer {
    /// Who is called: `echo`, `bank`, ...
    pub user: String,
    /// Where the bench receives the call's RTP.
    pub rtp_port: u16,
}

/// A minimal SIP caller over UDP: INVITE with an SDP offer, ACK, BYE, and 200 to whatever
/// the server sends (a BYE from baton during the run is counted as a failure).
pub struct Uac {
    sock: UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    /// What went wrong so far (failed calls, BYEs from the server), for the report.
    pub errors: Vec<String>,
    /// BYEs the server sent: calls it hung up on.
    pub hangups: u64,
    /// The SIP Call-IDs of the calls the server hung up on.
    pub hung_up: Vec<String>,
    /// The user part of the From URI: the calling number the server sees.
    pub from_user: String,
    acks: HashMap<String, Vec<u8>>,
    buf: Vec<u8>,
}

/// INVITEs in flight at once during set-up.
const SETUP_WINDOW: usize = 100;

impl Uac {
    /// A caller on `sock` calling `server`.
    pub fn new(sock: UdpSocket, server: SocketAddr) -> Uac {
        let _ = SockRef::from(&sock).set_recv_buffer_size(4 << 20);
        let local = sock.local_addr().expect("SIP socket address");
        Uac {
            sock,
            server,
            local,
            errors: Vec::new(),
            hangups: 0,
            hung_up: Vec::new(),
            from_user: "bench".to_owned(),
            acks: HashMap::new(),
            buf: vec![0; 65536],
        }
    }

    /// Places one call per offer; a slot stays `None` when its call failed. `answered`
    /// learns each call's index and media address as soon as its 200 arrives, before the
    /// ACK goes out (so the server's first packets can already be told apart).
    pub fn set_up(
        &mut self,
        offers: &[Offer],
        deadline: Instant,
        mut answered: impl FnMut(usize, SocketAddr),
    ) -> Vec<Option<Dialog>> {
        let n = offers.len();
        let mut calls: Vec<Option<Dialog>> = (0..n).map(|_| None).collect();
        let mut pending: HashMap<String, (usize, Instant, u32, Vec<u8>)> = HashMap::new();
        let mut next = 0;
        let mut done = 0;
        let tag = format!("{:x}", std::process::id());
        while done < n && Instant::now() < deadline {
            while pending.len() < SETUP_WINDOW && next < n {
                let call_id = format!("bench-{tag}-{next}@127.0.0.1");
                let invite = self.invite(&call_id, next, &offers[next]);
                let _ = self.sock.send_to(&invite, self.server);
                pending.insert(call_id, (next, Instant::now(), 0, invite));
                next += 1;
            }
            let now = Instant::now();
            for (idx, sent, tries, invite) in pending.values_mut() {
                if now.duration_since(*sent) > Duration::from_millis(500 << (*tries).min(3)) {
                    if *tries >= 6 {
                        self.errors
                            .push(format!("call {idx}: no final answer to INVITE"));
                        *tries = u32::MAX;
                    } else {
                        let _ = self.sock.send_to(invite, self.server);
                        *sent = now;
                        *tries += 1;
                    }
                }
            }
            let given_up = pending.len();
            pending.retain(|_, (_, _, tries, _)| *tries != u32::MAX);
            done += given_up - pending.len();
            let Some(msg) = self.recv(Duration::from_millis(20)) else {
                continue;
            };
            if msg.is_request() {
                self.answer_request(&msg);
                continue;
            }
            let (Some(code), Some(call_id)) = (msg.status(), msg.header("call-id", "i")) else {
                continue;
            };
            if !msg.cseq_method().eq_ignore_ascii_case("INVITE") {
                continue;
            }
            if let Some(ack) = self.acks.get(call_id) {
                // A retransmitted 200: the ACK was lost or late.
                let _ = self.sock.send_to(ack, self.server);
                continue;
            }
            if code < 200 {
                continue;
            }
            let Some((idx, ..)) = pending.remove(call_id) else {
                continue;
            };
            done += 1;
            let to = msg.header("to", "t").unwrap_or_default().to_owned();
            if code >= 300 {
                self.errors
                    .push(format!("call {idx}: {}", msg.first_line()));
                let ack = self.request(
                    "ACK",
                    &format!("sip:{}@{}", offers[idx].user, self.server),
                    call_id,
                    msg.header("from", "f").unwrap_or_default(),
                    &to,
                    1,
                    "",
                    true,
                );
                let _ = self.sock.send_to(&ack, self.server);
                continue;
            }
            let target = msg
                .contact_uri()
                .unwrap_or_else(|| format!("sip:{}@{}", offers[idx].user, self.server));
            let from = msg.header("from", "f").unwrap_or_default().to_owned();
            let Some(media) = sdp_media(msg.body()) else {
                self.errors
                    .push(format!("call {idx}: 200 OK without usable SDP"));
                continue;
            };
            let ack = self.request("ACK", &target, call_id, &from, &to, 1, "", false);
            answered(idx, media);
            let _ = self.sock.send_to(&ack, self.server);
            self.acks.insert(call_id.to_owned(), ack);
            calls[idx] = Some(Dialog {
                call_id: call_id.to_owned(),
                from,
                to,
                target,
                media,
            });
        }
        if done < n {
            self.errors.push(format!(
                "set-up deadline passed with {} calls unanswered",
                n - done
            ));
        }
        calls
    }

    /// Handles what the server sends for up to `wait`.
    pub fn serve_requests(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        while let Some(msg) = self.recv(until.saturating_duration_since(Instant::now())) {
            if msg.is_request() {
                self.answer_request(&msg);
            } else if let Some(ack) = msg.header("call-id", "i").and_then(|c| self.acks.get(c)) {
                let _ = self.sock.send_to(ack, self.server);
            }
            if Instant::now() >= until {
                break;
            }
        }
    }

    /// Sends BYE on every call and waits for the 200s.
    pub fn tear_down(&mut self, calls: &[Option<Dialog>], deadline: Instant) {
        let mut pending: HashMap<&str, (Instant, u32, Vec<u8>)> = HashMap::new();
        let mut iter = calls.iter().flatten();
        let mut exhausted = false;
        while Instant::now() < deadline {
            while pending.len() < SETUP_WINDOW && !exhausted {
                match iter.next() {
                    Some(d) => {
                        let bye = self
                            .request("BYE", &d.target, &d.call_id, &d.from, &d.to, 2, "", false);
                        let _ = self.sock.send_to(&bye, self.server);
                        pending.insert(&d.call_id, (Instant::now(), 0, bye));
                    }
                    None => exhausted = true,
                }
            }
            if exhausted && pending.is_empty() {
                return;
            }
            let now = Instant::now();
            for (sent, tries, bye) in pending.values_mut() {
                if now.duration_since(*sent) > Duration::from_millis(500) && *tries < 6 {
                    let _ = self.sock.send_to(bye, self.server);
                    *sent = now;
                    *tries += 1;
                }
            }
            let Some(msg) = self.recv(Duration::from_millis(20)) else {
                continue;
            };
            if msg.is_request() {
                self.answer_request(&msg);
            } else if msg.cseq_method().eq_ignore_ascii_case("BYE") {
                if let Some(c) = msg.header("call-id", "i") {
                    if let Some(code) = msg.status().filter(|&c| c >= 200) {
                        if code >= 300 {
                            self.errors.push(format!("BYE {c}: {}", msg.first_line()));
                        }
                        pending.remove(c);
                    }
                }
            }
        }
        self.errors
            .push(format!("{} BYEs unanswered at the deadline", pending.len()));
    }

    fn recv(&mut self, wait: Duration) -> Option<SipMessage> {
        let _ = self
            .sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let (len, _) = self.sock.recv_from(&mut self.buf).ok()?;
        Some(SipMessage(
            String::from_utf8_lossy(&self.buf[..len]).into_owned(),
        ))
    }

    fn answer_request(&mut self, msg: &SipMessage) {
        let method = msg
            .first_line()
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        if method == "ACK" {
            return;
        }
        if method == "BYE" {
            self.hangups += 1;
            let call_id = msg.header("call-id", "i").unwrap_or("?").to_owned();
            self.errors.push(format!("baton hung up call {call_id}"));
            self.hung_up.push(call_id);
        }
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for line in msg.head_lines() {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"].contains(&name.as_str())
            {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        let _ = self.sock.send_to(out.as_bytes(), self.server);
    }

    fn invite(&self, call_id: &str, idx: usize, offer: &Offer) -> Vec<u8> {
        let sdp = pcmu_sdp(offer.rtp_port, idx);
        let from = format!("<sip:{}@127.0.0.1>;tag=b{idx}", self.from_user);
        let to = format!("<sip:{}@127.0.0.1>", offer.user);
        let target = format!("sip:{}@{}", offer.user, self.server);
        self.request("INVITE", &target, call_id, &from, &to, 1, &sdp, true)
    }

    /// A request; `stable_branch` keeps the INVITE's branch (retransmissions, non-2xx ACK).
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        target: &str,
        call_id: &str,
        from: &str,
        to: &str,
        cseq: u32,
        sdp: &str,
        stable_branch: bool,
    ) -> Vec<u8> {
        let branch = if stable_branch {
            format!("z9hG4bK-{}", hash(call_id))
        } else {
            format!("z9hG4bK-{}-{method}-{:x}", hash(call_id), rand_u32())
        };
        let cseq_method = if method == "ACK" { "ACK" } else { method };
        let mut m = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} {cseq_method}\r\nContact: <sip:bench@{}>\r\n",
            self.local, self.local
        );
        if sdp.is_empty() {
            m.push_str("Content-Length: 0\r\n\r\n");
        } else {
            m.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            ));
        }
        m.into_bytes()
    }
}

/// A received SIP message, read just enough to run a call.
struct SipMessage(String);

impl SipMessage {
    fn first_line(&self) -> &str {
        self.0.lines().next().unwrap_or_default()
    }

    fn is_request(&self) -> bool {
        !self.0.starts_with("SIP/2.0")
    }

    fn status(&self) -> Option<u16> {
        self.first_line().split(' ').nth(1)?.parse().ok()
    }

    fn head_lines(&self) -> impl Iterator<Item = &str> {
        let head = self.0.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n").skip(1)
    }

    /// The value of the first header called `name` (or its compact form).
    fn header(&self, name: &str, compact: &str) -> Option<&str> {
        self.head_lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact)).then(|| v.trim())
        })
    }

    fn cseq_method(&self) -> &str {
        self.header("cseq", "cseq")
            .and_then(|v| v.split_whitespace().nth(1))
            .unwrap_or_default()
    }

    fn contact_uri(&self) -> Option<String> {
        let v = self.header("contact", "m")?;
        let start = v.find('<')? + 1;
        let end = v[start..].find('>')? + start;
        Some(v[start..end].to_owned())
    }

    fn body(&self) -> &str {
        self.0.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// An SDP offering PCMU only, 20 ms packets, at 127.0.0.1:`port`; `session` tells calls apart.
pub fn pcmu_sdp(port: u16, session: usize) -> String {
    format!(
        "v=0\r\no=bench {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// The audio address of an SDP: its `c=` line and the port of its `m=audio` line.
pub fn sdp_media(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = ip.or(c.trim().parse::<Ipv4Addr>().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m
                .split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok());
        }
    }
    Some(SocketAddr::new(IpAddr::V4(ip?), port?))
}

fn hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(0);
    h.finish() as u32
}
