//! Barge-in: a caller who starts talking over a prompt stops it. The caller here is a
//! plain SIP caller with its own RTP: silence while the greeting plays, then espeak-ng
//! speech; the test listens to what baton sends back and times the moment the greeting
//! goes quiet against the moment the first packet of speech left.

mod common;

use common::{rtp_packet, run_tool, ulaw_decode, Baton, SipCaller};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A long greeting, then silence while baton records the caller.
const GREET_PLAN: &str = r#"
name = "greet"
match = ["greet"]

[[step]]
play = "bank-welcome.wav"

[[step]]
record = { max_secs = 30 }
"#;

/// µ-law silence.
const SILENCE: u8 = 0xff;
/// The caller waits this long into the greeting before talking: in the middle of a word
/// (the greeting is loud from 2.12 to 3.16 s), so that its own pauses cannot pass for a stop.
const WAIT: Duration = Duration::from_millis(2_500);
/// The issue's bound: the prompt stops within this of the caller's first word.
const BARGE_IN_LIMIT: Duration = Duration::from_millis(300);
/// Quieter than this (RMS, full scale 1.0; about −46 dBFS) a received packet is silence.
const QUIET: f64 = 0.005;

fn rms(payload: &[u8]) -> f64 {
    (payload.iter().map(|&b| ulaw_decode(b).powi(2)).sum::<f64>() / payload.len().max(1) as f64)
        .sqrt()
}

#[test]
fn talking_over_the_greeting_stops_it() {
    let baton = Baton::builder("barge-in")
        .dialplan("greet", GREET_PLAN)
        .start();
    // "I want to block my card" as 8 kHz µ-law, 160 bytes a packet.
    let spoken = baton.dir.join("speech.wav");
    let raw = baton.dir.join("speech.ul");
    run_tool(
        Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&spoken)
            .arg("I want to block my card."),
        Duration::from_secs(30),
    );
    run_tool(
        Command::new("sox")
            .arg(&spoken)
            .args(["-r", "8000", "-c", "1", "-t", "ul"])
            .arg(&raw),
        Duration::from_secs(30),
    );
    let speech = std::fs::read(&raw).expect("µ-law speech");

    let rtp = UdpSocket::bind("127.0.0.1:0").expect("caller RTP socket");
    let caller = SipCaller::bind("127.0.0.1", &baton);
    let mut call = caller.call("greet", rtp.local_addr().unwrap().port());
    let to = call.media;

    // What baton sends, with arrival times.
    let heard: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
    let listener = {
        let heard = heard.clone();
        let rx = rtp.try_clone().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        thread::spawn(move || {
            let started = Instant::now();
            let mut buf = [0u8; 2048];
            while started.elapsed() < Duration::from_secs(8) {
                if let Ok((n, _)) = rx.recv_from(&mut buf) {
                    if n > 12 {
                        heard
                            .lock()
                            .unwrap()
                            .push((Instant::now(), rms(&buf[12..n])));
                    }
                }
            }
        })
    };

    // Silence, then speech, then silence, paced at 20 ms.
    let mut payloads: Vec<Vec<u8>> = vec![vec![SILENCE; 160]; WAIT.as_millis() as usize / 20];
    let first_speech = payloads.len();
    payloads.extend(speech.chunks(160).map(|c| {
        let mut p = c.to_vec();
        p.resize(160, SILENCE);
        p
    }));
    payloads.extend(vec![vec![SILENCE; 160]; 100]);
    let start = Instant::now();
    let mut spoke_at = None;
    for (i, payload) in payloads.iter().enumerate() {
        let at = start + Duration::from_millis(20 * i as u64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if i == first_speech {
            spoke_at = Some(Instant::now());
        }
        let packet = rtp_packet(0, i == 0, 1000 + i as u16, 160 * i as u32, 0x5eed, payload);
        rtp.send_to(&packet, to).expect("send RTP");
    }
    listener.join().unwrap();
    assert_eq!(caller.bye(&mut call), Some(200));
    let spoke_at = spoke_at.unwrap();

    let heard = heard.lock().unwrap();
    let before: Vec<f64> = heard
        .iter()
        .filter(|(t, _)| *t < spoke_at)
        .map(|h| h.1)
        .collect();
    let loud_before = before.iter().filter(|&&r| r > QUIET).count();
    assert!(
        loud_before > before.len() / 2,
        "the greeting was playing before the caller spoke ({loud_before} of {} packets)",
        before.len()
    );
    let just_before = before.iter().rev().take(5).filter(|&&r| r > QUIET).count();
    assert!(
        just_before >= 4,
        "the greeting was loud as the caller began: {before:?}"
    );
    // The greeting has pauses of its own (under 450 ms): it counts as stopped once it has
    // been quiet for half a second without a break.
    let after: Vec<&(Instant, f64)> = heard.iter().filter(|(t, _)| *t >= spoke_at).collect();
    let stopped = after
        .iter()
        .enumerate()
        .find(|(i, _)| after[*i..].iter().take(25).all(|(_, r)| *r <= QUIET))
        .map(|(_, (t, _))| *t)
        .expect("the greeting never stopped");
    let took = stopped.duration_since(spoke_at);
    println!("greeting stopped {took:?} after the caller's first packet of speech");
    assert!(
        took <= BARGE_IN_LIMIT,
        "the greeting stopped {took:?} after the caller began speaking"
    );
    let ended = baton.wait_ended(&call.call_id, Duration::from_secs(10));
    assert_eq!(ended["result"], "caller_bye", "{ended}");
}
