//! Dialog creation, in-dialog request building and checking (RFC 3261 §12).

use super::*;
use crate::build::fixtures::{addr, request, sip_uri};
use crate::message::{Param, SipUri};

fn loose(host: &str) -> NameAddr {
    let mut a = addr("", host, None);
    if let Uri::Sip(s) = &mut a.uri {
        s.user = None;
        s.params.push(Param::flag("lr"));
    }
    a
}

fn strict(host: &str) -> NameAddr {
    let mut a = addr("", host, None);
    if let Uri::Sip(s) = &mut a.uri {
        s.user = None;
    }
    a
}

/// An INVITE from the carrier through two record-routing proxies, and baton's 200.
fn carrier_call() -> (Request, Response) {
    let mut invite = request(Method::Invite, "z9hG4bKi", 10);
    invite
        .headers
        .push(Header::RecordRoute(loose("p1.example")));
    invite
        .headers
        .push(Header::RecordRoute(loose("p2.example")));
    let mut ok = invite.response(200, None).with_to_tag("baton");
    ok.headers.push(Header::Contact(Contact::Addr(addr(
        "b",
        "203.0.113.5",
        None,
    ))));
    (invite, ok)
}

fn in_dialog(method: Method, seq: u32, contact: Option<&str>) -> Request {
    let mut req = request(method, "z9hG4bKx", seq);
    req.headers.0.retain(|h| !matches!(h, Header::Contact(_)));
    if let Some(to) = req.headers.to_mut() {
        to.params.push(Param::new("tag", "baton"));
    }
    if let Some(host) = contact {
        req.headers
            .push(Header::Contact(Contact::Addr(addr("alice", host, None))));
    }
    req
}

#[test]
fn uas_dialog_takes_route_set_in_order_and_remote_target_from_contact() {
    let (invite, ok) = carrier_call();
    let d = Dialog::uas(&invite, &ok).expect("dialog");
    assert_eq!(
        d.id,
        DialogId {
            call_id: "call-1@carrier.example".into(),
            local_tag: "baton".into(),
            remote_tag: "fromtag".into(),
        }
    );
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.remote_seq, Some(10));
    assert_eq!(d.local_seq, None);
    assert_eq!(d.remote_target, sip_uri("alice", "10.0.0.1"));
    assert_eq!(d.route_set, vec![loose("p1.example"), loose("p2.example")]);
    assert!(!d.secure);
}

#[test]
fn uas_dialog_needs_a_to_tag_and_a_dialog_creating_status() {
    let (invite, _) = carrier_call();
    assert_eq!(
        Dialog::uas(&invite, &invite.response(200, None)),
        Err(DialogError::MissingTag("To"))
    );
    assert_eq!(
        Dialog::uas(&invite, &invite.response(486, None).with_to_tag("b")),
        Err(DialogError::NotDialogCreating(486))
    );
    let early = Dialog::uas(&invite, &invite.response(183, None).with_to_tag("b")).expect("early");
    assert_eq!(early.state, DialogState::Early);
}

#[test]
fn uac_dialog_reverses_the_record_route() {
    let mut invite = request(Method::Invite, "z9hG4bKo", 5);
    let mut ok = invite.response(200, None).with_to_tag("agent");
    ok.headers.push(Header::RecordRoute(loose("near.example")));
    ok.headers.push(Header::RecordRoute(loose("far.example")));
    assert_eq!(
        Dialog::uac(&invite, &ok),
        Err(DialogError::MissingHeader("Contact"))
    );
    ok.headers.push(Header::Contact(Contact::Addr(addr(
        "agent",
        "198.51.100.7",
        None,
    ))));
    invite.uri = Uri::Sip(SipUri {
        secure: true,
        ..match sip_uri("agent", "pbx.example") {
            Uri::Sip(s) => s,
            _ => unreachable!("fixture is a SIP URI"),
        }
    });
    let d = Dialog::uac(&invite, &ok).expect("dialog");
    assert_eq!(
        d.route_set,
        vec![loose("far.example"), loose("near.example")]
    );
    assert_eq!(d.local_seq, Some(5));
    assert_eq!(d.remote_seq, None);
    assert_eq!(d.id.local_tag, "fromtag");
    assert_eq!(d.id.remote_tag, "agent");
    assert!(d.secure);
}

