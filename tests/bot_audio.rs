//! A bot with its own speech stack, over TLS (`docs/bot-protocol.md`, "Raw audio"): baton
//! connects with `wss://`, trusting the private CA its config names; the bot hears the
//! caller's audio as binary L16 frames, streams its own voice back the same way, and has a
//! recording fetched over HTTP played with `play`. A bot whose certificate baton cannot
//! trust never gets the call: the built-in dialog takes it.

mod common;

use common::{temp_dir, ulaw_decode, Baton, HttpStub, QUIET};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

/// The caller's tone: 400 Hz, a square wave at a quarter of full scale.
const CALLER_HZ: f64 = 400.0;
/// How long the caller sends it before going quiet, in 20 ms packets.
const CALLER_PACKETS: u32 = 50;
/// The bot's own voice: a 600 Hz tone, one second long, at 16 kHz.
const BOT_HZ: f64 = 600.0;

/// A private CA and a certificate it signed for 127.0.0.1: the CA's PEM, and the
/// server's chain and key.
fn private_ca() -> (String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca.pem(), vec![cert.der().clone()], key)
}

/// What the bot saw.
#[derive(Default)]
struct Seen {
    session: Value,
    /// The caller's audio, as it came.
    caller: Vec<i16>,
    /// Sizes of the binary frames baton sent, in bytes.
    frame_sizes: Vec<usize>,
    /// Every text frame, in order.
    frames: Vec<Value>,
    /// When the bot started streaming its voice.
    streamed_at: Option<Instant>,
}

type Ws = tungstenite::WebSocket<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>;

