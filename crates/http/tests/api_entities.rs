//! The NGSI-LD entity API end to end over HTTP.

mod common;

use common::{problem, TestServer, CORE_CONTEXT, ENV_CONTEXT};
use reqwest::Method;
use serde_json::{json, Value};

fn station(n: u32, lon: f64, lat: f64, pm25: f64) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:AirQualityObserved:t{n}"),
        "type": "AirQualityObserved",
        "pm25": {"type": "Property", "value": pm25, "unitCode": "GQ", "observedAt": "2024-05-01T10:00:00Z"},
        "name": {"type": "Property", "value": format!("station {n}")},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "refDevice": {"type": "Relationship", "object": format!("urn:ngsi-ld:Device:d{n}")},
    })
}

#[tokio::test]
async fn create_read_back_in_every_representation() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.52, 50.45, 12.5), Some(ENV_CONTEXT))
        .await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";

    let n = s.get_json(id, Some(ENV_CONTEXT)).await;
    assert_eq!(n["type"], "AirQualityObserved");
    assert_eq!(n["pm25"]["value"], 12.5);
    assert_eq!(n["pm25"]["unitCode"], "GQ");
    assert_eq!(n["refDevice"]["object"], "urn:ngsi-ld:Device:d1");
    assert!(
        n.get("createdAt").is_none(),
        "no system attributes unless asked"
    );

    let kv = s
        .get_json(&format!("{id}?options=keyValues"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(kv["pm25"], 12.5);
    assert_eq!(kv["refDevice"], "urn:ngsi-ld:Device:d1");
    assert_eq!(kv["location"]["type"], "Point");

    let c = s
        .get_json(&format!("{id}?format=concise"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(c["name"], "station 1");
    assert_eq!(c["pm25"]["value"], 12.5);
    assert!(c["pm25"].get("type").is_none());
    assert_eq!(c["refDevice"]["object"], "urn:ngsi-ld:Device:d1");

    let sys = s
        .get_json(&format!("{id}?options=sysAttrs"), Some(ENV_CONTEXT))
        .await;
    assert!(sys["createdAt"].is_string() && sys["pm25"]["modifiedAt"].is_string());

    // Without the model's context the names come back expanded.
    let core = s.get_json(id, None).await;
    assert!(core.get("pm25").is_none());
    assert!(core
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.ends_with("/pm25")));
}

#[tokio::test]
async fn concise_input_is_understood() {
    let s = TestServer::start().await;
    let body = json!({
        "id": "urn:ngsi-ld:Thing:c1", "type": "Thing",
        "temperature": 21.5,
        "tags": ["a", "b"],
        "owner": {"object": "urn:ngsi-ld:Person:p1"},
        "location": {"type": "Point", "coordinates": [30.5, 50.4]},
        "label": {"languageMap": {"en": "Bridge", "uk": "Міст"}},
        "address": {"streetAddress": "Khreshchatyk 1"},
    });
    s.create(&body, None).await;
    let n = s.get_json("/entities/urn:ngsi-ld:Thing:c1", None).await;
    assert_eq!(n["temperature"], json!({"type": "Property", "value": 21.5}));
    assert_eq!(n["tags"]["value"], json!(["a", "b"]));
    assert_eq!(n["owner"]["type"], "Relationship");
    assert_eq!(n["location"]["type"], "GeoProperty");
    assert_eq!(n["label"]["type"], "LanguageProperty");
    assert_eq!(n["address"]["value"]["streetAddress"], "Khreshchatyk 1");
    let en = s
        .get_json(
            "/entities/urn:ngsi-ld:Thing:c1?lang=uk&options=keyValues",
            None,
        )
        .await;
    assert_eq!(en["label"], "Міст");
}

#[tokio::test]
async fn ld_json_in_and_out() {
    let s = TestServer::start().await;
    let mut body = station(2, 30.5, 50.4, 5.0);
    body["@context"] = json!(ENV_CONTEXT);
    let r = s
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        "/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:t2"
    );
    let r = s
        .req(Method::GET, "/entities/urn:ngsi-ld:AirQualityObserved:t2")
        .header("Accept", "application/ld+json")
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["@context"], ENV_CONTEXT);
    assert_eq!(v["pm25"]["value"], 5.0);

    // application/json answers carry the context in a Link header.
    let r = s
        .get("/entities/urn:ngsi-ld:AirQualityObserved:t2", None)
        .await;
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains(CORE_CONTEXT)
            && link.contains("rel=\"http://www.w3.org/ns/json-ld#context\"")
    );

    // @context in a JSON body, or a Link with ld+json, are errors.
    let r = s.send(Method::POST, "/entities", &body, None).await;
    problem(r, 400).await;
    let r = s
        .req(Method::GET, "/entities/urn:ngsi-ld:AirQualityObserved:t2")
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    problem(r, 406).await;
}