#[test]
fn requests_increment_cseq_and_ack_cancel_reuse_the_invite() {
    let (invite, ok) = carrier_call();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let first = d.request(Method::Bye);
    let first_seq = first.headers.cseq().map(|c| c.seq).expect("CSeq");
    assert!((1..=0x4000_0000).contains(&first_seq));
    let reinvite = d.request(Method::Invite);
    let seq = reinvite.headers.cseq().map(|c| c.seq);
    assert_eq!(seq, Some(first_seq + 1));
    assert_eq!(d.request(Method::Cancel).headers.cseq().map(|c| c.seq), seq);
    assert_eq!(d.request(Method::Ack).headers.cseq().map(|c| c.seq), seq);
    assert_eq!(
        d.request(Method::Info).headers.cseq().map(|c| c.seq),
        Some(first_seq + 2)
    );

    // From carries our tag, To the peer's; Contact only on target refreshes.
    assert_eq!(
        reinvite.headers.from().and_then(NameAddr::tag),
        Some("baton")
    );
    assert_eq!(
        reinvite.headers.to().and_then(NameAddr::tag),
        Some("fromtag")
    );
    assert_eq!(reinvite.headers.contacts().count(), 1);
    assert_eq!(first.headers.contacts().count(), 0);
}

#[test]
fn loose_route_set_keeps_remote_target_as_request_uri() {
    let (invite, ok) = carrier_call();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let bye = d.request(Method::Bye);
    assert_eq!(bye.uri, sip_uri("alice", "10.0.0.1"));
    assert_eq!(
        bye.headers.routes().cloned().collect::<Vec<_>>(),
        vec![loose("p1.example"), loose("p2.example")]
    );
}

#[test]
fn strict_first_hop_becomes_request_uri_and_target_the_last_route() {
    let (mut invite, ok) = carrier_call();
    invite
        .headers
        .0
        .retain(|h| !matches!(h, Header::RecordRoute(_)));
    invite
        .headers
        .push(Header::RecordRoute(strict("old.example")));
    invite
        .headers
        .push(Header::RecordRoute(loose("p2.example")));
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let bye = d.request(Method::Bye);
    assert_eq!(bye.uri, strict("old.example").uri);
    let routes: Vec<Uri> = bye.headers.routes().map(|r| r.uri.clone()).collect();
    assert_eq!(
        routes,
        vec![loose("p2.example").uri, sip_uri("alice", "10.0.0.1")]
    );
}

#[test]
fn empty_route_set_sends_straight_to_the_target() {
    let invite = request(Method::Invite, "z9hG4bKi", 1);
    let mut ok = invite.response(200, None).with_to_tag("baton");
    ok.headers.push(Header::Contact(Contact::Addr(addr(
        "b",
        "203.0.113.5",
        None,
    ))));
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let bye = d.request(Method::Bye);
    assert_eq!(bye.uri, sip_uri("alice", "10.0.0.1"));
    assert_eq!(bye.headers.routes().count(), 0);
}

#[test]
fn lower_cseq_is_refused_with_500_and_higher_accepted() {
    let (invite, ok) = carrier_call();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let err = d
        .check_request(&in_dialog(Method::Info, 9, None))
        .expect_err("lower");
    assert_eq!(err, DialogError::CSeqOutOfOrder { got: 9, last: 10 });
    assert_eq!(err.status(), 500);
    d.check_request(&in_dialog(Method::Info, 11, None))
        .expect("higher");
    assert_eq!(d.remote_seq, Some(11));
    // The ACK of the INVITE carries its old CSeq and is still fine.
    d.check_request(&in_dialog(Method::Ack, 10, None))
        .expect("ACK");
    assert_eq!(d.remote_seq, Some(11));
}

#[test]
fn target_refresh_on_reinvite_and_update_only() {
    let (invite, ok) = carrier_call();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    d.check_request(&in_dialog(Method::Info, 11, Some("10.9.9.9")))
        .expect("INFO");
    assert_eq!(
        d.remote_target,
        sip_uri("alice", "10.0.0.1"),
        "INFO does not refresh"
    );
    d.check_request(&in_dialog(Method::Update, 12, Some("10.0.0.2")))
        .expect("UPDATE");
    assert_eq!(d.remote_target, sip_uri("alice", "10.0.0.2"));
    d.check_request(&in_dialog(Method::Invite, 13, Some("10.0.0.3")))
        .expect("re-INVITE");
    assert_eq!(d.remote_target, sip_uri("alice", "10.0.0.3"));
    d.check_request(&in_dialog(Method::Invite, 14, None))
        .expect("re-INVITE without Contact");
    assert_eq!(d.remote_target, sip_uri("alice", "10.0.0.3"));
}

