//! The escalation engine runs beside every call with a bot: a SIPp caller (espeak-ng) who
//! asks for a human, or presses 0, is marked for a person at once, with the reason and what
//! it rests on, in the call's context, in its summary and in `GET /v1/escalations`; a
//! caller who only asks a question is not.

mod common;

use common::{caller_conversation, Baton, Sipp, Transport, CALM_VOICE};
use serde_json::Value;
use std::time::Duration;

const PLAN: &str = "name = \"esc\"\nmatch = [\"esc\"]\n\n\
    [[step]]\nbot = \"dialog\"\n\n\
    [dialog]\nstart = \"greet\"\n\
    [dialog.node.greet]\nsay = \"How can I help?\"\nexpect = \"text\"\nslot = \"request\"\n\
    next = \"bye\"\ntimeout_secs = 10\n\
    [dialog.node.bye]\nsay = \"Thank you, goodbye.\"\nhangup = true\n\n\
    [escalation]\nalways_intents = [\"complaint\"]\n";

/// Calls `esc`, says `text` after the greeting, and returns the call's context.
fn call_saying(baton: &Baton, stem: &str, text: &str) -> Value {
    let audio = caller_conversation(&baton.dir, stem, &[(CALM_VOICE, text)], 3.0, 6.0);
    let run = Sipp::new(baton, "uac_wait_bye.xml", Transport::Udp)
        .user("esc")
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs_f64(audio.total_secs()) + Duration::from_secs(30))
        .run();
    assert!(
        run.ok(),
        "the bot says goodbye and hangs up: {}",
        run.report
    );
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    let id = call["id"].as_str().expect("call id");
    baton.get_json(&format!("/v1/calls/{id}/context"))
}

#[test]
fn a_caller_asking_for_a_human_is_marked_for_a_person_at_once() {
    let mut baton = Baton::builder("escalation").dialplan("esc", PLAN).start();

    let context = call_saying(&baton, "human", "I want to speak to a human.");
    let dump = format!("{context:#}");
    let decision = &context["escalation"];
    assert_eq!(decision["escalate"], true, "{dump}");
    assert_eq!(decision["urgency"], "immediate", "{dump}");
    assert_eq!(decision["reasons"][0]["code"], "caller_request", "{dump}");
    let evidence = decision["reasons"][0]["evidence"]
        .to_string()
        .to_lowercase();
    assert!(evidence.contains("human"), "{evidence}");
    assert!(
        context["summary"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("should take over (the caller asked for a person)"),
        "{dump}"
    );

    // The decision follows the words that caused it, as the next thing baton writes.
    let id = context["call_id"].as_str().expect("call id");
    let events = baton.get_json(&format!("/v1/calls/{id}/context/events?since=0"));
    let events = events.as_array().expect("events");
    let asked = events
        .iter()
        .find(|e| {
            e["change"]["op"] == "transcript"
                && e["change"]["final"] == true
                && e["change"]["speaker"] == "caller"
        })
        .unwrap_or_else(|| panic!("the caller's final: {events:#?}"));
    let decided = events
        .iter()
        .find(|e| e["change"]["op"] == "escalation" && e["change"]["escalate"] == true)
        .expect("the decision is an event");
    assert_eq!(decided["author"], "system");
    let lag = decided["at_ms"].as_u64().unwrap() - asked["at_ms"].as_u64().unwrap();
    println!("decision {lag} ms after the caller's words");
    assert!(lag < 200, "{lag} ms");

    let listed = baton.get_json("/v1/escalations");
    let mine: Vec<&Value> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["call_id"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "{listed:#}");
    assert_eq!(mine[0]["reasons"][0]["code"], "caller_request");
    assert_eq!(mine[0]["outcome"], "waiting");

    let context = call_saying(&baton, "question", "What time do you open tomorrow?");
    assert!(
        context["escalation"].is_null() || context["escalation"]["escalate"] == false,
        "a plain question is no reason: {:#}",
        context["escalation"]
    );
    assert_eq!(
        baton.get_json("/v1/escalations").as_array().map(Vec::len),
        Some(1)
    );

    let run = Sipp::new(&baton, "uac_dtmf_info.xml", Transport::Udp)
        .user("esc")
        .var("FIRST_KEY", "0")
        .timeout(Duration::from_secs(20))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    let id = call["id"].as_str().expect("call id");
    let context = baton.get_json(&format!("/v1/calls/{id}/context"));
    let reason = &context["escalation"]["reasons"][0];
    assert_eq!(
        reason["code"], "caller_request",
        "{:#}",
        context["escalation"]
    );
    assert_eq!(reason["evidence"][0], "caller pressed 0");
    baton.assert_alive();
}
