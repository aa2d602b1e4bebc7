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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use misto_ngsild::{validate, Context};
use misto_store::notify::{NewNotification, PendingNotification, Settle};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::index::TenantSubscriptions;
use super::matching::Compiled;
use super::mqtt;
use super::Record;
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
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            max_age: Duration::from_secs(3600),
            attempt_timeout: Duration::from_secs(10),
            concurrency: 64,
        }
    }
}

type Key = (String, String);

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
    /// When each subscription was last notified by this process (throttling, timeInterval).
    last_sent: Mutex<HashMap<Key, Instant>>,
    http: reqwest::Client,
    mqtt: mqtt::MqttClients,
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
            last_sent: Mutex::new(HashMap::new()),
            http,
            mqtt: mqtt::MqttClients::default(),
        }
    }

    /// A change was committed: look at the journal now rather than at the next poll.
    pub fn wake(&self) {
        self.journal_wake.notify_one();
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

    pub fn forget(&self, tenant: &str, id: &str) {
        if let Ok(mut s) = self.subs.write() {
            if let Some(m) = s.get_mut(tenant) {
                m.remove(id);
            }
        }
    }

    /// (Re)load one subscription from storage into the cache.
    pub async fn reload(&self, broker: &Broker, tenant: &str, id: &str) {
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

    /// Load every stored subscription (at start).
    async fn load_all(&self, broker: &Broker) {
        match broker.store.list_subscriptions(None).await {
            Ok(all) => {
                for s in all {
                    match compile_stored(broker, &s).await {
                        Ok(c) => {
                            if let Ok(mut subs) = self.subs.write() {
                                subs.entry(s.tenant.clone())
                                    .or_default()
                                    .insert(Arc::new(c));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(id = s.id, error = %e, "subscription cannot be compiled")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "subscriptions cannot be loaded"),
        }
    }

    /// Throttling: may this subscription be notified now? Records the time when it may.
    fn take_slot(&self, c: &Compiled) -> bool {
        let Some(t) = c.throttling else {
            return true;
        };
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

    /// One pass over the journal: returns how many entries it consumed.
    async fn journal_pass(&self, broker: &Broker) -> Result<usize, misto_store::StoreError> {
        let entries = broker.store.journal_read(500).await?;
        if entries.is_empty() {
            return Ok(0);
        }
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
                    if !self.take_slot(&c) {
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
            self.delivery_wake.notify_one();
        }
        Ok(entries.len())
    }

    /// Send `timeInterval` subscriptions that are due their matching entities.
    async fn periodic_pass(&self, broker: &Broker) {
        let now = jiff::Timestamp::now();
        let due: Vec<Arc<Compiled>> = {
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
                self.delivery_wake.notify_one();
            }
        }
    }

    /// Start delivery tasks for the subscriptions the journal pass made ready, as far as slots allow. A
    /// subscription in flight stays queued: its task may have looked for its next notification before the
    /// new one was stored.
    fn start_ready(self: &Arc<Self>, broker: &Broker) {
        let Ok(mut ready) = self.ready.lock() else {
            return;
        };
        let mut busy = Vec::new();
        for _ in 0..ready.order.len() {
            let Some(k) = ready.pop() else { break };
            let Ok(mut f) = self.in_flight.lock() else {
                break;
            };
            if f.len() >= self.config.concurrency {
                busy.push(k);
                break;
            }
            if f.contains(&k) {
                busy.push(k);
                continue;
            }
            f.insert(k.clone());
            drop(f);
            self.spawn_delivery(broker, k, None);
        }
        // Those that could not start go first next time, in their order.
        for k in busy.into_iter().rev() {
            if ready.queued.insert(k.clone()) {
                ready.order.push_front(k);
            }
        }
    }

    /// A delivery task for subscription `k` (whose slot the caller took): `first`, or its oldest pending
    /// notification if due, then the next ones while due, up to [`CHAIN`].
    fn spawn_delivery(
        self: &Arc<Self>,
        broker: &Broker,
        k: Key,
        first: Option<PendingNotification>,
    ) {
        let me = self.clone();
        let b = broker.clone();
        tokio::spawn(async move {
            let mut next = first;
            for _ in 0..CHAIN {
                let n = match next.take() {
                    Some(n) => n,
                    None => match b.store.outbox_next(&k.0, &k.1).await {
                        Ok(Some(n)) if n.due_ms <= jiff::Timestamp::now().as_millisecond() => n,
                        _ => break,
                    },
                };
                me.deliver(&b, n).await;
            }
            if let Ok(mut f) = me.in_flight.lock() {
                f.remove(&k);
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
        let mut started = 0;
        for h in heads {
            let k = key(&h.tenant, &h.subscription_id);
            {
                let Ok(mut f) = self.in_flight.lock() else {
                    break;
                };
                if f.len() >= self.config.concurrency || f.contains(&k) {
                    continue;
                }
                f.insert(k.clone());
            }
            started += 1;
            // Go on with this subscription's next notification while one is due, without a pass over the
            // whole outbox per delivery; after a while give the slot up so others get their turn.
            self.spawn_delivery(broker, k, Some(h));
        }
        started
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
        tokio::spawn(async move {
            me.load_all(&b).await;
            {
                let me = me.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    loop {
                        match me.journal_pass(&b).await {
                            Ok(n) if n > 0 => continue,
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "journal cannot be read"),
                        }
                        // Changes made by other nodes sharing the database arrive without a wake-up.
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
                me.start_ready(&b);
                if scanned.elapsed() >= OUTBOX_SCAN {
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
    }
    Ok(c)
}
