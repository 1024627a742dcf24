//! A carrier call with a real caller's voice: SIPp streams espeak-ng speech as G.711 µ-law
//! into the shipped `record` and `echo` dialplans over UDP and TCP, hangs up, and
//! the test checks what baton reports (`/v1/calls`, `/metrics`) and what it recorded.

mod common;

use common::{
    call_seconds, caller_audio, measure_wav, measure_wav_from, repo_path, Baton, CallerAudio, Sipp,
    Transport,
};
use std::time::Duration;

/// What the caller says once the dialplan's tone has played.
const SPEECH: &str = "Hello. I would like to check the balance of my current account, please.";
/// RMS (full scale 1.0) above which a recording holds speech rather than silence or
/// comfort noise; espeak-ng speech through G.711 measures around 0.1.
const SPEECH_RMS: f64 = 0.01;
/// How long the caller stays on after finishing speaking.
const LINGER_SECS: f64 = 1.5;

/// Length of a shipped prompt, so the caller can wait for the tone like a person would.
fn prompt_secs(file: &str) -> f64 {
    measure_wav(&repo_path("media").join(file)).seconds
}

/// Places a call to `user` in which the caller speaks after `wait_secs`, hangs up, and
/// returns the ended call as the API lists it.
fn talk_and_hang_up(
    baton: &Baton,
    user: &str,
    transport: Transport,
    wait_secs: f64,
) -> (serde_json::Value, CallerAudio) {
    let audio = caller_audio(&baton.dir, &format!("caller-{user}"), SPEECH, wait_secs);
    let millis = ((audio.total_secs() + LINGER_SECS) * 1000.0) as u64;
    let run = Sipp::new(baton, "uac_audio.xml", transport)
        .user(user)
        .var("AUDIO", audio.path.display())
        .var("MILLIS", millis)
        .timeout(Duration::from_millis(millis) + Duration::from_secs(20))
        .run();
    run.assert_ok();
    let call = baton.wait_ended(&run.call_id, Duration::from_secs(5));
    assert_eq!(call["result"], "caller_bye", "the caller hung up: {call}");
    assert!(
        call["ended_at"].is_string(),
        "an ended call has ended_at: {call}"
    );
    assert!(
        call["to"].as_str().is_some_and(|to| to.contains(user)),
        "`to` names the dialled user {user}: {call}"
    );
    (call, audio)
}

/// The `-in.wav` recording holds the caller's speech: 16 kHz mono 16-bit, not silence, at
/// least as long as the speech and no longer than the call.
fn assert_caller_recorded(baton: &Baton, call: &serde_json::Value, audio: &CallerAudio) {
    let path = baton.recording(call, "-in.wav");
    let wav = measure_wav(&path);
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.bits),
        (16000, 1, 16),
        "{} format",
        path.display()
    );
    let call_secs = call_seconds(call);
    assert!(
        wav.seconds >= audio.speech_secs - 0.5 && wav.seconds <= call_secs + 0.5,
        "{} lasts {:.2} s; the caller spoke {:.2} s in a call of {:.2} s",
        path.display(),
        wav.seconds,
        audio.speech_secs,
        call_secs
    );
    assert!(
        wav.rms > SPEECH_RMS,
        "{} is silence (RMS {:.4}) though the caller spoke",
        path.display(),
        wav.rms
    );
}

fn record_plan_keeps_what_the_caller_said(transport: Transport) {
    let baton = Baton::start(&format!("record-{}", transport.name()));
    let wait = prompt_secs("record-after-tone.wav") + prompt_secs("beep.wav") + 0.5;
    let (call, audio) = talk_and_hang_up(&baton, "record", transport, wait);
    assert_caller_recorded(&baton, &call, &audio);
    assert!(
        baton.metric("baton_rtp_packets_total{direction=\"in\"}") >= audio.total_secs() * 40.0,
        "baton counts the caller's RTP packets (50 per second):\n{}",
        baton.metrics()
    );
    let metrics = baton.metrics();
    assert!(
        common::metric_value(&metrics, "baton_calls_total{result=\"caller_bye\"}")
            .is_some_and(|n| n >= 1.0),
        "the ended call is counted by result:\n{metrics}"
    );
    assert_eq!(
        common::metric_value(&metrics, "baton_active_calls"),
        Some(0.0),
        "no call is left active:\n{metrics}"
    );
}