/// A bot on TLS that listens to the caller itself, then plays `recording` and streams its
/// own voice, and hangs up once both have played.
fn audio_bot(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    recording: String,
) -> (String, mpsc::Receiver<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    let tls = Arc::new(tls);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bot listener");
    let url = format!("wss://{}/", listener.local_addr().expect("bot address"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // A client that gives up on the certificate ends its attempt; the next is baton's
        // call proper.
        let mut ws: Ws = loop {
            let (tcp, _) = listener.accept().expect("baton connects");
            let conn = rustls::ServerConnection::new(tls.clone()).expect("TLS session");
            let stream = rustls::StreamOwned::new(conn, tcp);
            if let Ok(ws) = tungstenite::accept_hdr(stream, common::agree_to_bot_protocol) {
                break ws;
            }
        };
        ws.get_mut()
            .sock
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut seen = Seen::default();
        let send = |ws: &mut Ws, verbs: Value| {
            ws.send(Message::text(
                json!({"type": "verbs", "verbs": verbs}).to_string(),
            ))
            .expect("send verbs");
        };
        let mut played = false;
        let mut streamed = false;
        loop {
            let Ok(message) = ws.read() else { break };
            match message {
                Message::Binary(bytes) => {
                    seen.frame_sizes.push(bytes.len());
                    seen.caller.extend(
                        bytes
                            .chunks_exact(2)
                            .map(|b| i16::from_le_bytes([b[0], b[1]])),
                    );
                    // Once the caller has spoken and gone quiet: the recording, then the
                    // bot's own voice.
                    if seen.caller.len() == 16_000 * 2 {
                        send(
                            &mut ws,
                            json!([{"verb": "play", "id": "p1", "url": recording}]),
                        );
                    }
                }
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).expect("baton sends JSON");
                    let kind = frame["type"].as_str().unwrap_or_default().to_owned();
                    if kind == "session:new" {
                        seen.session = frame.clone();
                    }
                    let done = |verb: &str| kind == "verb:done" && frame["verb"] == verb;
                    if done("play") {
                        played = true;
                        // A frame cut mid-sample is refused; the call carries on.
                        ws.send(Message::Binary(vec![1, 2, 3].into()))
                            .expect("send");
                        let voice: Vec<u8> = (0..16_000)
                            .map(|i| {
                                let t = f64::from(i) / 16_000.0;
                                ((2.0 * std::f64::consts::PI * BOT_HZ * t).sin() * 9_000.0) as i16
                            })
                            .flat_map(i16::to_le_bytes)
                            .collect();
                        seen.streamed_at = Some(Instant::now());
                        // Chunks that are not whole 20 ms frames play seamlessly.
                        for chunk in voice.chunks(2 * 777) {
                            ws.send(Message::Binary(chunk.to_vec().into()))
                                .expect("send audio");
                        }
                    }
                    if done("audio") && played && !streamed {
                        streamed = true;
                        send(&mut ws, json!([{"verb": "hangup"}]));
                    }
                    seen.frames.push(frame);
                    if kind == "session:end" {
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = tx.send(seen);
    });
    (url, rx)
}

/// The dialplan handing calls to the bot at `url`, with a fallback dialog.
fn plan(url: &str) -> String {
    format!(
        "name = \"vendor\"\nmatch = [\"vendor\"]\n\n\
         [[step]]\nbot = {{ url = \"{url}\", audio = \"l16\", fallback = \"takeover\" }}\n\n\
         [dialog]\nstart = \"takeover\"\n\
         [dialog.node.takeover]\nsay = \"Sorry, I will take it from here. Goodbye.\"\nhangup = true\n"
    )
}

/// The PCMU byte closest to `level` (a fraction of full scale).
fn ulaw_for(level: f64) -> u8 {
    (0..=255u8)
        .min_by(|a, b| {
            (ulaw_decode(*a) - level)
                .abs()
                .total_cmp(&(ulaw_decode(*b) - level).abs())
        })
        .expect("a byte")
}

/// Sign changes per second of `samples` at 16 kHz: twice the frequency of a tone.
fn crossings_per_sec(samples: &[i16]) -> f64 {
    let changes = samples
        .windows(2)
        .filter(|w| (w[0] >= 0) != (w[1] >= 0))
        .count();
    changes as f64 * 16_000.0 / samples.len() as f64
}

fn rms(samples: &[i16]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
}

#[test]
fn a_bot_with_its_own_speech_stack_hears_and_speaks_raw_audio_over_tls() {
    let (ca, chain, key) = private_ca();
    let certs = temp_dir("bot-audio-ca");
    let ca_file: PathBuf = certs.join("ca.pem");
    std::fs::write(&ca_file, ca).expect("write the CA");
    let recording = std::fs::read(common::repo_path("media/beep.wav")).expect("the beep recording");
    let http = HttpStub::start(move |_| (200, "audio/wav", recording.clone()));
    let (url, seen) = audio_bot(chain, key, http.url("/prompts/beep.wav"));
    let mut baton = Baton::builder("bot-audio")
        .config(&format!("trusted_ca = [\"{}\"]\n", ca_file.display()))
        .dialplan("vendor", &plan(&url))
        .start();

    let (high, low) = (ulaw_for(0.25), ulaw_for(-0.25));
    let heard = common::talk_until_bye(&baton, "vendor", Duration::from_secs(40), move |n| {
        let mut payload = [0xffu8; 160];
        if n < CALLER_PACKETS {
            // 8 kHz: 20 samples a period, 8 periods a packet.
            for (i, b) in payload.iter_mut().enumerate() {
                *b = if (i % 20) < 10 { high } else { low };
            }
        }
        payload
    });
    let seen = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the bot ran its part");
    let frames = format!("{:#?}", seen.frames);

    assert_eq!(
        seen.session["audio"],
        json!({"encoding": "L16", "byte_order": "little-endian", "sample_rate": 16000,
               "channels": 1, "frame_ms": 20}),
        "session:new tells the bot the audio format"
    );
    assert!(
        seen.frame_sizes.len() >= 100 && seen.frame_sizes.iter().all(|&n| n == 640),
        "the caller's audio comes as 20 ms frames: {} frames, sizes {:?}",
        seen.frame_sizes.len(),
        seen.frame_sizes.iter().take(5).collect::<Vec<_>>()
    );
    // The caller's tone, as the bot heard it: loud enough and at its own pitch, which a
    // wrong byte order or rate would not be.
    let tone_start = seen
        .caller
        .iter()
        .position(|s| s.abs() > 2_000)
        .expect("the bot heard the caller's tone");
    let tone = &seen.caller[tone_start + 1_600..tone_start + 12_800];
    let level = rms(tone) / 32_768.0;
    let pitch = crossings_per_sec(tone) / 2.0;
    println!("the bot heard the caller at {level:.3} of full scale, {pitch:.0} Hz");
    assert!((0.15..0.35).contains(&level), "level {level}");
    assert!(
        (CALLER_HZ * 0.95..CALLER_HZ * 1.05).contains(&pitch),
        "pitch {pitch}"
    );

    let done = |verb: &str| {
        seen.frames
            .iter()
            .find(|f| f["type"] == "verb:done" && f["verb"] == verb)
            .unwrap_or_else(|| panic!("verb:done for {verb}: {frames}"))
    };
    assert_eq!(done("play")["id"], "p1");
    assert_eq!(done("play")["interrupted"], false);
    assert_eq!(done("audio")["interrupted"], false);
    let errors: Vec<&Value> = seen
        .frames
        .iter()
        .filter(|f| f["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{frames}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2 bytes each"),
        "{frames}"
    );
    assert_eq!(
        *http.requests.lock().unwrap(),
        ["/prompts/beep.wav"],
        "the recording was fetched once"
    );

    // The caller heard the recording and then the bot's own voice, whole: a second of
    // 600 Hz with no gap.
    let streamed_at = seen.streamed_at.expect("the bot streamed");
    let voice: Vec<&Vec<u8>> = heard
        .packets
        .iter()
        .filter(|(at, p)| *at > streamed_at && common::payload_rms(p) > QUIET)
        .map(|(_, p)| p)
        .collect();
    let before = heard
        .packets
        .iter()
        .filter(|(at, p)| *at <= streamed_at && common::payload_rms(p) > QUIET)
        .count();
    println!(
        "the caller heard {before} loud packets before the bot streamed, {} after",
        voice.len()
    );
    assert!(before >= 15, "the 0.4 s recording played: {before} packets");
    assert!(
        (48..=53).contains(&voice.len()),
        "one second of the bot's voice, without a gap: {} packets",
        voice.len()
    );
    let narrow: Vec<i16> = voice
        .iter()
        .flat_map(|p| p.iter().map(|&b| (ulaw_decode(b) * 32_768.0) as i16))
        .collect();
    let pitch = crossings_per_sec(&narrow) / 4.0;
    println!("the caller heard the bot at {pitch:.0} Hz");
    assert!(
        (BOT_HZ * 0.95..BOT_HZ * 1.05).contains(&pitch),
        "the bot's voice at its pitch: {pitch} Hz"
    );
    baton.assert_alive();
}

#[test]
fn a_bot_whose_certificate_is_not_trusted_never_gets_the_call() {
    let (_, chain, key) = private_ca();
    let (url, _) = audio_bot(chain, key, String::new());
    let mut baton = Baton::builder("bot-untrusted")
        .dialplan("vendor", &plan(&url))
        .start();
    common::listen_until_bye(&baton, "vendor", Duration::from_secs(20));
    let context = baton.last_context("vendor");
    let attempts = context["bot"]["attempts"].to_string();
    assert!(
        attempts.contains("TLS with 127.0.0.1") && attempts.contains("took over at takeover"),
        "the refusal and the handover are in the context: {attempts}"
    );
    let said = context["transcript"].to_string();
    assert!(said.contains("I will take it from here"), "{said}");
    baton.assert_alive();
}
