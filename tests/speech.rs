//! A caller speaks to baton over G.711 (espeak-ng's voice, streamed by SIPp): baton
//! transcribes it in-process with the real whisper model, reads the caller's mood from
//! prosody and words, shows both on the call, and streams them live as Server-Sent Events.

mod common;

use common::{
    caller_audio, caller_conversation, listen_plan, read_event_stream, talk_to_listen, Baton,
    CallerAudio, Sipp, Transport, AGITATED_VOICE, CALM_VOICE,
};
use serde_json::Value;
use std::thread;
use std::time::{Duration, Instant};

/// Streams `audio` into a call to the `listen` plan, collects the call's live events
/// meanwhile, and returns the ended call (once it has as many final transcripts as
/// `utterances`) and the event stream.
fn converse(
    baton: &Baton,
    transport: Transport,
    audio: &CallerAudio,
    utterances: usize,
) -> (Value, String) {
    let sipp = talk_to_listen(baton, transport, audio);
    let id = baton.active_call_id(&sipp.call_id);
    let http = baton.http;
    let events = thread::spawn(move || {
        read_event_stream(
            http,
            &format!("/v1/calls/{id}/events"),
            Duration::from_secs(90),
        )
    });
    let run = sipp.wait();
    run.assert_ok();
    baton.wait_ended(&run.call_id, Duration::from_secs(10));
    // The last final may land a moment after the hang-up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let call = loop {
        let call = baton.call(&run.call_id).expect("listed");
        let finals = call["transcript"].as_array().map_or(0, Vec::len);
        if finals >= utterances || Instant::now() > deadline {
            break call;
        }
        thread::sleep(Duration::from_millis(200));
    };
    (call, events.join().expect("event reader"))
}

fn label(call: &Value) -> &str {
    call["vibe"]["label"]
        .as_str()
        .unwrap_or_else(|| panic!("no vibe: {call}"))
}

fn caller_is_transcribed(transport: Transport) {
    let baton = Baton::builder(&format!("speech-{}", transport.name()))
        .dialplan("listen", &listen_plan("Please block my card."))
        .start();
    let audio = caller_audio(
        &baton.dir,
        "caller",
        "Please block my credit card, it was stolen yesterday.",
        1.0,
    );
    let (call, stream) = converse(&baton, transport, &audio, 1);
    let transcript = call["transcript"].as_array().expect("a transcript array");
    assert_eq!(transcript.len(), 1, "one utterance: {call}");
    let said = &transcript[0];
    assert_eq!(said["speaker"], "caller");
    assert_eq!(said["final"], true);
    let text = said["text"].as_str().unwrap().to_lowercase();
    for word in ["block", "credit", "card", "stolen"] {
        assert!(text.contains(word), "{word:?} missing from {text:?}");
    }
    // Timed from the start of the call's media: the caller waited a second first.
    let start = said["start_ms"].as_u64().unwrap();
    assert!(
        (700..=2_000).contains(&start),
        "starts at {start} ms: {said}"
    );
    assert!(
        said["words"].as_array().is_some_and(|w| w.len() >= 6),
        "{said}"
    );
    // Said at an ordinary pace and level: no alarm in the voice.
    assert!(matches!(label(&call), "calm" | "neutral"), "{call}");
    assert!(call["vibe"]["arousal"].as_f64().unwrap() < 0.5, "{call}");

    assert!(stream.contains("event: speech_started"), "{stream}");
    assert!(stream.contains("event: transcript"), "{stream}");
    assert!(stream.contains("\"final\":true"), "{stream}");
    assert!(stream.contains("stolen"), "{stream}");
    assert!(stream.contains("event: vibe"), "{stream}");
}

#[test]
fn caller_is_transcribed_udp() {
    caller_is_transcribed(Transport::Udp);
}

#[test]
fn caller_is_transcribed_tcp() {
    caller_is_transcribed(Transport::Tcp);
}

#[test]
fn an_agitated_caller_reads_as_upset() {
    let baton = Baton::builder("speech-agitated")
        .dialplan("listen", &listen_plan("Please block my card."))
        .start();
    let audio = caller_conversation(
        &baton.dir,
        "agitated",
        &[(
            AGITATED_VOICE,
            "This is ridiculous, my card still has not arrived.",
        )],
        1.0,
        0.0,
    );
    let (call, _) = converse(&baton, Transport::Udp, &audio, 1);
    assert!(
        matches!(label(&call), "anxious" | "frustrated" | "angry"),
        "{call}"
    );
    let vibe = &call["vibe"];
    assert!(vibe["arousal"].as_f64().unwrap() >= 0.55, "{call}");
    let evidence = vibe["evidence"].to_string();
    assert!(
        evidence.contains("louder") || evidence.contains("faster"),
        "{call}"
    );
}

