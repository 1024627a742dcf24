//! Transaction state machines on a simulated clock: every timer, retransmission pattern and
//! matching rule, over UDP and TCP.

use super::*;
use crate::build::fixtures::{request, via};
use crate::message::{CSeq, Header, Method, Request};

const MS: Duration = Duration::from_millis(1);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn peer(transport: Transport) -> Peer {
    Peer {
        addr: "192.0.2.10:5060".parse().expect("literal address"),
        transport,
    }
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(TransactionConfig::default())
}

/// Runs the layer's timers from `t0` up to `t0 + until`, recording when each transmit and
/// event came out, as an endpoint driving `poll_timeout` would.
struct Run {
    transmits: Vec<(Duration, Transmit)>,
    events: Vec<(Duration, TxEvent)>,
}

fn run(layer: &mut TransactionLayer, t0: Instant, until: Duration) -> Run {
    let mut out = Run {
        transmits: Vec::new(),
        events: Vec::new(),
    };
    while let Some(at) = layer.poll_timeout() {
        if at > t0 + until {
            break;
        }
        layer.handle_timeout(at);
        while let Some(t) = layer.poll_transmit() {
            out.transmits.push((at - t0, t));
        }
        while let Some(e) = layer.poll_event() {
            out.events.push((at - t0, e));
        }
    }
    out
}

fn transmits(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

fn events(layer: &mut TransactionLayer) -> Vec<TxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

fn times(run: &Run) -> Vec<Duration> {
    run.transmits.iter().map(|(t, _)| *t).collect()
}

fn status_of(t: &Transmit) -> Option<u16> {
    match &t.msg {
        Message::Response(r) => Some(r.status),
        Message::Request(_) => None,
    }
}

fn method_of(t: &Transmit) -> Option<&Method> {
    match &t.msg {
        Message::Request(r) => Some(&r.method),
        Message::Response(_) => None,
    }
}

/// A request as baton sends it: its own branch on the top Via.
fn outgoing(method: Method, branch: &str) -> Request {
    let mut req = request(method, branch, 1);
    if let Some(Header::Via(v)) = req.headers.0.first_mut() {
        v.host = "baton.example".to_string();
    }
    req
}

/// Starts a server transaction for `req` and returns its id, discarding the 100 Trying.
fn serve(layer: &mut TransactionLayer, req: Request, from: Peer, now: Instant) -> TxId {
    layer.handle_incoming(Message::Request(req), from, now);
    transmits(layer);
    match events(layer).first() {
        Some(TxEvent::Request { tx, .. }) => *tx,
        other => panic!("expected a new request, got {other:?}"),
    }
}

// ---- INVITE client ----

#[test]
fn timer_a_doubles_until_timer_b_times_out_over_udp() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = l
        .send_request(
            outgoing(Method::Invite, "z9hG4bKa"),
            peer(Transport::Udp),
            t0,
        )
        .expect("valid INVITE");
    assert_eq!(transmits(&mut l).len(), 1);
    let r = run(&mut l, t0, secs(100.0));
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        .iter()
        .map(|s| secs(*s))
        .collect();
    assert_eq!(times(&r), expected);
    assert_eq!(
        r.events,
        vec![
            (
                secs(32.0),
                TxEvent::Timeout {
                    tx,
                    timer: Timer::B
                }
            ),
            (secs(32.0), TxEvent::Terminated { tx }),
        ]
    );
    assert!(l.is_empty());
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn invite_over_tcp_is_not_retransmitted_but_timer_b_still_fires() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = l
        .send_request(
            outgoing(Method::Invite, "z9hG4bKa"),
            peer(Transport::Tcp),
            t0,
        )
        .expect("valid INVITE");
    transmits(&mut l);
    let r = run(&mut l, t0, secs(100.0));
    assert!(r.transmits.is_empty());
    assert_eq!(
        r.events[0],
        (
            secs(32.0),
            TxEvent::Timeout {
                tx,
                timer: Timer::B
            }
        )
    );
}

#[test]
fn provisional_stops_retransmission_and_timer_b() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    transmits(&mut l);
    l.handle_incoming(
        Message::Response(invite.response(180, None).with_to_tag("u")),
        peer(Transport::Udp),
        t0 + secs(0.2),
    );
    assert_eq!(l.state(tx), Some(TxState::Proceeding));
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { response, .. }] if response.status == 180)
    );
    let r = run(&mut l, t0, secs(100.0));
    assert!(r.transmits.is_empty());
    assert!(r.events.is_empty());
}

