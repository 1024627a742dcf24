//! The call's shared context through the API, with a real caller: SIPp streams espeak-ng
//! speech into baton, the transcript and the mood land in the context as versioned events,
//! a reader follows them live over the WebSocket, writers patch it with an expected version,
//! and bearer tokens decide who sees and writes what.

mod common;

use common::{caller_audio, http_request, listen_plan, talk_to_listen, Baton, Transport};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const BOT: &str = "bot-token-0123456789";
const AGENT: &str = "agent-a7-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn request(
    baton: &Baton,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (status, text) = http_request(baton.http, method, path, &headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Reads the live context WebSocket until `done` says enough or `limit` passes.
fn follow(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let stream = TcpStream::connect(addr).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}{path}"), stream).expect("WebSocket handshake");
    let started = Instant::now();
    let mut frames = Vec::new();
    while started.elapsed() < limit && !done(&frames) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                frames.push(serde_json::from_str(&t).expect("a JSON frame"))
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("WebSocket: {e}"),
        }
    }
    frames
}

fn has_final(frames: &[Value]) -> bool {
    frames.iter().any(|f| {
        f["event"]["change"]["op"] == "transcript" && f["event"]["change"]["final"] == true
    })
}

/// Starts a call to `listen` speaking `text`; returns the running SIPp and baton's call id.
fn call(baton: &Baton, text: &str) -> (common::SippProcess, String) {
    let audio = caller_audio(&baton.dir, "caller", text, 1.0);
    let sipp = talk_to_listen(baton, Transport::Udp, &audio);
    let id = baton.active_call_id(&sipp.call_id);
    (sipp, id)
}

