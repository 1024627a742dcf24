//! The HTTP API: health, Prometheus metrics, the calls baton is handling and their live
//! events, each call's shared context, and the agent desktop (`/agent`, see
//! [`crate::desktop`]). With `[[api_token]]`s configured every route but `/healthz` and the
//! desktop needs a bearer token (the desktop signs in on its socket), and an agent's token
//! sees only the calls assigned to that agent; without, the API is open but only on
//! loopback (see `server`).

use crate::agents::{Agents, Presence};
use crate::calls::{CallNotice, Calls};
use crate::config::{ApiToken, Role};
use crate::context::{Author, Change, Context, ContextStore, StoreError};
use crate::desk::DeskError;
use crate::escalation::Escalations;
use crate::followup::{CancelError, FollowUps, State as FollowUpState};
use crate::metrics::Metrics;
use crate::reports::{self, Format, Report, Request};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
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
    pub contexts: Arc<dyn ContextStore>,
    /// Who may use the API; empty: anyone who can reach it (loopback only).
    pub tokens: Arc<Vec<ApiToken>>,
    pub agents: Arc<Agents>,
    pub escalations: Arc<Escalations>,
    pub desks: Arc<crate::desk::Desks>,
    pub followups: Arc<FollowUps>,
    /// The dialplans new calls run, reloaded through `POST /v1/dialplans/reload`.
    pub plans: Arc<crate::plans::Plans>,
    /// The ended calls and escalations on disk, for the reports.
    pub archive: crate::context::archive::Archive,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/calls/{id}/events", get(call_events))
        .route(
            "/v1/calls/{id}/context",
            get(get_context).patch(patch_context),
        )
        .route("/v1/calls/{id}/context/events", get(context_events))
        .route("/v1/calls/{id}/context/live", get(context_live))
        .route("/v1/schema/context", get(context_schema))
        .route("/v1/agents", get(list_agents))
        .route("/v1/escalations", get(list_escalations))
        .route("/v1/reports/escalations", get(escalation_report))
        .route("/reports", get(reports_page))
        .route("/v1/agents/{id}/presence", put(set_presence))
        .route("/v1/calls/{id}/handback", post(hand_back))
        .route("/v1/dialplans/reload", post(reload_dialplans))
        .route("/v1/followups", get(list_followups))
        .route(
            "/v1/followups/{id}",
            get(get_followup).delete(cancel_followup),
        )
        .route("/agent", get(crate::desktop::page))
        .route("/agent/ws", get(crate::desktop::socket))
        .with_state(state)
}

/// The calls that should go, or went, to a person, with the reasons and their evidence:
/// everything for an operator or a bot, an agent only the calls they took.
async fn list_escalations(State(s): State<ApiState>, client: Client) -> Response {
    let mut list = s.escalations.list();
    if let Client::Token(Role::Agent(me)) = &client {
        list.retain(|r| r.agent_id.as_deref() == Some(me.as_str()));
    }
    Json(list).into_response()
}

/// A report request's query string, as name and value pairs.
type ReportQuery = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// The escalation report `query` asks for, from the archive: for an operator or a bot
/// only. 400 naming a bad parameter.
async fn load_report(
    s: &ApiState,
    client: &Client,
    query: ReportQuery,
    formats: bool,
) -> Result<(Request, Report), Response> {
    if !client.sees_everything() {
        return Err(forbidden());
    }
    let Ok(Query(params)) = query else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "expected ?period=week|month&from=MS&to=MS",
        ));
    };
    let request =
        Request::parse(&params, formats).map_err(|why| error(StatusCode::BAD_REQUEST, &why))?;
    let rows = s
        .archive
        .report_rows(request.range)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    let report = reports::report(request.period, request.range, &rows)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &e.to_string()))?;
    Ok((request, report))
}

