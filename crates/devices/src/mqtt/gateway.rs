//! The embedded MQTT endpoint (MQTT 3.1.1) devices and network servers connect to.
//!
//! Unlike a general broker it knows who publishes: every connection logs in — a device with its id and device
//! token, a network server as `integration` with the integration token (`name@tenant` picks a tenant) — and
//! may publish only on its own topics ([`Principal::may_publish`]); a publish anywhere else closes the
//! connection (MQTT 3.1.1 §3.3.5 lets a server refuse a publish only so). A QoS 1 publish is acknowledged
//! (PUBACK) only once what it carried is stored or kept as a dead letter, so what a device saw acknowledged is
//! durable; QoS 2 is acknowledged the same way and taken once per packet id. Subscriptions are to downlink
//! topics only, delivered at QoS 0 by [`Gateway::publish`]; there is no routing between clients and no
//! persistent session.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use rumqttc::{
    ConnAck, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, Publish, QoS, SubAck,
    SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::topics::{self, Principal};
use crate::{DeviceError, Devices};

/// Largest packet taken or sent.
const MAX_PACKET: usize = 256 * 1024;
/// Publishes of one connection being stored at once (their acknowledgements still leave in order).
const MAX_IN_FLIGHT: usize = 64;
/// How long a new connection may take to log in.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The user name network servers log in with (`integration` or `integration@tenant`).
pub const INTEGRATION_USER: &str = "integration";

struct Session {
    tenant: String,
    filters: Vec<String>,
    tx: mpsc::Sender<Packet>,
}

struct Inner {
    devices: Devices,
    next: AtomicU64,
    sessions: Mutex<HashMap<u64, Session>>,
}

/// The running endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

type Pending = Pin<Box<dyn Future<Output = Result<Option<Packet>, DeviceError>> + Send>>;

