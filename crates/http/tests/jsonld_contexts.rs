//! `/jsonldContexts` (§5.13): details of each context, hosted contexts per tenant, the core context kept,
//! hosted contexts referenced by their relative Location.

mod common;

use common::{problem, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const CORE: &str = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld";

async fn host(s: &TestServer, tenant: &str) -> String {
    let r = s
        .req(Method::POST, "/jsonldContexts")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", tenant)
        .body(json!({"@context": {"secretTerm": "urn:x:secretTerm"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    location
        .strip_prefix("/ngsi-ld/v1/jsonldContexts/")
        .expect("a relative Location")
        .to_string()
}

async fn get_as(s: &TestServer, tenant: &str, path: &str) -> reqwest::Response {
    s.req(Method::GET, path)
        .header("NGSILD-Tenant", tenant)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn hosted_contexts_belong_to_their_tenant() {
    let s = TestServer::start().await;
    let id = host(&s, "a").await;
    let path = format!("/jsonldContexts/{id}");

    let r = get_as(&s, "a", &path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["@context"]["secretTerm"], "urn:x:secretTerm");

    problem(get_as(&s, "b", &path).await, 404).await;
    problem(get_as(&s, "b", &format!("{path}?details=true")).await, 404).await;
    let listed = get_as(&s, "b", "/jsonldContexts?details=true").await;
    assert_eq!(listed.status(), 200);
    assert!(!listed.text().await.unwrap().contains(&id));
    let r = s
        .req(Method::DELETE, &path)
        .header("NGSILD-Tenant", "b")
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let r = s
        .req(Method::DELETE, &path)
        .header("NGSILD-Tenant", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn details_and_the_core_context() {
    let s = TestServer::start().await;
    let id = host(&s, "").await;
    let list = s
        .get_json("/jsonldContexts?details=true&kind=Hosted", None)
        .await;
    let d = &list[0];
    assert_eq!(d["localId"], id.as_str());
    assert_eq!(d["kind"], "Hosted");
    assert!(d["URL"].as_str().unwrap().ends_with(&id));
    assert!(d["createdAt"].is_string() && d["numberOfHits"] == 0);

    // An entity may name the hosted context by its relative Location.
    let r = s
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/ld+json")
        .body(
            json!({"id": "urn:ngsi-ld:T:1", "type": "T", "secretTerm": 1,
                "@context": format!("/ngsi-ld/v1/jsonldContexts/{id}")})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let e = s.get_json("/entities/urn:ngsi-ld:T:1", None).await;
    assert_eq!(e["urn:x:secretTerm"]["value"], 1);

    let core = s
        .get_json(&format!("/jsonldContexts/{CORE}?details=true"), None)
        .await;
    assert_eq!(core["kind"], "Cached");
    let r = s
        .req(Method::DELETE, &format!("/jsonldContexts/{CORE}"))
        .send()
        .await
        .unwrap();
    problem(r, 400).await;
    let r = s
        .req(
            Method::DELETE,
            &format!("/jsonldContexts/{CORE}?reload=true"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get(&format!("/jsonldContexts/{CORE}"), None)
            .await
            .status(),
        200
    );
}

/// A subscription written with a context that is no single URL names the broker's hosted copy of it as its
/// `jsonldContext` (kind ImplicitlyCreated), which can be served, listed and deleted like any other.
#[tokio::test]
async fn subscriptions_with_inline_contexts_get_an_implicit_one() {
    let s = TestServer::start().await;
    let inline = json!([{"Sensor": "urn:x:Sensor"}, {"temperature": "urn:x:temperature"}]);
    let r = s
        .req(Method::POST, "/subscriptions")
        .header("Content-Type", "application/ld+json")
        .body(
            json!({"id": "urn:ngsi-ld:Subscription:implicit", "type": "Subscription",
                "entities": [{"type": "Sensor"}],
                "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}},
                "@context": inline})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let listed = s
        .get_json("/jsonldContexts?kind=ImplicitlyCreated&details=true", None)
        .await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "created with the subscription: {listed:?}");
    let url = listed[0]["URL"].as_str().unwrap().to_string();
    let sub = s
        .get_json("/subscriptions/urn:ngsi-ld:Subscription:implicit", None)
        .await;
    assert_eq!(sub["jsonldContext"], url.as_str());
    let id = url.rsplit('/').next().unwrap().to_string();
    let doc = s.get_json(&format!("/jsonldContexts/{id}"), None).await;
    assert_eq!(doc["@context"], inline);
    let r = s
        .req(Method::DELETE, &format!("/jsonldContexts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // A subscription written with one context URL needs no copy.
    let r = s
        .send(
            Method::POST,
            "/subscriptions",
            &json!({"type": "Subscription", "entities": [{"type": "Sensor"}],
                "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let subs = s.get_json("/subscriptions", None).await;
    let plain: Vec<&Value> = subs
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["id"] != "urn:ngsi-ld:Subscription:implicit")
        .collect();
    assert!(plain[0].get("jsonldContext").is_none(), "{plain:?}");
}
