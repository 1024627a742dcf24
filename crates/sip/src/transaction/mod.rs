//! SIP transactions (RFC 3261 §17, as updated by RFC 6026), sans-IO.
//!
//! [`TransactionLayer`] holds every client and server transaction of an endpoint. The
//! endpoint feeds it received messages ([`TransactionLayer::handle_incoming`]), requests
//! and responses from the transaction user (TU), and the clock
//! ([`TransactionLayer::handle_timeout`]); it drains datagrams to send
//! ([`TransactionLayer::poll_transmit`]) and events for the TU
//! ([`TransactionLayer::poll_event`]), and sleeps until
//! [`TransactionLayer::poll_timeout`].
//!
//! State machines (RFC 6026 adds `Accepted` to both INVITE machines):
//! - INVITE client: Calling → Proceeding → Completed (non-2xx, ACK sent here) or
//!   Accepted (2xx, each one passed up so the TU can ACK it) → Terminated.
//! - non-INVITE client: Trying → Proceeding → Completed → Terminated.
//! - INVITE server: Proceeding → Completed (non-2xx) → Confirmed (ACK) → Terminated, or
//!   Proceeding → Accepted (2xx) → Terminated. The 2xx is retransmitted by the TU
//!   ([`crate::dialog::Uas2xxRetransmit`]), not here.
//! - non-INVITE server: Trying → Proceeding → Completed → Terminated.
//!
//! Responses go back to the [`Peer`] the request came from (symmetric response routing,
//! as RFC 3581 `rport` peers and carriers expect; the same connection on TCP).
//!
//! Limits: a terminated transaction is removed from the maps at once, so memory follows
//! the live transactions only. Every state but three ends on a timer of at most 64·T1
//! or Timer D: the INVITE client in Proceeding and the INVITE server in Proceeding wait
//! for a final response (the TU must answer every INVITE, and cancel or
//! [`TransactionLayer::terminate`] INVITEs it sent, RFC 3261 §9.1), and the non-INVITE
//! server waits for the TU at most 64·T1 ([`Timer::Guard`]). Past
//! [`TransactionConfig::max_transactions`], new requests get a stateless 503.
//! The timer heap deletes lazily: a re-armed timer leaves a stale entry that is dropped
//! when its deadline passes, so the heap holds at most the timers armed in the last 64·T1.

mod matching;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::build::MAGIC_COOKIE;
use crate::message::{Message, Method, NameAddr, Request, Response};
use matching::{Key, LegacyKey, ServerLookup};

/// The transport a message travels on; reliable ones skip retransmissions (§17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// TCP and TLS deliver or fail; UDP needs retransmission timers.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// The remote end of a message: its address and the transport (for a stream transport,
/// the address names the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip estimate; 64·T1 is the transaction timeout (B, F, H, J, L, M).
    pub t1: Duration,
    /// Cap on non-INVITE request and INVITE response retransmission intervals.
    pub t2: Duration,
    /// Maximum time a message stays in the network (Timers I and K).
    pub t4: Duration,
    /// Timer D: how long an INVITE client keeps absorbing non-2xx retransmissions (≥ 32 s).
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64·T1, the lifetime bound shared by Timers B, F, H, J, L and M.
    pub fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// Configuration of a [`TransactionLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionConfig {
    pub timers: TimerConfig,
    /// Send `100 Trying` as soon as an INVITE server transaction is created, so carriers
    /// stop retransmitting the INVITE at once.
    pub send_100_trying: bool,
    /// Live transactions beyond which new requests are refused with a stateless 503.
    pub max_transactions: usize,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            timers: TimerConfig::default(),
            send_100_trying: true,
            max_transactions: 100_000,
        }
    }
}

