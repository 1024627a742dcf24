//! The HTTP API: health, Prometheus metrics, the calls baton is handling and their live
//! events.

use crate::calls::{CallNotice, Calls};
use crate::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What the API handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub calls: Arc<Calls>,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown began: health turns 503 so a load balancer stops sending calls.
    pub draining: Arc<AtomicBool>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/calls/{id}/events", get(call_events))
        .route("/v1/schema/context", get(context_schema))
        .with_state(state)
}

async fn healthz(State(s): State<ApiState>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    include: Option<String>,
}

async fn list_calls(State(s): State<ApiState>, Query(q): Query<ListQuery>) -> Response {
    match q.include.as_deref() {
        None => Json(s.calls.list(false)).into_response(),
        Some("ended") => Json(s.calls.list(true)).into_response(),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            &format!("unknown include value {other:?}: the only one is \"ended\""),
        ),
    }
}

async fn get_call(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    match s.calls.get(&id) {
        Some(call) => Json(call).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no call with id {id:?}")),
    }
}

/// The live events of an active call as Server-Sent Events (`speech_started`,
/// `transcript`, `vibe`), until the call ends; a subscriber too slow to keep up gets a `lagged`
/// event saying how many it missed.
async fn call_events(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(rx) = s.calls.subscribe_notices(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no active call with id {id:?}"),
        );
    };
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(notice) => {
                let name = match &notice {
                    CallNotice::SpeechStarted { .. } => "speech_started",
                    CallNotice::Transcript(_) => "transcript",
                    CallNotice::Vibe(_) => "vibe",
                };
                Event::default()
                    .event(name)
                    .json_data(&notice)
                    .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The JSON Schema of the context document, for bot vendors and integrations.
async fn context_schema() -> Response {
    Json(schemars::schema_for!(crate::context::Context)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
