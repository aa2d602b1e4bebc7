//! Taking device and network-server messages from an external MQTT broker (Mosquitto, NATS MQTT, EMQX …)
//! instead of, or beside, the embedded endpoint. misto subscribes to the integration and device topics with
//! QoS 1 in a persistent session and acknowledges each message only once it is stored (or kept as a dead
//! letter), so messages published while misto was down or before it stored them are delivered again. On an
//! external broker, who may publish where is that broker's access control.

use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use super::topics;
use crate::Devices;

/// The topics taken from an external broker.
pub const SUBSCRIPTIONS: &[&str] = &[
    "application/+/device/+/event/+",
    "v3/+/devices/+/#",
    "devices/+/up",
];

/// Messages being stored at once (acknowledged in order).
const MAX_IN_FLIGHT: usize = 64;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The persistent session's client id (one per misto deployment).
    pub client_id: String,
    /// The tenant the messages are stored in.
    pub tenant: String,
}

impl ExternalConfig {
    /// From `mqtt://[user[:password]@]host[:port]`.
    pub fn from_url(url: &str, client_id: &str, tenant: &str) -> Result<ExternalConfig, String> {
        let u = url::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
        if u.scheme() != "mqtt" {
            return Err(format!(
                "the external MQTT broker must be an mqtt:// URL, not {}://",
                u.scheme()
            ));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("'{url}' names no host"))?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .to_string()
        };
        Ok(ExternalConfig {
            host: host.to_string(),
            port: u.port().unwrap_or(1883),
            username: (!u.username().is_empty()).then(|| decode(u.username())),
            password: u.password().map(decode),
            client_id: client_id.to_string(),
            tenant: tenant.to_string(),
        })
    }
}

/// A running connection: publish downlinks through it.
#[derive(Clone)]
pub struct ExternalLink {
    client: AsyncClient,
}

impl ExternalLink {
    /// Connect (retrying in the background while the broker is away) and take messages until dropped.
    pub fn start(
        devices: Devices,
        cfg: ExternalConfig,
    ) -> (ExternalLink, tokio::task::JoinHandle<()>) {
        let mut o = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(u) = &cfg.username {
            o.set_credentials(u, cfg.password.as_deref().unwrap_or(""));
        }
        let (client, eventloop) = AsyncClient::new(o, 1024);
        let link = ExternalLink {
            client: client.clone(),
        };
        let task = tokio::spawn(run(devices, cfg, client, eventloop));
        (link, task)
    }

    /// Publish a downlink (QoS 1).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), rumqttc::ClientError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
    }
}

async fn run(devices: Devices, cfg: ExternalConfig, client: AsyncClient, mut eventloop: EventLoop) {
    let (tx, rx) = mpsc::channel::<Publish>(MAX_IN_FLIGHT);
    tokio::spawn(store_in_order(
        devices,
        cfg.tenant.clone(),
        client.clone(),
        rx,
    ));
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!(
                    host = cfg.host,
                    port = cfg.port,
                    "connected to the external MQTT broker"
                );
                for f in SUBSCRIPTIONS {
                    if let Err(e) = client.subscribe(*f, QoS::AtLeastOnce).await {
                        tracing::warn!(filter = f, error = %e, "cannot subscribe on the external broker");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(p).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                metrics::counter!("misto_mqtt_external_connection_errors_total").increment(1);
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(host = cfg.host, port = cfg.port, error = %e, "external MQTT broker unreachable; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500.min(50 * failures as u64 + 50))).await;
            }
        }
    }
}

/// Store messages with bounded concurrency and acknowledge them in arrival order.
async fn store_in_order(
    devices: Devices,
    tenant: String,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Publish>,
) {
    let mut pending = FuturesOrdered::new();
    loop {
        tokio::select! {
            p = rx.recv(), if pending.len() < MAX_IN_FLIGHT => {
                let Some(p) = p else { break };
                let Some(route) = topics::route(&p.topic) else {
                    // Not a topic misto takes (e.g. a downlink misto published): acknowledged and left.
                    let _ = client.ack(&p).await;
                    continue;
                };
                metrics::counter!("misto_mqtt_publishes_total", "source" => route.source()).increment(1);
                let devices = devices.clone();
                let tenant = tenant.clone();
                pending.push_back(async move {
                    let r = super::take(&devices, &tenant, &route, &p.topic, &p.payload).await;
                    (p, r)
                });
            }
            Some((p, r)) = pending.next(), if !pending.is_empty() => {
                match r {
                    Ok(()) => {
                        let _ = client.ack(&p).await;
                    }
                    // Not acknowledged: the broker sends it again after a reconnection.
                    Err(e) => tracing::warn!(topic = p.topic, error = %e, "message from the external broker not stored"),
                }
            }
            else => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c =
            ExternalConfig::from_url("mqtt://misto:s%40cret@10.0.0.5:1884", "misto-1", "").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.5", 1884));
        assert_eq!(c.username.as_deref(), Some("misto"));
        assert_eq!(c.password.as_deref(), Some("s@cret"));
        let c = ExternalConfig::from_url("mqtt://localhost", "x", "").unwrap();
        assert_eq!((c.port, c.username), (1883, None));
        assert!(ExternalConfig::from_url("http://localhost", "x", "").is_err());
        assert!(ExternalConfig::from_url("localhost:1883", "x", "").is_err());
    }
}
