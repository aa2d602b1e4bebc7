//! SQLite implementation of [`crate::EntityStore`]: the embedded default.
//!
//! One writer thread owns the write connection and commits whatever operations are waiting in one
//! transaction (group commit), so durable commits (`synchronous=FULL`) cost one fsync per group, not per
//! request. Reads use a small pool of read-only connections on blocking threads; WAL lets them run beside the
//! writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use misto_ngsild::{Entity, NgsiError};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::doc;
use crate::summary::{delta, geo_boxes, geo_values, nonzero, same_keys};
use crate::{
    Change, EntityQuery, EntityStore, Found, Modified, ModifyFn, QueryPage, RetryFn, StoreError,
    TypeSummary, ViewFn,
};
use notify::Journal;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/sqlite/0001_entities.sql"),
    include_str!("../migrations/sqlite/0002_geo_rtree_by_attribute.sql"),
    include_str!("../migrations/sqlite/0003_entity_views.sql"),
    include_str!("../migrations/sqlite/0004_subscriptions.sql"),
    include_str!("../migrations/sqlite/0005_entity_heads.sql"),
    include_str!("../migrations/sqlite/0006_temporal.sql"),
    include_str!("../migrations/sqlite/0007_temporal_integer_keys.sql"),
    include_str!("../migrations/sqlite/0008_cluster.sql"),
    include_str!("../migrations/sqlite/0009_transient_instances.sql"),
    include_str!("../migrations/sqlite/0020_devices.sql"),
    include_str!("../migrations/sqlite/0021_registry.sql"),
    include_str!("../migrations/sqlite/0022_commands.sql"),
];
/// Geo instances indexed per entity (gid = seq * GEO_SLOTS + n).
const GEO_SLOTS: i64 = 64;
/// Most operations one group commit takes.
const MAX_GROUP: usize = 512;
const SCAN_CHUNK: usize = 500;

mod commands;
mod devices;
mod notify;
mod registry;
mod temporal;

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;
/// Work run by the writer inside its transaction (subscriptions, journal, outbox).
type WriteFn = Box<dyn FnOnce(&Connection) -> Result<(), StoreError> + Send>;
type ModifyOutcome = Vec<Result<Modified, NgsiError>>;
type CasOutcome = Result<Modified, NgsiError>;

enum WriteMsg {
    Modify {
        tenant: String,
        ops: Vec<(String, ModifyFn)>,
        view: Option<ViewFn>,
        reply: Reply<ModifyOutcome>,
    },
    /// A change prepared outside the writer (see [`EntityStore::modify_retrying`]).
    Cas {
        tenant: String,
        id: String,
        prepared: Box<Prepared>,
        f: RetryFn,
        view: Option<ViewFn>,
        reply: Reply<CasOutcome>,
    },
    /// Many changes prepared outside the writer (see [`EntityStore::modify_many_retrying`]).
    CasMany {
        tenant: String,
        items: Vec<BatchItem>,
        view: Option<ViewFn>,
        reply: Reply<ModifyOutcome>,
    },
    Purge {
        tenant: String,
        query: EntityQuery,
        reply: Reply<Vec<String>>,
    },
    Expire {
        now: String,
        reply: Reply<Vec<(String, String)>>,
    },
    Run {
        f: WriteFn,
        reply: Reply<()>,
    },
}

/// The embedded SQLite entity store.
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<WriteMsg>>>,
    journal: Journal,
    readers: Arc<ReaderPool>,
    path: PathBuf,
}

/// Read-only connections. Connections are kept for the life of the store (opening one costs a schema parse
/// and loses its statement cache); their number is bounded by the permits of blocking reads plus one per runtime
/// worker for inline point reads.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
}

/// Blocking reads (queries, scans) running at once.
const READ_CONCURRENCY: usize = 4;

impl ReaderPool {
    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(c) = self.idle.lock().map_err(|_| StoreError::Closed)?.pop() {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        // Pages come from the OS page cache; no mmap, so the process's memory stays its own.
        c.pragma_update(None, "cache_size", -8000)?;
        register_box_test(&c)?;
        Ok(c)
    }

    fn give(&self, c: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(c);
        }
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it is acknowledged.
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "cache_size", -32000)?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.pragma_update(None, "wal_autocheckpoint", 4000)?;
    migrate(&c)?;
    register_box_test(&c)?;
    Ok(c)
}

fn migrate(c: &Connection) -> Result<(), StoreError> {
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i64 + 1;
        if v > version {
            let tx = c.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", v)?;
            tx.commit()?;
            tracing::info!(version = v, "applied SQLite migration");
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Open (creating if needed) the database file and apply migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let conn = open_writer(&path)?;
        let journal = Journal::load(&conn)?;
        let (tx, rx) = mpsc::channel::<WriteMsg>();
        let writer_journal = journal.clone();
        std::thread::Builder::new()
            .name("misto-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_journal))
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(tx)),
            journal,
            readers: Arc::new(ReaderPool {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(READ_CONCURRENCY),
            }),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> WriteMsg) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let guard = self.writer.lock().map_err(|_| StoreError::Closed)?;
            let w = guard.as_ref().ok_or(StoreError::Closed)?;
            w.send(make(tx)).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.readers.clone();
        let started = Instant::now();
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let out = tokio::task::spawn_blocking(move || {
            let c = pool.take()?;
            let r = f(&c);
            pool.give(c);
            r
        })
        .await
        .map_err(|e| StoreError::Other(format!("reader task failed: {e}")))?;
        observe(op, started);
        out
    }
}

fn observe(op: &'static str, started: Instant) {
    metrics::histogram!("misto_storage_seconds", "backend" => "sqlite", "op" => op)
        .record(started.elapsed().as_secs_f64());
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<WriteMsg>, journal: Journal) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        run_group(&mut conn, group, &journal);
        observe("commit", started);
    }
    tracing::debug!("SQLite writer stopped");
}

