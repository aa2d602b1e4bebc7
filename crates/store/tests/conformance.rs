//! One conformance suite for every `EntityStore` backend: each test is written once against the trait and
//! instantiated for SQLite (a temporary file) and PostgreSQL (a fresh schema in `MISTO_TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`). PostgreSQL tests fail, not skip, when it is unreachable.

use std::sync::Arc;

use misto_ngsild::{Entity, NgsiError};
use misto_store::notify::{DeliveryStatus, NewNotification, Settle};
use misto_store::{modify, Change, EntityQuery, EntityStore, ModifyFn, RetryFn};
use serde_json::{json, Value};

struct Backend {
    store: Arc<dyn EntityStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = misto_store::sqlite::SqliteStore::open(dir.path().join("c.db")).unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let url = std::env::var("MISTO_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = misto_store::postgres::PgStore::connect_isolated(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is needed for these tests: {e}"));
    Backend {
        store: Arc::new(store),
        _dir: None,
    }
}

fn entity(id: &str, ty: &str, attrs: Value) -> Entity {
    let mut e = json!({"id": id, "type": [ty], "createdAt": "2024-01-01T00:00:00.000Z", "modifiedAt": "2024-01-01T00:00:00.000Z"});
    if let (Some(o), Some(a)) = (e.as_object_mut(), attrs.as_object()) {
        for (k, v) in a {
            o.insert(k.clone(), v.clone());
        }
    }
    e.as_object().cloned().unwrap()
}

fn point(lon: f64, lat: f64) -> Value {
    json!([{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}])
}

fn put(e: Entity) -> ModifyFn {
    Box::new(move |_| Ok(Change::Put(e)))
}

fn create(e: Entity) -> ModifyFn {
    Box::new(move |cur| match cur {
        Some(_) => Err(NgsiError::exists("exists")),
        None => Ok(Change::Put(e)),
    })
}

async fn put_all(s: &dyn EntityStore, tenant: &str, items: Vec<Entity>) {
    let ops = items
        .into_iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), put(e)))
        .collect();
    for r in s.modify_many(tenant, ops).await.unwrap() {
        r.unwrap();
    }
}

