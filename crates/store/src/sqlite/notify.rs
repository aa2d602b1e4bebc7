//! SQLite side of [`crate::notify::NotifyStore`]: subscriptions, the change journal and the outbox.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use misto_ngsild::Entity;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{doc, SqliteStore, WriteMsg};
use crate::notify::{
    DeliveryStatus, JournalEntry, NewNotification, NotifyStore, PendingNotification, Settle,
    StoredSubscription, SubscriptionKey, TimerClaim,
};
use crate::StoreError;

/// Which tenants have subscriptions, hence journal their changes. Shared by the store (which changes it when
/// subscriptions come and go, inside the writer) and the writer thread (which reads it per change).
#[derive(Clone, Default)]
pub(super) struct Journal {
    tenants: Arc<RwLock<HashSet<String>>>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Journal {
    pub(super) fn load(c: &Connection) -> Result<Journal, StoreError> {
        let mut st = c.prepare("SELECT DISTINCT tenant FROM subscriptions")?;
        let tenants = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(Journal {
            tenants: Arc::new(RwLock::new(tenants)),
        })
    }

    fn is_on(&self, tenant: &str) -> bool {
        self.tenants
            .read()
            .map(|t| t.contains(tenant))
            .unwrap_or(true)
    }

    /// Re-read whether `tenant` has subscriptions (after one was added or removed, in the writer).
    fn refresh(&self, c: &Connection, tenant: &str) -> Result<(), StoreError> {
        let has: bool = c.query_row(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE tenant = ?1)",
            params![tenant],
            |r| r.get(0),
        )?;
        if let Ok(mut t) = self.tenants.write() {
            if has {
                t.insert(tenant.to_string());
            } else {
                t.remove(tenant);
            }
        }
        Ok(())
    }

    /// Journal one change if the tenant has subscriptions.
    pub(super) fn record(
        &self,
        c: &Connection,
        tenant: &str,
        id: &str,
        before: Option<&Entity>,
        after: Option<&Entity>,
    ) -> Result<(), StoreError> {
        if !self.is_on(tenant) {
            return Ok(());
        }
        let enc = |e: Option<&Entity>| e.map(doc::encode).transpose();
        c.prepare_cached(
            "INSERT INTO change_journal (tenant, id, at_ms, before, after) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![tenant, id, now_ms(), enc(before)?, enc(after)?])?;
        Ok(())
    }

    /// Journal one change from documents already encoded as stored (compressed blob or JSON text).
    pub(super) fn record_raw(
        &self,
        c: &Connection,
        tenant: &str,
        id: &str,
        before: Option<rusqlite::types::ValueRef<'_>>,
        after: Option<rusqlite::types::ValueRef<'_>>,
    ) -> Result<(), StoreError> {
        if !self.is_on(tenant) {
            return Ok(());
        }
        c.prepare_cached(
            "INSERT INTO change_journal (tenant, id, at_ms, before, after) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            tenant,
            id,
            now_ms(),
            before.map(rusqlite::types::ToSqlOutput::Borrowed),
            after.map(rusqlite::types::ToSqlOutput::Borrowed)
        ])?;
        Ok(())
    }

    /// Journal the changes of a modification (operations that changed nothing are not changes).
    pub(super) fn record_outcome(
        &self,
        c: &Connection,
        tenant: &str,
        out: &[Result<crate::Modified, misto_ngsild::NgsiError>],
    ) -> Result<(), StoreError> {
        if !self.is_on(tenant) {
            return Ok(());
        }
        for m in out.iter().flatten() {
            if m.before == m.after {
                continue;
            }
            let id = m
                .after
                .as_ref()
                .or(m.before.as_ref())
                .and_then(|e| e.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.record(c, tenant, id, m.before.as_ref(), m.after.as_ref())?;
        }
        Ok(())
    }
}

impl SqliteStore {
    /// Run `f` in the writer's transaction and return its result.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.send(|reply| WriteMsg::Run {
            f: Box::new(move |c| {
                let v = f(c)?;
                if let Ok(mut s) = out.lock() {
                    *s = Some(v);
                }
                Ok(())
            }),
            reply,
        })
        .await?;
        let v = slot.lock().map_err(|_| StoreError::Closed)?.take();
        v.ok_or_else(|| StoreError::Other("the writer returned no result".into()))
    }
}