#[test]
fn context_follows_the_call_live_and_takes_versioned_writes() {
    let mut baton = Baton::builder("context")
        .dialplan("listen", &listen_plan("Please block my card."))
        .start();
    let (sipp, id) = call(
        &baton,
        "Please block my credit card, it was stolen yesterday.",
    );

    let (status, doc) = request(&baton, "GET", &format!("/v1/calls/{id}/context"), None, "");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["call_id"], id);
    assert_eq!(doc["caller"]["number"], "+441234567890", "{doc}");
    assert_eq!(doc["participants"]["running"], "bot");

    let http = baton.http;
    let live_path = format!("/v1/calls/{id}/context/live");
    let live = thread::spawn(move || follow(http, &live_path, Duration::from_secs(60), has_final));
    let run = sipp.wait();
    run.assert_ok();
    let frames = live.join().expect("live reader");
    assert_eq!(
        frames.first().map(|f| f["type"].clone()),
        Some(json!("snapshot")),
        "{frames:?}"
    );
    assert!(
        has_final(&frames),
        "no final transcript came live: {frames:?}"
    );
    let versions: Vec<u64> = frames[1..]
        .iter()
        .map(|f| f["event"]["version"].as_u64().expect("a version"))
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "versions skip or repeat: {versions:?}"
    );
    assert!(
        frames[1..].iter().all(|f| f["event"]["author"] == "system"),
        "{frames:?}"
    );

    // The context outlives the call, and the vibe follows its final.
    let deadline = Instant::now() + Duration::from_secs(20);
    let doc = loop {
        let (status, doc) = request(&baton, "GET", &format!("/v1/calls/{id}/context"), None, "");
        assert_eq!(status, 200, "after the call: {doc}");
        if doc["vibe"]["label"].is_string() || Instant::now() > deadline {
            break doc;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let finals: Vec<&Value> = doc["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter(|l| l["final"] == true)
        .collect();
    assert_eq!(finals.len(), 1, "{doc}");
    assert_eq!(finals[0]["speaker"], "caller");
    let text = finals[0]["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("card") && text.contains("stolen"), "{text}");
    assert!(
        ["calm", "neutral"].contains(&doc["vibe"]["label"].as_str().unwrap_or("")),
        "{doc}"
    );
    assert!(
        doc["vibe"]["arousal"].is_number() && doc["vibe"]["trend"].is_string(),
        "{doc}"
    );
    let version = doc["version"].as_u64().expect("a version");

    let (status, events) = request(
        &baton,
        "GET",
        &format!("/v1/calls/{id}/context/events?since=0"),
        None,
        "",
    );
    assert_eq!(status, 200);
    let all: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(all, (1..=version).collect::<Vec<_>>());
    let (_, tail) = request(
        &baton,
        "GET",
        &format!("/v1/calls/{id}/context/events?since={}", version - 1),
        None,
        "",
    );
    assert_eq!(tail.as_array().unwrap().len(), 1);

    let path = format!("/v1/calls/{id}/context");
    let intent = |expected: u64, confidence: f64| {
        json!({"expected_version": expected, "changes": [
            {"op": "intent", "name": "block_card", "confidence": confidence},
            {"op": "slot", "name": "card_last4", "value": "4821"},
        ]})
        .to_string()
    };
    let (status, made) = request(&baton, "PATCH", &path, None, &intent(version, 0.9));
    assert_eq!(status, 200, "{made}");
    // The two changes, then baton's summary rewritten from them.
    let written = version + 3;
    assert_eq!(made["version"], written);
    let (status, conflict) = request(&baton, "PATCH", &path, None, &intent(version, 0.9));
    assert_eq!(status, 409, "a stale expected version: {conflict}");
    assert!(
        conflict["error"]
            .as_str()
            .unwrap()
            .contains(&format!("at {written}")),
        "{conflict}"
    );
    let (status, bad) = request(&baton, "PATCH", &path, None, &intent(written, 1.7));
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("confidence"),
        "{bad}"
    );
    let (status, bad) = request(
        &baton,
        "PATCH",
        &path,
        None,
        "{\"changes\": [{\"op\": \"launch\"}]}",
    );
    assert_eq!(status, 400, "{bad}");
    let (status, _) = request(
        &baton,
        "PATCH",
        "/v1/calls/nope/context",
        None,
        &intent(0, 0.5),
    );
    assert_eq!(status, 404);
    let (_, doc) = request(&baton, "GET", &path, None, "");
    assert_eq!(doc["version"], written);
    assert_eq!(doc["intent"]["name"], "block_card");
    let summary = doc["summary"]["text"].as_str().unwrap_or_default();
    assert!(
        summary.contains("block card"),
        "the summary follows: {summary}"
    );
    assert_eq!(doc["intent"]["confidence"], 0.9);
    assert_eq!(doc["slots"]["card_last4"], "4821");

    // The speech figures an operator watches: latency to the final, and worker time.
    assert!(baton.metric("baton_speech_final_seconds_count") >= 1.0);
    assert!(baton.metric("baton_speech_busy_seconds_total") > 0.0);
    assert!(baton.metric("baton_speech_audio_seconds_total") >= 2.0);

    let (status, schema) = request(&baton, "GET", "/v1/schema/context", None, "");
    assert_eq!(status, 200);
    assert!(schema["properties"]["transcript"].is_object(), "{schema}");
    baton.assert_alive();
}

#[test]
fn tokens_decide_who_sees_and_writes_what() {
    let mut baton = Baton::builder("context-tokens")
        .dialplan("listen", &listen_plan("Please block my card."))
        .config(&format!(
            "[[api_token]]\ntoken = \"{BOT}\"\nrole = \"bot\"\n\
             [[api_token]]\ntoken = \"{AGENT}\"\nrole = \"agent\"\nagent = \"a7\"\n\
             [[api_token]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
        ))
        .token(ADMIN)
        .start();
    let (sipp, id) = call(&baton, "I want to speak to a human agent, please.");
    let context = format!("/v1/calls/{id}/context");

    let (status, _) = request(&baton, "GET", "/healthz", None, "");
    assert_eq!(status, 200, "health needs no token");
    for token in [None, Some("wrong-token-0123456789")] {
        for path in [
            "/v1/calls",
            context.as_str(),
            "/metrics",
            "/v1/schema/context",
        ] {
            let (status, body) = request(&baton, "GET", path, token, "");
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
            assert!(!body.to_string().contains(&id), "a refusal shows nothing");
        }
    }
    // The agent is not on this call yet: it sees nothing of it.
    let (status, calls) = request(&baton, "GET", "/v1/calls", Some(AGENT), "");
    assert_eq!((status, calls), (200, json!([])));
    for path in [
        format!("/v1/calls/{id}"),
        context.clone(),
        format!("{context}/events"),
    ] {
        let (status, body) = request(&baton, "GET", &path, Some(AGENT), "");
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!body.to_string().contains("+441234567890"), "{body}");
    }
    let join = json!({"changes": [{"op": "agent", "id": "a7", "joined": true}]}).to_string();
    let (status, _) = request(&baton, "PATCH", &context, Some(AGENT), &join);
    assert_eq!(status, 403, "an agent cannot assign itself");
    let (status, body) = request(&baton, "PATCH", &context, Some(BOT), &join);
    assert_eq!(status, 200, "{body}");

    // Now it is.
    let (status, calls) = request(&baton, "GET", "/v1/calls", Some(AGENT), "");
    assert_eq!(status, 200);
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    let action =
        json!({"changes": [{"op": "action", "name": "card_blocked", "detail": {"card": "4821"}}]})
            .to_string();
    let (status, made) = request(&baton, "PATCH", &context, Some(AGENT), &action);
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["events"][0]["author"], json!({"agent": "a7"}));
    let (_, doc) = request(&baton, "GET", &context, Some(AGENT), "");
    assert_eq!(doc["actions"][0]["by"], "agent:a7", "{doc}");

    let (status, _) = request(&baton, "GET", "/metrics", Some(AGENT), "");
    assert_eq!(status, 403, "metrics are for operators");
    let (status, _) = request(&baton, "GET", "/metrics", Some(ADMIN), "");
    assert_eq!(status, 200);
    sipp.wait().assert_ok();
    baton.assert_alive();
}
