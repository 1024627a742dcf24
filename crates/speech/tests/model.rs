//! The real whisper model (tiny.en, installed by `make model`) through the project's
//! loader and worker pool: it loads, it transcribes espeak-ng speech, a damaged file is a
//! clear error naming it, and the pool answers every final under overload.

mod common;

use baton_speech::stt::{check_model, Job, JobKind, Model, ModelError, SpeechWorkers, SttError};
use common::{model, model_path, scratch, speak};
use std::sync::mpsc;
use std::time::Duration;

/// `text` in espeak-ng's default voice, as 16 kHz mono samples.
fn speech(text: &str) -> Vec<i16> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    speak(
        &scratch("espeak"),
        &format!("{:016x}", h.finish()),
        &[],
        text,
    )
}

fn transcribe_all(
    workers: &SpeechWorkers,
    jobs: Vec<(u64, JobKind, Vec<i16>)>,
) -> Vec<(u64, JobKind, Result<String, SttError>)> {
    let (tx, rx) = mpsc::channel();
    let n = jobs.len();
    for (stream, kind, samples) in jobs {
        let tx = tx.clone();
        workers.submit(Job {
            stream,
            kind,
            samples,
            prompt: String::new(),
            reply: Box::new(move |r| {
                let _ = tx.send((stream, kind, r.map(|d| d.transcript.text)));
            }),
        });
    }
    (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(120))
                .expect("a reply for every job")
        })
        .collect()
}

#[test]
fn the_installed_model_checks_and_loads() {
    let info = check_model(&model_path()).unwrap();
    assert_eq!(info.size_name(), "tiny");
    assert!(info.english_only());
    assert_eq!(info.n_mels, 80);
    let model = model();
    assert_eq!(model.info(), info);
}

#[test]
fn transcribes_speech_with_word_timings() {
    let model = model();
    let workers = SpeechWorkers::start(model, 1, 8, 8).unwrap();
    let audio = speech("Please block my credit card, it was stolen yesterday.");
    let (tx, rx) = mpsc::channel();
    workers.submit(Job {
        stream: 1,
        kind: JobKind::Final,
        samples: audio.clone(),
        prompt: "block card stolen".into(),
        reply: Box::new(move |r| tx.send(r).unwrap()),
    });
    let done = rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
    let text = done.transcript.text.to_lowercase();
    for word in ["block", "credit", "card", "stolen"] {
        assert!(text.contains(word), "{word:?} missing from {text:?}");
    }
    let t = &done.transcript;
    assert!(
        (0.3..=1.0).contains(&t.confidence),
        "confidence {}",
        t.confidence
    );
    let clip = Duration::from_secs_f64(audio.len() as f64 / 16_000.0);
    for pair in t.words.windows(2) {
        assert!(pair[0].start <= pair[1].start, "{:?}", t.words);
    }
    assert!(t.words.last().unwrap().end <= clip + Duration::from_millis(500));
}

#[test]
fn silence_gives_no_words() {
    let workers = SpeechWorkers::start(model(), 1, 8, 8).unwrap();
    let replies = transcribe_all(&workers, vec![(1, JobKind::Final, vec![0; 32_000])]);
    let text = replies[0].2.as_ref().unwrap();
    assert!(
        text.trim().is_empty() || text.len() < 12,
        "from silence: {text:?}"
    );
}

#[test]
fn finals_go_first_and_stale_partials_are_superseded() {
    let workers = SpeechWorkers::start(model(), 1, 16, 2).unwrap();
    let audio = speech("Thank you.");
    let mut jobs = Vec::new();
    // Three streams each send three partials and a final, faster than one thread can go.
    for round in 0..3 {
        for stream in 1..=3 {
            jobs.push((stream, JobKind::Partial, audio.clone()));
            if round == 2 {
                jobs.push((stream, JobKind::Final, audio.clone()));
            }
        }
    }
    let replies = transcribe_all(&workers, jobs);
    let finals: Vec<_> = replies.iter().filter(|r| r.1 == JobKind::Final).collect();
    assert_eq!(finals.len(), 3);
    for f in finals {
        let text =
            f.2.as_ref()
                .expect("every final is transcribed")
                .to_lowercase();
        assert!(text.contains("thank"), "{text:?}");
    }
    let superseded = replies
        .iter()
        .filter(|r| r.2 == Err(SttError::Superseded))
        .count();
    assert!(superseded >= 3, "older partials give way: {superseded}");
}

#[test]
fn a_missing_or_damaged_model_is_an_error_naming_the_file() {
    let dir = scratch("damaged");
    let missing = dir.join("no-such-model.bin");
    let e = Model::load(&missing).err().unwrap();
    assert!(matches!(e, ModelError::Io { .. }));
    assert!(e.to_string().contains("no-such-model.bin"), "{e}");

    let garbage = dir.join("garbage.bin");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let e = Model::load(&garbage).err().unwrap();
    assert!(
        e.to_string().contains("garbage.bin") && e.to_string().contains("magic"),
        "{e}"
    );

    // The real model cut short, as an interrupted download leaves it.
    let whole = std::fs::read(model_path()).unwrap();
    let cut = dir.join("cut.bin");
    std::fs::write(&cut, &whole[..whole.len() / 3]).unwrap();
    let e = Model::load(&cut).err().unwrap();
    assert!(matches!(e, ModelError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("cut short"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
