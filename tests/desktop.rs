//! The agent desktop (`/agent`) with real peers: headless Chromium as the agent, signed in
//! with their token, with a fake microphone playing a tone; SIPp as the caller.
//!
//! - The call rings on the desktop with the caller's context (summary, transcript) before
//!   anyone answers; the agent accepts over WebRTC; the agent hears the caller's tone and
//!   the caller hears the agent's; hanging up on the desktop gives the caller back to the
//!   bot.
//! - The agent hands the caller back from the desktop's form, picking a disposition the
//!   dialplan offers and writing notes: the context holds the `handback` action and the
//!   bot picks up at the node the disposition leads to.
//! - The desktop's socket refuses a wrong token, a token that is not an agent's and
//!   malformed messages, each with a clear error, and baton carries on.

mod common;

use common::browser::Browser;
use common::capture::{self, Capture};
use common::{caller_conversation, tone, wait_for, Baton, Sipp, Transport, CALM_VOICE};
use serde_json::Value;
use std::time::Duration;

const OPERATOR_TOKEN: &str = "operator-token-0123456789";
const WENDY_TOKEN: &str = "wendy-desk-token-0123456789";
const BOT_TOKEN: &str = "bot-token-0123456789abcdef";

/// One agent with no SIP phone: the desktop is her phone.
const CONFIG: &str = "\
[[agent]]\n\
id = \"a-web\"\nname = \"Wendy\"\nsip_user = \"wendy\"\npassword = \"wendy-password-42\"\n\
skills = { fraud = 3 }\n\
[[api_token]]\ntoken = \"operator-token-0123456789\"\nrole = \"admin\"\n\
[[api_token]]\ntoken = \"bot-token-0123456789abcdef\"\nrole = \"bot\"\n\
[[api_token]]\ntoken = \"wendy-desk-token-0123456789\"\nrole = \"agent\"\nagent = \"a-web\"\n";

/// The agent's microphone plays this tone; the caller's audio carries the other.
const AGENT_TONE_HZ: f64 = 500.0;
const CALLER_TONE_HZ: f64 = 700.0;

fn start_baton(name: &str) -> Baton {
    // The agent takes a few seconds to read the card before accepting.
    let desk = include_str!("data/desk.toml").replace("ring_secs = 5", "ring_secs = 30");
    Baton::builder(name)
        .config(CONFIG)
        .token(OPERATOR_TOKEN)
        .dialplan("desk", &desk)
        .start()
}

/// Records, in the page, the loudest pitch of what the agent hears every 100 ms, as
/// `window.heard` (`{hz, level}`).
const LISTEN: &str = r#"
(() => {
  const audio = document.getElementById('remote');
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  window.heard = [];
  setInterval(() => {
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    window.heard.push({ hz: best * ctx.sampleRate / analyser.fftSize, level: bins[best] });
  }, 100);
  return true;
})()
"#;

