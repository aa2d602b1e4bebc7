//! Temporal benchmark: appends instances of one attribute of one entity (one per second of simulated time) with
//! `POST /temporal/entities…/attrs`, reporting the ingest rate, then times 24 hourly-average buckets over a
//! random day of that history (`options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1H`) against
//! `GET /health` timed the same way.

use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// misto base URL
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Instances stored before this run (they are instants 0..from)
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Instances stored after this run
    #[arg(long, default_value_t = 100_000)]
    to: u64,
    /// Instances per request
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Requests in flight while loading
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Timed queries (and as many timed GET /health)
    #[arg(long, default_value_t = 200)]
    queries: usize,
}

const ID: &str = "urn:ngsi-ld:Sensor:temporal-bench";
/// Instant 0 of the history: 2025-01-01T00:00:00Z.
const T0: i64 = 1_735_689_600;

fn at(i: u64) -> String {
    jiff::Timestamp::from_second(T0 + i as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn instances(from: u64, to: u64) -> Value {
    Value::Array(
        (from..to)
            .map(|i| json!({"type": "Property", "value": (i % 1000) as f64 / 10.0, "observedAt": at(i)}))
            .collect(),
    )
}

/// Deterministic uniform numbers (SplitMix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95))
}

async fn post(client: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()?;
    let api = format!("{}/ngsi-ld/v1", a.url);
    let mut from = a.from;
    if from == 0 && a.to > 0 {
        // The first request creates the entity's history.
        let first = a.batch.min(a.to);
        let body = json!({"id": ID, "type": "Sensor", "temperature": instances(0, first)});
        post(
            &client,
            &format!("{api}/temporal/entities"),
            body.to_string(),
        )
        .await?;
        from = first;
    }
    let batches: Vec<(u64, u64)> = (from..a.to)
        .step_by(a.batch as usize)
        .map(|s| (s, (s + a.batch).min(a.to)))
        .collect();
    let attrs_url = format!("{api}/temporal/entities/{ID}/attrs");
    let started = Instant::now();
    let mut stream = futures::stream::iter(batches)
        .map(|(s, e)| {
            let client = client.clone();
            let url = attrs_url.clone();
            async move {
                let body = json!({"temperature": instances(s, e)}).to_string();
                post(&client, &url, body).await.map(|()| e - s)
            }
        })
        .buffer_unordered(a.concurrency);
    let mut loaded = 0u64;
    let mut last_report = Instant::now();
    while let Some(r) = stream.next().await {
        loaded += r?;
        if last_report.elapsed().as_secs_f64() > 10.0 {
            eprintln!(
                "  appended {loaded} ({:.0}/s)",
                loaded as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if loaded > 0 {
        loaded as f64 / secs
    } else {
        0.0
    };

    // Timed one at a time: latency, not throughput.
    let mut health = Vec::with_capacity(a.queries);
    for _ in 0..a.queries {
        let t = Instant::now();
        client
            .get(format!("{}/health", a.url))
            .send()
            .await?
            .error_for_status()?;
        health.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let days = (a.to / 86_400).max(1);
    let mut query = Vec::with_capacity(a.queries);
    for q in 0..a.queries {
        let day = (unit(q as u64) * days as f64) as u64;
        let (s, e) = (at(day * 86_400), at((day + 1) * 86_400));
        let url = format!(
            "{api}/temporal/entities/{ID}?attrs=temperature&options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=PT1H&timerel=between&timeAt={s}&endTimeAt={e}"
        );
        let t = Instant::now();
        let r = client.get(&url).send().await?;
        let st = r.status();
        let body: Value = r.json().await?;
        query.push(t.elapsed().as_secs_f64() * 1000.0);
        let n = body["temperature"]["avg"].as_array().map_or(0, Vec::len);
        if !st.is_success() || (a.to >= 86_400 && n != 24) {
            anyhow::bail!("the aggregation answered {st} with {n} buckets: {body}");
        }
    }
    let (h50, h95) = p95(health);
    let (q50, q95) = p95(query);
    let health_rate = 1000.0 / h50;
    println!("| instances stored | {} |", a.to);
    if loaded > 0 {
        println!(
            "| temporal ingest ({} per request, {} in flight) | {rate:.0} instances/s | ratio to sequential GET /health {:.2} |",
            a.batch, a.concurrency, rate / health_rate
        );
    }
    println!("| GET /health (baseline), p50 / p95 | {h50:.2} / {h95:.2} ms | 1.00 |");
    println!(
        "| 24 hourly averages of one attribute, p50 / p95 | {q50:.2} / {q95:.2} ms | p95 ratio to GET /health p95 {:.1} |",
        q95 / h95
    );
    Ok(())
}