/// How often the bot's calls went to a person, per week or month, by intent and by
/// reason: `?period=week|month&from=MS&to=MS&format=json|csv`.
async fn escalation_report(
    State(s): State<ApiState>,
    client: Client,
    query: ReportQuery,
) -> Response {
    match load_report(&s, &client, query, true).await {
        Ok((request, report)) => match request.format {
            Format::Json => Json(report).into_response(),
            Format::Csv => (
                [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
                report.to_csv(),
            )
                .into_response(),
        },
        Err(refused) => refused,
    }
}

/// The reports page: the escalation charts for `?period=` (and `from`, `to`), with links
/// to the same report as JSON and CSV.
async fn reports_page(State(s): State<ApiState>, client: Client, query: ReportQuery) -> Response {
    match load_report(&s, &client, query, false).await {
        Ok((request, report)) => Html(report.page(&request)).into_response(),
        Err(refused) => refused,
    }
}

/// The agents with their registration and presence: all of them for an operator or a
/// bot, an agent only themselves.
async fn list_agents(State(s): State<ApiState>, client: Client) -> Response {
    let mut agents = s.agents.views(std::time::Instant::now());
    if let Client::Token(Role::Agent(me)) = &client {
        agents.retain(|a| &a.id == me);
    }
    Json(agents).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceBody {
    presence: Presence,
}

/// Sets whether an agent takes calls: the agent themself, or an operator.
async fn set_presence(
    State(s): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match &client {
        Client::Open | Client::Token(Role::Admin) => {}
        Client::Token(Role::Agent(me)) if *me == id => {}
        Client::Token(_) => return forbidden(),
    }
    let presence = match serde_json::from_slice::<PresenceBody>(&body) {
        Ok(b) => b.presence,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"presence\": \"available\" | \"busy\" | \"away\"}}: {e}"),
            )
        }
    };
    if s.agents.set_presence(&id, presence) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, &format!("no agent with id {id:?}"))
    }
}

/// The agent on the call gives it back to the bot, with how they resolved it: 202 once
/// the call has it. An agent's token hands back only their own call.
async fn hand_back(
    State(s): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let agent = match &client {
        Client::Open | Client::Token(Role::Admin) => None,
        Client::Token(Role::Agent(me)) => Some(me.as_str()),
        Client::Token(_) => return forbidden(),
    };
    let back = match serde_json::from_slice::<crate::desk::Handback>(&body) {
        Ok(back) => back,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"disposition\": \"...\", \"notes\": \"...\", \"slots\": {{...}}}}: {e}"),
            )
        }
    };
    if let Err(why) = back.check() {
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let Some(call) = s.calls.get(&id) else {
        return error(StatusCode::NOT_FOUND, &format!("no call with id {id:?}"));
    };
    let plans = s.plans.current();
    let plan = plans.dialplans.iter().find(|p| p.name == call.dialplan);
    if let Some(name) = back
        .followups
        .iter()
        .find(|name| !plan.is_some_and(|p| p.followups.contains_key(*name)))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "followups: dialplan {:?} has no [followup.{name}]",
                call.dialplan
            ),
        );
    }
    match s.desks.hand_back(&id, agent, back) {
        Ok(agent) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "call_id": id, "agent_id": agent })),
        )
            .into_response(),
        Err(e @ DeskError::NoAgent) => error(StatusCode::CONFLICT, &e.to_string()),
        Err(e) => error(StatusCode::GONE, &e.to_string()),
    }
}

/// Most follow-ups one listing returns.
const MAX_FOLLOWUP_LIST: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpQuery {
    call: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

/// Follow-ups, newest first: of one call (`?call=`), in one state (`?state=failed`), at
/// most `?limit=` (100 unless given). An agent sees only those of their own calls.
async fn list_followups(
    State(s): State<ApiState>,
    client: Client,
    query: Result<Query<FollowUpQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected ?call=ID, ?state=pending|sent|failed|cancelled and ?limit=N",
        );
    };
    let state = match q.state.as_deref().map(|s| (s, FollowUpState::parse(s))) {
        None => None,
        Some((_, Some(state))) => Some(state),
        Some((other, None)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("state: {other:?} is not one of pending, sent, failed, cancelled"),
            )
        }
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_FOLLOWUP_LIST).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit: expected 1 to {MAX_FOLLOWUP_LIST}"),
        );
    }
    match &q.call {
        Some(call) => {
            if let Err(refused) = client.may_see(&s, call).await {
                return refused;
            }
        }
        None if !client.sees_everything() => return forbidden(),
        None => {}
    }
    match s.followups.list(q.call, state, limit).await {
        Ok(tasks) => Json(tasks).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// The follow-up `id`, if this client may see its call; the response when not.
async fn followup_for(
    s: &ApiState,
    client: &Client,
    id: &str,
) -> Result<crate::followup::Task, Response> {
    let task = match s.followups.get(id).await {
        Ok(Some(task)) => task,
        Ok(None) => {
            return Err(error(
                StatusCode::NOT_FOUND,
                &format!("no follow-up with id {id:?}"),
            ))
        }
        Err(e) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())),
    };
    client.may_see(s, &task.call_id).await?;
    Ok(task)
}

