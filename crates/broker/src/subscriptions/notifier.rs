//! Turning journaled changes into notifications and delivering them (issue 3's delivery contract).
//!
//! - The **journal loop** reads committed changes in commit order, matches them against the tenant's
//!   subscriptions and stores the resulting notifications in the outbox, removing the journal entries in
//!   the same transaction. A crash at any point repeats work; it never loses a change.
//! - The **delivery loop** takes, per subscription, the oldest pending notification and sends it; one
//!   subscription has at most one notification in flight, so its notifications arrive in order, and a slow
//!   or dead receiver only holds back its own subscription. A failed attempt is retried with exponential
//!   backoff until it succeeds or is older than the configured maximum age, when it is recorded as failed.
//! - The **periodic loop** sends `timeInterval` subscriptions their matching entities.
//!
//! On a store several nodes share (PostgreSQL, see docs/cluster.md) the same loops run on every node and
//! coordinate through the store: a node reloads its cached subscriptions when the store's subscriptions
//! version moved (checked before matching journal entries, so a change is never matched against a stale
//! cache), delivers a subscription only while it holds the subscription's delivery lease, and claims
//! `timeInterval` firings and throttling slots from the subscription's timer. The cluster bus only makes
//! the other nodes react sooner.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use misto_ngsild::{validate, Context};
use misto_store::notify::{NewNotification, PendingNotification, Settle};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::index::TenantSubscriptions;
use super::matching::Compiled;
use super::mqtt;
use super::Record;
use crate::bus::{Bus, Envelope, Event};
use crate::Broker;

/// Tunables of delivery.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// A notification not delivered within this time is recorded as failed.
    pub max_age: Duration,
    /// Timeout of one delivery attempt.
    pub attempt_timeout: Duration,
    /// Notifications in flight at once (each to a different subscription).
    pub concurrency: usize,
    /// This node's name in delivery leases and logs (unique in a cluster).
    pub node: String,
    /// How long a delivery lease lasts without renewal: how soon another node takes over the deliveries of
    /// a node that died. Longer than `attempt_timeout`, as a lease is renewed between attempts.
    pub lease: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            max_age: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 64,
            node: uuid::Uuid::new_v4().to_string(),
            lease: Duration::from_secs(30),
        }
    }
}

type Key = (String, String);

/// The delivery lease that stands for "consumes the journal" on a shared store: one node at a time matches
/// journal entries (no work done twice, throttling decided once). `#` is not allowed in a tenant name.
const JOURNAL_LEASE_KEY: (&str, &str) = ("#cluster", "journal");
/// How soon another node consumes the journal after its consumer died.
const JOURNAL_LEASE: Duration = Duration::from_secs(5);

/// Notifications one delivery task sends in a row for its subscription before it gives its slot up.
const CHAIN: usize = 64;

/// How often the delivery loop reads the heads of the whole outbox (retries that came due, notifications
/// stored by other nodes or before a restart).
const OUTBOX_SCAN: Duration = Duration::from_millis(250);

/// Keys in first-come order, each at most once.
#[derive(Default)]
struct ReadyQueue {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
}

impl ReadyQueue {
    fn push(&mut self, k: Key) {
        if self.queued.insert(k.clone()) {
            self.order.push_back(k);
        }
    }

    fn pop(&mut self) -> Option<Key> {
        let k = self.order.pop_front()?;
        self.queued.remove(&k);
        Some(k)
    }
}

