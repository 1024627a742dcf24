//! The built-in dialog reads customer data from a CRM over HTTP (`fetch = { url = ... }`):
//! what one answer says fills the next request's URL, safely encoded, and the bot speaks
//! from it; a CRM that fails sends the dialog to its `on_fail` node, and the context says
//! why.

mod common;

use common::{Baton, HttpStub};
use serde_json::{json, Value};
use std::time::Duration;

fn plan(crm: &str) -> String {
    format!(
        "name = \"crm\"\nmatch = [\"crm\"]\n\n[[step]]\nbot = \"dialog\"\n\n\
         [dialog]\nstart = \"lookup\"\n\
         [dialog.node.lookup]\n\
         fetch = {{ url = \"{crm}/lookup\", into = \"lookup\", timeout_ms = 1500 }}\n\
         next = \"accounts\"\non_fail = \"down\"\n\
         [dialog.node.accounts]\n\
         fetch = {{ url = \"{crm}/accounts/{{customer.lookup.id}}\", into = \"accounts\" }}\n\
         say = \"Your balance is {{customer.accounts.balance}} pounds.\"\nhangup = true\n\
         on_fail = \"down\"\n\
         [dialog.node.down]\nplay = \"beep.wav\"\n\
         say = \"Sorry, I cannot reach your account just now.\"\nhangup = true\n"
    )
}

fn bot_said(context: &Value) -> String {
    context["transcript"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["speaker"] == "bot")
        .filter_map(|l| l["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_dialog_speaks_from_crm_data_and_copes_when_the_crm_fails() {
    let crm = HttpStub::start(|path| match path {
        // An id with a space and a slash: it must reach the CRM as one path segment.
        "/lookup" => (200, "application/json", br#"{"id": "C 1/2"}"#.to_vec()),
        "/accounts/C%201%2F2" => (
            200,
            "application/json",
            json!({"balance": 412, "currency": "GBP"})
                .to_string()
                .into_bytes(),
        ),
        _ => (404, "text/plain", b"no such thing".to_vec()),
    });
    let down = HttpStub::start(|_| (503, "text/plain", b"maintenance".to_vec()));
    let mut baton = Baton::builder("crm-fetch")
        .dialplan("crm", &plan(&crm.url("")))
        .dialplan(
            "crm-down",
            &plan(&down.url("")).replace("\"crm\"", "\"crm-down\""),
        )
        .start();

    common::listen_until_bye(&baton, "crm", Duration::from_secs(20));
    assert_eq!(
        *crm.requests.lock().unwrap(),
        ["/lookup", "/accounts/C%201%2F2"]
    );
    let context = baton.last_context("crm");
    let dump = format!("{context:#}");
    assert_eq!(
        context["customer_data"]["accounts"]["balance"], 412,
        "{dump}"
    );
    assert_eq!(context["customer_data"]["lookup"]["id"], "C 1/2", "{dump}");
    assert!(
        bot_said(&context).contains("Your balance is 412 pounds."),
        "{dump}"
    );

    let heard = common::listen_until_bye(&baton, "crm-down", Duration::from_secs(20));
    // The recorded prompt first: the beep, 0.4 s of 1 kHz.
    let first: Vec<f64> = heard
        .packets
        .iter()
        .filter(|(_, p)| common::payload_rms(p) > common::QUIET)
        .take(15)
        .flat_map(|(_, p)| p.iter().map(|&b| common::ulaw_decode(b)))
        .collect();
    let crossings = first
        .windows(2)
        .filter(|w| (w[0] >= 0.0) != (w[1] >= 0.0))
        .count();
    let pitch = crossings as f64 * 8_000.0 / first.len() as f64 / 2.0;
    assert!(
        (950.0..1050.0).contains(&pitch),
        "the caller heard the beep first: {pitch} Hz"
    );
    let context = baton.last_context("crm-down");
    let dump = format!("{context:#}");
    assert!(
        bot_said(&context).contains("cannot reach your account"),
        "the dialog went to on_fail: {dump}"
    );
    let attempts = context["bot"]["attempts"].to_string();
    assert!(
        attempts.contains("fetch lookup") && attempts.contains("503"),
        "the context says what failed: {attempts}"
    );
    assert_eq!(*down.requests.lock().unwrap(), ["/lookup"]);
    baton.assert_alive();
}
