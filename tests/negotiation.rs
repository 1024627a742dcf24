//! What carriers negotiate with baton, each over UDP and TCP with SIPp: codecs baton lacks
//! (488 with a Warning), Opus and PCMA offers answered in the offerer's terms, session
//! timers (RFC 4028) accepted or refused 422, UPDATE as a refresh and as a new offer,
//! a re-INVITE asking baton for an offer, in-dialog requests that do not fit the dialog,
//! and the Prometheus counters a completed call leaves behind.

mod common;

use common::{call_seconds, caller_audio, Baton, Sipp, Transport};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Where a SIPp check on a response looks.
#[derive(Clone, Copy)]
enum Place {
    /// The message body (the SDP).
    Body,
    /// The value of one header, named without the colon.
    Header(&'static str),
}

/// A POSIX extended regular expression SIPp checks on a response; the call fails when
/// it does not match (or, for `absent`, when it does).
struct Check {
    place: Place,
    regexp: &'static str,
    absent: bool,
}

/// The response must match `regexp` at `place`.
fn has(place: Place, regexp: &'static str) -> Check {
    Check {
        place,
        regexp,
        absent: false,
    }
}

/// The response must not match `regexp` at `place`.
fn lacks(place: Place, regexp: &'static str) -> Check {
    Check {
        place,
        regexp,
        absent: true,
    }
}

fn xml_attr(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `neg_call.xml` run to completion: an offer of `media` with the extra `headers`, a 200
/// OK that must pass `checks`, `millis` on the line, then the caller's BYE.
fn negotiated_call(
    baton: &Baton,
    transport: Transport,
    headers: &str,
    media: &str,
    checks: &[Check],
    millis: u64,
) -> common::SippRun {
    assert!(!checks.is_empty(), "SIPp needs at least one check");
    let mut actions = String::new();
    let mut vars = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let var = format!("check{i}");
        let place = match check.place {
            Place::Body => r#"search_in="body""#.to_owned(),
            Place::Header(name) => format!(r#"search_in="hdr" header="{name}:""#),
        };
        let verdict = if check.absent {
            "check_it_inverse"
        } else {
            "check_it"
        };
        actions.push_str(&format!(
            "<ereg regexp=\"{}\" {place} {verdict}=\"true\" assign_to=\"{var}\"/>\n",
            xml_attr(check.regexp)
        ));
        vars.push(var);
    }
    Sipp::new(baton, "neg_call.xml", transport)
        .user("echo")
        .var("HEADERS", headers)
        .var("MEDIA", media)
        .var("CHECKS", actions)
        .var("CHECK_VARS", vars.join(","))
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(15))
        .run()
}

/// Headers every offer carries when a test needs none of its own (the scenario's
/// header block must not hold an empty line).
const PLAIN_HEADERS: &str = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";

fn offer_of_unknown_codecs_is_refused(transport: Transport) {
    let baton = Baton::start(&format!("no-codec-{}", transport.name()));
    let run = Sipp::new(&baton, "neg_reject.xml", transport)
        .user("echo")
        .var("HEADERS", PLAIN_HEADERS)
        .var(
            "MEDIA",
            "m=audio [media_port] RTP/AVP 18 9\n\
             a=rtpmap:18 G729/8000\n\
             a=rtpmap:9 G722/8000\n\
             a=ptime:20\n\
             a=sendrecv",
        )
        .var("CODE", 488)
        // RFC 3261 20.43: a three-digit code, the agent, a quoted text.
        .var("HEADER", "Warning")
        .var("HEADER_RE", r#"3[0-9][0-9] [^ ]+ "[^"]+""#)
        .timeout(Duration::from_secs(10))
        .run();
    run.assert_ok();
    assert!(
        baton.calls(false).is_empty(),
        "a refused offer leaves no active call: {:?}",
        baton.calls(false)
    );
    assert!(
        baton.metric("baton_sip_responses_total{code=\"488\",direction=\"out\"}") >= 1.0,
        "{}",
        baton.metrics()
    );
}

#[test]
fn offer_of_unknown_codecs_is_refused_udp() {
    offer_of_unknown_codecs_is_refused(Transport::Udp);
}

#[test]
fn offer_of_unknown_codecs_is_refused_tcp() {
    offer_of_unknown_codecs_is_refused(Transport::Tcp);
}

/// The call `run` placed, once baton lists it as ended by the caller.
fn ended_by_caller(baton: &Baton, run: &common::SippRun) -> Value {
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "{call}");
    call
}

fn opus_offer_is_answered_with_opus(transport: Transport) {
    let baton = Baton::start(&format!("opus-{}", transport.name()));
    let run = negotiated_call(
        &baton,
        transport,
        PLAIN_HEADERS,
        "m=audio [media_port] RTP/AVP 111 101\n\
         a=rtpmap:111 opus/48000/2\n\
         a=fmtp:111 minptime=10;useinbandfec=1\n\
         a=rtpmap:101 telephone-event/48000\n\
         a=fmtp:101 0-15\n\
         a=ptime:20\n\
         a=sendrecv",
        &[
            has(Place::Body, "m=audio [1-9][0-9]* RTP/AVP 111([^0-9]|$)"),
            has(Place::Body, "a=rtpmap:111 opus/48000/2"),
            has(Place::Body, "a=rtpmap:101 telephone-event/48000"),
            lacks(Place::Body, "PCMU|PCMA"),
        ],
        1500,
    );
    let call = ended_by_caller(&baton, &run);
    assert_eq!(call["media"]["codec"], "opus", "{call}");
}

#[test]
fn opus_offer_is_answered_with_opus_udp() {
    opus_offer_is_answered_with_opus(Transport::Udp);
}

#[test]
fn opus_offer_is_answered_with_opus_tcp() {
    opus_offer_is_answered_with_opus(Transport::Tcp);
}

fn offerers_first_codec_wins(transport: Transport) {
    let baton = Baton::start(&format!("pcma-{}", transport.name()));
    let run = negotiated_call(
        &baton,
        transport,
        PLAIN_HEADERS,
        "m=audio [media_port] RTP/AVP 8 0 101\n\
         a=rtpmap:8 PCMA/8000\n\
         a=rtpmap:0 PCMU/8000\n\
         a=rtpmap:101 telephone-event/8000\n\
         a=fmtp:101 0-15\n\
         a=ptime:20\n\
         a=sendrecv",
        &[
            has(Place::Body, "m=audio [1-9][0-9]* RTP/AVP 8([^0-9]|$)"),
            lacks(Place::Body, "PCMU"),
        ],
        1000,
    );
    let call = ended_by_caller(&baton, &run);
    assert_eq!(call["media"]["codec"], "PCMA", "{call}");
}

#[test]
fn offerers_first_codec_wins_udp() {
    offerers_first_codec_wins(Transport::Udp);
}

#[test]
fn offerers_first_codec_wins_tcp() {
    offerers_first_codec_wins(Transport::Tcp);
}

/// A G.711 offer with telephone-events, as most carriers send.
const PCMU_OFFER: &str = "m=audio [media_port] RTP/AVP 0 101\n\
                          a=rtpmap:0 PCMU/8000\n\
                          a=rtpmap:101 telephone-event/8000\n\
                          a=fmtp:101 0-15\n\
                          a=ptime:20\n\
                          a=sendrecv";

fn session_timer_refreshed_by_caller_is_accepted(transport: Transport) {
    let baton = Baton::start(&format!("timer-{}", transport.name()));
    let run = negotiated_call(
        &baton,
        transport,
        "Supported: timer\nSession-Expires: 1800;refresher=uac",
        PCMU_OFFER,
        &[
            // RFC 4028 §9: the UAS may lower the interval, not below 90 s, and keeps the
            // UAC's choice of refresher; `Require: timer` because the UAC supports it.
            has(
                Place::Header("Session-Expires"),
                "^ *(9[0-9]|[1-9][0-9]{2,}) *;refresher=uac",
            ),
            has(Place::Header("Require"), "timer"),
        ],
        1000,
    );
    ended_by_caller(&baton, &run);
}

#[test]
fn session_timer_refreshed_by_caller_is_accepted_udp() {
    session_timer_refreshed_by_caller_is_accepted(Transport::Udp);
}

#[test]
fn session_timer_refreshed_by_caller_is_accepted_tcp() {
    session_timer_refreshed_by_caller_is_accepted(Transport::Tcp);
}

fn too_short_session_timer_is_refused_422(transport: Transport) {
    let baton = Baton::start(&format!("timer-422-{}", transport.name()));
    let run = Sipp::new(&baton, "neg_reject.xml", transport)
        .user("echo")
        .var("HEADERS", "Supported: timer\nSession-Expires: 30")
        .var("MEDIA", PCMU_OFFER)
        .var("CODE", 422)
        // RFC 4028 §4: Min-SE is never below 90 seconds.
        .var("HEADER", "Min-SE")
        .var("HEADER_RE", "^ *(9[0-9]|[1-9][0-9]{2,}) *(;|$)")
        .timeout(Duration::from_secs(10))
        .run();
    run.assert_ok();
    assert!(
        baton.calls(false).is_empty(),
        "a refused INVITE leaves no active call: {:?}",
        baton.calls(false)
    );
}

#[test]
fn too_short_session_timer_is_refused_422_udp() {
    too_short_session_timer_is_refused_422(Transport::Udp);
}

#[test]
fn too_short_session_timer_is_refused_422_tcp() {
    too_short_session_timer_is_refused_422(Transport::Tcp);
}

fn update_refreshes_and_holds(transport: Transport) {
    let baton = Baton::start(&format!("update-{}", transport.name()));
    let sipp = Sipp::new(&baton, "neg_update.xml", transport)
        .user("echo")
        .var("PHASE_MS", 2000)
        .timeout(Duration::from_secs(20))
        .spawn();
    let call_id = sipp.call_id.clone();
    // The scenario checks the answers (a refresh without SDP, then recvonly); the API
    // must see the UPDATE's offer put the call on hold.
    baton.wait_state(&call_id, "active", Duration::from_secs(5));
    baton.wait_state(&call_id, "held", Duration::from_secs(8));
    let run = sipp.wait();
    ended_by_caller(&baton, &run);
    assert!(
        baton.metric("baton_sip_requests_total{method=\"UPDATE\",direction=\"in\"}") >= 2.0,
        "both UPDATEs are counted:\n{}",
        baton.metrics()
    );
}

#[test]
fn update_refreshes_and_holds_udp() {
    update_refreshes_and_holds(Transport::Udp);
}

#[test]
fn update_refreshes_and_holds_tcp() {
    update_refreshes_and_holds(Transport::Tcp);
}

fn reinvite_without_sdp_gets_an_offer(transport: Transport) {
    let baton = Baton::start(&format!("reinvite-offer-{}", transport.name()));
    let audio = caller_audio(&baton.dir, "caller", "Are you still there?", 0.0);
    let millis = ((audio.total_secs() + 0.5) * 1000.0) as u64;
    let sipp = Sipp::new(&baton, "neg_reinvite_no_sdp.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(15))
        .spawn();
    let call_id = sipp.call_id.clone();
    baton.wait_state(&call_id, "active", Duration::from_secs(5));
    // Until the caller's BYE the call must stay active: the offer/answer in the
    // re-INVITE and its ACK is no hold, and a bad answer would end the call.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(millis) + Duration::from_secs(15);
    while Instant::now() < deadline {
        let state = baton
            .call(&call_id)
            .map(|c| c["state"].as_str().unwrap_or("?").to_owned());
        match state.as_deref() {
            Some("ended") => break,
            Some(s) if seen.last().map(String::as_str) != Some(s) => seen.push(s.to_owned()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        seen,
        ["active"],
        "states the call went through before it ended"
    );
    let run = sipp.wait();
    let call = ended_by_caller(&baton, &run);
    // The caller's audio after the ACK reached baton through the renegotiated session.
    let packets_in = call["media"]["packets_in"].as_u64().unwrap_or(0);
    assert!(
        packets_in as f64 >= audio.speech_secs * 40.0,
        "baton received {packets_in} RTP packets for {:.1} s of speech: {call}",
        audio.speech_secs
    );
}

#[test]
fn reinvite_without_sdp_gets_an_offer_udp() {
    reinvite_without_sdp_gets_an_offer(Transport::Udp);
}

#[test]
fn reinvite_without_sdp_gets_an_offer_tcp() {
    reinvite_without_sdp_gets_an_offer(Transport::Tcp);
}

fn requests_outside_the_dialog_are_refused(transport: Transport) {
    let baton = Baton::start(&format!("dialog-errors-{}", transport.name()));
    let run = Sipp::new(&baton, "neg_dialog_errors.xml", transport)
        .user("echo")
        .var("PAUSE_MS", 1000)
        .timeout(Duration::from_secs(20))
        .run();
    // The scenario expects 500 for the BYE with an old CSeq, 481 for the BYE with a
    // wrong To tag, then 200 for the real BYE: the call survived both.
    let call = ended_by_caller(&baton, &run);
    assert!(
        call_seconds(&call) >= 1.0,
        "the call lasted past the refused BYEs: {call}"
    );
    for code in [481, 500] {
        assert!(
            baton.metric(&format!(
                "baton_sip_responses_total{{code=\"{code}\",direction=\"out\"}}"
            )) >= 1.0,
            "baton counts the {code} it sent:\n{}",
            baton.metrics()
        );
    }
}

#[test]
fn requests_outside_the_dialog_are_refused_udp() {
    requests_outside_the_dialog_are_refused(Transport::Udp);
}

#[test]
fn requests_outside_the_dialog_are_refused_tcp() {
    requests_outside_the_dialog_are_refused(Transport::Tcp);
}

fn completed_call_shows_in_metrics(transport: Transport) {
    let baton = Baton::start(&format!("metrics-{}", transport.name()));
    let audio = caller_audio(&baton.dir, "caller", "Hello, I would like to talk.", 0.0);
    let millis = ((audio.total_secs() + 0.5) * 1000.0) as u64;
    let run = Sipp::new(&baton, "uac_audio.xml", transport)
        .user("echo")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(15))
        .run();
    ended_by_caller(&baton, &run);
    let counted = [
        "baton_calls_total{result=\"caller_bye\"}",
        "baton_sip_requests_total{method=\"INVITE\",direction=\"in\"}",
        "baton_sip_requests_total{method=\"ACK\",direction=\"in\"}",
        "baton_sip_requests_total{method=\"BYE\",direction=\"in\"}",
        "baton_sip_responses_total{code=\"200\",direction=\"out\"}",
        "baton_rtp_packets_total{direction=\"out\"}",
    ];
    // A leg's counters may be added just after the API lists the call as ended.
    let mut metrics = String::new();
    let value = |text: &str, series: &str| common::metric_value(text, series).unwrap_or(0.0);
    common::wait_for(Duration::from_secs(5), || {
        metrics = baton.metrics();
        counted.iter().all(|s| value(&metrics, s) >= 1.0)
            && value(&metrics, "baton_rtp_packets_total{direction=\"in\"}")
                >= audio.speech_secs * 40.0
            && value(&metrics, "baton_active_calls") == 0.0
    });
    for series in counted {
        assert!(
            value(&metrics, series) >= 1.0,
            "{series} counts the call:\n{metrics}"
        );
    }
    let packets_in = value(&metrics, "baton_rtp_packets_total{direction=\"in\"}");
    assert!(
        packets_in >= audio.speech_secs * 40.0,
        "{packets_in} RTP packets counted in for {:.1} s of speech:\n{metrics}",
        audio.speech_secs
    );
    assert_eq!(
        value(&metrics, "baton_active_calls"),
        0.0,
        "no call is left active:\n{metrics}"
    );
}

#[test]
fn completed_call_shows_in_metrics_udp() {
    completed_call_shows_in_metrics(Transport::Udp);
}

#[test]
fn completed_call_shows_in_metrics_tcp() {
    completed_call_shows_in_metrics(Transport::Tcp);
}

/// The caller asks baton to refresh (RFC 4028 §9 keeps the UAC's choice): baton refreshes
/// half an interval later, by UPDATE without a body when the caller allows UPDATE, by a
/// re-INVITE offering the unchanged session otherwise (and acknowledges its 200). The
/// interval is the shortest allowed (90 s), so the test waits 45 s for the refresh.
fn session_refreshed_by_baton(transport: Transport, method: &str) {
    // The caller sends no audio for the minute this takes.
    let baton = Baton::builder(&format!("refresh-{method}-{}", transport.name()))
        .config("rtp_inactivity_secs = 300\n")
        .start();
    let (allow, body_check, answer, after) = if method == "UPDATE" {
        (
            "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE",
            r#"<ereg regexp="m=audio" search_in="body" check_it_inverse="true" assign_to="refresh_body"/>"#,
            "Content-Length: 0\n",
            "",
        )
    } else {
        (
            "INVITE, ACK, CANCEL, BYE, OPTIONS",
            r#"<ereg regexp="m=audio [1-9][0-9]* RTP/AVP 0" search_in="body" check_it="true" assign_to="refresh_body"/>"#,
            "Content-Type: application/sdp\n\
             Content-Length: [len]\n\n\
             v=0\n\
             o=carrier 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n\
             s=-\n\
             c=IN IP[media_ip_type] [media_ip]\n\
             t=0 0\n\
             m=audio [media_port] RTP/AVP 0\n\
             a=rtpmap:0 PCMU/8000\n\
             a=sendrecv\n",
            r#"<recv request="ACK"/>"#,
        )
    };
    let run = Sipp::new(&baton, "uas_refresh.xml", transport)
        .user("echo")
        .var("ALLOW", allow)
        .var("METHOD", method)
        .var("BODY_CHECK", body_check)
        .var("ANSWER", answer)
        .var("AFTER_ANSWER", after)
        .timeout(Duration::from_secs(90))
        .run();
    let call = ended_by_caller(&baton, &run);
    assert_eq!(call["state"], "ended", "{call}");
    let sent = baton.metric(&format!(
        "baton_sip_requests_total{{method=\"{method}\",direction=\"out\"}}"
    ));
    assert_eq!(sent, 1.0, "one refresh sent:\n{}", baton.metrics());
}

#[test]
fn session_refreshed_by_baton_with_update_udp() {
    session_refreshed_by_baton(Transport::Udp, "UPDATE");
}

#[test]
fn session_refreshed_by_baton_with_reinvite_tcp() {
    session_refreshed_by_baton(Transport::Tcp, "INVITE");
}