enum Done {
    Modify(Reply<ModifyOutcome>, Result<ModifyOutcome, StoreError>),
    Cas(Reply<CasOutcome>, Result<CasOutcome, StoreError>),
    CasMany(Reply<ModifyOutcome>, Result<ModifyOutcome, StoreError>),
    Purge(Reply<Vec<String>>, Result<Vec<String>, StoreError>),
    Expire(
        Reply<Vec<(String, String)>>,
        Result<Vec<(String, String)>, StoreError>,
    ),
    Run(Reply<()>, Result<(), StoreError>),
}

fn run_group(conn: &mut Connection, group: Vec<WriteMsg>, journal: &Journal) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let msg = e.to_string();
            for m in group {
                fail(m, StoreError::Other(msg.clone()));
            }
            return;
        }
    };
    let mut done = Vec::with_capacity(group.len());
    for m in group {
        // A savepoint per message: a storage error undoes only that message's writes.
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                fail(m, StoreError::from(e));
                continue;
            }
        };
        let outcome = match m {
            WriteMsg::Modify {
                tenant,
                ops,
                view,
                reply,
            } => {
                let r = apply_modify(&sp, &tenant, ops, view.as_ref())
                    .and_then(|out| journal.record_outcome(&sp, &tenant, &out).map(|()| out));
                Done::Modify(reply, r)
            }
            WriteMsg::Cas {
                tenant,
                id,
                prepared,
                f,
                view,
                reply,
            } => {
                let r = apply_cas(&sp, &tenant, &id, *prepared, f, view, journal);
                Done::Cas(reply, r)
            }
            WriteMsg::CasMany {
                tenant,
                items,
                view,
                reply,
            } => Done::CasMany(
                reply,
                apply_cas_many(&sp, &tenant, items, view.as_ref(), journal),
            ),
            WriteMsg::Purge {
                tenant,
                query,
                reply,
            } => Done::Purge(reply, apply_purge(&sp, &tenant, &query, journal)),
            WriteMsg::Expire { now, reply } => {
                Done::Expire(reply, apply_expire(&sp, &now, journal))
            }
            WriteMsg::Run { f, reply } => Done::Run(reply, f(&sp)),
        };
        let ok = match &outcome {
            Done::Modify(_, r) => r.is_ok(),
            Done::Cas(_, r) => r.is_ok(),
            Done::CasMany(_, r) => r.is_ok(),
            Done::Purge(_, r) => r.is_ok(),
            Done::Expire(_, r) => r.is_ok(),
            Done::Run(_, r) => r.is_ok(),
        };
        // Dropping an uncommitted savepoint rolls it back.
        let end = if ok {
            sp.commit()
        } else {
            drop(sp);
            temporal::forget_names();
            Ok(())
        };
        if let Err(e) = end {
            temporal::forget_names();
            tracing::error!(error = %e, "savepoint failed");
        }
        done.push(outcome);
    }
    match tx.commit() {
        Ok(()) => {
            for d in done {
                match d {
                    Done::Modify(r, v) => {
                        let _ = r.send(v);
                    }
                    Done::Cas(r, v) => {
                        let _ = r.send(v);
                    }
                    Done::CasMany(r, v) => {
                        let _ = r.send(v);
                    }
                    Done::Purge(r, v) => {
                        let _ = r.send(v);
                    }
                    Done::Expire(r, v) => {
                        let _ = r.send(v);
                    }
                    Done::Run(r, v) => {
                        let _ = r.send(v);
                    }
                }
            }
        }
        Err(e) => {
            temporal::forget_names();
            let msg = format!("commit failed: {e}");
            tracing::error!("{msg}");
            for d in done {
                match d {
                    Done::Modify(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                    Done::Cas(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                    Done::CasMany(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                    Done::Purge(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                    Done::Expire(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                    Done::Run(r, _) => {
                        let _ = r.send(Err(StoreError::Other(msg.clone())));
                    }
                }
            }
        }
    }
}

fn fail(m: WriteMsg, e: StoreError) {
    let msg = e.to_string();
    match m {
        WriteMsg::Modify { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
        WriteMsg::Cas { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
        WriteMsg::CasMany { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
        WriteMsg::Purge { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
        WriteMsg::Expire { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
        WriteMsg::Run { reply, .. } => {
            let _ = reply.send(Err(StoreError::Other(msg)));
        }
    }
}

/// The entity in column `i` of a row.
fn decode_col(r: &rusqlite::Row<'_>, i: usize) -> Result<Entity, StoreError> {
    doc::full(&doc::json_of(r.get_ref(i)?)?)
}

/// The entity's expiry in one format, so that stored expiries compare as text.
fn expires_of(e: &Entity) -> Option<String> {
    e.get("expiresAt")
        .and_then(Value::as_str)
        .and_then(misto_ngsild::validate::parse_datetime)
        .map(misto_ngsild::validate::format_datetime)
}

fn load(c: &Connection, tenant: &str, id: &str) -> Result<Option<(i64, Entity)>, StoreError> {
    let mut st = c.prepare_cached("SELECT seq, doc FROM entities WHERE tenant = ?1 AND id = ?2")?;
    let mut rows = st.query(params![tenant, id])?;
    match rows.next()? {
        Some(r) => Ok(Some((r.get(0)?, decode_col(r, 1)?))),
        None => Ok(None),
    }
}

fn apply_modify(
    c: &Connection,
    tenant: &str,
    ops: Vec<(String, ModifyFn)>,
    view: Option<&ViewFn>,
) -> Result<ModifyOutcome, StoreError> {
    let mut counts: BTreeMap<crate::AttrKey, i64> = BTreeMap::new();
    let out = apply_modify_counting(c, tenant, ops, view, &mut counts)?;
    write_counts(c, tenant, counts)?;
    Ok(out)
}

/// [`apply_modify`] leaving the summary counter changes in `counts`: counters may be written only once per
/// message, as they drop to zero rows (a decrease applied before the increase it follows would lose a row).
fn apply_modify_counting(
    c: &Connection,
    tenant: &str,
    ops: Vec<(String, ModifyFn)>,
    view: Option<&ViewFn>,
    counts: &mut BTreeMap<crate::AttrKey, i64>,
) -> Result<ModifyOutcome, StoreError> {
    let mut out = Vec::with_capacity(ops.len());
    for (id, f) in ops {
        let current = load(c, tenant, &id)?;
        let before = current.as_ref().map(|(_, e)| e);
        let (change, rendered) = match f(before) {
            Ok(Change::PutRendered(e, v)) => (Change::Put(e), Some(v)),
            Ok(ch) => (ch, None),
            Err(e) => {
                out.push(Err(e));
                continue;
            }
        };
        let (seq, old) = match current {
            Some((seq, old)) => (Some(seq), Some(old)),
            None => (None, None),
        };
        match change {
            Change::Keep => out.push(Ok(Modified {
                before: old.clone(),
                after: old,
            })),
            Change::Put(new) | Change::PutRendered(new, _) => {
                let plan = plan_put(old.as_ref(), &new, view, rendered)?;
                apply_put(c, tenant, &id, seq, plan, counts)?;
                out.push(Ok(Modified {
                    before: old,
                    after: Some(new),
                }));
            }
            Change::Delete => {
                if let (Some(seq), Some(old)) = (seq, &old) {
                    apply_delete(c, seq, plan_delete(old), counts)?;
                }
                out.push(Ok(Modified {
                    before: old,
                    after: None,
                }));
            }
        }
    }
    Ok(out)
}

/// A stored row as read: seq, whether the document is a BLOB (compressed) rather than TEXT, and its bytes.
type RawRow = (i64, bool, Vec<u8>);

fn load_raw(c: &Connection, tenant: &str, id: &str) -> Result<Option<RawRow>, StoreError> {
    let mut st = c.prepare_cached("SELECT seq, doc FROM entities WHERE tenant = ?1 AND id = ?2")?;
    let mut rows = st.query(params![tenant, id])?;
    match rows.next()? {
        Some(r) => {
            let (blob, bytes) = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) => (true, b.to_vec()),
                rusqlite::types::ValueRef::Text(t) => (false, t.to_vec()),
                _ => {
                    return Err(StoreError::Corrupt(
                        "document is neither text nor blob".into(),
                    ))
                }
            };
            Ok(Some((r.get(0)?, blob, bytes)))
        }
        None => Ok(None),
    }
}

/// A change computed from a snapshot outside the writer, committed only while the entity's row is still the
/// one it was computed from.
struct Prepared {
    /// The row the change was computed from (None: the entity did not exist).
    base: Option<RawRow>,
    before: Option<Entity>,
    action: PreparedAction,
}

enum PreparedAction {
    Put(Entity, Box<PutPlan>),
    Delete(DeletePlan),
}

/// What [`prepare`] leaves to do: nothing (an answer already) or a write for the writer.
enum Snapshot {
    Answer(CasOutcome),
    Write(Box<Prepared>),
}

/// Run a modification on a snapshot read with a reader connection and prepare everything it writes: the
/// storage writer then only checks that the row is unchanged and writes (decoding, the closure, encoding and
/// rendering stay off the thread that serializes all writes).
fn prepare(
    c: &Connection,
    tenant: &str,
    id: &str,
    f: &RetryFn,
    view: Option<&ViewFn>,
) -> Result<Snapshot, StoreError> {
    let base = load_raw(c, tenant, id)?;
    let before = match &base {
        Some((_, blob, bytes)) => Some(doc::full(&doc::json_of(raw_ref(*blob, bytes))?)?),
        None => None,
    };
    let (change, rendered) = match f(before.as_ref()) {
        Ok(Change::PutRendered(e, v)) => (Change::Put(e), Some(v)),
        Ok(ch) => (ch, None),
        // Failing or keeping writes nothing: the answer holds at the snapshot's moment.
        Err(e) => return Ok(Snapshot::Answer(Err(e))),
    };
    let action = match change {
        Change::Keep => {
            return Ok(Snapshot::Answer(Ok(Modified {
                before: before.clone(),
                after: before,
            })))
        }
        Change::Put(new) | Change::PutRendered(new, _) => {
            let plan = plan_put(before.as_ref(), &new, view, rendered)?;
            PreparedAction::Put(new, Box::new(plan))
        }
        Change::Delete => match &before {
            Some(old) => PreparedAction::Delete(plan_delete(old)),
            None => return Ok(Snapshot::Answer(Ok(Modified::default()))),
        },
    };
    Ok(Snapshot::Write(Box::new(Prepared {
        base,
        before,
        action,
    })))
}

fn raw_ref(blob: bool, bytes: &[u8]) -> rusqlite::types::ValueRef<'_> {
    if blob {
        rusqlite::types::ValueRef::Blob(bytes)
    } else {
        rusqlite::types::ValueRef::Text(bytes)
    }
}

/// In the writer: apply a prepared change if the entity's row is still the snapshot's, else run the closure
/// again on the current state (so no concurrent change is ever lost).
fn apply_cas(
    c: &Connection,
    tenant: &str,
    id: &str,
    p: Prepared,
    f: RetryFn,
    view: Option<ViewFn>,
    journal: &Journal,
) -> Result<CasOutcome, StoreError> {
    let mut counts = BTreeMap::new();
    let out = apply_prepared(c, tenant, id, p, f, view.as_ref(), journal, &mut counts)?;
    write_counts(c, tenant, counts)?;
    Ok(out)
}

/// One item of a batch prepared outside the writer: answered from its snapshot, or a write to check and apply.
enum BatchItem {
    Answered(CasOutcome),
    Write(String, Box<Prepared>, RetryFn),
}

/// In the writer: [`apply_cas`] for every item of a batch, the summary counters written once.
fn apply_cas_many(
    c: &Connection,
    tenant: &str,
    items: Vec<BatchItem>,
    view: Option<&ViewFn>,
    journal: &Journal,
) -> Result<ModifyOutcome, StoreError> {
    let mut counts = BTreeMap::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            BatchItem::Answered(a) => a,
            BatchItem::Write(id, p, f) => {
                apply_prepared(c, tenant, &id, *p, f, view, journal, &mut counts)?
            }
        });
    }
    write_counts(c, tenant, counts)?;
    Ok(out)
}

/// Apply one prepared change (see [`apply_cas`]); summary counter changes go to `counts`.
#[allow(clippy::too_many_arguments)]
fn apply_prepared(
    c: &Connection,
    tenant: &str,
    id: &str,
    p: Prepared,
    f: RetryFn,
    view: Option<&ViewFn>,
    journal: &Journal,
    counts: &mut BTreeMap<crate::AttrKey, i64>,
) -> Result<CasOutcome, StoreError> {
    if load_raw(c, tenant, id)? != p.base {
        metrics::counter!("misto_sqlite_cas_conflicts_total").increment(1);
        let op: ModifyFn = Box::new(move |cur| f(cur));
        let out = apply_modify_counting(c, tenant, vec![(id.to_string(), op)], view, counts)?;
        journal.record_outcome(c, tenant, &out)?;
        return Ok(out
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(NgsiError::internal("storage returned no outcome"))));
    }
    // The journal takes the stored bytes of both sides as they are: nothing is encoded twice in the writer.
    let before_doc = p.base.as_ref().map(|(_, blob, bytes)| {
        if *blob {
            rusqlite::types::ValueRef::Blob(bytes)
        } else {
            rusqlite::types::ValueRef::Text(bytes)
        }
    });
    match &p.action {
        PreparedAction::Put(new, plan) if p.before.as_ref() != Some(new) => journal.record_raw(
            c,
            tenant,
            id,
            before_doc,
            Some(rusqlite::types::ValueRef::Blob(&plan.doc)),
        )?,
        PreparedAction::Delete(_) if p.before.is_some() => {
            journal.record_raw(c, tenant, id, before_doc, None)?
        }
        _ => {}
    }
    let seq = p.base.as_ref().map(|(seq, _, _)| *seq);
    let out = match p.action {
        PreparedAction::Put(new, plan) => {
            apply_put(c, tenant, id, seq, *plan, counts)?;
            Modified {
                before: p.before,
                after: Some(new),
            }
        }
        PreparedAction::Delete(plan) => {
            if let Some(seq) = seq {
                apply_delete(c, seq, plan, counts)?;
            }
            Modified {
                before: p.before,
                after: None,
            }
        }
    };
    Ok(Ok(out))
}

/// An entity's geo index entries: (GeoProperty, bounding box) per instance.
type GeoBoxes = Vec<(String, geo::Rect<f64>)>;

/// Everything storing an entity in place of another writes, computed from the two entities alone, so that it
/// can be prepared outside the writer.
struct PutPlan {
    doc: Vec<u8>,
    /// The filter head (`doc::head`; empty: none).
    head: Vec<u8>,
    expires: Option<String>,
    view: Option<Vec<u8>>,
    view_ctx: Option<i64>,
    /// The new type rows (None: as before).
    types: Option<Vec<String>>,
    /// The old entity's number of geo rows and the new boxes (None: as before).
    geo: Option<(usize, GeoBoxes)>,
    counts: Vec<(crate::AttrKey, i64)>,
    /// The entity's types and the attribute instances the change adds to its history.
    temporal_types: Vec<String>,
    instances: Vec<crate::temporal::NewInstance>,
}

fn plan_put(
    old: Option<&Entity>,
    new: &Entity,
    view: Option<&ViewFn>,
    rendered: Option<crate::View>,
) -> Result<PutPlan, StoreError> {
    let (view_json, view_ctx) = encode_view(view, rendered, new)?;
    let new_types = misto_ngsild::entity::types(new);
    let types = match old {
        Some(o) if misto_ngsild::entity::types(o) == new_types => None,
        _ => Some(new_types.into_iter().map(str::to_string).collect()),
    };
    // Most updates change values only: equal GeoProperty values and equal summary keys are checked without
    // parsing geometries or building keys.
    let geo = match old {
        Some(o) if geo_values(o) == geo_values(new) => None,
        _ => {
            let boxes = geo_boxes(new);
            match old.map(geo_boxes) {
                Some(before) if before == boxes => None,
                before => Some((before.map_or(0, |b| b.len()), boxes)),
            }
        }
    };
    let mut counts = BTreeMap::new();
    if !old.is_some_and(|o| same_keys(o, new)) {
        delta(old, Some(new), &mut counts);
    }
    let instances =
        crate::temporal::changed_instances(old, new, jiff::Timestamp::now().as_millisecond())?;
    Ok(PutPlan {
        temporal_types: if instances.is_empty() && types.is_none() {
            Vec::new()
        } else {
            crate::temporal::entity_types(new)
        },
        instances,
        doc: doc::encode(new)?,
        head: doc::head(new)?,
        expires: expires_of(new),
        view: view_json,
        view_ctx,
        types,
        geo,
        counts: nonzero(counts),
    })
}

/// Store a planned entity: insert it (no `seq`) or replace row `seq`.
fn apply_put(
    c: &Connection,
    tenant: &str,
    id: &str,
    seq: Option<i64>,
    plan: PutPlan,
    counts: &mut BTreeMap<crate::AttrKey, i64>,
) -> Result<(), StoreError> {
    let replacing = seq.is_some();
    let head = (!plan.head.is_empty()).then_some(&plan.head);
    let seq = match seq {
        None => {
            c.prepare_cached(
                "INSERT INTO entities (tenant, id, doc, expires_at, view, view_ctx, head) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![tenant, id, plan.doc, plan.expires, plan.view, plan.view_ctx, head])?;
            c.last_insert_rowid()
        }
        Some(seq) => {
            c.prepare_cached(
                "UPDATE entities SET doc = ?1, expires_at = ?2, view = ?3, view_ctx = ?4, head = ?5 WHERE seq = ?6",
            )?
            .execute(params![plan.doc, plan.expires, plan.view, plan.view_ctx, head, seq])?;
            seq
        }
    };
    if plan.types.is_some() || !plan.instances.is_empty() {
        temporal::record(
            c,
            tenant,
            id,
            &plan.temporal_types,
            plan.types.is_some(),
            &plan.instances,
        )?;
    }
    if let Some(types) = plan.types {
        if replacing {
            c.prepare_cached("DELETE FROM entity_types WHERE seq = ?1")?
                .execute(params![seq])?;
        }
        let mut ins = c.prepare_cached(
            "INSERT OR IGNORE INTO entity_types (tenant, type, seq) VALUES (?1, ?2, ?3)",
        )?;
        for t in types {
            ins.execute(params![tenant, t, seq])?;
        }
    }
    if let Some((old_n, boxes)) = plan.geo {
        delete_geo(c, seq, old_n)?;
        write_geo(c, seq, &boxes)?;
    }
    for (k, d) in plan.counts {
        *counts.entry(k).or_default() += d;
    }
    Ok(())
}

/// What deleting an entity changes beside its row: its number of geo rows and the counter deltas.
struct DeletePlan {
    geo_rows: usize,
    counts: Vec<(crate::AttrKey, i64)>,
}

fn plan_delete(old: &Entity) -> DeletePlan {
    let mut counts = BTreeMap::new();
    delta(Some(old), None, &mut counts);
    DeletePlan {
        geo_rows: geo_boxes(old).len(),
        counts: nonzero(counts),
    }
}

fn apply_delete(
    c: &Connection,
    seq: i64,
    plan: DeletePlan,
    counts: &mut BTreeMap<crate::AttrKey, i64>,
) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM entities WHERE seq = ?1")?
        .execute(params![seq])?;
    c.prepare_cached("DELETE FROM entity_types WHERE seq = ?1")?
        .execute(params![seq])?;
    delete_geo(c, seq, plan.geo_rows)?;
    for (k, d) in plan.counts {
        *counts.entry(k).or_default() += d;
    }
    Ok(())
}

/// The compressed view of an entity about to be stored and its context fingerprint (as SQLite's signed
/// integer), or NULLs.
fn encode_view(
    view: Option<&ViewFn>,
    rendered: Option<crate::View>,
    e: &Entity,
) -> Result<(Option<Vec<u8>>, Option<i64>), StoreError> {
    match rendered.or_else(|| view.and_then(|f| f(e))) {
        Some(v) => Ok((Some(doc::compress(&v.json)?), Some(v.ctx as i64))),
        None => Ok((None, None)),
    }
}

/// The entity, or its view when that was rendered with context fingerprint `ctx`.
fn load_found(
    c: &Connection,
    tenant: &str,
    id: &str,
    ctx: u64,
) -> Result<Option<Found>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT view_ctx = ?3, CASE WHEN view_ctx = ?3 THEN view ELSE doc END FROM entities WHERE tenant = ?1 AND id = ?2",
    )?;
    let mut rows = st.query(params![tenant, id, ctx as i64])?;
    match rows.next()? {
        Some(r) => found_of(r.get::<_, Option<bool>>(0)?.unwrap_or(false), r.get_ref(1)?).map(Some),
        None => Ok(None),
    }
}