fn ids(page: &misto_store::QueryPage) -> Vec<String> {
    page.entities
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn round_trip(s: &dyn EntityStore) {
    let e = entity(
        "urn:x:1",
        "T",
        json!({"a": [{"type": "Property", "value": {"deep": [1, 2, {"x": "ü"}]}}], "location": point(30.5, 50.4)}),
    );
    let r = modify(s, "", "urn:x:1", create(e.clone()))
        .await
        .unwrap()
        .unwrap();
    assert!(r.before.is_none());
    assert_eq!(s.get("", "urn:x:1").await.unwrap(), Some(e.clone()));
    assert_eq!(s.get("", "urn:x:none").await.unwrap(), None);
    // A failing closure leaves the entity as it was.
    let r = modify(
        s,
        "",
        "urn:x:1",
        create(entity("urn:x:1", "Other", json!({}))),
    )
    .await
    .unwrap();
    assert!(r.is_err());
    assert_eq!(s.get("", "urn:x:1").await.unwrap(), Some(e));
}

async fn batch_with_a_failure(s: &dyn EntityStore) {
    let ops: Vec<(String, ModifyFn)> = vec![
        ("urn:b:1".into(), create(entity("urn:b:1", "T", json!({})))),
        (
            "urn:b:2".into(),
            Box::new(|_| Err(NgsiError::bad_data("no"))),
        ),
        ("urn:b:3".into(), create(entity("urn:b:3", "T", json!({})))),
        ("urn:b:1".into(), create(entity("urn:b:1", "T", json!({})))),
    ];
    let out = s.modify_many("", ops).await.unwrap();
    assert!(out[0].is_ok() && out[1].is_err() && out[2].is_ok());
    assert!(
        out[3].is_err(),
        "a later operation sees the earlier one of the same batch"
    );
    assert!(s.get("", "urn:b:1").await.unwrap().is_some());
    assert!(s.get("", "urn:b:2").await.unwrap().is_none());
    assert!(s.get("", "urn:b:3").await.unwrap().is_some());
}

async fn concurrent_updates_are_not_lost(s: Arc<dyn EntityStore>) {
    modify(
        s.as_ref(),
        "",
        "urn:c:1",
        create(entity("urn:c:1", "T", json!({}))),
    )
    .await
    .unwrap()
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let f: ModifyFn = Box::new(move |cur| {
                let mut e = cur.cloned().unwrap();
                e.insert(format!("a{i}"), json!([{"type": "Property", "value": i}]));
                Ok(Change::Put(e))
            });
            modify(s.as_ref(), "", "urn:c:1", f).await.unwrap().unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = s.get("", "urn:c:1").await.unwrap().unwrap();
    for i in 0..20 {
        assert!(e.contains_key(&format!("a{i}")), "update {i} was lost");
    }
}

/// A closure for `modify_retrying` that adds attribute `a{i}`.
fn add_attr(i: usize) -> RetryFn {
    Arc::new(move |cur: Option<&Entity>| {
        let mut e = cur
            .cloned()
            .ok_or_else(|| NgsiError::not_found("no such entity"))?;
        e.insert(format!("a{i}"), json!([{"type": "Property", "value": i}]));
        Ok(Change::Put(e))
    })
}

async fn retrying_modifications(s: Arc<dyn EntityStore>) {
    // On a missing entity the closure decides: an error, or a creation.
    let r = s
        .modify_retrying("", "urn:r:1", add_attr(0), None)
        .await
        .unwrap();
    assert!(r.is_err());
    let e = entity("urn:r:1", "T", json!({"location": point(30.5, 50.4)}));
    let made: RetryFn = Arc::new(move |cur: Option<&Entity>| match cur {
        Some(_) => Err(NgsiError::exists("exists")),
        None => Ok(Change::Put(e.clone())),
    });
    let r = s
        .modify_retrying("", "urn:r:1", made.clone(), Some(view_of(3)))
        .await
        .unwrap()
        .unwrap();
    assert!(r.before.is_none() && r.after.is_some());
    assert!(s
        .modify_retrying("", "urn:r:1", made, None)
        .await
        .unwrap()
        .is_err());
    let got = s.get_found("", "urn:r:1", 3).await.unwrap().unwrap();
    assert_eq!(found_id(&got), (true, "urn:r:1".to_string()));
    // Concurrent updates through both paths: none is lost.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                s.modify_retrying("", "urn:r:1", add_attr(i), None)
                    .await
                    .unwrap()
                    .unwrap();
            } else {
                let f = add_attr(i);
                let op: ModifyFn = Box::new(move |cur| f(cur));
                modify(s.as_ref(), "", "urn:r:1", op)
                    .await
                    .unwrap()
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = s.get("", "urn:r:1").await.unwrap().unwrap();
    for i in 0..40 {
        assert!(e.contains_key(&format!("a{i}")), "update {i} was lost");
    }
    // Keep writes nothing and reports the entity as it is.
    let keep: RetryFn = Arc::new(|_: Option<&Entity>| Ok(Change::Keep));
    let r = s
        .modify_retrying("", "urn:r:1", keep, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.before, r.after);
    assert_eq!(r.after.as_ref(), Some(&e));
    // Indexes follow: types, counts, the spatial index.
    let t = s.types("").await.unwrap();
    let tt = t.iter().find(|x| x.type_iri == "T").unwrap();
    assert!(tt.attributes.contains(&("a7".into(), "Property".into(), 1)));
    let moved: RetryFn = Arc::new(|cur: Option<&Entity>| {
        let mut e = cur.cloned().unwrap_or_default();
        e.insert("location".into(), point(10.0, 10.0));
        e.insert("type".into(), json!(["U"]));
        Ok(Change::Put(e))
    });
    s.modify_retrying("", "urn:r:1", moved, None)
        .await
        .unwrap()
        .unwrap();
    let near = |x: f64, y: f64| EntityQuery {
        bbox: Some((
            "location".into(),
            geo::Rect::new((x - 0.1, y - 0.1), (x + 0.1, y + 0.1)),
        )),
        types: Some(vec!["U".into()]),
        limit: 10,
        ..Default::default()
    };
    assert!(s
        .query("", &near(30.5, 50.4))
        .await
        .unwrap()
        .entities
        .is_empty());
    assert_eq!(
        s.query("", &near(10.0, 10.0)).await.unwrap().entities.len(),
        1
    );
    let gone: RetryFn = Arc::new(|_: Option<&Entity>| Ok(Change::Delete));
    let r = s
        .modify_retrying("", "urn:r:1", gone, None)
        .await
        .unwrap()
        .unwrap();
    assert!(r.before.is_some() && r.after.is_none());
    assert!(s.get("", "urn:r:1").await.unwrap().is_none());
    assert!(s
        .query("", &near(10.0, 10.0))
        .await
        .unwrap()
        .entities
        .is_empty());
    assert!(s.types("").await.unwrap().is_empty());
}

/// A closure that creates the entity with counter 1 or adds one to its counter.
fn bump() -> RetryFn {
    Arc::new(|cur: Option<&Entity>| {
        let n = cur
            .and_then(|e| e.get("n"))
            .and_then(|l| l[0]["value"].as_i64())
            .unwrap_or(0);
        let mut e = cur
            .cloned()
            .unwrap_or_else(|| entity("urn:b:x", "T", json!({})));
        e.insert("n".into(), json!([{"type": "Property", "value": n + 1}]));
        Ok(Change::Put(e))
    })
}

async fn retrying_batches(s: Arc<dyn EntityStore>) {
    // One entity twice in a batch: the second operation sees the first one's result.
    let out = s
        .modify_many_retrying(
            "",
            vec![("urn:b:x".into(), bump()), ("urn:b:x".into(), bump())],
            None,
        )
        .await
        .unwrap();
    assert!(out[0].as_ref().unwrap().before.is_none());
    assert_eq!(
        out[1].as_ref().unwrap().before.as_ref().unwrap()["n"][0]["value"],
        1
    );
    let missing: RetryFn = Arc::new(|cur: Option<&Entity>| {
        cur.cloned()
            .map(Change::Put)
            .ok_or_else(|| NgsiError::not_found("none"))
    });
    let out = s
        .modify_many_retrying(
            "",
            vec![("urn:b:none".into(), missing), ("urn:b:x".into(), bump())],
            None,
        )
        .await
        .unwrap();
    assert!(out[0].is_err(), "a closure error is that item's outcome");
    assert!(out[1].is_ok(), "and does not stop the others");
    // Batches racing with single updates of the same entity lose nothing.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let ops = (0..3).map(|_| ("urn:b:x".to_string(), bump())).collect();
                for r in s.modify_many_retrying("", ops, None).await.unwrap() {
                    r.unwrap();
                }
            } else {
                s.modify_retrying("", "urn:b:x", bump(), None)
                    .await
                    .unwrap()
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = s.get("", "urn:b:x").await.unwrap().unwrap();
    assert_eq!(
        e["n"][0]["value"],
        3 + 10 * 3 + 10,
        "every increment is there"
    );
    // A new entity twice in one batch, the second without an attribute of the first: the attribute is not
    // counted (both were prepared as creations; the second is applied again on the first's result).
    let with_old = entity(
        "urn:b:y",
        "T",
        json!({"old": [{"type": "Property", "value": 1}]}),
    );
    let without = entity(
        "urn:b:y",
        "T",
        json!({"new": [{"type": "Property", "value": 2}]}),
    );
    let first: RetryFn = Arc::new(move |_: Option<&Entity>| Ok(Change::Put(with_old.clone())));
    let second: RetryFn = Arc::new(move |_: Option<&Entity>| Ok(Change::Put(without.clone())));
    let ops = vec![
        ("urn:b:y".to_string(), first),
        ("urn:b:y".to_string(), second),
    ];
    for r in s.modify_many_retrying("", ops, None).await.unwrap() {
        r.unwrap();
    }
    let t = s.types("").await.unwrap();
    let tt = t.iter().find(|x| x.type_iri == "T").unwrap();
    assert_eq!(tt.count, 2);
    let attrs: Vec<&str> = tt.attributes.iter().map(|(a, _, _)| a.as_str()).collect();
    assert!(!attrs.contains(&"old"), "attributes counted: {attrs:?}");
    assert!(attrs.contains(&"new"), "attributes counted: {attrs:?}");
}

async fn delete_and_counts(s: &dyn EntityStore) {
    put_all(s, "", vec![
        entity("urn:d:1", "T", json!({"a": [{"type": "Property", "value": 1}], "r": [{"type": "Relationship", "object": "urn:x"}]})),
        entity("urn:d:2", "T", json!({"a": [{"type": "Property", "value": 1}]})),
        entity("urn:d:3", "U", json!({})),
    ]).await;
    let t = s.types("").await.unwrap();
    let tt = t.iter().find(|x| x.type_iri == "T").unwrap();
    assert_eq!(tt.count, 2);
    assert!(tt.attributes.contains(&("a".into(), "Property".into(), 2)));
    assert!(tt
        .attributes
        .contains(&("r".into(), "Relationship".into(), 1)));
    let r = modify(s, "", "urn:d:1", Box::new(|_| Ok(Change::Delete)))
        .await
        .unwrap()
        .unwrap();
    assert!(r.before.is_some() && r.after.is_none());
    assert!(s.get("", "urn:d:1").await.unwrap().is_none());
    let t = s.types("").await.unwrap();
    let tt = t.iter().find(|x| x.type_iri == "T").unwrap();
    assert_eq!(tt.count, 1);
    assert!(
        !tt.attributes.iter().any(|(a, _, _)| a == "r"),
        "counts drop to zero and vanish"
    );
    // Removing an attribute updates the counts too.
    let f: ModifyFn = Box::new(|cur| {
        let mut e = cur.cloned().unwrap();
        e.remove("a");
        Ok(Change::Put(e))
    });
    modify(s, "", "urn:d:2", f).await.unwrap().unwrap();
    let t = s.types("").await.unwrap();
    assert!(t
        .iter()
        .find(|x| x.type_iri == "T")
        .unwrap()
        .attributes
        .is_empty());
    assert_eq!(s.tenants().await.unwrap(), vec![(String::new(), 2)]);
}

async fn tenants_are_isolated(s: &dyn EntityStore) {
    put_all(
        s,
        "kyiv",
        vec![entity(
            "urn:t:1",
            "T",
            json!({"location": point(30.5, 50.4)}),
        )],
    )
    .await;
    put_all(
        s,
        "lviv",
        vec![entity(
            "urn:t:1",
            "T",
            json!({"who": [{"type": "Property", "value": "lviv"}]}),
        )],
    )
    .await;
    assert!(s
        .get("kyiv", "urn:t:1")
        .await
        .unwrap()
        .unwrap()
        .contains_key("location"));
    assert!(s
        .get("lviv", "urn:t:1")
        .await
        .unwrap()
        .unwrap()
        .contains_key("who"));
    assert!(s.get("", "urn:t:1").await.unwrap().is_none());
    let q = EntityQuery {
        types: Some(vec!["T".into()]),
        limit: 10,
        count: true,
        ..Default::default()
    };
    assert_eq!(s.query("odesa", &q).await.unwrap().total, Some(0));
    let geo = EntityQuery {
        bbox: Some((
            "location".into(),
            geo::Rect::new((30.0, 50.0), (31.0, 51.0)),
        )),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(s.query("lviv", &geo).await.unwrap().entities.len(), 0);
    assert_eq!(s.query("kyiv", &geo).await.unwrap().entities.len(), 1);
    let purged = s
        .purge(
            "kyiv",
            &EntityQuery {
                types: Some(vec!["T".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(purged, vec!["urn:t:1".to_string()]);
    assert!(
        s.get("lviv", "urn:t:1").await.unwrap().is_some(),
        "purge stays in its tenant"
    );
    assert!(s.types("kyiv").await.unwrap().is_empty());
    assert_eq!(s.types("lviv").await.unwrap().len(), 1);
    let tenants = s.tenants().await.unwrap();
    assert_eq!(tenants, vec![("lviv".to_string(), 1)]);
}

async fn queries(s: &dyn EntityStore) {
    let mut items = Vec::new();
    for i in 0..250 {
        let ty = if i % 5 == 0 { "B" } else { "A" };
        let mut e = entity(
            &format!("urn:q:{i:03}"),
            ty,
            json!({"n": [{"type": "Property", "value": i}], "location": point(30.0 + i as f64 * 0.001, 50.0)}),
        );
        if i == 7 {
            e.insert("type".into(), json!(["A", "B"]));
        }
        items.push(e);
    }
    put_all(s, "", items).await;
    let by_ids = EntityQuery {
        ids: Some(vec![
            "urn:q:001".into(),
            "urn:q:002".into(),
            "urn:q:none".into(),
        ]),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(&s.query("", &by_ids).await.unwrap()),
        vec!["urn:q:001", "urn:q:002"]
    );
    let b = EntityQuery {
        types: Some(vec!["B".into()]),
        limit: 100,
        count: true,
        ..Default::default()
    };
    let page = s.query("", &b).await.unwrap();
    assert_eq!(page.total, Some(51), "50 of type B and one with two types");
    assert!(ids(&page).contains(&"urn:q:007".to_string()));
    // Any of several types: an entity of two of them is found once, with and without a filter.
    let any: misto_store::EntityFilter = Arc::new(|_: &Entity| true);
    for filter in [None, Some(any)] {
        let ab = EntityQuery {
            types: Some(vec!["A".into(), "B".into()]),
            filter,
            limit: 1000,
            count: true,
            ..Default::default()
        };
        let page = s.query("", &ab).await.unwrap();
        assert_eq!(page.total, Some(250));
        let found = ids(&page);
        assert_eq!(found.len(), 250, "each entity once");
        assert_eq!(found.iter().filter(|i| *i == "urn:q:007").count(), 1);
    }
    // Filter + paging in insertion order.
    let even: misto_store::EntityFilter =
        Arc::new(|e: &Entity| e["n"][0]["value"].as_i64().unwrap() % 2 == 0);
    let q = EntityQuery {
        filter: Some(even.clone()),
        offset: 10,
        limit: 20,
        count: true,
        ..Default::default()
    };
    let page = s.query("", &q).await.unwrap();
    assert_eq!(page.total, Some(125));
    let expect: Vec<String> = (10..30).map(|k| format!("urn:q:{:03}", k * 2)).collect();
    assert_eq!(ids(&page), expect);
    let only_count = EntityQuery {
        filter: Some(even),
        limit: 0,
        count: true,
        ..Default::default()
    };
    let page = s.query("", &only_count).await.unwrap();
    assert!(page.entities.is_empty() && page.total == Some(125));
    let plain = EntityQuery {
        offset: 240,
        limit: 100,
        count: true,
        ..Default::default()
    };
    let page = s.query("", &plain).await.unwrap();
    assert_eq!((page.entities.len(), page.total), (10, Some(250)));
    // Spatial candidates: longitudes 30.000..30.249; a box over 30.0995..30.1205 holds i = 100..=120.
    let boxed = EntityQuery {
        bbox: Some((
            "location".into(),
            geo::Rect::new((30.0995, 49.9), (30.1205, 50.1)),
        )),
        limit: 100,
        count: true,
        ..Default::default()
    };
    let page = s.query("", &boxed).await.unwrap();
    let mut got = ids(&page);
    got.sort();
    let expect: Vec<String> = (100..=120).map(|i| format!("urn:q:{i:03}")).collect();
    assert_eq!(got, expect);
    // A box test that refuses boxes its filter would refuse changes nothing in the answer.
    let west: misto_store::EntityFilter = Arc::new(|e: &Entity| {
        e["location"][0]["value"]["coordinates"][0]
            .as_f64()
            .is_some_and(|x| x <= 30.1105)
    });
    let tested = EntityQuery {
        filter: Some(west.clone()),
        bbox_test: Some(Arc::new(|b: &geo::Rect<f64>| b.min().x <= 30.1105)),
        offset: 2,
        limit: 5,
        count: true,
        ..boxed.clone()
    };
    let untested = EntityQuery {
        bbox_test: None,
        ..tested.clone()
    };
    let (a, b) = (
        s.query("", &tested).await.unwrap(),
        s.query("", &untested).await.unwrap(),
    );
    assert_eq!(a.total, Some(11), "i = 100..=110");
    assert_eq!((ids(&a), a.total), (ids(&b), b.total));
    // A filter on values only may be judged from reduced entities; the page still holds whole ones.
    let high: misto_store::EntityFilter = Arc::new(|e: &Entity| {
        e["n"][0]["value"].as_i64().is_some_and(|n| n >= 200) && e["n"][0].get("unitCode").is_none()
    });
    let on_values = EntityQuery {
        types: Some(vec!["A".into()]),
        filter: Some(high),
        filter_reads: Some(vec!["n".into()]),
        filter_values_only: true,
        offset: 3,
        limit: 7,
        count: true,
        ..Default::default()
    };
    let on_docs = EntityQuery {
        filter_values_only: false,
        ..on_values.clone()
    };
    let (a, b) = (
        s.query("", &on_values).await.unwrap(),
        s.query("", &on_docs).await.unwrap(),
    );
    assert_eq!(a.total, Some(40));
    assert_eq!((ids(&a), a.total), (ids(&b), b.total));
    assert!(a
        .entities
        .iter()
        .all(|e| e.contains_key("location") && e.contains_key("createdAt")));
    let other_attr = EntityQuery {
        bbox: Some((
            "elsewhere".into(),
            geo::Rect::new((29.0, 49.0), (31.0, 51.0)),
        )),
        limit: 10,
        ..Default::default()
    };
    assert!(s.query("", &other_attr).await.unwrap().entities.is_empty());
    let moved: ModifyFn = Box::new(|cur| {
        let mut e = cur.cloned().unwrap();
        e.insert("location".into(), point(10.0, 10.0));
        Ok(Change::Put(e))
    });
    modify(s, "", "urn:q:110", moved).await.unwrap().unwrap();
    assert_eq!(
        s.query("", &boxed).await.unwrap().total,
        Some(20),
        "the index follows a moved entity"
    );
}

async fn expiry(s: &dyn EntityStore) {
    let mut past = entity("urn:e:1", "T", json!({}));
    past.insert("expiresAt".into(), json!("2020-01-01T00:00:00.000Z"));
    let mut future = entity("urn:e:2", "T", json!({}));
    future.insert("expiresAt".into(), json!("2999-01-01T00:00:00.000Z"));
    put_all(
        s,
        "x",
        vec![past, future, entity("urn:e:3", "T", json!({}))],
    )
    .await;
    let gone = s.expire("2026-01-01T00:00:00.000Z").await.unwrap();
    assert_eq!(gone, vec![("x".to_string(), "urn:e:1".to_string())]);
    assert!(s.get("x", "urn:e:1").await.unwrap().is_none());
    assert!(s.get("x", "urn:e:2").await.unwrap().is_some());
    assert_eq!(s.types("x").await.unwrap()[0].count, 2);
}

async fn ten_thousand_in_one_call(s: &dyn EntityStore) {
    let items: Vec<Entity> = (0..10_000)
        .map(|i| {
            entity(
                &format!("urn:big:{i}"),
                "Big",
                json!({"v": [{"type": "Property", "value": i}]}),
            )
        })
        .collect();
    put_all(s, "", items).await;
    let q = EntityQuery {
        types: Some(vec!["Big".into()]),
        limit: 1,
        count: true,
        ..Default::default()
    };
    assert_eq!(s.query("", &q).await.unwrap().total, Some(10_000));
    assert!(s.ping().await.is_ok());
}

/// A view that records which entity it was made for.
fn view_of(ctx: u64) -> misto_store::ViewFn {
    Arc::new(move |e: &Entity| {
        Some(misto_store::View {
            ctx,
            json: format!("{{\"id\":{}}}", e["id"]).into_bytes(),
        })
    })
}

fn found_id(f: &misto_store::Found) -> (bool, String) {
    match f {
        misto_store::Found::Rendered(j) => {
            let v: Value = serde_json::from_slice(j).unwrap();
            (true, v["id"].as_str().unwrap().to_string())
        }
        misto_store::Found::Entity(e) => (false, e["id"].as_str().unwrap().to_string()),
    }
}

async fn views(s: &dyn EntityStore) {
    let ops = vec![
        (
            "urn:v:1".to_string(),
            put(entity("urn:v:1", "V", json!({}))),
        ),
        (
            "urn:v:2".to_string(),
            put(entity("urn:v:2", "V", json!({}))),
        ),
    ];
    for r in s
        .modify_many_viewed("", ops, Some(view_of(7)))
        .await
        .unwrap()
    {
        r.unwrap();
    }
    // The stored rendering answers a read with the same context fingerprint, the entity any other.
    let got = s.get_found("", "urn:v:1", 7).await.unwrap().unwrap();
    assert_eq!(found_id(&got), (true, "urn:v:1".to_string()));
    let got = s.get_found("", "urn:v:1", 8).await.unwrap().unwrap();
    assert_eq!(found_id(&got), (false, "urn:v:1".to_string()));
    assert!(s.get_found("", "urn:v:none", 7).await.unwrap().is_none());
    assert!(s.get_found("other", "urn:v:1", 7).await.unwrap().is_none());
    // A write without a view drops the stale one.
    modify(
        s,
        "",
        "urn:v:2",
        put(entity(
            "urn:v:2",
            "V",
            json!({"a": [{"type": "Property", "value": 1}]}),
        )),
    )
    .await
    .unwrap()
    .unwrap();
    let got = s.get_found("", "urn:v:2", 7).await.unwrap().unwrap();
    assert_eq!(found_id(&got), (false, "urn:v:2".to_string()));
    let q = EntityQuery {
        types: Some(vec!["V".into()]),
        limit: 10,
        view_ctx: Some(7),
        ..Default::default()
    };
    let page = s.query("", &q).await.unwrap();
    assert!(page.entities.is_empty());
    let mut got: Vec<_> = page.found.iter().map(found_id).map(|(_, id)| id).collect();
    got.sort();
    assert_eq!(got, vec!["urn:v:1", "urn:v:2"]);
    // Without view_ctx a query answers entities as before.
    let page = s
        .query(
            "",
            &EntityQuery {
                view_ctx: None,
                ..q
            },
        )
        .await
        .unwrap();
    assert_eq!(page.entities.len(), 2);
    assert!(page.found.is_empty());
}

/// Subscriptions: create refuses an existing id, replace keeps counters, listing per tenant and overall.
async fn subscriptions(s: &dyn EntityStore) {
    assert!(s
        .put_subscription("t1", "urn:s:1", &json!({"a": 1}), true)
        .await
        .unwrap());
    assert!(!s
        .put_subscription("t1", "urn:s:1", &json!({"a": 2}), true)
        .await
        .unwrap());
    assert!(s
        .put_subscription("t2", "urn:s:1", &json!({"b": 1}), true)
        .await
        .unwrap());
    assert!(s
        .put_subscription("t1", "urn:s:2", &json!({"c": 1}), true)
        .await
        .unwrap());
    let got = s.get_subscription("t1", "urn:s:1").await.unwrap().unwrap();
    assert_eq!(got.doc, json!({"a": 1}));
    assert_eq!(got.status, DeliveryStatus::default());
    assert!(s
        .put_subscription("t1", "urn:s:1", &json!({"a": 3}), false)
        .await
        .unwrap());
    assert_eq!(
        s.get_subscription("t1", "urn:s:1")
            .await
            .unwrap()
            .unwrap()
            .doc,
        json!({"a": 3})
    );
    let t1: Vec<String> = s
        .list_subscriptions(Some("t1"))
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(t1, vec!["urn:s:1", "urn:s:2"]);
    assert_eq!(s.list_subscriptions(None).await.unwrap().len(), 3);
    assert!(s.delete_subscription("t1", "urn:s:2").await.unwrap());
    assert!(!s.delete_subscription("t1", "urn:s:2").await.unwrap());
    assert!(s.get_subscription("t1", "urn:s:2").await.unwrap().is_none());
    assert!(s.get_subscription("t2", "urn:s:1").await.unwrap().is_some());
}

fn key(t: &str, s: &str) -> (String, String) {
    (t.to_string(), s.to_string())
}

/// What several nodes sharing a store coordinate through: the subscriptions version, delivery leases (one
/// holder at a time, taken over once expired) and timers (one claim per slot, reset by a subscription change).
async fn cluster_coordination(s: &dyn EntityStore) {
    let v0 = s.subscriptions_version().await.unwrap();
    assert!(s
        .put_subscription("t", "urn:s:1", &json!({"a": 1}), true)
        .await
        .unwrap());
    let v1 = s.subscriptions_version().await.unwrap();
    assert_ne!(v0, v1, "a creation changes the version");
    assert!(!s
        .put_subscription("t", "urn:s:1", &json!({"a": 1}), true)
        .await
        .unwrap());
    assert_eq!(
        s.subscriptions_version().await.unwrap(),
        v1,
        "a refused creation does not"
    );
    s.put_subscription("t", "urn:s:1", &json!({"a": 2}), false)
        .await
        .unwrap();
    let v2 = s.subscriptions_version().await.unwrap();
    assert_ne!(v1, v2, "a replacement changes the version");
    s.put_subscription("t", "urn:s:2", &json!({"b": 1}), true)
        .await
        .unwrap();

    // Leases: A takes two; B gets only the free one; A may take its own again.
    let (s1, s2, s3) = (
        key("t", "urn:s:1"),
        key("t", "urn:s:2"),
        key("t", "urn:s:3"),
    );
    let mut got = s
        .lease_claim("A", &[s1.clone(), s2.clone(), s1.clone()], 1_000, 2_000)
        .await
        .unwrap();
    got.sort();
    assert_eq!(got, vec![s1.clone(), s2.clone()]);
    let got = s
        .lease_claim("B", &[s1.clone(), s3.clone()], 1_500, 2_500)
        .await
        .unwrap();
    assert_eq!(got, vec![s3.clone()]);
    assert_eq!(
        s.lease_claim("A", std::slice::from_ref(&s1), 1_600, 2_600)
            .await
            .unwrap(),
        vec![s1.clone()]
    );
    assert!(s.lease_renew("A", "t", "urn:s:1", 3_000).await.unwrap());
    // Expired: B takes A's lease over; A's renewal then fails.
    assert_eq!(
        s.lease_claim("B", std::slice::from_ref(&s1), 3_000, 4_000)
            .await
            .unwrap(),
        vec![s1.clone()]
    );
    assert!(!s.lease_renew("A", "t", "urn:s:1", 5_000).await.unwrap());
    assert!(s.lease_renew("B", "t", "urn:s:1", 5_000).await.unwrap());
    // Releasing someone else's lease does nothing; releasing one's own frees it.
    s.lease_release("A", "t", "urn:s:1").await.unwrap();
    assert!(s
        .lease_claim("A", std::slice::from_ref(&s1), 3_100, 6_000)
        .await
        .unwrap()
        .is_empty());
    s.lease_release("B", "t", "urn:s:1").await.unwrap();
    assert_eq!(
        s.lease_claim("A", std::slice::from_ref(&s1), 3_100, 6_000)
            .await
            .unwrap(),
        vec![s1.clone()]
    );
    // Deleting a subscription drops its lease.
    s.delete_subscription("t", "urn:s:2").await.unwrap();
    assert!(s.subscriptions_version().await.unwrap() != v2);
    assert_eq!(
        s.lease_claim("B", std::slice::from_ref(&s2), 1_000, 2_000)
            .await
            .unwrap(),
        vec![s2.clone()]
    );

    // Timers: the first claim wins and moves the timer on; claims before it is due lose.
    let c = s.timer_claim("t", "urn:s:1", 10_000, 500).await.unwrap();
    assert_eq!((c.claimed, c.next_ms), (true, 10_500));
    let c = s.timer_claim("t", "urn:s:1", 10_200, 500).await.unwrap();
    assert_eq!((c.claimed, c.next_ms), (false, 10_500));
    let c = s.timer_claim("t", "urn:s:1", 10_500, 500).await.unwrap();
    assert_eq!((c.claimed, c.next_ms), (true, 11_000));
    // Another subscription has its own timer; replacing a subscription resets it.
    assert!(
        s.timer_claim("t", "urn:s:9", 10_600, 500)
            .await
            .unwrap()
            .claimed
    );
    s.put_subscription("t", "urn:s:1", &json!({"a": 3}), false)
        .await
        .unwrap();
    assert!(
        s.timer_claim("t", "urn:s:1", 10_600, 500)
            .await
            .unwrap()
            .claimed
    );
}

/// Changes are journaled in their own transaction only for tenants with subscriptions; committing a
/// journal prefix moves notifications to the outbox, whose heads come one per subscription, in order.
async fn journal_and_outbox(s: &dyn EntityStore) {
    put_all(s, "quiet", vec![entity("urn:e:q", "T", json!({}))]).await;
    assert!(s.journal_read(100).await.unwrap().is_empty());
    s.put_subscription("t", "urn:s:a", &json!({}), true)
        .await
        .unwrap();
    s.put_subscription("t", "urn:s:b", &json!({}), true)
        .await
        .unwrap();
    put_all(
        s,
        "t",
        vec![entity(
            "urn:e:1",
            "T",
            json!({"p": [{"type": "Property", "value": 1}]}),
        )],
    )
    .await;
    put_all(
        s,
        "t",
        vec![entity(
            "urn:e:1",
            "T",
            json!({"p": [{"type": "Property", "value": 2}]}),
        )],
    )
    .await;
    // An operation that changes nothing is not journaled.
    let keep: ModifyFn = Box::new(|_| Ok(Change::Keep));
    modify(s, "t", "urn:e:1", keep).await.unwrap().unwrap();
    modify(s, "t", "urn:e:1", Box::new(|_| Ok(Change::Delete)))
        .await
        .unwrap()
        .unwrap();
    let j = s.journal_read(100).await.unwrap();
    assert_eq!(j.len(), 3);
    assert!(j.iter().all(|e| e.tenant == "t" && e.id == "urn:e:1"));
    assert!(j[0].before.is_none());
    assert_eq!(j[0].after.as_ref().unwrap()["p"][0]["value"], json!(1));
    assert_eq!(j[1].before.as_ref().unwrap()["p"][0]["value"], json!(1));
    assert_eq!(j[1].after.as_ref().unwrap()["p"][0]["value"], json!(2));
    assert!(j[2].after.is_none());
    assert!(j[0].seq < j[1].seq && j[1].seq < j[2].seq);

    let note = |sub: &str, n: i64| NewNotification {
        tenant: "t".into(),
        subscription_id: sub.into(),
        payload: json!({"n": n}),
        due_ms: 0,
    };
    // Exactly the entries consumed go, not a range: the one not consumed stays even if it lies between.
    s.journal_commit(
        vec![j[0].seq, j[2].seq],
        vec![note("urn:s:a", 1), note("urn:s:a", 2), note("urn:s:b", 3)],
    )
    .await
    .unwrap();
    let left = s.journal_read(100).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, j[1].seq);
    assert_eq!(s.outbox_depth().await.unwrap(), 3);
    // Entries consumed already (by another node) store nothing a second time.
    s.journal_commit(vec![j[0].seq, j[2].seq], vec![note("urn:s:a", 9)])
        .await
        .unwrap();
    assert_eq!(s.outbox_depth().await.unwrap(), 3);

    let heads = s.outbox_heads(i64::MAX, 10).await.unwrap();
    let mut got: Vec<(String, Value)> = heads
        .iter()
        .map(|h| (h.subscription_id.clone(), h.payload.clone()))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("urn:s:a".to_string(), json!({"n": 1})),
            ("urn:s:b".to_string(), json!({"n": 3}))
        ]
    );
    let a1 = heads
        .iter()
        .find(|h| h.subscription_id == "urn:s:a")
        .unwrap()
        .id;
    // A retried head holds back what is behind it until it is due again.
    s.outbox_settle(
        a1,
        Settle::Retry {
            at: "2024-01-01T00:00:01Z".into(),
            due_ms: 5_000,
        },
    )
    .await
    .unwrap();
    let heads = s.outbox_heads(4_000, 10).await.unwrap();
    assert!(
        heads.iter().all(|h| h.subscription_id == "urn:s:b"),
        "{heads:?}"
    );
    // The next of a subscription is its oldest notification, due or not; none in another tenant.
    let next = s.outbox_next("t", "urn:s:a").await.unwrap().unwrap();
    assert_eq!((next.id, next.due_ms, next.attempts), (a1, 5_000, 1));
    assert!(s.outbox_next("other", "urn:s:a").await.unwrap().is_none());
    let heads = s.outbox_heads(5_000, 10).await.unwrap();
    let a = heads
        .iter()
        .find(|h| h.subscription_id == "urn:s:a")
        .unwrap();
    assert_eq!((a.id, a.attempts), (a1, 1));
    s.outbox_settle(
        a1,
        Settle::Delivered {
            at: "2024-01-01T00:00:02Z".into(),
        },
    )
    .await
    .unwrap();
    let heads = s.outbox_heads(i64::MAX, 10).await.unwrap();
    let a2 = heads
        .iter()
        .find(|h| h.subscription_id == "urn:s:a")
        .unwrap();
    assert_eq!(a2.payload, json!({"n": 2}));
    assert_eq!(
        s.outbox_next("t", "urn:s:a").await.unwrap().map(|n| n.id),
        Some(a2.id),
        "after a delivery the next is the one behind it"
    );
    s.outbox_settle(
        a2.id,
        Settle::Failed {
            at: "2024-01-01T00:00:03Z".into(),
        },
    )
    .await
    .unwrap();
    let st = s
        .get_subscription("t", "urn:s:a")
        .await
        .unwrap()
        .unwrap()
        .status;
    assert_eq!((st.times_sent, st.times_failed), (1, 2));
    assert_eq!(st.last_success.as_deref(), Some("2024-01-01T00:00:02Z"));
    assert_eq!(st.last_failure.as_deref(), Some("2024-01-01T00:00:03Z"));
    assert_eq!(
        st.last_notification.as_deref(),
        Some("2024-01-01T00:00:03Z")
    );
    assert_eq!(s.outbox_depth().await.unwrap(), 1);
    // Deleting a subscription drops its pending notifications; without subscriptions nothing is journaled.
    s.delete_subscription("t", "urn:s:b").await.unwrap();
    s.delete_subscription("t", "urn:s:a").await.unwrap();
    assert_eq!(s.outbox_depth().await.unwrap(), 0);
    let rest: Vec<i64> = s
        .journal_read(100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    s.journal_commit(rest, vec![]).await.unwrap();
    put_all(s, "t", vec![entity("urn:e:2", "T", json!({}))]).await;
    assert!(s.journal_read(100).await.unwrap().is_empty());
}

fn temperature(id: &str, v: f64, observed: &str) -> Entity {
    entity(
        id,
        "urn:T",
        json!({"urn:temp": [{"type": "Property", "value": v, "observedAt": observed,
            "createdAt": "2024-01-01T00:00:00.000Z", "modifiedAt": observed}]}),
    )
}

async fn temporal(s: &dyn EntityStore) {
    use misto_store::temporal::{
        instance_number, NewInstance, Take, TemporalSelect, TimeProperty, TimeRange,
    };
    let ms = |t: &str| t.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    // Every change of an attribute is an instance, written with the change; an unchanged write adds none.
    for (i, v) in [20.0, 21.0, 22.5].iter().enumerate() {
        let at = format!("2024-01-01T0{i}:00:00.000Z");
        put_all(s, "t", vec![temperature("urn:e:1", *v, &at)]).await;
    }
    put_all(
        s,
        "t",
        vec![temperature("urn:e:1", 22.5, "2024-01-01T02:00:00.000Z")],
    )
    .await;
    put_all(
        s,
        "u",
        vec![temperature("urn:e:1", 99.0, "2024-01-01T00:00:00.000Z")],
    )
    .await;
    let found = s
        .temporal_entities(
            "t",
            &TemporalSelect {
                types: Some(vec!["urn:T".into()]),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].types, vec!["urn:T".to_string()]);
    let series = s.temporal_series("t", "urn:e:1", None).await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].attr, "urn:temp");
    let sids = [series[0].sid];
    let all = TimeRange::default();
    let got = s
        .temporal_instances("t", &sids, all, Take::First(100))
        .await
        .unwrap();
    let values: Vec<f64> = got[0].iter().filter_map(|i| i.inst.num).collect();
    assert_eq!(values, vec![20.0, 21.0, 22.5]);
    // Another tenant's series is not reachable by number.
    assert!(s
        .temporal_instances("u", &sids, all, Take::First(100))
        .await
        .unwrap()[0]
        .is_empty());
    // Ranges are [from, to); lastN counts from the end and answers in time order.
    let range = TimeRange {
        from: Some(ms("2024-01-01T01:00:00Z")),
        to: None,
        prop: TimeProperty::ObservedAt,
    };
    let got = s
        .temporal_instances("t", &sids, range, Take::First(100))
        .await
        .unwrap();
    assert_eq!(got[0].len(), 2);
    let got = s
        .temporal_instances("t", &sids, all, Take::Last(2))
        .await
        .unwrap();
    let values: Vec<f64> = got[0].iter().filter_map(|i| i.inst.num).collect();
    assert_eq!(values, vec![21.0, 22.5]);
    // Aggregates per bucket.
    let h = 3_600_000;
    let start = ms("2024-01-01T00:00:00Z");
    let buckets = [
        (start, start + 2 * h),
        (start + 2 * h, start + 4 * h),
        (start + 4 * h, start + 5 * h),
    ];
    let agg = s
        .temporal_aggregate("t", &sids, TimeProperty::ObservedAt, &buckets, true)
        .await
        .unwrap();
    assert_eq!(agg[0][0].count, 2);
    assert_eq!(agg[0][0].sum, 41.0);
    assert_eq!(agg[0][0].max, Some(21.0));
    assert_eq!(agg[0][0].distinct, 2);
    assert_eq!(agg[0][1].count, 1);
    assert_eq!(agg[0][2].count, 0);
    assert_eq!(agg[0][2].min, None);
    // Appending, replacing and deleting instances.
    let inst = |v: f64, at: &str| {
        NewInstance::from_stored(
            "urn:temp",
            &json!({"type": "Property", "value": v, "observedAt": at}),
            0,
        )
        .unwrap()
    };
    s.temporal_append(
        "t",
        "urn:e:2",
        &["urn:U".into()],
        vec![
            inst(1.0, "2024-02-01T00:00:00Z"),
            inst(2.0, "2024-02-02T00:00:00Z"),
        ],
    )
    .await
    .unwrap();
    let sids2: Vec<i64> = s
        .temporal_series("t", "urn:e:2", None)
        .await
        .unwrap()
        .iter()
        .map(|x| x.sid)
        .collect();
    let got = s
        .temporal_instances("t", &sids2, all, Take::First(10))
        .await
        .unwrap();
    let first = got[0][0].iid;
    assert!(instance_number(&misto_store::temporal::instance_id(first)) == Some(first));
    assert!(s
        .temporal_replace_instance(
            "t",
            "urn:e:2",
            "urn:temp",
            first,
            inst(5.0, "2024-02-01T00:00:00Z")
        )
        .await
        .unwrap());
    let one = s
        .temporal_instance("t", "urn:e:2", "urn:temp", first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.inst.num, Some(5.0));
    assert!(s
        .temporal_instance("u", "urn:e:2", "urn:temp", first)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .temporal_delete_instance("t", "urn:e:2", "urn:temp", first)
        .await
        .unwrap());
    assert!(!s
        .temporal_delete_instance("t", "urn:e:2", "urn:temp", first)
        .await
        .unwrap());
    // Retention removes old instances of a type in batches.
    assert_eq!(
        s.temporal_retain("urn:T", ms("2024-01-01T01:30:00Z"), 1)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.temporal_retain("urn:T", ms("2024-01-01T01:30:00Z"), 10)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.temporal_retain("urn:T", ms("2024-01-01T01:30:00Z"), 10)
            .await
            .unwrap(),
        0
    );
    // Deleting an entity keeps its history; deleting the history removes it.
    let del: ModifyFn = Box::new(|_| Ok(Change::Delete));
    modify(s, "t", "urn:e:1", del).await.unwrap().unwrap();
    assert_eq!(
        s.temporal_series("t", "urn:e:1", None).await.unwrap().len(),
        1
    );
    assert!(s
        .temporal_delete_attr("t", "urn:e:1", "urn:temp", None)
        .await
        .unwrap());
    assert!(s.temporal_delete_entity("t", "urn:e:2").await.unwrap());
    assert!(!s.temporal_delete_entity("t", "urn:e:2").await.unwrap());
    assert!(s
        .temporal_entities(
            "t",
            &TemporalSelect {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .iter()
        .all(|e| e.id != "urn:e:2"));
}

async fn devices(s: &dyn EntityStore) {
    use misto_store::devices::{DeviceRecord, HealthUpdate};
    let d = DeviceRecord {
        tenant: "t".into(),
        id: "a1".into(),
        dev_eui: Some("0101010101010101".into()),
        profile_id: Some("p".into()),
        token_hash: Some("$argon2id$x".into()),
        doc: json!({"name": "one"}),
        ..Default::default()
    };
    assert!(s.put_device(&d, true).await.unwrap());
    assert!(
        !s.put_device(&d, true).await.unwrap(),
        "create refuses an existing id"
    );
    // Another device cannot take the same DevEUI.
    let twin = DeviceRecord {
        id: "a2".into(),
        ..d.clone()
    };
    assert!(!s.put_device(&twin, false).await.unwrap());
    let other_tenant = DeviceRecord {
        tenant: "u".into(),
        ..d.clone()
    };
    assert!(s.put_device(&other_tenant, true).await.unwrap());
    assert_eq!(s.get_device("t", "a1").await.unwrap().unwrap(), d);
    assert_eq!(
        s.device_by_eui("t", "0101010101010101")
            .await
            .unwrap()
            .unwrap()
            .id,
        "a1"
    );
    assert!(s.device_by_eui("t", "ff").await.unwrap().is_none());
    let plain = DeviceRecord {
        id: "b".into(),
        dev_eui: None,
        ..d.clone()
    };
    assert!(s.put_device(&plain, true).await.unwrap());
    let ids: Vec<String> = s
        .list_devices("t", None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["a1", "b"]);
    let ids: Vec<String> = s
        .list_devices("t", Some("a1"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["b"]);

    // Health: frame-counter gaps add up; a lower counter (re-join) is no loss; absent news keeps old values.
    let up = |t: i64, f: i64| HealthUpdate {
        seen_ms: Some(t),
        fcnt: Some(f),
        rssi: Some(-80.0),
        snr: Some(7.5),
        gateway: Some("gw1".into()),
        ..Default::default()
    };
    s.update_health("t", "a1", &up(1000, 10))
        .await
        .unwrap()
        .unwrap();
    let h = s
        .update_health("t", "a1", &up(2000, 13))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.fcnt_gaps, h.last_fcnt, h.uplinks, h.last_seen_ms),
        (2, Some(13), 2, Some(2000))
    );
    let h = s
        .update_health("t", "a1", &up(3000, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((h.fcnt_gaps, h.last_fcnt), (2, Some(1)));
    let h = s
        .update_health(
            "t",
            "a1",
            &HealthUpdate {
                battery: Some(0.5),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.battery, h.rssi, h.uplinks, h.gateway.as_deref()),
        (Some(0.5), Some(-80.0), 3, Some("gw1"))
    );
    assert!(s
        .update_health("t", "nope", &up(1, 1))
        .await
        .unwrap()
        .is_none());
    // Replacing a device keeps its health.
    s.put_device(
        &DeviceRecord {
            doc: json!({"name": "renamed"}),
            ..d.clone()
        },
        false,
    )
    .await
    .unwrap();
    let got = s.get_device("t", "a1").await.unwrap().unwrap();
    assert_eq!(
        (got.doc["name"].as_str(), got.health.uplinks),
        (Some("renamed"), 3)
    );
    assert_eq!(
        s.get_device("u", "a1")
            .await
            .unwrap()
            .unwrap()
            .health
            .uplinks,
        0
    );
    assert!(s.delete_device("t", "b").await.unwrap());
    assert!(!s.delete_device("t", "b").await.unwrap());

    // Profiles.
    assert!(s
        .put_profile("t", "p", &json!({"v": 1}), true)
        .await
        .unwrap());
    assert!(!s
        .put_profile("t", "p", &json!({"v": 2}), true)
        .await
        .unwrap());
    assert!(s
        .put_profile("t", "p", &json!({"v": 3}), false)
        .await
        .unwrap());
    assert_eq!(
        s.get_profile("t", "p").await.unwrap(),
        Some(json!({"v": 3}))
    );
    assert_eq!(s.get_profile("u", "p").await.unwrap(), None);
    assert_eq!(
        s.list_profiles("t").await.unwrap(),
        vec![("p".to_string(), json!({"v": 3}))]
    );
    assert!(s.delete_profile("t", "p").await.unwrap());
    assert!(s.list_profiles("t").await.unwrap().is_empty());

    // Dead letters.
    let a = s
        .add_dead_letter("t", 5, Some("a1"), "codec threw", &json!({"bytes": "AQ=="}))
        .await
        .unwrap();
    let b = s
        .add_dead_letter("t", 6, None, "unknown device", &json!({}))
        .await
        .unwrap();
    s.add_dead_letter("u", 7, None, "x", &json!({}))
        .await
        .unwrap();
    assert!(b > a);
    let all = s.list_dead_letters("t", 0, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[0].reason.as_str(),
            all[0].device.as_deref(),
            &all[0].uplink
        ),
        ("codec threw", Some("a1"), &json!({"bytes": "AQ=="}))
    );
    assert_eq!(s.list_dead_letters("t", a, 10).await.unwrap().len(), 1);
    assert_eq!(s.count_dead_letters("t").await.unwrap(), 2);
    assert!(s.delete_dead_letter("t", a).await.unwrap());
    assert!(
        !s.delete_dead_letter("u", b).await.unwrap(),
        "another tenant's dead letter is out of reach"
    );
    assert_eq!(s.count_dead_letters("t").await.unwrap(), 1);
}

async fn commands(s: &dyn EntityStore) {
    use misto_store::commands::{CommandRecord, ACKNOWLEDGED, FAILED, QUEUED, SENT};
    let cmd = |tenant: &str, id: &str, at: i64| CommandRecord {
        tenant: tenant.into(),
        id: id.into(),
        device: "cab-1".into(),
        f_port: 10,
        bytes: "AQ==".into(),
        confirmed: true,
        state: QUEUED.into(),
        reason: None,
        created_ms: at,
        updated_ms: at,
    };
    s.add_command(&cmd("t", "c1", 1)).await.unwrap();
    s.add_command(&cmd("t", "c2", 2)).await.unwrap();
    s.add_command(&cmd("u", "c3", 3)).await.unwrap();
    assert_eq!(
        s.get_command("t", "c1").await.unwrap(),
        Some(cmd("t", "c1", 1))
    );
    assert_eq!(
        s.get_command("u", "c1").await.unwrap(),
        None,
        "tenants are apart"
    );
    let page = s.list_commands("t", "cab-1", 0, 10).await.unwrap();
    let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c2", "c1"], "newest first");
    assert_eq!(
        s.list_commands("t", "cab-1", 1, 10).await.unwrap()[0].id,
        "c1"
    );
    assert!(s
        .list_commands("t", "other", 0, 10)
        .await
        .unwrap()
        .is_empty());

    // queued → sent → acknowledged; a late `sent` or a failure leaves a final state alone.
    let c = s
        .set_command_state("t", "c1", SENT, None, 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.state.as_str(), c.updated_ms), (SENT, 5));
    let c = s
        .set_command_state("t", "c1", ACKNOWLEDGED, None, 6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.state, ACKNOWLEDGED);
    let c = s
        .set_command_state("t", "c1", SENT, None, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.state.as_str(), c.updated_ms), (ACKNOWLEDGED, 6));
    let c = s
        .set_command_state("t", "c1", FAILED, Some("late"), 8)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.state, ACKNOWLEDGED);
    let c = s
        .set_command_state("t", "c2", FAILED, Some("no route"), 9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c.state.as_str(), c.reason.as_deref()),
        (FAILED, Some("no route"))
    );
    assert_eq!(
        s.set_command_state("t", "nope", SENT, None, 9)
            .await
            .unwrap(),
        None
    );

    // Routes.
    assert_eq!(s.get_route("t", "cab-1").await.unwrap(), None);
    s.set_route("t", "cab-1", &json!({"chirpstack": "app-1"}))
        .await
        .unwrap();
    s.set_route("t", "cab-1", &json!({"tts": "city@kyiv"}))
        .await
        .unwrap();
    assert_eq!(
        s.get_route("t", "cab-1").await.unwrap(),
        Some(json!({"tts": "city@kyiv"}))
    );
    assert_eq!(s.get_route("u", "cab-1").await.unwrap(), None);
}

