//! The durable record of ended calls: each call's final context in one SQLite file, so it
//! can be read after the call and after a restart, and so that a returning caller's next
//! call starts with what the earlier ones left behind ([`CustomerMemory`]). The escalation
//! records and the follow-ups live in the same file.
//!
//! SQLite blocks, so one dedicated thread owns the connection and the async side sends it
//! jobs over a channel: no tokio worker ever waits on the disk, and writes are serialised
//! without a lock.

use super::document::{Context, CustomerMemory, PreviousCall};
use crate::escalation::Record;
use crate::followup::{State, Task};
use crate::reports::{CallRow, EscalationRow, Range, Rows};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::warn;

/// Earlier calls carried into a returning caller's memory, newest first.
pub const PREVIOUS_CALLS: usize = 10;
/// Open follow-ups carried into a returning caller's memory.
pub const FOLLOW_UPS: usize = 10;

/// Marks the file as baton's (`PRAGMA application_id`, "batn"), so that a database of
/// some other program is refused rather than written into.
const APPLICATION_ID: i32 = 0x6261_746e;

/// How long a statement waits for a lock another process holds (a backup, a second
/// baton pointed at the same file by mistake) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one step per version: step `i` takes a database from version `i` to
/// `i + 1` (`PRAGMA user_version`). A new version appends a step; released steps never
/// change, so any older file can be brought up to date.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE ended_calls (
        call_id TEXT PRIMARY KEY NOT NULL,
        caller_number TEXT,
        customer_id TEXT,
        ended_ms INTEGER NOT NULL,
        version INTEGER NOT NULL,
        intent TEXT,
        outcome TEXT,
        summary TEXT NOT NULL,
        context TEXT NOT NULL
    );
    CREATE INDEX ended_calls_by_number ON ended_calls (caller_number, ended_ms);
    CREATE INDEX ended_calls_by_customer ON ended_calls (customer_id, ended_ms);",
    "CREATE TABLE escalations (
        call_id TEXT PRIMARY KEY NOT NULL,
        decided_ms INTEGER NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX escalations_by_time ON escalations (decided_ms);",
    "CREATE TABLE followups (
        id TEXT PRIMARY KEY NOT NULL,
        call_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        task TEXT NOT NULL
    );
    CREATE INDEX followups_due ON followups (state, due_ms);
    CREATE INDEX followups_by_call ON followups (call_id, created_ms);",
    // Reports count calls by the time they ended.
    "CREATE INDEX ended_calls_by_time ON ended_calls (ended_ms);",
];