fn parse_doc(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

const SUB_COLUMNS: &str =
    "tenant, id, doc, times_sent, times_failed, last_notification, last_success, last_failure";

fn sub_of(r: &rusqlite::Row<'_>) -> Result<StoredSubscription, StoreError> {
    Ok(StoredSubscription {
        tenant: r.get(0)?,
        id: r.get(1)?,
        doc: parse_doc(&r.get::<_, String>(2)?)?,
        status: DeliveryStatus {
            times_sent: r.get::<_, i64>(3)? as u64,
            times_failed: r.get::<_, i64>(4)? as u64,
            last_notification: r.get(5)?,
            last_success: r.get(6)?,
            last_failure: r.get(7)?,
        },
    })
}

fn pending_of(r: &rusqlite::Row<'_>) -> Result<PendingNotification, StoreError> {
    Ok(PendingNotification {
        id: r.get(0)?,
        tenant: r.get(1)?,
        subscription_id: r.get(2)?,
        payload: parse_doc(&r.get::<_, String>(3)?)?,
        attempts: r.get::<_, i64>(4)? as u32,
        created_ms: r.get(5)?,
        due_ms: r.get(6)?,
    })
}

fn blob_entity(v: rusqlite::types::ValueRef<'_>) -> Result<Option<Entity>, StoreError> {
    match v {
        rusqlite::types::ValueRef::Null => Ok(None),
        v => Ok(Some(doc::full(&doc::json_of(v)?)?)),
    }
}

/// A subscription was created, replaced or deleted: a new version, and its timer starts afresh.
fn subscription_changed(c: &Connection, tenant: &str, id: &str) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE subscriptions_version SET v = v + 1")?
        .execute([])?;
    c.prepare_cached("DELETE FROM subscription_timers WHERE tenant = ?1 AND subscription_id = ?2")?
        .execute(params![tenant, id])?;
    Ok(())
}