#[test]
fn non_2xx_is_acked_by_the_transaction_and_retransmissions_absorbed_until_timer_d() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    transmits(&mut l);
    let busy = invite.response(486, None).with_to_tag("uas");
    l.handle_incoming(
        Message::Response(busy.clone()),
        peer(Transport::Udp),
        t0 + MS,
    );
    let sent = transmits(&mut l);
    assert_eq!(sent.len(), 1);
    let Message::Request(ack) = &sent[0].msg else {
        panic!("expected the ACK");
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.to().and_then(NameAddr::tag), Some("uas"));
    assert_eq!(ack.headers.top_via(), invite.headers.top_via());
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { response, .. }] if response.status == 486)
    );
    assert_eq!(l.state(tx), Some(TxState::Completed));

    // A retransmitted 486 is answered with the same ACK and not passed up again.
    l.handle_incoming(
        Message::Response(busy),
        peer(Transport::Udp),
        t0 + secs(1.0),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(method_of)
            .collect::<Vec<_>>(),
        vec![&Method::Ack]
    );
    assert!(events(&mut l).is_empty());

    let r = run(&mut l, t0, secs(100.0));
    assert!(
        r.transmits.is_empty(),
        "no INVITE retransmission after the final response"
    );
    assert_eq!(
        r.events,
        vec![(secs(32.0) + MS, TxEvent::Terminated { tx })]
    );
}

#[test]
fn timer_d_is_zero_over_tcp() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Tcp), t0)
        .expect("valid");
    transmits(&mut l);
    l.handle_incoming(
        Message::Response(invite.response(503, None).with_to_tag("u")),
        peer(Transport::Tcp),
        t0,
    );
    assert_eq!(transmits(&mut l).len(), 1, "the ACK");
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { .. }, TxEvent::Terminated { tx: t }] if *t == tx)
    );
    assert!(l.is_empty());
}

#[test]
fn accepted_passes_every_2xx_up_without_acking_until_timer_m() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    transmits(&mut l);
    let ok = invite.response(200, None).with_to_tag("uas");
    l.handle_incoming(Message::Response(ok.clone()), peer(Transport::Udp), t0 + MS);
    assert_eq!(l.state(tx), Some(TxState::Accepted));
    assert!(
        transmits(&mut l).is_empty(),
        "the TU acknowledges a 2xx, not the transaction"
    );
    assert_eq!(events(&mut l).len(), 1);

    l.handle_incoming(
        Message::Response(ok.clone()),
        peer(Transport::Udp),
        t0 + secs(0.5),
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { tx: t, response }] if *t == tx && response.status == 200)
    );
    // A late non-2xx in Accepted is dropped.
    l.handle_incoming(
        Message::Response(invite.response(500, None)),
        peer(Transport::Udp),
        t0 + secs(0.6),
    );
    assert!(events(&mut l).is_empty());

    let r = run(&mut l, t0, secs(100.0));
    assert_eq!(
        r.events,
        vec![(secs(32.0) + MS, TxEvent::Terminated { tx })]
    );
    // After Timer M a 2xx retransmission is stray: the dialog layer still ACKs it.
    l.handle_incoming(Message::Response(ok), peer(Transport::Udp), t0 + secs(40.0));
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::StrayResponse { response, .. }] if response.status == 200)
    );
}

#[test]
fn timer_m_is_not_zeroed_over_tcp() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Tcp), t0)
        .expect("valid");
    l.handle_incoming(
        Message::Response(invite.response(200, None).with_to_tag("u")),
        peer(Transport::Tcp),
        t0,
    );
    assert_eq!(l.state(tx), Some(TxState::Accepted));
    events(&mut l);
    let r = run(&mut l, t0, secs(100.0));
    assert_eq!(r.events, vec![(secs(32.0), TxEvent::Terminated { tx })]);
}

// ---- non-INVITE client ----