/// Why the archive could not be opened or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The file's directory could not be created.
    #[error("{}: cannot create the directory of the context database: {source}", path.display())]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite could not open or set up the file (unreadable, not a database at all).
    #[error("{}: cannot open the context database: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The file is an SQLite database, but some other program's.
    #[error("{}: not a baton context database (it holds other tables); set context_db to another file", path.display())]
    Foreign { path: PathBuf },
    /// The file was written by a newer baton whose schema this one does not know.
    #[error("{}: context database schema version {found} is newer than this baton's ({known})", path.display())]
    Newer {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    /// The archive's thread could not be started.
    #[error("cannot start the context database thread: {0}")]
    Thread(std::io::Error),
    /// A statement failed.
    #[error("context database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A context could not be turned into JSON.
    #[error("context not encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The archive's thread is gone.
    #[error("the context database thread has stopped")]
    Stopped,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A handle to the archive; clones share its one thread and connection, which end when
/// the last handle is dropped.
#[derive(Clone)]
pub struct Archive {
    jobs: mpsc::Sender<Job>,
}

impl Archive {
    /// Opens the archive at `path`, creating the file and its directory if need be, and
    /// brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("context-archive".into())
            .spawn(move || {
                let mut conn = match open_connection(&path) {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(())).is_ok() {
                    for job in queue {
                        job(&mut conn);
                    }
                }
            })
            .map_err(ArchiveError::Thread)?;
        ready.await.map_err(|_| ArchiveError::Stopped)??;
        Ok(Archive { jobs })
    }

    /// Runs `job` on the archive's thread and waits for its result.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> Result<T, ArchiveError> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(job(conn));
            }))
            .map_err(|_| ArchiveError::Stopped)?;
        rx.await.map_err(|_| ArchiveError::Stopped)?
    }

    /// Keeps `doc` as its call's final state, committed before this returns. A call saved
    /// again (a write after it ended) keeps its first `ended_ms`, and an older version never
    /// replaces a newer one, whatever order the saves arrive in.
    pub async fn save(&self, doc: Context, ended_ms: u64) -> Result<(), ArchiveError> {
        self.run(move |conn| {
            let json = serde_json::to_string(&doc)?;
            conn.execute(
                "INSERT INTO ended_calls (call_id, caller_number, customer_id, ended_ms, version,
                                          intent, outcome, summary, context)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (call_id) DO UPDATE SET
                     caller_number = excluded.caller_number,
                     customer_id = excluded.customer_id,
                     version = excluded.version,
                     intent = excluded.intent,
                     outcome = excluded.outcome,
                     summary = excluded.summary,
                     context = excluded.context
                 WHERE excluded.version >= ended_calls.version",
                params![
                    doc.call_id,
                    doc.caller.number,
                    doc.identity.customer_id,
                    to_sql_int(ended_ms),
                    to_sql_int(doc.version),
                    doc.intent.name,
                    outcome(&doc),
                    doc.summary.text,
                    json,
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// The final context of an ended call; `None` when it was never archived or its row
    /// no longer parses (that is logged).
    pub async fn load(&self, call_id: &str) -> Result<Option<Context>, ArchiveError> {
        let call_id = call_id.to_owned();
        self.run(move |conn| {
            let json: Option<String> = conn
                .query_row(
                    "SELECT context FROM ended_calls WHERE call_id = ?1",
                    [&call_id],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(json.and_then(|json| parse_row(&call_id, &json)))
        })
        .await
    }

    /// What the earlier calls from `number` left behind, joined by those of the customer
    /// they were last verified as; `None` for a caller with no readable earlier call.
    pub async fn memory(&self, number: &str) -> Result<Option<CustomerMemory>, ArchiveError> {
        let number = number.to_owned();
        self.run(move |conn| {
            let mut calls = previous(conn, "caller_number", &number)?;
            let customer_id = calls
                .iter()
                .find_map(|c| c.doc.identity.customer_id.clone());
            if let Some(id) = &customer_id {
                let seen: HashSet<String> = calls.iter().map(|c| c.doc.call_id.clone()).collect();
                calls.extend(
                    previous(conn, "customer_id", id)?
                        .into_iter()
                        .filter(|c| !seen.contains(&c.doc.call_id)),
                );
                calls.sort_by_key(|c| std::cmp::Reverse((c.ended_ms, c.rowid)));
                calls.truncate(PREVIOUS_CALLS);
            }
            Ok(memory(customer_id, &calls))
        })
        .await
    }

    /// Keeps an escalation's record as it stands, in place of the call's earlier one.
    /// Queued behind the writes before it and committed on the archive's thread without
    /// waiting, so that a call never waits on the disk; a failure is logged.
    pub fn keep_escalation(&self, record: &Record) {
        let json = match serde_json::to_string(record) {
            Ok(json) => json,
            Err(e) => return warn!(error = %e, "escalation record not encoded"),
        };
        let (call_id, decided_ms) = (record.call_id.clone(), record.decided_at_ms);
        let job: Job = Box::new(move |conn| {
            let kept = conn.execute(
                "INSERT INTO escalations (call_id, decided_ms, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (call_id) DO UPDATE SET record = excluded.record",
                params![call_id, to_sql_int(decided_ms), json],
            );
            if let Err(e) = kept {
                warn!(error = %e, call = %call_id, "escalation record not kept");
            }
        });
        if self.jobs.send(job).is_err() {
            warn!("escalation record not kept: the context database thread has stopped");
        }
    }

    /// The newest `limit` escalation records, oldest first; a row that no longer parses is
    /// skipped (and logged).
    pub async fn escalations(&self, limit: usize) -> Result<Vec<Record>, ArchiveError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT call_id, record FROM escalations ORDER BY decided_ms DESC, rowid DESC
                 LIMIT ?1",
            )?;
            let rows = stmt.query_map([to_sql_int(limit as u64)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut records = Vec::new();
            for row in rows {
                let (call_id, json) = row?;
                match serde_json::from_str(&json) {
                    Ok(record) => records.push(record),
                    Err(e) => warn!(error = %e, call = %call_id, "escalation record unreadable"),
                }
            }
            records.reverse();
            Ok(records)
        })
        .await
    }

    /// Keeps a new follow-up, committed before this returns: once a caller has been told
    /// about it, it survives a crash.
    pub async fn add_followup(&self, task: &Task) -> Result<(), ArchiveError> {
        let (row, json) = (FollowUpRow::of(task), serde_json::to_string(task)?);
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO followups (id, call_id, created_ms, due_ms, state, task)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    row.id,
                    row.call_id,
                    row.created_ms,
                    row.due_ms,
                    row.state,
                    json
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Replaces a follow-up that is still `from` (its state when it was read) with
    /// `task`; false when it has moved on meanwhile (cancelled while it was being sent).
    pub async fn update_followup(&self, task: &Task, from: State) -> Result<bool, ArchiveError> {
        let (row, json) = (FollowUpRow::of(task), serde_json::to_string(task)?);
        self.run(move |conn| {
            let changed = conn.execute(
                "UPDATE followups SET due_ms = ?2, state = ?3, task = ?4
                 WHERE id = ?1 AND state = ?5",
                params![row.id, row.due_ms, row.state, json, from.as_str()],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    /// Follow-ups, newest first: those of one call, in one state, or all, at most `limit`.
    pub async fn followups(
        &self,
        call_id: Option<String>,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Task>, ArchiveError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, task FROM followups
                 WHERE (?1 IS NULL OR call_id = ?1) AND (?2 IS NULL OR state = ?2)
                 ORDER BY created_ms DESC, rowid DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![call_id, state.map(State::as_str), to_sql_int(limit as u64)],
                task_row,
            )?;
            collect_tasks(rows)
        })
        .await
    }

    /// One follow-up by id.
    pub async fn followup(&self, id: &str) -> Result<Option<Task>, ArchiveError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT id, task FROM followups WHERE id = ?1")?;
            let rows = stmt.query_map([id], task_row)?;
            Ok(collect_tasks(rows)?.pop())
        })
        .await
    }

    /// The pending follow-ups due by `now_ms`, soonest first, at most `limit`; and when
    /// the next one after those falls due.
    pub async fn due_followups(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<(Vec<Task>, Option<u64>), ArchiveError> {
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, task FROM followups WHERE state = 'pending' AND due_ms <= ?1
                 ORDER BY due_ms LIMIT ?2",
            )?;
            let rows = stmt.query_map(
                params![to_sql_int(now_ms), to_sql_int(limit as u64)],
                task_row,
            )?;
            let due = collect_tasks(rows)?;
            let next: Option<i64> = conn.query_row(
                "SELECT min(due_ms) FROM followups WHERE state = 'pending' AND due_ms > ?1",
                [to_sql_int(now_ms)],
                |r| r.get(0),
            )?;
            Ok((due, next.and_then(|n| u64::try_from(n).ok())))
        })
        .await
    }

    /// What an escalation report counts over `range`: every archived call that ended in
    /// it, marked as the bot's when its context shows a dialog step or it was escalated;
    /// every escalation decided in it, with its intent and reason codes; and, as the bot's
    /// calls at their decision time, escalated calls not archived (yet). Read with
    /// SQLite's JSON functions, without parsing the contexts; a record that is not valid
    /// JSON is left out.
    pub async fn report_rows(&self, range: Range) -> Result<Rows, ArchiveError> {
        let from = to_sql_int(range.from_ms.unwrap_or(0));
        let to = to_sql_int(range.to_ms.unwrap_or(u64::MAX));
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.ended_ms, c.intent,
                        coalesce(CASE WHEN json_valid(c.context)
                                 THEN json_array_length(c.context, '$.bot.path') END, 0) > 0
                        OR EXISTS (SELECT 1 FROM escalations e WHERE e.call_id = c.call_id)
                 FROM ended_calls c WHERE c.ended_ms >= ?1 AND c.ended_ms < ?2
                 UNION ALL
                 SELECT e.decided_ms,
                        CASE WHEN json_type(e.record, '$.intent') = 'text'
                             THEN json_extract(e.record, '$.intent') END,
                        1
                 FROM escalations e
                 WHERE e.decided_ms >= ?1 AND e.decided_ms < ?2 AND json_valid(e.record)
                   AND NOT EXISTS (SELECT 1 FROM ended_calls c WHERE c.call_id = e.call_id)",
            )?;
            let calls = stmt
                .query_map(params![from, to], |row| {
                    Ok(CallRow {
                        ended_ms: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        intent: row.get(1)?,
                        bot: row.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            // The reason codes as a JSON array; an element that is not an object with a
            // text `code` is skipped.
            let mut stmt = conn.prepare_cached(
                "SELECT e.call_id, e.decided_ms,
                        CASE WHEN json_type(e.record, '$.intent') = 'text'
                             THEN json_extract(e.record, '$.intent') END,
                        (SELECT json_group_array(json_extract(e.record, r.fullkey || '.code'))
                         FROM json_each(e.record, '$.reasons') r
                         WHERE json_type(e.record, r.fullkey || '.code') = 'text')
                 FROM escalations e
                 WHERE e.decided_ms >= ?1 AND e.decided_ms < ?2 AND json_valid(e.record)",
            )?;
            let rows = stmt.query_map(params![from, to], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut escalations = Vec::new();
            for row in rows {
                let (call_id, decided_ms, intent, reasons) = row?;
                let reasons = match serde_json::from_str(reasons.as_deref().unwrap_or("[]")) {
                    Ok(reasons) => reasons,
                    Err(e) => {
                        warn!(call = %call_id, error = %e, "escalation reasons unreadable");
                        Vec::new()
                    }
                };
                escalations.push(EscalationRow {
                    decided_ms: u64::try_from(decided_ms).unwrap_or(0),
                    intent,
                    reasons,
                });
            }
            Ok(Rows { calls, escalations })
        })
        .await
    }

    /// Waits until every job sent before this one is done, so that nothing queued is lost
    /// when the process exits.
    pub async fn flush(&self) -> Result<(), ArchiveError> {
        self.run(|_| Ok(())).await
    }
}

/// Opens the file and brings it to the current schema, refusing files that are not
/// baton's.
fn open_connection(path: &Path) -> Result<Connection, ArchiveError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ArchiveError::Directory {
            path: path.to_owned(),
            source,
        })?;
    }
    let open = |source| ArchiveError::Open {
        path: path.to_owned(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    // SQLite reads the header lazily: a file that is not a database fails here.
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(open)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(open)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(open)?;
    let fresh = application_id == 0 && version == 0 && tables == 0;
    if !fresh && application_id != APPLICATION_ID {
        return Err(ArchiveError::Foreign {
            path: path.to_owned(),
        });
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(ArchiveError::Newer {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    // WAL: readers (the API) never wait for the writer; FULL: a commit is on disk before
    // a close reports success.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .map_err(open)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    migrate(&mut conn).map_err(open)?;
    Ok(conn)
}

/// Applies the steps the file lacks, all in one transaction that holds the write lock,
/// so that two processes opening a new file cannot both create the schema.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let done = usize::try_from(version).unwrap_or(0);
    for step in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()
}

/// The columns of a follow-up's row that queries select on.
struct FollowUpRow {
    id: String,
    call_id: String,
    created_ms: i64,
    due_ms: i64,
    state: &'static str,
}

impl FollowUpRow {
    fn of(task: &Task) -> FollowUpRow {
        FollowUpRow {
            id: task.id.clone(),
            call_id: task.call_id.clone(),
            created_ms: to_sql_int(task.created_ms),
            due_ms: to_sql_int(task.due_ms),
            state: task.state.as_str(),
        }
    }
}

fn task_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String)> {
    Ok((row.get(0)?, row.get(1)?))
}

/// The tasks of the rows that parse; one that does not is logged and skipped, so that a
/// damaged row never hides the others.
fn collect_tasks(
    rows: impl Iterator<Item = rusqlite::Result<(String, String)>>,
) -> Result<Vec<Task>, ArchiveError> {
    let mut tasks = Vec::new();
    for row in rows {
        let (id, json) = row?;
        match serde_json::from_str(&json) {
            Ok(task) => tasks.push(task),
            Err(e) => warn!(error = %e, followup = %id, "follow-up unreadable: skipped"),
        }
    }
    Ok(tasks)
}

/// SQLite integers are signed; times and versions stay far below `i64::MAX`.
fn to_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One archived call, as memory is built from it.
struct Archived {
    rowid: i64,
    ended_ms: u64,
    doc: Context,
}

/// The newest calls whose `column` (an indexed one) is `value`, unreadable rows skipped.
fn previous(conn: &Connection, column: &str, value: &str) -> Result<Vec<Archived>, ArchiveError> {
    let sql = format!(
        "SELECT rowid, call_id, ended_ms, context FROM ended_calls WHERE {column} = ?1
         ORDER BY ended_ms DESC, rowid DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![value, PREVIOUS_CALLS as i64], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3),
        ))
    })?;
    let mut calls = Vec::new();
    for row in rows {
        let (rowid, call_id, ended_ms, json) = row?;
        let json = match json {
            Ok(json) => json,
            Err(e) => {
                warn!(call_id, error = %e, "archived context unreadable: skipped");
                continue;
            }
        };
        if let Some(doc) = parse_row(&call_id, &json) {
            calls.push(Archived {
                rowid,
                ended_ms: u64::try_from(ended_ms).unwrap_or(0),
                doc,
            });
        }
    }
    Ok(calls)
}

