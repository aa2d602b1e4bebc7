//! The temporal API as a client sees it: histories recorded from entity changes, temporal queries, the simplified
//! and aggregated representations, the temporal write operations, paging of long histories and errors.

mod common;

use common::{problem, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

async fn status(r: reqwest::Response) -> u16 {
    r.status().as_u16()
}

async fn patch_speed(s: &TestServer, id: &str, v: f64, at: &str) {
    let r = s
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs"),
            &json!({"speed": {"type": "Property", "value": v, "observedAt": at}}),
            None,
        )
        .await;
    assert_eq!(status(r).await, 204);
}

async fn vehicle_with_history(s: &TestServer, id: &str) {
    s.create(
        &json!({"id": id, "type": "Vehicle",
            "speed": {"type": "Property", "value": 10, "observedAt": "2024-01-01T00:00:00Z"},
            "name": {"type": "Property", "value": "bus"}}),
        None,
    )
    .await;
    patch_speed(s, id, 20.0, "2024-01-01T00:30:00Z").await;
    patch_speed(s, id, 30.0, "2024-01-01T01:00:00Z").await;
    patch_speed(s, id, 50.0, "2024-01-01T01:30:00Z").await;
}

#[tokio::test]
async fn entity_changes_become_a_history() {
    let s = TestServer::start().await;
    vehicle_with_history(&s, "urn:ngsi-ld:Vehicle:1").await;
    let e = s
        .get_json("/temporal/entities/urn:ngsi-ld:Vehicle:1", None)
        .await;
    assert_eq!(e["id"], "urn:ngsi-ld:Vehicle:1");
    assert_eq!(e["type"], "Vehicle");
    let speeds: Vec<&Value> = e["speed"].as_array().unwrap().iter().collect();
    assert_eq!(speeds.len(), 4);
    assert_eq!(speeds[0]["value"], 10);
    assert_eq!(speeds[3]["value"], 50);
    assert_eq!(speeds[3]["observedAt"], "2024-01-01T01:30:00Z");
    assert!(speeds.iter().all(|i| i["instanceId"]
        .as_str()
        .is_some_and(|s| s.starts_with("urn:"))));
    // The name did not change: one instance.
    assert_eq!(e["name"].as_array().unwrap().len(), 1);
    // Deleting the entity keeps its history.
    let r = s
        .req(Method::DELETE, "/entities/urn:ngsi-ld:Vehicle:1")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r).await, 204);
    let e = s
        .get_json("/temporal/entities/urn:ngsi-ld:Vehicle:1?attrs=speed", None)
        .await;
    assert_eq!(e["speed"].as_array().unwrap().len(), 4);
    assert!(e.get("name").is_none());
}

#[tokio::test]
async fn timerel_last_n_and_temporal_values() {
    let s = TestServer::start().await;
    vehicle_with_history(&s, "urn:ngsi-ld:Vehicle:2").await;
    let id = "urn:ngsi-ld:Vehicle:2";
    let count = |e: &Value| e["speed"].as_array().map_or(0, Vec::len);
    // before is exclusive, after inclusive, between [timeAt, endTimeAt).
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?timerel=before&timeAt=2024-01-01T01:00:00Z"),
            None,
        )
        .await;
    assert_eq!(count(&e), 2);
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?timerel=after&timeAt=2024-01-01T01:00:00Z"),
            None,
        )
        .await;
    assert_eq!(count(&e), 2);
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?timerel=between&timeAt=2024-01-01T00:30:00Z&endTimeAt=2024-01-01T01:30:00Z"),
            None,
        )
        .await;
    assert_eq!(count(&e), 2);
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?lastN=2&attrs=speed"),
            None,
        )
        .await;
    let values: Vec<&Value> = e["speed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["value"])
        .collect();
    assert_eq!(values, vec![&json!(30), &json!(50)]);
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?options=temporalValues&attrs=speed"),
            None,
        )
        .await;
    assert_eq!(e["speed"]["type"], "Property");
    assert_eq!(
        e["speed"]["values"],
        json!([
            [10, "2024-01-01T00:00:00Z"],
            [20, "2024-01-01T00:30:00Z"],
            [30, "2024-01-01T01:00:00Z"],
            [50, "2024-01-01T01:30:00Z"]
        ])
    );
}