fn found_of(is_view: bool, v: rusqlite::types::ValueRef<'_>) -> Result<Found, StoreError> {
    let json = doc::json_of(v)?;
    if is_view {
        Ok(Found::Rendered(json.into_owned()))
    } else {
        doc::full(&json).map(Found::Entity)
    }
}

/// Remove an entity's `n` geo instances by their exact ids (the R*Tree answers a rowid range only with a full
/// scan).
fn delete_geo(c: &Connection, seq: i64, n: usize) -> Result<(), StoreError> {
    let mut del = c.prepare_cached("DELETE FROM geo_rtree WHERE gid = ?1")?;
    for k in 0..n.min(GEO_SLOTS as usize) {
        del.execute(params![seq * GEO_SLOTS + k as i64])?;
    }
    Ok(())
}

/// The number that stands for a GeoProperty in the R*Tree's third dimension, created on first use.
fn geo_attr_id(c: &Connection, attr: &str) -> Result<i64, StoreError> {
    if let Some(id) = lookup_geo_attr(c, attr)? {
        return Ok(id);
    }
    c.prepare_cached("INSERT INTO geo_attrs (attr) VALUES (?1)")?
        .execute(params![attr])?;
    Ok(c.last_insert_rowid())
}

fn lookup_geo_attr(c: &Connection, attr: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT id FROM geo_attrs WHERE attr = ?1")?
            .query_row(params![attr], |r| r.get(0))
            .optional()?,
    )
}

