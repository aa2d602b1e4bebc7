//! The NGSI-LD context broker: the one internal API through which the HTTP layer and every domain module read
//! and write entities. It resolves `@context`s, validates and expands input, applies NGSI-LD update semantics
//! inside storage transactions and renders results.

pub mod bus;
pub mod catalog;
pub mod contexts;
pub mod entities;
pub mod entitymaps;
pub mod linked;
pub mod ordering;
pub mod purge;
pub mod query;
pub mod registrations;
pub mod subscriptions;
pub mod temporal;
pub mod typeexpr;
mod views;

use std::sync::Arc;

use misto_store::EntityStore;

pub use contexts::ContextStore;
pub use entities::{BatchOutcome, EntityChange};
pub use query::{EntityQueryParams, FoundPage, GeoParams, QueryResult};

/// Tunables of the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Largest `limit` a query may ask for.
    pub max_limit: usize,
    pub default_limit: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_limit: 1000,
            default_limit: 20,
        }
    }
}

/// The broker. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub store: Arc<dyn EntityStore>,
    pub contexts: Arc<ContextStore>,
    pub config: BrokerConfig,
    /// Subscriptions in force and notification delivery.
    pub notifier: Arc<subscriptions::notifier::Notifier>,
    changes: tokio::sync::broadcast::Sender<Arc<EntityChange>>,
    /// Events between the nodes of a cluster (in-process unless configured).
    pub bus: Arc<dyn bus::Bus>,
    /// Each tenant's context source registrations, compiled for forwarding.
    registrations: Arc<registrations::forward::Cache>,
    /// The HTTP client requests to context sources go out with.
    forwarder: reqwest::Client,
}

impl Broker {
    pub fn new(
        store: Arc<dyn EntityStore>,
        contexts: Arc<ContextStore>,
        config: BrokerConfig,
    ) -> Self {
        Self::with_notifier(store, contexts, config, Default::default())
    }

    /// A broker whose notifier has its own settings (node id, delivery tunables).
    pub fn with_notifier(
        store: Arc<dyn EntityStore>,
        contexts: Arc<ContextStore>,
        config: BrokerConfig,
        notifier: subscriptions::notifier::NotifierConfig,
    ) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(4096);
        Broker {
            store,
            contexts,
            config,
            notifier: Arc::new(subscriptions::notifier::Notifier::new(notifier)),
            changes,
            bus: Arc::new(bus::local::LocalBus::default()),
            registrations: Default::default(),
            forwarder: reqwest::Client::new(),
        }
    }

    /// Use `bus` for events between the nodes of a cluster (before [`Broker::spawn_notifier`]).
    pub fn with_bus(mut self, bus: Arc<dyn bus::Bus>) -> Self {
        self.bus = bus;
        self
    }

    /// Start matching changes against subscriptions and delivering notifications.
    pub fn spawn_notifier(&self) -> tokio::task::JoinHandle<()> {
        self.notifier.spawn(self)
    }

    /// Every committed change, for subscribers inside the process (live views, notifications).
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<EntityChange>> {
        self.changes.subscribe()
    }

    pub(crate) fn publish(&self, change: EntityChange) {
        self.notifier.wake();
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Arc::new(change));
        }
    }

    /// Remove due transient entities now, and the history of transient attributes (their instances carry the
    /// attribute's `expiresAt`: the storage of the attribute ends there, §4.22); returns how many entities went.
    pub async fn expire_due(&self) -> Result<usize, misto_ngsild::NgsiError> {
        let now = misto_ngsild::validate::now();
        let instances = self
            .store
            .temporal_expire(jiff::Timestamp::now().as_millisecond())
            .await?;
        if instances > 0 {
            tracing::debug!(instances, "transient attribute instances expired");
        }
        let registry = self
            .store
            .registry_expire(jiff::Timestamp::now().as_millisecond())
            .await?;
        if registry > 0 {
            tracing::debug!(registry, "expired registrations and entity maps removed");
        }
        let gone = self.store.expire(&now).await?;
        for (tenant, id) in &gone {
            tracing::debug!(tenant, id, "transient entity expired");
            self.publish(EntityChange {
                tenant: tenant.clone(),
                id: id.clone(),
                before: None,
                after: None,
            });
        }
        Ok(gone.len())
    }

    /// Run `expire_due` every `every` until the process stops.
    pub fn spawn_expiry(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = b.expire_due().await {
                    tracing::warn!(error = %e, "expiring transient entities failed");
                }
            }
        })
    }
}