/// Subscriptions in force, compiled, and the delivery state of this process.
pub struct Notifier {
    pub config: NotifierConfig,
    subs: RwLock<HashMap<String, TenantSubscriptions>>,
    journal_wake: Notify,
    delivery_wake: Notify,
    in_flight: Mutex<HashSet<Key>>,
    /// Subscriptions this process's journal pass gave a notification, in that order: the delivery loop starts
    /// them without a pass over the whole outbox (which runs only every [`OUTBOX_SCAN`], for retries and the
    /// rest).
    ready: Mutex<ReadyQueue>,
    /// Another node stored notifications: scan the outbox now rather than at the next [`OUTBOX_SCAN`].
    scan_now: AtomicBool,
    /// When each subscription was last notified by this process (throttling, timeInterval).
    last_sent: Mutex<HashMap<Key, Instant>>,
    http: reqwest::Client,
    mqtt: mqtt::MqttClients,
    /// The store is shared with other nodes (set when the loops start).
    shared: AtomicBool,
    bus: OnceLock<Arc<dyn Bus>>,
    /// Coalesced events for the bus: many commits, one wake-up.
    bus_journal: Notify,
    bus_outbox: Notify,
    /// Serializes changes of the cache, so that an older read never overwrites a newer one.
    cache_lock: tokio::sync::Mutex<()>,
    /// The store's subscriptions version the cache was loaded at (shared store).
    known_version: AtomicI64,
    /// Shared store: when each `timeInterval` subscription's timer is next due, as last seen (ms).
    next_due: Mutex<HashMap<Key, i64>>,
    /// Shared store: when this node last took or renewed the journal lease.
    journal_held: Mutex<Option<Instant>>,
}

fn key(tenant: &str, id: &str) -> Key {
    (tenant.to_string(), id.to_string())
}

impl Notifier {
    pub fn new(config: NotifierConfig) -> Notifier {
        // Header names go out as they are usually written (receivers that look them up case-sensitively
        // exist).
        let http = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            .http1_title_case_headers()
            .build()
            .unwrap_or_default();
        Notifier {
            config,
            subs: RwLock::new(HashMap::new()),
            journal_wake: Notify::new(),
            delivery_wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
            ready: Mutex::new(ReadyQueue::default()),
            scan_now: AtomicBool::new(false),
            last_sent: Mutex::new(HashMap::new()),
            http,
            mqtt: mqtt::MqttClients::default(),
            shared: AtomicBool::new(false),
            bus: OnceLock::new(),
            bus_journal: Notify::new(),
            bus_outbox: Notify::new(),
            cache_lock: tokio::sync::Mutex::new(()),
            known_version: AtomicI64::new(i64::MIN),
            next_due: Mutex::new(HashMap::new()),
            journal_held: Mutex::new(None),
        }
    }

    /// A change was committed: look at the journal now rather than at the next poll.
    pub fn wake(&self) {
        self.journal_wake.notify_one();
        if self.is_shared() {
            self.bus_journal.notify_one();
        }
    }

    fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis() as i64
    }

    /// A subscription was created, replaced or deleted here: reload it, and tell the other nodes.
    pub async fn subscription_changed(&self, broker: &Broker, tenant: &str, id: &str) {
        self.reload(broker, tenant, id).await;
        if self.is_shared() {
            if let Some(bus) = self.bus.get() {
                bus.publish(Envelope {
                    node: self.config.node.clone(),
                    event: Event::Subscription {
                        tenant: tenant.to_string(),
                        id: id.to_string(),
                    },
                });
            }
        }
    }

    /// Shared store: reload every subscription if any changed since the cache was loaded.
    pub async fn sync(&self, broker: &Broker) {
        if !self.is_shared() {
            return;
        }
        match broker.store.subscriptions_version().await {
            Ok(v) if v == self.known_version.load(Ordering::Acquire) => {}
            Ok(_) => self.load_all(broker).await,
            Err(e) => tracing::warn!(error = %e, "subscriptions version cannot be read"),
        }
    }

    fn compiled(&self, tenant: &str, id: &str) -> Option<Arc<Compiled>> {
        self.subs.read().ok()?.get(tenant)?.get(id).cloned()
    }

    /// The subscriptions of a tenant that may select the entity before or after a change.
    fn candidates(
        &self,
        tenant: &str,
        before: Option<&misto_ngsild::entity::Entity>,
        after: Option<&misto_ngsild::entity::Entity>,
    ) -> Vec<Arc<Compiled>> {
        let Ok(subs) = self.subs.read() else {
            return Vec::new();
        };
        let Some(t) = subs.get(tenant) else {
            return Vec::new();
        };
        let Some(id) = after
            .or(before)
            .and_then(|e| e.get("id"))
            .and_then(Value::as_str)
        else {
            return Vec::new();
        };
        let mut types: Vec<&str> = Vec::new();
        for e in [before, after].into_iter().flatten() {
            for ty in misto_ngsild::entity::types(e) {
                if !types.contains(&ty) {
                    types.push(ty);
                }
            }
        }
        t.candidates(id, &types)
    }

    fn forget(&self, tenant: &str, id: &str) {
        if let Ok(mut s) = self.subs.write() {
            if let Some(m) = s.get_mut(tenant) {
                m.remove(id);
            }
        }
    }

    /// (Re)load one subscription from storage into the cache.
    pub async fn reload(&self, broker: &Broker, tenant: &str, id: &str) {
        let _cache = self.cache_lock.lock().await;
        if let Ok(mut due) = self.next_due.lock() {
            due.remove(&key(tenant, id));
        }
        match broker.store.get_subscription(tenant, id).await {
            Ok(Some(s)) => match compile_stored(broker, &s).await {
                Ok(c) => {
                    if let Ok(mut subs) = self.subs.write() {
                        subs.entry(tenant.to_string())
                            .or_default()
                            .insert(Arc::new(c));
                    }
                }
                Err(e) => tracing::warn!(tenant, id, error = %e, "subscription cannot be compiled"),
            },
            Ok(None) => self.forget(tenant, id),
            Err(e) => tracing::warn!(tenant, id, error = %e, "subscription cannot be loaded"),
        }
    }

    /// Load every stored subscription, replacing the cache (at start, and on a shared store when another
    /// node changed one).
    async fn load_all(&self, broker: &Broker) {
        let _cache = self.cache_lock.lock().await;
        // The version is read before the list: a change in between makes the next check reload again.
        let version = if self.is_shared() {
            match broker.store.subscriptions_version().await {
                Ok(v) if v == self.known_version.load(Ordering::Acquire) => return,
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "subscriptions version cannot be read");
                    return;
                }
            }
        } else {
            None
        };
        let all = match broker.store.list_subscriptions(None).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "subscriptions cannot be loaded");
                return;
            }
        };
        let mut fresh: HashMap<String, TenantSubscriptions> = HashMap::new();
        for s in all {
            match compile_stored(broker, &s).await {
                Ok(c) => fresh
                    .entry(s.tenant.clone())
                    .or_default()
                    .insert(Arc::new(c)),
                Err(e) => tracing::warn!(id = s.id, error = %e, "subscription cannot be compiled"),
            }
        }
        if let Ok(mut subs) = self.subs.write() {
            *subs = fresh;
        }
        if let Ok(mut due) = self.next_due.lock() {
            due.clear();
        }
        if let Some(v) = version {
            self.known_version.store(v, Ordering::Release);
            tracing::debug!(version = v, "subscriptions reloaded");
        }
    }

    /// Throttling: may this subscription be notified now? Records the time when it may.
    async fn take_slot(&self, broker: &Broker, c: &Compiled) -> bool {
        let Some(t) = c.throttling else {
            return true;
        };
        if self.is_shared() {
            let every = (t * 1000.0) as i64;
            let now = jiff::Timestamp::now().as_millisecond();
            return match broker.store.timer_claim(&c.tenant, &c.id, now, every).await {
                Ok(claim) => claim.claimed,
                Err(e) => {
                    // Throttling is a courtesy to the receiver; a notification is not dropped for it.
                    tracing::warn!(sub = c.id, error = %e, "throttling slot cannot be claimed");
                    true
                }
            };
        }
        let Ok(mut last) = self.last_sent.lock() else {
            return true;
        };
        let k = key(&c.tenant, &c.id);
        let now = Instant::now();
        match last.get(&k) {
            Some(at) if now.duration_since(*at) < Duration::from_secs_f64(t) => false,
            _ => {
                last.insert(k, now);
                true
            }
        }
    }

    /// Whether this node consumes the journal now: always on a store of its own; on a shared store while it
    /// holds the journal lease (renewed at most once a second).
    async fn journal_turn(&self, broker: &Broker) -> bool {
        if !self.is_shared() {
            return true;
        }
        let fresh = self
            .journal_held
            .lock()
            .ok()
            .and_then(|h| *h)
            .is_some_and(|at| at.elapsed() < JOURNAL_LEASE / 5);
        if fresh {
            return true;
        }
        let now = jiff::Timestamp::now().as_millisecond();
        let k = key(JOURNAL_LEASE_KEY.0, JOURNAL_LEASE_KEY.1);
        let until = now + JOURNAL_LEASE.as_millis() as i64;
        let held = match broker
            .store
            .lease_claim(&self.config.node, &[k], now, until)
            .await
        {
            Ok(won) => !won.is_empty(),
            Err(e) => {
                tracing::warn!(error = %e, "journal lease cannot be claimed");
                false
            }
        };
        if let Ok(mut h) = self.journal_held.lock() {
            *h = held.then(Instant::now);
        }
        held
    }

    /// One pass over the journal: returns how many entries it consumed.
    async fn journal_pass(&self, broker: &Broker) -> Result<usize, misto_store::StoreError> {
        let entries = broker.store.journal_read(500).await?;
        if entries.is_empty() {
            return Ok(0);
        }
        // Another node may have changed subscriptions before these changes committed: match them against the
        // subscriptions as they are now.
        self.sync(broker).await;
        let now = jiff::Timestamp::now();
        let mut out = Vec::new();
        for e in &entries {
            let at = jiff::Timestamp::from_millisecond(e.at_ms)
                .map(validate::format_datetime)
                .unwrap_or_else(|_| validate::now());
            for c in self.candidates(&e.tenant, e.before.as_ref(), e.after.as_ref()) {
                if !c.in_force(now) {
                    continue;
                }
                if let Some(item) = c.notify(e.before.as_ref(), e.after.as_ref(), &at) {
                    if !self.take_slot(broker, &c).await {
                        continue;
                    }
                    out.push(NewNotification {
                        tenant: e.tenant.clone(),
                        subscription_id: c.id.clone(),
                        payload: json!({ "data": [item] }),
                        due_ms: e.at_ms,
                    });
                }
            }
        }
        let n = out.len();
        let keys: Vec<Key> = out
            .iter()
            .map(|o| key(&o.tenant, &o.subscription_id))
            .collect();
        broker
            .store
            .journal_commit(entries.iter().map(|e| e.seq).collect(), out)
            .await?;
        metrics::counter!("misto_notifications_due_total").increment(n as u64);
        if n > 0 {
            if let Ok(mut r) = self.ready.lock() {
                for k in keys {
                    r.push(k);
                }
            }
            self.outbox_filled();
        }
        Ok(entries.len())
    }

    /// Notifications were stored: deliver them (here, or on the node holding the subscription's lease).
    fn outbox_filled(&self) {
        self.delivery_wake.notify_one();
        if self.is_shared() {
            self.bus_outbox.notify_one();
        }
    }

    /// Shared store: the `timeInterval` subscriptions whose firing this node claimed from their timers.
    async fn claim_periodic(&self, broker: &Broker, now: jiff::Timestamp) -> Vec<Arc<Compiled>> {
        let now_ms = now.as_millisecond();
        let maybe: Vec<(Arc<Compiled>, f64)> = {
            let Ok(subs) = self.subs.read() else {
                return Vec::new();
            };
            let Ok(next) = self.next_due.lock() else {
                return Vec::new();
            };
            subs.values()
                .flat_map(|m| m.values())
                .filter_map(|c| Some((c.clone(), c.time_interval?)))
                .filter(|(c, _)| c.in_force(now))
                .filter(|(c, _)| {
                    next.get(&key(&c.tenant, &c.id))
                        .is_none_or(|at| *at <= now_ms)
                })
                .collect()
        };
        let mut due = Vec::new();
        for (c, every) in maybe {
            let every = (every * 1000.0) as i64;
            match broker
                .store
                .timer_claim(&c.tenant, &c.id, now_ms, every)
                .await
            {
                Ok(claim) => {
                    if let Ok(mut next) = self.next_due.lock() {
                        next.insert(key(&c.tenant, &c.id), claim.next_ms);
                    }
                    if claim.claimed {
                        due.push(c);
                    }
                }
                Err(e) => {
                    tracing::warn!(sub = c.id, error = %e, "periodic firing cannot be claimed")
                }
            }
        }
        due
    }

    /// Send `timeInterval` subscriptions that are due their matching entities.
    async fn periodic_pass(&self, broker: &Broker) {
        let now = jiff::Timestamp::now();
        let due: Vec<Arc<Compiled>> = if self.is_shared() {
            self.claim_periodic(broker, now).await
        } else {
            let Ok(subs) = self.subs.read() else { return };
            let Ok(mut last) = self.last_sent.lock() else {
                return;
            };
            let mut due = Vec::new();
            for c in subs.values().flat_map(|m| m.values()) {
                let Some(every) = c.time_interval else {
                    continue;
                };
                if !c.in_force(now) {
                    continue;
                }
                let k = key(&c.tenant, &c.id);
                let ready = last
                    .get(&k)
                    .is_none_or(|at| at.elapsed() >= Duration::from_secs_f64(every));
                if ready {
                    last.insert(k, Instant::now());
                    due.push(c.clone());
                }
            }
            due
        };
        for c in due {
            let mut data = Vec::new();
            for p in &c.periodic {
                let mut p = p.clone();
                p.limit = Some(broker.config.max_limit);
                match broker.query_entities(&c.tenant, &c.ctx, &p).await {
                    Ok(r) => {
                        for e in &r.entities {
                            data.push(misto_ngsild::render::render_entity(e, &c.ctx, &c.render));
                        }
                    }
                    Err(e) => tracing::warn!(id = c.id, error = %e, "periodic query failed"),
                }
            }
            if data.is_empty() {
                continue;
            }
            let n = NewNotification {
                tenant: c.tenant.clone(),
                subscription_id: c.id.clone(),
                payload: json!({ "data": data }),
                due_ms: now.as_millisecond(),
            };
            if let Err(e) = broker.store.journal_commit(Vec::new(), vec![n]).await {
                tracing::warn!(id = c.id, error = %e, "periodic notification not stored");
            } else {
                metrics::counter!("misto_notifications_due_total").increment(1);
                self.outbox_filled();
            }
        }
    }

    /// Start delivery tasks for the subscriptions the journal pass made ready, as far as slots allow. A
    /// subscription in flight stays queued: its task may have looked for its next notification before the
    /// new one was stored.
    async fn start_ready(self: &Arc<Self>, broker: &Broker) {
        let mut picked = Vec::new();
        {
            let Ok(mut ready) = self.ready.lock() else {
                return;
            };
            let Ok(mut f) = self.in_flight.lock() else {
                return;
            };
            let mut busy = Vec::new();
            while f.len() < self.config.concurrency {
                let Some(k) = ready.pop() else { break };
                if f.contains(&k) {
                    busy.push(k);
                } else {
                    f.insert(k.clone());
                    picked.push(k);
                }
            }
            // Those in flight go first next time, in their order.
            for k in busy.into_iter().rev() {
                if ready.queued.insert(k.clone()) {
                    ready.order.push_front(k);
                }
            }
        }
        if picked.is_empty() {
            return;
        }
        let shared = self.is_shared();
        if shared {
            // Of those, the ones no other node is delivering; the others are that node's to go on with.
            let now = jiff::Timestamp::now().as_millisecond();
            let won = broker
                .store
                .lease_claim(&self.config.node, &picked, now, now + self.lease_ms())
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "delivery leases cannot be claimed");
                    Vec::new()
                });
            if let Ok(mut f) = self.in_flight.lock() {
                for k in picked.iter().filter(|k| !won.contains(k)) {
                    f.remove(k);
                }
            }
            picked.retain(|k| won.contains(k));
        }
        for k in picked {
            self.spawn_delivery(broker, k, None, shared);
        }
    }

    /// A delivery task for subscription `k`, whose slot the caller took (and, on a shared store, its lease):
    /// see [`Notifier::deliver_chain`].
    fn spawn_delivery(
        self: &Arc<Self>,
        broker: &Broker,
        k: Key,
        head: Option<PendingNotification>,
        shared: bool,
    ) {
        let me = self.clone();
        let b = broker.clone();
        tokio::spawn(async move {
            let more = me.deliver_chain(&b, &k, head, shared).await;
            if shared {
                if let Err(e) = b.store.lease_release(&me.config.node, &k.0, &k.1).await {
                    tracing::debug!(error = %e, "delivery lease not released; it expires");
                }
            }
            if let Ok(mut f) = me.in_flight.lock() {
                f.remove(&k);
            }
            if more {
                if let Ok(mut r) = me.ready.lock() {
                    r.push(k);
                }
            }
            me.delivery_wake.notify_one();
        });
    }

    /// Start the due notifications of the whole outbox that are not in flight; returns how many started.
    async fn delivery_pass(self: &Arc<Self>, broker: &Broker) -> usize {
        let now = jiff::Timestamp::now().as_millisecond();
        let heads = match broker
            .store
            .outbox_heads(now, self.config.concurrency * 2)
            .await
        {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "outbox cannot be read");
                return 0;
            }
        };
        let shared = self.is_shared();
        // The heads of subscriptions not in flight here, as many as there are free slots.
        let mut picked: Vec<(Key, PendingNotification)> = Vec::new();
        {
            let Ok(f) = self.in_flight.lock() else {
                return 0;
            };
            let free = self.config.concurrency.saturating_sub(f.len());
            for h in heads {
                if picked.len() >= free {
                    break;
                }
                let k = key(&h.tenant, &h.subscription_id);
                if !f.contains(&k) && !picked.iter().any(|(p, _)| *p == k) {
                    picked.push((k, h));
                }
            }
        }
        if shared && !picked.is_empty() {
            // Of those, the ones no other node is delivering.
            let keys: Vec<Key> = picked.iter().map(|(k, _)| k.clone()).collect();
            match broker
                .store
                .lease_claim(&self.config.node, &keys, now, now + self.lease_ms())
                .await
            {
                Ok(won) => picked.retain(|(k, _)| won.contains(k)),
                Err(e) => {
                    tracing::warn!(error = %e, "delivery leases cannot be claimed");
                    return 0;
                }
            }
        }
        let started = picked.len();
        for (k, h) in picked {
            if let Ok(mut f) = self.in_flight.lock() {
                f.insert(k.clone());
            }
            self.spawn_delivery(broker, k, Some(h), shared);
        }
        started
    }

    /// Deliver one subscription's due notifications in order, starting with `head` (None: its oldest pending
    /// one, if due): go on with the next while one is due, without a pass over the whole outbox per delivery;
    /// after a while give the slot up so others get their turn. On a shared store this node holds the
    /// subscription's lease and renews it as it goes.
    async fn deliver_chain(
        &self,
        broker: &Broker,
        k: &Key,
        head: Option<PendingNotification>,
        shared: bool,
    ) -> bool {
        let now_ms = || jiff::Timestamp::now().as_millisecond();
        let due = |n: Option<PendingNotification>| n.filter(|n| n.due_ms <= now_ms());
        let mut n = match head {
            // A head read before the lease was this node's may have been settled by another node since.
            Some(h) if !shared => Some(h),
            _ => match broker.store.outbox_next(&k.0, &k.1).await {
                Ok(n) => due(n),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox cannot be read");
                    None
                }
            },
        };
        let mut leased = Instant::now();
        let mut sent = 0;
        while let Some(cur) = n.take() {
            if shared && leased.elapsed() >= self.config.lease / 3 {
                let until = now_ms() + self.lease_ms();
                match broker
                    .store
                    .lease_renew(&self.config.node, &k.0, &k.1, until)
                    .await
                {
                    Ok(true) => leased = Instant::now(),
                    Ok(false) => {
                        tracing::warn!(sub = k.1, "delivery lease lost; another node goes on");
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(sub = k.1, error = %e, "delivery lease cannot be renewed");
                        return false;
                    }
                }
            }
            self.deliver(broker, cur).await;
            sent += 1;
            if sent >= CHAIN {
                // More may be due: the subscription goes to the back of the ready queue.
                return true;
            }
            n = match broker.store.outbox_next(&k.0, &k.1).await {
                Ok(next) => due(next),
                Err(_) => None,
            };
        }
        false
    }

    async fn deliver(&self, broker: &Broker, n: PendingNotification) {
        let c = match self.compiled(&n.tenant, &n.subscription_id) {
            Some(c) => c,
            None => {
                self.reload(broker, &n.tenant, &n.subscription_id).await;
                match self.compiled(&n.tenant, &n.subscription_id) {
                    Some(c) => c,
                    None => {
                        let at = validate::now();
                        let _ = broker
                            .store
                            .outbox_settle(n.id, Settle::Failed { at })
                            .await;
                        return;
                    }
                }
            }
        };
        let result = self.send(broker, &c, &n).await;
        let at = validate::now();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let settle = match result {
            Ok(()) => {
                metrics::counter!("misto_notifications_delivered_total").increment(1);
                metrics::histogram!("misto_notification_delivery_seconds")
                    .record((now_ms - n.created_ms).max(0) as f64 / 1000.0);
                Settle::Delivered { at }
            }
            Err(e) => {
                let age = Duration::from_millis((now_ms - n.created_ms).max(0) as u64);
                if age >= self.config.max_age {
                    tracing::warn!(sub = c.id, error = %e, "notification failed for good");
                    metrics::counter!("misto_notifications_failed_total").increment(1);
                    Settle::Failed { at }
                } else {
                    tracing::debug!(sub = c.id, error = %e, attempt = n.attempts, "notification will be retried");
                    metrics::counter!("misto_notifications_retried_total").increment(1);
                    let backoff = 500u64.saturating_mul(1 << n.attempts.min(7)).min(60_000);
                    Settle::Retry {
                        at,
                        due_ms: now_ms + backoff as i64,
                    }
                }
            }
        };
        if let Err(e) = broker.store.outbox_settle(n.id, settle).await {
            tracing::warn!(error = %e, "delivery outcome not recorded; it will be sent again");
        }
    }

    async fn send(
        &self,
        broker: &Broker,
        c: &Compiled,
        n: &PendingNotification,
    ) -> Result<(), String> {
        let mut body = json!({
            "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
            "type": "Notification",
            "subscriptionId": c.id,
            "notifiedAt": validate::now(),
            "data": n.payload.get("data").cloned().unwrap_or(Value::Array(vec![])),
        });
        let ld = c.endpoint.accept == "application/ld+json";
        let link = context_url(broker, &c.ctx);
        if ld {
            // JSON-LD: every entity of the notification carries its @context.
            let ctx_value = match &link {
                Some(u) => json!(u),
                None => c.ctx.source(),
            };
            if let Some(items) = body["data"].as_array_mut() {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    i.insert("@context".into(), ctx_value.clone());
                }
            }
        }
        let content_type = if ld {
            "application/ld+json"
        } else {
            "application/json"
        };
        // The headers of the notification, in the order they go out.
        let mut headers: Vec<(String, String)> = vec![("Content-Type".into(), content_type.into())];
        if !ld {
            if let Some(u) = &link {
                headers.push((
                    "Link".into(),
                    format!(
                        "<{u}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
                    ),
                ));
            }
        }
        if !c.tenant.is_empty() {
            headers.push(("NGSILD-Tenant".into(), c.tenant.clone()));
        }
        headers.extend(c.endpoint.receiver_info.iter().cloned());
        let url = &c.endpoint.uri;
        if url.starts_with("mqtt://") || url.starts_with("mqtts://") {
            let ep = mqtt::endpoint(url, &c.endpoint.notifier_info)?;
            let metadata: serde_json::Map<String, Value> = headers
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let message = json!({ "metadata": metadata, "body": body });
            return self
                .mqtt
                .publish(
                    &ep,
                    message.to_string().into_bytes(),
                    self.config.attempt_timeout,
                )
                .await;
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("the endpoint scheme of {url} is not supported"));
        }
        let mut req = self.http.post(url);
        for (k, v) in &headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {}", resp.status()))
        }
    }

    /// Run the journal, periodic and delivery loops until the process stops.
    pub fn spawn(self: &Arc<Self>, broker: &Broker) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let b = broker.clone();
        me.shared.store(b.store.shared(), Ordering::Relaxed);
        let _ = me.bus.set(b.bus.clone());
        tokio::spawn(async move {
            me.load_all(&b).await;
            if me.is_shared() {
                tracing::info!(
                    node = me.config.node,
                    bus = b.bus.kind(),
                    "notifier runs in cluster mode"
                );
                me.spawn_cluster(&b);
            }
            {
                let me = me.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    loop {
                        if me.journal_turn(&b).await {
                            match me.journal_pass(&b).await {
                                Ok(n) if n > 0 => continue,
                                Ok(_) => {}
                                Err(e) => tracing::warn!(error = %e, "journal cannot be read"),
                            }
                        }
                        // Changes other nodes made arrive with a bus event, or without one (no bus, lost
                        // event): then the poll finds them.
                        let _ = tokio::time::timeout(
                            Duration::from_millis(500),
                            me.journal_wake.notified(),
                        )
                        .await;
                    }
                });
            }
            {
                let me = me.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(250));
                    loop {
                        tick.tick().await;
                        me.periodic_pass(&b).await;
                    }
                })
            };
            // The depth gauge counts the whole outbox: once a second is enough.
            let mut depth_read = Instant::now() - Duration::from_secs(1);
            let mut scanned = Instant::now() - OUTBOX_SCAN;
            loop {
                me.start_ready(&b).await;
                if scanned.elapsed() >= OUTBOX_SCAN || me.scan_now.swap(false, Ordering::Relaxed) {
                    scanned = Instant::now();
                    me.delivery_pass(&b).await;
                }
                if depth_read.elapsed() >= Duration::from_secs(1) {
                    depth_read = Instant::now();
                    if let Ok(d) = b.store.outbox_depth().await {
                        metrics::gauge!("misto_outbox_depth").set(d as f64);
                    }
                }
                let wait = OUTBOX_SCAN.saturating_sub(scanned.elapsed());
                let _ = tokio::time::timeout(wait, me.delivery_wake.notified()).await;
            }
        })
    }
}