/// Index an entity's geo boxes (its rows are gone or never were).
fn write_geo(
    c: &Connection,
    seq: i64,
    boxes: &[(String, geo::Rect<f64>)],
) -> Result<(), StoreError> {
    for (n, (attr, r)) in boxes.iter().enumerate().take(GEO_SLOTS as usize) {
        let a = geo_attr_id(c, attr)?;
        c.prepare_cached(
            "INSERT INTO geo_rtree (gid, minx, maxx, miny, maxy, mina, maxa) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?
        .execute(params![
            seq * GEO_SLOTS + n as i64,
            r.min().x,
            r.max().x,
            r.min().y,
            r.max().y,
            a
        ])?;
    }
    Ok(())
}

fn write_counts(
    c: &Connection,
    tenant: &str,
    counts: BTreeMap<crate::AttrKey, i64>,
) -> Result<(), StoreError> {
    let changes = nonzero(counts);
    if changes.is_empty() {
        return Ok(());
    }
    let mut up = c.prepare_cached(
        "INSERT INTO type_attr_counts (tenant, type, attr, kind, n) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, type, attr, kind) DO UPDATE SET n = n + excluded.n",
    )?;
    for ((t, a, k), d) in changes {
        up.execute(params![tenant, t, a, k, d])?;
    }
    c.prepare_cached("DELETE FROM type_attr_counts WHERE tenant = ?1 AND n <= 0")?
        .execute(params![tenant])?;
    Ok(())
}

/// Row ids already handled by a scan. Ids are trusted integers: a multiplicative hash instead of SipHash,
/// which showed in query profiles.
type SeqSet = std::collections::HashSet<i64, std::hash::BuildHasherDefault<SeqHasher>>;

#[derive(Default)]
struct SeqHasher(u64);

impl std::hash::Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

thread_local! {
    /// The `bbox_test` of the query this thread is scanning, for the SQL function `misto_box_ok`.
    static BOX_TEST: std::cell::RefCell<Option<crate::BoxTest>> = const { std::cell::RefCell::new(None) };
}

/// `misto_box_ok(minx, maxx, miny, maxy)`: the running query's `bbox_test` on an R*Tree box (true without one).
/// As a condition on the R*Tree alone, SQLite checks it before joining the entity row, so a refused box
/// costs neither the row nor its type lookup.
fn register_box_test(c: &Connection) -> Result<(), StoreError> {
    c.create_scalar_function(
        "misto_box_ok",
        4,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        |ctx| {
            let b = geo::Rect::new(
                (ctx.get::<f64>(0)?, ctx.get::<f64>(2)?),
                (ctx.get::<f64>(1)?, ctx.get::<f64>(3)?),
            );
            Ok(BOX_TEST.with(|t| t.borrow().as_ref().is_none_or(|test| test(&b))))
        },
    )?;
    Ok(())
}

/// Sets the thread's box test for one scan and clears it when dropped (also on errors).
struct BoxTestScope;

impl BoxTestScope {
    fn set(test: Option<&crate::BoxTest>) -> BoxTestScope {
        BOX_TEST.with(|t| *t.borrow_mut() = test.cloned());
        BoxTestScope
    }
}

impl Drop for BoxTestScope {
    fn drop(&mut self) {
        BOX_TEST.with(|t| *t.borrow_mut() = None);
    }
}

/// How a query finds its candidates: which index drives the scan, and in what order.
enum Driver {
    /// All entities of the tenant, in insertion order.
    Tenant,
    /// Entities of the given types, in insertion order (index entity_types).
    Types,
    /// Entities with the given ids.
    Ids,
    /// Entities whose geo bounding box meets the query box, in R*Tree order (no global order: a geo query
    /// needs only its first matches, and sorting every candidate would cost more than the query).
    Geo,
}

/// FROM/WHERE of the SQL-expressible part of a query and its parameters; the selected columns are
/// `e.seq, e.doc`.
fn candidate_sql(
    tenant: &str,
    q: &EntityQuery,
    geo_attr: i64,
) -> (Driver, String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut args: Vec<V> = Vec::new();
    let placeholders = |n: usize| vec!["?"; n.max(1)].join(",");
    let driver = if q.ids.is_some() {
        Driver::Ids
    } else if q.bbox.is_some() {
        Driver::Geo
    } else if q.types.is_some() {
        Driver::Types
    } else {
        Driver::Tenant
    };
    let mut sql = match driver {
        Driver::Geo => {
            let r = q
                .bbox
                .as_ref()
                .map(|(_, r)| *r)
                .unwrap_or_else(|| geo::Rect::new((0.0, 0.0), (0.0, 0.0)));
            args.push(V::Real(r.max().x));
            args.push(V::Real(r.min().x));
            args.push(V::Real(r.max().y));
            args.push(V::Real(r.min().y));
            args.push(V::Integer(geo_attr));
            args.push(V::Integer(geo_attr));
            args.push(V::Text(tenant.to_string()));
            format!(
                "FROM geo_rtree g JOIN entities e ON e.seq = g.gid / {GEO_SLOTS} WHERE g.minx <= ? AND g.maxx >= ? AND g.miny <= ? AND g.maxy >= ? AND g.mina <= ? AND g.maxa >= ? AND e.tenant = ?",
            )
        }
        Driver::Types => {
            let types = q.types.as_deref().unwrap_or_default();
            args.push(V::Text(tenant.to_string()));
            if types.len() > 1 {
                // An entity of several of the types has a row for each: select it once.
                args.push(V::Text(tenant.to_string()));
            }
            if types.is_empty() {
                args.push(V::Null);
            }
            args.extend(types.iter().map(|t| V::Text(t.clone())));
            if types.len() > 1 {
                format!(
                    "FROM entities e WHERE e.tenant = ? AND e.seq IN (SELECT t.seq FROM entity_types t WHERE t.tenant = ? AND t.type IN ({}))",
                    placeholders(types.len())
                )
            } else {
                format!(
                    "FROM entity_types t JOIN entities e ON e.seq = t.seq WHERE t.tenant = ? AND t.type IN ({})",
                    placeholders(types.len())
                )
            }
        }
        Driver::Ids | Driver::Tenant => {
            args.push(V::Text(tenant.to_string()));
            String::from("FROM entities e WHERE e.tenant = ?")
        }
    };
    if let Some(ids) = &q.ids {
        sql.push_str(&format!(" AND e.id IN ({})", placeholders(ids.len())));
        if ids.is_empty() {
            args.push(V::Null);
        }
        args.extend(ids.iter().map(|i| V::Text(i.clone())));
    }
    if let (Some(types), false) = (&q.types, matches!(driver, Driver::Types)) {
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM entity_types x WHERE x.tenant = e.tenant AND x.type IN ({}) AND x.seq = e.seq)",
            placeholders(types.len())
        ));
        if types.is_empty() {
            args.push(V::Null);
        }
        args.extend(types.iter().map(|t| V::Text(t.clone())));
    }
    if let (Some((_, r)), false) = (&q.bbox, matches!(driver, Driver::Geo)) {
        sql.push_str(&format!(
            " AND e.seq IN (SELECT gid / {GEO_SLOTS} FROM geo_rtree WHERE minx <= ? AND maxx >= ? AND miny <= ? AND maxy >= ? AND mina <= ? AND maxa >= ?)"
        ));
        args.push(V::Real(r.max().x));
        args.push(V::Real(r.min().x));
        args.push(V::Real(r.max().y));
        args.push(V::Real(r.min().y));
        args.push(V::Integer(geo_attr));
        args.push(V::Integer(geo_attr));
    }
    (driver, sql, args)
}

