//! Context source registrations (§5.9, §5.10), retrieval forwarded to a registered context source (§5.7.1,
//! tenants per §4.14) and the entity maps that record who answered (§5.7.1.4, §5.14).

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use common::{problem, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const CTX: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

async fn register(s: &TestServer, tenant: &str, body: Value) -> reqwest::Response {
    s.req(Method::POST, "/csourceRegistrations")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", tenant)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn future(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[tokio::test]
async fn registrations_are_created_discovered_updated_and_deleted() {
    let s = TestServer::start().await;
    let r = register(
        &s,
        "",
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:1", "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
            "endpoint": "http://cs.example.com:1026", "mode": "inclusive", "fleet": "city buses"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        "/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1"
    );
    let again = register(
        &s,
        "",
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:1", "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Vehicle"}]}], "endpoint": "http://x"}),
    )
    .await;
    problem(again, 409).await;

    let got = s
        .get_json(
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1",
            None,
        )
        .await;
    assert_eq!(got["type"], "ContextSourceRegistration");
    assert_eq!(got["information"][0]["propertyNames"], json!(["speed"]));
    // Members beyond Table 5.2.9-1 are context source properties of the registration, kept as written.
    assert_eq!(got["fleet"], "city buses");

    // Discovery by type and attribute: the registration covers Vehicle/speed, not Building or colour.
    let found = s
        .get_json("/csourceRegistrations?type=Vehicle&attrs=speed", None)
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    for miss in ["type=Building", "type=Vehicle&attrs=colour"] {
        let none = s
            .get_json(&format!("/csourceRegistrations?{miss}"), None)
            .await;
        assert_eq!(none, json!([]), "{miss}");
    }
    // Discovery names types or attributes; malformed filters are bad data; well-formed ones misto cannot
    // evaluate on registrations are refused, not ignored.
    for bad in [
        "",
        "id=not%20a%20uri&type=Vehicle",
        "q=(broken&type=Vehicle",
        "georel=within&type=Vehicle",
        "timerel=before&type=Vehicle",
    ] {
        problem(
            s.get(&format!("/csourceRegistrations?{bad}"), None).await,
            400,
        )
        .await;
    }
    problem(
        s.get("/csourceRegistrations?type=Vehicle&q=speed>3", None)
            .await,
        422,
    )
    .await;
    // Another tenant sees none of it.
    let r = s
        .req(
            Method::GET,
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1",
        )
        .header("NGSILD-Tenant", "other")
        .send()
        .await
        .unwrap();
    assert!(r.status() == 404, "{}", r.status());

    let r = s
        .send(
            Method::PATCH,
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1",
            &json!({"description": "cars", "endpoint": "http://cs2.example.com"}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = s
        .get_json(
            "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1",
            None,
        )
        .await;
    assert_eq!(got["description"], "cars");
    assert_eq!(got["endpoint"], "http://cs2.example.com");

    let path = "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1";
    assert_eq!(
        s.req(Method::DELETE, path).send().await.unwrap().status(),
        204
    );
    problem(s.get(path, None).await, 404).await;
    problem(s.req(Method::DELETE, path).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn bad_registrations_are_refused_and_registrations_expire() {
    let s = TestServer::start().await;
    for bad in [
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}]}]}),
        json!({"type": "ContextSourceRegistration", "endpoint": "http://x"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}]}],
            "endpoint": "http://x", "expiresAt": "2020-01-01T00:00:00Z"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}]}],
            "endpoint": "http://x", "expiresAt": "2026-13-45T00:00:00Z"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}]}],
            "endpoint": "http://x", "mode": "sometimes"}),
        // §4.3.6.3: exclusive registrations name entities by id and their attributes; auxiliary ones only read.
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V", "id": "urn:v:1"}]}],
            "endpoint": "http://x", "mode": "exclusive"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}],
            "propertyNames": ["speed"]}], "endpoint": "http://x", "mode": "exclusive"}),
        json!({"type": "ContextSourceRegistration", "information": [{"entities": [{"type": "V"}]}],
            "endpoint": "http://x", "mode": "auxiliary", "operations": ["updateOps"]}),
    ] {
        let v = problem(register(&s, "", bad.clone()).await, 400).await;
        assert_eq!(
            v["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "{bad}"
        );
    }

    // What an exclusive registration holds, and the broker's own entities, cannot be taken over.
    let exclusive = json!({"type": "ContextSourceRegistration", "mode": "exclusive", "endpoint": "http://x",
        "information": [{"entities": [{"type": "V", "id": "urn:v:2"}], "propertyNames": ["speed"]}]});
    assert_eq!(register(&s, "", exclusive.clone()).await.status(), 201);
    problem(register(&s, "", exclusive).await, 409).await;
    s.create(&json!({"id": "urn:v:3", "type": "V", "speed": 1}), None)
        .await;
    let redirect = json!({"type": "ContextSourceRegistration", "mode": "redirect", "endpoint": "http://x",
        "information": [{"entities": [{"type": "V", "id": "urn:v:3"}]}]});
    problem(register(&s, "", redirect).await, 409).await;

    let r = register(
        &s,
        "",
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:soon", "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Vehicle"}]}], "endpoint": "http://x",
            "expiresAt": future(1)}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let path = "/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:soon";
    assert_eq!(s.get(path, None).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    problem(s.get(path, None).await, 404).await;
    let listed = s.get_json("/csourceRegistrations?type=Vehicle", None).await;
    assert_eq!(listed, json!([]));
}

/// A request the context source received: its URI and its NGSILD-Tenant header.
type Received = (String, Option<String>);

/// What the test's context source saw of the forwarded requests.
#[derive(Default, Clone)]
struct Seen {
    requests: Arc<Mutex<Vec<Received>>>,
}

/// A context source holding one entity, `urn:ngsi-ld:Vehicle:remote`, with a speed.
async fn context_source() -> (String, Seen) {
    async fn entity(
        State(seen): State<Seen>,
        Path(id): Path<String>,
        headers: HeaderMap,
        uri: axum::http::Uri,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let tenant = headers
            .get("NGSILD-Tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Ok(mut r) = seen.requests.lock() {
            r.push((uri.to_string(), tenant));
        }
        if id != "urn:ngsi-ld:Vehicle:remote" {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        }
        axum::Json(json!({"id": id, "type": "Vehicle",
            "speed": {"type": "Property", "value": 42}}))
        .into_response()
    }
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/ngsi-ld/v1/entities/{id}", axum::routing::get(entity))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn retrieval_is_forwarded_to_a_registered_source() {
    let s = TestServer::start().await;
    let (endpoint, seen) = context_source().await;
    let r = register(
        &s,
        "city",
        json!({"id": "urn:ngsi-ld:ContextSourceRegistration:cars", "type": "ContextSourceRegistration",
            "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:remote", "type": "Vehicle"}],
                "propertyNames": ["speed"]}],
            "operations": ["redirectionOps"], "endpoint": endpoint}),
    )
    .await;
    assert_eq!(r.status(), 201);

    let get = |path: &'static str| {
        s.req(Method::GET, path)
            .header("NGSILD-Tenant", "city")
            .send()
    };
    let r = get("/entities/urn:ngsi-ld:Vehicle:remote").await.unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["speed"]["value"], 42);
    assert_eq!(e["type"], "Vehicle");
    {
        let req = seen.requests.lock().unwrap();
        let (uri, tenant) = &req[0];
        // Only the registered attribute is asked for, and the requester's tenant stays here: the
        // registration names none (§4.14).
        assert!(uri.contains("attrs=speed"), "{uri}");
        assert_eq!(tenant, &None);
    }
    // local=true keeps the retrieval in the broker.
    let r = get("/entities/urn:ngsi-ld:Vehicle:remote?local=true")
        .await
        .unwrap();
    problem(r, 404).await;
    // An entity the registration does not cover is not forwarded.
    let before = seen.requests.lock().unwrap().len();
    problem(
        get("/entities/urn:ngsi-ld:Vehicle:other").await.unwrap(),
        404,
    )
    .await;
    assert_eq!(seen.requests.lock().unwrap().len(), before);
}

