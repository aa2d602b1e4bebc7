//! Device ingestion benchmark (issue 4 §7): ChirpStack `up` events published over MQTT to misto's embedded
//! endpoint by network-server connections, QoS 1. A PUBACK is sent only once the uplink is stored (entity and
//! temporal instance committed), so publish→PUBACK is publish→entity.
//!
//! Two phases per mode (`codec`: raw bytes through the profile's JavaScript codec; `decoded`: ChirpStack's
//! `object` taken as it is):
//! 1. throughput: every connection publishes as fast as its in-flight window allows for the given seconds;
//!    reported as acknowledged uplinks per second, beside the same uplinks POSTed to the HTTP integration at the
//!    same concurrency in the same run (the baseline) and their ratio;
//! 2. latency: open-loop publishes at a fixed rate; p50/p99 publish→PUBACK.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// misto base URL (HTTP)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// misto's MQTT endpoint host:port
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The integration token misto was started with
    #[arg(long, default_value = "bench-token")]
    token: String,
    #[arg(long, default_value_t = 1000)]
    devices: u64,
    /// codec or decoded
    #[arg(long, default_value = "decoded")]
    mode: String,
    /// Network-server connections publishing at once
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// In-flight QoS 1 publishes per connection
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Fixed rate (uplinks/s) of the latency phase; 0 skips it
    #[arg(long, default_value_t = 5000)]
    rate: u64,
}

const CODEC: &str = r#"
function decodeUplink(input) {
  var b = input.bytes;
  var t = ((b[0] << 8) | b[1]);
  if (t > 32767) { t -= 65536; }
  return { data: { temperature: t / 10, relativeHumidity: b[2] / 2 } };
}
"#;

fn eui(i: u64) -> String {
    format!("{:016x}", 0xbe00_0000_0000_0000u64 + i)
}

/// The ChirpStack `up` event of uplink `n`.
fn event(mode: &str, n: u64, devices: u64) -> String {
    let t = (n % 400) as i64 - 100; // −10.0 … 29.9 °C
    let h = (n % 200) as u8;
    let mut e = json!({
        "deduplicationId": format!("bench-{n}"),
        "time": jiff::Timestamp::now().to_string(),
        "deviceInfo": {"devEui": eui(n % devices), "deviceName": format!("bench-{}", n % devices)},
        "fPort": 85, "fCnt": n / devices,
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -57, "snr": 10.5}],
    });
    if mode == "codec" {
        use base64::Engine as _;
        let raw = [((t as i16) >> 8) as u8, (t as i16) as u8, h];
        e["data"] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
    } else {
        e["object"] = json!({"temperature": t as f64 / 10.0, "relativeHumidity": h as f64 / 2.0});
    }
    e.to_string()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn setup(a: &Args, http: &reqwest::Client) -> anyhow::Result<()> {
    let mut profile = json!({"id": "bench-th", "targetType": "AirQualityObserved",
        "mapping": [{"field": "temperature", "unitCode": "CEL"},
                    {"field": "relativeHumidity", "unitCode": "P1"}]});
    if a.mode == "codec" {
        profile["codec"] = json!(CODEC);
    }
    let r = http
        .post(format!("{}/devices/v1/profiles", a.url))
        .json(&profile)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "profile: {}", r.text().await?);
    let mut csv = String::from("id,devEui,profile,longitude,latitude\n");
    for i in 0..a.devices {
        let lon = 30.2 + (i % 100) as f64 * 0.005;
        let lat = 50.3 + (i / 100 % 100) as f64 * 0.003;
        csv.push_str(&format!("bench-{i},{},bench-th,{lon},{lat}\n", eui(i)));
    }
    let r = http
        .post(format!("{}/devices/v1/devices/import", a.url))
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "import: {}", r.text().await?);
    Ok(())
}

/// Publish-time of each in-flight packet id, per connection.
type Sent = Arc<Mutex<HashMap<u16, Instant>>>;

struct Conn {
    client: AsyncClient,
    acked: Arc<Mutex<Vec<f64>>>,
    count: Arc<std::sync::atomic::AtomicU64>,
}

