//! Offline detection on a real broker (SQLite and PostgreSQL): a device silent for three report intervals gets
//! one open Alert, however often the check runs or misto restarts; reporting again closes it.

use std::sync::Arc;

mod common;

use misto_broker::{Broker, BrokerConfig, ContextStore, EntityQueryParams};
use misto_devices::model::DeviceInput;
use misto_devices::{Devices, DevicesConfig, Uplink};
use serde_json::json;

async fn devices(pg: bool) -> (Devices, Option<tempfile::TempDir>) {
    let (store, dir) = common::store(pg).await;
    let broker = Broker::new(
        store,
        Arc::new(ContextStore::new(false)),
        BrokerConfig::default(),
    );
    (Devices::new(broker, DevicesConfig::default()).unwrap(), dir)
}

async fn open_alerts(d: &Devices) -> Vec<String> {
    let ctx = d
        .broker
        .contexts
        .resolve(Some(&json!([
            "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld"
        ])))
        .await
        .unwrap();
    let p = EntityQueryParams {
        types: Some("Alert".into()),
        q: Some("!validTo".into()),
        limit: Some(100),
        ..Default::default()
    };
    d.broker
        .query_entities("", &ctx, &p)
        .await
        .unwrap()
        .entities
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn reading(d: &Devices, device: &str, at_ms: i64) {
    let up = Uplink {
        source: "test".into(),
        device_id: Some(device.into()),
        time: Some(
            jiff::Timestamp::from_millisecond(at_ms)
                .unwrap()
                .to_string(),
        ),
        decoded: Some(json!({"temperature": 20.0})),
        ..Default::default()
    };
    let out = d.uplink("", up).await.unwrap();
    assert!(
        matches!(out, misto_devices::Outcome::Stored { .. }),
        "{out:?}"
    );
}

async fn silent_devices(pg: bool) {
    let (d, _dir) = devices(pg).await;
    d.put_profile(
        "",
        None,
        json!({"id": "th", "targetType": "AirQualityObserved", "reportInterval": 600,
               "mapping": [{"field": "temperature", "unitCode": "CEL"}]}),
        true,
    )
    .await
    .unwrap();
    for id in ["quiet", "chatty", "never"] {
        let input: DeviceInput = serde_json::from_value(json!({"id": id, "profile": "th",
            "location": {"type": "Point", "coordinates": [30.5, 50.4]}}))
        .unwrap();
        d.put_device("", None, input, true, false).await.unwrap();
    }
    let now = jiff::Timestamp::now().as_millisecond();
    // Last reports: 31 minutes ago (more than 3 × 10 min) and 5 minutes ago; "never" has not reported.
    reading(&d, "quiet", now - 31 * 60_000).await;
    reading(&d, "chatty", now - 5 * 60_000).await;
    assert_eq!(d.check_offline(now).await.unwrap(), (1, 0));
    let open = open_alerts(&d).await;
    assert_eq!(open.len(), 1);
    assert!(open[0].contains("quiet"), "{open:?}");
    // Checking again, or a restarted process (a new Devices on the same store), opens nothing more.
    assert_eq!(d.check_offline(now + 1000).await.unwrap(), (0, 0));
    let again = Devices::new(d.broker.clone(), DevicesConfig::default()).unwrap();
    assert_eq!(again.check_offline(now + 2000).await.unwrap(), (0, 0));
    // It reports again: the alert closes.
    reading(&d, "quiet", now + 3000).await;
    assert_eq!(again.check_offline(now + 4000).await.unwrap(), (0, 1));
    assert!(open_alerts(&d).await.is_empty());
}

#[tokio::test]
async fn silent_devices_sqlite() {
    silent_devices(false).await
}

#[tokio::test]
async fn silent_devices_postgres() {
    silent_devices(true).await
}
