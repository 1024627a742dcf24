//! Where contexts live: the [`ContextStore`] trait, and [`MemoryStore`], the embedded
//! default that keeps each call's document and a bounded log of its events in this process.

use super::change::{Author, Change, ChangeError, Event};
use super::document::Context;
use crate::calls::lock;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::broadcast;

/// Events kept per call for readers that catch up from a version; older ones are dropped
/// (the document itself always holds everything).
pub const EVENT_HISTORY: usize = 4096;
/// Events a live subscriber may fall behind by before it is told it lagged.
const SUBSCRIBER_DEPTH: usize = 256;

/// Why a store refused a request.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StoreError {
    #[error("no context for call {0}")]
    NotFound(String),
    #[error("a context for call {0} exists already")]
    Exists(String),
    #[error("version conflict: expected {expected}, the context is at {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error("events before version {oldest} are no longer kept")]
    Gone { oldest: u64 },
    #[error("change {index}: {error}")]
    Invalid { index: usize, error: ChangeError },
}

/// What a reader subscribing from a version gets: the events it missed, then a live feed.
pub struct Subscription {
    /// Events after the version asked for, oldest first.
    pub backlog: Vec<Event>,
    /// Every event after the backlog.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// A store of call contexts. The in-memory store serves one node; a shared store (Redis)
/// lets several nodes serve the same calls.
#[async_trait]
pub trait ContextStore: Send + Sync {
    /// Starts the context of a new call.
    async fn create(&self, doc: Context) -> Result<(), StoreError>;
    /// The document as it is now.
    async fn get(&self, call_id: &str) -> Result<Context, StoreError>;
    /// Applies `changes` together, all or none; with `expected`, only if the document is
    /// still at that version. Returns the events made.
    async fn write(
        &self,
        call_id: &str,
        author: Author,
        expected: Option<u64>,
        changes: Vec<Change>,
    ) -> Result<Vec<Event>, StoreError>;
    /// The events after version `since`.
    async fn events(&self, call_id: &str, since: u64) -> Result<Vec<Event>, StoreError>;
    /// The events after version `since`, then every new one.
    async fn subscribe(&self, call_id: &str, since: u64) -> Result<Subscription, StoreError>;
    /// The call ended: its context stays readable, among the most recent ended calls.
    async fn close(&self, call_id: &str) -> Result<(), StoreError>;
}

/// One call's live context.
struct Live {
    doc: Context,
    log: VecDeque<Event>,
    feed: broadcast::Sender<Arc<Event>>,
}

impl Live {
    fn new(doc: Context) -> Live {
        Live {
            doc,
            log: VecDeque::new(),
            feed: broadcast::channel(SUBSCRIBER_DEPTH).0,
        }
    }

    fn write(
        &mut self,
        author: Author,
        expected: Option<u64>,
        changes: Vec<Change>,
        at_ms: u64,
    ) -> Result<Vec<Event>, StoreError> {
        if let Some(expected) = expected {
            if expected != self.doc.version {
                return Err(StoreError::Conflict {
                    expected,
                    actual: self.doc.version,
                });
            }
        }
        for (index, change) in changes.iter().enumerate() {
            change
                .validate()
                .map_err(|error| StoreError::Invalid { index, error })?;
        }
        let mut made = Vec::with_capacity(changes.len());
        for change in changes {
            change.apply(&mut self.doc, &author, at_ms);
            self.doc.version += 1;
            self.doc.updated_ms = at_ms;
            let event = Event {
                version: self.doc.version,
                author: author.clone(),
                at_ms,
                change,
            };
            if self.log.len() == EVENT_HISTORY {
                self.log.pop_front();
            }
            self.log.push_back(event.clone());
            // Nobody listening is fine: readers catch up from the log.
            let _ = self.feed.send(Arc::new(event.clone()));
            made.push(event);
        }
        Ok(made)
    }

