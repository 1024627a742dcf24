//! Follow-up tasks: what a call promises the caller after it (a text, a WhatsApp message
//! with a form link, an e-mail), filled from the call's context by the dialplan's
//! `[followup.NAME]` templates and sent through a connector.
//!
//! A task is committed to the archive before anyone is told about it, and it leaves the
//! `pending` state only once its connector took it or gave up on it: a crash at any point
//! loses nothing, and a task whose delivery was cut short by one is sent again after the
//! restart with the same idempotency key (its id), so the receiver can tell.

pub mod spec;
pub mod webhook;

use crate::calls::lock;
use crate::config::ConnectorConfig;
use crate::context::archive::{Archive, ArchiveError};
// Due times are wall-clock times: they must mean the same after a restart.
use crate::context::store::now_ms;
use crate::context::{Author, Change, Context, ContextStore};
use crate::dialplan::Dialplan;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use spec::{Channel, FollowUpSpec};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

/// Tasks handed to their connectors at once; the rest wait for the next round.
const BATCH: usize = 32;
/// Longest sleep between looks at the table, so that a clock step is noticed.
const IDLE: Duration = Duration::from_secs(60);

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting for its time, or for its next attempt.
    Pending,
    /// The connector's receiver took it.
    Sent,
    /// Given up on: its `error` says why.
    Failed,
    /// Cancelled through the API before it went out.
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// The state named `s` (`pending`, ...).
    pub fn parse(s: &str) -> Option<State> {
        [State::Pending, State::Sent, State::Failed, State::Cancelled]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// One follow-up, as kept, listed by the API and (its message fields) sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Also the idempotency key its connector sends.
    pub id: String,
    pub call_id: String,
    /// The dialplan and the `[followup.NAME]` it was filled from.
    pub dialplan: String,
    pub followup: String,
    pub channel: Channel,
    pub connector: String,
    pub to: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    pub customer_id: Option<String>,
    pub created_ms: u64,
    /// When it goes out, or is tried again.
    pub due_ms: u64,
    pub state: State,
    pub attempts: u32,
    /// Why the last attempt failed, or why the task could not be filled.
    pub error: Option<String>,
    /// When it was sent, failed for good or was cancelled.
    pub done_ms: Option<u64>,
}

/// The body a connector's receiver gets: the message, without baton's bookkeeping.
#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    channel: Channel,
    followup: &'a str,
    call_id: &'a str,
    to: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    customer_id: Option<&'a str>,
    created_ms: u64,
}

/// Why a task could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no follow-up with id {0:?}")]
    NotFound(String),
    #[error("the follow-up is already {}", .0.as_str())]
    Done(State),
    #[error("the follow-up is being sent right now")]
    Sending,
    #[error("{0}")]
    Archive(#[from] ArchiveError),
}

/// Every call's follow-ups: kept in the archive, and sent when due.
pub struct FollowUps {
    archive: Archive,
    http: reqwest::Client,
    connectors: BTreeMap<String, ConnectorConfig>,
    metrics: Arc<Metrics>,
    /// Rings when a task is added or an attempt is over.
    wake: Notify,
    /// Tasks with an attempt under way, which the next round must not start again.
    sending: Mutex<HashSet<String>>,
}

impl FollowUps {
    /// Starts sending what is due, including what was pending when baton last stopped.
    pub fn start(
        archive: Archive,
        http: reqwest::Client,
        connectors: BTreeMap<String, ConnectorConfig>,
        metrics: Arc<Metrics>,
    ) -> Arc<FollowUps> {
        let me = Arc::new(FollowUps {
            archive,
            http,
            connectors,
            metrics,
            wake: Notify::new(),
            sending: Mutex::default(),
        });
        let runner = me.clone();
        tokio::spawn(
            async move { runner.run().await }.instrument(tracing::info_span!("followups")),
        );
        me
    }

    /// Fills `spec` from `doc` and keeps it, to go out after its delay. A follow-up that
    /// cannot be filled is kept as failed, naming the missing value, so that it is
    /// reported rather than silently dropped.
    pub async fn add(
        &self,
        dialplan: &str,
        name: &str,
        spec: &FollowUpSpec,
        doc: &Context,
    ) -> Result<Task, ArchiveError> {
        let now = now_ms();
        let mut task = Task {
            id: format!("f-{:032x}", rand::random::<u128>()),
            call_id: doc.call_id.clone(),
            dialplan: dialplan.to_owned(),
            followup: name.to_owned(),
            channel: spec.channel,
            connector: spec.connector.clone(),
            to: String::new(),
            text: String::new(),
            subject: None,
            link: None,
            customer_id: doc.identity.customer_id.clone(),
            created_ms: now,
            due_ms: now.saturating_add(millis(spec.after)),
            state: State::Pending,
            attempts: 0,
            error: None,
            done_ms: None,
        };
        match spec.fill(doc) {
            Ok(filled) => {
                task.to = filled.to;
                task.text = filled.text;
                task.subject = filled.subject;
                task.link = filled.link;
            }
            Err(why) => {
                warn!(followup = name, call = %doc.call_id, reason = %why, "follow-up not filled");
                self.metrics.followup(State::Failed);
                task.state = State::Failed;
                task.error = Some(why);
                task.done_ms = Some(now);
            }
        }
        self.archive.add_followup(&task).await?;
        self.wake.notify_one();
        Ok(task)
    }