async fn registry(s: &dyn EntityStore) {
    use misto_store::registry::{Kind, StoredDoc};
    let now = 1_000_000;
    let doc = |tenant: &str, id: &str, n: i64, expires_ms: Option<i64>| StoredDoc {
        tenant: tenant.into(),
        id: id.into(),
        doc: json!({"n": n}),
        expires_ms,
    };
    let reg = Kind::Registration;
    assert!(s
        .registry_put(reg, &doc("t", "urn:a", 1, None), true, now)
        .await
        .unwrap());
    assert!(s
        .registry_put(reg, &doc("t", "urn:b", 2, Some(now + 10)), true, now)
        .await
        .unwrap());
    // The id is taken while the document lives; a replacement needs a live one.
    assert!(!s
        .registry_put(reg, &doc("t", "urn:a", 3, None), true, now)
        .await
        .unwrap());
    assert!(!s
        .registry_put(reg, &doc("t", "urn:c", 3, None), false, now)
        .await
        .unwrap());
    assert!(s
        .registry_put(reg, &doc("t", "urn:a", 4, None), false, now)
        .await
        .unwrap());
    let a = s
        .registry_get(reg, "t", "urn:a", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.doc, json!({"n": 4}));
    // Kinds and tenants are apart.
    assert!(s
        .registry_get(Kind::EntityMap, "t", "urn:a", now)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .registry_get(reg, "u", "urn:a", now)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .registry_put(Kind::EntityMap, &doc("t", "urn:a", 9, None), true, now)
        .await
        .unwrap());
    // Listed in creation order (a replacement keeps its place); expired ones are not seen.
    let ids = |l: Vec<StoredDoc>| l.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.registry_list(reg, "t", now).await.unwrap()),
        ["urn:a", "urn:b"]
    );
    assert_eq!(
        ids(s.registry_list(reg, "t", now + 10).await.unwrap()),
        ["urn:a"]
    );
    assert!(s
        .registry_get(reg, "t", "urn:b", now + 10)
        .await
        .unwrap()
        .is_none());
    assert!(!s
        .registry_delete(reg, "t", "urn:b", now + 10)
        .await
        .unwrap());
    // An expired id may be created again before the sweep.
    assert!(s
        .registry_put(reg, &doc("t", "urn:b", 5, Some(now + 20)), true, now + 10)
        .await
        .unwrap());
    assert_eq!(s.registry_expire(now + 20).await.unwrap(), 1);
    assert!(s
        .registry_get(reg, "t", "urn:b", now)
        .await
        .unwrap()
        .is_none());
    assert!(s.registry_delete(reg, "t", "urn:a", now).await.unwrap());
    assert!(!s.registry_delete(reg, "t", "urn:a", now).await.unwrap());
    assert_eq!(
        ids(s.registry_list(Kind::EntityMap, "t", now).await.unwrap()),
        ["urn:a"]
    );
}

