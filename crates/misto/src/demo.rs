//! The demo city: Kyiv's ten districts with air-quality stations, radiation sensors and water sampling points,
//! written through the broker like any other client would. Positions and readings are generated
//! deterministically from the station number, so every run shows the same city.

use std::future::Future;
use std::pin::Pin;

use misto_broker::Broker;
use serde_json::{json, Value};

/// (name in Ukrainian transliteration, centroid lon, lat)
const DISTRICTS: &[(&str, f64, f64)] = &[
    ("Holosiivskyi", 30.5120, 50.3870),
    ("Darnytskyi", 30.6370, 50.4100),
    ("Desnianskyi", 30.6150, 50.5150),
    ("Dniprovskyi", 30.6150, 50.4580),
    ("Obolonskyi", 30.4980, 50.5100),
    ("Pecherskyi", 30.5460, 50.4280),
    ("Podilskyi", 30.4600, 50.4800),
    ("Sviatoshynskyi", 30.3800, 50.4600),
    ("Solomianskyi", 30.4400, 50.4250),
    ("Shevchenkivskyi", 30.4850, 50.4600),
];

const ENV_CONTEXT: &str = "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld";
const WATER_CONTEXT: &str = "https://raw.githubusercontent.com/smart-data-models/dataModel.WaterQuality/master/context.jsonld";

/// A deterministic pseudo-random number in [0, 1) from a seed (SplitMix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn around(district: usize, n: u64, spread: f64) -> (f64, f64) {
    let (_, lon, lat) = DISTRICTS[district % DISTRICTS.len()];
    let dx = (unit(n * 7 + 1) - 0.5) * spread;
    let dy = (unit(n * 7 + 2) - 0.5) * spread * 0.65;
    (
        ((lon + dx) * 1.0e4).round() / 1.0e4,
        ((lat + dy) * 1.0e4).round() / 1.0e4,
    )
}

fn point(lon: f64, lat: f64) -> Value {
    json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}})
}

fn prop(v: Value, unit: &str, at: &str) -> Value {
    json!({"type": "Property", "value": v, "unitCode": unit, "observedAt": at})
}

