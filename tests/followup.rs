//! Follow-ups with real peers: SIPp as the caller, and an HTTP receiver started by the
//! test as the connectors' provider.
//!
//! - The caller keys an option; the bot blocks the card and promises a text. The text, a
//!   WhatsApp form link and an e-mail reach the receiver filled from the call's context,
//!   signed with the connector's secret and carrying their idempotency key. The receiver
//!   refuses each message's first attempt with 503: the same message comes again.
//! - A connector whose receiver always fails is tried its `attempts`, then the follow-up
//!   is reported failed (the API, the metrics), its message kept.
//! - A follow-up due in an hour is listed as pending and cancelled through the API.
//! - baton killed with SIGKILL while a follow-up waits for its time, and started again on
//!   the same database: the follow-up still goes out.

mod common;

use common::{wait_for, Baton, Sipp, Transport};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "receiver-shared-secret-0123";

/// A bot that waits for one key, then blocks the card and promises what follows.
const PLAN: &str = r#"
name = "card-followup"
match = ["card-followup"]

[[step]]
bot = "dialog"

[dialog]
start = "ask"

[dialog.node.ask]
expect = "digits"
digits = 1
slot = "choice"
next = "blocked"
timeout_secs = 10

[dialog.node.blocked]
action = { name = "card_blocked" }
followup = ["confirm_sms", "replacement_form", "confirm_email", "survey", "reminder"]
say = "Your card is blocked. I'll text you a confirmation."
hangup = true

[followup.confirm_sms]
channel = "sms"
text = "Option {slot.choice} done: your card is blocked."

[followup.replacement_form]
channel = "whatsapp"
text = "Order your replacement card here."
link = "https://forms.example/replace?call={call.id}&option={slot.choice}"

[followup.confirm_email]
channel = "email"
to = "security+{slot.choice}@bank.example"
subject = "Card blocked"
text = "We blocked your card on call {call.id}."
connector = "broken"

[followup.survey]
channel = "sms"
text = "How did we do?"
after = "1h"

[followup.reminder]
channel = "sms"
text = "Your new card is on its way."
after = "6s"
"#;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP receiver on loopback: `/flaky` answers each message's first attempt 503 and
/// the next ones 200; `/broken` always answers 500.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("receiver address");
        let kept = got.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async move {
                let app = axum::Router::new().fallback(
                    move |uri: axum::http::Uri,
                          headers: axum::http::HeaderMap,
                          body: axum::body::Bytes| {
                        let kept = kept.clone();
                        async move {
                            let received = Received {
                                path: uri.path().to_owned(),
                                headers: headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect(),
                                body: body.to_vec(),
                            };
                            let key = received.headers.get("idempotency-key").cloned();
                            let mut got = kept.lock().unwrap();
                            let before = got
                                .iter()
                                .filter(|r| r.headers.get("idempotency-key") == key.as_ref())
                                .count();
                            let status = match (received.path.as_str(), before) {
                                ("/flaky", 0) => 503,
                                ("/flaky", _) => 200,
                                _ => 500,
                            };
                            got.push(received);
                            axum::http::StatusCode::from_u16(status).unwrap()
                        }
                    },
                );
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, app).await.expect("receiver serves");
            });
        });
        Receiver { addr, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests that carried follow-up `name`.
    fn of(&self, name: &str) -> Vec<Received> {
        self.got()
            .into_iter()
            .filter(|r| r.json()["followup"] == name)
            .collect()
    }

    fn config(&self) -> String {
        format!(
            "[connector.default]\nurl = \"http://{0}/flaky\"\nsecret = \"{SECRET}\"\n\
             backoff_ms = 300\n\n\
             [connector.broken]\nurl = \"http://{0}/broken\"\nsecret = \"{SECRET}\"\n\
             attempts = 2\nbackoff_ms = 200\n",
            self.addr
        )
    }
}

/// The signature a receiver computes over the timestamp and the body, as documented.
fn expected_signature(timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

fn followups(baton: &Baton, query: &str) -> Vec<Value> {
    baton
        .get_json(&format!("/v1/followups{query}"))
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_name<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|t| t["followup"] == name)
        .unwrap_or_else(|| panic!("no follow-up {name} in {list:#?}"))
}

