//! Where contexts live: the [`ContextStore`] trait, and [`MemoryStore`], the embedded
//! default that keeps each call's document and a bounded log of its events in this process,
//! and with an [`Archive`] each ended call's final document for good.

use super::archive::Archive;
use super::change::{Author, Change, ChangeError, Event};
use super::document::Context;
use super::summary::summarize;
use crate::calls::lock;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use thiserror::Error;
use tokio::sync::broadcast;
use tracing::warn;

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
    /// The durable store failed (disk full, file gone); the request may be retried.
    #[error("context storage unavailable: {0}")]
    Unavailable(String),
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
    /// Starts the context of a new call. A store that keeps ended calls fills in
    /// `caller.memory` when it knows the caller's number from earlier calls.
    async fn create(&self, doc: Context) -> Result<(), StoreError>;
    /// The document as it is now: a snapshot that later writes do not change, shared
    /// rather than copied.
    async fn get(&self, call_id: &str) -> Result<Arc<Context>, StoreError>;
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
    /// The call ended: its context stays readable, among the most recent ended calls, and
    /// a durable store has it on disk before this returns.
    async fn close(&self, call_id: &str) -> Result<(), StoreError>;
}

/// One call's live context.
struct Live {
    /// Copied on write only while a reader still holds the previous snapshot.
    doc: Arc<Context>,
    log: VecDeque<Event>,
    feed: broadcast::Sender<Arc<Event>>,
    /// When the call ended (ms since the Unix epoch); `None` while it goes on.
    ended_ms: Option<u64>,
}