async fn connect(a: &Args, i: usize) -> anyhow::Result<Conn> {
    let (host, port) = a
        .mqtt
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--mqtt is host:port"))?;
    let mut o = MqttOptions::new(format!("bench-ns-{i}"), host, port.parse()?);
    o.set_credentials("integration", &a.token)
        .set_inflight(a.inflight)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut ev) = AsyncClient::new(o, a.inflight as usize * 2);
    let sent: Sent = Arc::default();
    let acked: Arc<Mutex<Vec<f64>>> = Arc::default();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (s2, a2, c2) = (sent.clone(), acked.clone(), count.clone());
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => {
                    if let Ok(mut s) = s2.lock() {
                        s.insert(pkid, Instant::now());
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(p))) => {
                    c2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let (Ok(mut s), Ok(mut a)) = (s2.lock(), a2.lock()) {
                        if let Some(t) = s.remove(&p.pkid) {
                            a.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("MQTT connection {i}: {e}");
                    return;
                }
            }
        }
    });
    Ok(Conn {
        client,
        acked,
        count,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.mode == "codec" || a.mode == "decoded",
        "--mode is codec or decoded"
    );
    let http = reqwest::Client::new();
    let t = Instant::now();
    setup(&a, &http).await?;
    eprintln!(
        "{} devices registered in {:.1} s",
        a.devices,
        t.elapsed().as_secs_f64()
    );
    let devices = a.devices;
    let topic = move |n: u64| format!("application/bench/device/{}/event/up", eui(n % devices));

    // 1. Throughput over MQTT.
    let conns = futures::future::try_join_all((0..a.connections).map(|i| connect(&a, i))).await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut pubs = Vec::new();
    for c in &conns {
        let (client, next, mode, devices) =
            (c.client.clone(), next.clone(), a.mode.clone(), a.devices);
        pubs.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if client
                    .publish(topic(n), QoS::AtLeastOnce, false, event(&mode, n, devices))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    for p in pubs {
        let _ = p.await;
    }
    // The last window drains.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked: u64 = conns
        .iter()
        .map(|c| c.count.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let mqtt_rate = acked as f64 / (start.elapsed().as_secs_f64() - 2.0).max(0.1);

    // Baseline: the HTTP integration, same uplinks, same concurrency (connections × in-flight).
    let conc = a.connections * a.inflight as usize;
    let url = format!("{}/integrations/chirpstack?event=up", a.url);
    let stop = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let base = next.load(std::sync::atomic::Ordering::Relaxed);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s = futures::stream::iter(base..)
        .take_while(|_| futures::future::ready(Instant::now() < stop))
        .map(|n| {
            let (http, url, body, done) = (
                http.clone(),
                url.clone(),
                event(&a.mode, n, a.devices),
                done.clone(),
            );
            let token = a.token.clone();
            async move {
                if let Ok(r) = http
                    .post(&url)
                    .bearer_auth(token)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    if r.status().is_success() {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
        .buffer_unordered(conc.min(256));
    s.collect::<Vec<()>>().await;
    let http_rate =
        done.load(std::sync::atomic::Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!(
        "mode={} devices={} connections={} in-flight={}: MQTT {:.0} uplinks/s stored, HTTP integration {:.0}/s (baseline), ratio {:.2}",
        a.mode, a.devices, a.connections, a.inflight, mqtt_rate, http_rate, mqtt_rate / http_rate.max(1.0)
    );

    // 2. Latency at a fixed rate, open loop.
    if a.rate > 0 {
        for c in &conns {
            if let Ok(mut v) = c.acked.lock() {
                v.clear();
            }
        }
        let total = a.rate * a.seconds;
        let start = Instant::now();
        let first = next.load(std::sync::atomic::Ordering::Relaxed) + 1_000_000;
        let mut late = 0u64;
        for k in 0..total {
            let due = start + Duration::from_secs_f64(k as f64 / a.rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else if now - due > Duration::from_millis(100) {
                late += 1;
            }
            let n = first + k;
            let c = &conns[k as usize % conns.len()];
            // try_publish: an open loop never waits on a full window (that would hide the latency).
            if c.client
                .try_publish(
                    topic(n),
                    QoS::AtLeastOnce,
                    false,
                    event(&a.mode, n, a.devices),
                )
                .is_err()
            {
                late += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut lat: Vec<f64> = conns
            .iter()
            .flat_map(|c| c.acked.lock().map(|v| v.clone()).unwrap_or_default())
            .collect();
        lat.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
        println!(
            "fixed rate {}/s for {} s: {} of {} acknowledged, publish→stored p50 {:.1} ms, p99 {:.1} ms ({} could not start on time)",
            a.rate,
            a.seconds,
            lat.len(),
            total,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            late
        );
    }
    Ok(())
}
