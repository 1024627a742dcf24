//! Text to speech on a call: a dialplan's `say` step, spoken by espeak-ng, reaches the
//! caller over G.711 as speech of the right length that whisper transcribes back. With the
//! synthesiser broken, the caller hears the recorded fallback prompt instead of silence,
//! the failure is counted, and baton stays up.

mod common;

use baton_speech::stt::{Job, JobKind, Model, SpeechWorkers};
use common::{model_path, repo_path, run_tool, Baton, Heard};
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// What the dialplan says.
const BALANCE: &str = "Your balance is four hundred and twelve pounds.";
/// RMS above which heard audio holds speech; espeak-ng through G.711 measures about 0.1.
const SPEECH_RMS: f64 = 0.02;
/// The bank dialog's context, as the speech tests give it to whisper: tiny.en mis-hears
/// espeak-ng through G.711 without it ("your map until" for "your balance is").
const BANK_HINTS: &str = "Please block my card. My card was stolen. Check my balance.";
/// The longest a call of this plan may take, from the answer to baton's BYE.
const CALL_LIMIT: Duration = Duration::from_secs(20);

fn listen_until_bye(baton: &Baton, user: &str) -> Heard {
    common::listen_until_bye(baton, user, CALL_LIMIT)
}

fn balance_plan() -> String {
    format!(
        "name = \"balance\"\nmatch = [\"balance\"]\n\n[[step]]\nsay = \"{BALANCE}\"\n\n\
         [[step]]\nhangup = {{}}\n"
    )
}

/// What whisper (the model the tests install) hears in 16 kHz `samples` with the bank
/// dialog's hints, lower-cased.
fn transcribe(samples: Vec<i16>) -> String {
    let model = Model::load(&model_path())
        .unwrap_or_else(|e| panic!("{e} (run `make model` to install the speech model)"));
    let workers = SpeechWorkers::start(Arc::new(model), 1, 4, 4).expect("speech workers");
    let (tx, rx) = mpsc::channel();
    workers.submit(Job {
        stream: 1,
        kind: JobKind::Final,
        samples,
        prompt: BANK_HINTS.to_owned(),
        reply: Box::new(move |r| {
            let _ = tx.send(r);
        }),
    });
    let done = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a transcript within 60 s")
        .expect("transcription");
    done.transcript.text.to_lowercase()
}

/// How long espeak-ng takes to say `text` in baton's default voice and speed.
fn espeak_secs(dir: &std::path::Path, text: &str) -> f64 {
    let wav = dir.join("reference.wav");
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-gb", "-s", "160", "-w"])
            .arg(&wav)
            .arg(text),
        Duration::from_secs(30),
    );
    common::measure_wav(&wav).seconds
}

#[test]
fn a_say_step_reaches_the_caller_as_speech() {
    let mut baton = Baton::builder("tts-say")
        .dialplan("balance", &balance_plan())
        .start();
    // The say text and the shipped bank bot's fixed lines, all rendered at start-up.
    let rendered = baton.metric("baton_tts_renders_total{source=\"spoken\"}");
    assert!(
        rendered >= 1.0,
        "rendered at start-up:\n{}",
        baton.metrics()
    );
    let heard = listen_until_bye(&baton, "balance");
    let expected = espeak_secs(&baton.dir, BALANCE);
    let loud = heard.loud_secs();
    println!(
        "heard {:.2} s of audio, {loud:.2} s of it loud (RMS {:.3}); espeak-ng alone takes {expected:.2} s",
        heard.packets.len() as f64 * 0.02,
        heard.loud_rms()
    );
    assert!(
        loud > expected * 0.7 && loud < expected + 0.3,
        "the caller heard {loud:.2} s of sound; the sentence takes {expected:.2} s"
    );
    assert!(
        heard.loud_rms() > SPEECH_RMS,
        "what the caller heard is too quiet for speech: RMS {:.4}",
        heard.loud_rms()
    );
    let text = transcribe(heard.samples_16k());
    println!("whisper heard: {text:?}");
    // whisper writes an amount as it would be printed: "£400" is "four hundred pounds".
    assert!(
        text.contains("balance") && (text.contains("pound") || text.contains('£')),
        "the caller should hear the balance in pounds; whisper heard {text:?}"
    );
    assert_eq!(
        baton.metric("baton_tts_renders_total{source=\"spoken\"}"),
        rendered,
        "the call played what was rendered at start-up, rendering nothing:\n{}",
        baton.metrics()
    );
    baton.assert_alive();
}

#[test]
fn a_broken_synthesiser_plays_the_fallback_prompt() {
    let mut baton = Baton::builder("tts-broken")
        .dialplan("balance", &balance_plan())
        .config("[tts]\ncommand = \"/nonexistent/espeak-ng\"\n")
        .start();
    let log = std::fs::read_to_string(&baton.log).unwrap_or_default();
    assert!(
        log.contains("the step plays the fallback prompt"),
        "start-up warns that speech could not be rendered:\n{log}"
    );
    let heard = listen_until_bye(&baton, "balance");
    let fallback = common::measure_wav(&repo_path("media").join("tts-fallback.wav")).seconds;
    let loud = heard.loud_secs();
    println!("heard {loud:.2} s of sound; the fallback prompt lasts {fallback:.2} s");
    assert!(
        loud > fallback * 0.5 && loud <= fallback + 0.1,
        "the caller heard {loud:.2} s of sound, the fallback prompt lasts {fallback:.2} s"
    );
    assert!(
        heard.loud_rms() > SPEECH_RMS,
        "the caller heard silence, not the fallback prompt: RMS {:.4}",
        heard.loud_rms()
    );
    let text = transcribe(heard.samples_16k());
    println!("whisper heard: {text:?}");
    assert!(
        text.contains("moment"),
        "the fallback says \"One moment, please.\"; whisper heard {text:?}"
    );
    let metrics = baton.metrics();
    assert!(
        common::metric_value(&metrics, "baton_tts_failures_total{reason=\"missing\"}")
            .is_some_and(|n| n >= 1.0),
        "the failure is counted:\n{metrics}"
    );
    baton.assert_alive();
    let again = listen_until_bye(&baton, "balance");
    assert!(
        again.loud_secs() > fallback * 0.5,
        "a second call gets the fallback too"
    );
    baton.assert_alive();
    assert_eq!(baton.get("/healthz").0, 200);
}
