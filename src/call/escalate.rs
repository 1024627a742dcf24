//! Runs a call's escalation engine beside the call: it follows the call's context as it
//! changes and the keys the caller presses, writes each new decision back to the context (author `system`), and lists the
//! call in the escalations once it should go to a person. The call stops it when it ends.

use crate::context::{Author, Change, ContextStore};
use crate::escalation::{Engine, Escalations, Policy};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

/// How often time alone is weighed (a call running long).
const TICK: Duration = Duration::from_secs(1);

/// Keys in flight to the engine; a caller cannot press faster than it reads them.
const KEYS: usize = 32;

/// The running engine; dropping it stops it.
pub struct Watcher {
    task: JoinHandle<()>,
    keys: mpsc::Sender<char>,
}

impl Watcher {
    /// A key the caller pressed (0 asks for a person).
    pub fn key(&self, digit: char) {
        let _ = self.keys.try_send(digit);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the engine for call `call_id` under `policy`.
pub fn watch(
    call_id: String,
    contexts: Arc<dyn ContextStore>,
    policy: Policy,
    escalations: Arc<Escalations>,
) -> Watcher {
    let (keys, keys_rx) = mpsc::channel(KEYS);
    let task = tokio::spawn(run(call_id, contexts, policy, escalations, keys_rx).in_current_span());
    Watcher { task, keys }
}

async fn run(
    call_id: String,
    contexts: Arc<dyn ContextStore>,
    policy: Policy,
    escalations: Arc<Escalations>,
    mut keys: mpsc::Receiver<char>,
) {
    let mut feed = match contexts.subscribe(&call_id, 0).await {
        Ok(sub) => sub,
        Err(e) => {
            warn!(error = %e, "no escalation engine: the call has no context");
            return;
        }
    };
    let started = Instant::now();
    let elapsed = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut engine = Engine::new(policy);
    let mut listed = false;
    let mut backlog = std::mem::take(&mut feed.backlog).into_iter();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        let decided = if let Some(event) = backlog.next() {
            engine.observe(&event, elapsed()).cloned()
        } else {
            tokio::select! {
                event = feed.live.recv() => match event {
                    Ok(event) => engine.observe(&event, elapsed()).cloned(),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "the escalation engine fell behind the call's context");
                        None
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(digit) = keys.recv() => engine.key(digit, elapsed()).cloned(),
                _ = ticker.tick() => engine.tick(elapsed()).cloned(),
            }
        };
        let Some(decision) = decided else {
            continue;
        };
        if decision.escalate && !listed {
            listed = true;
            info!(
                urgency = ?decision.urgency,
                skill = decision.skill.as_deref().unwrap_or("any"),
                reasons = ?decision.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
                "the call should go to a person"
            );
            escalations.record(&call_id, &decision);
        }
        let write = vec![Change::Escalation(decision)];
        if let Err(e) = contexts.write(&call_id, Author::System, None, write).await {
            warn!(error = %e, "escalation decision not written");
        }
    }
}