#[tokio::test]
async fn aggregated_values_per_period() {
    let s = TestServer::start().await;
    vehicle_with_history(&s, "urn:ngsi-ld:Vehicle:3").await;
    let e = s
        .get_json(
            "/temporal/entities/urn:ngsi-ld:Vehicle:3?options=aggregatedValues&aggrMethods=avg,max,totalCount&aggrPeriodDuration=PT1H&attrs=speed",
            None,
        )
        .await;
    assert_eq!(
        e["speed"]["avg"],
        json!([
            [15.0, "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"],
            [40.0, "2024-01-01T01:00:00Z", "2024-01-01T02:00:00Z"]
        ])
    );
    assert_eq!(e["speed"]["max"][1][0], json!(50.0));
    assert_eq!(e["speed"]["totalCount"][0][0], json!(2));
    // Without a period: one bucket over the whole range.
    let e = s
        .get_json(
            "/temporal/entities/urn:ngsi-ld:Vehicle:3?options=aggregatedValues&aggrMethods=sum&attrs=speed",
            None,
        )
        .await;
    assert_eq!(e["speed"]["sum"][0][0], json!(110.0));
    // Errors are problem details.
    for q in [
        "options=aggregatedValues",
        "options=aggregatedValues&aggrMethods=median",
        "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=1h",
        "timerel=before",
        "timerel=between&timeAt=2024-01-01T00:00:00Z",
        "timerel=after&timeAt=noon",
        "lastN=0",
        "options=temporalValues,aggregatedValues&aggrMethods=avg",
    ] {
        let r = s
            .get(
                &format!("/temporal/entities/urn:ngsi-ld:Vehicle:3?{q}"),
                None,
            )
            .await;
        let p = problem(r, 400).await;
        assert_eq!(
            p["type"], "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "{q}"
        );
    }
}

