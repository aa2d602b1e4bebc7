//! Cluster mode (docs/cluster.md): two `misto serve` processes on one PostgreSQL database (a fresh one per
//! run) and one NATS JetStream behave as one broker. A change made on one node notifies a subscription
//! created on the other, once; a `timeInterval` subscription fires at its rate cluster-wide, not once per
//! node; a subscription changed on one node takes effect on the other; killing a node with SIGKILL loses no
//! notification of an acknowledged change.
//!
//! Needs PostgreSQL (`MISTO_TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test) and NATS
//! with JetStream on 127.0.0.1:4222 (`MISTO_TEST_NATS_URL`); a NATS that is down is started from
//! /usr/sbin/nats-server. When either cannot be had the tests say why and pass, unless
//! `MISTO_REQUIRE_CLUSTER_TEST=1`, when they fail.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

/// PostgreSQL and NATS for a test: the URL of a database of its own, and the NATS URL. None (after saying
/// why) when the services cannot be had and the test is not required.
async fn services() -> Option<(String, String, Option<Child>)> {
    let required = std::env::var("MISTO_REQUIRE_CLUSTER_TEST").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        if required {
            panic!("cluster test required (MISTO_REQUIRE_CLUSTER_TEST=1) but {why}");
        }
        eprintln!("SKIPPING the cluster test: {why}");
        None
    };
    let admin = std::env::var("MISTO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let db = match fresh_database(&admin).await {
        Ok(url) => url,
        Err(e) => return skip(format!("PostgreSQL at {admin} cannot be used: {e}")),
    };
    let nats =
        std::env::var("MISTO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let hostport = nats.trim_start_matches("nats://").to_string();
    if tokio::net::TcpStream::connect(&hostport).await.is_ok() {
        return Some((db, nats, None));
    }
    // Down: start one for this test (JetStream on, its store in a temporary folder).
    let store = std::env::temp_dir().join(format!("misto-nats-{}", std::process::id()));
    let port = hostport.rsplit(':').next().unwrap_or("4222").to_string();
    let child = Command::new("/usr/sbin/nats-server")
        .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        return skip(format!(
            "NATS is not reachable at {nats} and /usr/sbin/nats-server cannot be started"
        ));
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(&hostport).await.is_ok() {
            return Some((db, nats, Some(child)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    skip(format!(
        "NATS started for the test did not listen at {nats}"
    ))
}

/// Create a database of its own next to `admin`'s; returns its URL.
async fn fresh_database(admin: &str) -> Result<String, String> {
    use sqlx::Connection;
    let mut c = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(admin))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let name = format!(
        "misto_cluster_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    Ok(format!("{base}/{name}"))
}

/// Remove the test's database (after its nodes are gone); a failed test leaves it for inspection.
async fn drop_database(db: &str) {
    use sqlx::Connection;
    let admin = std::env::var("MISTO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Some((_, name)) = db.rsplit_once('/') else {
        return;
    };
    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
    }
}

/// One `misto serve` node; killed when dropped.
struct Node {
    child: Child,
    api: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db: &str, nats: &str, node: &str, dir: &std::path::Path) -> Node {
    let mut cmd = common::misto();
    cmd.env("MISTO_DATABASE_URL", db)
        .env("MISTO_BUS_URL", nats)
        .env("MISTO_NODE_ID", node);
    let (child, url) = common::serve(cmd, dir);
    Node {
        child,
        api: format!("{url}/ngsi-ld/v1"),
    }
}

/// Two nodes on `db`, started one after the other (the first applies the migrations).
async fn two_nodes(db: &str, nats: &str, dir: &std::path::Path) -> (Node, Node) {
    let (db, nats, dir) = (db.to_string(), nats.to_string(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let a = start(&db, &nats, "node-a", &dir.join("a"));
        let b = start(&db, &nats, "node-b", &dir.join("b"));
        (a, b)
    })
    .await
    .unwrap()
}

/// What a receiver got, per path: every notified entity as (id, level).
type Received = Arc<Mutex<HashMap<String, Vec<(String, i64)>>>>;

/// A notification receiver on a free port (`/<path>` for each subscription), slow by `delay` per request.
async fn receiver(delay: Duration) -> (String, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/{path}",
        axum::routing::post(
            move |axum::extract::Path(path): axum::extract::Path<String>, body: String| {
                let g = g.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if let (Some(items), Ok(mut g)) = (v["data"].as_array(), g.lock()) {
                        let list = g.entry(path).or_default();
                        for i in items {
                            let id = i["id"].as_str().unwrap_or_default().to_string();
                            list.push((id, i["level"].as_i64().unwrap_or(-1)));
                        }
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), got)
}

fn received(got: &Received, path: &str) -> Vec<(String, i64)> {
    got.lock().unwrap().get(path).cloned().unwrap_or_default()
}

/// Wait until `path` got at least `n` entities (or `within` passed); returns what it got.
async fn wait_for(got: &Received, path: &str, n: usize, within: Duration) -> Vec<(String, i64)> {
    let deadline = Instant::now() + within;
    while received(got, path).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    received(got, path)
}

async fn send(req: reqwest::RequestBuilder, body: Value) -> (u16, String) {
    let r = req
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("misto answers");
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("Location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, location)
}

async fn create_entity(c: &reqwest::Client, api: &str, id: &str, ty: &str) {
    let (s, _) = send(
        c.post(format!("{api}/entities")),
        json!({"id": id, "type": ty, "level": {"type": "Property", "value": 0}}),
    )
    .await;
    assert_eq!(s, 201, "entity {id} created");
}

async fn set_level(c: &reqwest::Client, api: &str, id: &str, level: i64) -> u16 {
    send(
        c.patch(format!("{api}/entities/{id}/attrs")),
        json!({"level": {"type": "Property", "value": level}}),
    )
    .await
    .0
}

/// Create a subscription; returns its id.
async fn subscribe(c: &reqwest::Client, api: &str, body: Value) -> String {
    let (s, location) = send(c.post(format!("{api}/subscriptions")), body).await;
    assert_eq!(s, 201, "subscription created");
    location
        .rsplit('/')
        .next()
        .expect("a Location with the id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_behave_as_one_broker() {
    let Some((db, nats, _nats_child)) = services().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_nodes(&db, &nats, dir.path()).await;
    let c = reqwest::Client::new();
    let (rx, got) = receiver(Duration::ZERO).await;

    // /ready says which bus the node is on and whether it is connected.
    let ready = a.api.replace("/ngsi-ld/v1", "/ready");
    let mut bus = Value::Null;
    for _ in 0..100 {
        bus = c
            .get(&ready)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["bus"]
            .clone();
        if bus["connected"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bus, json!({"kind": "nats", "connected": true}));

    // (a) A subscription created on B, changes made on A: each notified, once, in order.
    create_entity(&c, &a.api, "urn:ngsi-ld:Meter:a1", "Meter").await;
    subscribe(
        &c,
        &b.api,
        json!({"type": "Subscription", "entities": [{"type": "Meter"}], "watchedAttributes": ["level"],
               "notification": {"format": "keyValues", "attributes": ["level"], "endpoint": {"uri": format!("{rx}/a")}}}),
    )
    .await;
    let n = 100;
    for level in 1..=n {
        assert_eq!(
            set_level(&c, &a.api, "urn:ngsi-ld:Meter:a1", level).await,
            204
        );
    }
    wait_for(&got, "a", n as usize, Duration::from_secs(30)).await;
    // Room for duplicates to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let levels: Vec<i64> = received(&got, "a").into_iter().map(|(_, l)| l).collect();
    assert_eq!(
        levels,
        (1..=n).collect::<Vec<_>>(),
        "every change made on A is notified once, in order, to the subscription made on B"
    );

    // (b) A timeInterval subscription fires at its rate cluster-wide, not once per node.
    create_entity(&c, &a.api, "urn:ngsi-ld:Clock:b1", "Clock").await;
    subscribe(
        &c,
        &a.api,
        json!({"type": "Subscription", "entities": [{"type": "Clock"}], "timeInterval": 1,
               "notification": {"format": "keyValues", "endpoint": {"uri": format!("{rx}/b")}}}),
    )
    .await;
    wait_for(&got, "b", 1, Duration::from_secs(10)).await;
    let first = received(&got, "b").len();
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let fired = received(&got, "b").len() - first;
    // Once a second from one node is 8 (a little less: a firing is claimed on a 250 ms tick); from both
    // nodes it would be about 16.
    assert!(
        (5..=10).contains(&fired),
        "a 1 s timeInterval subscription fired {fired} times in 8 s across two nodes"
    );

    // (c) A subscription made on A, read and changed on B, deleted on B: A follows.
    create_entity(&c, &a.api, "urn:ngsi-ld:Gauge:c1", "Gauge").await;
    let sub = subscribe(
        &c,
        &a.api,
        json!({"type": "Subscription", "entities": [{"type": "Gauge"}], "q": "level>1000",
               "notification": {"format": "keyValues", "attributes": ["level"], "endpoint": {"uri": format!("{rx}/c")}}}),
    )
    .await;
    let r = c
        .get(format!("{}/subscriptions/{sub}", b.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a subscription made on A is visible on B");
    // Matches nothing yet. (Changes are matched when the journal is consumed, against the subscription as it
    // is then: give this one time to be consumed before the update.)
    assert_eq!(set_level(&c, &a.api, "urn:ngsi-ld:Gauge:c1", 1).await, 204);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, _) = send(
        c.patch(format!("{}/subscriptions/{sub}", b.api)),
        json!({"q": "level>=0"}),
    )
    .await;
    assert_eq!(s, 204, "subscription updated on B");
    // A change on A right after the update on B is matched with the updated subscription.
    assert_eq!(set_level(&c, &a.api, "urn:ngsi-ld:Gauge:c1", 2).await, 204);
    assert_eq!(set_level(&c, &b.api, "urn:ngsi-ld:Gauge:c1", 3).await, 204);
    let got_c = wait_for(&got, "c", 2, Duration::from_secs(10)).await;
    let levels: Vec<i64> = got_c.iter().map(|(_, l)| *l).collect();
    assert_eq!(levels, vec![2, 3], "the update made on B is in force on A");
    let r = c
        .delete(format!("{}/subscriptions/{sub}", b.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(set_level(&c, &a.api, "urn:ngsi-ld:Gauge:c1", 4).await, 204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        received(&got, "c").len(),
        2,
        "a subscription deleted on B notifies nothing on A"
    );
    drop((a, b));
    drop_database(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_node_loses_no_acknowledged_change() {
    let Some((db, nats, _nats_child)) = services().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = two_nodes(&db, &nats, dir.path()).await;
    let c = reqwest::Client::new();
    // Slow: a backlog builds up, and is being delivered when a node dies.
    let (rx, got) = receiver(Duration::from_millis(10)).await;
    let entities: Vec<String> = (0..4).map(|i| format!("urn:ngsi-ld:Pump:d{i}")).collect();
    for e in &entities {
        create_entity(&c, &a.api, e, "Pump").await;
    }
    subscribe(
        &c,
        &a.api,
        json!({"type": "Subscription", "entities": [{"type": "Pump"}], "watchedAttributes": ["level"],
               "notification": {"format": "keyValues", "attributes": ["level"], "endpoint": {"uri": format!("{rx}/d")}}}),
    )
    .await;

    // One writer per entity, alternating between the nodes, remembers the last level acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut acked = Vec::new();
    let mut writers = Vec::new();
    for (i, e) in entities.iter().enumerate() {
        let last = Arc::new(AtomicI64::new(0));
        acked.push((e.clone(), last.clone()));
        let (c, stop, e) = (c.clone(), stop.clone(), e.clone());
        let apis = [a.api.clone(), b.api.clone()];
        writers.push(tokio::spawn(async move {
            let mut level = 0;
            while !stop.load(Ordering::Relaxed) {
                level += 1;
                let api = &apis[(level as usize + i) % 2];
                // A request to the killed node fails (refused, reset): not acknowledged.
                let r = c
                    .patch(format!("{api}/entities/{e}/attrs"))
                    .header("Content-Type", "application/json")
                    .body(json!({"level": {"type": "Property", "value": level}}).to_string())
                    .send()
                    .await;
                if !r.is_ok_and(|r| r.status() == 204) {
                    break;
                }
                last.store(level, Ordering::SeqCst);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = received(&got, "d").len();
    a.child.kill().expect("SIGKILL node A");
    let _ = a.child.wait();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        // A writer whose request went to the dead node stops there; its last acknowledged level stands.
        let _ = w.await;
    }
    let expected: HashMap<String, i64> = acked
        .iter()
        .map(|(e, l)| (e.clone(), l.load(Ordering::SeqCst)))
        .collect();
    let total: i64 = expected.values().sum();
    assert!(
        before > 0 && (before as i64) < total,
        "notifications were under way when the node died ({before} of {total} delivered)"
    );

    // The survivor delivers the rest (once the dead node's delivery lease expires).
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let got_d = received(&got, "d");
        let missing: Vec<(String, i64)> = expected
            .iter()
            .flat_map(|(e, last)| {
                (1..=*last)
                    .filter(|l| !got_d.iter().any(|(id, x)| id == e && x == l))
                    .map(|l| (e.clone(), l))
                    .collect::<Vec<_>>()
            })
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got_d = received(&got, "d");
    eprintln!(
        "cluster kill test: {total} acknowledged changes, {before} notified before the kill, {} notifications received in all",
        got_d.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged changes were never notified, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    drop((a, b));
    drop_database(&db).await;
}
