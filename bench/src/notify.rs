//! Notification benchmark (issue 3 §5): S subscriptions over N entities, single-attribute writes at rising
//! rates, every notification received by a local HTTP receiver. For each rate it reports the share of due
//! notifications delivered and the latency from the write's acknowledgement to the notification's arrival
//! (p50/p99), beside the p99 of the write acknowledgements themselves in the same step (the baseline).
//!
//! Each subscription selects N/S entities by id and watches `level`; every entity belongs to exactly one
//! subscription, so every write is due exactly one notification. Each write carries a unique `seq`, which the
//! receiver reads back from the notification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// misto base URL
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 100_000)]
    entities: u64,
    #[arg(long, default_value_t = 10_000)]
    subscriptions: u64,
    /// Write rates to try, per second, in order
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000,3000,4000")]
    rates: Vec<u64>,
    /// Seconds per rate
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Most writes in flight at once
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// How long to wait after a step for its last notifications
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
}

/// Deterministic uniform numbers (SplitMix64).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn entity_id(i: u64) -> String {
    format!("urn:ngsi-ld:Sensor:nb-{i}")
}

/// Arrival times of notifications by `seq`.
type Arrivals = Arc<Mutex<HashMap<u64, Instant>>>;

async fn receiver() -> anyhow::Result<(String, Arrivals)> {
    let got: Arrivals = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    if let (Some(items), Ok(mut g)) = (v["data"].as_array(), g.lock()) {
                        for i in items {
                            if let Some(s) = i["seq"].as_u64() {
                                g.entry(s).or_insert(now);
                            }
                        }
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Ok((format!("http://{addr}/notify"), got))
}

async fn post_ok(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let r = client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    let st = r.status();
    if !st.is_success() {
        anyhow::bail!(
            "{url} answered {st}: {}",
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let api = format!("{}/ngsi-ld/v1", a.url);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.in_flight)
        .build()?;
    let (notify_url, arrivals) = receiver().await?;

    let t = Instant::now();
    let batches: Vec<String> = (0..a.entities.div_ceil(1000))
        .map(|b| {
            let items: Vec<Value> = (b * 1000..((b + 1) * 1000).min(a.entities))
                .map(|i| {
                    json!({"id": entity_id(i), "type": "Sensor",
                           "level": {"type": "Property", "value": 0},
                           "seq": {"type": "Property", "value": 0}})
                })
                .collect();
            Value::Array(items).to_string()
        })
        .collect();
    let upsert = format!("{api}/entityOperations/upsert");
    let mut s = futures::stream::iter(batches)
        .map(|b| post_ok(&client, &upsert, b))
        .buffer_unordered(4);
    while let Some(r) = s.next().await {
        r?;
    }
    eprintln!(
        "  {} entities loaded in {:.1} s",
        a.entities,
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let per = a.entities.div_ceil(a.subscriptions);
    let subs_url = format!("{api}/subscriptions");
    let mut s = futures::stream::iter(0..a.subscriptions)
        .map(|k| {
            let entities: Vec<Value> = (k * per..((k + 1) * per).min(a.entities))
                .map(|i| json!({"id": entity_id(i), "type": "Sensor"}))
                .collect();
            let body = json!({
                "type": "Subscription",
                "entities": entities,
                "watchedAttributes": ["level"],
                "notification": {"format": "keyValues", "attributes": ["seq"],
                                 "endpoint": {"uri": notify_url}}
            })
            .to_string();
            let (client, url) = (client.clone(), subs_url.clone());
            async move { post_ok(&client, &url, body).await }
        })
        .buffer_unordered(8);
    while let Some(r) = s.next().await {
        r?;
    }
    eprintln!(
        "  {} subscriptions created in {:.1} s",
        a.subscriptions,
        t.elapsed().as_secs_f64()
    );

    println!("| offered writes/s | acknowledged writes/s | delivered | notification latency p50 / p99 | write ack p99 (baseline) | ratio p99 notification / ack |");
    println!("|---|---|---|---|---|---|");
    let mut seq: u64 = 1;
    for rate in &a.rates {
        let acks: Arc<Mutex<Vec<(u64, Instant, f64)>>> = Arc::default();
        let gate = Arc::new(Semaphore::new(a.in_flight));
        let total = rate * a.seconds;
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        let mut dropped = 0u64;
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / *rate as f64);
            tokio::time::sleep_until(due.into()).await;
            // Open loop: a write that cannot start on time because too many are in flight is counted as not
            // kept up with, not queued.
            let Ok(permit) = gate.clone().try_acquire_owned() else {
                dropped += 1;
                continue;
            };
            let s = seq;
            seq += 1;
            let e = entity_id(mix(s) % a.entities);
            let (client, api, acks) = (client.clone(), api.clone(), acks.clone());
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                let r = client
                    .patch(format!("{api}/entities/{e}/attrs"))
                    .header("Content-Type", "application/json")
                    .body(
                        json!({"level": {"type": "Property", "value": s},
                               "seq": {"type": "Property", "value": s}})
                        .to_string(),
                    )
                    .send()
                    .await;
                drop(permit);
                if let Ok(r) = r {
                    if r.status() == 204 {
                        let now = Instant::now();
                        if let Ok(mut a) = acks.lock() {
                            a.push((s, now, (now - sent).as_secs_f64() * 1000.0));
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let acks = acks.lock().map(|a| a.clone()).unwrap_or_default();
        // Wait for the step's notifications (or the drain time).
        let deadline = Instant::now() + Duration::from_secs(a.drain_seconds);
        loop {
            let have = {
                let g = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                acks.iter().filter(|(s, _, _)| g.contains_key(s)).count()
            };
            if have == acks.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let g = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let missing: Vec<u64> = acks
            .iter()
            .map(|(s, _, _)| *s)
            .filter(|s| !g.contains_key(s))
            .take(5)
            .collect();
        if !missing.is_empty() {
            eprintln!("  not delivered, e.g. seq {missing:?}");
        }
        let mut lat: Vec<f64> = acks
            .iter()
            .filter_map(|(s, at, _)| {
                g.get(s)
                    .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let mut ack_lat: Vec<f64> = acks.iter().map(|(_, _, l)| *l).collect();
        ack_lat.sort_by(f64::total_cmp);
        let delivered = lat.len() as f64 / acks.len().max(1) as f64 * 100.0;
        let p99 = percentile(&lat, 0.99);
        let ack_p99 = percentile(&ack_lat, 0.99);
        println!(
            "| {rate} | {:.0}{} | {delivered:.2} % ({} of {}) | {:.1} / {p99:.1} ms | {ack_p99:.1} ms | {:.1} |",
            acks.len() as f64 / elapsed,
            if dropped > 0 { format!(" ({dropped} writes could not start on time)") } else { String::new() },
            lat.len(),
            acks.len(),
            percentile(&lat, 0.5),
            p99 / ack_p99
        );
    }
    Ok(())
}