impl Notifier {
    /// Shared store: the tasks that keep this node in step with the others.
    fn spawn_cluster(self: &Arc<Self>, broker: &Broker) {
        let bus = broker.bus.clone();
        // Other nodes' events.
        {
            let me = self.clone();
            let b = broker.clone();
            let mut rx = bus.subscribe();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(env) if env.node == me.config.node => {}
                        Ok(env) => match env.event {
                            Event::Journal => me.journal_wake.notify_one(),
                            Event::Outbox => {
                                me.scan_now.store(true, Ordering::Relaxed);
                                me.delivery_wake.notify_one()
                            }
                            Event::Subscription { .. } => me.sync(&b).await,
                        },
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            me.sync(&b).await;
                            me.journal_wake.notify_one();
                            me.scan_now.store(true, Ordering::Relaxed);
                            me.delivery_wake.notify_one();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        // This node's events, coalesced.
        {
            let me = self.clone();
            let bus = bus.clone();
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        _ = me.bus_journal.notified() => Event::Journal,
                        _ = me.bus_outbox.notified() => Event::Outbox,
                    };
                    bus.publish(Envelope {
                        node: me.config.node.clone(),
                        event,
                    });
                }
            });
        }
        // Without the bus (down, or events lost), subscription changes of other nodes still arrive: the
        // journal loop checks before matching; this covers delivery and periodic firings.
        {
            let me = self.clone();
            let b = broker.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    me.sync(&b).await;
                }
            });
        }
    }
}

/// Where a notification links its context: the context's own URL, or the broker's hosted copy of it.
fn context_url(broker: &Broker, ctx: &Context) -> Option<String> {
    if ctx.is_core_only() {
        return None;
    }
    ctx.link_url()
        .or_else(|| Some(broker.contexts.implicit(&ctx.source())))
}

/// Compile a stored subscription with the context its notifications use (jsonldContext, else the context it
/// was written with).
async fn compile_stored(
    broker: &Broker,
    s: &misto_store::notify::StoredSubscription,
) -> misto_ngsild::Result<Compiled> {
    let rec = Record::from_stored(s)?;
    let written = broker.contexts.resolve(rec.context_source()).await?;
    let mut c = Compiled::build(&s.tenant, &s.id, &rec, &written)?;
    if let Some(j) = rec.doc.get("jsonldContext") {
        c.ctx = broker.contexts.resolve(Some(j)).await?;
    } else {
        // Hosted again after a restart: the subscription shows its URL as its jsonldContext.
        broker.implicit_context(&written);
    }
    Ok(c)
}
