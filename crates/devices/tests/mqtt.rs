//! The MQTT transports on a real broker (SQLite, and PostgreSQL at MISTO_TEST_DATABASE_URL): the embedded
//! endpoint with device logins and topic ACLs, acknowledgements that mean "stored", downlink subscriptions; and
//! the client of the external Mosquitto at 127.0.0.1:1883 with its persistent session.

use std::sync::Arc;
use std::time::Duration;

mod common;

use misto_broker::{Broker, BrokerConfig, ContextStore};
use misto_devices::model::DeviceInput;
use misto_devices::mqtt::external::{ExternalConfig, ExternalLink};
use misto_devices::mqtt::gateway::Gateway;
use misto_devices::{Devices, DevicesConfig};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::json;

const TARGET: &str = "urn:ngsi-ld:AirQualityObserved:";

async fn devices(pg: bool) -> (Devices, Option<tempfile::TempDir>) {
    let (store, dir) = common::store(pg).await;
    let broker = Broker::new(
        store,
        Arc::new(ContextStore::new(false)),
        BrokerConfig::default(),
    );
    let d = Devices::new(
        broker,
        DevicesConfig {
            integration_token: Some("ns-secret".into()),
            ..Default::default()
        },
    )
    .unwrap();
    d.put_profile(
        "",
        None,
        json!({"id": "th", "targetType": "AirQualityObserved",
               "mapping": [{"field": "temperature", "unitCode": "CEL"}]}),
        true,
    )
    .await
    .unwrap();
    (d, dir)
}

/// Register a device; returns its token.
async fn device(d: &Devices, id: Option<&str>, eui: Option<&str>) -> String {
    let input: DeviceInput = serde_json::from_value(json!({
        "id": id, "devEui": eui, "profile": "th",
        "location": {"type": "Point", "coordinates": [30.52, 50.45]}}))
    .unwrap();
    d.put_device("", None, input, true, true)
        .await
        .unwrap()
        .1
        .unwrap()
}

fn client(port: u16, id: &str, user: &str, pass: &str) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user, pass)
        .set_keep_alive(Duration::from_secs(5));
    AsyncClient::new(o, 16)
}

/// Poll until `want` matches an incoming packet; None when the connection ends or time runs out.
async fn until(ev: &mut EventLoop, want: impl Fn(&Packet) -> bool) -> Option<Packet> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ev.poll()).await {
            Ok(Ok(Event::Incoming(p))) if want(&p) => return Some(p),
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}

async fn temperature(d: &Devices, id: &str) -> Option<f64> {
    let e = d.broker.get_entity("", id).await.ok()?;
    let (_, inst) = e.iter().find(|(k, _)| k.ends_with("/temperature"))?;
    inst[0]["value"].as_f64()
}