    pub async fn list(
        &self,
        call_id: Option<String>,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, ArchiveError> {
        self.archive.followups(call_id, state, limit).await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Task>, ArchiveError> {
        self.archive.followup(id).await
    }

    /// Cancels a task that has not gone out yet.
    pub async fn cancel(&self, id: &str) -> Result<Task, CancelError> {
        let mut task = self
            .archive
            .followup(id)
            .await?
            .ok_or_else(|| CancelError::NotFound(id.to_owned()))?;
        if task.state != State::Pending {
            return Err(CancelError::Done(task.state));
        }
        if lock(&self.sending).contains(id) {
            return Err(CancelError::Sending);
        }
        task.state = State::Cancelled;
        task.done_ms = Some(now_ms());
        if !self.archive.update_followup(&task, State::Pending).await? {
            // An attempt finished between the read and the update.
            let now = self.archive.followup(id).await?;
            return Err(CancelError::Done(now.map_or(State::Cancelled, |t| t.state)));
        }
        self.metrics.followup(State::Cancelled);
        info!(followup = %task.followup, id, "follow-up cancelled");
        Ok(task)
    }

    /// Sends what is due, then sleeps until the next task is due or one is added.
    async fn run(self: Arc<Self>) {
        loop {
            let wake = self.wake.notified();
            let next = match self.archive.due_followups(now_ms(), BATCH).await {
                Ok((due, next)) => {
                    for task in due {
                        if lock(&self.sending).insert(task.id.clone()) {
                            tokio::spawn(self.clone().attempt(task).in_current_span());
                        }
                    }
                    next
                }
                Err(ArchiveError::Stopped) => return,
                Err(e) => {
                    warn!(error = %e, "follow-ups not read");
                    None
                }
            };
            let sleep = next.map_or(IDLE, |at| {
                Duration::from_millis(at.saturating_sub(now_ms())).min(IDLE)
            });
            tokio::select! {
                () = wake => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One attempt at sending `task`, and what follows from it: sent, tried again later,
    /// or given up on.
    async fn attempt(self: Arc<Self>, mut task: Task) {
        let outcome = match self.connectors.get(&task.connector) {
            None => Err(webhook::Failure {
                retry: false,
                retry_after: None,
                message: format!("no [connector.{}] is configured", task.connector),
            }),
            Some(connector) => {
                let body = serde_json::to_vec(&Message {
                    id: &task.id,
                    channel: task.channel,
                    followup: &task.followup,
                    call_id: &task.call_id,
                    to: &task.to,
                    text: &task.text,
                    subject: task.subject.as_deref(),
                    link: task.link.as_deref(),
                    customer_id: task.customer_id.as_deref(),
                    created_ms: task.created_ms,
                })
                .unwrap_or_default();
                let now_secs = now_ms() / 1000;
                webhook::post(&self.http, connector, &body, &task.id, now_secs).await
            }
        };
        task.attempts += 1;
        let now = now_ms();
        match outcome {
            Ok(status) => {
                info!(id = %task.id, followup = %task.followup, status, attempts = task.attempts, "follow-up sent");
                task.state = State::Sent;
                task.error = None;
                task.done_ms = Some(now);
            }
            Err(failure) => {
                let connector = self.connectors.get(&task.connector);
                let again = connector.filter(|c| failure.retry && task.attempts < c.attempts);
                task.error = Some(failure.message);
                match again {
                    Some(connector) => {
                        let wait = webhook::backoff(connector, task.attempts)
                            .max(failure.retry_after.unwrap_or_default());
                        warn!(id = %task.id, followup = %task.followup, attempts = task.attempts, retry_in = ?wait, error = task.error.as_deref(), "follow-up not sent: will try again");
                        task.due_ms = now.saturating_add(millis(wait));
                    }
                    None => {
                        warn!(id = %task.id, followup = %task.followup, attempts = task.attempts, error = task.error.as_deref(), "follow-up failed: given up");
                        task.state = State::Failed;
                        task.done_ms = Some(now);
                    }
                }
            }
        }
        if task.state != State::Pending {
            self.metrics.followup(task.state);
        }
        if let Err(e) = self.archive.update_followup(&task, State::Pending).await {
            warn!(id = %task.id, error = %e, "follow-up's attempt not kept: it will be tried again");
        }
        lock(&self.sending).remove(&task.id);
        self.wake.notify_one();
    }
}

/// What one call needs to ask for its dialplan's follow-ups.
#[derive(Clone)]
pub struct ForCall {
    pub service: Arc<FollowUps>,
    pub plan: Arc<Dialplan>,
}

impl ForCall {
    /// Adds the follow-ups `names`, filled from the call's context as it stands, and notes
    /// each in the context (the `follow_up` action a returning caller's memory lists).
    pub async fn ask(&self, names: &[String], contexts: &dyn ContextStore, call_id: &str) {
        let doc = match contexts.get(call_id).await {
            Ok(doc) => doc,
            Err(e) => return warn!(error = %e, "follow-ups not added: no context"),
        };
        let mut notes = Vec::new();
        for name in names {
            let Some(spec) = self.plan.followups.get(name) else {
                warn!(followup = %name, "no such follow-up in the dialplan");
                continue;
            };
            match self.service.add(&self.plan.name, name, spec, &doc).await {
                Ok(task) if task.state == State::Pending => notes.push(Change::Action {
                    name: "follow_up".into(),
                    detail: serde_json::json!({
                        "id": task.id,
                        "followup": task.followup,
                        "channel": task.channel,
                        "text": task.text,
                        "due_ms": task.due_ms,
                    }),
                }),
                Ok(_) => {}
                Err(e) => warn!(followup = %name, error = %e, "follow-up not kept"),
            }
        }
        if !notes.is_empty() {
            if let Err(e) = contexts.write(call_id, Author::System, None, notes).await {
                warn!(error = %e, "follow-ups not noted in the context");
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