#[test]
fn request_for_another_dialog_is_481() {
    let (invite, ok) = carrier_call();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let mut req = in_dialog(Method::Bye, 11, None);
    if let Some(to) = req.headers.to_mut() {
        to.params = vec![Param::new("tag", "someone-else")];
    }
    let err = d.check_request(&req).expect_err("wrong tag");
    assert_eq!(err.status(), 481);
}

#[test]
fn uac_early_dialog_confirms_and_recomputes_route_set_on_2xx() {
    let invite = request(Method::Invite, "z9hG4bKo", 1);
    let mut ringing = invite.response(180, None).with_to_tag("agent");
    ringing
        .headers
        .push(Header::RecordRoute(loose("a.example")));
    ringing.headers.push(Header::Contact(Contact::Addr(addr(
        "agent",
        "198.51.100.7",
        None,
    ))));
    let mut d = Dialog::uac(&invite, &ringing).expect("early");
    assert_eq!(d.state, DialogState::Early);

    let mut ok = invite.response(200, None).with_to_tag("agent");
    ok.headers.push(Header::RecordRoute(loose("b.example")));
    ok.headers.push(Header::RecordRoute(loose("c.example")));
    ok.headers.push(Header::Contact(Contact::Addr(addr(
        "agent",
        "198.51.100.8",
        None,
    ))));
    d.handle_response(&ok);
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.route_set, vec![loose("c.example"), loose("b.example")]);
    assert_eq!(d.remote_target, sip_uri("agent", "198.51.100.8"));

    let ack = d.ack_for(&ok);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.headers.cseq().map(|c| c.seq), Some(1));
    assert_eq!(ack.uri, sip_uri("agent", "198.51.100.8"));
}

#[test]
fn uac_refreshes_target_from_2xx_to_update() {
    let invite = request(Method::Invite, "z9hG4bKo", 1);
    let mut ok = invite.response(200, None).with_to_tag("agent");
    ok.headers.push(Header::Contact(Contact::Addr(addr(
        "agent",
        "198.51.100.7",
        None,
    ))));
    let mut d = Dialog::uac(&invite, &ok).expect("dialog");
    let update = d.request(Method::Update);
    let mut resp = update.response(200, None);
    resp.headers.push(Header::Contact(Contact::Addr(addr(
        "agent",
        "198.51.100.9",
        None,
    ))));
    d.handle_response(&resp);
    assert_eq!(d.remote_target, sip_uri("agent", "198.51.100.9"));
    // A 2xx to BYE does not touch the target.
    let bye = d.request(Method::Bye);
    let mut resp = bye.response(200, None);
    resp.headers.push(Header::Contact(Contact::Addr(addr(
        "x",
        "192.0.2.99",
        None,
    ))));
    d.handle_response(&resp);
    assert_eq!(d.remote_target, sip_uri("agent", "198.51.100.9"));
}

#[test]
fn dialog_set_finds_dialogs_for_requests_and_responses() {
    let (invite, ok) = carrier_call();
    let mut dialogs = Dialogs::new();
    let mut d = Dialog::uas(&invite, &ok).expect("dialog");
    let bye_out = d.request(Method::Bye);
    dialogs.insert(d);
    assert_eq!(dialogs.len(), 1);

    let bye_in = in_dialog(Method::Bye, 11, None);
    assert!(dialogs.find_for_request(&bye_in).is_some());
    // The peer's answer to our BYE: From carries our tag.
    let resp = bye_out.response(200, None);
    assert!(dialogs.find_for_response(&resp).is_some());
    // An out-of-dialog request (no To tag) finds nothing.
    assert!(dialogs
        .find_for_request(&request(Method::Bye, "z9hG4bKz", 11))
        .is_none());

    let id = DialogId::of_incoming_request(&bye_in).expect("id");
    assert!(dialogs.remove(&id).is_some());
    assert!(dialogs.is_empty());
}