macro_rules! suite {
    ($($name:ident),*) => {
        mod sqlite_ {
            use super::*;
            $(#[tokio::test] async fn $name() { let b = sqlite().await; super::run(stringify!($name), b.store.clone()).await; })*
        }
        mod postgres_ {
            use super::*;
            $(#[tokio::test] async fn $name() { let b = postgres().await; super::run(stringify!($name), b.store.clone()).await; })*
        }
    };
}

async fn run(name: &str, s: Arc<dyn EntityStore>) {
    match name {
        "round_trip" => round_trip(s.as_ref()).await,
        "batch_with_a_failure" => batch_with_a_failure(s.as_ref()).await,
        "concurrent_updates_are_not_lost" => concurrent_updates_are_not_lost(s).await,
        "delete_and_counts" => delete_and_counts(s.as_ref()).await,
        "tenants_are_isolated" => tenants_are_isolated(s.as_ref()).await,
        "queries" => queries(s.as_ref()).await,
        "expiry" => expiry(s.as_ref()).await,
        "ten_thousand_in_one_call" => ten_thousand_in_one_call(s.as_ref()).await,
        "views" => views(s.as_ref()).await,
        "subscriptions" => subscriptions(s.as_ref()).await,
        "journal_and_outbox" => journal_and_outbox(s.as_ref()).await,
        "cluster_coordination" => cluster_coordination(s.as_ref()).await,
        "retrying_modifications" => retrying_modifications(s).await,
        "retrying_batches" => retrying_batches(s).await,
        "temporal" => temporal(s.as_ref()).await,
        "devices" => devices(s.as_ref()).await,
        "registry" => registry(s.as_ref()).await,
        "commands" => commands(s.as_ref()).await,
        other => panic!("unknown test {other}"),
    }
}

suite!(
    round_trip,
    batch_with_a_failure,
    concurrent_updates_are_not_lost,
    delete_and_counts,
    tenants_are_isolated,
    queries,
    expiry,
    ten_thousand_in_one_call,
    views,
    subscriptions,
    journal_and_outbox,
    cluster_coordination,
    retrying_modifications,
    retrying_batches,
    temporal,
    devices,
    registry,
    commands
);