    fn events(&self, since: u64) -> Result<Vec<Event>, StoreError> {
        let oldest = self.log.front().map_or(self.doc.version + 1, |e| e.version);
        if since + 1 < oldest && since < self.doc.version {
            return Err(StoreError::Gone { oldest });
        }
        Ok(self
            .log
            .iter()
            .filter(|e| e.version > since)
            .cloned()
            .collect())
    }
}

/// Ended calls whose context stays in memory; older ones are dropped (the durable store
/// keeps them).
pub const ENDED_KEPT: usize = 1000;

/// Contexts in this process's memory.
#[derive(Default)]
pub struct MemoryStore {
    calls: Mutex<Calls>,
}

#[derive(Default)]
struct Calls {
    live: HashMap<String, Live>,
    /// Ended calls, oldest first.
    ended: VecDeque<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(
        &self,
        call_id: &str,
        f: impl FnOnce(&mut Live) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut calls = lock(&self.calls);
        let live = calls
            .live
            .get_mut(call_id)
            .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
        f(live)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[async_trait]
impl ContextStore for MemoryStore {
    async fn create(&self, doc: Context) -> Result<(), StoreError> {
        let mut calls = lock(&self.calls);
        if calls.live.contains_key(&doc.call_id) {
            return Err(StoreError::Exists(doc.call_id));
        }
        calls.live.insert(doc.call_id.clone(), Live::new(doc));
        Ok(())
    }

    async fn get(&self, call_id: &str) -> Result<Context, StoreError> {
        self.with(call_id, |live| Ok(live.doc.clone()))
    }

    async fn write(
        &self,
        call_id: &str,
        author: Author,
        expected: Option<u64>,
        changes: Vec<Change>,
    ) -> Result<Vec<Event>, StoreError> {
        self.with(call_id, |live| {
            live.write(author, expected, changes, now_ms())
        })
    }

    async fn events(&self, call_id: &str, since: u64) -> Result<Vec<Event>, StoreError> {
        self.with(call_id, |live| live.events(since))
    }

    async fn subscribe(&self, call_id: &str, since: u64) -> Result<Subscription, StoreError> {
        // Under the lock, so that no event falls between the backlog and the feed.
        self.with(call_id, |live| {
            Ok(Subscription {
                backlog: live.events(since)?,
                live: live.feed.subscribe(),
            })
        })
    }

    async fn close(&self, call_id: &str) -> Result<(), StoreError> {
        let mut calls = lock(&self.calls);
        if !calls.live.contains_key(call_id) {
            return Err(StoreError::NotFound(call_id.to_owned()));
        }
        if calls.ended.iter().any(|id| id == call_id) {
            return Ok(());
        }
        if calls.ended.len() == ENDED_KEPT {
            if let Some(oldest) = calls.ended.pop_front() {
                calls.live.remove(&oldest);
            }
        }
        calls.ended.push_back(call_id.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::document::TranscriptLine;
    use serde_json::json;

    fn doc(id: &str) -> Context {
        Context {
            call_id: id.into(),
            ..Context::default()
        }
    }

    fn intent(name: &str, confidence: f32) -> Change {
        Change::Intent {
            name: name.into(),
            confidence,
            alternatives: vec![],
        }
    }

    /// A store holding one fresh context, `c1`.
    async fn store() -> MemoryStore {
        let store = MemoryStore::new();
        store.create(doc("c1")).await.unwrap();
        store
    }

    #[tokio::test]
    async fn writes_make_versioned_events_with_author_and_time() {
        let store = store().await;
        let made = store
            .write(
                "c1",
                Author::Bot,
                None,
                vec![
                    intent("block_card", 0.8),
                    Change::Identity {
                        verified: true,
                        method: Some("date_of_birth".into()),
                        customer_id: Some("cust-7".into()),
                    },
                ],
            )
            .await
            .unwrap();
        assert_eq!(made.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert!(made.iter().all(|e| e.author == Author::Bot && e.at_ms > 0));
        let now = store.get("c1").await.unwrap();
        assert_eq!(now.version, 2);
        assert_eq!(now.intent.name.as_deref(), Some("block_card"));
        assert!(now.identity.verified);
        let json = serde_json::to_value(&now).unwrap();
        assert_eq!(json["intent"]["name"], "block_card");
        assert_eq!(json["identity"]["verified"], true);
        assert_eq!(json["version"], 2);
    }

    #[tokio::test]
    async fn expected_version_conflicts_when_the_document_moved() {
        let store = store().await;
        store
            .write("c1", Author::Bot, Some(0), vec![intent("balance", 0.9)])
            .await
            .unwrap();
        let err = store
            .write(
                "c1",
                Author::Agent("a1".into()),
                Some(0),
                vec![intent("x", 0.1)],
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                expected: 0,
                actual: 1
            }
        );
        assert_eq!(
            store.get("c1").await.unwrap().intent.name.as_deref(),
            Some("balance")
        );
    }

    #[tokio::test]
    async fn a_bad_change_refuses_the_whole_write() {
        let store = store().await;
        let err = store
            .write(
                "c1",
                Author::Bot,
                None,
                vec![intent("ok", 0.5), intent("too_sure", 1.5)],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid { index: 1, .. }), "{err}");
        assert!(err.to_string().contains("confidence"), "{err}");
        assert_eq!(store.get("c1").await.unwrap().version, 0);
    }

    #[tokio::test]
    async fn readers_catch_up_from_any_version_then_follow_live() {
        let store = store().await;
        for i in 0..5 {
            store
                .write(
                    "c1",
                    Author::System,
                    None,
                    vec![Change::BotStep {
                        step: format!("s{i}"),
                    }],
                )
                .await
                .unwrap();
        }
        let mut sub = store.subscribe("c1", 3).await.unwrap();
        assert_eq!(
            sub.backlog.iter().map(|e| e.version).collect::<Vec<_>>(),
            [4, 5]
        );
        store
            .write("c1", Author::Bot, None, vec![Change::BotReprompt])
            .await
            .unwrap();
        assert_eq!(sub.live.recv().await.unwrap().version, 6);
        assert_eq!(store.events("c1", 5).await.unwrap().len(), 1);
        assert!(store.events("c1", 6).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn ended_contexts_stay_readable_up_to_a_bound() {
        let store = MemoryStore::new();
        for i in 0..ENDED_KEPT + 3 {
            let id = format!("c{i}");
            store.create(doc(&id)).await.unwrap();
            store.close(&id).await.unwrap();
            store.close(&id).await.unwrap();
        }
        assert!(store.get("c2").await.is_err());
        assert!(store.get("c3").await.is_ok());
        assert_eq!(
            store.calls.lock().unwrap().live.len(),
            ENDED_KEPT,
            "memory stays bounded"
        );
    }

    #[test]
    fn the_log_is_bounded_and_says_what_is_gone() {
        let mut live = Live::new(doc("c1"));
        for _ in 0..EVENT_HISTORY + 10 {
            live.write(Author::Bot, None, vec![Change::BotReprompt], 1)
                .unwrap();
        }
        assert_eq!(live.log.len(), EVENT_HISTORY);
        assert_eq!(live.events(0), Err(StoreError::Gone { oldest: 11 }));
        assert_eq!(live.events(10).unwrap().len(), EVENT_HISTORY);
        assert_eq!(live.doc.bot.reprompts as usize, EVENT_HISTORY + 10);
    }

    #[test]
    fn a_final_replaces_its_partial_and_vibe_keeps_history() {
        let mut live = Live::new(doc("c1"));
        let line = |text: &str, is_final| {
            Change::Transcript(TranscriptLine {
                speaker: "caller".into(),
                text: text.into(),
                is_final,
                utterance: 1,
                start_ms: 100,
                end_ms: 900,
                confidence: 0.8,
            })
        };
        let vibe = |label: &str, utterance| Change::Vibe {
            label: label.into(),
            arousal: 0.4,
            valence: -0.2,
            trend: "steady".into(),
            evidence: vec![],
            utterance,
        };
        live.write(
            Author::System,
            None,
            vec![
                line("block my", false),
                line("block my card", true),
                vibe("calm", 1),
                vibe("anxious", 2),
            ],
            1,
        )
        .unwrap();
        assert_eq!(live.doc.transcript.len(), 1);
        assert_eq!(live.doc.transcript[0].text, "block my card");
        assert!(live.doc.transcript[0].is_final);
        assert_eq!(live.doc.vibe.label.as_deref(), Some("anxious"));
        assert_eq!(live.doc.vibe.history.len(), 1);
        assert_eq!(live.doc.vibe.history[0].label, "calm");
        assert_eq!(live.doc.vibe.history[0].utterance, 1);
        let json = serde_json::to_value(&live.doc).unwrap();
        assert_eq!(json["transcript"][0]["final"], true);
        assert_eq!(json["transcript"][0]["speaker"], "caller");
        assert_eq!(json["vibe"]["label"], "anxious");
        assert_eq!(json["vibe"]["trend"], "steady");
    }

    #[test]
    fn changes_from_the_wire_parse_and_unknown_ones_are_refused() {
        let ok: Vec<Change> = serde_json::from_value(json!([
            {"op": "slot", "name": "card_last4", "value": "4821"},
            {"op": "action", "name": "card_blocked", "detail": {"card": "4821"}},
            {"op": "running", "who": "agent:a7"},
        ]))
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert!(ok.iter().all(|c| c.validate().is_ok()));
        for bad in [
            json!({"op": "launch_rockets"}),
            json!({"op": "slot", "name": "x"}),
            json!({"op": "slot", "name": "x", "value": 1, "extra": true}),
        ] {
            assert!(
                serde_json::from_value::<Change>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let who = Change::Running {
            who: "nobody".into(),
        };
        assert!(who.validate().is_err());
        let huge = Change::Slot {
            name: "x".into(),
            value: json!("y".repeat(MAX_VALUE_TEST)),
        };
        assert!(huge.validate().is_err());
    }

    const MAX_VALUE_TEST: usize = crate::context::change::MAX_VALUE + 1;
}