/// Identifies a transaction within one [`TransactionLayer`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// The RFC 3261 / RFC 6026 timers, named for events and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmission.
    A,
    /// INVITE client timeout.
    B,
    /// INVITE client wait for non-2xx retransmissions.
    D,
    /// non-INVITE request retransmission.
    E,
    /// non-INVITE client timeout.
    F,
    /// INVITE non-2xx response retransmission.
    G,
    /// INVITE server wait for the ACK.
    H,
    /// INVITE server wait for ACK retransmissions.
    I,
    /// non-INVITE server wait for request retransmissions.
    J,
    /// non-INVITE client wait for response retransmissions.
    K,
    /// INVITE server wait in Accepted (RFC 6026).
    L,
    /// INVITE client wait in Accepted (RFC 6026).
    M,
    /// Not in the RFC: a non-INVITE server transaction the TU left unanswered for 64·T1.
    Guard,
}

/// A state of one of the four machines (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Accepted,
    Confirmed,
}

/// A message to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub msg: Message,
    pub to: Peer,
    /// The transaction sending it, to report a send failure with
    /// [`TransactionLayer::handle_transport_error`]; `None` for stateless sends.
    pub tx: Option<TxId>,
}

/// What the transaction layer tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request created server transaction `tx`; the TU must answer it through
    /// [`TransactionLayer::send_response`].
    Request {
        tx: TxId,
        request: Request,
        from: Peer,
    },
    /// A CANCEL created its own server transaction `tx`; `invite` is the INVITE server
    /// transaction it targets, `None` if unknown (answer 481, RFC 3261 §9.2). Otherwise
    /// answer the CANCEL 200, and the INVITE 487 if it has no final response yet.
    Cancel {
        tx: TxId,
        invite: Option<TxId>,
        request: Request,
        from: Peer,
    },
    /// A response for client transaction `tx`. For INVITE, every 2xx (retransmissions
    /// included) comes up: the TU acknowledges each one (RFC 6026 §8.4).
    Response { tx: TxId, response: Response },
    /// An ACK that no transaction absorbs: the ACK for a 2xx (its own transaction). `tx` is
    /// the INVITE server transaction in Accepted it matched, if any (RFC 2543 peers).
    Ack {
        tx: Option<TxId>,
        request: Request,
        from: Peer,
    },
    /// A response matching no client transaction (e.g. a 2xx retransmitted after Timer M):
    /// the dialog layer may still need to ACK it.
    StrayResponse { response: Response, from: Peer },
    /// Timer B or F (the TU treats it as a 408), H (the ACK never came) or the guard fired.
    Timeout { tx: TxId, timer: Timer },
    /// The transport reported a failure to send for `tx`.
    TransportError { tx: TxId },
    /// Transaction `tx` is gone; its id will not appear again.
    Terminated { tx: TxId },
}

/// Why the layer refused a request or response from the TU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no live transaction {0}")]
    UnknownTransaction(TxId),
    #[error("{0} is a client transaction; responses go through server transactions")]
    NotServer(TxId),
    #[error("{tx} already sent a final response; status {status} not sent")]
    FinalAlreadySent { tx: TxId, status: u16 },
    #[error("status {0} is outside 100-699")]
    InvalidStatus(u16),
    #[error("100 Trying is only sent by INVITE server transactions")]
    TryingForNonInvite,
    #[error("an ACK has no client transaction; send the ACK for a 2xx with send_stateless")]
    AckIsNotATransaction,
    #[error("the request has no top Via with a z9hG4bK branch")]
    MissingBranch,
    #[error("the request's CSeq is missing or names another method")]
    BadCSeq,
    #[error("a client transaction with this branch and method already exists")]
    DuplicateBranch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// The two timers a transaction can have running at once: a retransmission timer
/// (A, E, G) and one that ends the state (B, D, F, H, I, J, K, L, M, guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Retransmit,
    Expiry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Armed {
    at: Instant,
    timer: Timer,
    interval: Duration,
}

/// Whether a transaction lives on after an input.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

#[derive(Debug)]
struct Transaction {
    kind: Kind,
    state: TxState,
    peer: Peer,
    request: Request,
    last_response: Option<Response>,
    /// INVITE client: the ACK for the non-2xx response, re-sent on its retransmissions.
    ack: Option<Request>,
    key: Option<Key>,
    legacy_key: Option<LegacyKey>,
    retransmit: Option<Armed>,
    expiry: Option<Armed>,
}

