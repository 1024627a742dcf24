//! Runs a call's escalation engine beside the call: it follows the call's context as it
//! changes and the keys the caller presses, writes each new decision back to the context (author `system`), and lists the
//! call in the escalations once it should go to a person. The call stops it when it ends.

use crate::context::{Author, Change, ContextStore};
use crate::escalation::{Decision, Engine, Escalations, Policy};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

/// How often time alone is weighed (a call running long).
const TICK: Duration = Duration::from_secs(1);

/// Nudges in flight to the engine; a caller cannot press faster than it reads them.
const NUDGES: usize = 32;

/// What the call tells the engine besides the context.
#[derive(Debug)]
enum Nudge {
    /// A key the caller pressed.
    Key(char),
    /// The bot handed the call over, for this reason.
    Handover(String),
    /// A transfer is over: the next handover is passed on even if nothing changed.
    Rearm,
}

/// The running engine; dropping it stops it.
pub struct Watcher {
    task: JoinHandle<()>,
    nudges: mpsc::Sender<Nudge>,
    /// The decision that sent the call to a person, each time the call should go.
    escalated: watch::Receiver<Option<Decision>>,
}

impl Watcher {
    /// A key the caller pressed (0 asks for a person).
    pub fn key(&self, digit: char) {
        let _ = self.nudges.try_send(Nudge::Key(digit));
    }

    /// The bot handed the call over (its dialog reached an `escalate` node, or an external
    /// bot sent `escalate`).
    pub fn handover(&self, reason: String) {
        let _ = self.nudges.try_send(Nudge::Handover(reason));
    }

    /// The decisions to send the call to a person, as they are taken, for [`next`].
    pub fn decisions(&self) -> watch::Receiver<Option<Decision>> {
        self.escalated.clone()
    }

    /// The call is back with the bot after a transfer: the next time the bot hands over,
    /// the decision is given again.
    pub fn rearm(&self) {
        let _ = self.nudges.try_send(Nudge::Rearm);
    }
}

/// The next decision to send the call to a person; never, without an engine.
pub async fn next(decisions: Option<&mut watch::Receiver<Option<Decision>>>) -> Option<Decision> {
    let Some(rx) = decisions else {
        return std::future::pending().await;
    };
    loop {
        if rx.changed().await.is_err() {
            // The engine stopped (the call had no context): no decision will come.
            return std::future::pending().await;
        }
        if let Some(decision) = rx.borrow_and_update().clone() {
            return Some(decision);
        }
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
    let (nudges, nudges_rx) = mpsc::channel(NUDGES);
    let (decided, escalated) = watch::channel(None);
    let task = tokio::spawn(
        run(call_id, contexts, policy, escalations, nudges_rx, decided).in_current_span(),
    );
    Watcher {
        task,
        nudges,
        escalated,
    }
}

async fn run(
    call_id: String,
    contexts: Arc<dyn ContextStore>,
    policy: Policy,
    escalations: Arc<Escalations>,
    mut nudges: mpsc::Receiver<Nudge>,
    escalated: watch::Sender<Option<Decision>>,
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
    let mut rearmed = false;
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
                Some(nudge) = nudges.recv() => match nudge {
                    Nudge::Key(digit) => engine.key(digit, elapsed()).cloned(),
                    Nudge::Handover(reason) => {
                        let changed = engine.handover(&reason, elapsed()).cloned();
                        if std::mem::take(&mut rearmed) && listed {
                            // Back from a transfer, the bot hands over again: the call goes
                            // to a person again, though the engine had decided so already.
                            if let Some(d) = engine.decision().filter(|d| d.escalate) {
                                escalated.send_replace(Some(d.clone()));
                            }
                        }
                        changed
                    }
                    Nudge::Rearm => {
                        rearmed = true;
                        None
                    }
                },
                _ = ticker.tick() => engine.tick(elapsed()).cloned(),
            }
        };
        let Some(decision) = decided else {
            continue;
        };
        if decision.escalate {
            let doc = contexts.get(&call_id).await.ok();
            escalations.record(&call_id, &decision, doc.as_deref());
        }
        if decision.escalate && !listed {
            listed = true;
            info!(
                urgency = ?decision.urgency,
                skill = decision.skill.as_deref().unwrap_or("any"),
                reasons = ?decision.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
                "the call should go to a person"
            );
            escalated.send_replace(Some(decision.clone()));
        }
        let write = vec![Change::Escalation(decision)];
        if let Err(e) = contexts.write(&call_id, Author::System, None, write).await {
            warn!(error = %e, "escalation decision not written");
        }
    }
}