#[test]
fn timer_e_doubles_capped_by_t2_until_timer_f() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = l
        .send_request(
            outgoing(Method::Options, "z9hG4bKo"),
            peer(Transport::Udp),
            t0,
        )
        .expect("valid");
    transmits(&mut l);
    let r = run(&mut l, t0, secs(100.0));
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .iter()
        .map(|s| secs(*s))
        .collect();
    assert_eq!(times(&r), expected);
    assert_eq!(
        r.events[0],
        (
            secs(32.0),
            TxEvent::Timeout {
                tx,
                timer: Timer::F
            }
        )
    );
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = outgoing(Method::Bye, "z9hG4bKb");
    l.send_request(bye.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    transmits(&mut l);
    // 100 at 0.2 s: Timer E keeps doubling until it next fires (0.5 s), then runs at T2.
    l.handle_incoming(
        Message::Response(bye.response(100, None)),
        peer(Transport::Udp),
        t0 + secs(0.2),
    );
    let r = run(&mut l, t0, secs(13.0));
    assert_eq!(times(&r), vec![secs(0.5), secs(4.5), secs(8.5), secs(12.5)]);
}

#[test]
fn non_invite_over_tcp_is_not_retransmitted_and_timer_k_is_zero() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = outgoing(Method::Bye, "z9hG4bKb");
    let tx = l
        .send_request(bye.clone(), peer(Transport::Tcp), t0)
        .expect("valid");
    transmits(&mut l);
    let r = run(&mut l, t0, secs(10.0));
    assert!(r.transmits.is_empty());
    l.handle_incoming(
        Message::Response(bye.response(200, None)),
        peer(Transport::Tcp),
        t0 + secs(10.0),
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Response { .. }, TxEvent::Terminated { tx: t }] if *t == tx)
    );
}

#[test]
fn timer_k_absorbs_final_retransmissions_for_t4_over_udp() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = outgoing(Method::Bye, "z9hG4bKb");
    let tx = l
        .send_request(bye.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    transmits(&mut l);
    let ok = bye.response(200, None);
    l.handle_incoming(
        Message::Response(ok.clone()),
        peer(Transport::Udp),
        t0 + secs(1.0),
    );
    assert_eq!(events(&mut l).len(), 1);
    l.handle_incoming(Message::Response(ok), peer(Transport::Udp), t0 + secs(2.0));
    assert!(events(&mut l).is_empty(), "retransmitted final absorbed");
    let r = run(&mut l, t0, secs(100.0));
    assert!(r.transmits.is_empty(), "Timer E stopped in Completed");
    assert_eq!(r.events, vec![(secs(6.0), TxEvent::Terminated { tx })]);
}

// ---- INVITE server ----

#[test]
fn invite_server_sends_100_at_once_and_resends_last_provisional_on_retransmission() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    l.handle_incoming(Message::Request(invite.clone()), peer(Transport::Udp), t0);
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![100]
    );
    let tx = match events(&mut l).as_slice() {
        [TxEvent::Request { tx, request, .. }] if request.method == Method::Invite => *tx,
        other => panic!("{other:?}"),
    };

    l.handle_incoming(
        Message::Request(invite.clone()),
        peer(Transport::Udp),
        t0 + secs(0.5),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![100]
    );
    assert!(
        events(&mut l).is_empty(),
        "a retransmission is not a new request"
    );

    l.send_response(
        tx,
        invite.response(180, None).with_to_tag("b"),
        t0 + secs(1.0),
    )
    .expect("in Proceeding");
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![180]
    );
    l.handle_incoming(
        Message::Request(invite),
        peer(Transport::Udp),
        t0 + secs(1.5),
    );
    let resent = transmits(&mut l);
    assert_eq!(
        resent.iter().filter_map(status_of).collect::<Vec<_>>(),
        vec![180]
    );
    assert_eq!(resent[0].to, peer(Transport::Udp));
    // Proceeding has no timer of its own: the TU decides when to answer.
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn trying_can_be_turned_off() {
    let mut l = TransactionLayer::new(TransactionConfig {
        send_100_trying: false,
        ..TransactionConfig::default()
    });
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    l.handle_incoming(Message::Request(invite.clone()), peer(Transport::Udp), t0);
    assert!(transmits(&mut l).is_empty());
    l.handle_incoming(
        Message::Request(invite),
        peer(Transport::Udp),
        t0 + secs(0.5),
    );
    assert!(transmits(&mut l).is_empty(), "nothing to resend yet");
}