/// A row's context, or `None` (logged) when it does not parse: one damaged row must not
/// take the others, or baton, down with it.
fn parse_row(call_id: &str, json: &str) -> Option<Context> {
    match serde_json::from_str(json) {
        Ok(doc) => Some(doc),
        Err(e) => {
            warn!(call_id, error = %e, "archived context is not valid JSON: skipped");
            None
        }
    }
}

/// The memory built from earlier calls, newest first.
fn memory(customer_id: Option<String>, calls: &[Archived]) -> Option<CustomerMemory> {
    if calls.is_empty() {
        return None;
    }
    let mut open_follow_ups: Vec<String> = Vec::new();
    for text in calls.iter().flat_map(|c| follow_ups(&c.doc)) {
        if open_follow_ups.len() < FOLLOW_UPS && !open_follow_ups.contains(&text) {
            open_follow_ups.push(text);
        }
    }
    Some(CustomerMemory {
        customer_id,
        previous_calls: calls
            .iter()
            .map(|c| PreviousCall {
                call_id: c.doc.call_id.clone(),
                ended_ms: c.ended_ms,
                intent: c.doc.intent.name.clone(),
                outcome: Some(outcome(&c.doc)),
                summary: c.doc.summary.text.clone(),
            })
            .collect(),
        open_follow_ups,
    })
}