async fn get_followup(
    State(s): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    match followup_for(&s, &client, &id).await {
        Ok(task) => Json(task).into_response(),
        Err(refused) => refused,
    }
}

/// Cancels a follow-up that has not gone out: 200 with it, or 409 saying why not.
async fn cancel_followup(
    State(s): State<ApiState>,
    client: Client,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = followup_for(&s, &client, &id).await {
        return refused;
    }
    match s.followups.cancel(&id).await {
        Ok(task) => Json(task).into_response(),
        Err(e @ CancelError::NotFound(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ (CancelError::Done(_) | CancelError::Sending)) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
        Err(e @ CancelError::Archive(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// Reads the dialplan files again (an admin's, or anyone's on an open API): 200 with the
/// plans now in use, or 422 with every problem found, the running plans staying.
async fn reload_dialplans(State(s): State<ApiState>, client: Client) -> Response {
    if !matches!(client, Client::Open | Client::Token(Role::Admin)) {
        return forbidden();
    }
    match s.plans.reload().await {
        Ok(summary) => {
            let plans: Vec<_> = summary
                .plans
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name,
                        "file": p.file.display().to_string(),
                        "match": p.matches,
                        "steps": p.steps,
                    })
                })
                .collect();
            Json(serde_json::json!({ "dialplans": plans })).into_response()
        }
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "error": "dialplans not reloaded: the running ones stay",
                "problems": e.problems,
            })),
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<ApiState>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(s): State<ApiState>, client: Client) -> Response {
    if !client.sees_everything() {
        return forbidden();
    }
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

async fn list_calls(
    State(s): State<ApiState>,
    client: Client,
    Query(q): Query<ListQuery>,
) -> Response {
    let mut calls = match q.include.as_deref() {
        None => s.calls.list(false),
        Some("ended") => s.calls.list(true),
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown include value {other:?}: the only one is \"ended\""),
            )
        }
    };
    if !client.sees_everything() {
        let mut mine = Vec::new();
        for call in calls {
            if client.may_see(&s, &call.id).await.is_ok() {
                mine.push(call);
            }
        }
        calls = mine;
    }
    Json(calls).into_response()
}

async fn get_call(State(s): State<ApiState>, Visible { id, .. }: Visible) -> Response {
    match s.calls.get(&id) {
        Some(call) => Json(call).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no call with id {id:?}")),
    }
}

/// The live events of an active call as Server-Sent Events (`speech_started`,
/// `transcript`, `vibe`), until the call ends; a subscriber too slow to keep up gets a `lagged`
/// event saying how many it missed.
async fn call_events(State(s): State<ApiState>, Visible { id, .. }: Visible) -> Response {
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
async fn context_schema(_client: Client) -> Response {
    Json(schemars::schema_for!(Context)).into_response()
}

/// A call's context as it is now; during the call and after it.
async fn get_context(State(s): State<ApiState>, Visible { id, .. }: Visible) -> Response {
    match s.contexts.get(&id).await {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => store_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinceQuery {
    #[serde(default)]
    since: u64,
}

/// The context's events after version `since` (0: all that are kept).
async fn context_events(
    State(s): State<ApiState>,
    Visible { id, .. }: Visible,
    Query(q): Query<SinceQuery>,
) -> Response {
    match s.contexts.events(&id, q.since).await {
        Ok(events) => Json(events).into_response(),
        Err(e) => store_error(&e),
    }
}

/// A write to a context: changes applied together, or none of them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    /// Apply only if the context is still at this version.
    expected_version: Option<u64>,
    changes: Vec<Change>,
}

/// Most changes in one write.
const MAX_PATCH_CHANGES: usize = 64;

async fn patch_context(
    State(s): State<ApiState>,
    Visible { client, id }: Visible,
    body: axum::body::Bytes,
) -> Response {
    let patch: Patch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("not a context patch: {e}"),
            )
        }
    };
    if patch.changes.iter().any(Change::baton_only) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "escalation: decided by baton only; a bot asks for a person with the escalate verb",
        );
    }
    if patch.changes.is_empty() || patch.changes.len() > MAX_PATCH_CHANGES {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("changes: expected 1 to {MAX_PATCH_CHANGES}"),
        );
    }
    match s
        .contexts
        .write(&id, client.author(), patch.expected_version, patch.changes)
        .await
    {
        Ok(events) => Json(serde_json::json!({
            "version": events.last().map_or(0, |e| e.version),
            "events": events,
        }))
        .into_response(),
        Err(e) => store_error(&e),
    }
}

