//! The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4). Since RFC 6026 the INVITE
//! server transaction sends the 2xx once and never repeats it; the UAS core repeats it
//! until the ACK arrives, end to end through any proxies.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::{Message, Request, Response};
use crate::transaction::{Peer, TimerConfig, Transmit};

/// What the 2xx retransmission reports to the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uas2xxEvent {
    /// No ACK within 64·T1: the dialog is confirmed but the session should end (send BYE).
    AckTimeout,
}

/// Repeats one 2xx to an INVITE at T1, 2·T1, … capped at T2 until the ACK comes, for at
/// most 64·T1. The first copy is sent by the server transaction; this sends the rest.
/// Retransmits on every transport: a proxy further along may be on UDP.
#[derive(Debug)]
pub struct Uas2xxRetransmit {
    response: Response,
    to: Peer,
    t2: Duration,
    interval: Duration,
    next: Option<Instant>,
    give_up: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Uas2xxEvent>,
}

impl Uas2xxRetransmit {
    /// Starts retransmitting `response` to `to`; `now` is when the first copy went out.
    pub fn new(
        response: Response,
        to: Peer,
        timers: &TimerConfig,
        now: Instant,
    ) -> Uas2xxRetransmit {
        Uas2xxRetransmit {
            response,
            to,
            t2: timers.t2,
            interval: timers.t1,
            next: Some(now + timers.t1),
            give_up: now + timers.transaction_timeout(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether `ack` acknowledges this 2xx: same Call-ID and CSeq number (§13.3.1.4).
    pub fn matches_ack(&self, ack: &Request) -> bool {
        let ours = (
            self.response.headers.call_id(),
            self.response.headers.cseq().map(|c| c.seq),
        );
        let theirs = (ack.headers.call_id(), ack.headers.cseq().map(|c| c.seq));
        ours.0.is_some() && ours == theirs
    }

    /// The ACK arrived: stop.
    pub fn handle_ack(&mut self) {
        self.next = None;
    }

    /// Sends the retransmissions due at `now`, or gives up at 64·T1.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(next) = self.next else {
            return;
        };
        if now >= self.give_up {
            self.next = None;
            self.events.push_back(Uas2xxEvent::AckTimeout);
            return;
        }
        if now >= next {
            self.transmits.push_back(Transmit {
                msg: Message::Response(self.response.clone()),
                to: self.to,
                tx: None,
            });
            self.interval = (self.interval * 2).min(self.t2);
            self.next = Some(now + self.interval);
        }
    }

    /// When to call [`Uas2xxRetransmit::handle_timeout`] next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.map(|next| next.min(self.give_up))
    }

    /// The next copy of the 2xx to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<Uas2xxEvent> {
        self.events.pop_front()
    }

    /// The ACK came or the machine gave up: it can be dropped.
    pub fn is_finished(&self) -> bool {
        self.next.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::fixtures::request;
    use crate::message::Method;
    use crate::transaction::Transport;

    fn peer() -> Peer {
        Peer {
            addr: "192.0.2.10:5060".parse().expect("literal address"),
            transport: Transport::Udp,
        }
    }

    fn drive(m: &mut Uas2xxRetransmit, t0: Instant, until: Duration) -> Vec<Duration> {
        let mut sent = Vec::new();
        while let Some(at) = m.poll_timeout() {
            if at > t0 + until {
                break;
            }
            m.handle_timeout(at);
            while m.poll_transmit().is_some() {
                sent.push(at - t0);
            }
        }
        sent
    }

    #[test]
    fn doubles_from_t1_to_t2_and_gives_up_at_64_t1() {
        let invite = request(Method::Invite, "z9hG4bKi", 1);
        let t0 = Instant::now();
        let mut m = Uas2xxRetransmit::new(
            invite.response(200, None),
            peer(),
            &TimerConfig::default(),
            t0,
        );
        let sent = drive(&mut m, t0, Duration::from_secs(100));
        let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect();
        assert_eq!(sent, expected);
        assert_eq!(m.poll_event(), Some(Uas2xxEvent::AckTimeout));
        assert!(m.is_finished());
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn ack_stops_retransmission_without_event() {
        let invite = request(Method::Invite, "z9hG4bKi", 4);
        let t0 = Instant::now();
        let mut m = Uas2xxRetransmit::new(
            invite.response(200, None),
            peer(),
            &TimerConfig::default(),
            t0,
        );
        assert_eq!(drive(&mut m, t0, Duration::from_secs(2)).len(), 2);
        let ack = request(Method::Ack, "z9hG4bKnew", 4);
        assert!(m.matches_ack(&ack));
        assert!(!m.matches_ack(&request(Method::Ack, "z9hG4bKnew", 5)));
        m.handle_ack();
        assert!(drive(&mut m, t0, Duration::from_secs(100)).is_empty());
        assert_eq!(m.poll_event(), None);
        assert!(m.is_finished());
    }
}
