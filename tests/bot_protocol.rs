//! External bots over the bot protocol (`docs/bot-protocol.md`). The shipped example bot
//! (`examples/bot.rs`) drives a whole call: a SIPp caller asks for their balance and says
//! goodbye, the bot writes what it did to the call's context and hangs up. A misbehaving
//! bot gets an error frame for each bad frame while the call carries on, and when it
//! vanishes mid-call the dialplan's built-in dialog takes the caller over within a second.

mod common;

use common::{caller_conversation, repo_path, Baton, Sipp, Transport, CALM_VOICE, QUIET};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// A dialplan handing calls to the bot at `url`, with a built-in dialog that takes over if
/// the bot goes away.
fn vendor_plan(url: &str) -> String {
    format!(
        "name = \"vendor\"\nmatch = [\"vendor\"]\nspeech_hints = \"Check my balance.\"\n\n\
         [[step]]\nbot = {{ url = \"{url}\", fallback = \"takeover\" }}\n\n\
         [dialog]\nstart = \"takeover\"\n\
         [dialog.node.takeover]\n\
         say = \"Sorry about that, I will take it from here. Goodbye for now.\"\n\
         hangup = true\n"
    )
}

/// The example bot, listening on a free port; killed when dropped.
struct ExampleBot {
    child: Child,
    url: String,
}

impl ExampleBot {
    fn start() -> ExampleBot {
        let bin = repo_path("target/release/examples/bot");
        assert!(
            bin.is_file(),
            "{} is missing: `make test` builds it (cargo build --release --examples)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example bot");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("bot stdout"))
            .read_line(&mut line)
            .expect("the bot says where it listens");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("address line");
        ExampleBot {
            child,
            url: format!("ws://{addr}/"),
        }
    }
}

impl Drop for ExampleBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_example_bot_drives_a_whole_call() {
    let bot = ExampleBot::start();
    let baton = Baton::builder("bot-example")
        .dialplan("vendor", &vendor_plan(&bot.url))
        .start();
    let parts: Vec<(&[&str], &str)> = vec![
        (CALM_VOICE, "I would like to check my balance."),
        (CALM_VOICE, "No, that's all, goodbye."),
    ];
    let audio = caller_conversation(&baton.dir, "vendor", &parts, 5.0, 7.0);
    let sipp = Sipp::new(&baton, "uac_wait_bye.xml", Transport::Udp)
        .user("vendor")
        .var("AUDIO", audio.path.display())
        .timeout(Duration::from_secs_f64(audio.total_secs()) + Duration::from_secs(40))
        .spawn();
    let id = baton.active_call_id(&sipp.call_id);
    let run = sipp.wait();
    let context = baton.get_json(&format!("/v1/calls/{id}/context"));
    let dump = format!("{context:#}");
    assert!(
        run.ok(),
        "the bot says goodbye and baton hangs up: {}\n{dump}",
        run.report
    );

    assert_eq!(context["intent"]["name"], "balance", "{dump}");
    let read = context["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == "balance_read")
        .unwrap_or_else(|| panic!("the bot's action is in the context: {dump}"));
    assert_eq!(read["by"], "bot");
    let bot_said: Vec<&str> = context["transcript"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["speaker"] == "bot")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(
        bot_said
            .iter()
            .any(|t| t.contains("four hundred and twelve pounds")),
        "{bot_said:?}"
    );
    assert!(
        bot_said.last().is_some_and(|t| t.contains("Goodbye")),
        "{bot_said:?}"
    );
    assert!(
        context["bot"]["attempts"].as_array().is_none_or(|a| a
            .iter()
            .all(|t| !t.as_str().unwrap_or("").contains("external bot"))),
        "the bot stayed connected: {dump}"
    );
    let call = baton.wait_ended(&sipp_call_id(&run), Duration::from_secs(5));
    assert_eq!(call["result"], "baton_bye", "{call}");
}

fn sipp_call_id(run: &common::SippRun) -> String {
    run.call_id.clone()
}

/// What the misbehaving bot saw and did.
struct Seen {
    /// The `type` of every frame baton sent, in order.
    types: Vec<String>,
    /// The error frames, whole.
    errors: Vec<Value>,
    /// When it dropped the connection.
    dropped_at: Instant,
}

/// A bot that sends baton garbage, then one good `say`, and vanishes once it has played.
fn misbehaving_bot() -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bot listener");
    let url = format!("ws://{}/", listener.local_addr().expect("bot address"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("baton connects");
        let mut ws =
            tungstenite::accept_hdr(stream, common::agree_to_bot_protocol).expect("handshake");
        let mut types = Vec::new();
        let mut errors = Vec::new();
        let mut read = |ws: &mut tungstenite::WebSocket<_>| -> Value {
            loop {
                if let Message::Text(text) = ws.read().expect("a frame from baton") {
                    let frame: Value = serde_json::from_str(&text).expect("baton sends JSON");
                    types.push(frame["type"].as_str().unwrap_or_default().to_owned());
                    if frame["type"] == "error" {
                        errors.push(frame.clone());
                    }
                    return frame;
                }
            }
        };
        assert_eq!(read(&mut ws)["type"], "session:new");
        for bad in [
            "this is not JSON".to_owned(),
            json!({"type": "verbs", "verbs": [{"verb": "dance"}]}).to_string(),
            json!({"type": "verbs", "verbs": [{"verb": "say", "text": ""}]}).to_string(),
        ] {
            ws.send(Message::text(bad)).expect("send");
            while read(&mut ws)["type"] != "error" {}
        }
        ws.send(Message::Binary(vec![1, 2, 3].into()))
            .expect("send");
        while read(&mut ws)["type"] != "error" {}
        let say = json!({"type": "verbs", "verbs": [
            {"verb": "say", "id": "s1", "text": "One moment please, I am looking into that."}
        ]});
        ws.send(Message::text(say.to_string())).expect("send");
        loop {
            let frame = read(&mut ws);
            if frame["type"] == "verb:done" && frame["id"] == "s1" {
                break;
            }
        }
        // Gone without a word, as a crashed bot would be.
        drop(ws);
        let dropped_at = Instant::now();
        let _ = tx.send(Seen {
            types,
            errors,
            dropped_at,
        });
    });
    (url, rx)
}