#[test]
fn a_call_that_turns_agitated_deteriorates() {
    let baton = Baton::builder("speech-turning")
        .dialplan("listen", &listen_plan("Please block my card."))
        .start();
    let audio = caller_conversation(
        &baton.dir,
        "turning",
        &[
            (CALM_VOICE, "Hello, I am calling about my new card."),
            (CALM_VOICE, "I ordered it two weeks ago."),
            (
                AGITATED_VOICE,
                "It still has not arrived and nobody tells me anything.",
            ),
            (
                AGITATED_VOICE,
                "This is ridiculous, I have been waiting for weeks.",
            ),
        ],
        1.0,
        1.2,
    );
    let (call, stream) = converse(&baton, Transport::Udp, &audio, 4);
    // Four sentences; a fast one may be heard as two utterances.
    let finals = call["transcript"].as_array().map_or(0, Vec::len);
    assert!(finals >= 4, "{finals} finals: {call}");
    // The readings as they came, one per utterance: calm first, then worse.
    let vibes: Vec<Value> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|v| v["type"] == "vibe")
        .collect();
    assert!(vibes.len() >= 3, "{vibes:?}");
    assert!(
        matches!(vibes[0]["label"].as_str(), Some("calm" | "neutral")),
        "{vibes:?}"
    );
    let turned = vibes.iter().skip(2).find(|v| v["trend"] == "deteriorating");
    let turned = turned.unwrap_or_else(|| panic!("never deteriorating: {vibes:?}"));
    assert!(
        matches!(
            turned["label"].as_str(),
            Some("anxious" | "frustrated" | "angry")
        ),
        "{turned}"
    );
    assert!(turned["arousal"].as_f64().unwrap() >= 0.55, "{turned}");
}

/// More callers talking at once than transcription threads: partials thin out and finals
/// wait, but the media path does not notice (no RTP lost) and every utterance of every
/// caller is transcribed.
#[test]
fn more_talkers_than_workers_lose_no_audio_and_every_final_arrives() {
    const TALKERS: usize = 6;
    let baton = Baton::builder("speech-overload")
        .dialplan("listen", &listen_plan("Please block my card."))
        .config("speech_workers = 1\n")
        .start();
    let audio = caller_conversation(
        &baton.dir,
        "talker",
        &[
            (
                CALM_VOICE,
                "I would like to check the balance of my savings account.",
            ),
            (CALM_VOICE, "I think there is a mistake on my statement."),
            (
                CALM_VOICE,
                "Please send me a text message with the details.",
            ),
        ],
        0.5,
        0.8,
    );
    let millis = ((audio.total_secs() + 1.5) * 1000.0) as u64;
    let talkers: Vec<_> = (0..TALKERS)
        .map(|_| {
            Sipp::new(&baton, "uac_audio.xml", Transport::Udp)
                .user("listen")
                .var("AUDIO", audio.path.display())
                .var("MILLIS", millis)
                .timeout(Duration::from_millis(millis) + Duration::from_secs(30))
                .spawn()
        })
        .collect();
    let runs: Vec<_> = talkers.into_iter().map(|t| t.wait()).collect();
    for run in &runs {
        run.assert_ok();
        baton.wait_ended(&run.call_id, Duration::from_secs(10));
    }
    // The backlog drains after the calls end: wait for every caller's three finals.
    let deadline = Instant::now() + Duration::from_secs(90);
    for run in &runs {
        let call = loop {
            let call = baton.call(&run.call_id).expect("listed");
            let finals = call["transcript"].as_array().map_or(0, Vec::len);
            if finals >= 3 || Instant::now() > deadline {
                break call;
            }
            thread::sleep(Duration::from_millis(250));
        };
        let finals = call["transcript"].as_array().map_or(0, Vec::len);
        assert!(finals >= 3, "{finals} finals of 3 utterances: {call}");
        assert_eq!(
            call["media"]["lost"], 0,
            "RTP lost under speech load: {call}"
        );
        let packets = call["media"]["packets_in"].as_f64().unwrap();
        let sent = audio.total_secs() * 50.0;
        assert!(
            packets >= sent - 2.0,
            "{packets} of {sent} packets in: {call}"
        );
    }
    assert_eq!(baton.metric("baton_rtp_lost_packets_total"), 0.0);
}