fn run_query(c: &Connection, tenant: &str, q: &EntityQuery) -> Result<QueryPage, StoreError> {
    // A GeoProperty never indexed has no number: -1 matches no box.
    let geo_attr = match &q.bbox {
        Some((attr, _)) => lookup_geo_attr(c, attr)?.unwrap_or(-1),
        None => -1,
    };
    let (driver, from, args) = candidate_sql(tenant, q, geo_attr);
    let ordered = !matches!(driver, Driver::Geo);
    let order = if ordered { " ORDER BY e.seq" } else { "" };
    // Whether the row's stored view was rendered with the reader's context, and the view.
    let view_cols = match q.view_ctx {
        Some(ctx) => format!("e.view_ctx = {}, e.view", ctx as i64),
        None => String::from("0, NULL"),
    };
    let mut page = QueryPage::default();
    match &q.filter {
        None => {
            if q.count {
                let sql = format!("SELECT count(DISTINCT e.seq) {from}");
                let n: i64 = c
                    .prepare_cached(&sql)?
                    .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
                page.total = Some(n as u64);
            }
            if q.limit > 0 {
                // SQLite takes LIMIT -1 for "no limit".
                let limit = i64::try_from(q.limit).unwrap_or(-1);
                let sql = format!(
                    "SELECT e.seq, e.doc, {view_cols} {from}{order} LIMIT {limit} OFFSET {}",
                    q.offset
                );
                let mut st = c.prepare_cached(&sql)?;
                let mut rows = st.query(params_from_iter(args.iter()))?;
                let mut seen = SeqSet::default();
                while let Some(r) = rows.next()? {
                    let seq: i64 = r.get(0)?;
                    if !ordered && !seen.insert(seq) {
                        continue;
                    }
                    push_row(q, r, None, &mut page)?;
                }
            }
        }
        Some(filter) => {
            // Ordered drivers page with a keyset on seq; the geo driver with offsets over a stable R*Tree order.
            // Column 4 is the filter head. The geo driver refuses boxes with `bbox_test` in SQL (the R*Tree's
            // box holds the instance's geometry: SQLite rounds its 32-bit bounds outwards). A refused instance
            // only rules out this row: another box of the same entity still gets it judged.
            let box_test = q.bbox_test.as_ref().filter(|_| !ordered);
            let sql = if ordered {
                format!("SELECT e.seq, e.doc, {view_cols}, e.head {from} AND e.seq > ?{order} LIMIT {SCAN_CHUNK}")
            } else if box_test.is_some() {
                format!("SELECT e.seq, e.doc, {view_cols}, e.head {from} AND misto_box_ok(g.minx, g.maxx, g.miny, g.maxy) LIMIT {SCAN_CHUNK} OFFSET ?")
            } else {
                format!(
                    "SELECT e.seq, e.doc, {view_cols}, e.head {from} LIMIT {SCAN_CHUNK} OFFSET ?"
                )
            };
            let _scope = BoxTestScope::set(box_test);
            let head_reads = q.filter_reads.as_ref().filter(|_| q.filter_values_only);
            let mut st = c.prepare_cached(&sql)?;
            let mut cursor: i64 = 0;
            let mut matched: u64 = 0;
            let mut seen = SeqSet::default();
            'scan: loop {
                let mut a = args.clone();
                a.push(rusqlite::types::Value::Integer(cursor));
                let mut rows = st.query(params_from_iter(a.iter()))?;
                let mut n = 0;
                while let Some(r) = rows.next()? {
                    n += 1;
                    let seq: i64 = r.get(0)?;
                    if ordered {
                        cursor = seq;
                    } else if !seen.insert(seq) {
                        continue;
                    }
                    // Judged from the head where the filter allows it and the row has one, else from the
                    // document (kept for the page, so it is inflated once).
                    let mut json = None;
                    let passes = match (head_reads, r.get_ref(4)?) {
                        (Some(names), rusqlite::types::ValueRef::Blob(h)) => {
                            filter(&doc::head_partial(
                                &doc::json_of(rusqlite::types::ValueRef::Blob(h))?,
                                names,
                            )?)
                        }
                        _ => {
                            let j = doc::json_of(r.get_ref(1)?)?;
                            let passes = match &q.filter_reads {
                                Some(names) => filter(&doc::partial(&j, names)?),
                                None => filter(&doc::full(&j)?),
                            };
                            json = Some(j);
                            passes
                        }
                    };
                    if !passes {
                        continue;
                    }
                    // Only entities on the page are parsed whole.
                    if matched as usize >= q.offset && page.len() < q.limit {
                        push_row(q, r, json.as_deref(), &mut page)?;
                    }
                    matched += 1;
                    if !q.count && page.len() >= q.limit {
                        break 'scan;
                    }
                }
                if !ordered {
                    cursor += n as i64;
                }
                if n < SCAN_CHUNK {
                    break;
                }
            }
            if q.count {
                page.total = Some(matched);
            }
        }
    }
    Ok(page)
}

