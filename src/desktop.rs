//! The agent desktop at `/agent`: one page, and the WebSocket it talks to baton over. The
//! agent signs in with their API token; the socket then carries the incoming-call card
//! (with the WebRTC offer when the desktop is their phone), the call's context live while
//! it rings and while they talk, and what they do: accept, decline, hang up, hand back,
//! and their presence.

use crate::agents::Presence;
use crate::api::{token_role, ApiState};
use crate::config::Role;
use crate::context::ContextStore;
use crate::desk::{FromDesk, Handback, Session, ToDesk};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::{info, Instrument};

/// The page: HTML, style and script in one file, so that it needs nothing else served.
const PAGE: &str = include_str!("desktop.html");

/// Largest message a desktop may send: an SDP answer is a few kilobytes.
const MAX_MESSAGE: usize = 64 * 1024;

/// How long a desktop has to sign in after opening the socket.
const SIGN_IN_WITHIN: Duration = Duration::from_secs(10);

pub async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
        .into_response()
}

pub async fn socket(State(s): State<ApiState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| desk(socket, s))
}

/// What a desktop sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Incoming {
    /// Sign-in: the agent's token; without tokens configured (loopback), the agent's id.
    Hello {
        token: Option<String>,
        agent: Option<String>,
    },
    Accept {
        key: String,
        answer: String,
    },
    Decline {
        key: String,
    },
    Hangup {
        key: String,
    },
    /// The agent is done: the caller goes back to the bot, with how they resolved the
    /// call (a disposition code) and their notes.
    Handback {
        key: String,
        disposition: String,
        #[serde(default)]
        notes: Option<String>,
    },
    Presence {
        presence: Presence,
    },
}

async fn desk(mut socket: WebSocket, s: ApiState) {
    let Some(agent) = sign_in(&mut socket, &s).await else {
        return;
    };
    let span = tracing::info_span!("desktop", %agent);
    async move {
        info!("desktop open");
        let mut session = s.desks.sign_in(&agent);
        serve(&mut socket, &s, &mut session).await;
        s.desks.sign_out(&session);
        info!("desktop closed");
    }
    .instrument(span)
    .await
}

/// Waits for the desktop's sign-in; the agent's id, or `None` (told why) to close.
async fn sign_in(socket: &mut WebSocket, s: &ApiState) -> Option<String> {
    let first = tokio::time::timeout(SIGN_IN_WITHIN, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) => {
            let _ = send(
                socket,
                &error("sign in first: {\"type\": \"hello\", \"token\": \"...\"}"),
            )
            .await;
            return None;
        }
        _ => return None,
    };
    let agent = match serde_json::from_str::<Incoming>(&text) {
        Ok(Incoming::Hello { agent, .. }) if s.tokens.is_empty() => agent,
        Ok(Incoming::Hello { token, .. }) => match token_role(&s.tokens, token.as_deref()) {
            Some(Role::Agent(id)) => Some(id),
            Some(_) => {
                let _ = send(socket, &error("this token is not an agent's")).await;
                return None;
            }
            None => None,
        },
        _ => None,
    };
    match agent.filter(|id| s.agents.exists(id)) {
        Some(id) => {
            let me = s
                .agents
                .views(std::time::Instant::now())
                .into_iter()
                .find(|a| a.id == id);
            let welcome = serde_json::json!({"type": "welcome", "agent": me});
            send(socket, &welcome).await.then_some(id)
        }
        None => {
            let _ = send(
                socket,
                &error("sign-in refused: a valid agent token is required"),
            )
            .await;
            None
        }
    }
}

/// The call whose context the desktop shows, followed live.
struct Followed {
    key: String,
    call_id: String,
    live: broadcast::Receiver<Arc<crate::context::Event>>,
}

async fn serve(socket: &mut WebSocket, s: &ApiState, session: &mut Session) {
    let mut followed: Option<Followed> = None;
    loop {
        tokio::select! {
            news = session.rx.recv() => {
                let Some(news) = news else { return };
                match &news {
                    ToDesk::Ring(ring) => {
                        followed = follow(&s.contexts, &ring.key, &ring.call_id).await;
                        if !send(socket, &serde_json::to_value(&news).unwrap_or_default()).await {
                            return;
                        }
                        if let Some(f) = &followed {
                            if !send_context(socket, &s.contexts, f).await {
                                return;
                            }
                        }
                        continue;
                    }
                    ToDesk::Ended { key, .. } if followed.as_ref().is_some_and(|f| &f.key == key) => {
                        // The context stays on the screen; it just no longer changes.
                        followed = None;
                    }
                    _ => {}
                }
                if !send(socket, &serde_json::to_value(&news).unwrap_or_default()).await {
                    return;
                }
            }
            changed = next_change(&mut followed) => {
                match changed {
                    Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(f) = &followed {
                            if !send_context(socket, &s.contexts, f).await {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => followed = None,
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        if !send(socket, &error("messages are JSON text")).await {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return,
                };
                if let Err(e) = act(s, &session.agent, &text) {
                    if !send(socket, &error(&e)).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The next change to the followed call's context; never, while none is followed.
async fn next_change(followed: &mut Option<Followed>) -> Result<(), broadcast::error::RecvError> {
    match followed {
        Some(f) => f.live.recv().await.map(drop),
        None => std::future::pending().await,
    }
}

async fn follow(contexts: &Arc<dyn ContextStore>, key: &str, call_id: &str) -> Option<Followed> {
    let doc = contexts.get(call_id).await.ok()?;
    let sub = contexts.subscribe(call_id, doc.version).await.ok()?;
    Some(Followed {
        key: key.to_owned(),
        call_id: call_id.to_owned(),
        live: sub.live,
    })
}

async fn send_context(
    socket: &mut WebSocket,
    contexts: &Arc<dyn ContextStore>,
    f: &Followed,
) -> bool {
    match contexts.get(&f.call_id).await {
        Ok(doc) => {
            let msg = serde_json::json!({"type": "context", "key": f.key, "context": doc});
            send(socket, &msg).await
        }
        Err(_) => true,
    }
}

/// Carries out a desktop's message; what was wrong with it, otherwise.
fn act(s: &ApiState, agent: &str, text: &str) -> Result<(), String> {
    let incoming: Incoming =
        serde_json::from_str(text).map_err(|e| format!("not a desktop message: {e}"))?;
    let (key, what) = match incoming {
        Incoming::Hello { .. } => return Err("already signed in".into()),
        Incoming::Presence { presence } => {
            s.agents.set_presence(agent, presence);
            return Ok(());
        }
        Incoming::Accept { key, answer } => (key, FromDesk::Accept { answer }),
        Incoming::Decline { key } => (key, FromDesk::Decline),
        Incoming::Hangup { key } => (key, FromDesk::Hangup),
        Incoming::Handback {
            key,
            disposition,
            notes,
        } => {
            let back = Handback {
                disposition,
                // An empty notes box is no notes.
                notes: notes.filter(|n| !n.trim().is_empty()),
                slots: serde_json::Map::new(),
                followups: Vec::new(),
            };
            back.check()
                .map_err(|e| format!("hand back refused: {e}"))?;
            (key, FromDesk::HandBack(back))
        }
    };
    s.desks.act(agent, &key, what).map_err(|e| e.to_string())
}

fn error(message: &str) -> serde_json::Value {
    serde_json::json!({"type": "error", "error": message})
}

async fn send(socket: &mut WebSocket, msg: &serde_json::Value) -> bool {
    socket
        .send(Message::Text(msg.to_string().into()))
        .await
        .is_ok()
}