#[test]
fn non_2xx_is_retransmitted_by_timer_g_until_timer_h() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    l.send_response(tx, invite.response(486, None).with_to_tag("b"), t0)
        .expect("valid");
    assert_eq!(transmits(&mut l).len(), 1);
    let r = run(&mut l, t0, secs(100.0));
    let expected: Vec<Duration> = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
        .iter()
        .map(|s| secs(*s))
        .collect();
    assert_eq!(times(&r), expected);
    assert!(r.transmits.iter().all(|(_, t)| status_of(t) == Some(486)));
    assert_eq!(
        r.events,
        vec![
            (
                secs(32.0),
                TxEvent::Timeout {
                    tx,
                    timer: Timer::H
                }
            ),
            (secs(32.0), TxEvent::Terminated { tx }),
        ]
    );
}

#[test]
fn invite_retransmission_in_completed_resends_the_final_response() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    l.send_response(tx, invite.response(603, None).with_to_tag("b"), t0)
        .expect("valid");
    transmits(&mut l);
    l.handle_incoming(
        Message::Request(invite),
        peer(Transport::Udp),
        t0 + secs(0.1),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![603]
    );
}

#[test]
fn over_tcp_timer_g_is_off_but_timer_h_runs() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Tcp), t0);
    l.send_response(tx, invite.response(486, None).with_to_tag("b"), t0)
        .expect("valid");
    transmits(&mut l);
    let r = run(&mut l, t0, secs(100.0));
    assert!(r.transmits.is_empty());
    assert_eq!(
        r.events[0],
        (
            secs(32.0),
            TxEvent::Timeout {
                tx,
                timer: Timer::H
            }
        )
    );
}

#[test]
fn ack_is_absorbed_stops_timer_g_and_timer_i_ends_the_transaction() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    let busy = invite.response(486, None).with_to_tag("b");
    l.send_response(tx, busy.clone(), t0).expect("valid");
    transmits(&mut l);
    let r = run(&mut l, t0, secs(2.0));
    assert_eq!(times(&r), vec![secs(0.5), secs(1.5)]);

    let ack = invite.ack_for_non_2xx(&busy);
    l.handle_incoming(
        Message::Request(ack.clone()),
        peer(Transport::Udp),
        t0 + secs(2.0),
    );
    assert_eq!(l.state(tx), Some(TxState::Confirmed));
    assert!(
        events(&mut l).is_empty(),
        "the ACK of a non-2xx stays in the transaction"
    );
    l.handle_incoming(Message::Request(ack), peer(Transport::Udp), t0 + secs(2.5));
    assert!(events(&mut l).is_empty());

    let r = run(&mut l, t0 + secs(2.0), secs(100.0));
    assert!(r.transmits.is_empty(), "no more 486 after the ACK");
    assert_eq!(r.events, vec![(secs(5.0), TxEvent::Terminated { tx })]);
}

#[test]
fn timer_i_is_zero_over_tcp() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Tcp), t0);
    let busy = invite.response(486, None).with_to_tag("b");
    l.send_response(tx, busy.clone(), t0).expect("valid");
    l.handle_incoming(
        Message::Request(invite.ack_for_non_2xx(&busy)),
        peer(Transport::Tcp),
        t0 + secs(1.0),
    );
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { tx }]);
}

#[test]
fn two_hundred_moves_to_accepted_absorbs_invites_and_timer_l_ends_it() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    let ok = invite.response(200, None).with_to_tag("b");
    l.send_response(tx, ok.clone(), t0).expect("valid");
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(l.state(tx), Some(TxState::Accepted));

    // The server transaction never retransmits the 2xx by itself (RFC 6026).
    let r = run(&mut l, t0, secs(10.0));
    assert!(r.transmits.is_empty());
    l.handle_incoming(
        Message::Request(invite.clone()),
        peer(Transport::Udp),
        t0 + secs(10.0),
    );
    assert!(
        transmits(&mut l).is_empty(),
        "INVITE retransmission absorbed in Accepted"
    );
    assert!(events(&mut l).is_empty());
    // ...but passes on the TU's retransmissions, and refuses a late non-2xx.
    l.send_response(tx, ok, t0 + secs(10.0))
        .expect("2xx allowed in Accepted");
    assert_eq!(transmits(&mut l).len(), 1);
    assert_eq!(
        l.send_response(tx, invite.response(487, None), t0 + secs(10.0)),
        Err(TxError::FinalAlreadySent { tx, status: 487 })
    );

    // The ACK for a 2xx carries a new branch: it reaches the TU outside any transaction.
    let mut ack = request(Method::Ack, "z9hG4bKack", 1);
    ack.headers.0[0] = Header::Via(via("carrier.example", "z9hG4bKack"));
    l.handle_incoming(Message::Request(ack), peer(Transport::Udp), t0 + secs(10.5));
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Ack { tx: None, .. }]
    ));

    let r = run(&mut l, t0 + secs(10.0), secs(100.0));
    assert_eq!(r.events, vec![(secs(22.0), TxEvent::Terminated { tx })]);
}

