//! Subscriptions over HTTP: CRUD, validation, and notifications delivered to a real HTTP receiver (content,
//! headers, retries after failures, order, tenants, deletions and shown changes).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use common::{problem, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// An HTTP endpoint that records what it receives; it answers 500 to its first `fail_first` requests.
struct Receiver {
    url: String,
    rx: mpsc::UnboundedReceiver<(HeaderMap, Value)>,
    hits: Arc<AtomicUsize>,
}

async fn receiver(fail_first: usize) -> Receiver {
    let (tx, rx) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let tx = tx.clone();
            let h = h.clone();
            async move {
                let n = h.fetch_add(1, Ordering::SeqCst);
                if n < fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let _ = tx.send((headers, v));
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    Receiver {
        url: format!("http://{addr}/notify"),
        rx,
        hits,
    }
}

impl Receiver {
    async fn next(&mut self) -> (HeaderMap, Value) {
        tokio::time::timeout(Duration::from_secs(15), self.rx.recv())
            .await
            .expect("a notification within 15 s")
            .expect("receiver open")
    }

    async fn nothing_for(&mut self, d: Duration) {
        if let Ok(Some((_, v))) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!("unexpected notification: {v}");
        }
    }
}

/// The subscription once `sent` deliveries are recorded (the receiver sees a notification just before misto
/// records its delivery).
async fn settled(t: &TestServer, id: &str, sent: u64) -> Value {
    for _ in 0..50 {
        let s = t.get_json(&format!("/subscriptions/{id}"), None).await;
        if s["notification"]["timesSent"] == sent {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never recorded {sent} deliveries");
}

fn building(id: &str, name: &str, level: i64) -> Value {
    json!({
        "id": id, "type": "Building",
        "name": {"type": "Property", "value": name},
        "airQualityLevel": {"type": "Property", "value": level},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}
    })
}

fn subscription(id: &str, uri: &str, extra: Value) -> Value {
    let mut s = json!({
        "id": id, "type": "Subscription",
        "entities": [{"type": "Building"}],
        "notification": {"endpoint": {"uri": uri}}
    });
    if let (Some(o), Some(x)) = (s.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            o.insert(k.clone(), v.clone());
        }
    }
    s
}

async fn subscribe(t: &TestServer, body: &Value) {
    let r = t.send(Method::POST, "/subscriptions", body, None).await;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 201, "{text}");
}

