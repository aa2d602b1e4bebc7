//! PostgreSQL side of [`crate::notify::NotifyStore`]: subscriptions, the change journal and the outbox.
//! Several misto nodes may share the database: journal entries are turned into notifications under a
//! transaction-level advisory lock, so entries two nodes read at once are stored as notifications only once.

use async_trait::async_trait;
use misto_ngsild::{Entity, NgsiError};
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};

use super::{decode, encode, PgStore};
use crate::notify::{
    DeliveryStatus, JournalEntry, NewNotification, NotifyStore, PendingNotification, Settle,
    StoredSubscription, SubscriptionKey, TimerClaim,
};
use crate::{Modified, StoreError};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Journal the changes of one modification, in its transaction, if the tenant has subscriptions.
pub(super) async fn journal(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    out: &[Result<Modified, NgsiError>],
) -> Result<(), StoreError> {
    let changed: Vec<&Modified> = out
        .iter()
        .flatten()
        .filter(|m| m.before != m.after)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let on: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE tenant = $1)")
            .bind(tenant)
            .fetch_one(&mut **tx)
            .await?;
    if !on {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(changed.len());
    let mut befores: Vec<Option<String>> = Vec::with_capacity(changed.len());
    let mut afters: Vec<Option<String>> = Vec::with_capacity(changed.len());
    for m in changed {
        let id = m
            .after
            .as_ref()
            .or(m.before.as_ref())
            .and_then(|e| e.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        ids.push(id);
        befores.push(m.before.as_ref().map(encode).transpose()?);
        afters.push(m.after.as_ref().map(encode).transpose()?);
    }
    sqlx::query(
        "INSERT INTO change_journal (tenant, id, at_ms, before, after)
         SELECT $1, i, $2, b, a FROM UNNEST($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS u(i, b, a, n) ORDER BY n",
    )
    .bind(tenant)
    .bind(now_ms())
    .bind(&ids)
    .bind(&befores)
    .bind(&afters)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SUB_COLUMNS: &str =
    "tenant, id, doc, times_sent, times_failed, last_notification, last_success, last_failure";

fn sub_of(r: &sqlx::postgres::PgRow) -> Result<StoredSubscription, StoreError> {
    let doc: String = r.try_get(2)?;
    Ok(StoredSubscription {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        doc: serde_json::from_str(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        status: DeliveryStatus {
            times_sent: r.try_get::<i64, _>(3)? as u64,
            times_failed: r.try_get::<i64, _>(4)? as u64,
            last_notification: r.try_get(5)?,
            last_success: r.try_get(6)?,
            last_failure: r.try_get(7)?,
        },
    })
}

fn entity_of(s: Option<String>) -> Result<Option<Entity>, StoreError> {
    s.as_deref().map(decode).transpose()
}

/// A subscription was created, replaced or deleted: a new version (which other nodes notice), and its timer
/// starts afresh.
async fn subscription_changed(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE subscriptions_version SET v = v + 1")
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM subscription_timers WHERE tenant = $1 AND subscription_id = $2")
        .bind(tenant)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The advisory lock key under which one node at a time consumes the journal.
const JOURNAL_LOCK: i64 = 0x6d69_7374_6f4a; // "mistoJ"

#[async_trait]
impl NotifyStore for PgStore {
    async fn put_subscription(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError> {
        let text = doc.to_string();
        let mut tx = self.pool.begin().await?;
        let sql = if create {
            "INSERT INTO subscriptions (tenant, id, doc) VALUES ($1, $2, $3) ON CONFLICT (tenant, id) DO NOTHING"
        } else {
            "INSERT INTO subscriptions (tenant, id, doc) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = EXCLUDED.doc"
        };
        let r = sqlx::query(sql)
            .bind(tenant)
            .bind(id)
            .bind(&text)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        subscription_changed(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(sub_of).transpose()
    }

    async fn list_subscriptions(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE $1::text IS NULL OR tenant = $1 ORDER BY seq"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(sub_of).collect()
    }

    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Outbox rows first, then the subscription: the order in which a delivery outcome locks them, so a
        // deletion during a delivery waits instead of deadlocking.
        sqlx::query("DELETE FROM outbox WHERE tenant = $1 AND subscription_id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM subscriptions WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            sqlx::query("DELETE FROM delivery_leases WHERE tenant = $1 AND subscription_id = $2")
                .bind(tenant)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            subscription_changed(&mut tx, tenant, id).await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn journal_read(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, tenant, id, at_ms, before, after FROM change_journal ORDER BY seq LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JournalEntry {
                    seq: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    id: r.try_get(2)?,
                    at_ms: r.try_get(3)?,
                    before: entity_of(r.try_get(4)?)?,
                    after: entity_of(r.try_get(5)?)?,
                })
            })
            .collect()
    }

    async fn journal_commit(
        &self,
        consumed: Vec<i64>,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Another node consuming the same entries at the same moment would notify them twice: the lock makes
        // the second one find them gone and store nothing.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(JOURNAL_LOCK)
            .execute(&mut *tx)
            .await?;
        // Exactly the entries read: one with a lower seq that committed after the read stays for the next.
        let removed = sqlx::query("DELETE FROM change_journal WHERE seq = ANY($1)")
            .bind(&consumed)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 && !consumed.is_empty() {
            return Ok(());
        }
        let created = now_ms();
        for n in &notifications {
            sqlx::query(
                "INSERT INTO outbox (tenant, subscription_id, payload, created_ms, due_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&n.tenant)
            .bind(&n.subscription_id)
            .bind(n.payload.to_string())
            .bind(created)
            .bind(n.due_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_next(
        &self,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<Option<PendingNotification>, StoreError> {
        let row = sqlx::query(
            "SELECT id, tenant, subscription_id, payload, attempts, created_ms, due_ms FROM outbox
             WHERE tenant = $1 AND subscription_id = $2 ORDER BY id LIMIT 1",
        )
        .bind(tenant)
        .bind(subscription_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pending_of).transpose()
    }

    async fn outbox_heads(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant, subscription_id, payload, attempts, created_ms, due_ms FROM (
                 SELECT DISTINCT ON (tenant, subscription_id) * FROM outbox ORDER BY tenant, subscription_id, id) h
             WHERE due_ms <= $1 ORDER BY id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_of).collect()
    }

    async fn outbox_settle(&self, id: i64, outcome: Settle) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String, String)> = match &outcome {
            Settle::Retry { due_ms, .. } => {
                sqlx::query_as(
                    "UPDATE outbox SET attempts = attempts + 1, due_ms = $2 WHERE id = $1 RETURNING tenant, subscription_id",
                )
                .bind(id)
                .bind(due_ms)
                .fetch_optional(&mut *tx)
                .await?
            }
            _ => {
                sqlx::query_as("DELETE FROM outbox WHERE id = $1 RETURNING tenant, subscription_id")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
            }
        };
        let Some((tenant, sub)) = row else {
            return Ok(());
        };
        let (sql, at) = match &outcome {
            Settle::Delivered { at } => (
                "UPDATE subscriptions SET times_sent = times_sent + 1, last_notification = $3, last_success = $3 WHERE tenant = $1 AND id = $2",
                at,
            ),
            Settle::Retry { at, .. } | Settle::Failed { at } => (
                "UPDATE subscriptions SET times_failed = times_failed + 1, last_notification = $3, last_failure = $3 WHERE tenant = $1 AND id = $2",
                at,
            ),
        };
        sqlx::query(sql)
            .bind(&tenant)
            .bind(&sub)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_depth(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    fn shared(&self) -> bool {
        true
    }

    async fn subscriptions_version(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT v FROM subscriptions_version")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn lease_claim(
        &self,
        node: &str,
        subs: &[SubscriptionKey],
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SubscriptionKey>, StoreError> {
        // One row may be touched once per statement, and rows are locked in one order on every node (no
        // deadlock between two nodes claiming overlapping sets).
        let mut keys = subs.to_vec();
        keys.sort();
        keys.dedup();
        let (tenants, ids): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "INSERT INTO delivery_leases (tenant, subscription_id, node, until_ms)
             SELECT t, s, $3, $4 FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY AS u(t, s, n) ORDER BY n
             ON CONFLICT (tenant, subscription_id) DO UPDATE SET node = EXCLUDED.node, until_ms = EXCLUDED.until_ms
             WHERE delivery_leases.until_ms <= $5 OR delivery_leases.node = EXCLUDED.node
             RETURNING tenant, subscription_id",
        )
        .bind(&tenants)
        .bind(&ids)
        .bind(node)
        .bind(until_ms)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn lease_renew(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE delivery_leases SET until_ms = $4 WHERE tenant = $1 AND subscription_id = $2 AND node = $3",
        )
        .bind(tenant)
        .bind(subscription_id)
        .bind(node)
        .bind(until_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn lease_release(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM delivery_leases WHERE tenant = $1 AND subscription_id = $2 AND node = $3",
        )
        .bind(tenant)
        .bind(subscription_id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn timer_claim(
        &self,
        tenant: &str,
        subscription_id: &str,
        now_ms: i64,
        every_ms: i64,
    ) -> Result<TimerClaim, StoreError> {
        let next = now_ms.saturating_add(every_ms);
        // Claimed: the row the upsert wrote. Not claimed: the timer as it stands (a row another node inserted
        // after this statement's snapshot is not seen; then the slot is simply not ours).
        let row: Option<(bool, i64)> = sqlx::query_as(
            "WITH up AS (
                 INSERT INTO subscription_timers (tenant, subscription_id, next_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, subscription_id) DO UPDATE SET next_ms = EXCLUDED.next_ms
                 WHERE subscription_timers.next_ms <= $4
                 RETURNING next_ms)
             SELECT true, next_ms FROM up
             UNION ALL
             SELECT false, next_ms FROM subscription_timers
             WHERE tenant = $1 AND subscription_id = $2 AND NOT EXISTS (SELECT 1 FROM up)",
        )
        .bind(tenant)
        .bind(subscription_id)
        .bind(next)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        let (claimed, next_ms) = row.unwrap_or((false, next));
        Ok(TimerClaim { claimed, next_ms })
    }
}

fn pending_of(r: &sqlx::postgres::PgRow) -> Result<PendingNotification, StoreError> {
    let payload: String = r.try_get(3)?;
    Ok(PendingNotification {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        subscription_id: r.try_get(2)?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: r.try_get::<i32, _>(4)? as u32,
        created_ms: r.try_get(5)?,
        due_ms: r.try_get(6)?,
    })
}
