//! MQTT notification endpoints (`mqtt://` and `mqtts://`, NGSI-LD §5.8.6 and the MQTT binding).
//!
//! A notification is published to the topic named by the URI's path as a JSON object with `metadata`
//! (the headers an HTTP notification would carry, receiverInfo included) and `body` (the notification).
//! `notifierInfo` may set `MQTT-Version` (`mqtt3.1.1`, or `mqtt5.0`, the default) and `MQTT-QoS` (0, the
//! default, 1 or 2). A publish counts as delivered when the broker acknowledged it (PUBACK for QoS 1,
//! PUBCOMP for QoS 2) or, for QoS 0, when it was written to the connection.
//!
//! Connections are kept per broker address, credentials and protocol version and shared by the
//! subscriptions that use them. A connection that fails is dropped with every publish waiting on it
//! (they are retried by the delivery loop) and made anew on next use: sessions are clean, so nothing is
//! retransmitted behind the loop's back.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{Outgoing, Transport};
use tokio::sync::{oneshot, Mutex};

/// An MQTT endpoint of a subscription, parsed from its URI and notifierInfo.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttEndpoint {
    pub server: Server,
    pub topic: String,
    pub qos: u8,
}

/// What one connection is for: the broker, the credentials and the protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Server {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub v5: bool,
}

