//! An external voice bot speaking baton's bot protocol (`docs/bot-protocol.md`): a
//! WebSocket server that baton connects to when a dialplan step says
//! `bot = { url = "ws://127.0.0.1:9000/" }`. It greets the caller (and a returning caller
//! by their memory), reads a balance, hands the caller to a person when they ask, and says
//! goodbye. Small on purpose: a template for a vendor's own bot.
//!
//! ```sh
//! cargo run --example bot -- 127.0.0.1:9000
//! ```

use serde_json::{json, Value};
use std::net::{TcpListener, TcpStream};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Message, WebSocket};

/// The protocol baton speaks; the bot agrees to it in the handshake.
const SUBPROTOCOL: &str = "baton.bot.v1";

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("bot: cannot listen on {addr}: {e}");
        std::process::exit(1);
    });
    // Tests read this line to learn the port when they ask for port 0.
    println!(
        "listening on {}",
        listener.local_addr().expect("bound address")
    );
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            if let Err(e) = serve(stream) {
                eprintln!("bot: call ended: {e}");
            }
        });
    }
}

/// Agrees to the protocol when baton offers it (baton refuses a bot that does not).
// The callback's error type is tungstenite's own.
#[allow(clippy::result_large_err)]
fn agree(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if offered.split(',').any(|p| p.trim() == SUBPROTOCOL) {
        response.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            SUBPROTOCOL.parse().expect("header"),
        );
    }
    Ok(response)
}

/// Accepts baton's connection for one call.
fn accept(stream: TcpStream) -> tungstenite::Result<WebSocket<TcpStream>> {
    tungstenite::accept_hdr(stream, agree).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
    })
}

/// Where the conversation is.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Asked how it can help.
    Menu,
    /// Asked whether there is anything else.
    More,
}

/// One call, from `session:new` to `session:end`.
fn serve(stream: TcpStream) -> tungstenite::Result<()> {
    let mut ws = accept(stream)?;
    let mut stage = Stage::Menu;
    let mut silences = 0;
    loop {
        let text = match ws.read()? {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let verbs = match frame["type"].as_str().unwrap_or_default() {
            "session:new" => greet(&frame["context"]),
            "gather" => match frame["reason"].as_str().unwrap_or_default() {
                "speech" => {
                    silences = 0;
                    let said = frame["text"].as_str().unwrap_or_default().to_lowercase();
                    answer(&said, &mut stage)
                }
                "dtmf" if frame["digits"] == "0" => to_agent(),
                _ => {
                    silences += 1;
                    if silences >= 2 {
                        vec![
                            json!({"verb": "say", "text": "Goodbye."}),
                            json!({"verb": "hangup"}),
                        ]
                    } else {
                        vec![
                            json!({"verb": "say", "text": "Are you still there?"}),
                            gather(stage),
                        ]
                    }
                }
            },
            "error" => {
                eprintln!("bot: baton refused a frame: {}", frame["message"]);
                continue;
            }
            "session:end" => return Ok(()),
            // Transcripts, keys, context changes and `verb:done` need no answer here.
            _ => continue,
        };
        ws.send(Message::text(
            json!({"type": "verbs", "verbs": verbs}).to_string(),
        ))?;
    }
}

fn gather(stage: Stage) -> Value {
    let id = if stage == Stage::Menu { "menu" } else { "more" };
    json!({"verb": "gather", "id": id, "input": ["speech", "dtmf"], "timeout_secs": 8,
           "hints": "Check my balance. Speak to an agent. No, goodbye."})
}

/// The first words, with what baton remembers of a returning caller.
fn greet(context: &Value) -> Vec<Value> {
    let returning = context["caller"]["memory"]["previous_calls"]
        .as_array()
        .is_some_and(|calls| !calls.is_empty());
    let hello = if returning {
        "Hello again, this is the example bot. How can I help you today?"
    } else {
        "Hello, this is the example bot. How can I help you today?"
    };
    vec![
        json!({"verb": "say", "id": "hello", "text": hello}),
        gather(Stage::Menu),
    ]
}

fn to_agent() -> Vec<Value> {
    vec![
        json!({"verb": "say", "text": "I'll bring in one of my colleagues."}),
        json!({"verb": "escalate", "reason": "caller_request"}),
    ]
}

/// What the bot does with what the caller said.
fn answer(said: &str, stage: &mut Stage) -> Vec<Value> {
    let has = |words: &[&str]| words.iter().any(|w| said.contains(w));
    if has(&["agent", "human", "person", "someone"]) {
        return to_agent();
    }
    if has(&["balance", "how much"]) {
        *stage = Stage::More;
        return vec![
            json!({"verb": "context", "id": "intent", "changes": [
                {"op": "intent", "name": "balance", "confidence": 0.9},
                {"op": "action", "name": "balance_read", "detail": {"account": "current"}},
            ]}),
            json!({"verb": "say", "text": "Your current account balance is four hundred and twelve pounds."}),
            json!({"verb": "say", "text": "Is there anything else?"}),
            gather(Stage::More),
        ];
    }
    if *stage == Stage::More && has(&["no", "bye", "that's all", "nothing"]) {
        return vec![
            json!({"verb": "say", "text": "Thank you for calling. Goodbye."}),
            json!({"verb": "hangup"}),
        ];
    }
    vec![
        json!({"verb": "context", "changes": [{"op": "bot_unmatched", "phrase": said}]}),
        json!({"verb": "say", "text": "Sorry, I can read your balance or bring in a colleague."}),
        gather(*stage),
    ]
}
