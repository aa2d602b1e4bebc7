//! The environment module as the binary runs it: an air-quality observation sent to the NGSI-LD API shows up
//! on the public map with its indices and alert, no login; its settings come from misto.toml.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::misto;

const ENV: &str = "<https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"";

fn get(url: &str) -> Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

#[test]
fn an_observation_reaches_the_public_map_with_indices_and_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("misto.toml");
    // A stricter radiation control level than the default, to see the file is read.
    std::fs::write(&cfg, "[environment]\nradiation_control_level = 0.15\n").unwrap();
    let mut cmd = misto();
    cmd.arg("--config").arg(&cfg);
    let (mut child, base) = common::serve(cmd, &dir.path().join("data"));
    let http = reqwest::blocking::Client::new();
    let now = jiff::Timestamp::now().to_string();
    for body in [
        json!({"id": "urn:ngsi-ld:AirQualityObserved:s1", "type": "AirQualityObserved",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.5, 50.45]}},
            "pm25": {"type": "Property", "value": 60, "unitCode": "GQ", "observedAt": now}}),
        json!({"id": "urn:ngsi-ld:RadiationObserved:r1", "type": "RadiationObserved",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.6, 50.4]}},
            "doseRate": {"type": "Property", "value": 0.2, "observedAt": now}}),
    ] {
        let r = http
            .post(format!("{base}/ngsi-ld/v1/entities"))
            .header("Content-Type", "application/json")
            .header("Link", ENV)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let alerts = loop {
        let a = get(&format!("{base}/public/v1/environment/alerts"));
        if a["features"].as_array().is_some_and(|f| f.len() == 2) || Instant::now() > deadline {
            break a;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stations = get(&format!("{base}/public/v1/environment/stations"));
    let _ = child.kill();
    let _ = child.wait();
    let air = stations["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["properties"]["kind"] == "air")
        .unwrap_or_else(|| panic!("{stations}"));
    // PM2.5 60 µg/m³: European "very poor" (50–75), US EPA 154 ("unhealthy").
    assert_eq!(air["properties"]["europeanAqi"]["category"], "veryPoor");
    assert_eq!(air["properties"]["usAqi"]["value"], 154);
    // One alert for the air station, one for the radiation station: 0.2 µSv/h is above the configured 0.15.
    let mut sources: Vec<&str> = alerts["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["properties"]["alertSource"].as_str())
        .collect();
    sources.sort();
    assert_eq!(
        sources,
        [
            "urn:ngsi-ld:AirQualityObserved:s1",
            "urn:ngsi-ld:RadiationObserved:r1"
        ],
        "{alerts}"
    );
}

#[test]
fn a_bad_environment_setting_stops_the_start_with_a_plain_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("misto.toml");
    std::fs::write(&cfg, "[environment]\nair_alert_category = \"awful\"\n").unwrap();
    let out = misto()
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("air_alert_category"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