#[test]
fn record_plan_keeps_what_the_caller_said_udp() {
    record_plan_keeps_what_the_caller_said(Transport::Udp);
}

#[test]
fn record_plan_keeps_what_the_caller_said_tcp() {
    record_plan_keeps_what_the_caller_said(Transport::Tcp);
}

/// The echo plan plays its explanation and a tone, then sends the caller's voice back. The
/// caller speaks only after the tone, so baton's outgoing audio after the tone is loud only
/// if the echo works.
fn echo_plan_sends_the_callers_voice_back(transport: Transport) {
    let baton = Baton::start(&format!("echo-{}", transport.name()));
    let tone_ends = prompt_secs("echo-welcome.wav") + prompt_secs("beep.wav");
    let out_before = baton.metric("baton_rtp_packets_total{direction=\"out\"}");
    let (call, audio) = talk_and_hang_up(&baton, "echo", transport, tone_ends + 0.5);
    let out_after = baton.metric("baton_rtp_packets_total{direction=\"out\"}");
    let listed_out = call["recordings"].as_array().is_some_and(|r| {
        r.iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with("-out.wav")))
    });
    if listed_out {
        let path = baton.recording(&call, "-out.wav");
        let echoed = measure_wav_from(&path, tone_ends + 0.3);
        assert!(
            echoed.rms > SPEECH_RMS,
            "{}: what baton sent after the tone is silence (RMS {:.4}); the echo did not work",
            path.display(),
            echoed.rms
        );
    } else {
        // Without a recording of what baton sent, at least its RTP must cover the whole call:
        // the prompt, the tone and the echoed speech (50 packets a second).
        let want = (audio.total_secs() - 0.5) * 45.0;
        assert!(
            out_after - out_before >= want,
            "baton sent {} RTP packets, want at least {want:.0} for {:.1} s of call:\n{}",
            out_after - out_before,
            audio.total_secs(),
            baton.metrics()
        );
    }
}

#[test]
fn echo_plan_sends_the_callers_voice_back_udp() {
    echo_plan_sends_the_callers_voice_back(Transport::Udp);
}

#[test]
fn echo_plan_sends_the_callers_voice_back_tcp() {
    echo_plan_sends_the_callers_voice_back(Transport::Tcp);
}

/// The caller's voice the other tests rely on: speech after the requested silence, loud
/// enough to tell from silence, in the µ-law format SIPp streams.
#[test]
fn caller_audio_is_telephone_speech_after_a_pause() {
    let dir = common::temp_dir("caller-audio");
    let audio = caller_audio(&dir, "probe", SPEECH, 2.0);
    assert!(
        (2.5..10.0).contains(&audio.speech_secs),
        "espeak-ng spoke for {:.2} s",
        audio.speech_secs
    );
    let spoken = measure_wav(&dir.join("probe-0-spoken.wav"));
    assert!(
        spoken.rms > SPEECH_RMS,
        "espeak-ng output is silence: {spoken:?}"
    );
    let silence = measure_wav_from(&dir.join("probe-0-spoken.wav"), spoken.seconds);
    assert_eq!(silence.rms, 0.0, "nothing is measured past the end");
    let header = std::fs::read(&audio.path).expect("read caller audio");
    // WAVE_FORMAT_MULAW (7), mono, 8000 Hz: what `rtp_stream=FILE,1,0` sends as PCMU.
    assert_eq!(&header[20..22], &7u16.to_le_bytes(), "µ-law format tag");
    assert_eq!(&header[22..24], &1u16.to_le_bytes(), "mono");
    assert_eq!(&header[24..28], &8000u32.to_le_bytes(), "8 kHz");
    let samples = header.len() as f64 - 44.0;
    assert!(
        (samples / 8000.0 - audio.total_secs()).abs() < 0.2,
        "the file holds the silence then the speech ({samples} bytes)"
    );
    std::fs::remove_dir_all(&dir).ok();
}