/// How a call ended, in a few words, from what its context records: the last action
/// taken and by whom (`card_blocked by agent:a7`); failing that, where the bot got stuck
/// (`bot stuck: CRM timeout`); failing that, `no action recorded`. Who hung up is not in
/// the context, so it is not claimed.
fn outcome(doc: &Context) -> String {
    if let Some(action) = doc.actions.last() {
        format!("{} by {}", action.name, action.by)
    } else if let Some(reason) = &doc.bot.stuck {
        format!("bot stuck: {reason}")
    } else {
        "no action recorded".to_owned()
    }
}

/// The follow-ups a call promised. Until follow-ups are tasks of their own, they are the
/// call's actions named `follow_up`, whose text is their `detail` when that is a string,
/// or `detail.text`; every one counts as open.
fn follow_ups(doc: &Context) -> impl Iterator<Item = String> + '_ {
    doc.actions
        .iter()
        .filter(|a| a.name == "follow_up")
        .filter_map(|a| match &a.detail {
            Value::String(text) => Some(text.clone()),
            detail => detail["text"].as_str().map(str::to_owned),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::document::{Action, BotProgress, Caller};
    use serde_json::json;

    /// A fresh directory for one test's database.
    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "baton-archive-{name}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn call(id: &str, number: &str, intent: &str, actions: &[(&str, Value)]) -> Context {
        let mut doc = Context {
            call_id: id.into(),
            version: 3,
            caller: Caller {
                number: Some(number.into()),
                memory: None,
            },
            ..Context::default()
        };
        doc.intent.name = Some(intent.into());
        doc.summary.text = format!("{intent} call");
        doc.actions = actions
            .iter()
            .map(|(name, detail)| Action {
                name: (*name).into(),
                detail: detail.clone(),
                by: "bot".into(),
                at_ms: 1,
            })
            .collect();
        doc
    }

    #[tokio::test]
    async fn a_saved_call_is_read_back_after_reopening_the_file() {
        let dir = temp_dir("reopen");
        let path = dir.join("nested").join("baton.sqlite");
        let doc = call(
            "c1",
            "+4411",
            "block_card",
            &[("card_blocked", json!("4821"))],
        );
        let archive = Archive::open(&path).await.unwrap();
        archive.save(doc.clone(), 1000).await.unwrap();
        let mut older = doc.clone();
        older.version = 2;
        older.intent.name = Some("stale".into());
        archive.save(older, 2000).await.unwrap();
        drop(archive);

        let archive = Archive::open(&path).await.unwrap();
        assert_eq!(archive.load("c1").await.unwrap(), Some(doc));
        assert_eq!(archive.load("c2").await.unwrap(), None);
        let memory = archive.memory("+4411").await.unwrap().unwrap();
        assert_eq!(memory.previous_calls[0].ended_ms, 1000, "first end kept");
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_returning_caller_gets_earlier_calls_newest_first_with_follow_ups() {
        let dir = temp_dir("memory");
        let archive = Archive::open(&dir.join("baton.sqlite")).await.unwrap();
        let mut first = call(
            "c1",
            "+4411",
            "lost_card",
            &[("follow_up", json!("send a new card"))],
        );
        first.identity.customer_id = Some("cust-7".into());
        archive.save(first, 1000).await.unwrap();
        let mut stuck = call("c2", "+4411", "dispute", &[]);
        stuck.bot.stuck = Some("CRM timeout".into());
        archive.save(stuck, 2000).await.unwrap();
        let third = call(
            "c3",
            "+4411",
            "block_card",
            &[
                ("follow_up", json!({"text": "callback in 48 h"})),
                ("follow_up", json!("send a new card")),
                ("card_blocked", json!({"card": "4821"})),
            ],
        );
        archive.save(third, 3000).await.unwrap();
        // The same customer, verified on another phone.
        let mut other_phone = call("c4", "+4422", "balance", &[]);
        other_phone.identity.customer_id = Some("cust-7".into());
        archive.save(other_phone, 1500).await.unwrap();

        let memory = archive.memory("+4411").await.unwrap().unwrap();
        assert_eq!(memory.customer_id.as_deref(), Some("cust-7"));
        let briefs: Vec<(&str, Option<&str>, Option<&str>)> = memory
            .previous_calls
            .iter()
            .map(|c| {
                (
                    c.call_id.as_str(),
                    c.intent.as_deref(),
                    c.outcome.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            briefs,
            [
                ("c3", Some("block_card"), Some("card_blocked by bot")),
                ("c2", Some("dispute"), Some("bot stuck: CRM timeout")),
                ("c4", Some("balance"), Some("no action recorded")),
                ("c1", Some("lost_card"), Some("follow_up by bot")),
            ]
        );
        assert_eq!(memory.previous_calls[0].summary, "block_card call");
        assert_eq!(
            memory.open_follow_ups,
            ["callback in 48 h", "send a new card"]
        );
        assert_eq!(archive.memory("+4499").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn memory_is_bounded_to_the_newest_calls() {
        let dir = temp_dir("bounded");
        let archive = Archive::open(&dir.join("baton.sqlite")).await.unwrap();
        for i in 0..PREVIOUS_CALLS as u64 + 5 {
            let doc = call(&format!("c{i}"), "+4411", "balance", &[]);
            archive.save(doc, 1000 + i).await.unwrap();
        }
        let memory = archive.memory("+4411").await.unwrap().unwrap();
        assert_eq!(memory.previous_calls.len(), PREVIOUS_CALLS);
        assert_eq!(memory.previous_calls[0].call_id, "c14");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_corrupt_row_is_skipped_and_the_others_still_count() {
        let dir = temp_dir("corrupt");
        let path = dir.join("baton.sqlite");
        let archive = Archive::open(&path).await.unwrap();
        for (id, ended) in [("good", 1000), ("bad", 2000)] {
            let doc = call(id, "+4411", id, &[]);
            archive.save(doc, ended).await.unwrap();
        }
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE ended_calls SET context = '{\"call_id\": ' WHERE call_id = 'bad'",
            [],
        )
        .unwrap();
        assert_eq!(archive.load("bad").await.unwrap(), None);
        let memory = archive.memory("+4411").await.unwrap().unwrap();
        let ids: Vec<&str> = memory
            .previous_calls
            .iter()
            .map(|c| c.call_id.as_str())
            .collect();
        assert_eq!(ids, ["good"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn escalation(call_id: &str, decided_at_ms: u64, outcome: &str) -> Record {
        Record {
            call_id: call_id.into(),
            decided_at_ms,
            urgency: crate::escalation::Urgency::Immediate,
            skill: Some("fraud".into()),
            reasons: Vec::new(),
            agent_id: Some("a7".into()),
            connected_at_ms: None,
            missed: Vec::new(),
            outcome: outcome.into(),
            intent: Some("block_card".into()),
            bot: BotProgress::default(),
            handle_secs: None,
            disposition: None,
            transcript: Vec::new(),
            agent_transcript: Vec::new(),
            agent_actions: Vec::new(),
        }
    }

    #[tokio::test]
    async fn escalation_records_are_kept_as_they_change_and_read_back_newest_last() {
        let dir = temp_dir("escalations");
        let path = dir.join("baton.sqlite");
        let archive = Archive::open(&path).await.unwrap();
        archive.keep_escalation(&escalation("c1", 1000, "ringing"));
        archive.keep_escalation(&escalation("c2", 3000, "no_agent"));
        archive.keep_escalation(&escalation("c1", 1000, "completed"));
        archive.keep_escalation(&escalation("c3", 2000, "returned"));
        archive.flush().await.unwrap();
        drop(archive);

        let archive = Archive::open(&path).await.unwrap();
        let kept = archive.escalations(10).await.unwrap();
        let seen: Vec<(&str, &str)> = kept
            .iter()
            .map(|r| (r.call_id.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(
            seen,
            [("c1", "completed"), ("c3", "returned"), ("c2", "no_agent")]
        );
        let newest: Vec<String> = archive
            .escalations(2)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.call_id)
            .collect();
        assert_eq!(newest, ["c3", "c2"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn report_rows_mark_the_bots_calls_and_read_escalation_reasons() {
        use crate::escalation::{Code, Reason};
        let dir = temp_dir("report");
        let path = dir.join("baton.sqlite");
        let archive = Archive::open(&path).await.unwrap();
        let mut with_bot = call("bot", "+4411", "balance", &[]);
        with_bot.bot.path = vec!["greet".into()];
        archive.save(with_bot, 1000).await.unwrap();
        archive
            .save(call("agent_only", "+4411", "balance", &[]), 2000)
            .await
            .unwrap();
        let mut no_intent = call("escalated", "+4411", "x", &[]);
        no_intent.intent.name = None;
        archive.save(no_intent, 3000).await.unwrap();
        archive
            .save(call("later", "+4411", "balance", &[]), 9000)
            .await
            .unwrap();
        let reason = |code| Reason {
            code,
            score: 1.0,
            evidence: Vec::new(),
        };
        let mut esc = escalation("escalated", 2500, "waiting");
        esc.intent = None;
        esc.reasons = vec![reason(Code::CallerRequest), reason(Code::Sentiment)];
        archive.keep_escalation(&esc);
        let mut ongoing = escalation("ongoing", 2600, "waiting");
        ongoing.reasons = vec![reason(Code::PolicyIntent)];
        archive.keep_escalation(&ongoing);
        archive.flush().await.unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO escalations (call_id, decided_ms, record) VALUES ('broken', 2700, '{')",
            [],
        )
        .unwrap();

        let range = Range {
            from_ms: Some(1000),
            to_ms: Some(9000),
        };
        let mut rows = archive.report_rows(range).await.unwrap();
        rows.calls.sort_by_key(|c| c.ended_ms);
        rows.escalations.sort_by_key(|e| e.decided_ms);
        let calls: Vec<(u64, Option<&str>, bool)> = rows
            .calls
            .iter()
            .map(|c| (c.ended_ms, c.intent.as_deref(), c.bot))
            .collect();
        assert_eq!(
            calls,
            [
                (1000, Some("balance"), true),
                (2000, Some("balance"), false),
                (2600, Some("block_card"), true),
                (3000, None, true),
            ]
        );
        let escalations: Vec<(u64, Option<&str>, Vec<&str>)> = rows
            .escalations
            .iter()
            .map(|e| {
                (
                    e.decided_ms,
                    e.intent.as_deref(),
                    e.reasons.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            escalations,
            [
                (2500, None, vec!["caller_request", "sentiment"]),
                (2600, Some("block_card"), vec!["policy_intent"]),
            ],
            "the broken record is left out"
        );
        let all = archive.report_rows(Range::default()).await.unwrap();
        assert_eq!(all.calls.len(), 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn task(id: &str, call_id: &str, created_ms: u64, due_ms: u64) -> Task {
        Task {
            id: id.into(),
            call_id: call_id.into(),
            dialplan: "bank".into(),
            followup: "sms".into(),
            channel: crate::followup::spec::Channel::Sms,
            connector: "default".into(),
            to: "+4411".into(),
            text: "hello".into(),
            subject: None,
            link: None,
            customer_id: None,
            created_ms,
            due_ms,
            state: State::Pending,
            attempts: 0,
            error: None,
            done_ms: None,
        }
    }

    #[tokio::test]
    async fn follow_ups_come_due_in_order_and_a_moved_on_one_is_not_overwritten() {
        let dir = temp_dir("followups");
        let archive = Archive::open(&dir.join("baton.sqlite")).await.unwrap();
        archive
            .add_followup(&task("a", "c1", 1, 300))
            .await
            .unwrap();
        archive
            .add_followup(&task("b", "c1", 2, 100))
            .await
            .unwrap();
        archive
            .add_followup(&task("c", "c2", 3, 900))
            .await
            .unwrap();
        assert!(
            archive.add_followup(&task("a", "c1", 4, 1)).await.is_err(),
            "ids are unique"
        );

        let (due, next) = archive.due_followups(300, 10).await.unwrap();
        let ids: Vec<&str> = due.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"], "soonest first");
        assert_eq!(next, Some(900));

        let mut sent = due[0].clone();
        sent.state = State::Sent;
        assert!(archive
            .update_followup(&sent, State::Pending)
            .await
            .unwrap());
        let mut late = due[0].clone();
        late.state = State::Cancelled;
        assert!(
            !archive
                .update_followup(&late, State::Pending)
                .await
                .unwrap(),
            "a sent follow-up is not cancelled after the fact"
        );
        assert_eq!(
            archive.followup("b").await.unwrap().unwrap().state,
            State::Sent
        );

        let of_c1: Vec<String> = archive
            .followups(Some("c1".into()), None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(of_c1, ["b", "a"], "newest first");
        let pending = archive
            .followups(None, Some(State::Pending), 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 2);
        assert!(archive.followup("nope").await.unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_of_the_first_schema_is_brought_up_to_date_keeping_its_calls() {
        let dir = temp_dir("migrate");
        let path = dir.join("baton.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO ended_calls (call_id, ended_ms, version, summary, context)
             VALUES ('old', 5, 1, '', ?1)",
            [serde_json::to_string(&call("old", "+4411", "balance", &[])).unwrap()],
        )
        .unwrap();
        drop(conn);

        let archive = Archive::open(&path).await.unwrap();
        assert!(archive.load("old").await.unwrap().is_some());
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO escalations (call_id, decided_ms, record) VALUES ('older', 1, ?1)",
            [
                r#"{"call_id":"older","decided_at_ms":1,"urgency":"high","skill":null,
                "reasons":[],"agent_id":null,"connected_at_ms":null,"missed":[],
                "outcome":"no_agent"}"#,
            ],
        )
        .unwrap();
        archive.keep_escalation(&escalation("c1", 1000, "queued"));
        let kept = archive.escalations(10).await.unwrap();
        assert_eq!(
            kept.len(),
            2,
            "a record without the newer fields still reads"
        );
        assert_eq!(kept[0].bot, BotProgress::default());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn files_that_are_not_baton_databases_are_refused_naming_them() {
        let dir = temp_dir("foreign");
        let text = dir.join("notes.sqlite");
        std::fs::write(
            &text,
            "these are not the tables you are looking for".repeat(40),
        )
        .unwrap();
        let other = dir.join("other.sqlite");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE songs (title TEXT)")
            .unwrap();
        let newer = dir.join("newer.sqlite");
        drop(Archive::open(&newer).await.unwrap());
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();

        for (path, want) in [
            (&text, "cannot open the context database"),
            (&other, "not a baton context database"),
            (&newer, "schema version 99 is newer"),
        ] {
            let err = match Archive::open(path).await {
                Ok(_) => panic!("{} was accepted", path.display()),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with(&path.display().to_string()), "{err}");
            assert!(err.contains(want), "{err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