#[test]
fn an_agent_takes_a_call_on_the_desktop_over_webrtc() {
    let baton = start_baton("desktop-webrtc");
    let dir = baton.dir.clone();
    let mic = tone::wav(&dir.join("agent-mic.wav"), AGENT_TONE_HZ, 48_000, 10.0);
    let url = format!("http://{}/agent", baton.http);
    let mut browser = Browser::open(&url, &mic).expect("chromium opens the desktop");

    browser
        .eval(&format!(
            "document.getElementById('token').value = '{WENDY_TOKEN}'; \
             document.getElementById('signin-form').requestSubmit(); true"
        ))
        .expect("sign in");
    browser
        .wait_for("window.desk.signedIn", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("signed in: {e}; {:?}", browser.console()));
    let me = baton.get_json("/v1/agents");
    assert_eq!(me[0]["desktop"], true, "{me:#}");

    // The caller asks for a person, waits, then plays a tone for the agent to hear.
    let talk = caller_conversation(
        &dir,
        "ask",
        &[(CALM_VOICE, "I want to speak to a human.")],
        2.5,
        0.0,
    );
    let caller_tone = tone::wav(&dir.join("caller-tone.wav"), CALLER_TONE_HZ, 8000, 40.0);
    // Silence after the words, so that the tone is not heard as part of them.
    let caller_audio = tone::after_pause(&talk.path, 6.0, &caller_tone, &dir.join("caller.wav"));
    let call_secs = talk.total_secs() + 6.0 + 40.0;
    let sipp = Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
        .user("desk")
        .var("AUDIO", caller_audio.display())
        .var("MILLIS", (call_secs * 1000.0) as u64)
        .timeout(Duration::from_secs_f64(call_secs + 30.0));
    let heard = Capture::start(&dir, sipp.media_port());

    let (run, accepted_at) = std::thread::scope(|s| {
        let call = s.spawn(|| sipp.run());
        let accepted_at = desktop_side(&mut browser, &baton, &dir);
        (call.join().expect("caller"), accepted_at)
    });
    let packets = heard.stop();
    assert!(run.ok(), "{}", run.report);

    let record = baton.last_escalation();
    let dump = format!("{record:#}");
    assert_eq!(record["agent_id"], "a-web", "{dump}");
    assert_eq!(record["outcome"], "returned", "{dump}");
    let bridged = record["connected_at_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    assert!(bridged >= accepted_at, "{dump}");

    // What the caller heard once bridged: the agent's microphone, at about -30 dBFS after
    // the browser's noise suppression and gain control.
    let audio = capture::rtp_audio(&packets, 0);
    let after: Vec<f64> = audio
        .iter()
        .filter(|(at, _)| *at > bridged)
        .flat_map(|(_, p)| p.iter().map(|b| common::ulaw_decode(*b)))
        .collect();
    let w = tone::windows_of(&after, 8000.0);
    assert!(
        tone::first_second_of(&w, AGENT_TONE_HZ, 0.01).is_some(),
        "the caller hears the agent's microphone: {w:?}"
    );
    assert_eq!(baton.get_json("/v1/agents")[0]["calls"], 0);
}

/// The agent's part: the card rings with the context, they accept, hear the caller, and
/// hang up. Returns when they accepted (seconds since the epoch).
fn desktop_side(browser: &mut Browser, baton: &Baton, dir: &std::path::Path) -> f64 {
    let fail = |what: &str, e: String, b: &Browser| -> ! {
        panic!(
            "{what}: {e}\nconsole: {:#?}\nbrowser: {}",
            b.console(),
            b.log_tail()
        )
    };
    let ringing = "window.desk.call && window.desk.call.state === 'ringing' \
                   && !document.getElementById('card').classList.contains('hidden')";
    if let Err(e) = browser.wait_for(ringing, Duration::from_secs(40)) {
        fail("the call rings on the desktop", e, browser);
    }
    // While it rings, the desktop already shows who is calling and what they said.
    let has_context = "document.getElementById('summary').textContent.length > 3 \
         && [...document.querySelectorAll('#transcript p')].some(p => p.textContent.startsWith('caller'))";
    if let Err(e) = browser.wait_for(has_context, Duration::from_secs(10)) {
        fail("the context shows while ringing", e, browser);
    }
    let state = browser
        .eval("({ state: window.desk.call.state, card: document.getElementById('card-title').textContent, summary: document.getElementById('summary').textContent, accept: !document.getElementById('accept').classList.contains('hidden') })")
        .expect("page state");
    println!("while ringing: {state:#}");
    assert_eq!(state["state"], "ringing", "{state:#}");
    assert_eq!(state["accept"], true, "{state:#}");
    assert!(
        state["card"]
            .as_str()
            .is_some_and(|t| t.starts_with("Incoming call")),
        "{state:#}"
    );
    let _ = browser.screenshot(&dir.join("desktop-ringing.png"));

    let accepted_at = capture::now_secs();
    browser
        .eval("document.getElementById('accept').click(); true")
        .expect("accept");
    if let Err(e) = browser.wait_for(
        "window.desk.call.state === 'connected' && !!document.getElementById('remote').srcObject",
        Duration::from_secs(15),
    ) {
        fail("the desktop connects", e, browser);
    }
    browser.eval(LISTEN).expect("listen to the remote audio");
    // After the whisper, the caller's tone.
    let caller_heard = format!(
        "window.heard.filter(h => Math.abs(h.hz - {CALLER_TONE_HZ}) < 25 && h.level > -60).length >= 10"
    );
    if let Err(e) = browser.wait_for(&caller_heard, Duration::from_secs(30)) {
        let heard = browser.eval("window.heard.slice(-50)").unwrap_or_default();
        fail(
            "the agent hears the caller's tone",
            format!("{e}; heard {heard}"),
            browser,
        );
    }
    let _ = browser.screenshot(&dir.join("desktop-connected.png"));
    let stats = browser
        .eval(
            "window.desk.pc.getStats().then(r => { let o = {}; r.forEach(s => { \
             if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') o[s.type] = s.packetsReceived ?? s.packetsSent; }); return o; })",
        )
        .expect("stats");
    println!("WebRTC packets: {stats:#}");
    // Let the caller hear the agent for a few seconds, then hang up on the desktop.
    std::thread::sleep(Duration::from_secs(4));
    browser
        .eval("document.getElementById('hangup').click(); true")
        .expect("hang up");
    if let Err(e) = browser.wait_for(
        "window.desk.call.state === 'ended'",
        Duration::from_secs(10),
    ) {
        fail("the desktop's call ends", e, browser);
    }
    assert!(
        wait_for(Duration::from_secs(10), || baton.last_escalation()
            ["outcome"]
            == "returned"),
        "the caller is back with the bot: {:#}",
        baton.last_escalation()
    );
    accepted_at
}

#[test]
fn an_agent_hands_the_caller_back_from_the_desktop_with_a_disposition() {
    let baton = start_baton("desktop-handback");
    let dir = baton.dir.clone();
    let mic = tone::wav(&dir.join("agent-mic.wav"), AGENT_TONE_HZ, 48_000, 10.0);
    let url = format!("http://{}/agent", baton.http);
    let mut browser = Browser::open(&url, &mic).expect("chromium opens the desktop");
    let fail = |what: &str, e: String, b: &Browser| -> ! {
        panic!(
            "{what}: {e}\nconsole: {:#?}\nbrowser: {}",
            b.console(),
            b.log_tail()
        )
    };
    browser
        .eval(&format!(
            "document.getElementById('token').value = '{WENDY_TOKEN}'; \
             document.getElementById('signin-form').requestSubmit(); true"
        ))
        .expect("sign in");
    if let Err(e) = browser.wait_for("window.desk.signedIn", Duration::from_secs(10)) {
        fail("signed in", e, &browser);
    }

    let talk = caller_conversation(
        &dir,
        "ask",
        &[(CALM_VOICE, "I want to speak to a human.")],
        2.5,
        0.0,
    );
    // The caller stays on, silent, for less than baton's RTP inactivity limit.
    let millis = ((talk.total_secs() + 20.0) * 1000.0) as u64;
    let sipp = Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
        .user("desk")
        .var("AUDIO", talk.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(30));
    let run = std::thread::scope(|s| {
        let call = s.spawn(|| sipp.run());
        if let Err(e) = browser.wait_for(
            "window.desk.call && window.desk.call.state === 'ringing'",
            Duration::from_secs(40),
        ) {
            fail("the call rings on the desktop", e, &browser);
        }
        browser
            .eval("document.getElementById('accept').click(); true")
            .expect("accept");
        if let Err(e) = browser.wait_for(
            "window.desk.call.state === 'connected'",
            Duration::from_secs(15),
        ) {
            fail("the desktop connects", e, &browser);
        }
        // The form offers the dispositions the plan leads somewhere, with labels.
        browser
            .eval("document.getElementById('handback').click(); true")
            .expect("open the hand-back form");
        let form = browser
            .eval(
                "({ shown: !document.getElementById('handback-panel').classList.contains('hidden'), \
                   options: [...document.querySelectorAll('#disposition-pick option')].map(o => o.value), \
                   labelled: ['disposition-pick', 'disposition-other', 'handback-notes'] \
                     .every(id => document.querySelector(`label[for=\"${id}\"]`)) })",
            )
            .expect("the form");
        println!("hand-back form: {form}");
        assert_eq!(form["shown"], true, "{form}");
        assert_eq!(
            form["options"],
            serde_json::json!(["card_blocked", "resolved"]),
            "{form}"
        );
        assert_eq!(form["labelled"], true, "{form}");
        let _ = browser.screenshot(&dir.join("desktop-handback.png"));
        browser
            .eval(
                "document.getElementById('disposition-pick').value = 'resolved'; \
                 document.getElementById('handback-notes').value = 'Explained the charge.'; \
                 document.getElementById('handback-form').requestSubmit(); true",
            )
            .expect("hand back");
        if let Err(e) = browser.wait_for(
            "window.desk.call.state === 'ended' && window.desk.call.why === 'handed back' \
             && document.getElementById('handback-panel').classList.contains('hidden')",
            Duration::from_secs(10),
        ) {
            fail("the desktop's call ends, handed back", e, &browser);
        }
        call.join().expect("caller")
    });
    assert!(run.ok(), "{}", run.report);

    let record = baton.last_escalation();
    assert_eq!(record["agent_id"], "a-web", "{record:#}");
    assert_eq!(record["outcome"], "returned", "{record:#}");
    assert_eq!(record["disposition"], "resolved", "{record:#}");
    let id = record["call_id"].as_str().unwrap_or_default();
    let context = baton.get_json(&format!("/v1/calls/{id}/context"));
    let handback = context["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "handback"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(handback["by"], "agent:a-web", "{context:#}");
    assert_eq!(handback["detail"]["disposition"], "resolved", "{context:#}");
    assert_eq!(
        handback["detail"]["notes"], "Explained the charge.",
        "{context:#}"
    );
    // The bot picks up at the node `resolved` leads to.
    let said: Vec<&str> = context["transcript"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|l| l["speaker"] == "bot")
                .filter_map(|l| l["text"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        said.contains(&"Glad that is sorted. Is there anything else?"),
        "{said:#?}"
    );
    assert_eq!(baton.get_json("/v1/agents")[0]["calls"], 0);
}

/// Opens the desktop's socket and sends `hello`; the first answer.
fn hello(baton: &Baton, hello: &str) -> (Value, tungstenite::WebSocket<std::net::TcpStream>) {
    let stream = std::net::TcpStream::connect(baton.http).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let (mut ws, _) =
        tungstenite::client(format!("ws://{}/agent/ws", baton.http), stream).expect("websocket");
    ws.send(tungstenite::Message::text(hello)).expect("hello");
    let value = read_json(&mut ws);
    (value, ws)
}

/// The next message from the desktop's socket, as JSON (`null` if it is not).
fn read_json(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> Value {
    let message = ws.read().expect("answer");
    serde_json::from_str(message.to_text().unwrap_or_default()).unwrap_or(Value::Null)
}

#[test]
fn the_desktop_refuses_wrong_tokens_and_bad_messages() {
    let mut baton = start_baton("desktop-refusals");
    let (page_status, page) = common::http_get(baton.http, "/agent").expect("page");
    assert_eq!(page_status, 200);
    assert!(page.contains("agent desktop"), "{page}");

    for (hello_msg, why) in [
        (
            r#"{"type":"hello","token":"wrong-token-0123456789"}"#,
            "valid agent token",
        ),
        (
            &format!(r#"{{"type":"hello","token":"{BOT_TOKEN}"}}"#) as &str,
            "not an agent's",
        ),
        (r#"{"type":"hello","agent":"a-web"}"#, "valid agent token"),
        ("not json", "valid agent token"),
    ] {
        let (answer, _) = hello(&baton, hello_msg);
        assert_eq!(answer["type"], "error", "{hello_msg}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(why)),
            "{hello_msg}: {answer}"
        );
    }

    let (welcome, mut ws) = hello(
        &baton,
        &format!(r#"{{"type":"hello","token":"{WENDY_TOKEN}"}}"#),
    );
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["agent"]["id"], "a-web", "{welcome}");
    for (bad, why) in [
        ("{", "not a desktop message"),
        (
            r#"{"type":"accept","key":"nope","answer":"v=0"}"#,
            "no call",
        ),
        (r#"{"type":"explode"}"#, "not a desktop message"),
        (r#"{"type":"hangup"}"#, "not a desktop message"),
        (
            r#"{"type":"handback","key":"nope"}"#,
            "missing field `disposition`",
        ),
        (
            r#"{"type":"handback","key":"nope","disposition":"card blocked"}"#,
            "hand back refused: disposition: expected 1 to 64",
        ),
        (
            &format!(
                r#"{{"type":"handback","key":"nope","disposition":"x","notes":"{}"}}"#,
                "n".repeat(2001)
            ) as &str,
            "hand back refused: notes: at most 2000",
        ),
        (
            r#"{"type":"handback","key":"nope","disposition":"resolved"}"#,
            "no call",
        ),
    ] {
        ws.send(tungstenite::Message::text(bad)).expect("send");
        let answer = read_json(&mut ws);
        assert_eq!(answer["type"], "error", "{bad}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(why)),
            "{bad}: {answer}"
        );
    }
    ws.send(tungstenite::Message::text(
        r#"{"type":"presence","presence":"away"}"#,
    ))
    .expect("presence");
    assert!(wait_for(Duration::from_secs(5), || {
        baton.get_json("/v1/agents")[0]["presence"] == "away"
    }));
    drop(ws);
    assert!(
        wait_for(Duration::from_secs(5), || {
            baton.get_json("/v1/agents")[0]["desktop"] == false
        }),
        "a closed desktop no longer takes calls"
    );
    baton.assert_alive();
}