/// Add a result row (`seq, doc, view matches, view`) to the page: its view when the query asked for views and
/// the row has one for the reader's context, else the entity (from `json` when the caller has inflated the
/// document already).
fn push_row(
    q: &EntityQuery,
    r: &rusqlite::Row<'_>,
    json: Option<&[u8]>,
    page: &mut QueryPage,
) -> Result<(), StoreError> {
    let entity = |r: &rusqlite::Row<'_>| match json {
        Some(j) => doc::full(j),
        None => decode_col(r, 1),
    };
    if q.view_ctx.is_none() {
        page.entities.push(entity(r)?);
    } else if r.get::<_, Option<bool>>(2)?.unwrap_or(false) {
        page.found.push(found_of(true, r.get_ref(3)?)?);
    } else {
        page.found.push(Found::Entity(entity(r)?));
    }
    Ok(())
}

fn apply_purge(
    c: &Connection,
    tenant: &str,
    q: &EntityQuery,
    journal: &Journal,
) -> Result<Vec<String>, StoreError> {
    let mut all = q.clone();
    all.offset = 0;
    all.limit = usize::MAX;
    all.count = false;
    let page = run_query(
        c,
        tenant,
        &EntityQuery {
            limit: usize::MAX,
            ..all
        },
    )?;
    let mut counts = BTreeMap::new();
    let mut ids = Vec::with_capacity(page.entities.len());
    for e in page.entities {
        let Some(id) = e.get("id").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        if let Some((seq, old)) = load(c, tenant, &id)? {
            apply_delete(c, seq, plan_delete(&old), &mut counts)?;
            journal.record(c, tenant, &id, Some(&old), None)?;
            ids.push(id);
        }
    }
    write_counts(c, tenant, counts)?;
    Ok(ids)
}

