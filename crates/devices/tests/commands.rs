//! Downlink commands end to end, on SQLite and on PostgreSQL: made over HTTP (through the profile's
//! `encodeDownlink`, or raw bytes), published on the topic of the network the device's uplinks came through on
//! misto's MQTT endpoint (a network server logged in as `integration` receives them), and moved along their
//! states by the network server's events (ChirpStack txack/ack, TTS downlink_failed fixtures).

use std::sync::Arc;
use std::time::Duration;

mod common;

use misto_broker::{Broker, BrokerConfig, ContextStore};
use misto_devices::model::DeviceInput;
use misto_devices::mqtt::gateway::Gateway;
use misto_devices::{Devices, DevicesConfig};
use misto_http::{AppState, HttpConfig};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};

const CODEC: &str = r#"
function decodeUplink(i) { return {data: {relay: i.bytes[0] === 1}}; }
function encodeDownlink(i) {
  if (typeof i.data.relay !== 'boolean') return {errors: ['relay must be true or false']};
  return {bytes: [i.data.relay ? 1 : 0], fPort: 10};
}"#;
const CS_APP: &str = "17c82e96-be03-4f38-aef3-f83d48582d97";
const CS_EUI: &str = "0101010101010101";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

struct World {
    base: String,
    http: reqwest::Client,
    ns: AsyncClient,
    ev: EventLoop,
    port: u16,
    /// Token of `cab-mqtt`, a device on misto's own endpoint.
    token: String,
    _dir: Option<tempfile::TempDir>,
}

impl World {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn state(&self, id: &str) -> Value {
        self.get(&format!("/devices/v1/commands/{id}")).await.1
    }

    /// Publish as the network server and wait for the acknowledgement (the message is taken then).
    async fn publish(&mut self, topic: &str, body: &Value) {
        self.ns
            .publish(topic, QoS::AtLeastOnce, false, body.to_string())
            .await
            .unwrap();
        until(&mut self.ev, |p| matches!(p, Packet::PubAck(_)))
            .await
            .expect("acknowledged");
    }

    async fn downlink(&mut self) -> Publish {
        match until(&mut self.ev, |p| matches!(p, Packet::Publish(_))).await {
            Some(Packet::Publish(p)) => p,
            other => panic!("no downlink: {other:?}"),
        }
    }
}

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

