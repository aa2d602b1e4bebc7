//! The environment monitor on a real broker (SQLite, and PostgreSQL at MISTO_TEST_DATABASE_URL): indices from
//! the temporal store, alerts with hysteresis that survive a restart, and the public GeoJSON.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use misto_broker::{Broker, BrokerConfig, ContextStore, EntityQueryParams};
use misto_environment::{Config, Monitor, ALERT_CONTEXT, ENVIRONMENT_CONTEXT, WATER_CONTEXT};
use misto_ngsild::Context;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn broker(pg: bool) -> (Broker, Option<tempfile::TempDir>) {
    let (store, dir): (Arc<dyn misto_store::EntityStore>, _) = if pg {
        let url = std::env::var("MISTO_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let s = misto_store::postgres::PgStore::connect_isolated(&url)
            .await
            .expect("PostgreSQL must be reachable at MISTO_TEST_DATABASE_URL");
        (Arc::new(s), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        let s = misto_store::sqlite::SqliteStore::open(dir.path().join("t.db")).unwrap();
        (Arc::new(s), Some(dir))
    };
    let b = Broker::new(
        store,
        Arc::new(ContextStore::new(false)),
        BrokerConfig::default(),
    );
    (b, dir)
}

async fn ctx(b: &Broker, url: &str) -> Context {
    b.contexts.resolve(Some(&json!([url]))).await.unwrap()
}

fn at(hours_ago: f64) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs_f64(hours_ago * 3600.0);
    misto_ngsild::validate::format_datetime(t)
}

/// Compacted entity (keyValues is enough for values; normalized for sub-attributes).
async fn get(b: &Broker, c: &Context, id: &str) -> Value {
    let e = b.get_entity("", id).await.unwrap();
    misto_ngsild::render::render_entity(&e, c, &Default::default())
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn alerts(b: &Broker, open_only: bool) -> Vec<Value> {
    let c = ctx(b, ALERT_CONTEXT).await;
    let p = EntityQueryParams {
        types: Some("Alert".into()),
        q: open_only.then(|| "!validTo".to_string()),
        limit: Some(100),
        ..Default::default()
    };
    let r = b.query_entities("", &c, &p).await.unwrap();
    r.entities
        .iter()
        .map(|e| misto_ngsild::render::render_entity(e, &c, &Default::default()))
        .collect()
}

async fn air_index_from_window_means(pg: bool) {
    let (b, _d) = broker(pg).await;
    let m = Arc::new(Monitor::new(b.clone(), Config::default()).await.unwrap());
    m.clone().spawn();
    let env = ctx(&b, ENVIRONMENT_CONTEXT).await;
    let id = "urn:ngsi-ld:AirQualityObserved:podil-1";
    // 30 hours ago: outside every window, must not count.
    b.create_entity("", &env, &json!({"id": id, "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.515, 50.466]}},
        "pm25": {"type": "Property", "value": 500.0, "unitCode": "GQ", "observedAt": at(30.0)}}))
        .await
        .unwrap();
    for (v, h) in [(10.0, 20.0), (20.0, 10.0), (30.0, 2.0)] {
        b.merge_entity("", &env, id, &json!({"pm25": {"type": "Property", "value": v, "unitCode": "GQ", "observedAt": at(h)}}))
            .await
            .unwrap();
    }
    let last = at(0.0);
    b.merge_entity(
        "",
        &env,
        id,
        &json!({
        "pm25": {"type": "Property", "value": 40.0, "unitCode": "GQ", "observedAt": last},
        // 100 µg/m³ of NO2 is 53 ppb: the EPA's "moderate" starts at 54, the EEA's fair band holds it.
        "no2": {"type": "Property", "value": 100.0, "unitCode": "GQ", "observedAt": last}}),
    )
    .await
    .unwrap();
    wait_for("the index of the last observation", async || {
        get(&b, &env, id).await["europeanAqi"]["observedAt"] == json!(last)
    })
    .await;
    let e = get(&b, &env, id).await;
    // PM2.5 24-hour mean (10+20+30+40)/4 = 25 → EEA "moderate" (20–25], level 3; NO2 100 → "moderate" too
    // (90–120], the first pollutant in the table's order wins a tie.
    assert_eq!(e["europeanAqi"]["value"], json!(3), "{e}");
    assert_eq!(e["europeanAqi"]["category"]["value"], "moderate");
    // EPA: PM2.5 25.0 → (100-51)/(35.4-9.1)·(25.0-9.1)+51 = 80.6 → 81; NO2 53 ppb → 50.
    assert_eq!(e["usAqi"]["value"], json!(81), "{e}");
    assert_eq!(e["usAqi"]["dominantPollutant"]["value"], "pm25");
    assert_eq!(e["usAqi"]["category"]["value"], "moderate");
    assert_eq!(e["airQualityLevel"]["value"], "moderate");
    // The first reading (500 µg/m³, 30 hours ago) was a 24-hour mean of 500 when it was made: an alert then,
    // closed once the means came down; the mean now, 25, is not above the "poor" bound.
    let all = alerts(&b, false).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["severity"]["value"], "critical");
    assert!(alerts(&b, true).await.is_empty());
}

async fn radiation_alerts_with_hysteresis_and_restart(pg: bool) {
    let (b, _d) = broker(pg).await;
    let m = Arc::new(Monitor::new(b.clone(), Config::default()).await.unwrap());
    let task = m.clone().spawn();
    let env = ctx(&b, ENVIRONMENT_CONTEXT).await;
    let id = "urn:ngsi-ld:RadiationObserved:obolon-3";
    b.create_entity("", &env, &json!({"id": id, "type": "RadiationObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.49, 50.50]}},
        "doseRate": {"type": "Property", "value": 0.12, "observedAt": at(1.0)}}))
        .await
        .unwrap();
    // Around the 0.26 µSv/h control level: opens at 0.27, stays open at 0.25 and 0.258 (not 5 % below), closes
    // at 0.24, opens again at 0.30.
    let values = [0.27, 0.25, 0.27, 0.258, 0.24, 0.26, 0.30];
    for (i, v) in values.iter().enumerate() {
        let t = at(0.9 - i as f64 * 0.1);
        b.merge_entity(
            "",
            &env,
            id,
            &json!({"doseRate": {"type": "Property", "value": v, "observedAt": t}}),
        )
        .await
        .unwrap();
    }
    wait_for("two alerts", async || alerts(&b, false).await.len() == 2).await;
    wait_for("the status", async || {
        get(&b, &env, id).await["radiationStatus"]["value"] == "aboveControlLevel"
    })
    .await;
    let open = alerts(&b, true).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["alertSource"]["value"], id);
    assert_eq!(open[0]["category"]["value"], "environment");
    assert!(open[0]["description"]["value"]
        .as_str()
        .unwrap()
        .contains("0.300"));
    // The public map shows the open alert where the station is.
    let app = misto_environment::public::router(m.clone());
    let r = app
        .oneshot(
            Request::get("/public/v1/environment/alerts")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let fc: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(fc["features"].as_array().unwrap().len(), 1, "{fc}");
    assert_eq!(
        fc["features"][0]["geometry"]["coordinates"],
        json!([30.49, 50.50])
    );

    // A restarted monitor knows the open alert: more high readings open nothing new, a low one closes it.
    task.abort();
    let m2 = Arc::new(Monitor::new(b.clone(), Config::default()).await.unwrap());
    m2.spawn();
    for (i, v) in [0.31, 0.29, 0.1].iter().enumerate() {
        let t = at(0.15 - i as f64 * 0.05);
        b.merge_entity(
            "",
            &env,
            id,
            &json!({"doseRate": {"type": "Property", "value": v, "observedAt": t}}),
        )
        .await
        .unwrap();
    }
    wait_for("the alert to close", async || {
        alerts(&b, true).await.is_empty()
    })
    .await;
    assert_eq!(alerts(&b, false).await.len(), 2);
}

async fn water_norms(pg: bool) {
    let (b, _d) = broker(pg).await;
    let m = Arc::new(Monitor::new(b.clone(), Config::default()).await.unwrap());
    m.clone().spawn();
    let w = ctx(&b, WATER_CONTEXT).await;
    let id = "urn:ngsi-ld:WaterQualityObserved:dnipro-intake-1";
    b.create_entity("", &w, &json!({"id": id, "type": "WaterQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.60, 50.42]}},
        "NO3": {"type": "Property", "value": 62.0, "observedAt": at(2.0)},
        "pH": {"type": "Property", "value": 7.1, "observedAt": at(2.0)}}))
        .await
        .unwrap();
    wait_for("non-compliance", async || {
        get(&b, &w, id).await["complianceStatus"]["value"] == "nonCompliant"
    })
    .await;
    let e = get(&b, &w, id).await;
    assert_eq!(e["nonCompliantParameters"]["value"], json!(["nitrates"]));
    let open = alerts(&b, true).await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["subCategory"]["value"], "waterPollution");
    b.merge_entity(
        "",
        &w,
        id,
        &json!({"NO3": {"type": "Property", "value": 31.0, "observedAt": at(1.0)},
        "pH": {"type": "Property", "value": 9.0, "observedAt": at(1.0)}}),
    )
    .await
    .unwrap();
    wait_for("pH to fail instead", async || {
        get(&b, &w, id).await["nonCompliantParameters"]["value"] == json!(["pH"])
    })
    .await;
    let open = alerts(&b, true).await;
    assert_eq!(open.len(), 1, "nitrates closed, pH opened: {open:?}");
    assert!(open[0]["description"]["value"]
        .as_str()
        .unwrap()
        .starts_with("pH 9"));

    // The public station map shows the water station with its status.
    let app = misto_environment::public::router(m.clone());
    let r = app
        .oneshot(
            Request::get("/public/v1/environment/stations")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let fc: Value =
        serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let f = &fc["features"][0];
    assert_eq!(f["properties"]["kind"], "water", "{fc}");
    assert_eq!(f["properties"]["complianceStatus"], "nonCompliant");
    assert_eq!(f["properties"]["measurements"]["NO3"]["value"], json!(31.0));
}

#[tokio::test]
async fn air_index_sqlite() {
    air_index_from_window_means(false).await
}
#[tokio::test]
async fn air_index_postgres() {
    air_index_from_window_means(true).await
}
#[tokio::test]
async fn radiation_sqlite() {
    radiation_alerts_with_hysteresis_and_restart(false).await
}
#[tokio::test]
async fn radiation_postgres() {
    radiation_alerts_with_hysteresis_and_restart(true).await
}
#[tokio::test]
async fn water_sqlite() {
    water_norms(false).await
}
#[tokio::test]
async fn water_postgres() {
    water_norms(true).await
}

#[tokio::test]
async fn bad_configuration_is_refused() {
    let (b, _d) = broker(false).await;
    let cfg = Config {
        air_alert_category: "awful".into(),
        ..Default::default()
    };
    let e = Monitor::new(b.clone(), cfg)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("air_alert_category"), "{e}");
    let cfg = Config {
        radiation_control_level: -1.0,
        ..Default::default()
    };
    assert!(Monitor::new(b, cfg).await.is_err());
}
