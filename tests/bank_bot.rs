//! The shipped bank bot end to end: a caller, spoken by espeak-ng and streamed by SIPp over
//! G.711, verifies with their name and date of birth, asks to block a stolen card, gives
//! its last four digits, confirms, and says goodbye; baton hangs up. The call's context
//! then holds what a person taking over would need, and the same caller's next call starts
//! with the memory of this one.

mod common;

use common::{caller_conversation, Baton, Sipp, Transport, CALM_VOICE};
use serde_json::Value;
use std::sync::LazyLock;
use std::time::Duration;

/// What the caller says, in order; each answer waits for the bot's question (or cuts it
/// short, as callers do). The bot-turn bench and the demo have the same conversation.
static ANSWERS: LazyLock<Vec<&str>> =
    LazyLock::new(|| include_str!("data/bank-answers.txt").lines().collect());

/// The bot's greeting and first question take about this long.
const FIRST_QUESTION_SECS: f64 = 9.0;
/// Silence after each answer: the bot's next question.
const GAP_SECS: f64 = 7.0;

fn context_of(baton: &Baton, id: &str) -> Value {
    baton.get_json(&format!("/v1/calls/{id}/context"))
}

/// Places the whole conversation and waits for baton to hang up; returns baton's call id.
fn converse(baton: &Baton, stem: &str) -> String {
    let parts: Vec<(&[&str], &str)> = ANSWERS.iter().map(|a| (CALM_VOICE, *a)).collect();
    let audio = caller_conversation(&baton.dir, stem, &parts, FIRST_QUESTION_SECS, GAP_SECS);
    let sipp = Sipp::new(baton, "uac_wait_bye.xml", Transport::Udp)
        .user("bank")
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs_f64(audio.total_secs()) + Duration::from_secs(60))
        .spawn();
    let id = baton.active_call_id(&sipp.call_id);
    let run = sipp.wait();
    let context = context_of(baton, &id);
    assert!(
        run.ok(),
        "baton hangs up after the goodbye: {}\ncontext: {context:#}",
        run.report
    );
    id
}

#[test]
fn a_caller_verifies_and_has_a_stolen_card_blocked() {
    let baton = Baton::start("bank-bot");
    let id = converse(&baton, "first");
    let context = context_of(&baton, &id);
    let dump = format!("{context:#}");

    assert_eq!(context["identity"]["verified"], true, "{dump}");
    assert_eq!(context["identity"]["method"], "date_of_birth", "{dump}");
    assert_eq!(context["identity"]["customer_id"], "C-1001", "{dump}");
    assert_eq!(context["intent"]["name"], "block_card", "{dump}");
    let confidence = context["intent"]["confidence"].as_f64().unwrap_or(0.0);
    assert!(
        confidence >= 0.5,
        "the intent is above the dialog's threshold: {dump}"
    );
    assert_eq!(context["slots"]["card"], "4821", "{dump}");
    let blocked = context["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == "card_blocked")
        .unwrap_or_else(|| panic!("the card is blocked: {dump}"));
    assert_eq!(blocked["detail"]["card"], "4821");
    assert_eq!(blocked["by"], "bot");
    let path: Vec<&str> = context["bot"]["path"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for step in [
        "greet",
        "verify",
        "menu",
        "block_confirm",
        "block_done",
        "goodbye",
    ] {
        assert!(
            path.contains(&step),
            "the bot went through {step}: {path:?}"
        );
    }
    let lines = context["transcript"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let bot_said = lines
        .iter()
        .filter(|l| l["speaker"] == "bot")
        .filter_map(|l| l["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        bot_said.contains("card ending 4 8 2 1 is now blocked"),
        "the bot's words are in the transcript: {bot_said}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["speaker"] == "caller" && l["final"] == true),
        "the caller's words are in the transcript: {dump}"
    );

    // Every change is an event, numbered in order.
    let events = baton.get_json(&format!("/v1/calls/{id}/context/events?since=0"));
    let versions: Vec<u64> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert!(versions.len() > 10, "{events}");
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );

    // The same number calls again: the new call starts with the memory of the first.
    let hello = common::caller_audio(&baton.dir, "hello", "Hello.", 0.5);
    let sipp = Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
        .user("bank")
        .var("AUDIO", hello.path.display())
        .var("MILLIS", 4_000)
        .timeout(Duration::from_secs(30))
        .spawn();
    let second = baton.active_call_id(&sipp.call_id);
    let memory = &context_of(&baton, &second)["caller"]["memory"];
    assert_eq!(memory["customer_id"], "C-1001", "{memory}");
    assert_eq!(
        memory["previous_calls"][0]["call_id"],
        id.as_str(),
        "{memory}"
    );
    assert_eq!(
        memory["previous_calls"][0]["intent"], "block_card",
        "{memory}"
    );
    sipp.wait().assert_ok();
}