#[test]
fn followups_reach_the_receiver_signed_and_survive_failures_and_a_crash() {
    let receiver = Receiver::start();
    let mut baton = Baton::builder("followup")
        .config(&receiver.config())
        .dialplan("card-followup", PLAN)
        .start();
    let run = Sipp::new(&baton, "uac_key_wait_bye.xml", Transport::Udp)
        .user("card-followup")
        .var("KEY", 4)
        .timeout(Duration::from_secs(30))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    let call_id = call["id"].as_str().expect("call id").to_owned();

    // The SMS and the WhatsApp message: refused once, then taken.
    assert!(
        wait_for(Duration::from_secs(10), || {
            receiver.of("confirm_sms").len() >= 2 && receiver.of("replacement_form").len() >= 2
        }),
        "each message tried twice: {:#?}",
        receiver.got()
    );
    let sms = receiver.of("confirm_sms");
    let body = sms[1].json();
    assert_eq!(body["channel"], "sms", "{body}");
    assert_eq!(body["to"], "+441234567890", "the caller's number: {body}");
    assert_eq!(
        body["text"], "Option 4 done: your card is blocked.",
        "{body}"
    );
    assert_eq!(body["call_id"], call_id.as_str(), "{body}");
    assert_eq!(sms[0].path, "/flaky");
    assert_eq!(sms[0].body, sms[1].body, "the retry sends the same message");
    for attempt in &sms {
        let h = &attempt.headers;
        assert_eq!(h["idempotency-key"], body["id"].as_str().unwrap(), "{h:?}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(
            h["x-baton-signature"],
            expected_signature(&h["x-baton-timestamp"], &attempt.body),
            "the signature verifies with the shared secret"
        );
    }
    let form = receiver.of("replacement_form")[1].json();
    assert_eq!(form["channel"], "whatsapp", "{form}");
    assert_eq!(
        form["link"],
        format!("https://forms.example/replace?call={call_id}&option=4"),
        "{form}"
    );

    // The API agrees, and the call's context notes what was promised.
    let listed = followups(&baton, &format!("?call={call_id}"));
    let sent = by_name(&listed, "confirm_sms");
    assert_eq!(sent["state"], "sent", "{sent:#}");
    assert_eq!(sent["attempts"], 2, "{sent:#}");

    // The e-mail's receiver always fails: tried twice, then reported.
    assert!(
        wait_for(Duration::from_secs(10), || by_name(
            &followups(&baton, &format!("?call={call_id}")),
            "confirm_email"
        )["state"]
            == "failed"),
        "{:#?}",
        followups(&baton, "")
    );
    let email = by_name(&followups(&baton, "?state=failed"), "confirm_email").clone();
    assert_eq!(email["attempts"], 2, "{email:#}");
    assert!(
        email["error"].as_str().unwrap_or("").contains("500"),
        "the failure names the receiver's answer: {email:#}"
    );
    assert_eq!(
        email["to"], "security+4@bank.example",
        "kept whole: {email:#}"
    );
    assert_eq!(receiver.of("confirm_email").len(), 2);
    assert_eq!(baton.metric("baton_followups_total{state=\"failed\"}"), 1.0);

    // The survey waits an hour; it is cancelled, once.
    let survey = by_name(&followups(&baton, "?state=pending"), "survey").clone();
    let id = survey["id"].as_str().unwrap();
    let (status, body) = baton.request("DELETE", &format!("/v1/followups/{id}"), "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        baton.get_json(&format!("/v1/followups/{id}"))["state"],
        "cancelled"
    );
    let (status, body) = baton.request("DELETE", &format!("/v1/followups/{id}"), "");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already cancelled"), "{body}");
    let (status, _) = baton.request("DELETE", "/v1/followups/f-nothing", "");
    assert_eq!(status, 404);
    let (status, body) = baton.get("/v1/followups?state=lost");
    assert_eq!(status, 400, "{body}");

    // The reminder is still waiting when baton is killed; the next baton sends it.
    assert!(receiver.of("reminder").is_empty(), "not due yet");
    common::run_tool(
        std::process::Command::new("kill").args(["-KILL", &baton.pid().to_string()]),
        Duration::from_secs(5),
    );
    assert!(baton.wait_exit(Duration::from_secs(10)).is_some());
    let db = baton.data.join("baton.sqlite");
    let again = Baton::builder("followup-again")
        .config(&format!(
            "context_db = {:?}\n{}",
            db.display().to_string(),
            receiver.config()
        ))
        .dialplan("card-followup", PLAN)
        .start();
    assert!(
        wait_for(Duration::from_secs(15), || receiver.of("reminder").len()
            >= 2),
        "the reminder goes out after the restart: {:#?}",
        followups(&again, "")
    );
    let reminder = by_name(&followups(&again, "?state=sent"), "reminder").clone();
    assert_eq!(reminder["text"], "Your new card is on its way.");
    assert_eq!(
        by_name(&followups(&again, ""), "survey")["state"],
        "cancelled",
        "what was done before the crash stays done"
    );
}
