//! Linked Entity retrieval (§4.5.23): `join=inline|flat`, `joinLevel`, `containedBy` and projections into
//! Linked Entities, on GET /entities/{id}, GET /entities and POST /entityOperations/query.

mod common;

use common::{problem, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// A Building in a City in a Country; the City also has a name and a description.
async fn city_graph(s: &TestServer, building: &str) {
    s.create(
        &json!({"id": building, "type": "Building",
            "name": {"type": "Property", "value": "Tower"},
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}}),
        None,
    )
    .await;
    s.create(
        &json!({"id": "urn:ngsi-ld:City:Paris", "type": "City",
            "name": {"type": "Property", "value": "Paris"},
            "description": {"type": "Property", "value": "capital"},
            "isInCountry": {"type": "Relationship", "object": "urn:ngsi-ld:Country:France"}}),
        None,
    )
    .await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Country:France", "type": "Country",
            "name": {"type": "Property", "value": "France"},
            "description": {"type": "Property", "value": "a country"}}),
        None,
    )
    .await;
}

const B: &str = "/entities/urn:ngsi-ld:Building:b1";

#[tokio::test]
async fn inline_puts_the_linked_entity_inside_the_relationship() {
    let s = TestServer::start().await;
    city_graph(&s, "urn:ngsi-ld:Building:b1").await;

    let v = s.get_json(&format!("{B}?join=inline"), None).await;
    let city = &v["locatedAt"]["entity"];
    assert_eq!(v["locatedAt"]["object"], "urn:ngsi-ld:City:Paris");
    assert_eq!(city["id"], "urn:ngsi-ld:City:Paris");
    assert_eq!(city["name"]["value"], "Paris");
    // joinLevel defaults to 1: the City's own link is not followed.
    assert!(city["isInCountry"].get("entity").is_none());

    let v = s
        .get_json(&format!("{B}?join=inline&joinLevel=2"), None)
        .await;
    assert_eq!(
        v["locatedAt"]["entity"]["isInCountry"]["entity"]["name"]["value"],
        "France"
    );

    // keyValues: the Linked Entity takes the place of its id.
    let kv = s
        .get_json(&format!("{B}?join=inline&options=keyValues"), None)
        .await;
    assert_eq!(kv["locatedAt"]["id"], "urn:ngsi-ld:City:Paris");
    assert_eq!(kv["locatedAt"]["name"], "Paris");
    assert_eq!(kv["locatedAt"]["isInCountry"], "urn:ngsi-ld:Country:France");

    // System attributes reach the Linked Entities too.
    let sys = s
        .get_json(&format!("{B}?join=inline&options=sysAttrs"), None)
        .await;
    assert!(sys["locatedAt"]["entity"]["createdAt"].is_string());
}

#[tokio::test]
async fn flat_lists_the_entity_then_its_linked_entities_once() {
    let s = TestServer::start().await;
    city_graph(&s, "urn:ngsi-ld:Building:b1").await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:b2", "type": "Building",
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}}),
        None,
    )
    .await;

    let v = s
        .get_json(&format!("{B}?join=flat&joinLevel=2"), None)
        .await;
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:Building:b1",
            "urn:ngsi-ld:City:Paris",
            "urn:ngsi-ld:Country:France"
        ]
    );
    assert!(v[0]["locatedAt"].get("entity").is_none());

    // A query: the matches first, then their Linked Entities, each once.
    let v = s.get_json("/entities?type=Building&join=flat", None).await;
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:Building:b1",
            "urn:ngsi-ld:Building:b2",
            "urn:ngsi-ld:City:Paris"
        ]
    );

    // The same through POST /entityOperations/query, with join in the body.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Building"}], "join": "inline"}),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["locatedAt"]["entity"]["name"]["value"], "Paris");
}