async fn start(pg: bool) -> World {
    let (store, dir) = common::store(pg).await;
    let broker = Broker::new(
        store,
        Arc::new(ContextStore::new(false)),
        BrokerConfig::default(),
    );
    let d = Devices::new(
        broker.clone(),
        DevicesConfig {
            integration_token: Some("ns-secret".into()),
            ..Default::default()
        },
    )
    .unwrap();
    d.put_profile(
        "",
        None,
        json!({"id": "cabinet", "targetType": "StreetlightControlCabinet", "codec": CODEC,
               "mapping": [{"field": "relay"}]}),
        true,
    )
    .await
    .unwrap();
    for (id, eui) in [
        (None, Some(CS_EUI)),
        (Some("dev1"), None),
        (Some("lonely"), None),
    ] {
        let input: DeviceInput =
            serde_json::from_value(json!({"id": id, "devEui": eui, "profile": "cabinet"})).unwrap();
        d.put_device("", None, input, true, false).await.unwrap();
    }
    let input: DeviceInput =
        serde_json::from_value(json!({"id": "cab-mqtt", "profile": "cabinet"})).unwrap();
    let token = d
        .put_device("", None, input, true, true)
        .await
        .unwrap()
        .1
        .unwrap();
    let (gw, _task) = Gateway::start(d.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    d.set_gateway(gw.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(broker, HttpConfig::default(), None).await;
    let app = misto_http::router_with(state, misto_devices::http::router(d));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let mut o = MqttOptions::new("ns", "127.0.0.1", gw.local_addr().port());
    o.set_credentials("integration", "ns-secret")
        .set_keep_alive(Duration::from_secs(5));
    let (ns, mut ev) = AsyncClient::new(o, 16);
    assert!(until(&mut ev, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .is_some());
    for f in [
        "application/+/device/+/command/down",
        "v3/+/devices/+/down/push",
    ] {
        ns.subscribe(f, QoS::AtLeastOnce).await.unwrap();
        assert!(until(&mut ev, |p| matches!(p, Packet::SubAck(_)))
            .await
            .is_some());
    }
    World {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        ns,
        ev,
        port: gw.local_addr().port(),
        token,
        _dir: dir,
    }
}

async fn commands(pg: bool) {
    let mut w = start(pg).await;

    // The cabinet's uplink through ChirpStack teaches misto its application.
    let up = json!({"deviceInfo": {"devEui": CS_EUI, "applicationId": CS_APP}, "fPort": 10, "data": "AA=="});
    w.publish(
        &format!("application/{CS_APP}/device/{CS_EUI}/event/up"),
        &up,
    )
    .await;

    // Switch its relay on: encodeDownlink makes the bytes, ChirpStack gets a DownlinkCommand.
    let (s, c) = w
        .post(
            &format!("/devices/v1/devices/{CS_EUI}/commands"),
            &json!({"data": {"relay": true}, "confirmed": true}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(
        (&c["state"], &c["bytes"], &c["fPort"], &c["confirmed"]),
        (&json!("queued"), &json!("AQ=="), &json!(10), &json!(true))
    );
    let id = c["id"].as_str().unwrap().to_string();
    let p = w.downlink().await;
    assert_eq!(
        p.topic,
        format!("application/{CS_APP}/device/{CS_EUI}/command/down")
    );
    let body: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        body,
        json!({"id": id, "devEui": CS_EUI, "confirmed": true, "fPort": 10, "data": "AQ=="})
    );

    // txack → sent, ack → acknowledged (the fixtures with this command's id).
    let mut txack = fixture("chirpstack-v4-event-txack.json");
    txack["queueItemId"] = json!(id);
    w.publish(
        &format!("application/{CS_APP}/device/{CS_EUI}/event/txack"),
        &txack,
    )
    .await;
    assert_eq!(w.state(&id).await["state"], "sent");
    let mut ack = fixture("chirpstack-v4-event-ack.json");
    ack["queueItemId"] = json!(id);
    w.publish(
        &format!("application/{CS_APP}/device/{CS_EUI}/event/ack"),
        &ack,
    )
    .await;
    assert_eq!(w.state(&id).await["state"], "acknowledged");
    // A late txack does not take it back.
    w.publish(
        &format!("application/{CS_APP}/device/{CS_EUI}/event/txack"),
        &txack,
    )
    .await;
    assert_eq!(w.state(&id).await["state"], "acknowledged");

    // The Things Stack: the route comes from the topic's `{app}@{tenant}`, the state from downlink_failed.
    let up = json!({"end_device_ids": {"device_id": "dev1", "application_ids": {"application_id": "app1"}},
                    "uplink_message": {"f_port": 10, "frm_payload": "AQ=="}});
    w.publish("v3/app1@ttn/devices/dev1/up", &up).await;
    let (s, c) = w
        .post(
            "/devices/v1/devices/dev1/commands",
            &json!({"bytes": "vu8=", "fPort": 15}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let tid = c["id"].as_str().unwrap().to_string();
    let p = w.downlink().await;
    assert_eq!(p.topic, "v3/app1@ttn/devices/dev1/down/push");
    let body: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(
        body,
        json!({"downlinks": [{"f_port": 15, "frm_payload": "vu8=", "confirmed": false,
                              "correlation_ids": [format!("misto:command:{tid}")]}]})
    );
    let mut failed = fixture("tts-v3-downlink-failed.json");
    failed["downlink_failed"]["downlink"]["correlation_ids"] = json!([
        "as:downlink:01E19Z5W3BZBG7CXSJE9C0A3CE",
        format!("misto:command:{tid}")
    ]);
    w.publish("v3/app1@ttn/devices/dev1/down/failed", &failed)
        .await;
    let c = w.state(&tid).await;
    assert_eq!(
        (&c["state"], &c["reason"]),
        (
            &json!("failed"),
            &json!("application downlink payload is too long")
        )
    );

    // A device that never sent an uplink has no route: the command fails, saying so.
    let (s, c) = w
        .post(
            "/devices/v1/devices/lonely/commands",
            &json!({"data": {"relay": false}}),
        )
        .await;
    assert_eq!((s, &c["state"]), (201, &json!("failed")), "{c}");
    assert!(c["reason"].as_str().unwrap().contains("no route"), "{c}");

    // A device on misto's own endpoint gets the bytes on devices/{id}/down; delivered means sent.
    let mut o = MqttOptions::new("cab-mqtt", "127.0.0.1", w.port);
    o.set_credentials("cab-mqtt", w.token.as_str())
        .set_keep_alive(Duration::from_secs(5));
    let (dc, mut dev) = AsyncClient::new(o, 16);
    assert!(until(&mut dev, |p| matches!(p, Packet::ConnAck(_)))
        .await
        .is_some());
    dc.subscribe("devices/cab-mqtt/down", QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(until(&mut dev, |p| matches!(p, Packet::SubAck(_)))
        .await
        .is_some());
    dc.publish(
        "devices/cab-mqtt/up",
        QoS::AtLeastOnce,
        false,
        json!({"relay": false}).to_string(),
    )
    .await
    .unwrap();
    assert!(until(&mut dev, |p| matches!(p, Packet::PubAck(_)))
        .await
        .is_some());
    let (s, c) = w
        .post(
            "/devices/v1/devices/cab-mqtt/commands",
            &json!({"data": {"relay": true}}),
        )
        .await;
    assert_eq!((s, &c["state"]), (201, &json!("sent")), "{c}");
    match until(&mut dev, |p| matches!(p, Packet::Publish(_))).await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "devices/cab-mqtt/down");
            let body: Value = serde_json::from_slice(&p.payload).unwrap();
            assert_eq!(
                body,
                json!({"id": c["id"], "bytes": "AQ==", "fPort": 10, "confirmed": false})
            );
        }
        other => panic!("no downlink: {other:?}"),
    }
    // With nobody subscribed, the command fails and says so.
    dc.disconnect().await.unwrap();
    while dev.poll().await.is_ok() {}
    // The endpoint forgets the session when it reads the end of the connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, c) = w
        .post(
            "/devices/v1/devices/cab-mqtt/commands",
            &json!({"data": {"relay": false}}),
        )
        .await;
    assert_eq!(c["state"], "failed", "{c}");
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("nobody is subscribed"),
        "{c}"
    );

    // Listing: newest first, paged.
    let (s, list) = w
        .get(&format!("/devices/v1/devices/{CS_EUI}/commands"))
        .await;
    assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(1)));
    let (_, c2) = w
        .post(
            &format!("/devices/v1/devices/{CS_EUI}/commands"),
            &json!({"bytes": "AA==", "fPort": 10}),
        )
        .await;
    w.downlink().await;
    let (_, list) = w
        .get(&format!("/devices/v1/devices/{CS_EUI}/commands?limit=1"))
        .await;
    assert_eq!(list[0]["id"], c2["id"]);
    let (_, list) = w
        .get(&format!(
            "/devices/v1/devices/{CS_EUI}/commands?limit=1&offset=1"
        ))
        .await;
    assert_eq!(list[0]["id"], json!(id));

    // Bad input: problem details naming what is wrong.
    let cases = [
        (
            "lonely",
            json!({"data": {"relay": "on"}}),
            400,
            "relay must be true or false",
        ),
        ("lonely", json!({"bytes": "%%%", "fPort": 1}), 400, "base64"),
        ("lonely", json!({"bytes": "AA==", "fPort": 0}), 400, "fPort"),
        ("lonely", json!({"bytes": "AA=="}), 400, "fPort"),
        (
            "lonely",
            json!({"data": {}, "bytes": "AA=="}),
            400,
            "either",
        ),
        (
            "lonely",
            json!({"bytes": "AA==", "fPort": 1, "confirmed": "yes"}),
            400,
            "confirmed",
        ),
        ("lonely", json!([1]), 400, "object"),
        ("ghost", json!({"bytes": "AA==", "fPort": 1}), 404, "ghost"),
    ];
    for (dev, body, status, detail) in cases {
        let (s, p) = w
            .post(&format!("/devices/v1/devices/{dev}/commands"), &body)
            .await;
        assert_eq!(s, status, "{body} → {p}");
        assert!(
            p["detail"].as_str().unwrap_or("").contains(detail),
            "{body} → {p}"
        );
    }
    assert_eq!(w.get("/devices/v1/commands/nope").await.0, 404);
    assert_eq!(w.get("/devices/v1/devices/ghost/commands").await.0, 404);
    assert_eq!(
        w.get("/devices/v1/devices/lonely/commands?limit=x").await.0,
        400
    );
}

#[tokio::test]
async fn commands_sqlite() {
    commands(false).await
}

#[tokio::test]
async fn commands_postgres() {
    commands(true).await
}
