//! Call control as carriers exercise it, each over UDP and TCP with SIPp: a caller who
//! gives up while it rings (CANCEL), baton hanging up, hold and resume, a delayed offer,
//! DTMF keys, OPTIONS pings, a call to nobody, a caller whose media never arrives, and an
//! INVITE that reaches baton twice by different paths.

mod common;

use common::{call_seconds, caller_audio, Baton, SipCaller, Sipp, Transport};
use std::time::Duration;

/// Rings for five seconds before answering, so a caller can cancel.
const RINGING_PLAN: &str = r#"
name = "ringing"
description = "Rings for five seconds before answering, so callers can give up first."
match = ["ringing"]
ring_secs = 5

[[step]]
play = "beep.wav"
"#;

/// Plays a tone and hangs up, so baton is the side that sends the BYE.
const HANGUP_PLAN: &str = r#"
name = "hangup"
description = "A tone, then baton hangs up."
match = ["hangup"]

[[step]]
play = "beep.wav"

[[step]]
hangup = {}
"#;

fn caller_cancels_while_it_rings(transport: Transport) {
    let baton = Baton::builder(&format!("cancel-{}", transport.name()))
        .dialplan("ringing", RINGING_PLAN)
        .start();
    let run = Sipp::new(&baton, "uac_cancel.xml", transport)
        .user("ringing")
        .var("RING_WAIT_MS", 1000)
        .timeout(Duration::from_secs(15))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "cancelled", "{call}");
    assert!(
        baton.metric("baton_sip_responses_total{code=\"487\",direction=\"out\"}") >= 1.0,
        "the INVITE was answered 487:\n{}",
        baton.metrics()
    );
}

#[test]
fn caller_cancels_while_it_rings_udp() {
    caller_cancels_while_it_rings(Transport::Udp);
}

#[test]
fn caller_cancels_while_it_rings_tcp() {
    caller_cancels_while_it_rings(Transport::Tcp);
}

fn baton_hangs_up_when_the_plan_ends(transport: Transport) {
    let baton = Baton::builder(&format!("hangup-{}", transport.name()))
        .dialplan("hangup", HANGUP_PLAN)
        .start();
    let audio = caller_audio(&baton.dir, "caller", "Hello? Is anybody there?", 0.0);
    let run = Sipp::new(&baton, "uac_wait_bye.xml", transport)
        .user("hangup")
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs(15))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "baton_bye", "{call}");
    assert!(
        call_seconds(&call) < 5.0,
        "a 0.4 s tone then a hang-up took {:.1} s: {call}",
        call_seconds(&call)
    );
    assert!(
        baton.metric("baton_sip_requests_total{method=\"BYE\",direction=\"out\"}") >= 1.0,
        "baton counts the BYE it sent:\n{}",
        baton.metrics()
    );
}

#[test]
fn baton_hangs_up_when_the_plan_ends_udp() {
    baton_hangs_up_when_the_plan_ends(Transport::Udp);
}

#[test]
fn baton_hangs_up_when_the_plan_ends_tcp() {
    baton_hangs_up_when_the_plan_ends(Transport::Tcp);
}

