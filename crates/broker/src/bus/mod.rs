//! The cluster bus: small events between misto nodes sharing one database, so that they behave as one broker
//! without waiting for their polls. The bus carries wake-ups and cache invalidations only; the truth (journal,
//! outbox, subscriptions, leases) stays in the database, so a lost event costs latency, never data: every loop
//! that reacts to an event also polls.
//!
//! Two implementations: [`local::LocalBus`] (in-process, the default: a single node, or several brokers in
//! one process) and [`nats::NatsBus`] (NATS JetStream, `MISTO_BUS_URL=nats://…`).

pub mod local;
pub mod nats;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// What happened on a node that the others may want to react to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Event {
    /// Changes were journaled: read the journal now.
    Journal,
    /// A subscription was created, replaced or deleted: the cached subscriptions are stale.
    Subscription { tenant: String, id: String },
    /// Notifications became due in the outbox (or a delivery lease was given up): run a delivery pass.
    Outbox,
}

/// An event and the node it comes from (a node ignores its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    pub event: Event,
}

/// Publish/subscribe of [`Event`]s between nodes. Publishing never waits and never fails: an event that
/// cannot be sent is dropped (the receivers' polls catch up).
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, envelope: Envelope);
    /// Every event published from now on, including this node's own.
    fn subscribe(&self) -> broadcast::Receiver<Envelope>;
    /// What the bus is, for logs and readiness (`local`, `nats`).
    fn kind(&self) -> &'static str;
    /// Whether events reach the other nodes now (the in-process bus always; NATS while connected).
    fn connected(&self) -> bool {
        true
    }
}
