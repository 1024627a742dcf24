//! The warm transfer with real peers: SIPp as the caller and baresip as the agents'
//! softphones, registered to baton with digest auth and answering on their own.
//!
//! - The bank: a caller verifies, then asks in an agitated voice to block a stolen card.
//!   The escalation names the policy and the caller's mood; the fraud agent (not the
//!   billing one) gets the call; from the decision to the bridge the caller never hears
//!   more than 300 ms of silence (measured on the wire); the agent hears the whisper, then
//!   the caller; the caller then hears the agent.
//! - A phone that rings out passes the call to the next agent; when that agent hangs up,
//!   the bot has the caller again.
//! - A caller who hangs up while the agent's phone rings cancels it.
//! - With no agent registered, the caller is offered a callback and the bot carries on;
//!   the escalation's record is still there after baton is killed and started again.
//! - A stolen card with no fraud specialist registered waits in line, the caller hearing
//!   their place, then overflows to the billing agent after the plan's `overflow_secs`.
//! - An agent transfers the call with REFER: blind to a colleague, or attended after
//!   consulting them (baton redirects the consultation to the colleague's phone, then
//!   asks that phone to replace it with the caller); a colleague who is busy leaves the
//!   caller with the agent who transferred.
//! - An agent hands the caller back through the API, or from their phone with a REFER to
//!   `sip:bot@…;disposition=…`; the bot carries on from the slots they set, at the node
//!   the plan's `[transfer] handback` leads their disposition to.

mod common;

use common::capture::{self, Capture};
use common::softphone::{Answer, Softphone, AGENTS};
use common::tone;
use common::{caller_conversation, wait_for, Baton, Sipp, Transport, AGITATED_VOICE, CALM_VOICE};
use serde_json::Value;
use std::time::Duration;

/// A bot that asks how it can help; a caller who asks for a person goes to one, and comes
/// back to "Is there anything else?" (the transfer bench calls the same plan).
const DESK: &str = include_str!("data/desk.toml");

/// The agent's tone, and the caller's, each telling whose audio reached the other side.
const AGENT_TONE_HZ: f64 = 500.0;
const CALLER_TONE_HZ: f64 = 700.0;

