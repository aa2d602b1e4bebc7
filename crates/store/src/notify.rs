//! Storage behind subscriptions and their notifications: the subscriptions themselves, a **change journal**
//! written in the same transaction as every entity change of a tenant that has subscriptions, and an
//! **outbox** of notifications waiting to be delivered.
//!
//! Why a journal: a change that was committed must be notified even if the process dies right after the
//! commit. The journal row commits with the change; the notifier turns journal rows into outbox rows and
//! removes them in one transaction ([`NotifyStore::journal_commit`]); a notification leaves the outbox only
//! when it was delivered or finally failed ([`NotifyStore::outbox_settle`]). Every step is at-least-once.

use async_trait::async_trait;
use misto_ngsild::Entity;
use serde_json::Value;

use crate::StoreError;

/// A stored subscription: its document in the broker's internal form (opaque to the store) and delivery
/// status counters kept by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubscription {
    pub tenant: String,
    pub id: String,
    pub doc: Value,
    pub status: DeliveryStatus,
}

/// Counters and timestamps of a subscription's deliveries (RFC 3339 UTC strings).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryStatus {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_notification: Option<String>,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
}

/// One committed entity change of a journaled tenant. `before`/`after` are None where the entity did not
/// exist (creation, deletion).
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub seq: i64,
    pub tenant: String,
    pub id: String,
    /// Commit time, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub before: Option<Entity>,
    pub after: Option<Entity>,
}

/// A notification to be stored in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub tenant: String,
    pub subscription_id: String,
    /// What the notifier needs to send it (its own format, opaque to the store).
    pub payload: Value,
    /// When it first became due (ms since the epoch).
    pub due_ms: i64,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    pub id: i64,
    pub tenant: String,
    pub subscription_id: String,
    pub payload: Value,
    pub attempts: u32,
    pub created_ms: i64,
    pub due_ms: i64,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// The receiver took it: the notification leaves the outbox; `at` becomes lastSuccess/lastNotification.
    Delivered { at: String },
    /// It failed and will be tried again at `due_ms`; `at` becomes lastFailure.
    Retry { at: String, due_ms: i64 },
    /// It failed for good (too old, or the subscription is gone): it leaves the outbox, counted as failed.
    Failed { at: String },
}

/// A subscription by tenant and id: what delivery leases are taken on.
pub type SubscriptionKey = (String, String);

/// The answer to [`NotifyStore::timer_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerClaim {
    /// This caller may notify now (and has moved the timer on).
    pub claimed: bool,
    /// When the subscription may next be notified (ms since the epoch).
    pub next_ms: i64,
}

#[async_trait]
pub trait NotifyStore: Send + Sync + 'static {
    /// Whether several misto processes may share this store (PostgreSQL). The notifier then coordinates
    /// through the store: the subscriptions version, delivery leases and timers below. A store only one process
    /// opens (SQLite) implements them too, but the notifier does not pay for them there.
    fn shared(&self) -> bool {
        false
    }

    /// Create (`create`: fail with Ok(false) when the id exists) or replace a subscription's document. The
    /// status counters of an existing subscription are kept.
    async fn put_subscription(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError>;

    async fn get_subscription(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredSubscription>, StoreError>;

    /// Subscriptions of one tenant, or of every tenant (None), in creation order.
    async fn list_subscriptions(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<StoredSubscription>, StoreError>;

    /// Remove a subscription and its pending notifications; false when it did not exist.
    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// The oldest journal entries, at most `limit`.
    async fn journal_read(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError>;

    /// In one transaction: store `notifications` in the outbox and remove the journal entries `consumed` (the
    /// ones read, by `seq` — not a range: on PostgreSQL an entry with a lower `seq` may commit after a higher
    /// one was read, and must stay for the next read). When every consumed entry is gone already (another
    /// node consumed them), nothing is stored; an empty `consumed` stores notifications that come from no
    /// journal entry (periodic ones).
    async fn journal_commit(
        &self,
        consumed: Vec<i64>,
        notifications: Vec<NewNotification>,
    ) -> Result<(), StoreError>;

    /// The oldest pending notification of one subscription, due or not (what its delivery sends next).
    async fn outbox_next(
        &self,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<Option<PendingNotification>, StoreError>;

    /// For each subscription with pending notifications, its oldest one if that is due at `now_ms` (so that
    /// one subscription's notifications go out in order, and a retried one holds back those behind it).
    async fn outbox_heads(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, StoreError>;

    /// Record how an attempt ended, and update the subscription's status counters.
    async fn outbox_settle(&self, id: i64, outcome: Settle) -> Result<(), StoreError>;

    /// Notifications waiting in the outbox (all tenants).
    async fn outbox_depth(&self) -> Result<u64, StoreError>;

    /// A number that changes, in the same transaction, whenever a subscription is created, replaced or
    /// deleted: a node compares it with the one its cached subscriptions were loaded at.
    async fn subscriptions_version(&self) -> Result<i64, StoreError>;

    /// Take the delivery leases of `subs` for `node` until `until_ms` where they are free (none, expired at
    /// `now_ms`, or `node`'s own already); returns the ones taken. While a node holds a subscription's lease,
    /// no other node delivers its notifications, which keeps them in order and sends each once.
    async fn lease_claim(
        &self,
        node: &str,
        subs: &[SubscriptionKey],
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<SubscriptionKey>, StoreError>;

    /// Extend `node`'s lease on a subscription to `until_ms`; false when the lease is no longer `node`'s
    /// (it expired and another node took it).
    async fn lease_renew(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Give `node`'s lease on a subscription up (nothing happens when it is not `node`'s).
    async fn lease_release(
        &self,
        node: &str,
        tenant: &str,
        subscription_id: &str,
    ) -> Result<(), StoreError>;

    /// Claim the subscription's next notification slot: when its timer is due at `now_ms` (or it has none)
    /// move it to `now_ms + every_ms` and answer claimed. One caller in the cluster wins each slot: what
    /// fires `timeInterval` subscriptions once per interval and throttles cluster-wide. Replacing or deleting
    /// the subscription resets its timer.
    async fn timer_claim(
        &self,
        tenant: &str,
        subscription_id: &str,
        now_ms: i64,
        every_ms: i64,
    ) -> Result<TimerClaim, StoreError>;
}