/// The context live over a WebSocket: the document as it is, then each event as it
/// happens (`{"type": "snapshot", "context": ...}`, `{"type": "event", "event": ...}`). A
/// reader that falls behind gets a fresh snapshot. Read-only: writes go through PATCH.
async fn context_live(
    State(s): State<ApiState>,
    Visible { id, .. }: Visible,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = s.contexts.get(&id).await {
        return store_error(&e);
    }
    ws.on_upgrade(move |socket| follow_context(socket, s.contexts, id))
}

async fn follow_context(mut socket: WebSocket, contexts: Arc<dyn ContextStore>, id: String) {
    'snapshot: loop {
        let Ok(doc) = contexts.get(&id).await else {
            return;
        };
        let Ok(mut sub) = contexts.subscribe(&id, doc.version).await else {
            return;
        };
        let first = serde_json::json!({"type": "snapshot", "context": doc});
        if socket
            .send(Message::Text(first.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        for event in sub.backlog.drain(..) {
            let frame = serde_json::json!({"type": "event", "event": event});
            if socket
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
        loop {
            tokio::select! {
                got = sub.live.recv() => match got {
                    Ok(event) => {
                        let frame = serde_json::json!({"type": "event", "event": *event});
                        if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue 'snapshot,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let frame = serde_json::json!({
                            "type": "error",
                            "error": "this socket only reads; write with PATCH /v1/calls/{id}/context",
                        });
                        if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
            }
        }
    }
}

/// Who is asking, from the bearer token.
pub enum Client {
    /// No tokens are configured: the API is on loopback and open.
    Open,
    Token(Role),
}

impl Client {
    fn sees_everything(&self) -> bool {
        matches!(self, Client::Open | Client::Token(Role::Admin | Role::Bot))
    }

    /// Whether this client may see call `id`: agents only the calls assigned to them
    /// (running it, or on it). Refused with 403, saying nothing about the call.
    async fn may_see(&self, s: &ApiState, id: &str) -> Result<(), Response> {
        let Client::Token(Role::Agent(agent)) = self else {
            return Ok(());
        };
        let tag = format!("agent:{agent}");
        match s.contexts.get(id).await {
            Ok(doc)
                if doc.participants.running == tag
                    || doc.participants.agents.iter().any(|a| a == agent) =>
            {
                Ok(())
            }
            _ => Err(forbidden()),
        }
    }

    /// Whom a write is recorded as coming from.
    fn author(&self) -> Author {
        match self {
            // On an open (loopback) API the writers are the bots beside baton.
            Client::Open | Client::Token(Role::Bot) => Author::Bot,
            Client::Token(Role::Agent(id)) => Author::Agent(id.clone()),
            Client::Token(Role::Admin) => Author::System,
        }
    }
}

/// A call the client may see, from the `{id}` of the path: refused (403) before the
/// handler runs otherwise.
pub struct Visible {
    client: Client,
    id: String,
}

impl FromRequestParts<ApiState> for Visible {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Visible, Response> {
        let client = Client::from_request_parts(parts, s).await?;
        let Path(id) = Path::<String>::from_request_parts(parts, s)
            .await
            .map_err(IntoResponse::into_response)?;
        client.may_see(s, &id).await?;
        Ok(Visible { client, id })
    }
}

impl FromRequestParts<ApiState> for Client {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Client, Response> {
        if s.tokens.is_empty() {
            return Ok(Client::Open);
        }
        let offered = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let found = token_role(&s.tokens, offered);
        match found {
            Some(role) => Ok(Client::Token(role)),
            None => Err((
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({ "error": "a valid bearer token is required" })),
            )
                .into_response()),
        }
    }
}

/// The role of the configured token `offered`, if it is one.
pub fn token_role(tokens: &[ApiToken], offered: Option<&str>) -> Option<Role> {
    let offered = offered?;
    tokens
        .iter()
        .find(|t| same_secret(t.token.as_bytes(), offered.as_bytes()))
        .map(|t| t.role.clone())
}

/// Compares secrets in time that depends only on their lengths, so that response timing
/// does not leak how much of a guess was right.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn forbidden() -> Response {
    error(StatusCode::FORBIDDEN, "this token may not see that")
}

fn store_error(e: &StoreError) -> Response {
    let status = match e {
        StoreError::NotFound(_) => StatusCode::NOT_FOUND,
        StoreError::Exists(_) | StoreError::Conflict { .. } => StatusCode::CONFLICT,
        StoreError::Gone { .. } => StatusCode::GONE,
        StoreError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