fn agent(baton: &Baton, id: &str) -> Value {
    let agents = baton.get_json("/v1/agents");
    agents
        .as_array()
        .and_then(|l| l.iter().find(|a| a["id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

fn wait_registered(baton: &Baton, phones: &[(&str, &Softphone)]) {
    for (id, phone) in phones {
        assert!(
            wait_for(Duration::from_secs(10), || agent(baton, id)["registered"]
                == true),
            "{id} registers: {}",
            phone.log()
        );
    }
}

#[test]
fn a_stolen_card_goes_to_the_fraud_agent_warmly() {
    let baton = Baton::builder("transfer-bank").config(AGENTS).start();
    let dir = baton.dir.clone();
    let agent_tone = tone::wav(&dir.join("agent-tone.wav"), AGENT_TONE_HZ, 8000, 100.0);
    let dana = Softphone::builder().records().sends(&agent_tone).start(
        &baton,
        "dana",
        "correct-horse-battery",
    );
    let sam = Softphone::builder()
        .records()
        .start(&baton, "sam", "battery-staple-42");
    wait_registered(&baton, &[("a-fraud", &dana), ("a-billing", &sam)]);

    // Verified calmly, then upset about the card; a tone once the agent must be there.
    let answers: Vec<&str> = include_str!("data/bank-answers.txt").lines().collect();
    let talk = caller_conversation(
        &dir,
        "talk",
        &[
            (CALM_VOICE, answers[0]),
            (CALM_VOICE, answers[1]),
            (AGITATED_VOICE, answers[2]),
        ],
        9.0,
        7.0,
    );
    let tone = tone::wav(&dir.join("caller-tone.wav"), CALLER_TONE_HZ, 8000, 2.0);
    // The tone starts 20 s after the last answer: the transfer is long done by then.
    let with_wait = tone::after_pause(&talk.path, 20.0, &tone, &dir.join("caller.wav"));
    let call_secs = talk.total_secs() + 20.0 + 2.0 + 3.0;
    let sipp = Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
        .user("bank")
        .var("AUDIO", with_wait.display())
        .var("MILLIS", (call_secs * 1000.0) as u64)
        .timeout(Duration::from_secs_f64(call_secs + 30.0));
    let heard = Capture::start(&dir, sipp.media_port());
    let run = sipp.run();
    let packets = heard.stop();
    assert!(run.ok(), "{}", run.report);

    let record = baton.last_escalation();
    let dump = format!("{record:#}");
    println!("{dump}");
    assert_eq!(record["skill"], "fraud", "{dump}");
    let codes: Vec<&str> = record["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(codes.contains(&"policy_intent"), "{dump}");
    assert!(
        codes.contains(&"sentiment"),
        "the caller's mood counts: {dump}"
    );
    assert_eq!(record["agent_id"], "a-fraud", "{dump}");
    assert_eq!(record["outcome"], "completed", "{dump}");
    let decided = record["decided_at_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let bridged = record["connected_at_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    assert!(bridged > decided, "{dump}");

    // What the caller heard, on the wire: never 300 ms of silence from the decision to
    // the bridge, and the agent's tone after it.
    let audio = capture::rtp_audio(&packets, 0);
    let quiet = capture::longest_quiet(&audio, decided, bridged);
    println!(
        "decision to bridge {:.2} s; the caller's longest silence in it {:.0} ms",
        bridged - decided,
        quiet * 1000.0
    );
    assert!(quiet <= 0.3, "the caller heard {quiet:.3} s of silence");
    let after: Vec<f64> = audio
        .iter()
        .filter(|(at, _)| *at > bridged + 0.5 && *at < bridged + 3.0)
        .flat_map(|(_, p)| p.iter().map(|b| common::ulaw_decode(*b)))
        .collect();
    let heard_hz = tone::pitch(&after, 8000.0);
    assert!(
        tone::is_tone(tone::rms(&after), heard_hz, AGENT_TONE_HZ),
        "the caller hears the agent once bridged: {heard_hz:.0} Hz at {:.3}",
        tone::rms(&after)
    );

    // The fraud agent heard the whisper first, then the caller's tone; the billing agent
    // was never called.
    let mut dana = dana;
    dana.stop();
    let recording = dana.heard().expect("the fraud agent's recording");
    let w = tone::windows(&recording);
    // A second of the tone, not a word of the whisper that happens to cross as often.
    let first_tone = tone::first_second_of(&w, CALLER_TONE_HZ, tone::LOUD)
        .unwrap_or_else(|| panic!("the agent hears the caller's tone: {w:?}"));
    let whisper = w
        .iter()
        .take_while(|(at, ..)| *at < first_tone)
        .filter(|(_, level, _)| *level > 0.02)
        .count();
    assert!(
        w.iter().take(10).any(|(_, level, _)| *level > 0.02),
        "the whisper starts as the agent answers: {w:?}"
    );
    assert!(
        whisper >= 15,
        "the agent heard {whisper} loud windows of whisper before the caller"
    );
    assert!(
        !sam.log_contains("Call established"),
        "the billing agent was not called: {}",
        sam.log()
    );
    println!(
        "the agent heard {:.1} s of whisper, the caller's tone at {first_tone:.1} s",
        whisper as f64 / 10.0
    );
}

/// Places a call to `desk` saying "I want to speak to a human", staying on `stay_secs`
/// after the words; returns the SIPp run's Call-ID.
fn ask_for_a_person(baton: &Baton, stem: &str, stay_secs: f64) -> common::SippRun {
    let audio = caller_conversation(
        &baton.dir,
        stem,
        &[(CALM_VOICE, "I want to speak to a human.")],
        2.5,
        0.0,
    );
    let millis = ((audio.total_secs() + stay_secs) * 1000.0) as u64;
    Sipp::new(baton, "uac_audio.xml", Transport::Udp)
        .user("desk")
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(20))
        .run()
}

/// What baton said to the caller, as the call's transcript has it.
fn bot_lines(context: &Value) -> Vec<&str> {
    context["transcript"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|l| l["speaker"] == "bot")
                .filter_map(|l| l["text"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// What the bot said after the caller heard that an agent was coming.
fn back_from_the_agent<'a>(said: &'a [&'a str]) -> &'a [&'a str] {
    let from = said
        .iter()
        .rposition(|t| t.starts_with("I'm bringing in"))
        .map_or(said.len(), |i| i + 1);
    &said[from..]
}

fn context_of_last_call(baton: &Baton) -> Value {
    let id = baton.last_escalation()["call_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    baton.get_json(&format!("/v1/calls/{id}/context"))
}

#[test]
fn a_phone_ringing_out_passes_the_call_on_and_the_bot_takes_it_back() {
    let baton = Baton::builder("transfer-fallover")
        .config(AGENTS)
        .dialplan("desk", DESK)
        .start();
    // Without a skill asked, Sam (a-billing) ranks first: his phone rings and is not answered.
    let sam = Softphone::builder()
        .answer(Answer::Manual)
        .start(&baton, "sam", "battery-staple-42");
    // Dana greets the caller as she answers: her words are transcribed as the agent's.
    let greeting = caller_conversation(
        &baton.dir,
        "dana-says",
        &[(CALM_VOICE, "Hello, this is Dana from the fraud team.")],
        5.0,
        0.0,
    );
    let mut dana =
        Softphone::builder()
            .sends(&greeting.path)
            .start(&baton, "dana", "correct-horse-battery");
    wait_registered(&baton, &[("a-fraud", &dana), ("a-billing", &sam)]);

    let caller = std::thread::scope(|s| {
        let call = s.spawn(|| ask_for_a_person(&baton, "fallover", 30.0));
        // Dana hangs up a few seconds after joining.
        let joined = wait_for(Duration::from_secs(30), || {
            baton.last_escalation()["outcome"] == "connected"
        });
        if joined {
            std::thread::sleep(Duration::from_secs(6));
            dana.stop();
        }
        call.join().expect("caller")
    });
    assert!(caller.ok(), "{}", caller.report);
    let record = baton.last_escalation();
    let dump = format!("{record:#}");
    assert_eq!(record["agent_id"], "a-fraud", "{dump}");
    assert_eq!(record["missed"][0]["agent_id"], "a-billing", "{dump}");
    assert_eq!(record["missed"][0]["why"], "no answer", "{dump}");
    assert_eq!(record["outcome"], "returned", "{dump}");
    assert!(sam.log_contains("Incoming call"), "{}", sam.log());
    assert!(
        !sam.log_contains("Call established"),
        "Sam's ringing phone was cancelled: {}",
        sam.log()
    );

    let context = context_of_last_call(&baton);
    let said_after = context["transcript"]
        .as_array()
        .map(|t| {
            t.iter()
                .any(|l| l["speaker"] == "bot" && l["text"] == "Is there anything else?")
        })
        .unwrap_or(false);
    assert!(
        said_after,
        "the bot picks up where the plan says: {:#}",
        context["transcript"]
    );
    assert_eq!(context["participants"]["running"], "bot");
    let dana_said = context["transcript"].as_array().and_then(|t| {
        t.iter()
            .find(|l| l["speaker"] == "agent" && l["final"] == true)
            .map(|l| l["text"].as_str().unwrap_or_default().to_lowercase())
    });
    assert!(
        dana_said.as_deref().is_some_and(|t| t.contains("team")),
        "the agent's words are transcribed as hers: {:#}",
        context["transcript"]
    );
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
}

#[test]
fn a_caller_hanging_up_while_the_agent_rings_cancels_the_ringing() {
    let baton = Baton::builder("transfer-cancel")
        .config(AGENTS)
        .dialplan(
            "desk",
            DESK.replace("ring_secs = 5", "ring_secs = 60").as_str(),
        )
        .start();
    let dana =
        Softphone::builder()
            .answer(Answer::Manual)
            .start(&baton, "dana", "correct-horse-battery");
    wait_registered(&baton, &[("a-fraud", &dana)]);
    let run = ask_for_a_person(&baton, "cancel", 4.0);
    assert!(run.ok(), "{}", run.report);
    let record = baton.last_escalation();
    assert_eq!(record["outcome"], "abandoned", "{record:#}");
    assert!(
        wait_for(Duration::from_secs(5), || dana
            .log_contains("session closed")),
        "the agent's ringing phone is cancelled: {}",
        dana.log()
    );
    assert!(dana.log_contains("Incoming call"), "{}", dana.log());
    assert!(!dana.log_contains("Call established"), "{}", dana.log());
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

#[test]
fn with_no_agent_registered_the_caller_is_offered_a_callback() {
    let mut baton = Baton::builder("transfer-none")
        .config(AGENTS)
        .dialplan("desk", DESK)
        .start();
    let run = ask_for_a_person(&baton, "none", 20.0);
    assert!(run.ok(), "{}", run.report);
    let record = baton.last_escalation();
    assert_eq!(record["outcome"], "no_agent", "{record:#}");
    // What the bot had done when the caller asked for a person.
    assert_eq!(record["bot"]["path"][0], "greet", "{record:#}");
    let context = context_of_last_call(&baton);
    let offered = context["actions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|a| a["name"] == "callback_offered"));
    assert!(offered, "{:#}", context["actions"]);
    // Told first that someone will call back, then the bot carries on.
    let said = bot_lines(&context);
    let offer = said.iter().position(|t| t.contains("call you back"));
    let back = said.iter().rposition(|t| *t == "Is there anything else?");
    assert!(
        offer.is_some() && back > offer,
        "the callback offer, then the bot: {said:#?}"
    );

    // The record is durable: it is there after baton is killed and started again.
    common::run_tool(
        std::process::Command::new("kill").args(["-KILL", &baton.pid().to_string()]),
        Duration::from_secs(5),
    );
    assert!(baton.wait_exit(Duration::from_secs(10)).is_some());
    let db = baton.data.join("baton.sqlite");
    let again = Baton::builder("transfer-none-again")
        .config(&format!("context_db = {:?}\n", db.display().to_string()))
        .start();
    assert_eq!(again.last_escalation(), record);
}

#[test]
fn a_caller_waits_in_line_for_a_busy_agent_and_gets_them_when_free() {
    let config = AGENTS.replacen("digest", "max_calls = 1\ndigest", 1);
    let baton = Baton::builder("transfer-queue")
        .config(&config)
        .dialplan("desk", DESK)
        .start();
    let dana = Softphone::start(&baton, "dana", "correct-horse-battery");
    wait_registered(&baton, &[("a-fraud", &dana)]);
    let listed = |n: usize| {
        let list = baton.get_json("/v1/escalations");
        list.as_array().and_then(|l| l.get(n)).cloned()
    };
    let (first, second, queued) = std::thread::scope(|s| {
        let first = s.spawn(|| ask_for_a_person(&baton, "first", 14.0));
        let connected = wait_for(Duration::from_secs(30), || {
            listed(0).is_some_and(|e| e["outcome"] == "connected")
        });
        assert!(connected, "the first caller reaches Dana");
        let second = s.spawn(|| ask_for_a_person(&baton, "second", 25.0));
        // Dana is on the first call (max_calls = 1): the second waits in line.
        let queued = wait_for(Duration::from_secs(20), || {
            listed(1).is_some_and(|e| e["outcome"] == "queued")
        });
        (
            first.join().expect("first"),
            second.join().expect("second"),
            queued,
        )
    });
    assert!(first.ok(), "{}", first.report);
    assert!(second.ok(), "{}", second.report);
    assert!(
        queued,
        "the second caller queued: {:#}",
        baton.get_json("/v1/escalations")
    );
    let record = listed(1).unwrap_or(Value::Null);
    assert_eq!(record["agent_id"], "a-fraud", "{record:#}");
    assert_eq!(
        record["outcome"], "completed",
        "Dana took the second call once free: {record:#}"
    );
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

/// Registers a phone played by SIPp for `user`; the port it registered from, where a
/// later SIPp run of that phone must listen.
fn register_sipp_phone(baton: &Baton, user: &str, password: &str) -> String {
    let port = common::ports::free_udp_tcp_port().to_string();
    let registered = Sipp::new(baton, "register.xml", Transport::Udp)
        .var("USER", user)
        .var("PASSWORD", password)
        .var("EXPIRES", 600)
        .var("OUTCOME", 200)
        .arg("-p")
        .arg(&port)
        .timeout(Duration::from_secs(10))
        .run();
    assert!(registered.ok(), "{}", registered.report);
    port
}

/// A baton with the desk plan, and both agents' phones played by SIPp and registered:
/// the ports Sam's and Dana's phones must then listen on.
fn desk_with_sipp_phones(name: &str) -> (Baton, String, String) {
    let baton = Baton::builder(name)
        .config(AGENTS)
        .dialplan("desk", DESK)
        .start();
    let sam = register_sipp_phone(&baton, "sam", "battery-staple-42");
    let dana = register_sipp_phone(&baton, "dana", "correct-horse-battery");
    (baton, sam, dana)
}

#[test]
fn an_agent_hands_the_call_to_a_colleague_with_refer() {
    let baton = Baton::builder("transfer-refer")
        .config(AGENTS)
        .dialplan("desk", DESK)
        .start();
    let dana = Softphone::start(&baton, "dana", "correct-horse-battery");
    wait_registered(&baton, &[("a-fraud", &dana)]);
    // Without a skill asked, Sam (a-billing) ranks first.
    let port = register_sipp_phone(&baton, "sam", "battery-staple-42");
    let sam = Sipp::new(&baton, "agent_refer.xml", Transport::Udp)
        .var("TARGET", "sip:dana@127.0.0.1")
        .var("PAUSE_MS", 2000)
        .arg("-p")
        .arg(&port)
        .timeout(Duration::from_secs(40))
        .spawn();
    let caller = ask_for_a_person(&baton, "refer", 20.0);
    let sam = sam.wait();
    assert!(caller.ok(), "{}", caller.report);
    assert!(
        sam.ok(),
        "Sam's REFER is accepted, he hears how it went and is let go: {}",
        sam.report
    );
    let record = baton.last_escalation();
    assert_eq!(record["agent_id"], "a-fraud", "{record:#}");
    assert_eq!(record["outcome"], "completed", "{record:#}");
    assert!(dana.log_contains("Call established"), "{}", dana.log());
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

#[test]
fn an_agent_consults_a_colleague_then_hands_them_the_call() {
    // Without a skill asked, Sam (a-billing) gets the call; Dana's phone takes Sam's
    // consultation call and then baton's call that replaces it.
    let (baton, sam_port, dana_port) = desk_with_sipp_phones("transfer-attended");
    let dana = Sipp::new(&baton, "agent_consulted.xml", Transport::Udp)
        .arg("-m")
        .arg("2")
        .arg("-p")
        .arg(&dana_port)
        .timeout(Duration::from_secs(60))
        .spawn();
    // Sam's phone consults Dana's: baton redirects it there once it proves it is an
    // agent's, and the phones talk directly. (Here the consultation starts before the
    // caller's call: to baton only the dialog the REFER names matters.)
    let consult = Sipp::new(&baton, "agent_consult.xml", Transport::Udp)
        .user("dana")
        .var("USER", "sam")
        .var("PASSWORD", "battery-staple-42")
        .var("MILLIS", 25_000)
        .timeout(Duration::from_secs(45))
        .spawn();
    let replaces = format!("{};to-tag=dana1;from-tag=consult1", consult.call_id);
    let escaped = replaces
        .replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D");
    let sam = Sipp::new(&baton, "agent_refer.xml", Transport::Udp)
        .var("TARGET", format!("sip:dana@127.0.0.1?Replaces={escaped}"))
        .var("PAUSE_MS", 2000)
        .arg("-p")
        .arg(&sam_port)
        .timeout(Duration::from_secs(40))
        .spawn();
    let caller = ask_for_a_person(&baton, "attended", 15.0);
    let sam = sam.wait();
    let consult = consult.wait();
    let dana = dana.wait();
    assert!(caller.ok(), "{}", caller.report);
    assert!(
        sam.ok(),
        "Sam's REFER is accepted, he hears it worked and is let go: {}",
        sam.report
    );
    assert!(consult.ok(), "{}", consult.report);
    assert!(dana.ok(), "Dana's phone takes both calls: {}", dana.report);
    // baton's INVITE to Dana names the consultation, and requires that it be replaced.
    let invites: Vec<&str> = dana
        .messages
        .split("INVITE sip:")
        .filter(|m| m.contains("X-Baton-Call-Id"))
        .collect();
    assert_eq!(invites.len(), 1, "{}", dana.messages);
    assert!(
        invites[0].contains(&format!("Replaces: {replaces}"))
            && invites[0].contains("Require: replaces"),
        "{}",
        invites[0]
    );
    let record = baton.last_escalation();
    assert_eq!(record["agent_id"], "a-fraud", "{record:#}");
    assert_eq!(record["outcome"], "completed", "{record:#}");
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

/// A bot that hears intents, whose stolen-card calls need a fraud specialist and overflow
/// to a billing agent after 8 s.
const FRAUD_DESK: &str = include_str!("data/fraud-desk.toml");

/// `line` without the terminal colour codes baton's log may hold.
fn without_colour(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // An escape sequence (`ESC [ 2 m`) ends at its first letter.
            chars.by_ref().find(char::is_ascii_alphabetic);
        } else {
            plain.push(c);
        }
    }
    plain
}

/// When baton first logged a line holding `needle`, in seconds since the Unix epoch.
fn first_logged(baton: &Baton, needle: &str) -> Option<f64> {
    let log = std::fs::read_to_string(&baton.log).ok()?;
    log.lines()
        .map(without_colour)
        .find(|line| line.contains(needle))
        .and_then(|line| {
            line.split_whitespace()
                .next()
                .and_then(common::parse_rfc3339)
        })
}

#[test]
fn a_stolen_card_overflows_to_the_billing_agent_after_overflow_secs() {
    let baton = Baton::builder("transfer-overflow")
        .config(AGENTS)
        .dialplan("fraud-desk", FRAUD_DESK)
        .start();
    // Only Sam (billing) registers: no fraud specialist ever comes free.
    let sam = Softphone::start(&baton, "sam", "battery-staple-42");
    wait_registered(&baton, &[("a-billing", &sam)]);
    let audio = caller_conversation(
        &baton.dir,
        "stolen",
        &[(CALM_VOICE, "My card was stolen. Please block it.")],
        2.5,
        0.0,
    );
    let millis = ((audio.total_secs() + 22.0) * 1000.0) as u64;
    let (run, queued) = std::thread::scope(|s| {
        let call = s.spawn(|| {
            Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
                .user("fraud-desk")
                .var("AUDIO", audio.path.display())
                .var("MILLIS", millis)
                .timeout(Duration::from_millis(millis) + Duration::from_secs(20))
                .run()
        });
        // The record holds only the latest outcome: watch it until an agent is rung.
        let mut queued = false;
        wait_for(Duration::from_secs(40), || {
            let record = baton.last_escalation();
            queued |= record["outcome"] == "queued";
            !record["agent_id"].is_null()
        });
        (call.join().expect("caller"), queued)
    });
    assert!(run.ok(), "{}", run.report);
    let record = baton.last_escalation();
    let dump = format!("{record:#}");
    assert_eq!(record["skill"], "fraud", "{dump}");
    assert!(queued, "the call waited in line before Sam rang: {dump}");
    assert_eq!(record["agent_id"], "a-billing", "{dump}");
    assert_eq!(record["outcome"], "completed", "{dump}");
    assert!(sam.log_contains("Call established"), "{}", sam.log());

    // Sam's phone rang once the call had waited its 8 s, at the queue check after that.
    let decided = first_logged(&baton, "the call should go to a person");
    let rang = first_logged(&baton, "ringing an agent");
    let (Some(decided), Some(rang)) = (decided, rang) else {
        panic!("the decision and the ring are in baton's log: {decided:?}, {rang:?}");
    };
    println!("Sam rang {:.2} s after the decision", rang - decided);
    assert!(
        (8.0..12.0).contains(&(rang - decided)),
        "Sam rang {:.2} s after the decision",
        rang - decided
    );

    // Meanwhile the caller heard their place in line and the wait.
    let context = context_of_last_call(&baton);
    let said = bot_lines(&context);
    assert!(
        said.iter()
            .any(|t| t.contains("next in line") && t.contains("The wait is")),
        "{said:#?}"
    );
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
}

#[test]
fn a_colleague_who_cannot_take_a_transfer_leaves_the_caller_with_the_agent() {
    let (baton, sam_port, dana_port) = desk_with_sipp_phones("transfer-refused");
    let dana = Sipp::new(&baton, "agent_busy.xml", Transport::Udp)
        .arg("-p")
        .arg(&dana_port)
        .timeout(Duration::from_secs(40))
        .spawn();
    let sam = Sipp::new(&baton, "agent_refer_refused.xml", Transport::Udp)
        .var("TARGET", "sip:dana@127.0.0.1")
        .var("PAUSE_MS", 2000)
        .var("STATUS", 486)
        .arg("-p")
        .arg(&sam_port)
        .timeout(Duration::from_secs(40))
        .spawn();
    let caller = ask_for_a_person(&baton, "refused", 14.0);
    let (sam, dana) = (sam.wait(), dana.wait());
    assert!(caller.ok(), "{}", caller.report);
    assert!(dana.ok(), "{}", dana.report);
    assert!(
        sam.ok(),
        "Sam hears Dana is busy, still has the caller, and hangs up: {}",
        sam.report
    );
    let record = baton.last_escalation();
    assert_eq!(record["agent_id"], "a-billing", "{record:#}");
    assert_eq!(
        record["outcome"], "returned",
        "Sam's hang-up gives the caller back to the bot: {record:#}"
    );
    assert!(
        record["missed"].to_string().contains("a-fraud"),
        "{record:#}"
    );
    let talked = record["handle_secs"].as_f64().unwrap_or(0.0);
    assert!(
        (3.0..30.0).contains(&talked),
        "Sam talked about 4 s: {record:#}"
    );
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

#[test]
fn an_agent_hands_the_caller_back_to_the_bot_which_carries_on_from_what_they_did() {
    // `card_blocked` leads to the plan's `sorted` node, not to `return_to`.
    let plan = DESK.replace(
        "say = \"Glad that is sorted.",
        "say = \"Your card ending {slot.card} is now blocked.",
    );
    let baton = Baton::builder("transfer-handback")
        .config(AGENTS)
        .dialplan("desk", &plan)
        .start();
    let dana = Softphone::start(&baton, "dana", "correct-horse-battery");
    wait_registered(&baton, &[("a-fraud", &dana)]);
    let post = |path: &str, body: &str| {
        common::http_request(baton.http, "POST", path, &[], body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    };
    let caller = std::thread::scope(|s| {
        let caller = s.spawn(|| ask_for_a_person(&baton, "handback", 16.0));
        let connected = wait_for(Duration::from_secs(30), || {
            baton.last_escalation()["outcome"] == "connected"
        });
        assert!(
            connected,
            "Dana takes the call: {}",
            baton.last_escalation()
        );
        let id = baton.last_escalation()["call_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let path = format!("/v1/calls/{id}/handback");
        for (body, status, why) in [
            ("{}", 400, "missing field `disposition`"),
            (
                r#"{"disposition": "card blocked"}"#,
                400,
                "disposition: expected",
            ),
            (
                r#"{"disposition": "x", "slots": {"card": [1]}}"#,
                400,
                "slots.card",
            ),
            (
                r#"{"disposition": "x", "outcome": 1}"#,
                400,
                "unknown field",
            ),
            (
                r#"{"disposition": "x", "followups": ["card_sms"]}"#,
                400,
                "has no [followup.card_sms]",
            ),
        ] {
            let (got, text) = post(&path, body);
            assert_eq!((got, text.contains(why)), (status, true), "{body}: {text}");
        }
        let (got, text) = post(
            "/v1/calls/0123456789abcdef/handback",
            r#"{"disposition": "x"}"#,
        );
        assert_eq!(got, 404, "{text}");
        let back = r#"{"disposition": "card_blocked", "notes": "blocked, new card sent",
                       "slots": {"card": "4821"}}"#;
        let (got, text) = post(&path, back);
        assert_eq!(got, 202, "{text}");
        assert!(text.contains("a-fraud"), "{text}");
        caller.join().expect("caller")
    });
    assert!(caller.ok(), "{}", caller.report);
    // What the agent did reaches the record once the call is over.
    wait_for(Duration::from_secs(5), || {
        baton.last_escalation()["agent_actions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let record = baton.last_escalation();
    assert_eq!(record["outcome"], "returned", "{record:#}");
    assert_eq!(record["disposition"], "card_blocked", "{record:#}");
    // The record keeps what was said up to the handoff, and what the agent did.
    let said = record["transcript"].as_array().cloned().unwrap_or_default();
    assert!(
        said.iter().any(|l| l["speaker"] == "caller") && said.iter().any(|l| l["speaker"] == "bot"),
        "{record:#}"
    );
    assert!(
        record["agent_actions"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["name"] == "handback" && a["by"] == "agent:a-fraud")),
        "{record:#}"
    );
    let context = context_of_last_call(&baton);
    assert_eq!(context["slots"]["card"], "4821", "{context:#}");
    let handback = context["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "handback"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        handback["detail"]["disposition"], "card_blocked",
        "{context:#}"
    );
    assert_eq!(handback["by"], "agent:a-fraud", "{context:#}");
    // The bot carries on from what the agent did, at the node the disposition leads to.
    let said = bot_lines(&context);
    assert!(
        back_from_the_agent(&said)
            .first()
            .is_some_and(|t| t.starts_with("Your card ending 4 8 2 1 is now blocked.")),
        "{said:#?}"
    );
    assert!(
        !back_from_the_agent(&said).contains(&"Is there anything else?"),
        "not at return_to: {said:#?}"
    );
    assert_eq!(agent(&baton, "a-fraud")["calls"], 0);
}

#[test]
fn an_agents_phone_hands_the_caller_back_to_the_bot_with_refer() {
    let baton = Baton::builder("transfer-refer-bot")
        .config(AGENTS)
        .dialplan("desk", DESK)
        .start();
    let port = register_sipp_phone(&baton, "sam", "battery-staple-42");
    // Sam transfers the caller to the bot, saying he blocked the card; his first try, with
    // a disposition that is no code, is refused (400 naming it).
    let sam = Sipp::new(&baton, "agent_refer_bot.xml", Transport::Udp)
        .var("TARGET", "sip:bot@127.0.0.1;disposition=card_blocked")
        .var("PAUSE_MS", 2000)
        .arg("-p")
        .arg(&port)
        .timeout(Duration::from_secs(40))
        .spawn();
    let caller = ask_for_a_person(&baton, "refer-bot", 20.0);
    let sam = sam.wait();
    assert!(caller.ok(), "{}", caller.report);
    assert!(
        sam.ok(),
        "Sam's bad REFER is refused, the next accepted; he hears it worked and is let go: {}",
        sam.report
    );
    let record = baton.last_escalation();
    assert_eq!(record["agent_id"], "a-billing", "{record:#}");
    assert_eq!(record["outcome"], "returned", "{record:#}");
    assert_eq!(record["disposition"], "card_blocked", "{record:#}");
    let context = context_of_last_call(&baton);
    let handback = context["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "handback"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        handback["detail"]["disposition"], "card_blocked",
        "{context:#}"
    );
    assert_eq!(handback["by"], "agent:a-billing", "{context:#}");
    // The caller hears the bot pick up at the node `card_blocked` leads to.
    let said = bot_lines(&context);
    assert_eq!(
        back_from_the_agent(&said).first(),
        Some(&"Glad that is sorted. Is there anything else?"),
        "{said:#?}"
    );
    assert!(
        !back_from_the_agent(&said).contains(&"Is there anything else?"),
        "not at return_to: {said:#?}"
    );
    assert_eq!(agent(&baton, "a-billing")["calls"], 0);
}