/// Outputs shared by all transactions while one of them runs.
struct Out<'a> {
    transmits: &'a mut VecDeque<Transmit>,
    events: &'a mut VecDeque<TxEvent>,
    heap: &'a mut BinaryHeap<Reverse<(Instant, TxId, Slot)>>,
    timers: &'a TimerConfig,
}

impl Transaction {
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }

    fn send(&self, id: TxId, msg: Message, out: &mut Out<'_>) {
        out.transmits.push_back(Transmit {
            msg,
            to: self.peer,
            tx: Some(id),
        });
    }

    fn arm(
        &mut self,
        id: TxId,
        slot: Slot,
        timer: Timer,
        interval: Duration,
        now: Instant,
        out: &mut Out<'_>,
    ) {
        let armed = Armed {
            at: now + interval,
            timer,
            interval,
        };
        match slot {
            Slot::Retransmit => self.retransmit = Some(armed),
            Slot::Expiry => self.expiry = Some(armed),
        }
        out.heap.push(Reverse((armed.at, id, slot)));
    }

    /// Enters a wait state ended by `timer`, which is zero on reliable transports for
    /// D, I, J and K (§17): the transaction then terminates at once.
    fn wait(
        &mut self,
        id: TxId,
        state: TxState,
        timer: Timer,
        interval: Duration,
        now: Instant,
        out: &mut Out<'_>,
    ) -> Flow {
        self.state = state;
        self.retransmit = None;
        let zero_when_reliable = matches!(timer, Timer::D | Timer::I | Timer::J | Timer::K);
        if zero_when_reliable && self.reliable() {
            self.expiry = None;
            return Flow::Terminate;
        }
        self.arm(id, Slot::Expiry, timer, interval, now, out);
        Flow::Continue
    }

    /// Starts a new client transaction: sends the request and arms A+B or E+F.
    fn start_client(&mut self, id: TxId, now: Instant, out: &mut Out<'_>) {
        let t = *out.timers;
        let (retransmit, timeout) = match self.kind {
            Kind::InviteClient => (Timer::A, Timer::B),
            _ => (Timer::E, Timer::F),
        };
        self.send(id, Message::Request(self.request.clone()), out);
        if !self.reliable() {
            self.arm(id, Slot::Retransmit, retransmit, t.t1, now, out);
        }
        self.arm(id, Slot::Expiry, timeout, t.transaction_timeout(), now, out);
    }

    /// Starts a new server transaction: INVITE may answer 100 Trying at once; a
    /// non-INVITE one gets the guard so an unanswered request cannot linger.
    fn start_server(&mut self, id: TxId, trying: bool, now: Instant, out: &mut Out<'_>) {
        match self.kind {
            Kind::InviteServer if trying => {
                let resp = self.request.response(100, None);
                self.send(id, Message::Response(resp.clone()), out);
                self.last_response = Some(resp);
            }
            Kind::NonInviteServer => {
                let guard = out.timers.transaction_timeout();
                self.arm(id, Slot::Expiry, Timer::Guard, guard, now, out);
            }
            _ => {}
        }
    }

    fn client_response(
        &mut self,
        id: TxId,
        resp: Response,
        now: Instant,
        out: &mut Out<'_>,
    ) -> Flow {
        let t = *out.timers;
        let status = resp.status;
        match (self.kind, self.state) {
            (Kind::InviteClient, TxState::Calling | TxState::Proceeding) => {
                let flow = if (100..200).contains(&status) {
                    self.state = TxState::Proceeding;
                    self.retransmit = None;
                    self.expiry = None;
                    Flow::Continue
                } else if (200..300).contains(&status) {
                    self.wait(
                        id,
                        TxState::Accepted,
                        Timer::M,
                        t.transaction_timeout(),
                        now,
                        out,
                    )
                } else {
                    let ack = self.request.ack_for_non_2xx(&resp);
                    self.send(id, Message::Request(ack.clone()), out);
                    self.ack = Some(ack);
                    self.wait(id, TxState::Completed, Timer::D, t.timer_d, now, out)
                };
                out.events.push_back(TxEvent::Response {
                    tx: id,
                    response: resp,
                });
                flow
            }
            (Kind::InviteClient, TxState::Accepted) => {
                if (200..300).contains(&status) {
                    out.events.push_back(TxEvent::Response {
                        tx: id,
                        response: resp,
                    });
                }
                Flow::Continue
            }
            (Kind::InviteClient, TxState::Completed) => {
                if status >= 300 {
                    if let Some(ack) = &self.ack {
                        self.send(id, Message::Request(ack.clone()), out);
                    }
                }
                Flow::Continue
            }
            (Kind::NonInviteClient, TxState::Trying | TxState::Proceeding) => {
                let flow = if (100..200).contains(&status) {
                    self.state = TxState::Proceeding;
                    Flow::Continue
                } else {
                    self.wait(id, TxState::Completed, Timer::K, t.t4, now, out)
                };
                out.events.push_back(TxEvent::Response {
                    tx: id,
                    response: resp,
                });
                flow
            }
            // Completed non-INVITE client: retransmitted finals are absorbed.
            _ => Flow::Continue,
        }
    }

    /// A retransmission of the request that created this server transaction.
    fn server_retransmission(&mut self, id: TxId) -> Option<Transmit> {
        let resend = match self.state {
            TxState::Proceeding | TxState::Completed => self.last_response.clone(),
            _ => None,
        }?;
        Some(Transmit {
            msg: Message::Response(resend),
            to: self.peer,
            tx: Some(id),
        })
    }

    fn server_ack(
        &mut self,
        id: TxId,
        ack: Request,
        from: Peer,
        now: Instant,
        out: &mut Out<'_>,
    ) -> Flow {
        match self.state {
            TxState::Completed => {
                let t4 = out.timers.t4;
                self.wait(id, TxState::Confirmed, Timer::I, t4, now, out)
            }
            TxState::Accepted => {
                out.events.push_back(TxEvent::Ack {
                    tx: Some(id),
                    request: ack,
                    from,
                });
                Flow::Continue
            }
            _ => Flow::Continue,
        }
    }

    fn tu_response(
        &mut self,
        id: TxId,
        resp: Response,
        now: Instant,
        out: &mut Out<'_>,
    ) -> Result<Flow, TxError> {
        let t = *out.timers;
        let status = resp.status;
        let flow = match (self.kind, self.state) {
            (Kind::InviteServer, TxState::Proceeding) => {
                let flow = if (100..200).contains(&status) {
                    Flow::Continue
                } else if (200..300).contains(&status) {
                    self.wait(
                        id,
                        TxState::Accepted,
                        Timer::L,
                        t.transaction_timeout(),
                        now,
                        out,
                    )
                } else {
                    self.state = TxState::Completed;
                    if !self.reliable() {
                        self.arm(id, Slot::Retransmit, Timer::G, t.t1, now, out);
                    }
                    self.arm(
                        id,
                        Slot::Expiry,
                        Timer::H,
                        t.transaction_timeout(),
                        now,
                        out,
                    );
                    Flow::Continue
                };
                self.send(id, Message::Response(resp.clone()), out);
                self.last_response = Some(resp);
                flow
            }
            // RFC 6026 §8.5: 2xx retransmissions from the TU pass through Accepted.
            (Kind::InviteServer, TxState::Accepted) if (200..300).contains(&status) => {
                self.send(id, Message::Response(resp), out);
                Flow::Continue
            }
            (Kind::NonInviteServer, TxState::Trying | TxState::Proceeding) => {
                if status == 100 {
                    return Err(TxError::TryingForNonInvite);
                }
                let flow = if (100..200).contains(&status) {
                    self.state = TxState::Proceeding;
                    Flow::Continue
                } else {
                    self.wait(
                        id,
                        TxState::Completed,
                        Timer::J,
                        t.transaction_timeout(),
                        now,
                        out,
                    )
                };
                self.send(id, Message::Response(resp.clone()), out);
                self.last_response = Some(resp);
                flow
            }
            _ => return Err(TxError::FinalAlreadySent { tx: id, status }),
        };
        Ok(flow)
    }

    fn timer_fired(&mut self, id: TxId, slot: Slot, now: Instant, out: &mut Out<'_>) -> Flow {
        let armed = match slot {
            Slot::Retransmit => self.retransmit.take(),
            Slot::Expiry => self.expiry.take(),
        };
        let Some(armed) = armed else {
            return Flow::Continue;
        };
        let t = *out.timers;
        match armed.timer {
            Timer::A => {
                self.send(id, Message::Request(self.request.clone()), out);
                self.arm(id, slot, Timer::A, armed.interval * 2, now, out);
                Flow::Continue
            }
            Timer::E => {
                self.send(id, Message::Request(self.request.clone()), out);
                let next = match self.state {
                    TxState::Proceeding => t.t2,
                    _ => (armed.interval * 2).min(t.t2),
                };
                self.arm(id, slot, Timer::E, next, now, out);
                Flow::Continue
            }
            Timer::G => {
                if let Some(resp) = &self.last_response {
                    self.send(id, Message::Response(resp.clone()), out);
                }
                self.arm(id, slot, Timer::G, (armed.interval * 2).min(t.t2), now, out);
                Flow::Continue
            }
            Timer::B | Timer::F | Timer::H | Timer::Guard => {
                out.events.push_back(TxEvent::Timeout {
                    tx: id,
                    timer: armed.timer,
                });
                Flow::Terminate
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => Flow::Terminate,
        }
    }
}