#[tokio::test]
async fn retrieval_can_make_and_reuse_an_entity_map() {
    let s = TestServer::start().await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Vehicle:em", "type": "Vehicle", "speed": {"type": "Property", "value": 3}}),
        None,
    )
    .await;
    let r = s
        .get("/entities/urn:ngsi-ld:Vehicle:em?entityMap=true", None)
        .await;
    assert_eq!(r.status(), 200);
    let loc = r.headers()["NGSILD-EntityMap"]
        .to_str()
        .unwrap()
        .to_string();
    let e: Value = r.json().await.unwrap();
    assert!(e.get("entityMap").is_none());
    let map_id = loc.rsplit('/').next().unwrap().to_string();
    let map = s.get_json(&format!("/entityMaps/{map_id}"), None).await;
    assert_eq!(map["type"], "EntityMap");
    assert_eq!(map["entityMap"]["urn:ngsi-ld:Vehicle:em"], json!(["@none"]));
    assert!(map["expiresAt"].is_string());

    // A live map named in the header is used and named back; a dead one gives way to a new map.
    let r = s
        .req(Method::GET, "/entities/urn:ngsi-ld:Vehicle:em")
        .header("NGSILD-EntityMap", &loc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["NGSILD-EntityMap"].to_str().unwrap(), loc);
    let r = s
        .req(Method::GET, "/entities/urn:ngsi-ld:Vehicle:em")
        .header("NGSILD-EntityMap", "urn:ngsi-ld:EntityMap:dead")
        .send()
        .await
        .unwrap();
    let fresh = r.headers()["NGSILD-EntityMap"].to_str().unwrap();
    assert!(!fresh.contains("dead") && fresh != loc, "{fresh}");

    // A client may shorten a map's life, not rewrite it; past its expiry it is gone.
    let r = s
        .send(
            Method::PATCH,
            &format!("/entityMaps/{map_id}"),
            &json!({"expiresAt": "2000-01-01T00:00:00Z", "entityMap": {"urn:x": ["@none"]}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    problem(s.get(&format!("/entityMaps/{map_id}"), None).await, 404).await;
    problem(s.get("/entityMaps/not%20a%20uri", None).await, 400).await;
    let r = s
        .req(Method::DELETE, &format!("/entityMaps/{map_id}"))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
}

#[tokio::test]
async fn csource_subscriptions_negotiate_before_refusing() {
    let s = TestServer::start().await;
    let r = s
        .req(Method::GET, "/csourceSubscriptions")
        .header("Accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = s
        .req(Method::GET, "/csourceRegistrations?type=Building")
        .header("Accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let r = s.get("/csourceSubscriptions", Some(CTX)).await;
    problem(r, 422).await;
}