impl Gateway {
    /// Listen on `addr` and serve connections until the task is dropped.
    pub async fn start(
        devices: Devices,
        addr: SocketAddr,
    ) -> std::io::Result<(Gateway, tokio::task::JoinHandle<()>)> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let g = Gateway {
            inner: Arc::new(Inner {
                devices,
                next: AtomicU64::new(1),
                sessions: Mutex::new(HashMap::new()),
            }),
            addr,
        };
        let inner = g.inner.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let inner = inner.clone();
                        tokio::spawn(async move {
                            metrics::gauge!("misto_mqtt_connections").increment(1.0);
                            if let Err(e) = connection(&inner, stream).await {
                                tracing::debug!(%peer, error = %e, "MQTT connection ended");
                            }
                            metrics::gauge!("misto_mqtt_connections").decrement(1.0);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "MQTT accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(%addr, "MQTT endpoint for devices and network servers is listening");
        Ok((g, task))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Send `payload` on `topic` (QoS 0) to the connections of `tenant` subscribed to it; returns how many.
    pub fn publish(&self, tenant: &str, topic: &str, payload: Bytes) -> usize {
        let Ok(sessions) = self.inner.sessions.lock() else {
            return 0;
        };
        let mut sent = 0;
        for s in sessions.values() {
            if s.tenant == tenant && s.filters.iter().any(|f| rumqttc::matches(topic, f)) {
                let p = Publish::from_bytes(topic, QoS::AtMostOnce, payload.clone());
                if s.tx.try_send(Packet::Publish(p)).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
    #[error("storage: {0}")]
    Storage(#[from] DeviceError),
}

/// Read one packet, reading more bytes as needed; None at the end of the stream.
async fn read_packet(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Option<Packet>, ConnError> {
    loop {
        match Packet::read(buf, MAX_PACKET) {
            Ok(p) => return Ok(Some(p)),
            Err(rumqttc::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(ConnError::Protocol(e.to_string())),
        }
        if rd.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Who logs in: the principal, or the CONNACK code refusing them.
async fn authenticate(
    devices: &Devices,
    c: &rumqttc::Connect,
) -> Result<Principal, ConnectReturnCode> {
    let Some(login) = &c.login else {
        return Err(ConnectReturnCode::NotAuthorized);
    };
    let (name, tenant) = login
        .username
        .split_once('@')
        .unwrap_or((login.username.as_str(), ""));
    let tenant = tenant.to_string();
    if name == INTEGRATION_USER {
        return match devices.integration_token() {
            Some(want) if want == login.password => Ok(Principal::Integration { tenant }),
            _ => Err(ConnectReturnCode::BadUserNamePassword),
        };
    }
    match devices.device_for_token(&tenant, &login.password).await {
        Ok(device) if device == name => Ok(Principal::Device { tenant, device }),
        Ok(_) | Err(DeviceError::Unauthorized(_)) => Err(ConnectReturnCode::BadUserNamePassword),
        Err(_) => Err(ConnectReturnCode::ServiceUnavailable),
    }
}

async fn connection(inner: &Arc<Inner>, stream: TcpStream) -> Result<(), ConnError> {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, read_packet(&mut rd, &mut buf)).await
    {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(_))) => {
            return Err(ConnError::Protocol(
                "the first packet was not CONNECT".into(),
            ))
        }
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ConnError::Protocol("no CONNECT in time".into())),
    };
    let principal = match authenticate(&inner.devices, &connect).await {
        Ok(p) => p,
        Err(code) => {
            metrics::counter!("misto_mqtt_logins_refused_total").increment(1);
            let mut out = BytesMut::new();
            let _ = Packet::ConnAck(ConnAck::new(code, false)).write(&mut out, MAX_PACKET);
            let _ = wr.write_all(&out).await;
            return Err(ConnError::Refused(format!(
                "login of {} refused",
                connect.login.map(|l| l.username).unwrap_or_default()
            )));
        }
    };
    let tenant = principal.tenant().to_string();
    let (tx, mut rx) = mpsc::channel::<Packet>(256);
    let _ = tx.try_send(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )));
    let writer = tokio::spawn(async move {
        let mut out = BytesMut::with_capacity(4096);
        while let Some(p) = rx.recv().await {
            let disconnect = matches!(p, Packet::Disconnect);
            if !disconnect && p.write(&mut out, MAX_PACKET).is_err() {
                continue;
            }
            // Write what is queued in one go.
            while let Ok(p) = rx.try_recv() {
                let _ = p.write(&mut out, MAX_PACKET);
            }
            if wr.write_all(&out).await.is_err() || disconnect {
                break;
            }
            out.clear();
        }
        let _ = wr.shutdown().await;
    });
    let id = inner.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = inner.sessions.lock() {
        s.insert(
            id,
            Session {
                tenant: tenant.clone(),
                filters: Vec::new(),
                tx: tx.clone(),
            },
        );
    }
    let result = serve(
        inner,
        &principal,
        &mut rd,
        &mut buf,
        &tx,
        id,
        connect.keep_alive,
    )
    .await;
    if let Ok(mut s) = inner.sessions.lock() {
        s.remove(&id);
    }
    // The writer sends what is queued (acknowledgements of stored publishes), then closes.
    let _ = tx.send(Packet::Disconnect).await;
    drop(tx);
    let _ = writer.await;
    result
}

async fn serve(
    inner: &Arc<Inner>,
    principal: &Principal,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Packet>,
    id: u64,
    keep_alive: u16,
) -> Result<(), ConnError> {
    let tenant = principal.tenant().to_string();
    // A client silent for one and a half keep-alive periods is gone (MQTT 3.1.1 §3.1.2.10).
    let idle = (keep_alive > 0).then(|| Duration::from_millis(keep_alive as u64 * 1500));
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    // QoS 2 packet ids taken and not yet released: a resent PUBLISH with one of them is not taken again.
    let mut qos2: HashSet<u16> = HashSet::new();
    let mut deadline = idle.map(|d| tokio::time::Instant::now() + d);
    loop {
        // Complete packets already buffered first; then whichever comes first.
        let packet = match Packet::read(buf, MAX_PACKET) {
            Ok(p) => Some(p),
            Err(rumqttc::Error::InsufficientBytes(_)) => None,
            Err(e) => return Err(ConnError::Protocol(e.to_string())),
        };
        let Some(packet) = packet else {
            tokio::select! {
                n = rd.read_buf(buf), if pending.len() < MAX_IN_FLIGHT => {
                    if n? == 0 {
                        break;
                    }
                    deadline = idle.map(|d| tokio::time::Instant::now() + d);
                }
                Some(done) = pending.next(), if !pending.is_empty() => {
                    if let Some(ack) = done? {
                        let _ = tx.send(ack).await;
                    }
                }
                _ = sleep_until(deadline) => {
                    return Err(ConnError::Protocol("keep-alive expired".into()));
                }
            }
            continue;
        };
        match packet {
            Packet::Publish(p) => {
                let Some(route) = topics::route(&p.topic).filter(|r| principal.may_publish(r))
                else {
                    metrics::counter!("misto_mqtt_publishes_refused_total").increment(1);
                    return Err(ConnError::Refused(format!(
                        "{principal:?} may not publish on {}",
                        p.topic
                    )));
                };
                if p.qos == QoS::ExactlyOnce && !qos2.insert(p.pkid) {
                    let _ = tx.send(Packet::PubRec(PubRec::new(p.pkid))).await;
                    continue;
                }
                metrics::counter!("misto_mqtt_publishes_total", "source" => route.source())
                    .increment(1);
                let devices = inner.devices.clone();
                let tenant = tenant.clone();
                pending.push_back(Box::pin(async move {
                    super::take(&devices, &tenant, &route, &p.topic, &p.payload).await?;
                    Ok(match p.qos {
                        QoS::AtMostOnce => None,
                        QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(p.pkid))),
                        QoS::ExactlyOnce => Some(Packet::PubRec(PubRec::new(p.pkid))),
                    })
                }));
            }
            Packet::PubRel(r) => {
                qos2.remove(&r.pkid);
                let _ = tx.send(Packet::PubComp(PubComp::new(r.pkid))).await;
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut granted = Vec::new();
                for f in &s.filters {
                    if principal.may_subscribe(&f.path) {
                        codes.push(SubscribeReasonCode::Success(QoS::AtMostOnce));
                        granted.push(f.path.clone());
                    } else {
                        codes.push(SubscribeReasonCode::Failure);
                    }
                }
                if let Ok(mut sessions) = inner.sessions.lock() {
                    if let Some(sess) = sessions.get_mut(&id) {
                        for g in granted {
                            if !sess.filters.contains(&g) {
                                sess.filters.push(g);
                            }
                        }
                    }
                }
                let _ = tx.send(Packet::SubAck(SubAck::new(s.pkid, codes))).await;
            }
            Packet::Unsubscribe(u) => {
                if let Ok(mut sessions) = inner.sessions.lock() {
                    if let Some(sess) = sessions.get_mut(&id) {
                        sess.filters.retain(|f| !u.topics.contains(f));
                    }
                }
                let _ = tx.send(Packet::UnsubAck(UnsubAck::new(u.pkid))).await;
            }
            Packet::PingReq => {
                let _ = tx.send(Packet::PingResp).await;
            }
            Packet::Disconnect => break,
            // Acknowledgements of what we sent at QoS 0 do not come; anything else is a client's mistake.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
            other => {
                return Err(ConnError::Protocol(format!(
                    "unexpected packet from a client: {other:?}"
                )))
            }
        }
    }
    // Finish what was being stored so its acknowledgements go out before the connection closes.
    while let Some(done) = pending.next().await {
        if let Some(ack) = done? {
            let _ = tx.send(ack).await;
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