async fn patch_level(t: &TestServer, id: &str, level: i64) {
    let r = t
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            &json!({"airQualityLevel": {"type": "Property", "value": level}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn create_retrieve_list_update_delete() {
    let t = TestServer::start().await;
    let r = t
        .send(
            Method::POST,
            "/subscriptions",
            &subscription(
                "urn:ngsi-ld:Subscription:1",
                "http://127.0.0.1:9/notify",
                json!({"watchedAttributes": ["name"], "q": "airQualityLevel>2"}),
            ),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:1"
    );
    let s = t
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:1", None)
        .await;
    assert_eq!(s["status"], "active");
    assert!(s.get("isActive").is_none());
    assert_eq!(s["watchedAttributes"], json!(["name"]));
    assert_eq!(
        s["notificationTrigger"],
        json!(["attributeCreated", "attributeUpdated"])
    );
    assert_eq!(s["notification"]["format"], "normalized");
    // Nothing was sent yet: no counters, no delivery status.
    assert!(s["notification"].get("timesSent").is_none());
    assert!(s["notification"].get("status").is_none());
    assert!(s.get("createdAt").is_none());
    let s = t
        .get_json(
            "/subscriptions/urn:ngsi-ld:Subscription:1?options=sysAttrs",
            None,
        )
        .await;
    assert!(s["createdAt"].is_string());

    // Without an id one is generated; the same id twice is AlreadyExists.
    let mut anon = subscription("x", "http://127.0.0.1:9/notify", json!({}));
    anon.as_object_mut().unwrap().remove("id");
    let r = t.send(Method::POST, "/subscriptions", &anon, None).await;
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("urn:ngsi-ld:Subscription:"));
    let r = t
        .send(
            Method::POST,
            "/subscriptions",
            &subscription(
                "urn:ngsi-ld:Subscription:1",
                "http://127.0.0.1:9/notify",
                json!({}),
            ),
            None,
        )
        .await;
    problem(r, 409).await;

    let r = t.get("/subscriptions?count=true&limit=1", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["ngsild-results-count"], "2");
    assert!(r
        .headers()
        .get_all("link")
        .iter()
        .any(|l| l.to_str().unwrap().contains("rel=\"next\"")));
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Pausing and resuming.
    let r = t
        .send(
            Method::PATCH,
            "/subscriptions/urn:ngsi-ld:Subscription:1",
            &json!({"isActive": false}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let s = t
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:1", None)
        .await;
    assert_eq!(s["status"], "paused");
    assert_eq!(s["q"], "airQualityLevel>2");
    let r = t
        .send(
            Method::PATCH,
            "/subscriptions/urn:ngsi-ld:Subscription:1",
            &json!({"notification": null}),
            None,
        )
        .await;
    problem(r, 400).await;
    let r = t
        .send(
            Method::PATCH,
            "/subscriptions/urn:ngsi-ld:Subscription:1",
            &json!({"expiresAt": "2000-01-01T00:00:00Z"}),
            None,
        )
        .await;
    problem(r, 400).await;
    let r = t
        .send(
            Method::PATCH,
            "/subscriptions/urn:ngsi-ld:Subscription:404",
            &json!({"isActive": true}),
            None,
        )
        .await;
    problem(r, 404).await;

    let r = t
        .req(Method::DELETE, "/subscriptions/urn:ngsi-ld:Subscription:1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    problem(
        t.get("/subscriptions/urn:ngsi-ld:Subscription:1", None)
            .await,
        404,
    )
    .await;
    problem(t.get("/subscriptions/not-a-uri", None).await, 400).await;
}

#[tokio::test]
async fn invalid_subscriptions_are_bad_request_data() {
    let t = TestServer::start().await;
    let ep = "http://127.0.0.1:9/notify";
    let cases = [
        json!({"notificationTrigger": ["entityChanged"]}),
        json!({"notification": null}),
        json!({"notification": {"endpoint": {"uri": "not a uri"}}}),
        json!({"notification": {"endpoint": {"uri": ep}, "format": "keyValues", "showChanges": true}}),
        json!({"notification": {"endpoint": {"uri": ep}, "attributes": []}}),
        json!({"notification": {"endpoint": {"uri": ep}, "attributes": ["a"], "pick": ["b"]}}),
        json!({"notification": {"endpoint": {"uri": ep, "receiverInfo": [{"key": "K", "value": 4}]}}}),
        json!({"entities": [], "watchedAttributes": null}),
        json!({"entities": [{"id": "urn:x"}]}),
        json!({"expiresAt": "2000-01-01T00:00:00Z"}),
        json!({"throttling": -1}),
        json!({"timeInterval": 5, "watchedAttributes": ["name"]}),
        json!({"q": "((("}),
        json!({"csf": "(("}),
        json!({"geoQ": {"georel": "near", "geometry": "Point", "coordinates": [1, 2]}}),
        json!({"id": "not a uri"}),
        json!({"type": "Sub"}),
    ];
    for extra in cases {
        let mut body = subscription("urn:ngsi-ld:Subscription:bad", ep, json!({}));
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let r = t.send(Method::POST, "/subscriptions", &body, None).await;
        let p = problem(r, 400).await;
        assert_eq!(
            p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "{extra}: {p}"
        );
    }
    // Read-only members sent by a client are ignored.
    let mut body = subscription(
        "urn:ngsi-ld:Subscription:ro",
        ep,
        json!({"status": "expired"}),
    );
    body["notification"]["timesSent"] = json!(42);
    subscribe(&t, &body).await;
    let s = t
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:ro", None)
        .await;
    assert_eq!(s["status"], "active");
    assert!(s["notification"].get("timesSent").is_none());
}

#[tokio::test]
async fn an_update_is_notified_with_the_entity_and_status_is_kept() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    t.create(&building("urn:ngsi-ld:Building:1", "Tower", 1), None)
        .await;
    t.create(&json!({"id": "urn:ngsi-ld:Shop:1", "type": "Shop", "airQualityLevel": {"type": "Property", "value": 1}}), None)
        .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:w",
            &rx.url,
            json!({"watchedAttributes": ["airQualityLevel"], "q": "airQualityLevel>2"}),
        ),
    )
    .await;
    // Not of the type, not passing q, not a watched attribute: no notification.
    patch_level(&t, "urn:ngsi-ld:Shop:1", 7).await;
    patch_level(&t, "urn:ngsi-ld:Building:1", 2).await;
    let r = t
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Building:1/attrs",
            &json!({"name": {"type": "Property", "value": "T2"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    patch_level(&t, "urn:ngsi-ld:Building:1", 5).await;
    let (headers, n) = rx.next().await;
    assert_eq!(n["type"], "Notification");
    assert_eq!(n["subscriptionId"], "urn:ngsi-ld:Subscription:w");
    assert!(n["id"]
        .as_str()
        .unwrap()
        .starts_with("urn:ngsi-ld:Notification:"));
    assert!(n["notifiedAt"].is_string());
    assert_eq!(n["data"].as_array().unwrap().len(), 1);
    assert_eq!(n["data"][0]["id"], "urn:ngsi-ld:Building:1");
    assert_eq!(n["data"][0]["airQualityLevel"]["value"], 5);
    assert_eq!(n["data"][0]["name"]["value"], "T2");
    assert_eq!(headers["content-type"], "application/json");
    rx.nothing_for(Duration::from_millis(800)).await;
    let s = settled(&t, "urn:ngsi-ld:Subscription:w", 1).await;
    assert_eq!(s["notification"]["timesSent"], 1);
    assert_eq!(s["notification"]["status"], "ok");
    assert!(s["notification"]["lastSuccess"].is_string());
}

#[tokio::test]
async fn failed_deliveries_are_retried_in_order() {
    let t = TestServer::start().await;
    let mut rx = receiver(2).await;
    t.create(&building("urn:ngsi-ld:Building:r", "R", 0), None)
        .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:r",
            &rx.url,
            json!({"notification": {"endpoint": {"uri": rx.url}, "format": "keyValues"}}),
        ),
    )
    .await;
    for level in 1..=3 {
        patch_level(&t, "urn:ngsi-ld:Building:r", level).await;
    }
    for level in 1..=3 {
        let (_, n) = rx.next().await;
        assert_eq!(n["data"][0]["airQualityLevel"], level, "{n}");
    }
    assert_eq!(rx.hits.load(Ordering::SeqCst), 5);
    let s = settled(&t, "urn:ngsi-ld:Subscription:r", 3).await;
    assert_eq!(s["notification"]["timesSent"], 3);
    assert_eq!(s["notification"]["timesFailed"], 2);
    assert!(s["notification"]["lastFailure"].is_string());
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_a_live_one() {
    let t = TestServer::start().await;
    let mut live = receiver(0).await;
    let dead = receiver(usize::MAX).await;
    t.create(&building("urn:ngsi-ld:Building:d", "D", 0), None)
        .await;
    subscribe(
        &t,
        &subscription("urn:ngsi-ld:Subscription:dead", &dead.url, json!({})),
    )
    .await;
    subscribe(
        &t,
        &subscription("urn:ngsi-ld:Subscription:live", &live.url, json!({})),
    )
    .await;
    for level in 1..=5 {
        patch_level(&t, "urn:ngsi-ld:Building:d", level).await;
    }
    for level in 1..=5 {
        let (_, n) = live.next().await;
        assert_eq!(n["subscriptionId"], "urn:ngsi-ld:Subscription:live");
        assert_eq!(n["data"][0]["airQualityLevel"]["value"], level);
    }
    assert!(dead.hits.load(Ordering::SeqCst) >= 1);
    let s = t
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:dead", None)
        .await;
    assert_eq!(s["notification"]["status"], "failed");
}

#[tokio::test]
async fn tenants_only_see_their_own_changes() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    let r = t
        .req(Method::POST, "/subscriptions")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "kyiv")
        .body(subscription("urn:ngsi-ld:Subscription:k", &rx.url, json!({})).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    t.create(
        &building("urn:ngsi-ld:Building:x", "default tenant", 1),
        None,
    )
    .await;
    patch_level(&t, "urn:ngsi-ld:Building:x", 2).await;
    let r = t
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "kyiv")
        .body(building("urn:ngsi-ld:Building:k", "kyiv tenant", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (headers, n) = rx.next().await;
    assert_eq!(n["data"][0]["id"], "urn:ngsi-ld:Building:k");
    assert_eq!(headers["ngsild-tenant"], "kyiv");
    rx.nothing_for(Duration::from_millis(800)).await;
    // The subscription exists only in its tenant.
    problem(
        t.get("/subscriptions/urn:ngsi-ld:Subscription:k", None)
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn deletions_and_changes_are_shown() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    t.create(&building("urn:ngsi-ld:Building:c", "Old", 1), None)
        .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:c",
            &rx.url,
            json!({"notificationTrigger": ["attributeUpdated", "attributeDeleted", "entityDeleted"],
                   "notification": {"endpoint": {"uri": rx.url}, "showChanges": true}}),
        ),
    )
    .await;
    let r = t
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Building:c/attrs",
            &json!({"name": {"type": "Property", "value": "New"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let (_, n) = rx.next().await;
    assert_eq!(n["data"][0]["name"]["value"], "New");
    assert_eq!(n["data"][0]["name"]["previousValue"], "Old");
    assert!(n["data"][0]["airQualityLevel"]
        .get("previousValue")
        .is_none());

    let r = t
        .req(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Building:c/attrs/owner",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, n) = rx.next().await;
    assert_eq!(n["data"][0]["owner"]["object"], "urn:ngsi-ld:null");
    assert_eq!(
        n["data"][0]["owner"]["previousObject"],
        "urn:ngsi-ld:Person:1"
    );

    let r = t
        .req(Method::DELETE, "/entities/urn:ngsi-ld:Building:c")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, n) = rx.next().await;
    let item = &n["data"][0];
    assert_eq!(item["id"], "urn:ngsi-ld:Building:c");
    assert_eq!(item["type"], "Building");
    assert!(item["deletedAt"].is_string());
    assert_eq!(item["name"]["value"], "urn:ngsi-ld:null");
    assert_eq!(item["name"]["previousValue"], "New");
}

#[tokio::test]
async fn periodic_subscriptions_send_matching_entities() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    t.create(&building("urn:ngsi-ld:Building:p1", "A", 1), None)
        .await;
    t.create(&building("urn:ngsi-ld:Building:p2", "B", 9), None)
        .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:p",
            &rx.url,
            json!({"timeInterval": 1, "q": "airQualityLevel>5"}),
        ),
    )
    .await;
    let started = std::time::Instant::now();
    let (_, a) = rx.next().await;
    let (_, b) = rx.next().await;
    for n in [&a, &b] {
        let ids: Vec<&str> = n["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, vec!["urn:ngsi-ld:Building:p2"]);
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Changes do not notify a periodic subscription by themselves.
    let r = t
        .req(Method::DELETE, "/subscriptions/urn:ngsi-ld:Subscription:p")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn a_version_preference_is_applied_and_the_subscription_returned_unaltered() {
    let t = TestServer::start().await;
    let id = "urn:ngsi-ld:Subscription:prefer";
    subscribe(
        &t,
        &subscription(
            id,
            "http://127.0.0.1:9/notify",
            json!({"notification": {
            "attributes": ["airQualityLevel"], "endpoint": {"uri": "http://127.0.0.1:9/notify"}}}),
        ),
    )
    .await;
    let plain = t.get_json(&format!("/subscriptions/{id}"), None).await;
    for (prefer, applied) in [
        ("ngsi-ld=1.0", Some("ngsi-ld=1.0")),
        ("NGSI-LD=1.0", Some("ngsi-ld=1.0")),
        ("ngsi-ld=\"1.6\"", Some("ngsi-ld=1.6")),
        ("ngsi-ld=1.0;q=0.1", Some("ngsi-ld=1.0")),
        ("respond-async, ngsi-ld=1.8.1", Some("ngsi-ld=1.8.1")),
        ("respond-async", None),
        ("ngsi-ld=banana", None),
    ] {
        let r = t
            .req(Method::GET, &format!("/subscriptions/{id}"))
            .header("Prefer", prefer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{prefer}");
        assert_eq!(
            r.headers()
                .get("preference-applied")
                .and_then(|v| v.to_str().ok()),
            applied,
            "{prefer}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body, plain,
            "{prefer}: a Subscription has no earlier-version form"
        );
    }
}

#[tokio::test]
async fn key_values_notifications_and_reads_carry_system_attributes_when_asked() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    t.create(&building("urn:ngsi-ld:Building:sys", "Sys", 1), None)
        .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:sys",
            &rx.url,
            json!({"notification": {"format": "keyValues", "sysAttrs": true,
                                    "endpoint": {"uri": rx.url.clone()}}}),
        ),
    )
    .await;
    patch_level(&t, "urn:ngsi-ld:Building:sys", 2).await;
    let (_, n) = rx.next().await;
    let item = &n["data"][0];
    assert_eq!(item["airQualityLevel"], 2, "{n}");
    assert!(
        item["createdAt"].is_string() && item["modifiedAt"].is_string(),
        "{n}"
    );
    let e = t
        .get_json(
            "/entities/urn:ngsi-ld:Building:sys?options=keyValues,sysAttrs",
            None,
        )
        .await;
    assert_eq!(e["airQualityLevel"], 2, "{e}");
    assert!(
        e["createdAt"].is_string() && e["modifiedAt"].is_string(),
        "{e}"
    );
    let e = t
        .get_json("/entities/urn:ngsi-ld:Building:sys?options=keyValues", None)
        .await;
    assert!(e.get("createdAt").is_none(), "{e}");
}

#[tokio::test]
async fn deleting_one_instance_by_dataset_id_is_an_attribute_deletion() {
    let t = TestServer::start().await;
    let mut rx = receiver(0).await;
    t.create(
        &json!({"id": "urn:ngsi-ld:Building:ds", "type": "Building",
                "name": [{"type": "Property", "value": "Eiffel Tower"},
                         {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"},
                         {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"}]}),
        None,
    )
    .await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:ds",
            &rx.url,
            json!({"watchedAttributes": ["name"], "notificationTrigger": ["attributeDeleted"]}),
        ),
    )
    .await;
    let r = t
        .req(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Building:ds/attrs/name?datasetId=urn:ngsi-ld:Dataset:fr",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, n) = rx.next().await;
    let name = n["data"][0]["name"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        name.len(),
        3,
        "the two remaining instances and the deleted one: {n}"
    );
    let deleted: Vec<&Value> = name
        .iter()
        .filter(|i| i["datasetId"] == "urn:ngsi-ld:Dataset:fr")
        .collect();
    assert_eq!(deleted.len(), 1, "{n}");
    assert_eq!(deleted[0]["value"], "urn:ngsi-ld:null", "{n}");
    assert!(
        name.iter().any(|i| i["value"] == "Eiffelturm"),
        "the remaining instances are kept: {n}"
    );
    // keyValues shows the instances by datasetId, the deleted one as NGSI-LD Null.
    let mut kv = receiver(0).await;
    subscribe(
        &t,
        &subscription(
            "urn:ngsi-ld:Subscription:ds-kv",
            &kv.url,
            json!({"watchedAttributes": ["name"], "notificationTrigger": ["attributeDeleted"],
                   "notification": {"format": "keyValues", "endpoint": {"uri": kv.url.clone()}}}),
        ),
    )
    .await;
    let r = t
        .req(
            Method::DELETE,
            "/entities/urn:ngsi-ld:Building:ds/attrs/name?datasetId=urn:ngsi-ld:Dataset:de",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, n) = kv.next().await;
    assert_eq!(
        n["data"][0]["name"],
        json!({"dataset": {"@none": "Eiffel Tower", "urn:ngsi-ld:Dataset:de": "urn:ngsi-ld:null"}}),
        "{n}"
    );
    let _ = rx.next().await;
    // An update of a remaining instance is not an attribute deletion.
    patch_name_default(&t).await;
    rx.nothing_for(Duration::from_millis(1500)).await;
}

async fn patch_name_default(t: &TestServer) {
    let r = t
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Building:ds/attrs",
            &json!({"name": {"type": "Property", "value": "La tour"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
}