/// Read an `mqtt://`/`mqtts://` URI and the MQTT keys of notifierInfo; the error says what is wrong.
pub fn endpoint(uri: &str, notifier_info: &[(String, String)]) -> Result<MqttEndpoint, String> {
    let url = url::Url::parse(uri).map_err(|e| format!("not a URI: {e}"))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        s => return Err(format!("the scheme '{s}' is not MQTT")),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("an MQTT endpoint needs a host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let topic = decode(url.path().trim_start_matches('/'));
    if topic.is_empty() {
        return Err("an MQTT endpoint needs a topic (the URI's path)".into());
    }
    if topic.contains(['+', '#']) || url.fragment().is_some() {
        return Err("an MQTT topic to publish to cannot hold the wildcards '+' or '#'".into());
    }
    let mut qos = 0;
    let mut v5 = true;
    for (k, v) in notifier_info {
        match k.as_str() {
            "MQTT-QoS" => {
                qos = match v.trim() {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    _ => return Err(format!("MQTT-QoS must be 0, 1 or 2, not '{v}'")),
                }
            }
            "MQTT-Version" => {
                v5 = match v.trim() {
                    "mqtt5.0" => true,
                    "mqtt3.1.1" => false,
                    _ => {
                        return Err(format!(
                            "MQTT-Version must be mqtt3.1.1 or mqtt5.0, not '{v}'"
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    let username = Some(decode(url.username())).filter(|u| !u.is_empty());
    Ok(MqttEndpoint {
        server: Server {
            tls,
            port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
            host,
            password: url.password().map(decode).filter(|_| username.is_some()),
            username,
            v5,
        },
        topic,
        qos,
    })
}

type Waiter = oneshot::Sender<Result<(), String>>;

/// Publishes waiting for the connection to write them (in request order), then for their acknowledgement.
#[derive(Default)]
struct Waiters {
    queued: VecDeque<Waiter>,
    by_packet: HashMap<u16, Waiter>,
}

impl Waiters {
    fn fail_all(&mut self, why: &str) {
        for w in self
            .queued
            .drain(..)
            .chain(self.by_packet.drain().map(|(_, w)| w))
        {
            let _ = w.send(Err(why.to_string()));
        }
    }
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// What the event loop saw that matters to waiting publishes.
enum Progress {
    Written(u16),
    Acked(u16),
    Refused(u16, String),
    Closed(String),
    Nothing,
}

struct Connection {
    client: Client,
    waiters: Arc<std::sync::Mutex<Waiters>>,
    /// Held across queueing a waiter and handing the publish to the client, so both keep one order.
    order: Mutex<()>,
    alive: Arc<AtomicBool>,
    last_used: std::sync::Mutex<Instant>,
}

impl Connection {
    /// Give the connection up: no new publishes, and its event loop ends after the DISCONNECT.
    fn close(&self) {
        if self.alive.swap(false, Ordering::AcqRel) {
            let _ = match &self.client {
                Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
                Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
            };
        }
    }
}

/// The MQTT connections of this process.
#[derive(Default)]
pub struct MqttClients {
    connections: Mutex<HashMap<Server, Arc<Connection>>>,
}

/// Connections unused for this long are closed.
const IDLE: Duration = Duration::from_secs(300);

impl MqttClients {
    /// Publish one notification and wait (at most `timeout`) until it counts as delivered.
    pub async fn publish(
        &self,
        ep: &MqttEndpoint,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), String> {
        let conn = self.connection(&ep.server).await?;
        let (tx, rx) = oneshot::channel();
        {
            let _order = conn.order.lock().await;
            if let Ok(mut w) = conn.waiters.lock() {
                w.queued.push_back(tx);
            }
            let sent = match &conn.client {
                Client::V4(c) => c
                    .publish(&ep.topic, qos_v4(ep.qos), false, payload)
                    .await
                    .map_err(|e| e.to_string()),
                Client::V5(c) => c
                    .publish(&ep.topic, qos_v5(ep.qos), false, payload)
                    .await
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = sent {
                // The event loop is gone; its waiters (this one included) are failed by it or here.
                conn.alive.store(false, Ordering::Release);
                if let Ok(mut w) = conn.waiters.lock() {
                    w.fail_all(&e);
                }
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the MQTT connection closed".into()),
            Err(_) => {
                // An unacknowledged publish leaves the connection in doubt: start afresh next time.
                conn.close();
                Err(format!(
                    "no acknowledgement from the MQTT broker within {timeout:?}"
                ))
            }
        }
    }

    async fn connection(&self, server: &Server) -> Result<Arc<Connection>, String> {
        let mut conns = self.connections.lock().await;
        conns.retain(|_, c| {
            let idle = c
                .last_used
                .lock()
                .map(|t| t.elapsed() > IDLE)
                .unwrap_or(true);
            let keep = c.alive.load(Ordering::Acquire) && !idle;
            if !keep {
                c.close();
            }
            keep
        });
        if let Some(c) = conns.get(server) {
            if let Ok(mut t) = c.last_used.lock() {
                *t = Instant::now();
            }
            return Ok(c.clone());
        }
        let c = Arc::new(connect(server)?);
        conns.insert(server.clone(), c.clone());
        Ok(c)
    }
}

fn qos_v4(q: u8) -> rumqttc::QoS {
    match q {
        2 => rumqttc::QoS::ExactlyOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::AtMostOnce,
    }
}

fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS;
    match q {
        2 => QoS::ExactlyOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::AtMostOnce,
    }
}

fn tls_transport() -> Result<Transport, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ))
}

fn client_id() -> String {
    format!("misto-{}", uuid::Uuid::new_v4().simple())
}

/// Open a connection (the event loop connects on its first poll) and start its event loop.
fn connect(s: &Server) -> Result<Connection, String> {
    let waiters = Arc::new(std::sync::Mutex::new(Waiters::default()));
    let alive = Arc::new(AtomicBool::new(true));
    let transport = if s.tls { Some(tls_transport()?) } else { None };
    let client = if s.v5 {
        let mut o = rumqttc::v5::MqttOptions::new(client_id(), &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true);
        if let Some(u) = &s.username {
            o.set_credentials(u, s.password.clone().unwrap_or_default());
        }
        if let Some(t) = transport {
            o.set_transport(t);
        }
        let (client, events) = rumqttc::v5::AsyncClient::new(o, 64);
        spawn_loop(waiters.clone(), alive.clone(), events);
        Client::V5(client)
    } else {
        let mut o = rumqttc::MqttOptions::new(client_id(), &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        if let Some(u) = &s.username {
            o.set_credentials(u, s.password.clone().unwrap_or_default());
        }
        if let Some(t) = transport {
            o.set_transport(t);
        }
        let (client, events) = rumqttc::AsyncClient::new(o, 64);
        spawn_loop(waiters.clone(), alive.clone(), events);
        Client::V4(client)
    };
    Ok(Connection {
        client,
        waiters,
        order: Mutex::new(()),
        alive,
        last_used: std::sync::Mutex::new(Instant::now()),
    })
}

/// An MQTT client event loop of either protocol version, reduced to what publishes wait for.
trait Events: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Progress> + Send;
}

impl Events for rumqttc::EventLoop {
    async fn next(&mut self) -> Progress {
        use rumqttc::{Event, Packet};
        match self.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(p))) => Progress::Written(p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Progress::Closed("closed by misto".into()),
            Ok(Event::Incoming(Packet::PubAck(a))) => Progress::Acked(a.pkid),
            Ok(Event::Incoming(Packet::PubComp(c))) => Progress::Acked(c.pkid),
            Ok(_) => Progress::Nothing,
            Err(e) => Progress::Closed(e.to_string()),
        }
    }
}

impl Events for rumqttc::v5::EventLoop {
    async fn next(&mut self) -> Progress {
        use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason};
        use rumqttc::v5::Event;
        match self.poll().await {
            Ok(Event::Outgoing(Outgoing::Publish(p))) => Progress::Written(p),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Progress::Closed("closed by misto".into()),
            Ok(Event::Incoming(Packet::PubAck(a))) => match a.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                    Progress::Acked(a.pkid)
                }
                r => Progress::Refused(a.pkid, format!("{r:?}")),
            },
            Ok(Event::Incoming(Packet::PubRec(r))) => match r.reason {
                PubRecReason::Success | PubRecReason::NoMatchingSubscribers => Progress::Nothing,
                why => Progress::Refused(r.pkid, format!("{why:?}")),
            },
            Ok(Event::Incoming(Packet::PubComp(c))) => Progress::Acked(c.pkid),
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                Progress::Closed(format!("the MQTT broker disconnected: {:?}", d.reason_code))
            }
            Ok(_) => Progress::Nothing,
            Err(e) => Progress::Closed(e.to_string()),
        }
    }
}

/// Drive a connection's event loop, settling waiting publishes, until it fails or is given up.
fn spawn_loop<E: Events>(
    waiters: Arc<std::sync::Mutex<Waiters>>,
    alive: Arc<AtomicBool>,
    mut events: E,
) {
    tokio::spawn(async move {
        loop {
            let p = events.next().await;
            let Ok(mut w) = waiters.lock() else { return };
            match p {
                Progress::Written(0) => {
                    if let Some(tx) = w.queued.pop_front() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Progress::Written(pkid) => {
                    if let Some(tx) = w.queued.pop_front() {
                        w.by_packet.insert(pkid, tx);
                    }
                }
                Progress::Acked(pkid) => {
                    if let Some(tx) = w.by_packet.remove(&pkid) {
                        let _ = tx.send(Ok(()));
                    }
                }
                Progress::Refused(pkid, why) => {
                    if let Some(tx) = w.by_packet.remove(&pkid) {
                        let _ = tx.send(Err(format!("the MQTT broker refused the publish: {why}")));
                    }
                }
                Progress::Closed(why) => {
                    tracing::debug!(error = %why, "MQTT connection closed");
                    alive.store(false, Ordering::Release);
                    w.fail_all(&why);
                    return;
                }
                Progress::Nothing => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    #[test]
    fn endpoints_are_read_from_uri_and_notifier_info() {
        let e = endpoint("mqtt://broker.example/city/air", &[]).unwrap();
        assert_eq!(e.topic, "city/air");
        assert_eq!(
            (e.server.port, e.qos, e.server.v5, e.server.tls),
            (1883, 0, true, false)
        );
        let e = endpoint(
            "mqtts://u%40x:p%3Aw@10.0.0.1:9000/a%20b",
            &[
                ("MQTT-QoS".into(), "2".into()),
                ("MQTT-Version".into(), "mqtt3.1.1".into()),
            ],
        )
        .unwrap();
        assert_eq!(e.topic, "a b");
        assert_eq!(e.server.username.as_deref(), Some("u@x"));
        assert_eq!(e.server.password.as_deref(), Some("p:w"));
        assert_eq!(
            (e.server.port, e.qos, e.server.v5, e.server.tls),
            (9000, 2, false, true)
        );
    }

    #[test]
    fn bad_endpoints_say_why() {
        assert!(endpoint("mqtt://host", &[]).unwrap_err().contains("topic"));
        assert!(endpoint("mqtt://host/a/+/b", &[])
            .unwrap_err()
            .contains("wildcard"));
        assert!(endpoint("mqtt://host/t", &info("MQTT-QoS", "3"))
            .unwrap_err()
            .contains("0, 1 or 2"));
        assert!(endpoint("mqtt://host/t", &info("MQTT-Version", "mqtt4"))
            .unwrap_err()
            .contains("mqtt3.1.1"));
    }
}