#[test]
fn bad_frames_get_errors_and_a_vanished_bot_hands_over_at_once() {
    let (url, seen) = misbehaving_bot();
    let mut baton = Baton::builder("bot-misbehaving")
        .dialplan("vendor", &vendor_plan(&url))
        .start();
    let heard = common::listen_until_bye(&baton, "vendor", Duration::from_secs(40));
    let seen = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the bot ran its script");

    let messages: Vec<&str> = seen
        .errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        messages.len(),
        4,
        "one error frame per bad frame: {:?}",
        seen.errors
    );
    assert!(messages[0].contains("expected"), "{messages:?}");
    assert!(
        messages[1].contains("unknown variant `dance`"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("verbs[0]: say: text is empty"),
        "{messages:?}"
    );
    assert!(messages[3].contains("binary"), "{messages:?}");
    assert_eq!(seen.errors[0]["frame"], "this is not JSON");
    assert!(
        seen.types.contains(&"verb:done".to_owned()),
        "{:?}",
        seen.types
    );

    // The caller heard the bot's words, then the built-in dialog's, with no gap over a
    // second between them.
    let loud: Vec<Instant> = heard
        .packets
        .iter()
        .filter(|(_, p)| common::payload_rms(p) > QUIET)
        .map(|(at, _)| *at)
        .collect();
    let before = loud.iter().rev().find(|at| **at <= seen.dropped_at);
    let after = loud.iter().find(|at| **at > seen.dropped_at);
    let (Some(before), Some(after)) = (before, after) else {
        panic!(
            "the caller heard the bot, then the fallback: {} loud packets",
            loud.len()
        );
    };
    let silence = after.duration_since(*before);
    println!("silence between the bot's last words and the fallback's first: {silence:?}");
    assert!(
        silence < Duration::from_secs(1),
        "the caller waited {silence:?} in silence after the bot went away"
    );
    let context = baton.last_context("vendor");
    let attempts = context["bot"]["attempts"].to_string();
    assert!(
        attempts.contains("external bot: the connection dropped without a close")
            && attempts.contains("took over at takeover"),
        "the handover is in the context: {attempts}"
    );
    baton.assert_alive();
}

#[test]
fn an_unreachable_bot_hands_over_at_once() {
    // A port nobody listens on: the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let mut baton = Baton::builder("bot-unreachable")
        .dialplan("vendor", &vendor_plan(&format!("ws://127.0.0.1:{port}/")))
        .start();
    let started = Instant::now();
    let heard = common::listen_until_bye(&baton, "vendor", Duration::from_secs(20));
    let first = heard
        .packets
        .iter()
        .find(|(_, p)| common::payload_rms(p) > QUIET)
        .map(|(at, _)| at.duration_since(started))
        .expect("the caller hears the fallback dialog");
    println!("first words {first:?} after the call was placed");
    assert!(first < Duration::from_secs(2), "{first:?}");
    baton.assert_alive();
}
