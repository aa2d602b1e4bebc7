//! The device layer end to end over HTTP: a misto server (NGSI-LD router plus the device router) on a free
//! port, each test run on SQLite and on PostgreSQL (`MISTO_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, a schema of its own).

use std::sync::Arc;

mod common;

use misto_broker::{Broker, BrokerConfig, ContextStore};
use misto_devices::{CodecLimits, Devices, DevicesConfig};
use misto_http::{AppState, HttpConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

const ENV_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld";

const DEVICE_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld";

struct Server {
    base: String,
    client: Client,
    _dir: Option<tempfile::TempDir>,
}

async fn start(postgres: bool, config: DevicesConfig) -> Server {
    let (store, dir) = common::store(postgres).await;
    let contexts = Arc::new(ContextStore::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    contexts.set_base_url(&format!("http://{addr}/ngsi-ld/v1/jsonldContexts/"));
    let broker = Broker::new(store, contexts, BrokerConfig::default());
    broker.spawn_notifier();
    let devices = Devices::new(broker.clone(), config).unwrap();
    let state = AppState::new(broker, HttpConfig::default(), None).await;
    let app = misto_http::router_with(state, misto_devices::http::router(devices));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base: format!("http://{addr}"),
        client: Client::new(),
        _dir: dir,
    }
}

impl Server {
    async fn call(&self, m: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut r = self.client.request(m, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    /// An entity read back with the Environment context (so the short names are the model's), or the
    /// Device model's for Device entities.
    async fn entity(&self, id: &str) -> Value {
        let ctx = if id.starts_with("urn:ngsi-ld:Device:") {
            DEVICE_CONTEXT
        } else {
            ENV_CONTEXT
        };
        let r = self
            .client
            .get(format!("{}/ngsi-ld/v1/entities/{id}", self.base))
            .header(
                "Link",
                format!("<{ctx}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "entity {id}");
        r.json().await.unwrap()
    }

    async fn temporal(&self, id: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/ngsi-ld/v1/temporal/entities/{id}", self.base))
            .header(
                "Link",
                format!("<{ENV_CONTEXT}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "temporal entity {id}");
        r.json().await.unwrap()
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// An EM300-TH codec written for these tests from Milesight's channel/type format.
const EM300_CODEC: &str = r#"
function decodeUplink(input) {
  var b = input.bytes, data = {}, i = 0;
  while (i < b.length) {
    var ch = b[i++], ty = b[i++];
    if (ch === 0x01 && ty === 0x75) { data.battery = b[i]; i += 1; }
    else if (ch === 0x03 && ty === 0x67) {
      var t = (b[i + 1] << 8) | b[i];
      if (t > 0x7fff) { t -= 0x10000; }
      data.temperature = t / 10; i += 2;
    }
    else if (ch === 0x04 && ty === 0x68) { data.humidity = b[i] / 2; i += 1; }
    else { return { errors: ["unknown channel " + ch + " type " + ty] }; }
  }
  return { data: data };
}
"#;

fn em300_profile(codec: &str) -> Value {
    json!({
        "id": "em300-th",
        "model": "Milesight EM300-TH",
        "codec": codec,
        "reportInterval": 600,
        "targetType": "AirQualityObserved",
        "mapping": [
            {"field": "temperature", "unitCode": "CEL"},
            {"field": "humidity", "attribute": "relativeHumidity", "unitCode": "P1"}
        ],
        "testVectors": fixture("milesight-em300-th.test_decode.json"),
    })
}

fn passthrough_profile() -> Value {
    json!({
        "id": "ns-decoded",
        "targetType": "AirQualityObserved",
        "mapping": [
            {"field": "temperature", "unitCode": "CEL"},
            {"field": "humidity", "attribute": "relativeHumidity", "unitCode": "P1"},
            {"field": "luminosity", "attribute": "illuminance"}
        ]
    })
}

async fn register(s: &Server, profile: Value, device: Value) {
    let (st, body) = s.post("/devices/v1/profiles", &profile).await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = s.post("/devices/v1/devices", &device).await;
    assert_eq!(st, 201, "{body}");
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn chirpstack_events_become_entities(pg: bool) {
    let s = start(pg, DevicesConfig::default()).await;
    register(
        &s,
        passthrough_profile(),
        json!({"devEui": "0101010101010101", "profile": "ns-decoded", "name": "Test device",
               "controlledProperty": ["temperature", "humidity"],
               "location": {"type": "Point", "coordinates": [30.52, 50.45]}}),
    )
    .await;
    // The docs' up event has no object (no codec on the ChirpStack side); with one it carries `object`.
    let mut up = fixture("chirpstack-v4-event-up.json");
    up["object"] = json!({"temperature": 21.5, "humidity": 40});
    let (st, body) = s.post("/integrations/chirpstack?event=up", &up).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["entity"],
        "urn:ngsi-ld:AirQualityObserved:0101010101010101"
    );

    let e = s
        .entity("urn:ngsi-ld:AirQualityObserved:0101010101010101")
        .await;
    assert_eq!(e["type"], "AirQualityObserved");
    assert_eq!(e["temperature"]["value"], 21.5);
    assert_eq!(e["temperature"]["unitCode"], "CEL");
    assert_eq!(e["temperature"]["observedAt"], "2022-07-18T09:34:15.775Z");
    assert_eq!(e["relativeHumidity"]["unitCode"], "P1");
    assert_eq!(
        e["refDevice"]["object"],
        "urn:ngsi-ld:Device:0101010101010101"
    );
    assert_eq!(e["location"]["value"]["coordinates"], json!([30.52, 50.45]));

    // A second reading: the temporal store holds both instances.
    let mut later = up.clone();
    later["time"] = json!("2022-07-18T09:44:15Z");
    later["fCnt"] = json!(3);
    later["object"] = json!({"temperature": 22.0, "humidity": 41});
    let (st, _) = s.post("/integrations/chirpstack?event=up", &later).await;
    assert_eq!(st, 200);
    let t = s
        .temporal("urn:ngsi-ld:AirQualityObserved:0101010101010101")
        .await;
    let temps = t["temperature"].as_array().expect("temperature history");
    assert_eq!(temps.len(), 2, "{t}");
    assert!(
        temps.iter().any(|i| i["observedAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("2022-07-18T09:44:15"))
            && i["value"] == 22.0),
        "{t}"
    );

    // Status gives the battery; health shows RSSI, SNR, gateway and the frame-counter gap (0 → 3: two lost).
    let (st, _) = s
        .post(
            "/integrations/chirpstack?event=status",
            &fixture("chirpstack-v4-event-status.json"),
        )
        .await;
    assert_eq!(st, 200);
    let (_, d) = s.get("/devices/v1/devices/0101010101010101").await;
    let h = &d["health"];
    assert_eq!(h["rssi"], -36.0);
    assert_eq!(h["snr"], 10.5);
    assert_eq!(h["gateway"], "0016c001f153a14c");
    assert_eq!(h["frameCounterGaps"], 2);
    assert_eq!(h["uplinks"], 2);
    assert_eq!(h["lastSeen"], "2022-07-18T09:44:15.000Z");
    assert!((h["batteryLevel"].as_f64().unwrap() - 0.883).abs() < 1e-9);
    let dev = s.entity("urn:ngsi-ld:Device:0101010101010101").await;
    assert!((dev["batteryLevel"]["value"].as_f64().unwrap() - 0.883).abs() < 1e-9);
    assert_eq!(dev["rssi"]["value"], -36.0);

    // The other events are understood (and change nothing that matters here).
    for ev in ["join", "ack", "txack", "log", "location"] {
        let (st, body) = s
            .post(
                &format!("/integrations/chirpstack?event={ev}"),
                &fixture(&format!("chirpstack-v4-event-{ev}.json")),
            )
            .await;
        assert_eq!(st, 200, "{ev}: {body}");
        assert_eq!(body["outcome"], "taken", "{ev}");
    }
    let (st, p) = s.post("/integrations/chirpstack?event=bogus", &up).await;
    assert_eq!(st, 400);
    assert_eq!(p["status"], 400);
}

async fn tts_uplinks_become_entities(pg: bool) {
    let s = start(pg, DevicesConfig::default()).await;
    register(
        &s,
        passthrough_profile(),
        json!({"id": "dev1", "devEui": "0004A30B001C0530", "profile": "ns-decoded"}),
    )
    .await;
    let (st, body) = s
        .post(
            "/integrations/tts/uplink",
            &fixture("tts-v3-uplink-message.json"),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let e = s.entity("urn:ngsi-ld:AirQualityObserved:dev1").await;
    assert_eq!(e["temperature"]["value"], 1.0);
    assert_eq!(e["temperature"]["observedAt"], "2020-02-12T15:15:46.014Z");
    assert_eq!(e["temperature"]["unitCode"], "CEL");
    assert_eq!(e["illuminance"]["value"], 0.64);
    let t = s.temporal("urn:ngsi-ld:AirQualityObserved:dev1").await;
    assert_eq!(t["temperature"].as_array().map(Vec::len), Some(1), "{t}");
    let (_, d) = s.get("/devices/v1/devices/dev1").await;
    assert_eq!(d["health"]["gateway"], "gtw1");
    assert_eq!(d["health"]["rssi"], -35.0);
    // The MQTT-style uplink has no decoded payload and the profile no codec: a dead letter, not an error.
    let (st, body) = s
        .post(
            "/integrations/tts/uplink",
            &fixture("tts-v3-uplink-message-mqtt.json"),
        )
        .await;
    assert_eq!(st, 202, "{body}");
    for f in [
        "tts-v3-join-accept.json",
        "tts-v3-downlink-ack.json",
        "tts-v3-downlink-failed.json",
    ] {
        let (st, body) = s.post("/integrations/tts/event", &fixture(f)).await;
        assert_eq!(st, 200, "{f}: {body}");
    }
    let (st, _) = s
        .post("/integrations/tts/uplink", &json!({"nothing": 1}))
        .await;
    assert_eq!(st, 400);
}

async fn em300_codec_decodes_the_vector(pg: bool) {
    let s = start(pg, DevicesConfig::default()).await;
    register(
        &s,
        em300_profile(EM300_CODEC),
        json!({"devEui": "24e124136b502217", "profile": "em300-th"}),
    )
    .await;
    let mut up = fixture("chirpstack-v4-event-up.json");
    up["deviceInfo"]["devEui"] = json!("24e124136b502217");
    up["fPort"] = json!(85);
    up["data"] = json!(base64(&[3, 103, 44, 0, 4, 104, 23]));
    let (st, body) = s.post("/integrations/chirpstack?event=up", &up).await;
    assert_eq!(st, 200, "{body}");
    let e = s
        .entity("urn:ngsi-ld:AirQualityObserved:24e124136b502217")
        .await;
    assert_eq!(e["temperature"]["value"], 4.4);
    assert_eq!(e["relativeHumidity"]["value"], 11.5);
    assert_eq!(e["relativeHumidity"]["unitCode"], "P1");
}

async fn failing_codecs_go_to_dead_letters_and_replay(pg: bool) {
    let s = start(
        pg,
        DevicesConfig {
            codec_limits: CodecLimits {
                time: std::time::Duration::from_millis(50),
                memory: 8 << 20,
            },
            ..Default::default()
        },
    )
    .await;
    let looping = json!({"id": "loops", "targetType": "AirQualityObserved", "codec": "function decodeUplink(i) { while (true) {} }"});
    let throwing = json!({"id": "throws", "targetType": "AirQualityObserved", "codec": "function decodeUplink(i) { throw new Error('bad byte ' + i.bytes[0]); }"});
    let garbage = json!({"id": "garbage", "targetType": "AirQualityObserved", "codec": "function decodeUplink(i) { return 42; }"});
    let hungry = json!({"id": "hungry", "targetType": "AirQualityObserved", "codec": "function decodeUplink(i) { var a = []; while (true) { a.push(new Array(100000).fill(1)); } }"});
    for (p, eui) in [
        (&looping, "0000000000000001"),
        (&throwing, "0000000000000002"),
        (&garbage, "0000000000000003"),
        (&hungry, "0000000000000004"),
    ] {
        register(&s, p.clone(), json!({"devEui": eui, "profile": p["id"]})).await;
    }
    let payload = base64(&[3, 103, 44, 0, 4, 104, 23]);
    let mut reasons = Vec::new();
    for eui in [
        "0000000000000001",
        "0000000000000002",
        "0000000000000003",
        "0000000000000004",
        "00000000000000ff",
    ] {
        let mut up = fixture("chirpstack-v4-event-up.json");
        up["deviceInfo"]["devEui"] = json!(eui);
        up["data"] = json!(payload);
        let (st, body) = s.post("/integrations/chirpstack?event=up", &up).await;
        assert_eq!(st, 202, "{eui}: {body}");
        assert_eq!(body["outcome"], "deadLetter");
        reasons.push(body["reason"].as_str().unwrap().to_string());
    }
    assert!(reasons[0].contains("time limit"), "{reasons:?}");
    assert!(reasons[1].contains("bad byte 3"), "{reasons:?}");
    assert!(
        reasons[2].contains("42") || reasons[2].contains("no data"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("memory"), "{reasons:?}");
    assert!(
        reasons[4].contains("unknown device 00000000000000ff"),
        "{reasons:?}"
    );

    let (st, list) = s.get("/devices/v1/deadletters").await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 5);
    assert_eq!(list[1]["device"], "0000000000000002");

    // Fix two profiles: their dead letters replay; the others stay.
    for id in ["loops", "throws"] {
        let (st, body) = s
            .call(
                Method::PUT,
                &format!("/devices/v1/profiles/{id}"),
                Some(&em300_profile(EM300_CODEC)),
            )
            .await;
        assert_eq!(st, 400, "the body's id differs from the path: {body}");
        let mut fixed = em300_profile(EM300_CODEC);
        fixed["id"] = json!(id);
        let (st, body) = s
            .call(
                Method::PUT,
                &format!("/devices/v1/profiles/{id}"),
                Some(&fixed),
            )
            .await;
        assert_eq!(st, 200, "{body}");
    }
    let (st, r) = s.post("/devices/v1/deadletters/replay", &json!({})).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["replayed"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["failed"].as_array().unwrap().len(), 3, "{r}");
    let e = s
        .entity("urn:ngsi-ld:AirQualityObserved:0000000000000001")
        .await;
    assert_eq!(e["temperature"]["value"], 4.4);
    assert_eq!(
        e["temperature"]["observedAt"], "2022-07-18T09:34:15.775Z",
        "replay keeps the uplink's time"
    );
    let (_, d) = s.get("/devices/v1/devices/0000000000000001").await;
    assert_eq!(d["health"]["uplinks"], 1, "a replay is not a second uplink");
    let (_, list) = s.get("/devices/v1/deadletters").await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    // The codec threads survived all of it.
    let mut up = fixture("chirpstack-v4-event-up.json");
    up["deviceInfo"]["devEui"] = json!("0000000000000002");
    up["data"] = json!(payload);
    let (st, _) = s.post("/integrations/chirpstack?event=up", &up).await;
    assert_eq!(st, 200);
    let id = list[0]["id"].as_i64().unwrap();
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/devices/v1/deadletters/{id}"),
            None,
        )
        .await;
    assert_eq!(st, 204);
}

async fn profiles_with_failing_vectors_are_refused(pg: bool) {
    let s = start(pg, DevicesConfig::default()).await;
    // Humidity read as a whole byte instead of halves: the vector says 11.5, the codec 23.
    let wrong = EM300_CODEC.replace("b[i] / 2", "b[i]");
    let (st, p) = s.post("/devices/v1/profiles", &em300_profile(&wrong)).await;
    assert_eq!(st, 400, "{p}");
    assert_eq!(p["title"], "CodecTestVectorFailed");
    assert_eq!(p["vector"]["name"], "Test decode Milesight EM300-TH");
    assert_eq!(p["got"]["humidity"], 23);
    let (st, _) = s.get("/devices/v1/profiles/em300-th").await;
    assert_eq!(st, 404);
    let (st, p) = s
        .post(
            "/devices/v1/profiles",
            &json!({"id": "x", "targetType": "T", "codec": "function ("}),
        )
        .await;
    assert_eq!(st, 400, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("compile"), "{p}");
    let (st, _) = s
        .post(
            "/devices/v1/profiles",
            &json!({"id": "x", "targetType": "T", "codec": "var x = 1;"}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .post(
            "/devices/v1/profiles",
            &json!({"id": "x", "targetType": "T", "bogus": 1}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, body) = s
        .post("/devices/v1/profiles", &em300_profile(EM300_CODEC))
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, _) = s
        .post("/devices/v1/profiles", &em300_profile(EM300_CODEC))
        .await;
    assert_eq!(st, 409);
}

async fn device_registry_tokens_and_csv(pg: bool) {
    let s = start(pg, DevicesConfig::default()).await;
    let (st, _) = s.post("/devices/v1/profiles", &passthrough_profile()).await;
    assert_eq!(st, 201);
    let (st, d) = s
        .post(
            "/devices/v1/devices?token=true",
            &json!({"id": "kiosk-7", "profile": "ns-decoded", "name": "Kiosk 7"}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    let token = d["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("kiosk-7."));
    let (st, got) = s.get("/devices/v1/devices/kiosk-7").await;
    assert_eq!(st, 200);
    assert!(got.get("token").is_none(), "the token is shown once");
    assert_eq!(got["hasToken"], true);
    let dev = s.entity("urn:ngsi-ld:Device:kiosk-7").await;
    assert_eq!(dev["type"], "Device");

    // Ingest with the token.
    let send = |tok: Option<String>, body: Value| {
        let mut r = s
            .client
            .post(format!("{}/devices/v1/ingest", s.base))
            .json(&body);
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let r = send(
        Some(token.clone()),
        json!({"temperature": 19.5, "humidity": 55}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(
        Some(token.clone()),
        json!({"data": {"temperature": 20.0}, "time": "2026-01-01T10:00:00Z"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let e = s.entity("urn:ngsi-ld:AirQualityObserved:kiosk-7").await;
    assert_eq!(e["temperature"]["value"], 20.0);
    assert_eq!(e["temperature"]["observedAt"], "2026-01-01T10:00:00.000Z");
    let r = send(Some(format!("{token}0")), json!({"temperature": 1}))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = send(None, json!({"temperature": 1})).await.unwrap();
    assert_eq!(r.status(), 401);

    // Errors are problem details.
    let (st, p) = s
        .post("/devices/v1/devices", &json!({"devEui": "xyz"}))
        .await;
    assert_eq!((st.as_u16(), p["status"].as_u64()), (400, Some(400)));
    let (st, _) = s
        .post(
            "/devices/v1/devices",
            &json!({"id": "a", "profile": "nope"}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .post(
            "/devices/v1/devices",
            &json!({"id": "kiosk-7", "name": "Impostor"}),
        )
        .await;
    assert_eq!(st, 409);
    let dev = s.entity("urn:ngsi-ld:Device:kiosk-7").await;
    assert_eq!(
        dev["name"]["value"], "Kiosk 7",
        "a refused registration leaves the entity alone"
    );
    let r = s
        .client
        .post(format!("{}/devices/v1/devices", s.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // CSV import.
    let csv = "devEui,name,profile,controlledProperty,longitude,latitude,token\n\
               A84041000181C6E1,Podil 1,ns-decoded,temperature;humidity,30.51,50.46,yes\n\
               a84041000181c6e2,Podil 2,ns-decoded,,,,\n\
               nothex,Broken,ns-decoded,,,,\n";
    let r = s
        .client
        .post(format!("{}/devices/v1/devices/import", s.base))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    let rows = out["results"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["device"]["id"], "a84041000181c6e1");
    assert!(rows[0]["token"].is_string());
    assert!(rows[1]["token"].is_null());
    assert!(rows[2]["error"].as_str().unwrap().contains("devEui"));
    let e = s.entity("urn:ngsi-ld:Device:a84041000181c6e1").await;
    assert_eq!(e["location"]["value"]["coordinates"], json!([30.51, 50.46]));
    let (_, list) = s.get("/devices/v1/devices").await;
    assert_eq!(list.as_array().unwrap().len(), 3);

    let (st, _) = s
        .call(Method::DELETE, "/devices/v1/devices/kiosk-7", None)
        .await;
    assert_eq!(st, 204);
    let r = send(Some(token), json!({"temperature": 1})).await.unwrap();
    assert_eq!(r.status(), 401, "a deleted device's token no longer works");
    let (st, _) = s
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Device:kiosk-7")
        .await;
    assert_eq!(st, 404);
}

async fn integration_token_is_enforced(pg: bool) {
    let s = start(
        pg,
        DevicesConfig {
            integration_token: Some("s3cret".into()),
            ..Default::default()
        },
    )
    .await;
    let up = fixture("chirpstack-v4-event-up.json");
    let (st, _) = s.post("/integrations/chirpstack?event=up", &up).await;
    assert_eq!(st, 401);
    let r = s
        .client
        .post(format!("{}/integrations/chirpstack?event=up", s.base))
        .bearer_auth("s3cret")
        .json(&up)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "unknown device: a dead letter");
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await })*
        }
    };
}

both!(
    chirpstack_events_become_entities,
    tts_uplinks_become_entities,
    em300_codec_decodes_the_vector,
    failing_codecs_go_to_dead_letters_and_replay,
    profiles_with_failing_vectors_are_refused,
    device_registry_tokens_and_csv,
    integration_token_is_enforced
);