// ---- non-INVITE server ----

#[test]
fn non_invite_server_resends_final_and_timer_j_ends_it_over_udp() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = request(Method::Bye, "z9hG4bKb", 2);
    let tx = serve(&mut l, bye.clone(), peer(Transport::Udp), t0);
    // A retransmission before any response is absorbed silently.
    l.handle_incoming(
        Message::Request(bye.clone()),
        peer(Transport::Udp),
        t0 + secs(0.5),
    );
    assert!(transmits(&mut l).is_empty());
    assert!(events(&mut l).is_empty());

    l.send_response(tx, bye.response(200, None), t0 + secs(1.0))
        .expect("valid");
    transmits(&mut l);
    l.handle_incoming(
        Message::Request(bye.clone()),
        peer(Transport::Udp),
        t0 + secs(2.0),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![200]
    );
    assert_eq!(
        l.send_response(tx, bye.response(500, None), t0 + secs(2.0)),
        Err(TxError::FinalAlreadySent { tx, status: 500 })
    );
    let r = run(&mut l, t0, secs(100.0));
    assert!(
        r.transmits.is_empty(),
        "responses are not retransmitted on a timer"
    );
    assert_eq!(r.events, vec![(secs(33.0), TxEvent::Terminated { tx })]);
}

#[test]
fn timer_j_is_zero_over_tcp() {
    let mut l = layer();
    let t0 = Instant::now();
    let bye = request(Method::Bye, "z9hG4bKb", 2);
    let tx = serve(&mut l, bye.clone(), peer(Transport::Tcp), t0);
    l.send_response(tx, bye.response(200, None), t0)
        .expect("valid");
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { tx }]);
    assert!(l.is_empty());
}

#[test]
fn unanswered_non_invite_is_dropped_by_the_guard() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = serve(
        &mut l,
        request(Method::Options, "z9hG4bKo", 1),
        peer(Transport::Udp),
        t0,
    );
    let r = run(&mut l, t0, secs(100.0));
    assert_eq!(
        r.events,
        vec![
            (
                secs(32.0),
                TxEvent::Timeout {
                    tx,
                    timer: Timer::Guard
                }
            ),
            (secs(32.0), TxEvent::Terminated { tx }),
        ]
    );
}

#[test]
fn non_invite_server_refuses_100_and_resends_provisional() {
    let mut l = layer();
    let t0 = Instant::now();
    let msg = request(Method::Message, "z9hG4bKm", 1);
    let tx = serve(&mut l, msg.clone(), peer(Transport::Udp), t0);
    assert_eq!(
        l.send_response(tx, msg.response(100, None), t0),
        Err(TxError::TryingForNonInvite)
    );
    l.send_response(tx, msg.response(183, None), t0)
        .expect("provisional");
    transmits(&mut l);
    assert_eq!(l.state(tx), Some(TxState::Proceeding));
    l.handle_incoming(Message::Request(msg), peer(Transport::Udp), t0 + secs(1.0));
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![183]
    );
}

// ---- CANCEL ----

fn cancel_of(invite: &Request) -> Request {
    invite.cancel()
}

#[test]
fn cancel_gets_its_own_transaction_and_names_the_invite() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let invite_tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);

    l.handle_incoming(
        Message::Request(cancel_of(&invite)),
        peer(Transport::Udp),
        t0 + secs(1.0),
    );
    let cancel_tx = match events(&mut l).as_slice() {
        [TxEvent::Cancel {
            tx,
            invite: Some(target),
            ..
        }] if *target == invite_tx => *tx,
        other => panic!("{other:?}"),
    };
    assert_ne!(cancel_tx, invite_tx);
    assert_eq!(l.len(), 2);
    l.send_response(
        cancel_tx,
        cancel_of(&invite).response(200, None),
        t0 + secs(1.0),
    )
    .expect("valid");
    l.send_response(
        invite_tx,
        invite.response(487, None).with_to_tag("b"),
        t0 + secs(1.0),
    )
    .expect("valid");
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![200, 487]
    );

    // A retransmitted CANCEL gets the 200 again, and no new event.
    l.handle_incoming(
        Message::Request(cancel_of(&invite)),
        peer(Transport::Udp),
        t0 + secs(1.5),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![200]
    );
    assert!(events(&mut l).is_empty());
}