impl Live {
    fn new(doc: Context) -> Live {
        Live {
            doc: Arc::new(doc),
            log: VecDeque::new(),
            feed: broadcast::channel(SUBSCRIBER_DEPTH).0,
            ended_ms: None,
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
        let transcript_was_empty = self.doc.transcript.is_empty();
        let mut made: Vec<Event> = changes
            .into_iter()
            .map(|change| self.append(author.clone(), change, at_ms))
            .collect();
        // The summary follows the document: rewritten by baton after any change but a
        // summary written on purpose, as its own event so live readers see it. It reads no
        // transcript but whether there is one, so the many transcript writes skip it.
        let may_change = made
            .iter()
            .any(|e| !matches!(e.change, Change::Transcript(_)))
            || transcript_was_empty;
        if may_change && !made.iter().any(|e| matches!(e.change, Change::Summary(_))) {
            let summary = summarize(&self.doc);
            if summary != self.doc.summary {
                let change = Change::Summary(summary);
                made.push(self.append(Author::System, change, at_ms));
            }
        }
        Ok(made)
    }

    /// Applies one checked change as the next version, logs it and tells live readers.
    fn append(&mut self, author: Author, change: Change, at_ms: u64) -> Event {
        let doc = Arc::make_mut(&mut self.doc);
        change.apply(doc, &author, at_ms);
        doc.version += 1;
        doc.updated_ms = at_ms;
        let event = Event {
            version: self.doc.version,
            author,
            at_ms,
            change,
        };
        if self.log.len() == EVENT_HISTORY {
            self.log.pop_front();
        }
        self.log.push_back(event.clone());
        // Nobody listening is fine: readers catch up from the log.
        let _ = self.feed.send(Arc::new(event.clone()));
        event
    }

    fn events(&self, since: u64) -> Result<Vec<Event>, StoreError> {
        let oldest = self.log.front().map_or(self.doc.version + 1, |e| e.version);
        if since.saturating_add(1) < oldest && since < self.doc.version {
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

/// Contexts in this process's memory; with an archive, ended ones on disk as well.
///
/// The archive sits inside the memory store rather than wrapping any store: only the
/// store that holds a call knows when a write lands after the call ended (the last
/// transcript, the summary), and such a write must reach the archived copy too.
#[derive(Default)]
pub struct MemoryStore {
    calls: Mutex<Calls>,
    /// Where ended calls are kept for good; `None` keeps them in memory only.
    archive: Option<Archive>,
}

#[derive(Default)]
struct Calls {
    /// Each call behind its own lock: writers to different calls never wait on each
    /// other, and this map's lock is held only to find a call.
    live: HashMap<String, Arc<Mutex<Live>>>,
    /// Ended calls, oldest first.
    ended: VecDeque<String>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store that keeps every ended call in `archive`, reads the calls it no
    /// longer holds from there, and starts a returning caller's context with their memory.
    pub fn with_archive(archive: Archive) -> MemoryStore {
        MemoryStore {
            archive: Some(archive),
            ..MemoryStore::default()
        }
    }

    /// The archived final context of a call this process no longer holds.
    async fn archived(&self, call_id: &str) -> Result<Context, StoreError> {
        let Some(archive) = &self.archive else {
            return Err(StoreError::NotFound(call_id.to_owned()));
        };
        archive
            .load(call_id)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))
    }

    fn with<T>(
        &self,
        call_id: &str,
        f: impl FnOnce(&mut Live) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let live = lock(&self.calls)
            .live
            .get(call_id)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
        let mut live = lock(&live);
        f(&mut live)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Events of an archived context, which keeps none: nothing after its last version, and
/// [`StoreError::Gone`] for anything before.
fn archived_events(doc: &Context, since: u64) -> Result<(), StoreError> {
    if since < doc.version {
        return Err(StoreError::Gone {
            oldest: doc.version + 1,
        });
    }
    Ok(())
}

#[async_trait]
impl ContextStore for MemoryStore {
    async fn create(&self, mut doc: Context) -> Result<(), StoreError> {
        if let (Some(archive), Some(number), None) =
            (&self.archive, &doc.caller.number, &doc.caller.memory)
        {
            // Memory helps a call; a call starts without it rather than not at all.
            match archive.memory(number).await {
                Ok(memory) => doc.caller.memory = memory,
                Err(e) => warn!(error = %e, "customer memory not loaded"),
            }
        }
        let mut calls = lock(&self.calls);
        if calls.live.contains_key(&doc.call_id) {
            return Err(StoreError::Exists(doc.call_id));
        }
        calls
            .live
            .insert(doc.call_id.clone(), Arc::new(Mutex::new(Live::new(doc))));
        Ok(())
    }

    async fn get(&self, call_id: &str) -> Result<Arc<Context>, StoreError> {
        match self.with(call_id, |live| Ok(live.doc.clone())) {
            Err(StoreError::NotFound(_)) => self.archived(call_id).await.map(Arc::new),
            found => found,
        }
    }

    async fn write(
        &self,
        call_id: &str,
        author: Author,
        expected: Option<u64>,
        changes: Vec<Change>,
    ) -> Result<Vec<Event>, StoreError> {
        let (made, late) = self.with(call_id, |live| {
            let made = live.write(author, expected, changes, now_ms())?;
            // A write after the call ended (the last transcript, the summary) must reach
            // the archived copy, or the archive would keep a stale final state.
            let late = match (&self.archive, live.ended_ms) {
                (Some(_), Some(ended_ms)) => Some((Context::clone(&live.doc), ended_ms)),
                _ => None,
            };
            Ok((made, late))
        })?;
        if let (Some(archive), Some((doc, ended_ms))) = (&self.archive, late) {
            // The write is applied and its events are out: failing it now would invite a
            // retry that applies it twice.
            if let Err(e) = archive.save(doc, ended_ms).await {
                warn!(call_id, error = %e, "a write after the call ended was not archived");
            }
        }
        Ok(made)
    }

    async fn events(&self, call_id: &str, since: u64) -> Result<Vec<Event>, StoreError> {
        match self.with(call_id, |live| live.events(since)) {
            Err(StoreError::NotFound(_)) => {
                archived_events(&self.archived(call_id).await?, since)?;
                Ok(Vec::new())
            }
            found => found,
        }
    }

    async fn subscribe(&self, call_id: &str, since: u64) -> Result<Subscription, StoreError> {
        // Under the lock, so that no event falls between the backlog and the feed.
        let held = self.with(call_id, |live| {
            Ok(Subscription {
                backlog: live.events(since)?,
                live: live.feed.subscribe(),
            })
        });
        match held {
            Err(StoreError::NotFound(_)) => {
                archived_events(&self.archived(call_id).await?, since)?;
                // An archived context never changes again: its feed is closed at once.
                Ok(Subscription {
                    backlog: Vec::new(),
                    live: broadcast::channel(1).0.subscribe(),
                })
            }
            found => found,
        }
    }

    async fn close(&self, call_id: &str) -> Result<(), StoreError> {
        let (doc, ended_ms) = {
            let mut calls = lock(&self.calls);
            let entry = calls
                .live
                .get(call_id)
                .cloned()
                .ok_or_else(|| StoreError::NotFound(call_id.to_owned()))?;
            let mut live = lock(&entry);
            let first = live.ended_ms.is_none();
            let ended_ms = *live.ended_ms.get_or_insert_with(now_ms);
            // Taken after marking the call ended, so that any later write saves again.
            let doc = self.archive.as_ref().map(|_| Context::clone(&live.doc));
            drop(live);
            if first {
                if calls.ended.len() == ENDED_KEPT {
                    if let Some(oldest) = calls.ended.pop_front() {
                        calls.live.remove(&oldest);
                    }
                }
                calls.ended.push_back(call_id.to_owned());
            }
            (doc, ended_ms)
        };
        // Saved on every close, not only the first: a close retried after a failed save
        // must reach the disk.
        if let (Some(archive), Some(doc)) = (&self.archive, doc) {
            archive
                .save(doc, ended_ms)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::document::{Summary, TranscriptLine};
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
        assert_eq!(
            made.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(made[..2]
            .iter()
            .all(|e| e.author == Author::Bot && e.at_ms > 0));
        // baton rewrites the summary after the bot's changes, as an event of its own.
        assert_eq!(made[2].author, Author::System);
        let Change::Summary(summary) = &made[2].change else {
            panic!("{made:?}");
        };
        assert!(summary.text.contains("verified"), "{summary:?}");
        let now = store.get("c1").await.unwrap();
        assert_eq!(now.version, 3);
        assert_eq!(&now.summary, summary);
        assert_eq!(now.intent.name.as_deref(), Some("block_card"));
        assert!(now.identity.verified);
        let json = serde_json::to_value(&now).unwrap();
        assert_eq!(json["intent"]["name"], "block_card");
        assert_eq!(json["identity"]["verified"], true);
        assert_eq!(json["version"], 3);
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
                actual: 2
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
        let now = store.get("c1").await.unwrap().version;
        let mut sub = store.subscribe("c1", now - 2).await.unwrap();
        assert_eq!(
            sub.backlog.iter().map(|e| e.version).collect::<Vec<_>>(),
            [now - 1, now]
        );
        store
            .write("c1", Author::Bot, None, vec![Change::BotReprompt])
            .await
            .unwrap();
        assert_eq!(sub.live.recv().await.unwrap().version, now + 1);
        let after = store.get("c1").await.unwrap().version;
        assert_eq!(
            store.events("c1", now).await.unwrap().len() as u64,
            after - now
        );
        assert!(store.events("c1", after).await.unwrap().is_empty());
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
        let oldest = live.doc.version - EVENT_HISTORY as u64 + 1;
        assert_eq!(live.events(0), Err(StoreError::Gone { oldest }));
        assert_eq!(live.events(oldest - 1).unwrap().len(), EVENT_HISTORY);
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

    #[tokio::test]
    async fn an_archived_context_outlives_the_process_and_becomes_memory() {
        let dir = std::env::temp_dir().join(format!(
            "baton-store-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let path = dir.join("baton.sqlite");
        let caller = |id: &str, number: &str| Context {
            call_id: id.into(),
            caller: crate::context::document::Caller {
                number: Some(number.into()),
                memory: None,
            },
            ..Context::default()
        };
        let store = MemoryStore::with_archive(Archive::open(&path).await.unwrap());
        store.create(caller("c1", "+4411")).await.unwrap();
        store
            .write("c1", Author::Bot, None, vec![intent("block_card", 0.9)])
            .await
            .unwrap();
        store.close("c1").await.unwrap();
        // The summary comes after the call ended: the archive must follow.
        let summary = Change::Summary(Summary {
            text: "Card blocked.".into(),
            ..Summary::default()
        });
        store
            .write("c1", Author::System, None, vec![summary])
            .await
            .unwrap();
        drop(store);

        let store = MemoryStore::with_archive(Archive::open(&path).await.unwrap());
        let doc = store.get("c1").await.unwrap();
        // The intent, baton's summary of it, then the summary written after the end.
        assert_eq!(doc.version, 3);
        assert_eq!(doc.intent.name.as_deref(), Some("block_card"));
        assert_eq!(doc.summary.text, "Card blocked.");
        assert_eq!(
            store.events("c1", 0).await,
            Err(StoreError::Gone { oldest: 4 })
        );
        assert_eq!(store.events("c1", 3).await, Ok(vec![]));
        let mut sub = store.subscribe("c1", 3).await.unwrap();
        assert!(sub.backlog.is_empty());
        assert!(
            sub.live.recv().await.is_err(),
            "an archived context is final"
        );
        assert!(matches!(
            store.get("nope").await,
            Err(StoreError::NotFound(_))
        ));

        store.create(caller("c2", "+4411")).await.unwrap();
        let doc = store.get("c2").await.unwrap();
        let memory = doc.caller.memory.clone().unwrap();
        assert_eq!(memory.previous_calls.len(), 1);
        assert_eq!(memory.previous_calls[0].call_id, "c1");
        assert_eq!(
            memory.previous_calls[0].intent.as_deref(),
            Some("block_card")
        );
        assert_eq!(memory.previous_calls[0].summary, "Card blocked.");
        store.create(caller("c3", "+4499")).await.unwrap();
        assert_eq!(store.get("c3").await.unwrap().caller.memory, None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