async fn embedded(pg: bool) {
    let (d, _dir) = devices(pg).await;
    let token = device(&d, Some("aq-1"), None).await;
    let _other = device(&d, Some("aq-2"), None).await;
    device(&d, None, Some("0101010101010101")).await;
    let (gw, _task) = Gateway::start(d.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let port = gw.local_addr().port();

    // A wrong token is refused at CONNECT.
    let (_c, mut ev) = client(port, "bad", "aq-1", "aq-1.00");
    match ev.poll().await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("a bad token connected: {other:?}"),
    }
    // So is another device's token under this device's name.
    let (_c, mut ev) = client(port, "bad2", "aq-2", &token);
    assert!(matches!(
        ev.poll().await,
        Err(ConnectionError::ConnectionRefused(_))
    ));

    // The device publishes its reading; the PUBACK means it is stored.
    let (c, mut ev) = client(port, "aq-1", "aq-1", &token);
    assert!(until(&mut ev, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .is_some());
    c.publish(
        "devices/aq-1/up",
        QoS::AtLeastOnce,
        false,
        json!({"temperature": 21.5}).to_string(),
    )
    .await
    .unwrap();
    assert!(until(&mut ev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .is_some());
    assert_eq!(temperature(&d, &format!("{TARGET}aq-1")).await, Some(21.5));

    // Its own downlink topic only.
    c.subscribe("devices/aq-1/down", QoS::AtLeastOnce)
        .await
        .unwrap();
    c.subscribe("devices/aq-2/down", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut codes = Vec::new();
    while codes.len() < 2 {
        match until(&mut ev, |p| matches!(p, Packet::SubAck(_))).await {
            Some(Packet::SubAck(a)) => codes.extend(a.return_codes),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            SubscribeReasonCode::Success(QoS::AtMostOnce),
            SubscribeReasonCode::Failure
        ]
    );
    assert_eq!(gw.publish("", "devices/aq-1/down", "relay=on".into()), 1);
    assert_eq!(gw.publish("", "devices/aq-2/down", "relay=on".into()), 0);
    match until(&mut ev, |p| matches!(p, Packet::Publish(_))).await {
        Some(Packet::Publish(p)) => {
            assert_eq!(
                (p.topic.as_str(), &p.payload[..]),
                ("devices/aq-1/down", &b"relay=on"[..])
            )
        }
        other => panic!("no downlink: {other:?}"),
    }

    // A payload that is not JSON is acknowledged and kept as a dead letter with the reason.
    c.publish("devices/aq-1/up", QoS::AtLeastOnce, false, "temperature=7")
        .await
        .unwrap();
    assert!(until(&mut ev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .is_some());
    let dl = d.broker.store.list_dead_letters("", 0, 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert!(dl[0].reason.contains("not JSON"), "{}", dl[0].reason);

    // Publishing as another device closes the connection and stores nothing.
    c.publish(
        "devices/aq-2/up",
        QoS::AtLeastOnce,
        false,
        json!({"temperature": 99}).to_string(),
    )
    .await
    .unwrap();
    assert!(until(&mut ev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .is_none());
    assert_eq!(temperature(&d, &format!("{TARGET}aq-2")).await, None);

    // A network server logs in with the integration token and publishes ChirpStack events.
    let (ns, mut nev) = client(port, "chirpstack", "integration", "ns-secret");
    assert!(until(&mut nev, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .is_some());
    let up = json!({"time": "2025-03-01T08:00:00Z",
        "deviceInfo": {"devEui": "0101010101010101", "deviceName": "Test device"},
        "fPort": 1, "object": {"temperature": 19.0},
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -57, "snr": 10.5}]});
    ns.publish(
        "application/17c8/device/0101010101010101/event/up",
        QoS::ExactlyOnce,
        false,
        up.to_string(),
    )
    .await
    .unwrap();
    assert!(until(&mut nev, |p| matches!(p, Packet::PubComp(_)))
        .await
        .is_some());
    assert_eq!(
        temperature(&d, &format!("{TARGET}0101010101010101")).await,
        Some(19.0)
    );
    // … but not as a device.
    ns.publish("devices/aq-1/up", QoS::AtLeastOnce, false, "{}")
        .await
        .unwrap();
    assert!(until(&mut nev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .is_none());
}

#[tokio::test]
async fn embedded_endpoint_sqlite() {
    embedded(false).await
}

#[tokio::test]
async fn embedded_endpoint_postgres() {
    embedded(true).await
}

/// Against the Mosquitto the machine runs on 127.0.0.1:1883.
#[tokio::test]
async fn external_broker_with_a_persistent_session() {
    let (d, _dir) = devices(false).await;
    let id = format!("ext-{}", std::process::id());
    device(&d, Some(&id), None).await;
    let cfg =
        ExternalConfig::from_url("mqtt://127.0.0.1:1883", &format!("misto-test-{id}"), "").unwrap();
    let (_link, task) = ExternalLink::start(d.clone(), cfg.clone());
    let (pubc, mut pev) = {
        let mut o = MqttOptions::new(format!("pub-{id}"), "127.0.0.1", 1883);
        o.set_keep_alive(Duration::from_secs(5));
        AsyncClient::new(o, 16)
    };
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    let target = format!("{TARGET}{id}");
    // The link subscribes once connected: publish until the first reading arrives.
    let mut got = None;
    for _ in 0..100 {
        pubc.publish(
            format!("devices/{id}/up"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 5.0}).to_string(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = temperature(&d, &target).await;
        if got.is_some() {
            break;
        }
    }
    assert_eq!(got, Some(5.0), "the reading from Mosquitto never arrived");
    // misto goes away; a reading published meanwhile is kept by Mosquitto for its session and taken on return.
    task.abort();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pubc.publish(
        format!("devices/{id}/up"),
        QoS::AtLeastOnce,
        false,
        json!({"temperature": 6.5}).to_string(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_link, _task) = ExternalLink::start(d.clone(), cfg);
    let mut last = None;
    for _ in 0..100 {
        last = temperature(&d, &target).await;
        if last == Some(6.5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        last,
        Some(6.5),
        "the reading published while misto was away was lost"
    );
}

/// Downlink commands leave through the external broker for the tenant it serves.
#[tokio::test]
async fn commands_through_the_external_broker() {
    let (d, _dir) = devices(false).await;
    let id = format!("extdown-{}", std::process::id());
    device(&d, Some(&id), None).await;
    let cfg =
        ExternalConfig::from_url("mqtt://127.0.0.1:1883", &format!("misto-test-{id}"), "").unwrap();
    let (link, _task) = ExternalLink::start(d.clone(), cfg);
    d.set_external(link, "");
    let (sub, mut sev) = {
        let mut o = MqttOptions::new(format!("sub-{id}"), "127.0.0.1", 1883);
        o.set_keep_alive(Duration::from_secs(5));
        AsyncClient::new(o, 16)
    };
    sub.subscribe(format!("devices/{id}/down"), QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(until(&mut sev, |p| matches!(p, Packet::SubAck(_)))
        .await
        .is_some());
    // The device's uplink over the broker teaches misto its route (published by a client of its own, as the
    // subscriber's event loop is polled only below).
    let (pubc, mut pev) = {
        let mut o = MqttOptions::new(format!("pub-{id}"), "127.0.0.1", 1883);
        o.set_keep_alive(Duration::from_secs(5));
        AsyncClient::new(o, 16)
    };
    tokio::spawn(async move { while pev.poll().await.is_ok() {} });
    let target = format!("{TARGET}{id}");
    let mut got = None;
    for _ in 0..100 {
        pubc.publish(
            format!("devices/{id}/up"),
            QoS::AtLeastOnce,
            false,
            json!({"temperature": 4.0}).to_string(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        got = temperature(&d, &target).await;
        if got.is_some() {
            break;
        }
    }
    assert_eq!(got, Some(4.0), "the reading from Mosquitto never arrived");
    let c = d
        .command("", &id, &json!({"bytes": "AQI=", "fPort": 3}))
        .await
        .unwrap();
    assert_eq!(c.state, "sent", "{c:?}");
    match until(
        &mut sev,
        |p| matches!(p, Packet::Publish(x) if x.topic.ends_with("/down")),
    )
    .await
    {
        Some(Packet::Publish(p)) => {
            let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            assert_eq!(
                body,
                json!({"id": c.id, "bytes": "AQI=", "fPort": 3, "confirmed": false})
            );
        }
        other => panic!("no downlink on the external broker: {other:?}"),
    }
    // Another tenant's devices are not the link's to serve.
    let c = d
        .command("other", &id, &json!({"bytes": "AQI=", "fPort": 3}))
        .await;
    assert!(c.is_err(), "no such device in tenant 'other'");
}