#[test]
fn cancel_for_unknown_invite_names_none() {
    let mut l = layer();
    let t0 = Instant::now();
    let stray = request(Method::Invite, "z9hG4bKnever", 1).cancel();
    l.handle_incoming(Message::Request(stray), peer(Transport::Udp), t0);
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Cancel { invite: None, .. }]
    ));
}

#[test]
fn cancel_racing_a_200_on_the_server_side() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let invite_tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    l.send_response(
        invite_tx,
        invite.response(200, None).with_to_tag("b"),
        t0 + secs(3.0),
    )
    .expect("valid");
    transmits(&mut l);

    // The CANCEL crossed the 200 on the wire: it still finds the INVITE (now Accepted)...
    l.handle_incoming(
        Message::Request(cancel_of(&invite)),
        peer(Transport::Udp),
        t0 + secs(3.01),
    );
    let cancel_tx = match events(&mut l).as_slice() {
        [TxEvent::Cancel {
            tx,
            invite: Some(target),
            ..
        }] if *target == invite_tx => *tx,
        other => panic!("{other:?}"),
    };
    // ...the TU's 487 is refused because the call was answered, the CANCEL gets its 200.
    assert_eq!(
        l.send_response(invite_tx, invite.response(487, None), t0 + secs(3.01)),
        Err(TxError::FinalAlreadySent {
            tx: invite_tx,
            status: 487
        })
    );
    l.send_response(
        cancel_tx,
        cancel_of(&invite).response(200, None),
        t0 + secs(3.01),
    )
    .expect("valid");
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![200]
    );
    assert_eq!(l.state(invite_tx), Some(TxState::Accepted));
}

#[test]
fn cancel_racing_a_200_on_the_client_side() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKi");
    let invite_tx = l
        .send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    l.handle_incoming(
        Message::Response(invite.response(180, None).with_to_tag("b")),
        peer(Transport::Udp),
        t0 + MS,
    );
    let cancel = invite.cancel();
    let cancel_tx = l
        .send_request(cancel.clone(), peer(Transport::Udp), t0 + secs(5.0))
        .expect("CANCEL has its own key");
    events(&mut l);
    transmits(&mut l);

    l.handle_incoming(
        Message::Response(invite.response(200, None).with_to_tag("b")),
        peer(Transport::Udp),
        t0 + secs(5.01),
    );
    l.handle_incoming(
        Message::Response(cancel.response(200, None).with_to_tag("b")),
        peer(Transport::Udp),
        t0 + secs(5.02),
    );
    let got = events(&mut l);
    assert!(
        matches!(&got[0], TxEvent::Response { tx, response } if *tx == invite_tx && response.status == 200)
    );
    assert!(
        matches!(&got[1], TxEvent::Response { tx, response } if *tx == cancel_tx && response.status == 200)
    );
    assert_eq!(l.state(invite_tx), Some(TxState::Accepted));
    assert!(
        transmits(&mut l).is_empty(),
        "the 2xx is ACKed by the TU, the CANCEL's 200 by nobody"
    );
}

// ---- RFC 2543 peers ----

/// A request from an RFC 2543 peer: a branch without the magic cookie.
fn legacy(method: Method, seq: u32) -> Request {
    let mut req = request(method, "1", seq);
    req.headers.0[0] = Header::Via(via("old.example", "1"));
    req
}