/// The demo entities: districts, air-quality stations, radiation sensors, water sampling points.
pub fn entities(now: &str) -> (Vec<Value>, Vec<Value>) {
    let mut env = Vec::new();
    for (i, (name, lon, lat)) in DISTRICTS.iter().enumerate() {
        env.push(json!({
            "id": format!("urn:ngsi-ld:District:kyiv:{}", name.to_lowercase()),
            "type": "District",
            "name": {"type": "Property", "value": name},
            "location": point(*lon, *lat),
            "districtNumber": {"type": "Property", "value": i + 1},
        }));
    }
    for n in 0..50u64 {
        let d = (n as usize) % DISTRICTS.len();
        let (lon, lat) = around(d, n, 0.08);
        let pm25 = (4.0 + unit(n * 13) * 30.0 * 10.0).round() / 10.0;
        env.push(json!({
            "id": format!("urn:ngsi-ld:AirQualityObserved:kyiv:{:03}", n + 1),
            "type": "AirQualityObserved",
            "name": {"type": "Property", "value": format!("Air station {} ({})", n + 1, DISTRICTS[d].0)},
            "location": point(lon, lat),
            "dateObserved": {"type": "Property", "value": now},
            "pm25": prop(json!(pm25), "GQ", now),
            "pm10": prop(json!((pm25 * 1.6 * 10.0).round() / 10.0), "GQ", now),
            "no2": prop(json!((10.0 + unit(n * 17) * 40.0).round()), "GQ", now),
            "o3": prop(json!((20.0 + unit(n * 19) * 60.0).round()), "GQ", now),
            "temperature": prop(json!(((unit(n * 23) * 10.0 - 2.0) * 10.0).round() / 10.0), "CEL", now),
            "relativeHumidity": prop(json!((0.5 + unit(n * 29) * 0.4 * 100.0).round() / 100.0), "P1", now),
            "refDevice": {"type": "Relationship", "object": format!("urn:ngsi-ld:Device:kyiv:aq-{:03}", n + 1)},
            "district": {"type": "Property", "value": DISTRICTS[d].0},
        }));
    }
    for n in 0..20u64 {
        let d = (n as usize * 3) % DISTRICTS.len();
        let (lon, lat) = around(d, 1000 + n, 0.06);
        env.push(json!({
            "id": format!("urn:ngsi-ld:RadiationObserved:kyiv:{:03}", n + 1),
            "type": "RadiationObserved",
            "name": {"type": "Property", "value": format!("Radiation sensor {} ({})", n + 1, DISTRICTS[d].0)},
            "location": point(lon, lat),
            "doseRate": prop(json!(((0.08 + unit(n * 31) * 0.1) * 1000.0).round() / 1000.0), "µSv/h", now),
            "district": {"type": "Property", "value": DISTRICTS[d].0},
        }));
    }
    let mut water = Vec::new();
    for n in 0..15u64 {
        let d = (n as usize * 7) % DISTRICTS.len();
        let (lon, lat) = around(d, 2000 + n, 0.05);
        water.push(json!({
            "id": format!("urn:ngsi-ld:WaterQualityObserved:kyiv:{:03}", n + 1),
            "type": "WaterQualityObserved",
            "name": {"type": "Property", "value": format!("Water point {} ({})", n + 1, DISTRICTS[d].0)},
            "location": point(lon, lat),
            "pH": prop(json!(((6.8 + unit(n * 37) * 1.2) * 100.0).round() / 100.0), "Q30", now),
            "turbidity": prop(json!(((unit(n * 41) * 2.0) * 100.0).round() / 100.0), "NTU", now),
            "NO3": prop(json!((5.0 + unit(n * 43) * 30.0).round()), "M1", now),
            "temperature": prop(json!(((8.0 + unit(n * 47) * 6.0) * 10.0).round() / 10.0), "CEL", now),
            "district": {"type": "Property", "value": DISTRICTS[d].0},
        }));
    }
    (env, water)
}

/// Seed the demo city (idempotent: upserts).
pub fn seed(broker: Broker) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> {
    Box::pin(async move {
        let now = misto_ngsild::validate::now();
        let (env, water) = entities(&now);
        let env_ctx = broker.contexts.resolve(Some(&json!(ENV_CONTEXT))).await?;
        let water_ctx = broker.contexts.resolve(Some(&json!(WATER_CONTEXT))).await?;
        let a = broker
            .batch_upsert("", &env_ctx, &Value::Array(env), true)
            .await?;
        let b = broker
            .batch_upsert("", &water_ctx, &Value::Array(water), true)
            .await?;
        let errors: Vec<String> = a
            .errors
            .iter()
            .chain(b.errors.iter())
            .map(|(id, e)| format!("{id}: {e}"))
            .collect();
        if !errors.is_empty() {
            anyhow::bail!("demo entities rejected: {}", errors.join("; "));
        }
        let n = a.success.len() + b.success.len();
        tracing::info!(entities = n, "demo city seeded");
        println!("demo city: {n} entities of Kyiv seeded (10 districts, 50 air-quality stations, 20 radiation sensors, 15 water points)");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_city_has_the_promised_shape() {
        let (env, water) = entities("2026-01-01T00:00:00Z");
        let count = |t: &str| {
            env.iter()
                .chain(water.iter())
                .filter(|e| e["type"] == t)
                .count()
        };
        assert_eq!(count("District"), 10);
        assert_eq!(count("AirQualityObserved"), 50);
        assert_eq!(count("RadiationObserved"), 20);
        assert_eq!(count("WaterQualityObserved"), 15);
        for e in env.iter().chain(water.iter()) {
            let c = &e["location"]["value"]["coordinates"];
            let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
            assert!(
                (30.2..30.8).contains(&lon) && (50.3..50.6).contains(&lat),
                "{e}"
            );
        }
    }
}
