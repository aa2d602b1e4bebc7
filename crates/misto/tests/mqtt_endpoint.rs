//! The binary's MQTT endpoint: a device registered over HTTP logs in with its token and publishes; the
//! acknowledged reading is an NGSI-LD entity at once.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};

mod common;
use common::misto;

#[tokio::test(flavor = "multi_thread")]
async fn a_device_publishes_over_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = misto();
    cmd.env("MISTO_MQTT_ADDR", "127.0.0.1:0");
    let (mut child, base, lines) = common::serve_lines(cmd, dir.path());
    let mqtt: std::net::SocketAddr = lines
        .iter()
        .find_map(|l| l.strip_prefix("misto MQTT endpoint on "))
        .unwrap_or_else(|| panic!("no MQTT address printed: {lines:?}"))
        .trim()
        .parse()
        .unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/devices/v1/profiles"))
        .json(&json!({"id": "th", "targetType": "AirQualityObserved",
                      "mapping": [{"field": "temperature", "unitCode": "CEL"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r: Value = http
        .post(format!("{base}/devices/v1/devices?token=true"))
        .json(&json!({"id": "th-1", "profile": "th"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["token"].as_str().unwrap_or_else(|| panic!("{r}"));

    let mut o = MqttOptions::new("th-1", mqtt.ip().to_string(), mqtt.port());
    o.set_credentials("th-1", token);
    let (c, mut ev) = AsyncClient::new(o, 8);
    c.publish(
        "devices/th-1/up",
        QoS::AtLeastOnce,
        false,
        r#"{"temperature": 23.25}"#,
    )
    .await
    .unwrap();
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return true,
                Ok(_) => {}
                Err(e) => panic!("MQTT: {e}"),
            }
        }
    })
    .await
    .unwrap_or(false);
    assert!(acked, "no PUBACK");
    let e: Value = http
        .get(format!("{base}/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:th-1"))
        .header("Link", "<https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(e["temperature"]["value"], json!(23.25), "{e}");
}