#[tokio::test]
async fn queries_select_entities() {
    let s = TestServer::start().await;
    vehicle_with_history(&s, "urn:ngsi-ld:Vehicle:a").await;
    vehicle_with_history(&s, "urn:ngsi-ld:Vehicle:b").await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Bus:c", "type": "Bus", "speed": {"type": "Property", "value": 99}}),
        None,
    )
    .await;
    let list = s
        .get_json(
            "/temporal/entities?type=Vehicle&timerel=after&timeAt=2024-01-01T01:00:00Z&count=true",
            None,
        )
        .await;
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["urn:ngsi-ld:Vehicle:a", "urn:ngsi-ld:Vehicle:b"]);
    assert_eq!(list[0]["speed"].as_array().unwrap().len(), 2);
    let list = s
        .get_json("/temporal/entities?type=Vehicle&limit=1", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let list = s
        .get_json("/temporal/entities?type=Vehicle,Bus&q=speed%3E60", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], "urn:ngsi-ld:Bus:c");
    let list = s
        .get_json(
            "/temporal/entities?idPattern=.*:b$&type=Vehicle&lastN=1",
            None,
        )
        .await;
    assert_eq!(list[0]["speed"].as_array().unwrap().len(), 1);
    // POST /temporalEntityOperations/query.
    let r = s
        .send(
            Method::POST,
            "/temporalEntityOperations/query?options=temporalValues",
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["speed"],
                "temporalQ": {"timerel": "before", "timeAt": "2024-01-01T00:30:00Z"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        list[0]["speed"]["values"],
        json!([[10, "2024-01-01T00:00:00Z"]])
    );
    // A query must select something.
    problem(s.get("/temporal/entities", None).await, 400).await;
    problem(
        s.get(
            "/temporal/entities?type=Vehicle&timerel=sometime&timeAt=2024-01-01T00:00:00Z",
            None,
        )
        .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn temporal_writes() {
    let s = TestServer::start().await;
    let body = json!({"id": "urn:ngsi-ld:Vehicle:t", "type": "Vehicle",
        "speed": [{"type": "Property", "value": 1, "observedAt": "2024-02-01T00:00:00Z"},
                  {"type": "Property", "value": 2, "observedAt": "2024-02-01T00:01:00Z"}]});
    let r = s
        .send(Method::POST, "/temporal/entities", &body, None)
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:t"
    );
    let body2 = json!({"id": "urn:ngsi-ld:Vehicle:t", "type": "Vehicle",
        "speed": {"type": "Property", "value": 3, "observedAt": "2024-02-01T00:02:00Z"}});
    let r = s
        .send(Method::POST, "/temporal/entities", &body2, None)
        .await;
    assert_eq!(r.status(), 204);
    let r = s
        .send(
            Method::POST,
            "/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs",
            &json!({"fuel": [{"type": "Property", "value": 70, "observedAt": "2024-02-01T00:00:00Z"}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s
        .get_json("/temporal/entities/urn:ngsi-ld:Vehicle:t", None)
        .await;
    assert_eq!(e["speed"].as_array().unwrap().len(), 3);
    assert_eq!(e["fuel"].as_array().unwrap().len(), 1);
    // Change one instance, then delete it.
    let iid = e["speed"][0]["instanceId"].as_str().unwrap().to_string();
    let r = s
        .send(
            Method::PATCH,
            &format!("/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs/speed/{iid}"),
            &json!({"speed": {"type": "Property", "value": 100, "observedAt": "2024-02-01T00:00:00Z"}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s
        .get_json("/temporal/entities/urn:ngsi-ld:Vehicle:t?attrs=speed", None)
        .await;
    assert_eq!(e["speed"][0]["value"], 100);
    assert_eq!(e["speed"][0]["instanceId"], iid.as_str());
    let path = format!("/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs/speed/{iid}");
    assert_eq!(
        status(s.req(Method::DELETE, &path).send().await.unwrap()).await,
        204
    );
    problem(s.req(Method::DELETE, &path).send().await.unwrap(), 404).await;
    problem(
        s.req(
            Method::DELETE,
            "/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs/speed/urn:x:1",
        )
        .send()
        .await
        .unwrap(),
        404,
    )
    .await;
    // Delete an attribute's history, then the entity's.
    let r = s
        .req(
            Method::DELETE,
            "/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs/fuel",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(status(r).await, 204);
    let e = s
        .get_json("/temporal/entities/urn:ngsi-ld:Vehicle:t", None)
        .await;
    assert!(e.get("fuel").is_none());
    let r = s
        .req(Method::DELETE, "/temporal/entities/urn:ngsi-ld:Vehicle:t")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r).await, 204);
    problem(
        s.get("/temporal/entities/urn:ngsi-ld:Vehicle:t", None)
            .await,
        404,
    )
    .await;
    problem(
        s.send(
            Method::POST,
            "/temporal/entities/urn:ngsi-ld:Vehicle:t/attrs",
            &json!({"fuel": {"value": 1}}),
            None,
        )
        .await,
        404,
    )
    .await;
    // Bad bodies.
    problem(
        s.send(
            Method::POST,
            "/temporal/entities",
            &json!({"type": "Vehicle"}),
            None,
        )
        .await,
        400,
    )
    .await;
    problem(
        s.send(Method::POST, "/temporal/entities", &json!([1]), None)
            .await,
        400,
    )
    .await;
    problem(s.get("/temporal/entities/not-a-uri", None).await, 400).await;
}

#[tokio::test]
async fn long_histories_are_paged() {
    let s = TestServer::start().await;
    let n = misto_broker::temporal::INSTANCES_PER_ATTRIBUTE + 10;
    let instances: Vec<Value> = (0..n)
        .map(|i| {
            let t = jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap();
            json!({"type": "Property", "value": i, "observedAt": t.to_string()})
        })
        .collect();
    let r = s
        .send(
            Method::POST,
            "/temporal/entities",
            &json!({"id": "urn:ngsi-ld:Sensor:p", "type": "Sensor", "v": instances}),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = s.get("/temporal/entities/urn:ngsi-ld:Sensor:p", None).await;
    assert_eq!(r.status(), 206);
    let range = r.headers()["content-range"].to_str().unwrap().to_string();
    assert!(range.starts_with("date-time "), "{range}");
    assert!(range.ends_with("/*"), "{range}");
    let e: Value = r.json().await.unwrap();
    let got = e["v"].as_array().unwrap();
    assert_eq!(got.len(), misto_broker::temporal::INSTANCES_PER_ATTRIBUTE);
    // The next page starts after the last instance returned.
    let last = got.last().unwrap()["observedAt"]
        .as_str()
        .unwrap()
        .to_string();
    let next =
        jiff::Timestamp::from_second(last.parse::<jiff::Timestamp>().unwrap().as_second() + 1)
            .unwrap();
    let r = s
        .get(
            &format!("/temporal/entities/urn:ngsi-ld:Sensor:p?timerel=after&timeAt={next}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["v"].as_array().unwrap().len(), 10);
    // lastN beyond the page: the most recent page, newest first in the range.
    let r = s
        .get("/temporal/entities/urn:ngsi-ld:Sensor:p?lastN=2000", None)
        .await;
    assert_eq!(r.status(), 206);
    assert!(r.headers()["content-range"]
        .to_str()
        .unwrap()
        .ends_with("/2000"));
}

/// The instances of a transient attribute carry its `expiresAt`: its history ends with the storage of the
/// attribute (§4.22), while the history of its durable sibling stays, and setting only the entity's `expiresAt`
/// records no instance. An expired entity's history outlives it, as a deleted one's does.
#[tokio::test]
async fn transient_attribute_history_evaporates() {
    let s = TestServer::start().await;
    let soon = misto_ngsild::validate::format_datetime(
        jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500),
    );
    let id = "urn:ngsi-ld:Building:t1";
    s.create(
        &json!({"id": id, "type": "Building",
            "flash": {"type": "Property", "value": 10, "expiresAt": soon},
            "steady": {"type": "Property", "value": 100}}),
        None,
    )
    .await;
    let r = s
        .send(
            Method::PATCH,
            &format!("/entities/{id}/attrs/flash"),
            &json!({"type": "Property", "value": 11}),
            None,
        )
        .await;
    assert_eq!(status(r).await, 204);
    let r = s
        .send(
            Method::PATCH,
            &format!("/entities/{id}"),
            &json!({"id": id, "type": "Building", "expiresAt": "2100-01-01T00:00:00Z"}),
            None,
        )
        .await;
    assert_eq!(status(r).await, 204);
    let path = format!("/temporal/entities/{id}?options=temporalValues");
    let e = s.get_json(&path, None).await;
    let values = |e: &Value, a: &str| -> Vec<i64> {
        e[a]["values"]
            .as_array()
            .map(|l| l.iter().filter_map(|v| v[0].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        values(&e, "flash"),
        vec![10, 11],
        "the update kept expiresAt"
    );
    assert_eq!(
        values(&e, "steady"),
        vec![100],
        "expiresAt alone is no instance"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let e = s.get_json(&path, None).await;
    assert!(
        e.get("flash").is_none(),
        "the transient history is gone: {e}"
    );
    assert_eq!(values(&e, "steady"), vec![100]);
    let e = s
        .get_json(
            &format!("/temporal/entities/{id}?aggrMethods=totalCount&options=aggregatedValues"),
            None,
        )
        .await;
    assert!(e.get("flash").is_none(), "aggregations skip it too: {e}");
    assert!(e.get("steady").is_some());
}