/// All transactions of one SIP endpoint, with their timers (see the module documentation).
#[derive(Debug)]
pub struct TransactionLayer {
    config: TransactionConfig,
    next_id: u64,
    txs: HashMap<TxId, Transaction>,
    index: HashMap<Key, TxId>,
    legacy_index: HashMap<LegacyKey, Vec<TxId>>,
    heap: BinaryHeap<Reverse<(Instant, TxId, Slot)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

impl TransactionLayer {
    /// An empty layer.
    pub fn new(config: TransactionConfig) -> TransactionLayer {
        TransactionLayer {
            config,
            next_id: 0,
            txs: HashMap::new(),
            index: HashMap::new(),
            legacy_index: HashMap::new(),
            heap: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The layer's configuration.
    pub fn config(&self) -> &TransactionConfig {
        &self.config
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// No live transaction.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxId) -> Option<TxState> {
        self.txs.get(&tx).map(|t| t.state)
    }

    /// The request that created a live transaction.
    pub fn request(&self, tx: TxId) -> Option<&Request> {
        self.txs.get(&tx).map(|t| &t.request)
    }

    /// Feeds a message received from `from`.
    pub fn handle_incoming(&mut self, msg: Message, from: Peer, now: Instant) {
        match msg {
            Message::Request(req) => self.incoming_request(req, from, now),
            Message::Response(resp) => self.incoming_response(resp, from, now),
        }
    }

    /// Starts a client transaction for `req` (anything but ACK) towards `to`. The request
    /// must carry its top Via with a fresh `z9hG4bK` branch and a CSeq of its method.
    pub fn send_request(&mut self, req: Request, to: Peer, now: Instant) -> Result<TxId, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        if req.headers.cseq().map(|c| &c.method) != Some(&req.method) {
            return Err(TxError::BadCSeq);
        }
        let key = matching::client_key_for_request(&req)
            .filter(|k| matches!(k, Key::Client { branch, .. } if branch.starts_with(MAGIC_COOKIE)))
            .ok_or(TxError::MissingBranch)?;
        if self.index.contains_key(&key) {
            return Err(TxError::DuplicateBranch);
        }
        let kind = if req.method == Method::Invite {
            Kind::InviteClient
        } else {
            Kind::NonInviteClient
        };
        let id = self.allocate_id();
        let mut tx = Transaction {
            kind,
            state: if kind == Kind::InviteClient {
                TxState::Calling
            } else {
                TxState::Trying
            },
            peer: to,
            request: req,
            last_response: None,
            ack: None,
            key: Some(key.clone()),
            legacy_key: None,
            retransmit: None,
            expiry: None,
        };
        tx.start_client(id, now, &mut self.out());
        self.index.insert(key, id);
        self.txs.insert(id, tx);
        Ok(id)
    }

    /// Sends the TU's response on server transaction `tx`.
    pub fn send_response(&mut self, tx: TxId, resp: Response, now: Instant) -> Result<(), TxError> {
        if !(100..=699).contains(&resp.status) {
            return Err(TxError::InvalidStatus(resp.status));
        }
        let mut out = Out {
            transmits: &mut self.transmits,
            events: &mut self.events,
            heap: &mut self.heap,
            timers: &self.config.timers,
        };
        let t = self
            .txs
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction(tx))?;
        if matches!(t.kind, Kind::InviteClient | Kind::NonInviteClient) {
            return Err(TxError::NotServer(tx));
        }
        let flow = t.tu_response(tx, resp, now, &mut out)?;
        self.apply(tx, flow);
        Ok(())
    }