#[async_trait]
impl NotifyStore for SqliteStore {
    async fn put_subscription(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError> {
        let (tenant, id, text) = (tenant.to_string(), id.to_string(), doc.to_string());
        let journal = self.journal.clone();
        self.write(move |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE tenant = ?1 AND id = ?2)",
                params![tenant, id],
                |r| r.get(0),
            )?;
            if exists && create {
                return Ok(false);
            }
            if exists {
                c.prepare_cached(
                    "UPDATE subscriptions SET doc = ?3 WHERE tenant = ?1 AND id = ?2",
                )?
                .execute(params![tenant, id, text])?;
            } else {
                c.prepare_cached(
                    "INSERT INTO subscriptions (tenant, id, doc) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![tenant, id, text])?;
            }
            subscription_changed(c, &tenant, &id)?;
            journal.refresh(c, &tenant)?;
            Ok(true)
        })
        .await
    }

    async fn get_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read("subscription", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SUB_COLUMNS} FROM subscriptions WHERE tenant = ?1 AND id = ?2"
            ))?;
            let mut rows = st.query(params![tenant, id])?;
            match rows.next()? {
                Some(r) => Ok(Some(sub_of(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let tenant = tenant.map(str::to_string);
        self.read("subscriptions", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {SUB_COLUMNS} FROM subscriptions WHERE ?1 IS NULL OR tenant = ?1 ORDER BY seq"
            ))?;
            let mut rows = st.query(params![tenant])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(sub_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let journal = self.journal.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM subscriptions WHERE tenant = ?1 AND id = ?2")?
                .execute(params![tenant, id])?;
            c.prepare_cached("DELETE FROM outbox WHERE tenant = ?1 AND subscription_id = ?2")?
                .execute(params![tenant, id])?;
            c.prepare_cached(
                "DELETE FROM delivery_leases WHERE tenant = ?1 AND subscription_id = ?2",
            )?
            .execute(params![tenant, id])?;
            subscription_changed(c, &tenant, &id)?;
            journal.refresh(c, &tenant)?;
            Ok(n > 0)
        })
        .await
    }

    async fn journal_read(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        self.read("journal", move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, tenant, id, at_ms, before, after FROM change_journal ORDER BY seq LIMIT ?1",
            )?;
            let mut rows = st.query(params![limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(JournalEntry {
                    seq: r.get(0)?,
                    tenant: r.get(1)?,
                    id: r.get(2)?,
                    at_ms: r.get(3)?,
                    before: blob_entity(r.get_ref(4)?)?,
                    after: blob_entity(r.get_ref(5)?)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn journal_commit(
        &self,
        consumed: Vec<i64>,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut removed = 0;
            for seq in &consumed {
                removed += c
                    .prepare_cached("DELETE FROM change_journal WHERE seq = ?1")?
                    .execute(params![seq])?;
            }
            if removed == 0 && !consumed.is_empty() {
                return Ok(());
            }
            let created = now_ms();
            for n in &notifications {
                c.prepare_cached(
                    "INSERT INTO outbox (tenant, subscription_id, payload, created_ms, due_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    n.tenant,
                    n.subscription_id,
                    n.payload.to_string(),
                    created,
                    n.due_ms
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn outbox_next(
        &self,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<Option<PendingNotification>, StoreError> {
        let (tenant, sub) = (tenant.to_string(), subscription_id.to_string());
        self.read("outbox", move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, tenant, subscription_id, payload, attempts, created_ms, due_ms FROM outbox
                 WHERE tenant = ?1 AND subscription_id = ?2 ORDER BY id LIMIT 1",
            )?;
            let mut rows = st.query(params![tenant, sub])?;
            match rows.next()? {
                Some(r) => Ok(Some(pending_of(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn outbox_heads(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, StoreError> {
        self.read("outbox", move |c| {
            // The heads come from the (tenant, subscription_id, id) index alone; only they are read whole.
            let mut st = c.prepare_cached(
                "SELECT o.id, o.tenant, o.subscription_id, o.payload, o.attempts, o.created_ms, o.due_ms
                 FROM (SELECT min(id) AS id FROM outbox GROUP BY tenant, subscription_id) h
                 JOIN outbox o ON o.id = h.id
                 WHERE o.due_ms <= ?1 ORDER BY o.id LIMIT ?2",
            )?;
            let mut rows = st.query(params![now_ms, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(pending_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_settle(&self, id: i64, outcome: Settle) -> Result<(), StoreError> {
        self.write(move |c| {
            let row: Option<(String, String)> = c
                .prepare_cached("SELECT tenant, subscription_id FROM outbox WHERE id = ?1")?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((tenant, sub)) = row else {
                return Ok(());
            };
            match &outcome {
                Settle::Delivered { at } => {
                    c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute(params![id])?;
                    c.prepare_cached(
                        "UPDATE subscriptions SET times_sent = times_sent + 1, last_notification = ?3, last_success = ?3
                         WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant, sub, at])?;
                }
                Settle::Retry { at, due_ms } => {
                    c.prepare_cached(
                        "UPDATE outbox SET attempts = attempts + 1, due_ms = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, due_ms])?;
                    c.prepare_cached(
                        "UPDATE subscriptions SET times_failed = times_failed + 1, last_notification = ?3, last_failure = ?3
                         WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant, sub, at])?;
                }
                Settle::Failed { at } => {
                    c.prepare_cached("DELETE FROM outbox WHERE id = ?1")?.execute(params![id])?;
                    c.prepare_cached(
                        "UPDATE subscriptions SET times_failed = times_failed + 1, last_notification = ?3, last_failure = ?3
                         WHERE tenant = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant, sub, at])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        self.read("outbox", |c| {
            let n: i64 = c.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        self.read("subscriptions", |c| {
            Ok(c.query_row("SELECT v FROM subscriptions_version", [], |r| r.get(0))?)
        })
        .await
    }

    async fn lease_claim(
        &self,
        node: &str,
        subs: &[SubscriptionKey],
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SubscriptionKey>, StoreError> {
        let (node, subs) = (node.to_string(), subs.to_vec());
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO delivery_leases (tenant, subscription_id, node, until_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, subscription_id) DO UPDATE SET node = excluded.node, until_ms = excluded.until_ms
                 WHERE delivery_leases.until_ms <= ?5 OR delivery_leases.node = excluded.node",
            )?;
            let mut out = Vec::new();
            for (t, s) in subs {
                if st.execute(params![t, s, node, until_ms, now_ms])? == 1 && !out.contains(&(t.clone(), s.clone())) {
                    out.push((t, s));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn lease_renew(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (node, tenant, sub) = (
            node.to_string(),
            tenant.to_string(),
            subscription_id.to_string(),
        );
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE delivery_leases SET until_ms = ?4 WHERE tenant = ?1 AND subscription_id = ?2 AND node = ?3",
                )?
                .execute(params![tenant, sub, node, until_ms])?;
            Ok(n == 1)
        })
        .await
    }

    async fn lease_release(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<(), StoreError> {
        let (node, tenant, sub) = (
            node.to_string(),
            tenant.to_string(),
            subscription_id.to_string(),
        );
        self.write(move |c| {
            c.prepare_cached(
                "DELETE FROM delivery_leases WHERE tenant = ?1 AND subscription_id = ?2 AND node = ?3",
            )?
            .execute(params![tenant, sub, node])?;
            Ok(())
        })
        .await
    }

    async fn timer_claim(
        &self,
        tenant: &str,
        subscription_id: &str,
        now_ms: i64,
        every_ms: i64,
    ) -> Result<TimerClaim, StoreError> {
        let (tenant, sub) = (tenant.to_string(), subscription_id.to_string());
        self.write(move |c| {
            let next = now_ms.saturating_add(every_ms);
            let claimed = c
                .prepare_cached(
                    "INSERT INTO subscription_timers (tenant, subscription_id, next_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant, subscription_id) DO UPDATE SET next_ms = excluded.next_ms
                     WHERE subscription_timers.next_ms <= ?4",
                )?
                .execute(params![tenant, sub, next, now_ms])?
                == 1;
            if claimed {
                return Ok(TimerClaim { claimed, next_ms: next });
            }
            let next_ms: i64 = c.query_row(
                "SELECT next_ms FROM subscription_timers WHERE tenant = ?1 AND subscription_id = ?2",
                params![tenant, sub],
                |r| r.get(0),
            )?;
            Ok(TimerClaim { claimed, next_ms })
        })
        .await
    }
}
