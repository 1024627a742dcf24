//! A returning caller. The final context of each call is kept in SQLite (`baton.sqlite` in
//! the data directory by default): it stays readable after the call and after baton
//! restarts, and the next call from the same number starts with the caller's memory (the
//! earlier call's intent, outcome and open follow-ups). A call from another number starts
//! with none.

mod common;

use common::{caller_audio, http_request, Baton, SipCaller, Sipp, SippProcess, Transport};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BOT: &str = "bot-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
/// The number the SIPp scenarios call from.
const NUMBER: &str = "+441234567890";

fn tokens() -> String {
    format!(
        "[[api_token]]\ntoken = \"{BOT}\"\nrole = \"bot\"\n\
         [[api_token]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
    )
}

fn request(baton: &Baton, method: &str, path: &str, body: &str) -> (u16, Value) {
    let auth = format!("Authorization: Bearer {BOT}");
    let (status, text) = http_request(baton.http, method, path, &[auth.as_str()], body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn context(baton: &Baton, id: &str) -> Value {
    let (status, doc) = request(baton, "GET", &format!("/v1/calls/{id}/context"), "");
    assert_eq!(status, 200, "context of {id}: {doc}");
    doc
}

/// A SIPp call from [`NUMBER`] to the echo plan that stays up for `millis` ms; the running
/// SIPp and baton's id of the call once it is active.
fn sipp_call(baton: &Baton, millis: u64) -> (SippProcess, String) {
    let audio = caller_audio(
        &baton.dir,
        "caller",
        "Hello, I am calling about my card.",
        0.5,
    );
    let sipp = Sipp::new(baton, "uac_audio.xml", Transport::Udp)
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(20))
        .spawn();
    let id = baton.active_call_id(&sipp.call_id);
    (sipp, id)
}

#[test]
fn a_returning_caller_starts_with_the_memory_of_the_last_call() {
    let mut first = Baton::builder("customer-memory")
        .config(&tokens())
        .token(ADMIN)
        .start();
    let (sipp, id) = sipp_call(&first, 4000);
    let doc = context(&first, &id);
    assert_eq!(doc["caller"]["number"], NUMBER, "{doc}");
    assert!(doc["caller"]["memory"].is_null(), "a first call: {doc}");
    let patch = json!({"changes": [
        {"op": "intent", "name": "block_card", "confidence": 0.9},
        {"op": "action", "name": "follow_up", "detail": {"text": "callback in 48 h"}},
        {"op": "action", "name": "card_blocked", "detail": {"card": "4821"}},
    ]});
    let path = format!("/v1/calls/{id}/context");
    let (status, made) = request(&first, "PATCH", &path, &patch.to_string());
    assert_eq!(status, 200, "{made}");
    let run = sipp.wait();
    run.assert_ok();
    first.wait_ended(&run.call_id, Duration::from_secs(10));

    let doc = context(&first, &id);
    assert_eq!(doc["intent"]["name"], "block_card", "after the call: {doc}");
    let db = first.data.join("baton.sqlite");
    assert!(db.is_file(), "no {}", db.display());

    // A graceful stop, then a new baton on the same database.
    first.terminate();
    let status = first.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "baton exited {status:?}"
    );
    let mut second = Baton::builder("customer-memory-restart")
        .config(&format!(
            "context_db = {:?}\n{}",
            db.to_str().unwrap(),
            tokens()
        ))
        .token(ADMIN)
        .start();

    let archived = context(&second, &id);
    assert_eq!(archived["call_id"], id);
    assert_eq!(archived["intent"]["name"], "block_card", "{archived}");
    assert_eq!(archived["actions"][1]["name"], "card_blocked", "{archived}");
    assert_eq!(archived["version"], doc["version"], "{archived}");
    let (status, gone) = request(
        &second,
        "GET",
        &format!("/v1/calls/{id}/context/events?since=0"),
        "",
    );
    assert_eq!(status, 410, "no events are kept after a restart: {gone}");
    let (status, _) = request(&second, "GET", "/v1/calls/0123456789abcdef/context", "");
    assert_eq!(status, 404);

    let (sipp, again) = sipp_call(&second, 1500);
    let doc = context(&second, &again);
    let memory = &doc["caller"]["memory"];
    assert_eq!(memory["previous_calls"][0]["call_id"], id, "{doc}");
    assert_eq!(memory["previous_calls"][0]["intent"], "block_card", "{doc}");
    assert_eq!(
        memory["previous_calls"][0]["outcome"], "card_blocked by bot",
        "{doc}"
    );
    assert_eq!(
        memory["open_follow_ups"],
        json!(["callback in 48 h"]),
        "{doc}"
    );
    sipp.wait().assert_ok();

    // Someone else: no memory.
    let (caller, mut call) = call_from(&second, "+15550001111");
    let other = second.active_call_id(&call.call_id);
    let doc = context(&second, &other);
    assert_eq!(doc["caller"]["number"], "+15550001111", "{doc}");
    assert!(doc["caller"]["memory"].is_null(), "{doc}");
    assert_eq!(caller.bye(&mut call), Some(200));
    second.assert_alive();
}

/// A call to the echo plan from `number`, placed by hand (SIPp's scenarios all call from
/// [`NUMBER`]), answered and acknowledged.
fn call_from(baton: &Baton, number: &str) -> (SipCaller, common::SipCall) {
    let caller = SipCaller::bind("127.0.0.1", baton);
    let (request, call_id, from) = caller.invite_request("echo", 18_000);
    let (request, from) = (
        request.replace(NUMBER, number),
        from.replace(NUMBER, number),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    caller.send(request.as_bytes());
    let ok = loop {
        assert!(
            Instant::now() < deadline,
            "no 200 to the INVITE from {number}"
        );
        let Some(msg) = caller.recv(Duration::from_millis(500)) else {
            // Lost on the way, as UDP may: send it again (RFC 3261 Timer A).
            caller.send(request.as_bytes());
            continue;
        };
        match msg.status() {
            Some(200) if msg.header("Call-ID") == Some(call_id.as_str()) => break msg,
            Some(s) if s >= 300 => panic!("INVITE from {number} refused: {msg:?}"),
            _ => {}
        }
    };
    let call = caller.answered(&ok, call_id, from);
    caller.ack(&call);
    (caller, call)
}