    /// Queues a message outside any transaction: the ACK for a 2xx, or a 2xx retransmitted
    /// by the UAS core.
    pub fn send_stateless(&mut self, msg: Message, to: Peer) {
        self.transmits.push_back(Transmit { msg, to, tx: None });
    }

    /// The transport failed to send for `tx` (e.g. the TCP connection is gone).
    pub fn handle_transport_error(&mut self, tx: TxId) {
        if self.txs.contains_key(&tx) {
            self.events.push_back(TxEvent::TransportError { tx });
            self.remove(tx);
        }
    }

    /// Ends `tx` at once, e.g. an INVITE client transaction still unanswered 64·T1 after
    /// its CANCEL (RFC 3261 §9.1).
    pub fn terminate(&mut self, tx: TxId) {
        if self.txs.contains_key(&tx) {
            self.remove(tx);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, slot))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let mut out = Out {
                transmits: &mut self.transmits,
                events: &mut self.events,
                heap: &mut self.heap,
                timers: &self.config.timers,
            };
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            let current = match slot {
                Slot::Retransmit => tx.retransmit,
                Slot::Expiry => tx.expiry,
            };
            // Lazy deletion: entries of timers since re-armed or cancelled are skipped.
            if current.map(|a| a.at) != Some(at) {
                continue;
            }
            let flow = tx.timer_fired(id, slot, now, &mut out);
            self.apply(id, flow);
        }
    }

    /// The earliest instant [`TransactionLayer::handle_timeout`] has work to do (it may be
    /// a timer since cancelled: waking early is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    fn allocate_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    fn out(&mut self) -> Out<'_> {
        Out {
            transmits: &mut self.transmits,
            events: &mut self.events,
            heap: &mut self.heap,
            timers: &self.config.timers,
        }
    }

    fn apply(&mut self, id: TxId, flow: Flow) {
        if flow == Flow::Terminate {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: TxId) {
        let Some(tx) = self.txs.remove(&id) else {
            return;
        };
        if let Some(key) = tx.key {
            self.index.remove(&key);
        }
        if let Some(key) = tx.legacy_key {
            if let Some(ids) = self.legacy_index.get_mut(&key) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.legacy_index.remove(&key);
                }
            }
        }
        self.events.push_back(TxEvent::Terminated { tx: id });
    }

    /// Finds the server transaction `req` belongs to, reading it as `as_method`.
    fn find_server(&self, req: &Request, as_method: &Method) -> Option<TxId> {
        match matching::server_lookup(req, as_method)? {
            ServerLookup::Rfc3261(key) => self.index.get(&key).copied(),
            ServerLookup::Legacy(key) => self.legacy_index.get(&key)?.iter().copied().find(|id| {
                let Some(tx) = self.txs.get(id) else {
                    return false;
                };
                let expected_tag = if req.method == Method::Ack {
                    tx.last_response
                        .as_ref()
                        .and_then(|r| r.headers.to())
                        .and_then(NameAddr::tag)
                } else {
                    tx.request.headers.to().and_then(NameAddr::tag)
                };
                matching::legacy_fields_match(&tx.request, req, expected_tag)
            }),
        }
    }

    fn incoming_request(&mut self, req: Request, from: Peer, now: Instant) {
        let well_formed = req.headers.from().is_some()
            && req.headers.to().is_some()
            && req.headers.call_id().is_some()
            && req.headers.cseq().map(|c| &c.method) == Some(&req.method);
        if !well_formed || req.headers.top_via().is_none() {
            // Without a Via there is nowhere to answer; an ACK is never answered.
            if req.headers.top_via().is_some() && req.method != Method::Ack {
                let resp = req.response(400, Some("Missing or Inconsistent Mandatory Header"));
                self.send_stateless(Message::Response(resp), from);
            }
            return;
        }

        if req.method == Method::Ack {
            match self.find_server(&req, &Method::Ack) {
                Some(id) => {
                    let mut out = Out {
                        transmits: &mut self.transmits,
                        events: &mut self.events,
                        heap: &mut self.heap,
                        timers: &self.config.timers,
                    };
                    if let Some(tx) = self.txs.get_mut(&id) {
                        let flow = tx.server_ack(id, req, from, now, &mut out);
                        self.apply(id, flow);
                    }
                }
                None => self.events.push_back(TxEvent::Ack {
                    tx: None,
                    request: req,
                    from,
                }),
            }
            return;
        }

        if let Some(id) = self.find_server(&req, &req.method) {
            if let Some(resend) = self
                .txs
                .get_mut(&id)
                .and_then(|tx| tx.server_retransmission(id))
            {
                self.transmits.push_back(resend);
            }
            return;
        }

        if self.txs.len() >= self.config.max_transactions {
            let resp = req.response(503, None);
            self.send_stateless(Message::Response(resp), from);
            return;
        }

        let (key, legacy_key) = match matching::server_lookup(&req, &req.method) {
            Some(ServerLookup::Rfc3261(key)) => (Some(key), None),
            Some(ServerLookup::Legacy(key)) => (None, Some(key)),
            None => return,
        };
        let kind = if req.method == Method::Invite {
            Kind::InviteServer
        } else {
            Kind::NonInviteServer
        };
        let cancelled = if req.method == Method::Cancel {
            Some(self.find_server(&req, &Method::Invite))
        } else {
            None
        };
        let id = self.allocate_id();
        let mut tx = Transaction {
            kind,
            state: if kind == Kind::InviteServer {
                TxState::Proceeding
            } else {
                TxState::Trying
            },
            peer: from,
            request: req.clone(),
            last_response: None,
            ack: None,
            key: key.clone(),
            legacy_key: legacy_key.clone(),
            retransmit: None,
            expiry: None,
        };
        let trying = self.config.send_100_trying;
        // The TU hears of the request before any transmission of this transaction.
        self.events.push_back(match cancelled {
            Some(invite) => TxEvent::Cancel {
                tx: id,
                invite,
                request: req,
                from,
            },
            None => TxEvent::Request {
                tx: id,
                request: req,
                from,
            },
        });
        tx.start_server(id, trying, now, &mut self.out());
        if let Some(key) = key {
            self.index.insert(key, id);
        }
        if let Some(key) = legacy_key {
            self.legacy_index.entry(key).or_default().push(id);
        }
        self.txs.insert(id, tx);
    }

    fn incoming_response(&mut self, resp: Response, from: Peer, now: Instant) {
        // §8.1.3.3: a UAC discards a response with more than one Via.
        if resp.headers.vias().nth(1).is_some() || !(100..=699).contains(&resp.status) {
            return;
        }
        let id =
            matching::client_key_for_response(&resp).and_then(|key| self.index.get(&key).copied());
        let Some(id) = id else {
            self.events.push_back(TxEvent::StrayResponse {
                response: resp,
                from,
            });
            return;
        };
        let mut out = Out {
            transmits: &mut self.transmits,
            events: &mut self.events,
            heap: &mut self.heap,
            timers: &self.config.timers,
        };
        if let Some(tx) = self.txs.get_mut(&id) {
            let flow = tx.client_response(id, resp, now, &mut out);
            self.apply(id, flow);
        }
    }
}
