//! The in-process bus: a broadcast channel. One node needs no bus at all; several brokers in one process
//! (tests) see each other's events through a shared one.

use tokio::sync::broadcast;

use super::{Bus, Envelope};

pub struct LocalBus {
    tx: broadcast::Sender<Envelope>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Bus for LocalBus {
    fn publish(&self, envelope: Envelope) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(envelope);
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.tx.subscribe()
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}