#[test]
fn rfc2543_requests_match_on_dialog_fields() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = legacy(Method::Invite, 1);
    let tx = serve(&mut l, invite.clone(), peer(Transport::Udp), t0);

    l.handle_incoming(
        Message::Request(invite.clone()),
        peer(Transport::Udp),
        t0 + secs(0.5),
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![100]
    );
    assert!(
        events(&mut l).is_empty(),
        "retransmission matched without a cookie branch"
    );

    // Another request with the same branch but another CSeq is a new transaction.
    let mut other = invite.clone();
    other.headers.0.retain(|h| !matches!(h, Header::CSeq(_)));
    other.headers.push(Header::CSeq(CSeq {
        seq: 2,
        method: Method::Invite,
    }));
    l.handle_incoming(
        Message::Request(other),
        peer(Transport::Udp),
        t0 + secs(0.6),
    );
    assert!(matches!(events(&mut l).as_slice(), [TxEvent::Request { tx: t, .. }] if *t != tx));
    transmits(&mut l);

    // CANCEL finds the INVITE by the same fields.
    l.handle_incoming(
        Message::Request(invite.cancel()),
        peer(Transport::Udp),
        t0 + secs(0.7),
    );
    assert!(
        matches!(events(&mut l).as_slice(), [TxEvent::Cancel { invite: Some(t), .. }] if *t == tx)
    );

    // The ACK matches only with the To tag of the response the transaction sent.
    let busy = invite.response(486, None).with_to_tag("b");
    l.send_response(tx, busy.clone(), t0 + secs(1.0))
        .expect("valid");
    let wrong = invite.ack_for_non_2xx(&invite.response(486, None).with_to_tag("other"));
    l.handle_incoming(
        Message::Request(wrong),
        peer(Transport::Udp),
        t0 + secs(1.1),
    );
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Ack { tx: None, .. }]
    ));
    assert_eq!(l.state(tx), Some(TxState::Completed));
    l.handle_incoming(
        Message::Request(invite.ack_for_non_2xx(&busy)),
        peer(Transport::Udp),
        t0 + secs(1.2),
    );
    assert_eq!(l.state(tx), Some(TxState::Confirmed));
}

#[test]
fn rfc3261_match_requires_same_sent_by() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = request(Method::Invite, "z9hG4bKsame", 1);
    serve(&mut l, invite.clone(), peer(Transport::Udp), t0);
    let mut elsewhere = invite;
    elsewhere.headers.0[0] = Header::Via(via("other.example", "z9hG4bKsame"));
    l.handle_incoming(Message::Request(elsewhere), peer(Transport::Udp), t0);
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::Request { .. }]
    ));
    assert_eq!(l.len(), 2);
}

// ---- robustness ----

#[test]
fn stray_and_multi_via_responses() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    l.send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    let mut two_vias = invite.response(200, None);
    two_vias
        .headers
        .0
        .insert(0, Header::Via(via("x.example", "z9hG4bKx")));
    l.handle_incoming(Message::Response(two_vias), peer(Transport::Udp), t0);
    assert!(events(&mut l).is_empty(), "discarded per §8.1.3.3");

    // Same branch, other CSeq method: no match.
    let mut resp = invite.response(200, None);
    resp.headers.0.retain(|h| !matches!(h, Header::CSeq(_)));
    resp.headers.push(Header::CSeq(CSeq {
        seq: 1,
        method: Method::Bye,
    }));
    l.handle_incoming(Message::Response(resp), peer(Transport::Udp), t0);
    assert!(matches!(
        events(&mut l).as_slice(),
        [TxEvent::StrayResponse { .. }]
    ));
}

#[test]
fn malformed_request_gets_a_stateless_400() {
    let mut l = layer();
    let t0 = Instant::now();
    let mut req = request(Method::Options, "z9hG4bKo", 1);
    req.headers.0.retain(|h| !matches!(h, Header::CallId(_)));
    l.handle_incoming(Message::Request(req), peer(Transport::Udp), t0);
    let sent = transmits(&mut l);
    assert_eq!(
        sent.iter().filter_map(status_of).collect::<Vec<_>>(),
        vec![400]
    );
    assert_eq!(sent[0].tx, None);
    assert!(l.is_empty());

    let mut ack = request(Method::Ack, "z9hG4bKo", 1);
    ack.headers.0.retain(|h| !matches!(h, Header::From(_)));
    l.handle_incoming(Message::Request(ack), peer(Transport::Udp), t0);
    assert!(transmits(&mut l).is_empty(), "an ACK is never answered");

    let mut mismatch = request(Method::Bye, "z9hG4bKo", 1);
    mismatch.method = Method::Info;
    l.handle_incoming(Message::Request(mismatch), peer(Transport::Udp), t0);
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![400]
    );
}