fn apply_expire(
    c: &Connection,
    now: &str,
    journal: &Journal,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut due: Vec<(i64, String, String, Entity)> = Vec::new();
    {
        let mut st = c.prepare_cached(
            "SELECT seq, tenant, id, doc FROM entities WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 10000",
        )?;
        let mut rows = st.query(params![now])?;
        while let Some(r) = rows.next()? {
            due.push((r.get(0)?, r.get(1)?, r.get(2)?, decode_col(r, 3)?));
        }
    }
    let mut out = Vec::with_capacity(due.len());
    let mut by_tenant: BTreeMap<String, BTreeMap<crate::AttrKey, i64>> = BTreeMap::new();
    for (seq, tenant, id, old) in due {
        apply_delete(
            c,
            seq,
            plan_delete(&old),
            by_tenant.entry(tenant.clone()).or_default(),
        )?;
        journal.record(c, &tenant, &id, Some(&old), None)?;
        out.push((tenant, id));
    }
    for (tenant, counts) in by_tenant {
        write_counts(c, &tenant, counts)?;
    }
    Ok(out)
}

#[async_trait]
impl EntityStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read("ping", |c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>, StoreError> {
        // A lookup by the unique (tenant, id) index takes microseconds: it runs on the calling thread, which
        // costs less than handing it to a blocking thread and back.
        let started = Instant::now();
        let c = self.readers.take()?;
        let out = load(&c, tenant, id).map(|r| r.map(|(_, e)| e));
        self.readers.give(c);
        observe("get", started);
        out
    }

    async fn get_found(
        &self,
        tenant: &str,
        id: &str,
        ctx: u64,
    ) -> Result<Option<Found>, StoreError> {
        let started = Instant::now();
        let c = self.readers.take()?;
        let out = load_found(&c, tenant, id, ctx);
        self.readers.give(c);
        observe("get", started);
        out
    }

    async fn modify_many_viewed(
        &self,
        tenant: &str,
        ops: Vec<(String, ModifyFn)>,
        view: Option<ViewFn>,
    ) -> Result<ModifyOutcome, StoreError> {
        let started = Instant::now();
        let tenant = tenant.to_string();
        let r = self
            .send(|reply| WriteMsg::Modify {
                tenant,
                ops,
                view,
                reply,
            })
            .await;
        observe("modify", started);
        r
    }

    async fn modify_retrying(
        &self,
        tenant: &str,
        id: &str,
        f: RetryFn,
        view: Option<ViewFn>,
    ) -> Result<CasOutcome, StoreError> {
        let started = Instant::now();
        // The snapshot is one lookup by the unique index plus CPU work: it runs on the calling thread (like
        // `get`), in parallel with other requests, instead of on the single writer.
        let c = self.readers.take()?;
        let snapshot = prepare(&c, tenant, id, &f, view.as_ref());
        self.readers.give(c);
        let prepared = match snapshot? {
            Snapshot::Answer(a) => {
                observe("modify", started);
                return Ok(a);
            }
            Snapshot::Write(p) => p,
        };
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let r = self
            .send(|reply| WriteMsg::Cas {
                tenant,
                id,
                prepared,
                f,
                view,
                reply,
            })
            .await;
        observe("modify", started);
        r
    }

    async fn modify_many_retrying(
        &self,
        tenant: &str,
        ops: Vec<(String, RetryFn)>,
        view: Option<ViewFn>,
    ) -> Result<ModifyOutcome, StoreError> {
        let started = Instant::now();
        // Snapshots, closures, encoding and rendering of the whole batch run on a blocking thread with a
        // reader connection, in parallel with other requests; the writer only checks and writes.
        let snapshot_view = view.clone();
        let t = tenant.to_string();
        let items = self
            .read("modify_prepare", move |c| {
                ops.into_iter()
                    .map(|(id, f)| {
                        Ok(match prepare(c, &t, &id, &f, snapshot_view.as_ref())? {
                            Snapshot::Answer(a) => BatchItem::Answered(a),
                            Snapshot::Write(p) => BatchItem::Write(id, p, f),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        let tenant = tenant.to_string();
        let r = self
            .send(|reply| WriteMsg::CasMany {
                tenant,
                items,
                view,
                reply,
            })
            .await;
        observe("modify", started);
        r
    }

    async fn query(&self, tenant: &str, q: &EntityQuery) -> Result<QueryPage, StoreError> {
        let (tenant, q) = (tenant.to_string(), q.clone());
        self.read("query", move |c| run_query(c, &tenant, &q)).await
    }

    async fn purge(&self, tenant: &str, q: &EntityQuery) -> Result<Vec<String>, StoreError> {
        let (tenant, query) = (tenant.to_string(), q.clone());
        self.send(|reply| WriteMsg::Purge {
            tenant,
            query,
            reply,
        })
        .await
    }

    async fn types(&self, tenant: &str) -> Result<Vec<TypeSummary>, StoreError> {
        let tenant = tenant.to_string();
        self.read("types", move |c| {
            let mut st = c.prepare_cached(
                "SELECT type, attr, kind, n FROM type_attr_counts WHERE tenant = ?1 AND type <> '' AND n > 0 ORDER BY type, attr, kind",
            )?;
            let rows = st.query_map(params![tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out: Vec<TypeSummary> = Vec::new();
            for row in rows {
                let (t, a, k, n) = row?;
                if out.last().map(|s| s.type_iri != t).unwrap_or(true) {
                    out.push(TypeSummary {
                        type_iri: t.clone(),
                        count: 0,
                        attributes: Vec::new(),
                    });
                }
                if let Some(s) = out.last_mut() {
                    if a.is_empty() {
                        s.count = n as u64;
                    } else {
                        s.attributes.push((a, k, n as u64));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn expire(&self, now: &str) -> Result<Vec<(String, String)>, StoreError> {
        let now = now.to_string();
        self.send(|reply| WriteMsg::Expire { now, reply }).await
    }

    async fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read("tenants", |c| {
            let mut st = c.prepare_cached(
                "SELECT tenant, n FROM type_attr_counts WHERE type = '' AND attr = '' AND n > 0 ORDER BY tenant",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
