//! Notifications to `mqtt://` endpoints, received from a real MQTT broker (Mosquitto on 127.0.0.1:1883,
//! started here if it is not running): the message shape (metadata + body), QoS 0/1/2, MQTT 3.1.1 and 5.0,
//! order, and recovery after the broker was unreachable.

mod common;

use std::time::Duration;

use common::{problem, TestServer};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const BROKER: (&str, u16) = ("127.0.0.1", 1883);

/// Make sure Mosquitto answers on 1883, starting it the way the machine does if it does not.
async fn mosquitto_up() {
    if tokio::net::TcpStream::connect(BROKER).await.is_ok() {
        return;
    }
    let started = std::process::Command::new("mosquitto")
        .args(["-d", "-c", "/etc/mosquitto/mosquitto.conf"])
        .status();
    assert!(
        started.is_ok_and(|s| s.success()),
        "Mosquitto is not running on 127.0.0.1:1883 and could not be started"
    );
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(BROKER).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Mosquitto did not come up on 127.0.0.1:1883");
}

/// A subscriber on one topic: every message it receives, parsed as JSON.
async fn listen(topic: &str) -> mpsc::UnboundedReceiver<Value> {
    mosquitto_up().await;
    let mut o = MqttOptions::new(
        format!("test-{}", topic.replace('/', "-")),
        BROKER.0,
        BROKER.1,
    );
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(o, 16);
    client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        let _client = client;
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("subscribed within 10 s")
        .unwrap();
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("an MQTT message within 15 s")
        .expect("listener open")
}

fn unique_topic(name: &str) -> String {
    format!("misto-test/{name}/{}", std::process::id())
}

async fn create(t: &TestServer, path: &str, body: &Value) {
    let r = t.send(Method::POST, path, body, None).await;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{path}: {text}");
}

