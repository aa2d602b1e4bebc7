//! The delivery contract across a crash: `misto serve` is killed with SIGKILL in the middle of a stream of
//! updates while a slow receiver is behind; after a restart on the same data directory every notification
//! due for an acknowledged update arrives, and per entity they first arrive in the order of the updates.

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

/// Start `misto serve` on a free port with `dir` as its data directory; returns the child and its base URL.
fn start(dir: &std::path::Path) -> (Child, String) {
    common::serve(common::misto(), dir)
}

/// What the receiver got: per entity, the `level` values in arrival order.
type Received = Arc<Mutex<HashMap<String, Vec<i64>>>>;

/// A deliberately slow notification receiver (10 ms per notification), so that a backlog builds up.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if let (Some(items), Ok(mut g)) = (v["data"].as_array(), g.lock()) {
                    for i in items {
                        if let (Some(id), Some(level)) = (i["id"].as_str(), i["level"].as_i64()) {
                            g.entry(id.to_string()).or_default().push(level);
                        }
                    }
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/notify"), got)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> reqwest::StatusCode {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("misto answers")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_due_notification_arrives_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || start(&d)
    })
    .await
    .unwrap();
    let api = format!("{base}/ngsi-ld/v1");
    let client = reqwest::Client::new();
    let (notify_url, got) = receiver().await;

    let entities: Vec<String> = (0..4)
        .map(|i| format!("urn:ngsi-ld:Sensor:crash-{i}"))
        .collect();
    for e in &entities {
        let s = post(
            &client,
            format!("{api}/entities"),
            json!({"id": e, "type": "Sensor", "level": {"type": "Property", "value": 0}}),
        )
        .await;
        assert_eq!(s, 201);
    }
    let s = post(
        &client,
        format!("{api}/subscriptions"),
        json!({
            "type": "Subscription",
            "entities": [{"type": "Sensor"}],
            "watchedAttributes": ["level"],
            "notification": {"format": "keyValues", "attributes": ["level"],
                             "endpoint": {"uri": notify_url}}
        }),
    )
    .await;
    assert_eq!(s, 201);

    // One writer per entity sets level 1, 2, 3, … and remembers the last value misto acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut acked = Vec::new();
    let mut writers = Vec::new();
    for e in entities.clone() {
        let last = Arc::new(AtomicI64::new(0));
        acked.push((e.clone(), last.clone()));
        let (client, api, stop) = (client.clone(), api.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut level = 0;
            while !stop.load(Ordering::Relaxed) {
                level += 1;
                let r = client
                    .patch(format!("{api}/entities/{e}/attrs"))
                    .header("Content-Type", "application/json")
                    .body(json!({"level": {"type": "Property", "value": level}}).to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 204 => last.store(level, Ordering::SeqCst),
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let _ = child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acked: Vec<(String, i64)> = acked
        .into_iter()
        .map(|(e, l)| (e, l.load(Ordering::SeqCst)))
        .collect();
    let before: usize = got.lock().unwrap().values().map(Vec::len).sum();
    let due: i64 = acked.iter().map(|(_, l)| l).sum();
    assert!(
        due > 40,
        "the writers made progress before the kill: {acked:?}"
    );
    assert!(
        (before as i64) < due,
        "a backlog was pending at the kill ({before} of {due} received), or the test shows nothing"
    );

    let (mut child, _base) = tokio::task::spawn_blocking({
        let d = dir.path().to_path_buf();
        move || start(&d)
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing: Vec<(String, i64)> = {
            let g = got.lock().unwrap();
            acked
                .iter()
                .flat_map(|(e, last)| {
                    let seen = g.get(e).cloned().unwrap_or_default();
                    (1..=*last)
                        .filter(move |l| !seen.contains(l))
                        .map(move |l| (e.clone(), l))
                })
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{} acknowledged updates were never notified, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // In order per entity: the first arrival of each value follows the order of the updates (a crash may
    // repeat notifications that were in flight, never reorder new ones).
    for (e, seq) in got.lock().unwrap().iter() {
        let mut firsts: Vec<i64> = Vec::new();
        for v in seq {
            if !firsts.contains(v) {
                firsts.push(*v);
            }
        }
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(firsts, sorted, "{e}: notifications out of order");
    }
    let _ = child.kill();
    let _ = child.wait();
}
