//! Loads a misto instance with AirQualityObserved-like entities (~1 KB, 14 attributes, a Point location in a
//! 30 km box around Kyiv, `pm25` with `observedAt`, a Relationship) through batch upsert, and reports the rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// misto base URL
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Number of entities
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Entities per batch request
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Concurrent requests
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Only print one entity and its size
    #[arg(long)]
    sample: bool,
}

/// Deterministic uniform numbers (SplitMix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The 30 km box around Kyiv's centre (30.5234, 50.4501): ±0.2115° lon, ±0.1349° lat.
pub fn position(i: u64) -> (f64, f64) {
    (
        30.5234 + (unit(i * 2) - 0.5) * 0.4230,
        50.4501 + (unit(i * 2 + 1) - 0.5) * 0.2698,
    )
}

fn entity(i: u64) -> Value {
    let (lon, lat) = position(i);
    let at = "2025-03-01T08:00:00Z";
    let p = |v: f64, unit: &str| json!({"type": "Property", "value": (v * 10.0).round() / 10.0, "unitCode": unit, "observedAt": at});
    json!({
        "id": format!("urn:ngsi-ld:AirQualityObserved:bench-{i}"),
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "dateObserved": {"type": "Property", "value": at},
        "name": {"type": "Property", "value": format!("Benchmark station {i}")},
        "pm25": p(unit(i * 7) * 40.0, "GQ"),
        "pm10": p(unit(i * 11) * 60.0, "GQ"),
        "no2": p(unit(i * 13) * 80.0, "GQ"),
        "o3": p(unit(i * 17) * 120.0, "GQ"),
        "so2": p(unit(i * 19) * 20.0, "GQ"),
        "co": p(unit(i * 23) * 2.0, "GP"),
        "temperature": p(unit(i * 29) * 30.0 - 5.0, "CEL"),
        "relativeHumidity": p(unit(i * 31), "P1"),
        "reliability": {"type": "Property", "value": 0.9},
        "airQualityIndex": {"type": "Property", "value": (unit(i * 37) * 100.0).round()},
        "refDevice": {"type": "Relationship", "object": format!("urn:ngsi-ld:Device:bench-{i}")},
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.sample {
        let e = entity(1);
        println!(
            "{}\n{} bytes, {} attributes",
            serde_json::to_string_pretty(&e)?,
            e.to_string().len(),
            e.as_object().map(|o| o.len() - 2).unwrap_or(0)
        );
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let url = format!("{}/ngsi-ld/v1/entityOperations/upsert", a.url);
    let link = "<https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"";
    let batches: Vec<(u64, u64)> = (0..a.count.div_ceil(a.batch))
        .map(|b| (b * a.batch, ((b + 1) * a.batch).min(a.count)))
        .collect();
    // Bodies are generated before the clock starts: the loader's JSON work is not the broker's.
    let t = Instant::now();
    let bodies: Vec<(u64, u64, String)> = batches
        .into_iter()
        .map(|(from, to)| {
            (
                from,
                to,
                Value::Array((from..to).map(entity).collect()).to_string(),
            )
        })
        .collect();
    eprintln!(
        "  generated {} request bodies in {:.1} s",
        bodies.len(),
        t.elapsed().as_secs_f64()
    );
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut stream = futures::stream::iter(bodies)
        .map(|(from, to, body)| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("Link", link)
                    .body(body)
                    .send()
                    .await?;
                let st = r.status();
                if !st.is_success() {
                    anyhow::bail!(
                        "batch {from}..{to} answered {st}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                Ok::<u64, anyhow::Error>(to - from)
            }
        })
        .buffer_unordered(a.concurrency);
    while let Some(r) = stream.next().await {
        let n = r?;
        let total = done.fetch_add(n, Ordering::Relaxed) + n;
        if last_report.elapsed().as_secs_f64() > 5.0 {
            eprintln!(
                "  loaded {total}/{} ({:.0}/s)",
                a.count,
                total as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {} entities in {secs:.1} s: {:.0} entities/s",
        a.count,
        a.count as f64 / secs
    );
    Ok(())
}