#[tokio::test]
async fn projections_reach_into_linked_entities() {
    let s = TestServer::start().await;
    city_graph(&s, "urn:ngsi-ld:Building:b1").await;

    // pick: the Building keeps id and locatedAt, the City id and name; isInCountry is not picked, so the
    // Country is not retrieved even with joinLevel=2.
    let v = s
        .get_json(
            &format!("{B}?join=flat&joinLevel=2&pick=id,locatedAt{{id,name}}"),
            None,
        )
        .await;
    assert_eq!(
        v,
        json!([
            {"id": "urn:ngsi-ld:Building:b1",
             "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Paris"}},
            {"id": "urn:ngsi-ld:City:Paris", "name": {"type": "Property", "value": "Paris"}}
        ])
    );
    let v = s
        .get_json(
            &format!("{B}?join=inline&joinLevel=2&pick=id,locatedAt{{id,isInCountry{{name}}}}"),
            None,
        )
        .await;
    assert_eq!(
        v["locatedAt"]["entity"]["isInCountry"]["entity"],
        json!({"name": {"type": "Property", "value": "France"}})
    );

    // omit: `locatedAt{name}` removes the City's name, not the Relationship.
    let v = s
        .get_json(
            &format!("{B}?join=inline&omit=type,locatedAt{{name}}"),
            None,
        )
        .await;
    assert!(v.get("type").is_none());
    let city = &v["locatedAt"]["entity"];
    assert_eq!(city["type"], "City");
    assert!(city.get("name").is_none() && city["description"].is_object());
}

#[tokio::test]
async fn missing_linked_entities_and_contained_by_are_left_out() {
    let s = TestServer::start().await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:b1", "type": "Building",
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Nowhere"}}),
        None,
    )
    .await;
    let v = s.get_json(&format!("{B}?join=inline"), None).await;
    assert_eq!(
        v["locatedAt"],
        json!({"type": "Relationship", "object": "urn:ngsi-ld:City:Nowhere"})
    );
    // Flat with nothing linked found: the entity alone, as without a join.
    let v = s.get_json(&format!("{B}?join=flat"), None).await;
    assert_eq!(v["id"], "urn:ngsi-ld:Building:b1");

    city_graph(&s, "urn:ngsi-ld:Building:b2").await;
    let v = s
        .get_json(
            "/entities/urn:ngsi-ld:Building:b2?join=flat&containedBy=urn:ngsi-ld:City:Paris",
            None,
        )
        .await;
    assert_eq!(v["id"], "urn:ngsi-ld:Building:b2", "Paris is held already");
}

#[tokio::test]
async fn selections_deeper_than_the_join_are_refused() {
    let s = TestServer::start().await;
    city_graph(&s, "urn:ngsi-ld:Building:b1").await;
    for path in [
        format!("{B}?pick=locatedAt{{name}}"),
        format!("{B}?join=inline&pick=locatedAt{{isInCountry{{name}}}}"),
        format!("{B}?join=inline&joinLevel=1&omit=locatedAt{{isInCountry{{name}}}}"),
        format!("{B}?join=sideways"),
        format!("{B}?join=inline&joinLevel=0"),
        format!("{B}?join=inline&joinLevel=x"),
        format!("{B}?join=inline&pick=locatedAt{{name"),
        format!("{B}?join=inline&pick=id{{name}}"),
        "/entities?type=Building&join=inline&pick=a{b{c}}".to_string(),
    ] {
        problem(s.get(&path, None).await, 400).await;
    }
    let r = s
        .send(
            Method::POST,
            "/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Building"}], "join": "inline", "joinLevel": 0}),
            None,
        )
        .await;
    problem(r, 400).await;
}

async fn count(s: &TestServer, q: &str) -> usize {
    let v = s
        .get_json(
            &format!("/entities?type=Building&join=inline&joinLevel=2&q={q}"),
            None,
        )
        .await;
    v.as_array().unwrap().len()
}

/// `q` reaches into Linked Entities with `rel{[Type:]term}` (§4.9), within the join's depth.
#[tokio::test]
async fn q_terms_about_linked_entities() {
    let s = TestServer::start().await;
    city_graph(&s, "urn:ngsi-ld:Building:b1").await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:b2", "type": "Building",
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:Lyon"}}),
        None,
    )
    .await;
    assert_eq!(count(&s, "locatedAt%7Bname%7D==%22Paris%22").await, 1);
    assert_eq!(count(&s, "locatedAt%7BCity:name%7D==%22Paris%22").await, 1);
    assert_eq!(
        count(&s, "locatedAt%7BCountry:name%7D==%22Paris%22").await,
        0
    );
    assert_eq!(
        count(&s, "locatedAt%7BisInCountry%7Bname%7D%7D==%22France%22").await,
        1
    );
    assert_eq!(count(&s, "locatedAt%7Bname%7D").await, 1);
    // Without a join, or deeper than it: refused.
    problem(
        s.get(
            "/entities?type=Building&q=locatedAt%7Bname%7D==%22x%22",
            None,
        )
        .await,
        400,
    )
    .await;
    problem(
        s.get(
            "/entities?type=Building&join=inline&q=locatedAt%7BisInCountry%7Bname%7D%7D==%22x%22",
            None,
        )
        .await,
        400,
    )
    .await;
}