#[test]
fn transport_error_terminates_and_reports() {
    let mut l = layer();
    let t0 = Instant::now();
    let tx = l
        .send_request(
            outgoing(Method::Invite, "z9hG4bKa"),
            peer(Transport::Tcp),
            t0,
        )
        .expect("valid");
    let sent = transmits(&mut l);
    assert_eq!(sent[0].tx, Some(tx));
    l.handle_transport_error(tx);
    assert_eq!(
        events(&mut l),
        vec![TxEvent::TransportError { tx }, TxEvent::Terminated { tx }]
    );
    assert!(l.is_empty());
    l.handle_timeout(t0 + secs(100.0));
    assert!(events(&mut l).is_empty(), "stale timers are ignored");
}

#[test]
fn overload_answers_503_without_state() {
    let mut l = TransactionLayer::new(TransactionConfig {
        max_transactions: 1,
        ..TransactionConfig::default()
    });
    let t0 = Instant::now();
    serve(
        &mut l,
        request(Method::Invite, "z9hG4bK1", 1),
        peer(Transport::Udp),
        t0,
    );
    l.handle_incoming(
        Message::Request(request(Method::Options, "z9hG4bK2", 1)),
        peer(Transport::Udp),
        t0,
    );
    assert_eq!(
        transmits(&mut l)
            .iter()
            .filter_map(status_of)
            .collect::<Vec<_>>(),
        vec![503]
    );
    assert!(events(&mut l).is_empty());
    assert_eq!(l.len(), 1);
}

#[test]
fn send_request_checks() {
    let mut l = layer();
    let t0 = Instant::now();
    let to = peer(Transport::Udp);
    assert_eq!(
        l.send_request(outgoing(Method::Ack, "z9hG4bKa"), to, t0),
        Err(TxError::AckIsNotATransaction)
    );
    assert_eq!(
        l.send_request(outgoing(Method::Bye, "nocookie"), to, t0),
        Err(TxError::MissingBranch)
    );
    let mut bad = outgoing(Method::Bye, "z9hG4bKa");
    bad.method = Method::Info;
    assert_eq!(l.send_request(bad, to, t0), Err(TxError::BadCSeq));
    l.send_request(outgoing(Method::Bye, "z9hG4bKa"), to, t0)
        .expect("valid");
    assert_eq!(
        l.send_request(outgoing(Method::Bye, "z9hG4bKa"), to, t0),
        Err(TxError::DuplicateBranch)
    );
    assert!(matches!(
        l.send_response(
            TxId(1),
            outgoing(Method::Bye, "z9hG4bKa").response(200, None),
            t0
        ),
        Err(TxError::NotServer(_))
    ));
    assert_eq!(
        l.send_response(
            TxId(99),
            outgoing(Method::Bye, "z9hG4bKa").response(200, None),
            t0
        ),
        Err(TxError::UnknownTransaction(TxId(99)))
    );
}

#[test]
fn terminate_removes_a_proceeding_invite() {
    let mut l = layer();
    let t0 = Instant::now();
    let invite = outgoing(Method::Invite, "z9hG4bKa");
    let tx = l
        .send_request(invite.clone(), peer(Transport::Udp), t0)
        .expect("valid");
    l.handle_incoming(
        Message::Response(invite.response(180, None)),
        peer(Transport::Udp),
        t0,
    );
    events(&mut l);
    l.terminate(tx);
    assert_eq!(events(&mut l), vec![TxEvent::Terminated { tx }]);
    assert!(l.is_empty());
}

#[test]
fn many_transactions_all_end() {
    let mut l = layer();
    let t0 = Instant::now();
    for i in 0..2000 {
        let branch = format!("z9hG4bK{i}");
        let req = request(Method::Options, &branch, 1);
        l.handle_incoming(Message::Request(req.clone()), peer(Transport::Udp), t0);
        if let Some(TxEvent::Request { tx, .. }) = l.poll_event() {
            l.send_response(tx, req.response(200, None), t0)
                .expect("valid");
        }
        let out = outgoing(Method::Options, &format!("z9hG4bKc{i}"));
        l.send_request(out, peer(Transport::Udp), t0)
            .expect("valid");
    }
    assert_eq!(l.len(), 4000);
    run(&mut l, t0, secs(100.0));
    assert!(l.is_empty());
    assert!(l.index.is_empty() && l.legacy_index.is_empty());
    assert_eq!(l.poll_timeout(), None, "no stale timers left behind");
}
