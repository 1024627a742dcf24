//! The SIP transports: one UDP socket and a TCP listener on the same address. They turn
//! datagrams and stream bytes into parsed messages for the endpoint, and send what the
//! endpoint hands them. No SIP logic lives here.

use crate::metrics::Metrics;
use baton_sip::parse::{self, Framing, ParseError};
use baton_sip::transaction::{Peer, Transport};
use baton_sip::Message;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Largest SIP message accepted on any transport.
pub const MAX_MESSAGE: usize = 65_535;
/// TCP connections held open at once; more are refused.
const MAX_TCP_CONNECTIONS: usize = 4096;
/// How long a connection may sit in the middle of a message.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may stay silent between messages.
const IDLE_TIMEOUT: Duration = Duration::from_secs(900);
/// Messages queued towards one TCP peer before further ones are dropped.
const TCP_SEND_QUEUE: usize = 256;

/// What arrived on a transport.
pub enum Inbound {
    /// A well-formed message.
    Message(Message, Peer),
    /// Bytes that did not parse; `raw` is kept so the endpoint can salvage headers for a 400.
    Malformed(ParseError, Vec<u8>, Peer),
}

/// The send side of the transports, shared by the endpoint.
#[derive(Clone)]
pub struct Transports {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    tcp: Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>,
    inbound: mpsc::Sender<Inbound>,
    metrics: Arc<Metrics>,
}

impl Transports {
    /// Binds UDP and TCP on `addr` and starts the receive loops feeding `inbound`.
    pub async fn bind(
        addr: SocketAddr,
        inbound: mpsc::Sender<Inbound>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Transports> {
        let udp = Arc::new(UdpSocket::bind(addr).await?);
        let local = udp.local_addr()?;
        let listener = TcpListener::bind(local).await?;
        let t = Transports {
            udp,
            local,
            tcp: Arc::default(),
            inbound,
            metrics,
        };
        tokio::spawn(t.clone().udp_loop());
        tokio::spawn(t.clone().accept_loop(listener));
        Ok(t)
    }

    /// The address SIP listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends a message to a peer; errors are logged, as SIP's own timers handle loss.
    pub fn send(&self, msg: &Message, to: Peer) {
        let bytes = msg.to_bytes();
        match to.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&bytes, to.addr) {
                    debug!(peer = %to.addr, error = %e, "UDP send failed");
                }
            }
            _ => self.send_tcp(bytes, to.addr),
        }
    }

    fn send_tcp(&self, bytes: Vec<u8>, addr: SocketAddr) {
        let existing = lock(&self.tcp).get(&addr).cloned();
        match existing {
            Some(tx) => {
                if tx.try_send(bytes).is_err() {
                    warn!(peer = %addr, "TCP send queue full or closed; message dropped");
                }
            }
            None => {
                let t = self.clone();
                tokio::spawn(async move {
                    match TcpStream::connect(addr).await {
                        Ok(stream) => {
                            let tx = t.register(stream, addr);
                            if let Some(tx) = tx {
                                let _ = tx.try_send(bytes);
                            }
                        }
                        Err(e) => debug!(peer = %addr, error = %e, "TCP connect failed"),
                    }
                });
            }
        }
    }

    /// Waits, up to `limit`, until every queued TCP message has been handed to the kernel,
    /// so that the last responses before an exit are not lost.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let pending = lock(&self.tcp)
                .values()
                .any(|tx| tx.capacity() < tx.max_capacity());
            if !pending {
                // The writer may still be inside its last write_all.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn udp_loop(self) {
        // One byte more than the largest message: a datagram that fills it is oversized.
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems; keep serving.
                    debug!(error = %e, "UDP receive error");
                    continue;
                }
            };
            if n > MAX_MESSAGE {
                self.metrics.sip_dropped();
                continue;
            }
            let data = &buf[..n];
            // Keep-alives (RFC 5626 CRLF) and stray whitespace are not messages.
            if data.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                continue;
            }
            let peer = Peer {
                addr: from,
                transport: Transport::Udp,
            };
            let item = match parse::parse_message(data) {
                Ok(msg) => Inbound::Message(msg, peer),
                Err(e) => Inbound::Malformed(e, data.to_vec(), peer),
            };
            if self.inbound.send(item).await.is_err() {
                return;
            }
        }
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if lock(&self.tcp).len() >= MAX_TCP_CONNECTIONS {
                self.metrics.sip_dropped();
                continue;
            }
            self.register(stream, addr);
        }
    }

    /// Starts the reader and writer of a connection and makes it reachable for sends.
    fn register(&self, stream: TcpStream, addr: SocketAddr) -> Option<mpsc::Sender<Vec<u8>>> {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_SEND_QUEUE);
        lock(&self.tcp).insert(addr, tx.clone());
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let t = self.clone();
        tokio::spawn(async move {
            t.read_stream(&mut rd, addr).await;
            lock(&t.tcp).remove(&addr);
        });
        Some(tx)
    }

    /// Reads framed messages off one connection until it closes or sends garbage.
    async fn read_stream(&self, rd: &mut tokio::net::tcp::OwnedReadHalf, addr: SocketAddr) {
        let peer = Peer {
            addr,
            transport: Transport::Tcp,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            loop {
                match parse::frame(&buf) {
                    Framing::Incomplete => break,
                    Framing::KeepAlive { len } => {
                        buf.drain(..len);
                    }
                    Framing::Complete { len } => {
                        let msg: Vec<u8> = buf.drain(..len).collect();
                        let item = match parse::parse_message(&msg) {
                            Ok(m) => Inbound::Message(m, peer),
                            Err(e) => Inbound::Malformed(e, msg, peer),
                        };
                        if self.inbound.send(item).await.is_err() {
                            return;
                        }
                    }
                    Framing::Invalid(e) => {
                        // A stream whose framing is broken cannot be resynchronised:
                        // answer what can be answered, give the answer time to leave,
                        // then close (RFC 4475 §3.1.2.3).
                        let _ = self.inbound.send(Inbound::Malformed(e, buf, peer)).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return;
                    }
                }
            }
            // A half-received message must complete soon; an idle connection may stay.
            let limit = if buf.is_empty() {
                IDLE_TIMEOUT
            } else {
                PARTIAL_TIMEOUT
            };
            match tokio::time::timeout(limit, rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