fn caller_holds_and_resumes(transport: Transport) {
    let baton = Baton::start(&format!("hold-{}", transport.name()));
    let sipp = Sipp::new(&baton, "uac_hold.xml", transport)
        .user("echo")
        .var("PHASE_MS", 2500)
        .timeout(Duration::from_secs(20))
        .spawn();
    let call_id = sipp.call_id.clone();
    // The scenario itself checks the SDP answers (recvonly, then two-way); the API must
    // follow the call through each phase.
    baton.wait_state(&call_id, "active", Duration::from_secs(5));
    baton.wait_state(&call_id, "held", Duration::from_secs(5));
    baton.wait_state(&call_id, "active", Duration::from_secs(5));
    let run = sipp.wait();
    run.assert_ok();
    let call = baton.wait_ended(&call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
}

#[test]
fn caller_holds_and_resumes_udp() {
    caller_holds_and_resumes(Transport::Udp);
}

#[test]
fn caller_holds_and_resumes_tcp() {
    caller_holds_and_resumes(Transport::Tcp);
}

fn delayed_offer_call_carries_audio(transport: Transport) {
    let baton = Baton::start(&format!("delayed-{}", transport.name()));
    let audio = caller_audio(&baton.dir, "caller", "I am calling about my account.", 0.0);
    let millis = ((audio.total_secs() + 1.0) * 1000.0) as u64;
    let run = Sipp::new(&baton, "uac_delayed_offer.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(15))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
    // The caller's media address only reached baton in the ACK: its RTP must still count.
    let packets_in = baton.metric("baton_rtp_packets_total{direction=\"in\"}");
    assert!(
        packets_in >= audio.speech_secs * 40.0,
        "baton received {packets_in} RTP packets for {:.1} s of speech:\n{}",
        audio.speech_secs,
        baton.metrics()
    );
}

#[test]
fn delayed_offer_call_carries_audio_udp() {
    delayed_offer_call_carries_audio(Transport::Udp);
}

#[test]
fn delayed_offer_call_carries_audio_tcp() {
    delayed_offer_call_carries_audio(Transport::Tcp);
}

fn caller_keys_digits(transport: Transport) {
    let baton = Baton::start(&format!("dtmf-{}", transport.name()));
    let run = Sipp::new(&baton, "uac_dtmf.xml", transport)
        .user("echo")
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(
        call["dtmf"], "123",
        "RFC 4733 events 1, 2, 3 were sent: {call}"
    );
    assert_eq!(call["result"], "caller_bye", "{call}");
}

#[test]
fn caller_keys_digits_udp() {
    caller_keys_digits(Transport::Udp);
}

#[test]
fn caller_keys_digits_tcp() {
    caller_keys_digits(Transport::Tcp);
}

fn caller_keys_digits_over_info(transport: Transport) {
    let baton = Baton::start(&format!("dtmf-info-{}", transport.name()));
    let run = Sipp::new(&baton, "uac_dtmf_info.xml", transport)
        .user("echo")
        .var("FIRST_KEY", "4")
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["dtmf"], "4#7", "INFO keys 4, #, 7 were sent: {call}");
    assert_eq!(call["result"], "caller_bye", "{call}");
}

#[test]
fn caller_keys_digits_over_info_udp() {
    caller_keys_digits_over_info(Transport::Udp);
}

#[test]
fn caller_keys_digits_over_info_tcp() {
    caller_keys_digits_over_info(Transport::Tcp);
}

fn options_ping_is_answered(transport: Transport) {
    let baton = Baton::start(&format!("options-{}", transport.name()));
    let run = Sipp::new(&baton, "options.xml", transport)
        .user("echo")
        .timeout(Duration::from_secs(10))
        .run();
    run.assert_ok();
    assert!(
        baton.metric("baton_sip_requests_total{method=\"OPTIONS\",direction=\"in\"}") >= 1.0,
        "{}",
        baton.metrics()
    );
    assert!(
        baton.calls(true).is_empty(),
        "an OPTIONS ping is not a call"
    );
}

#[test]
fn options_ping_is_answered_udp() {
    options_ping_is_answered(Transport::Udp);
}

#[test]
fn options_ping_is_answered_tcp() {
    options_ping_is_answered(Transport::Tcp);
}

fn call_to_unknown_user_is_refused(transport: Transport) {
    let baton = Baton::start(&format!("unknown-{}", transport.name()));
    let run = Sipp::new(&baton, "uac_reject.xml", transport)
        .user("nobody-dials-this")
        .var("CODE", 404)
        .timeout(Duration::from_secs(10))
        .run();
    run.assert_ok();
    assert!(
        baton.calls(false).is_empty(),
        "a refused call leaves nothing active: {:?}",
        baton.calls(false)
    );
    assert!(
        baton.metric("baton_sip_responses_total{code=\"404\",direction=\"out\"}") >= 1.0,
        "{}",
        baton.metrics()
    );
}

#[test]
fn call_to_unknown_user_is_refused_udp() {
    call_to_unknown_user_is_refused(Transport::Udp);
}

#[test]
fn call_to_unknown_user_is_refused_tcp() {
    call_to_unknown_user_is_refused(Transport::Tcp);
}

fn silent_caller_is_hung_up(transport: Transport) {
    let baton = Baton::builder(&format!("silent-{}", transport.name()))
        .config("rtp_inactivity_secs = 2\n")
        .start();
    let run = Sipp::new(&baton, "uac_silent.xml", transport)
        .user("echo")
        .var("WAIT_MS", 10_000)
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "rtp_timeout", "{call}");
    let secs = call_seconds(&call);
    assert!(
        (1.5..8.0).contains(&secs),
        "no RTP for 2 s should end the call after about 2 s, it lasted {secs:.1} s: {call}"
    );
}