async fn set_level(t: &TestServer, id: &str, level: i64) {
    let r = t
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            &json!({"airQualityLevel": {"type": "Property", "value": level}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
}

fn subscription(id: &str, entity: &str, uri: &str, notifier_info: Value) -> Value {
    json!({
        "id": id, "type": "Subscription",
        "entities": [{"id": entity, "type": "Building"}],
        "watchedAttributes": ["airQualityLevel"],
        "notification": {
            "attributes": ["airQualityLevel"],
            "endpoint": {
                "uri": uri,
                "accept": "application/json",
                "receiverInfo": [{"key": "X-City", "value": "Kyiv"}],
                "notifierInfo": notifier_info
            }
        }
    })
}

#[tokio::test]
async fn mqtt_notifications_carry_metadata_and_body_at_every_qos_and_version() {
    let t = TestServer::start().await;
    let cases = [
        ("v5-qos0", json!([])),
        ("v5-qos1", json!([{"key": "MQTT-QoS", "value": "1"}])),
        ("v5-qos2", json!([{"key": "MQTT-QoS", "value": "2"}])),
        (
            "v311-qos0",
            json!([{"key": "MQTT-Version", "value": "mqtt3.1.1"}]),
        ),
        (
            "v311-qos1",
            json!([{"key": "MQTT-Version", "value": "mqtt3.1.1"}, {"key": "MQTT-QoS", "value": "1"}]),
        ),
        (
            "v311-qos2",
            json!([{"key": "MQTT-Version", "value": "mqtt3.1.1"}, {"key": "MQTT-QoS", "value": "2"}]),
        ),
    ];
    for (name, info) in cases {
        let topic = unique_topic(name);
        let mut rx = listen(&topic).await;
        let entity = format!("urn:ngsi-ld:Building:mqtt-{name}");
        create(
            &t,
            "/entities",
            &json!({"id": entity, "type": "Building",
                    "airQualityLevel": {"type": "Property", "value": 1}}),
        )
        .await;
        let sub = format!("urn:ngsi-ld:Subscription:mqtt-{name}");
        create(
            &t,
            "/subscriptions",
            &subscription(
                &sub,
                &entity,
                &format!("mqtt://127.0.0.1:1883/{topic}"),
                info,
            ),
        )
        .await;
        set_level(&t, &entity, 7).await;
        // Changes are matched when the journal is read: the entity's creation, committed just before the
        // subscription, may be notified first (docs/cluster.md). The update must follow.
        let mut m = next(&mut rx).await;
        let mut due = 1;
        if m["body"]["data"][0]["airQualityLevel"]["value"] == 1 {
            m = next(&mut rx).await;
            due = 2;
        }
        assert_eq!(
            m["metadata"]["Content-Type"], "application/json",
            "{name}: {m}"
        );
        assert_eq!(m["metadata"]["X-City"], "Kyiv", "{name}: {m}");
        assert_eq!(m["body"]["type"], "Notification", "{name}: {m}");
        assert_eq!(m["body"]["subscriptionId"], sub.as_str(), "{name}");
        assert_eq!(m["body"]["data"][0]["id"], entity.as_str(), "{name}");
        assert_eq!(
            m["body"]["data"][0]["airQualityLevel"]["value"], 7,
            "{name}: {m}"
        );
        // Delivery is recorded on the subscription like any other.
        let mut sent = Value::Null;
        for _ in 0..50 {
            sent = t.get_json(&format!("/subscriptions/{sub}"), None).await["notification"]
                ["timesSent"]
                .clone();
            if sent == due {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(sent, due, "{name}");
    }
}

#[tokio::test]
async fn mqtt_notifications_of_one_subscription_arrive_in_order() {
    let t = TestServer::start().await;
    let topic = unique_topic("order");
    let mut rx = listen(&topic).await;
    let entity = "urn:ngsi-ld:Building:mqtt-order";
    create(
        &t,
        "/entities",
        &json!({"id": entity, "type": "Building", "airQualityLevel": {"type": "Property", "value": 0}}),
    )
    .await;
    create(
        &t,
        "/subscriptions",
        &subscription(
            "urn:ngsi-ld:Subscription:mqtt-order",
            entity,
            &format!("mqtt://127.0.0.1/{topic}"),
            json!([{"key": "MQTT-QoS", "value": "1"}]),
        ),
    )
    .await;
    for level in 1..=30 {
        set_level(&t, entity, level).await;
    }
    for level in 1..=30 {
        let m = next(&mut rx).await;
        assert_eq!(m["body"]["data"][0]["airQualityLevel"]["value"], level);
    }
}

#[tokio::test]
async fn an_unreachable_mqtt_broker_is_retried_and_shown_on_the_subscription() {
    let t = TestServer::start().await;
    // Nothing listens on port 1 of loopback: every attempt fails at connect.
    let entity = "urn:ngsi-ld:Building:mqtt-down";
    create(
        &t,
        "/entities",
        &json!({"id": entity, "type": "Building", "airQualityLevel": {"type": "Property", "value": 0}}),
    )
    .await;
    let sub = "urn:ngsi-ld:Subscription:mqtt-down";
    create(
        &t,
        "/subscriptions",
        &subscription(sub, entity, "mqtt://127.0.0.1:1/nowhere", json!([])),
    )
    .await;
    set_level(&t, entity, 5).await;
    let mut s = Value::Null;
    for _ in 0..100 {
        s = t.get_json(&format!("/subscriptions/{sub}"), None).await;
        if s["notification"]["timesFailed"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s["notification"]["timesFailed"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
    assert_eq!(s["notification"]["status"], "failed", "{s}");
    assert!(s["notification"]["lastFailure"].is_string(), "{s}");
}

#[tokio::test]
async fn bad_mqtt_endpoints_are_refused_with_the_reason() {
    let t = TestServer::start().await;
    let cases = [
        ("mqtt://127.0.0.1", json!([]), "topic"),
        ("mqtt://127.0.0.1/city/+/air", json!([]), "wildcard"),
        (
            "mqtt://127.0.0.1/t",
            json!([{"key": "MQTT-QoS", "value": "5"}]),
            "MQTT-QoS",
        ),
        (
            "mqtt://127.0.0.1/t",
            json!([{"key": "MQTT-Version", "value": "mqtt4"}]),
            "MQTT-Version",
        ),
    ];
    for (uri, info, why) in cases {
        let body = subscription(
            "urn:ngsi-ld:Subscription:bad-mqtt",
            "urn:ngsi-ld:Building:x",
            uri,
            info,
        );
        let r = t.send(Method::POST, "/subscriptions", &body, None).await;
        let p = problem(r, 400).await;
        assert_eq!(
            p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "{uri}"
        );
        assert!(
            p["detail"].as_str().unwrap_or_default().contains(why),
            "{uri}: {p}"
        );
    }
}
