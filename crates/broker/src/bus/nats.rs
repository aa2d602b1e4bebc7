//! The bus on NATS JetStream. Events go to the subjects `misto.events.<kind>` of one stream, `MISTO_EVENTS`
//! (kept in memory for a minute: events are wake-ups, worthless later). Every node reads the stream through
//! an ordered consumer of its own that starts at the newest message, so every node sees every event from
//! the time it connected. A background task owns the connection and reconnects after a failure; until it
//! is connected, events are dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::{Bus, Envelope, Event};

const STREAM: &str = "MISTO_EVENTS";
const SUBJECTS: &str = "misto.events.>";

#[derive(Debug, thiserror::Error)]
pub enum NatsBusError {
    #[error("the bus URL {0} is not a nats:// URL")]
    Url(String),
}

pub struct NatsBus {
    out: mpsc::Sender<Envelope>,
    events: broadcast::Sender<Envelope>,
    connected: Arc<AtomicBool>,
}

impl NatsBus {
    /// Start the bus on `url` (`nats://host:port`); connecting happens in the background, with retries.
    pub fn start(url: &str, node: &str) -> Result<NatsBus, NatsBusError> {
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            return Err(NatsBusError::Url(url.to_string()));
        }
        // Wake-ups coalesce: when this many are waiting, more add nothing.
        let (out, rx) = mpsc::channel(256);
        let events = broadcast::channel(1024).0;
        let connected = Arc::new(AtomicBool::new(false));
        tokio::spawn(run(
            url.to_string(),
            node.to_string(),
            rx,
            events.clone(),
            connected.clone(),
        ));
        Ok(NatsBus {
            out,
            events,
            connected,
        })
    }
}

impl Bus for NatsBus {
    fn publish(&self, envelope: Envelope) {
        let _ = self.out.try_send(envelope);
    }

    fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.events.subscribe()
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

fn subject(e: &Event) -> &'static str {
    match e {
        Event::Journal => "misto.events.journal",
        Event::Subscription { .. } => "misto.events.subscription",
        Event::Outbox => "misto.events.outbox",
    }
}

/// Connect, then publish and receive until the connection fails; start over after a pause.
async fn run(
    url: String,
    node: String,
    mut out: mpsc::Receiver<Envelope>,
    events: broadcast::Sender<Envelope>,
    connected: Arc<AtomicBool>,
) {
    let mut pause = Duration::from_millis(500);
    loop {
        let r = session(&url, &node, &mut out, &events, &connected).await;
        connected.store(false, Ordering::Relaxed);
        match r {
            Ok(()) => return, // the bus was dropped
            Err(e) => {
                tracing::warn!(url, error = %e, "cluster bus (NATS) unavailable; falling back to polling");
            }
        }
        // Events that piled up while disconnected are stale wake-ups.
        while out.try_recv().is_ok() {}
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn session(
    url: &str,
    node: &str,
    out: &mut mpsc::Receiver<Envelope>,
    events: &broadcast::Sender<Envelope>,
    connected: &AtomicBool,
) -> Result<(), BoxError> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("misto {node}"))
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![SUBJECTS.into()],
            storage: jetstream::stream::StorageType::Memory,
            max_age: Duration::from_secs(60),
            max_messages: 100_000,
            discard: jetstream::stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await?;
    let mut incoming = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await?
        .messages()
        .await?;
    tracing::info!(url, node, "cluster bus (NATS JetStream) connected");
    connected.store(true, Ordering::Relaxed);
    loop {
        tokio::select! {
            e = out.recv() => {
                let Some(e) = e else { return Ok(()) };
                let payload = serde_json::to_vec(&e)?;
                // Waiting for the stream's acknowledgement keeps a dead connection from going unnoticed.
                let ack = js.publish(subject(&e.event), payload.into()).await?;
                tokio::time::timeout(Duration::from_secs(5), ack).await??;
            }
            m = incoming.next() => {
                let m = m.ok_or("the event stream ended")??;
                match serde_json::from_slice::<Envelope>(&m.payload) {
                    Ok(e) => { let _ = events.send(e); }
                    Err(e) => tracing::debug!(error = %e, "unreadable cluster event ignored"),
                }
            }
        }
    }
}