#[test]
fn silent_caller_is_hung_up_udp() {
    silent_caller_is_hung_up(Transport::Udp);
}

#[test]
fn silent_caller_is_hung_up_tcp() {
    silent_caller_is_hung_up(Transport::Tcp);
}

/// RFC 3261 §8.2.2.2: the same INVITE (Call-ID, From tag, CSeq) arriving again on another
/// branch, as when two proxies forward one call, is refused 482 instead of making a second
/// call; the first call is unaffected.
#[test]
fn merged_invite_is_refused_with_482() {
    let baton = Baton::start("merged");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let (invite, call_id, from) = caller.invite_request("echo", 40_000);
    caller.send(invite.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ok = loop {
        assert!(std::time::Instant::now() < deadline, "no 200 to the INVITE");
        if let Some(m) = caller.recv(Duration::from_secs(1)) {
            if m.status() == Some(200) {
                break m;
            }
        }
    };
    let mut call = caller.answered(&ok, call_id, from);
    caller.ack(&call);

    let merged = invite.replacen(";branch=z9hG4bK", ";branch=z9hG4bKmerged", 1);
    assert_ne!(merged, invite);
    caller.send(merged.as_bytes());
    let answer = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no answer to the merged INVITE"
        );
        if let Some(m) = caller.recv(Duration::from_secs(1)) {
            if m.status().is_some_and(|s| s >= 300) {
                break m;
            }
        }
    };
    assert_eq!(answer.status(), Some(482), "{answer:?}");
    assert!(
        answer.header("To").is_some_and(|t| t.contains(";tag=")),
        "{answer:?}"
    );
    assert_eq!(baton.calls(false).len(), 1, "one call, not two");
    assert_eq!(caller.bye(&mut call), Some(200));
}

/// A call to `user` on `baton`, which plays its plan to the end and hangs up: how it ended.
fn call_plan(baton: &Baton, user: &str) -> serde_json::Value {
    let audio = caller_audio(&baton.dir, user, "Hello?", 0.0);
    let run = Sipp::new(baton, "uac_wait_bye.xml", Transport::Udp)
        .user(user)
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs(15))
        .run();
    run.assert_ok();
    baton.wait_ended(&run.call_id, Duration::from_secs(5))
}

#[test]
fn dialplans_reload_without_a_restart_and_a_broken_set_is_refused_whole() {
    let mut baton = Baton::builder("reload")
        .dialplan("hangup", HANGUP_PLAN)
        .start();
    let dir = baton.dir.join("dialplans");
    let late = HANGUP_PLAN.replace("\"hangup\"", "\"late\"");
    std::fs::write(dir.join("late.toml"), &late).unwrap();

    let (status, body) = baton.request("POST", "/v1/dialplans/reload", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"late\""), "{body}");
    assert_eq!(call_plan(&baton, "late")["result"], "baton_bye");

    // One broken file refuses the whole set, naming where; the running plans stay.
    std::fs::write(
        dir.join("broken.toml"),
        "match = [\"x\"]\n[[step]]\nplay = 7\n",
    )
    .unwrap();
    let (status, body) = baton.request("POST", "/v1/dialplans/reload", "");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("broken.toml:3"),
        "the problem is located: {body}"
    );
    assert_eq!(call_plan(&baton, "late")["result"], "baton_bye");

    // SIGHUP reloads too, as for any daemon.
    std::fs::remove_file(dir.join("broken.toml")).unwrap();
    std::fs::write(
        dir.join("later.toml"),
        late.replace("\"late\"", "\"later\""),
    )
    .unwrap();
    common::run_tool(
        std::process::Command::new("kill").args(["-HUP", &baton.pid().to_string()]),
        Duration::from_secs(5),
    );
    assert!(
        common::wait_for(Duration::from_secs(10), || {
            let log = std::fs::read_to_string(&baton.log).unwrap_or_default();
            log.matches("dialplans reloaded").count() == 2
        }),
        "the second reload is logged"
    );
    assert_eq!(call_plan(&baton, "later")["result"], "baton_bye");
    baton.assert_alive();
}