/// §6.3.4 list order breaks ties between accepted types; RFC 9110 §5.3.2 weights come from the most specific range.
#[tokio::test]
async fn accept_precedence_follows_list_order_and_specific_weights() {
    let s = TestServer::start().await;
    s.create(&station(9, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let cases = [
        ("application/ld+json, application/json", "application/json"),
        ("application/geo+json, application/json", "application/json"),
        ("application/json;q=0, */*", "application/ld+json"),
        (
            "application/json;q=0.1, application/ld+json;q=0.9",
            "application/ld+json",
        ),
        ("*/*;q=0.9, application/ld+json;q=0.8", "application/json"),
        ("application/ld+json;q=notanumber", "application/ld+json"),
    ];
    for (accept, expected) in cases {
        let r = s
            .req(Method::GET, "/entities/urn:ngsi-ld:AirQualityObserved:t9")
            .header("Accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{accept}");
        assert_eq!(r.headers()["content-type"], expected, "{accept}");
    }
}

#[tokio::test]
async fn errors_for_conflicts_and_missing() {
    let s = TestServer::start().await;
    s.create(&station(3, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let r = s
        .send(
            Method::POST,
            "/entities",
            &station(3, 30.5, 50.4, 5.0),
            Some(ENV_CONTEXT),
        )
        .await;
    let p = problem(r, 409).await;
    assert_eq!(
        p["type"],
        "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"
    );
    let r = s.get("/entities/urn:ngsi-ld:X:none", None).await;
    let p = problem(r, 404).await;
    assert_eq!(
        p["type"],
        "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    );
    let r = s.get("/entities/not-a-uri", None).await;
    problem(r, 400).await;
    let r = s
        .req(Method::DELETE, "/entities/urn:ngsi-ld:X:none")
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
}

#[tokio::test]
async fn attribute_operations() {
    let s = TestServer::start().await;
    let id = "urn:ngsi-ld:AirQualityObserved:t4";
    s.create(&station(4, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let path = format!("/entities/{id}");

    // Append: a new attribute and a second instance of pm25 by datasetId.
    let r = s
        .send(
            Method::POST,
            &format!("{path}/attrs"),
            &json!({"no2": {"type": "Property", "value": 40}, "pm25": {"type": "Property", "value": 7.0, "datasetId": "urn:ngsi-ld:Dataset:b"}}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s.get_json(&path, Some(ENV_CONTEXT)).await;
    assert_eq!(e["no2"]["value"], 40);
    assert_eq!(e["pm25"].as_array().map(Vec::len), Some(2));

    // noOverwrite keeps the old value and says so.
    let r = s
        .send(
            Method::POST,
            &format!("{path}/attrs?options=noOverwrite"),
            &json!({"no2": {"type": "Property", "value": 99}}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 207);
    let e = s.get_json(&path, Some(ENV_CONTEXT)).await;
    assert_eq!(e["no2"]["value"], 40);

    // Update only existing attributes: unknown ones reported.
    let r = s
        .send(Method::PATCH, &format!("{path}/attrs"), &json!({"no2": {"type": "Property", "value": 41}, "ghost": {"type": "Property", "value": 1}}), Some(ENV_CONTEXT))
        .await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["updated"], json!(["no2"]));
    assert_eq!(v["notUpdated"][0]["attributeName"], "ghost");

    // Partial attribute update keeps unitCode and changes the value.
    let r = s
        .send(
            Method::PATCH,
            &format!("{path}/attrs/pm25"),
            &json!({"value": 9.5}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s
        .get_json(&format!("{path}?attrs=pm25"), Some(ENV_CONTEXT))
        .await;
    let default = e["pm25"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("datasetId").is_none())
        .unwrap()
        .clone();
    assert_eq!(default["value"], 9.5);
    assert_eq!(default["unitCode"], "GQ");
    assert!(e.get("no2").is_none(), "attrs projects");

    // Replace one attribute.
    let r = s
        .send(
            Method::PUT,
            &format!("{path}/attrs/no2"),
            &json!({"type": "Property", "value": 1, "unitCode": "GQ"}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);

    // Delete one instance by datasetId, then the attribute.
    let r = s
        .req(
            Method::DELETE,
            &format!("{path}/attrs/pm25?datasetId=urn:ngsi-ld:Dataset:b"),
        )
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let e = s.get_json(&path, Some(ENV_CONTEXT)).await;
    assert!(e["pm25"].is_object());
    let r = s
        .req(Method::DELETE, &format!("{path}/attrs/no2"))
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req(Method::DELETE, &format!("{path}/attrs/no2"))
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
}

#[tokio::test]
async fn merge_and_replace_entity() {
    let s = TestServer::start().await;
    let id = "urn:ngsi-ld:AirQualityObserved:t5";
    s.create(&station(5, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let path = format!("/entities/{id}");
    let before = s
        .get_json(&format!("{path}?options=sysAttrs"), Some(ENV_CONTEXT))
        .await;

    // Merge: change a value, drop an attribute with urn:ngsi-ld:null, add one.
    let r = s
        .send(
            Method::PATCH,
            &path,
            &json!({"pm25": {"value": 6.0}, "name": "urn:ngsi-ld:null", "o3": 30}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    let e = s.get_json(&path, Some(ENV_CONTEXT)).await;
    assert_eq!(e["pm25"]["value"], 6.0);
    assert_eq!(
        e["pm25"]["unitCode"], "GQ",
        "merge keeps what it was not given"
    );
    assert!(e.get("name").is_none());
    assert_eq!(e["o3"]["value"], 30);

    // Replace: only what is given remains; creation time kept.
    let r = s
        .send(
            Method::PUT,
            &path,
            &json!({"type": "AirQualityObserved", "pm10": 3}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s
        .get_json(&format!("{path}?options=sysAttrs"), Some(ENV_CONTEXT))
        .await;
    assert!(e.get("pm25").is_none());
    assert_eq!(e["pm10"]["value"], 3);
    assert_eq!(e["createdAt"], before["createdAt"]);
    assert_ne!(e["modifiedAt"], before["modifiedAt"]);
}

#[tokio::test]
async fn queries_by_type_q_geo_and_pages() {
    let s = TestServer::start().await;
    // A line of stations eastwards from Maidan, one every ~700 m, pm25 rising.
    let items: Vec<Value> = (0..30)
        .map(|i| station(100 + i, 30.5234 + i as f64 * 0.01, 50.4501, i as f64))
        .collect();
    let r = s
        .send(
            Method::POST,
            "/entityOperations/create",
            &Value::Array(items),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 201);
    s.create(
        &json!({"id": "urn:ngsi-ld:Other:1", "type": "Other", "pm25": 50}),
        Some(ENV_CONTEXT),
    )
    .await;

    let q = |p: &str| format!("/entities?{p}");
    let all = s
        .get_json(&q("type=AirQualityObserved&limit=100"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 30);

    let r = s
        .get(
            &q("type=AirQualityObserved&q=pm25>10&count=true&limit=5"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.headers()["ngsild-results-count"], "19");
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 5);
    assert_eq!(page[0]["pm25"]["value"], 11.0, "insertion order");

    let r = s
        .get(
            &q("type=AirQualityObserved&q=pm25>10&count=true&limit=5&offset=17"),
            Some(ENV_CONTEXT),
        )
        .await;
    let page: Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);

    // Within 2 km of Maidan: stations 0..=2 (0, ~0.71, ~1.42 km); 3 is ~2.13 km away.
    let near = s
        .get_json(&q("type=AirQualityObserved&georel=near;maxDistance==2000&geometry=Point&coordinates=[30.5234,50.4501]&limit=100"), Some(ENV_CONTEXT))
        .await;
    let mut ids: Vec<&str> = near
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "urn:ngsi-ld:AirQualityObserved:t100",
            "urn:ngsi-ld:AirQualityObserved:t101",
            "urn:ngsi-ld:AirQualityObserved:t102"
        ]
    );

    let both = s
        .get_json(&q("type=AirQualityObserved&q=pm25>=1&georel=near;maxDistance==2000&geometry=Point&coordinates=[30.5234,50.4501]"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(both.as_array().unwrap().len(), 2);

    let within = s
        .get_json(
            &q("type=AirQualityObserved&georel=within&geometry=Polygon&coordinates=[[[30.60,50.40],[30.70,50.40],[30.70,50.50],[30.60,50.50],[30.60,50.40]]]&limit=100"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(within.as_array().unwrap().len(), 10);

    let by_id = s
        .get_json(
            &q("id=urn:ngsi-ld:AirQualityObserved:t101,urn:ngsi-ld:Other:1&type=AirQualityObserved,Other"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(by_id.as_array().unwrap().len(), 2);
    // Ids alone do not say what kind of entities is wanted (§5.7.2).
    let r = s
        .get(
            &q("id=urn:ngsi-ld:AirQualityObserved:t101"),
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 400).await;
    let by_pattern = s
        .get_json(
            &q("idPattern=.*:t11[0-9]$&type=AirQualityObserved"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(by_pattern.as_array().unwrap().len(), 10);
    let two_types = s
        .get_json(
            &q("type=Other,AirQualityObserved&q=pm25>=29"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(two_types.as_array().unwrap().len(), 2);

    let r = s
        .get(&q("type=AirQualityObserved&limit=5000"), Some(ENV_CONTEXT))
        .await;
    problem(r, 403).await;
    let r = s.get(&q(""), Some(ENV_CONTEXT)).await;
    problem(r, 400).await;

    // POST /entityOperations/query.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/query?count=true",
            &json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}], "q": "pm25<3", "attrs": ["pm25"]}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.headers()["ngsild-results-count"], "3");
    let v: Value = r.json().await.unwrap();
    assert!(v[0].get("name").is_none() && v[0]["pm25"].is_object());

    // GeoJSON.
    let r = s
        .req(Method::GET, &q("type=AirQualityObserved&limit=2"))
        .header("Accept", "application/geo+json")
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/geo+json");
    let fc: Value = r.json().await.unwrap();
    assert_eq!(fc["type"], "FeatureCollection");
    assert_eq!(fc["features"][0]["geometry"]["type"], "Point");
    assert_eq!(fc["features"][0]["properties"]["pm25"]["value"], 0.0);
    assert!(fc.get("@context").is_some());
    // Prefer: body=json leaves the context to the Link header.
    let r = s
        .req(Method::GET, &q("type=AirQualityObserved&limit=2"))
        .header("Accept", "application/geo+json")
        .header("Prefer", "body=json")
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("link"));
    let fc: Value = r.json().await.unwrap();
    assert!(fc.get("@context").is_none());
}

#[tokio::test]
async fn batch_operations_report_per_entity() {
    let s = TestServer::start().await;
    let r = s
        .send(
            Method::POST,
            "/entityOperations/create",
            &json!([station(1, 30.5, 50.4, 1.0), {"id": "bad id", "type": "X"}, station(2, 30.5, 50.4, 2.0)]),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"].as_array().unwrap().len(), 2);
    assert_eq!(v["errors"][0]["entityId"], "bad id");
    assert_eq!(v["errors"][0]["error"]["status"], 400);

    // Upsert: one new (201 with its id), one existing replaced.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/upsert",
            &json!([station(2, 30.5, 50.4, 20.0), station(3, 30.5, 50.4, 3.0)]),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!(["urn:ngsi-ld:AirQualityObserved:t3"]));
    let r = s
        .send(
            Method::POST,
            "/entityOperations/upsert",
            &json!([station(2, 30.5, 50.4, 21.0)]),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);

    let r = s
        .send(
            Method::POST,
            "/entityOperations/update",
            &json!([{"id": "urn:ngsi-ld:AirQualityObserved:t1", "type": "AirQualityObserved", "no2": 5}, {"id": "urn:ngsi-ld:AirQualityObserved:none", "type": "AirQualityObserved", "no2": 5}]),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 207);
    let r = s
        .send(
            Method::POST,
            "/entityOperations/merge",
            &json!([{"id": "urn:ngsi-ld:AirQualityObserved:t1", "pm25": {"value": 100}}]),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    let e = s
        .get_json(
            "/entities/urn:ngsi-ld:AirQualityObserved:t1",
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(e["pm25"]["value"], 100);
    assert_eq!(e["no2"]["value"], 5);

    let r = s
        .send(
            Method::POST,
            "/entityOperations/delete",
            &json!([
                "urn:ngsi-ld:AirQualityObserved:t1",
                "urn:ngsi-ld:AirQualityObserved:none"
            ]),
            None,
        )
        .await;
    assert_eq!(r.status(), 207);
    let r = s
        .get("/entities/urn:ngsi-ld:AirQualityObserved:t1", None)
        .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn ten_thousand_entities_in_one_batch() {
    let s = TestServer::start().await;
    let items: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": format!("urn:ngsi-ld:Sensor:{i}"), "type": "Sensor", "v": i}))
        .collect();
    let r = s
        .send(
            Method::POST,
            "/entityOperations/upsert",
            &Value::Array(items),
            None,
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 10_000);
    let r = s
        .get("/entities?type=Sensor&count=true&limit=1", None)
        .await;
    assert_eq!(r.headers()["ngsild-results-count"], "10000");
    let t = s.get_json("/types/Sensor", None).await;
    assert_eq!(t["entityCount"], 10_000);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = TestServer::start().await;
    let body = json!({"id": "urn:ngsi-ld:Thing:shared", "type": "Thing", "owner": "A"});
    let r = s
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "kyiv")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body_b = json!({"id": "urn:ngsi-ld:Thing:shared", "type": "Thing", "owner": "B"});
    let r = s
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .header("NGSILD-Tenant", "lviv")
        .body(body_b.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the same id may exist in another tenant");

    let get = |tenant: Option<&'static str>| {
        let mut r = s.req(Method::GET, "/entities?type=Thing&options=keyValues");
        if let Some(t) = tenant {
            r = r.header("NGSILD-Tenant", t);
        }
        r.send()
    };
    let a: Value = get(Some("kyiv")).await.unwrap().json().await.unwrap();
    assert_eq!(a.as_array().unwrap().len(), 1);
    assert_eq!(a[0]["owner"], "A");
    let b: Value = get(Some("lviv")).await.unwrap().json().await.unwrap();
    assert_eq!(b[0]["owner"], "B");
    let d: Value = get(None).await.unwrap().json().await.unwrap();
    assert_eq!(
        d.as_array().unwrap().len(),
        0,
        "the default tenant sees neither"
    );
    let r = get(Some("lviv")).await.unwrap();
    assert_eq!(
        r.headers()["NGSILD-Tenant"],
        "lviv",
        "answers name their tenant"
    );
    let r = get(Some("nowhere")).await.unwrap();
    assert_eq!(r.headers()["NGSILD-Tenant"], "nowhere");
    let p = problem(r, 404).await;
    assert_eq!(
        p["type"],
        "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant"
    );

    let r = s
        .req(Method::DELETE, "/entities/urn:ngsi-ld:Thing:shared")
        .header("NGSILD-Tenant", "kyiv")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let b: Value = get(Some("lviv")).await.unwrap().json().await.unwrap();
    assert_eq!(
        b.as_array().unwrap().len(),
        1,
        "deleting in one tenant leaves the other alone"
    );
}

#[tokio::test]
async fn types_and_attributes() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.5, 50.4, 1.0), Some(ENV_CONTEXT))
        .await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "pm25": 3}),
        Some(ENV_CONTEXT),
    )
    .await;
    let t = s.get_json("/types", Some(ENV_CONTEXT)).await;
    assert_eq!(t["type"], "EntityTypeList");
    assert_eq!(t["typeList"], json!(["AirQualityObserved", "Thing"]));
    let d = s.get_json("/types?details=true", Some(ENV_CONTEXT)).await;
    assert_eq!(d[0]["type"], "EntityType");
    assert!(d[0]["attributeNames"]
        .as_array()
        .unwrap()
        .contains(&json!("pm25")));
    let info = s
        .get_json("/types/AirQualityObserved", Some(ENV_CONTEXT))
        .await;
    assert_eq!(info["entityCount"], 1);
    let a = s.get_json("/attributes", Some(ENV_CONTEXT)).await;
    assert!(a["attributeList"]
        .as_array()
        .unwrap()
        .contains(&json!("refDevice")));
    let pm = s.get_json("/attributes/pm25", Some(ENV_CONTEXT)).await;
    assert_eq!(pm["attributeCount"], 2);
    assert_eq!(pm["typeNames"], json!(["AirQualityObserved", "Thing"]));
    let r = s.get("/types/Nothing", Some(ENV_CONTEXT)).await;
    problem(r, 404).await;
}

#[tokio::test]
async fn purge_and_transient_entities() {
    let s = TestServer::start().await;
    for i in 0..5 {
        s.create(
            &json!({"id": format!("urn:ngsi-ld:Tmp:{i}"), "type": "Tmp"}),
            None,
        )
        .await;
    }
    s.create(&json!({"id": "urn:ngsi-ld:Keep:1", "type": "Keep"}), None)
        .await;
    let r = s
        .req(Method::DELETE, "/entities?type=Tmp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let left = s.get_json("/entities?type=Tmp,Keep", None).await;
    assert_eq!(left.as_array().unwrap().len(), 1);

    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(300);
    s.create(
        &json!({"id": "urn:ngsi-ld:Flash:1", "type": "Flash", "expiresAt": soon.to_string()}),
        None,
    )
    .await;
    assert_eq!(
        s.get("/entities/urn:ngsi-ld:Flash:1", None).await.status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(
        s.get("/entities/urn:ngsi-ld:Flash:1", None).await.status(),
        404,
        "a transient entity disappears when due"
    );
}

#[tokio::test]
async fn hosted_contexts() {
    let s = TestServer::start().await;
    let r = s
        .send(Method::POST, "/jsonldContexts", &json!({"@context": {"Bridge": "https://example.org/Bridge", "span": "https://example.org/span"}}), None)
        .await;
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let id = location
        .strip_prefix("/ngsi-ld/v1/jsonldContexts/")
        .expect("a relative Location")
        .to_string();
    let details = s
        .get_json(&format!("/jsonldContexts/{id}?details=true"), None)
        .await;
    assert_eq!(details["localId"], id.as_str());
    assert_eq!(details["kind"], "Hosted");
    let url = details["URL"].as_str().unwrap().to_string();
    assert!(url.starts_with(&s.base));
    s.create(
        &json!({"id": "urn:ngsi-ld:Bridge:paton", "type": "Bridge", "span": 1543}),
        Some(&url),
    )
    .await;
    let e = s.get_json("/entities/urn:ngsi-ld:Bridge:paton", None).await;
    assert_eq!(
        e["type"], "https://example.org/Bridge",
        "stored under the hosted context's IRIs"
    );
    let e = s
        .get_json("/entities/urn:ngsi-ld:Bridge:paton", Some(&url))
        .await;
    assert_eq!(e["span"]["value"], 1543);
    let ctx = s.get_json(&format!("/jsonldContexts/{id}"), None).await;
    assert_eq!(ctx["@context"]["span"], "https://example.org/span");
    let list = s.get_json("/jsonldContexts?kind=Hosted", None).await;
    assert_eq!(list, json!([url]));
    let r = s
        .req(Method::DELETE, &format!("/jsonldContexts/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get(&format!("/jsonldContexts/{id}"), None).await.status(),
        404
    );
    // The shipped Smart Data Models contexts are listed.
    let cached = s.get_json("/jsonldContexts?kind=Cached", None).await;
    assert!(cached.as_array().unwrap().contains(&json!(ENV_CONTEXT)));
    // Unknown remote contexts with fetching off: 504 LdContextNotAvailable.
    let r = s
        .get(
            "/entities/urn:ngsi-ld:Bridge:paton",
            Some("https://example.invalid/ctx.jsonld"),
        )
        .await;
    let p = problem(r, 504).await;
    assert_eq!(
        p["type"],
        "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
    );
}

#[tokio::test]
async fn health_ready_metrics() {
    let s = TestServer::start().await;
    let r = s
        .client
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .client
        .get(format!("{}/ready", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["bus"], json!({"kind": "local", "connected": true}));
    let r = s
        .client
        .get(format!("{}/nothing-here", s.base))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    let r = s.req(Method::DELETE, "/types").send().await.unwrap();
    problem(r, 405).await;
    // Replacing or merging with no id in the path is bad data, not a wrong method.
    let r = s.send(Method::PUT, "/entities", &json!({}), None).await;
    problem(r, 400).await;
    // A body must declare its length: a chunked one gets a bare 411.
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(b"{}".to_vec())]);
    let r = s
        .req(Method::POST, "/entities")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 411);
    assert!(r.text().await.unwrap().is_empty());
    // A trailing slash names the same resource.
    let r = s
        .req(Method::GET, "/entities/?type=T")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Plain reads are answered from the rendering stored at write time; it must always equal what the renderer
/// makes now, follow every kind of write, and never answer a reader with another context.
#[tokio::test]
async fn stored_renderings_match_fresh_ones() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.52, 50.45, 12.5), Some(ENV_CONTEXT))
        .await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    // `attrs` naming every attribute renders the same entity through the ordinary renderer.
    let all = "attrs=pm25,name,location,refDevice";
    let stored = s.get_json(id, Some(ENV_CONTEXT)).await;
    let fresh = s.get_json(&format!("{id}?{all}"), Some(ENV_CONTEXT)).await;
    assert_eq!(stored, fresh);
    assert_eq!(stored["pm25"]["value"], 12.5);

    // A partial update, an append and a merge each replace the stored rendering.
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs"),
            &json!({"pm25": {"type": "Property", "value": 40.0}}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get_json(id, Some(ENV_CONTEXT)).await["pm25"]["value"],
        40.0
    );
    let r = s
        .send(
            Method::PATCH,
            id,
            &json!({"name": {"type": "Property", "value": "renamed"}}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = s.get_json(id, Some(ENV_CONTEXT)).await;
    assert_eq!(got["name"]["value"], "renamed");
    assert_eq!(
        got,
        s.get_json(&format!("{id}?{all}"), Some(ENV_CONTEXT)).await
    );

    // Written with the core context only, read with the model's: the names must still compact.
    let r = s
        .send(
            Method::POST,
            &format!("{id}/attrs"),
            &json!({"https://uri.etsi.org/ngsi-ld/default-context/extra": {"type": "Property", "value": 1}}),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    let got = s.get_json(id, Some(ENV_CONTEXT)).await;
    assert_eq!(got["pm25"]["value"], 40.0);
    assert_eq!(got["extra"]["value"], 1);
    // And read with the core context: expanded names, never the model context's short ones.
    let core = s.get_json(id, None).await;
    assert!(core.get("pm25").is_none());

    // Queries answer from stored renderings too, with @context appended for JSON-LD.
    let list = s
        .get_json("/entities?type=AirQualityObserved", Some(ENV_CONTEXT))
        .await;
    assert_eq!(list, json!([got.clone()]));
    let r = s
        .req(Method::GET, id)
        .header("Accept", "application/ld+json")
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/ld+json");
    let mut ld: Value = r.json().await.unwrap();
    assert_eq!(ld["@context"], json!(ENV_CONTEXT));
    ld.as_object_mut().unwrap().remove("@context");
    assert_eq!(ld, got);

    // A transient entity is rendered on each read (what it shows changes with time alone).
    let mut t = station(2, 30.5, 50.4, 1.0);
    t["expiresAt"] = json!("2999-01-01T00:00:00Z");
    s.create(&t, Some(ENV_CONTEXT)).await;
    let got = s
        .get_json(
            "/entities/urn:ngsi-ld:AirQualityObserved:t2",
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(got["pm25"]["value"], 1.0);
}

/// `orderBy` (V1.9 §4.23): by attribute value, by system member, descending, by distance, with a collation;
/// and pages are cut from the ordered whole.
#[tokio::test]
async fn query_results_in_the_order_asked() {
    let s = TestServer::start().await;
    for (n, lon, pm25) in [(1, 30.60, 30.0), (2, 30.50, 10.0), (3, 30.55, 20.0)] {
        s.create(&station(n, lon, 50.45, pm25), Some(ENV_CONTEXT))
            .await;
    }
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["id"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let q = |o: &str| format!("/entities?type=AirQualityObserved&orderBy={o}");
    assert_eq!(
        ids(s.get_json(&q("pm25"), Some(ENV_CONTEXT)).await),
        ["t2", "t3", "t1"]
    );
    assert_eq!(
        ids(s.get_json(&q("pm25;desc"), Some(ENV_CONTEXT)).await),
        ["t1", "t3", "t2"]
    );
    assert_eq!(
        ids(s.get_json(&q("id;desc"), Some(ENV_CONTEXT)).await),
        ["t3", "t2", "t1"]
    );
    assert_eq!(
        ids(s.get_json(&q("createdAt"), Some(ENV_CONTEXT)).await),
        ["t1", "t2", "t3"]
    );
    // Distance from a reference point (orderFrom).
    let near = format!("{}&orderFrom=[30.61,50.45]", q("location;dist-asc"));
    assert_eq!(
        ids(s.get_json(&near, Some(ENV_CONTEXT)).await),
        ["t1", "t3", "t2"]
    );
    // A page of the ordered whole, with the total.
    let r = s
        .get(
            &format!("{}&limit=1&offset=1&count=true", q("pm25")),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.headers()["NGSILD-Results-Count"], "3");
    assert_eq!(ids(r.json().await.unwrap()), ["t3"]);
    // The same by POST /entityOperations/query.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}],
                    "ordering": {"orderBy": ["location;dist-desc"], "coordinates": [30.61, 50.45], "geometry": "Point"}}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(ids(r.json().await.unwrap()), ["t2", "t3", "t1"]);
    // Bad criteria are BadRequestData.
    for bad in [
        q("pm25;sideways"),
        q("location;dist-asc"),
        format!("{}&collation=not%20a%20tag", q("id")),
    ] {
        let p = problem(s.get(&bad, Some(ENV_CONTEXT)).await, 400).await;
        assert!(
            p["type"].as_str().unwrap().ends_with("BadRequestData"),
            "{bad}"
        );
    }
}

/// Pages carry `Link` headers to the previous and next page where those exist (§4.12).
#[tokio::test]
async fn query_pages_link_to_their_neighbours() {
    let s = TestServer::start().await;
    for n in 1..=3 {
        s.create(&station(n, 30.5, 50.4, 1.0), Some(ENV_CONTEXT))
            .await;
    }
    let links = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("link")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .filter(|l| !l.contains("json-ld#context"))
            .collect()
    };
    let page = |offset: u32| format!("/entities?type=AirQualityObserved&limit=1&offset={offset}");
    let next = |o: u32| {
        format!("</ngsi-ld/v1/entities?limit=1&offset={o}&type=AirQualityObserved>; rel=\"next\";type=\"application/json\"")
    };
    let prev = |o: u32| {
        format!("</ngsi-ld/v1/entities?limit=1&offset={o}&type=AirQualityObserved>; rel=\"prev\";type=\"application/json\"")
    };
    let r = s.get(&page(0), Some(ENV_CONTEXT)).await;
    assert_eq!(links(&r), [next(1)]);
    let r = s.get(&page(1), Some(ENV_CONTEXT)).await;
    assert_eq!(links(&r), [prev(0), next(2)]);
    let r = s.get(&page(2), Some(ENV_CONTEXT)).await;
    assert_eq!(links(&r), [prev(1)]);
    // The same through the ordinary renderer (sysAttrs), and none for a count-only query.
    let r = s
        .get(&format!("{}&options=sysAttrs", page(2)), Some(ENV_CONTEXT))
        .await;
    assert_eq!(links(&r).len(), 1);
    let r = s
        .get(
            "/entities?type=AirQualityObserved&limit=0&count=true",
            Some(ENV_CONTEXT),
        )
        .await;
    assert!(links(&r).is_empty());
    assert_eq!(r.headers()["NGSILD-Results-Count"], "3");
}

/// `datasetId` keeps only the attribute instances of the named datasets (`@none`: default instances).
#[tokio::test]
async fn query_selects_attribute_instances_by_dataset() {
    let s = TestServer::start().await;
    let e = json!({
        "id": "urn:ngsi-ld:Building:ds1", "type": "Building",
        "name": [
            {"type": "Property", "value": "Eiffel Tower"},
            {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"},
            {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"}
        ],
        "height": {"type": "Property", "value": 330}
    });
    s.create(&e, None).await;
    let q = |extra: &str| format!("/entities?type=Building&{extra}");
    let got = s
        .get_json(&q("datasetId=urn:ngsi-ld:Dataset:fr"), None)
        .await;
    assert_eq!(got[0]["name"]["value"], "Tour Eiffel");
    assert!(got[0].get("height").is_none());
    let got = s.get_json(&q("datasetId=@none"), None).await;
    assert_eq!(got[0]["name"]["value"], "Eiffel Tower");
    assert_eq!(got[0]["height"]["value"], 330);
    let got = s
        .get_json(
            &q("datasetId=urn:ngsi-ld:Dataset:fr,urn:ngsi-ld:Dataset:de"),
            None,
        )
        .await;
    assert_eq!(got[0]["name"].as_array().map(Vec::len), Some(2));
    // No instance matches: the entity is there without attributes.
    let got = s
        .get_json(&q("attrs=name&datasetId=urn:ngsi-ld:Dataset:es"), None)
        .await;
    assert_eq!(got[0]["id"], "urn:ngsi-ld:Building:ds1");
    assert!(got[0].get("name").is_none());
    problem(s.get(&q("datasetId=not%20a%20uri"), None).await, 400).await;
}

/// Expired entities and attribute instances are gone at once for readers and writers; expiresAt is shown
/// with sysAttrs only.
#[tokio::test]
async fn transient_parts_vanish_when_due() {
    let s = TestServer::start().await;
    let soon = misto_ngsild::validate::format_datetime(
        jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1200),
    );
    let later = "2100-01-01T00:00:00Z";
    let mut e = station(1, 30.5, 50.4, 5.0);
    e["expiresAt"] = json!(later);
    e["pm25"]["expiresAt"] = json!(soon);
    e["name"]["expiresAt"] = json!(later);
    s.create(&e, Some(ENV_CONTEXT)).await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    let plain = s.get(id, Some(ENV_CONTEXT)).await.text().await.unwrap();
    assert!(plain.contains("pm25") && !plain.contains("expiresAt"));
    let sys = s
        .get_json(&format!("{id}?options=sysAttrs"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(sys["expiresAt"], later);
    assert_eq!(sys["name"]["expiresAt"], later);

    let mut gone = station(2, 30.5, 50.4, 5.0);
    gone["expiresAt"] = json!(soon);
    s.create(&gone, Some(ENV_CONTEXT)).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let got = s.get_json(id, Some(ENV_CONTEXT)).await;
    assert!(got.get("pm25").is_none(), "the expired attribute is gone");
    assert_eq!(got["name"]["value"], "station 1");
    let r = s
        .get(
            "/entities/urn:ngsi-ld:AirQualityObserved:t2",
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 404).await;
    let list = s
        .get_json("/entities?type=AirQualityObserved", Some(ENV_CONTEXT))
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    // Writers see it gone too: updating the expired entity is ResourceNotFound.
    let r = s
        .send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:AirQualityObserved:t2/attrs",
            &json!({"pm25": {"type": "Property", "value": 1}}),
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 404).await;
}

/// A client preferring an earlier NGSI-LD version (`Prefer: ngsi-ld=1.5`, §4.3.6.8) gets later attribute kinds
/// reformatted as Property or Relationship, answered 203 when altered, with the preference applied.
#[tokio::test]
async fn prefer_earlier_version_reformats_later_kinds() {
    let s = TestServer::start().await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:v1", "type": "Building",
            "category": {"type": "VocabProperty", "vocab": "commercial"},
            "name": {"type": "Property", "value": "tower"}}),
        None,
    )
    .await;
    let get = |prefer: &'static str| {
        s.req(Method::GET, "/entities/urn:ngsi-ld:Building:v1")
            .header("Prefer", prefer)
            .send()
    };
    let r = get("ngsi-ld=1.5").await.unwrap();
    assert_eq!(r.status(), 203);
    assert_eq!(r.headers()["preference-applied"], "ngsi-ld=1.5");
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["category"],
        json!({"type": "Property", "value": "commercial"})
    );
    assert_eq!(e["name"]["value"], "tower");
    let r = get("ngsi-ld=1.9").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["preference-applied"], "ngsi-ld=1.9");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["category"]["type"], "VocabProperty");
}

/// A merge fragment's `expiresAt` makes a durable entity transient (§5.6.17, §4.22), one already past removes
/// it at once, and NGSI-LD Null makes it durable again; the same through a batch merge.
#[tokio::test]
async fn merge_sets_and_clears_expires_at() {
    let s = TestServer::start().await;
    for n in 1..=3 {
        s.create(
            &json!({"id": format!("urn:ngsi-ld:Building:x{n}"), "type": "Building",
                "name": {"type": "Property", "value": "durable"}}),
            None,
        )
        .await;
    }
    let merge = |id: &'static str, exp: Value| {
        let s = &s;
        async move {
            s.send(
                Method::PATCH,
                &format!("/entities/{id}"),
                &json!({"id": id, "type": "Building", "expiresAt": exp}),
                None,
            )
            .await
            .status()
        }
    };
    let soon = misto_ngsild::validate::format_datetime(
        jiff::Timestamp::now() + jiff::SignedDuration::from_millis(800),
    );
    assert_eq!(merge("urn:ngsi-ld:Building:x1", json!(soon)).await, 204);
    assert_eq!(merge("urn:ngsi-ld:Building:x2", json!(soon)).await, 204);
    assert_eq!(
        merge("urn:ngsi-ld:Building:x2", json!("urn:ngsi-ld:null")).await,
        204
    );
    let sys = s
        .get_json("/entities/urn:ngsi-ld:Building:x1?options=sysAttrs", None)
        .await;
    assert_eq!(sys["expiresAt"], soon.as_str());
    assert_eq!(
        sys["name"]["value"], "durable",
        "the merge kept the attributes"
    );
    // Already past: gone now, not at the next sweep.
    assert_eq!(
        merge("urn:ngsi-ld:Building:x3", json!("2020-01-01T00:00:00Z")).await,
        204
    );
    problem(s.get("/entities/urn:ngsi-ld:Building:x3", None).await, 404).await;
    problem(
        s.send(
            Method::PATCH,
            "/entities/urn:ngsi-ld:Building:x2",
            &json!({"expiresAt": "tomorrow"}),
            None,
        )
        .await,
        400,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    problem(s.get("/entities/urn:ngsi-ld:Building:x1", None).await, 404).await;
    assert_eq!(
        s.get("/entities/urn:ngsi-ld:Building:x2", None)
            .await
            .status(),
        200,
        "NGSI-LD Null made it durable again"
    );
    let r = s
        .send(
            Method::POST,
            "/entityOperations/merge",
            &json!([{"id": "urn:ngsi-ld:Building:x2", "type": "Building",
                "expiresAt": "2020-01-01T00:00:00Z"}]),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    problem(s.get("/entities/urn:ngsi-ld:Building:x2", None).await, 404).await;
}

/// A merge patches compound values key by key (RFC 7396, §5.5.12); a partial update replaces them and may not
/// carry NGSI-LD Nulls inside. `datasetId: @none` is the default instance; a geometry given as JSON text is
/// stored as the geometry.
#[tokio::test]
async fn merge_patches_compound_values() {
    let s = TestServer::start().await;
    let e = json!({
        "id": "urn:ngsi-ld:Building:m1", "type": "Building",
        "address": {"type": "Property", "value": {"street": "A", "city": "Berlin", "country": "Germany"}},
        "speed": [{"type": "Property", "value": 55, "datasetId": "@none"},
                  {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"}],
        "location": {"type": "GeoProperty", "value": "{\"type\": \"Point\", \"coordinates\": [17.1, 48.7]}"}
    });
    s.create(&e, None).await;
    let id = "/entities/urn:ngsi-ld:Building:m1";
    let patch = json!({"address": {"type": "Property", "value": {"street": "B", "country": "urn:ngsi-ld:null"}}});
    let r = s.send(Method::PATCH, id, &patch, None).await;
    assert_eq!(r.status(), 204);
    let got = s.get_json(id, None).await;
    let addr = &got["address"]["value"];
    assert_eq!(addr, &json!({"street": "B", "city": "Berlin"}));
    let speed = got["speed"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        speed
            .iter()
            .filter(|i| i.get("datasetId").is_none())
            .count(),
        1
    );
    assert_eq!(got["location"]["value"]["type"], "Point");
    // A partial attribute update with a Null inside the value is refused and changes nothing.
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs/address"),
            &json!({"value": {"city": "urn:ngsi-ld:null"}}),
            None,
        )
        .await;
    problem(r, 400).await;
    let got = s.get_json(id, None).await;
    assert_eq!(got["address"]["value"]["city"], "Berlin");
}

/// `?type=` on single-entity URLs gates the operation: another type answers 404 and changes nothing.
#[tokio::test]
async fn type_selector_gates_single_entity_operations() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    problem(
        s.get(&format!("{id}?type=Building"), Some(ENV_CONTEXT))
            .await,
        404,
    )
    .await;
    assert_eq!(
        s.get(&format!("{id}?type=AirQualityObserved"), Some(ENV_CONTEXT))
            .await
            .status(),
        200
    );
    let patch = json!({"pm25": {"type": "Property", "value": 99}});
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs?type=Building"),
            &patch,
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 404).await;
    let r = s
        .req(Method::DELETE, &format!("{id}?type=Building"))
        .header("Link", common::link(ENV_CONTEXT))
        .send()
        .await
        .unwrap();
    problem(r, 404).await;
    assert_eq!(
        s.get_json(id, Some(ENV_CONTEXT)).await["pm25"]["value"],
        5.0
    );
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs?type=AirQualityObserved"),
            &patch,
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
}

/// Scope through the attribute operations: appended (merged with noOverwrite), updated only where present,
/// deletable, never partially updated or replaced as an attribute.
#[tokio::test]
async fn scope_through_attribute_operations() {
    let s = TestServer::start().await;
    let mut e = station(1, 30.5, 50.4, 5.0);
    e["scope"] = json!("/Kyiv/Podil");
    s.create(&e, Some(ENV_CONTEXT)).await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    let r = s
        .send(
            Method::POST,
            &format!("{id}/attrs?options=noOverwrite"),
            &json!({"scope": "/Kyiv/Obolon"}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.get_json(id, Some(ENV_CONTEXT)).await["scope"],
        json!(["/Kyiv/Podil", "/Kyiv/Obolon"])
    );
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs"),
            &json!({"scope": "/Lviv"}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.get_json(id, Some(ENV_CONTEXT)).await["scope"], "/Lviv");
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs/scope"),
            &json!({"value": "/x"}),
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 400).await;
    // A partial update keeps the attribute's kind.
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs/name"),
            &json!({"type": "Relationship", "object": "urn:ngsi-ld:X:1"}),
            Some(ENV_CONTEXT),
        )
        .await;
    problem(r, 400).await;
    let r = s
        .req(Method::DELETE, &format!("{id}/attrs/scope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(s
        .get_json(id, Some(ENV_CONTEXT))
        .await
        .get("scope")
        .is_none());
    // Without a scope, an update of scope is reported as not done.
    let r = s
        .send(
            Method::PATCH,
            &format!("{id}/attrs"),
            &json!({"scope": "/Lviv"}),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(r.status(), 207);
}

/// Batch items are judged one by one: an entity whose @context does not fit the Content-Type fails alone;
/// a batch delete takes plain ids under either content type.
#[tokio::test]
async fn batch_items_fail_alone() {
    let s = TestServer::start().await;
    let body = json!([
        {"id": "urn:ngsi-ld:T:ok", "type": "T", "@context": CORE_CONTEXT},
        {"id": "urn:ngsi-ld:T:bare", "type": "T"}
    ]);
    let r = s
        .req(Method::POST, "/entityOperations/create")
        .header("Content-Type", "application/ld+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 207);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["success"], json!(["urn:ngsi-ld:T:ok"]));
    assert_eq!(v["errors"][0]["entityId"], "urn:ngsi-ld:T:bare");
    let r = s
        .req(Method::POST, "/entityOperations/delete")
        .header("Content-Type", "application/ld+json")
        .body(json!(["urn:ngsi-ld:T:ok"]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// `/info/sourceIdentity`: a URN id, an alias per tenant, the uptime as an ISO 8601 duration.
#[tokio::test]
async fn source_identity_names_the_broker_per_tenant() {
    let s = TestServer::start().await;
    let get = |tenant: Option<&'static str>| {
        let mut r = s.req(Method::GET, "/info/sourceIdentity");
        if let Some(t) = tenant {
            r = r.header("NGSILD-Tenant", t);
        }
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let d = get(None).await;
    assert_eq!(d["type"], "ContextSourceIdentity");
    assert!(d["id"].as_str().unwrap().starts_with("urn:"));
    let up = d["contextSourceUptime"].as_str().unwrap();
    assert!(up.starts_with("PT") && up.ends_with('S'), "{up}");
    assert!(d["contextSourceTimeAt"].as_str().unwrap().ends_with('Z'));
    let a = get(Some("a")).await;
    let b = get(Some("b")).await;
    assert_ne!(a["contextSourceAlias"], d["contextSourceAlias"]);
    assert_ne!(a["contextSourceAlias"], b["contextSourceAlias"]);
    assert_eq!(a["id"], d["id"]);
}

/// keyValues keeps the key of members that would read back as another kind ({"vocab": …}, {"json": …},
/// {"languageMap": …}) and gives several instances as a dataset map (§4.5.4); `type=*` selects every type.
#[tokio::test]
async fn simplified_forms_per_attribute_kind() {
    let s = TestServer::start().await;
    let e = json!({
        "id": "urn:ngsi-ld:Vehicle:kv1", "type": "Vehicle",
        "speed": [{"type": "Property", "value": 55},
                  {"type": "Property", "value": 11, "datasetId": "urn:ngsi-ld:Dataset:gps"}],
        "street": {"type": "JsonProperty", "json": {"a": 1}},
        "category": {"type": "VocabProperty", "vocab": "nonCommercial"},
        "route": {"type": "ListRelationship",
                  "objectList": ["urn:ngsi-ld:Road:1", {"object": "urn:ngsi-ld:Road:2"}]}
    });
    s.create(&e, None).await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:kv2", "type": "Building"}),
        None,
    )
    .await;
    let kv = s
        .get_json("/entities/urn:ngsi-ld:Vehicle:kv1?options=keyValues", None)
        .await;
    assert_eq!(kv["street"], json!({"json": {"a": 1}}));
    assert_eq!(kv["category"], json!({"vocab": "nonCommercial"}));
    assert_eq!(
        kv["route"],
        json!(["urn:ngsi-ld:Road:1", "urn:ngsi-ld:Road:2"])
    );
    // Normalized, every objectList entry is an {"object": URI} object (§4.5.22), whichever form came in.
    let n = s.get_json("/entities/urn:ngsi-ld:Vehicle:kv1", None).await;
    assert_eq!(
        n["route"]["objectList"],
        json!([{"object": "urn:ngsi-ld:Road:1"}, {"object": "urn:ngsi-ld:Road:2"}])
    );
    assert_eq!(
        kv["speed"],
        json!({"dataset": {"@none": 55, "urn:ngsi-ld:Dataset:gps": 11}})
    );
    let all = s.get_json("/entities?type=*", None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    problem(s.get("/entities?type=*&local=false", None).await, 400).await;
}

/// A GeoJSON Feature takes the default instance's geometry, and null where the property holds none.
#[tokio::test]
async fn feature_geometry_is_the_default_instance() {
    let s = TestServer::start().await;
    let e = json!({
        "id": "urn:ngsi-ld:Vehicle:f1", "type": "Vehicle",
        "location": [
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [9, 9]}, "datasetId": "urn:ngsi-ld:Dataset:gps"},
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}
        ],
        "speed": {"type": "Property", "value": 5}
    });
    s.create(&e, None).await;
    let get = |q: &'static str| {
        s.req(Method::GET, q)
            .header("Accept", "application/geo+json")
            .send()
    };
    let f: Value = get("/entities/urn:ngsi-ld:Vehicle:f1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f["geometry"]["coordinates"], json!([1, 2]));
    let f: Value = get("/entities/urn:ngsi-ld:Vehicle:f1?geometryProperty=speed")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(f["geometry"].is_null());
}

/// `lang` takes q-values over list order, compares tags case-insensitively and truncates a longer range onto
/// a shorter tag.
#[tokio::test]
async fn language_preference_follows_rfc_9110() {
    let s = TestServer::start().await;
    let e = json!({
        "id": "urn:ngsi-ld:Square:l1", "type": "Square",
        "name": {"type": "LanguageProperty", "languageMap": {"fr": "Grand Place", "nl": "Grote Markt"}}
    });
    s.create(&e, None).await;
    let url = |lang: &str| format!("/entities/urn:ngsi-ld:Square:l1?lang={lang}");
    let got = s.get_json(&url("fr;q=0.2,nl;q=0.9"), None).await;
    assert_eq!(got["name"]["value"], "Grote Markt");
    let got = s.get_json(&url("FR"), None).await;
    assert_eq!(got["name"]["value"], "Grand Place");
    let got = s.get_json(&url("nl-BE"), None).await;
    assert_eq!(got["name"]["lang"], "nl");
}

/// `pick` and `omit` take `,` or `|` between members (§4.21).
#[tokio::test]
async fn projections_take_comma_or_pipe() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.5, 50.4, 5.0), Some(ENV_CONTEXT))
        .await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    let comma = s
        .get_json(&format!("{id}?pick=id,pm25"), Some(ENV_CONTEXT))
        .await;
    let pipe = s
        .get_json(&format!("{id}?pick=id|pm25"), Some(ENV_CONTEXT))
        .await;
    assert_eq!(comma, pipe);
    assert_eq!(comma.as_object().map(|o| o.len()), Some(2));
    // The same in the body of a POST query.
    let r = s
        .send(
            Method::POST,
            "/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "AirQualityObserved"}], "pick": ["id", "pm25"]}),
            Some(ENV_CONTEXT),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0], comma);
    // attrs naming nothing the entity has: ResourceNotFound.
    problem(
        s.get(&format!("{id}?attrs=unknownAttribute"), Some(ENV_CONTEXT))
            .await,
        404,
    )
    .await;
    let omitted = s
        .get_json(&format!("{id}?omit=name|location"), Some(ENV_CONTEXT))
        .await;
    assert!(omitted.get("name").is_none() && omitted.get("location").is_none());
    assert!(omitted.get("pm25").is_some());
}

/// `format` wins over the representation in `options` (§6.3.7); a projection that leaves nothing of the
/// entity finds nothing (§4.21).
#[tokio::test]
async fn format_precedence_and_empty_projections() {
    let s = TestServer::start().await;
    s.create(&station(1, 30.52, 50.45, 12.5), Some(ENV_CONTEXT))
        .await;
    let id = "/entities/urn:ngsi-ld:AirQualityObserved:t1";
    let kv = s
        .get_json(
            &format!("{id}?format=keyValues&options=normalized"),
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(kv["pm25"], 12.5);
    problem(
        s.get(&format!("{id}?pick=unknown"), Some(ENV_CONTEXT))
            .await,
        404,
    )
    .await;
    problem(
        s.get(
            &format!("{id}?omit=id,type,pm25,name,location,refDevice"),
            Some(ENV_CONTEXT),
        )
        .await,
        404,
    )
    .await;
    // In a query, an entity the projection leaves nothing of is left out of the answer.
    let mut other = station(2, 30.52, 50.45, 3.0);
    other.as_object_mut().map(|o| o.remove("name"));
    s.create(&other, Some(ENV_CONTEXT)).await;
    let list = s
        .get_json(
            "/entities?type=AirQualityObserved&pick=name",
            Some(ENV_CONTEXT),
        )
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert!(list[0].get("name").is_some());
}

/// Purge with `drop` removes the named attributes, with `keep` all others; the entities stay (V1.9 §5.6.21).
#[tokio::test]
async fn purge_keep_and_drop_attributes() {
    let s = TestServer::start().await;
    for n in 1..=2 {
        s.create(&station(n, 30.5, 50.4, 10.0), Some(ENV_CONTEXT))
            .await;
    }
    let purge = |q: &'static str| {
        s.req(
            Method::DELETE,
            &format!("/entities?type=AirQualityObserved&{q}"),
        )
        .header("Link", common::link(ENV_CONTEXT))
        .send()
    };
    assert_eq!(purge("drop=name").await.unwrap().status(), 204);
    let e = s
        .get_json(
            "/entities/urn:ngsi-ld:AirQualityObserved:t2",
            Some(ENV_CONTEXT),
        )
        .await;
    assert!(e.get("name").is_none() && e["pm25"]["value"] == 10.0);
    assert_eq!(purge("keep=pm25").await.unwrap().status(), 204);
    let e = s
        .get_json(
            "/entities/urn:ngsi-ld:AirQualityObserved:t1",
            Some(ENV_CONTEXT),
        )
        .await;
    let members: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(members, ["id", "type", "pm25"]);
}

/// The ngsildproof Property (§4.5.2.2): its proof value is an object, entityIdSealed and entityTypeSealed are
/// bare strings kept as they are (the type compacted back), and they are refused on any other attribute.
#[tokio::test]
async fn ngsildproof_and_sealed_members() {
    let s = TestServer::start().await;
    let id = "urn:ngsi-ld:Vehicle:p1";
    let proof = json!({"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022",
        "proofPurpose": "assertionMethod", "proofValue": "zQeVbY4"});
    s.create(
        &json!({"id": id, "type": "Vehicle", "speed": {"type": "Property", "value": 5},
            "ngsildproof": {"type": "Property", "value": proof,
                "entityIdSealed": id, "entityTypeSealed": "Vehicle"}}),
        None,
    )
    .await;
    let e = s.get_json(&format!("/entities/{id}"), None).await;
    assert_eq!(e["ngsildproof"]["entityIdSealed"], id);
    assert_eq!(e["ngsildproof"]["entityTypeSealed"], "Vehicle");
    assert_eq!(e["ngsildproof"]["value"], proof);
    for bad in [
        json!({"id": "urn:ngsi-ld:Vehicle:p2", "type": "Vehicle",
            "speed": {"type": "Property", "value": 1, "entityIdSealed": "urn:ngsi-ld:Vehicle:p2"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:p2", "type": "Vehicle",
            "ngsildproof": {"type": "Property", "value": "not-a-proof-object"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:p2", "type": "Vehicle",
            "ngsildproof": {"type": "Property", "value": {"type": "DataIntegrityProof"}, "entityTypeSealed": 42}}),
    ] {
        problem(s.send(Method::POST, "/entities", &bad, None).await, 400).await;
    }
    problem(s.get("/entities/urn:ngsi-ld:Vehicle:p2", None).await, 404).await;
}

/// `expandValues` (§4.9 EXAMPLE 12): the q values of the named attributes are expanded with the @context, so
/// a short vocab term matches the IRI a VocabProperty holds; without it the literal is compared as it is.
#[tokio::test]
async fn expand_values_in_q() {
    let s = TestServer::start().await;
    s.create(
        &json!({"id": "urn:ngsi-ld:Building:e1", "type": "Building",
            "category": {"type": "VocabProperty", "vocab": "commercial"}}),
        None,
    )
    .await;
    let count = |q: &'static str| {
        let s = &s;
        async move {
            s.get_json(&format!("/entities?type=Building&{q}"), None)
                .await
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(count("q=category==commercial").await, 0);
    assert_eq!(
        count("q=category==commercial&expandValues=category").await,
        1
    );
    assert_eq!(count("q=category==other&expandValues=category").await, 0);
}
