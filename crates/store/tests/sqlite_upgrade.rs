//! A database written by the first SQLite schema (documents as JSON text, the GeoProperty name as an R*Tree
//! auxiliary column) opens with the current code: migrations carry its spatial index over and its documents
//! still read.

use misto_store::{EntityQuery, EntityStore};

const V1: &str = include_str!("../migrations/sqlite/0001_entities.sql");
const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

#[tokio::test]
async fn version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(V1).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        let doc = serde_json::json!({"id": "urn:a", "type": ["https://x/T"],
            LOCATION: [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.5, 50.4]}}]});
        c.execute(
            "INSERT INTO entities (seq, tenant, id, doc) VALUES (1, '', 'urn:a', ?1)",
            [doc.to_string()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO entity_types (tenant, type, seq) VALUES ('', 'https://x/T', 1)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO geo_index (gid, minx, maxx, miny, maxy, seq, attr) VALUES (64, 30.5, 30.5, 50.4, 50.4, 1, ?1)",
            [LOCATION],
        )
        .unwrap();
    }
    let store = misto_store::sqlite::SqliteStore::open(&path).unwrap();
    let near = |x: f64, y: f64| EntityQuery {
        bbox: Some((
            LOCATION.to_string(),
            geo::Rect::new((x - 0.01, y - 0.01), (x + 0.01, y + 0.01)),
        )),
        limit: 10,
        ..Default::default()
    };
    let hit = store.query("", &near(30.5, 50.4)).await.unwrap();
    assert_eq!(
        hit.entities.len(),
        1,
        "the old spatial index entry is found"
    );
    assert_eq!(hit.entities[0]["id"], "urn:a");
    let miss = store.query("", &near(31.0, 50.4)).await.unwrap();
    assert!(miss.entities.is_empty());
    let got = store.get("", "urn:a").await.unwrap().unwrap();
    assert_eq!(
        got["type"][0], "https://x/T",
        "a JSON text document still reads"
    );
}

/// A database written by the first temporal schema (series keyed by text) opens with the current code: the
/// histories, the entity types and the series numbers (which instance ids are made of) carry over.
#[tokio::test]
async fn text_keyed_temporal_history_is_upgraded_in_place() {
    use misto_store::temporal::{Take, TemporalSelect, TemporalStore, TimeProperty, TimeRange};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for sql in [
            include_str!("../migrations/sqlite/0001_entities.sql"),
            include_str!("../migrations/sqlite/0002_geo_rtree_by_attribute.sql"),
            include_str!("../migrations/sqlite/0003_entity_views.sql"),
            include_str!("../migrations/sqlite/0004_subscriptions.sql"),
            include_str!("../migrations/sqlite/0005_entity_heads.sql"),
            include_str!("../migrations/sqlite/0006_temporal.sql"),
        ] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        c.execute_batch(
            "INSERT INTO temporal_entities VALUES ('t1', 'urn:a', '[\"https://x/T\"]');
             INSERT INTO temporal_types VALUES ('t1', 'https://x/T', 'urn:a');
             INSERT INTO temporal_series VALUES (7, 't1', 'urn:a', 'https://x/p', '');
             INSERT INTO temporal_series VALUES (9, 't1', 'urn:a', 'https://x/p', 'urn:ds:1');
             INSERT INTO temporal_series VALUES (11, 't2', 'urn:a', 'https://x/p', '');
             INSERT INTO attr_instances VALUES (100, 7, 1000, 1, 1000, 1000, 1.5, NULL);
             INSERT INTO attr_instances VALUES (101, 7, 2000, 1, 2000, 2000, 2.5, NULL);
             INSERT INTO attr_instances VALUES (102, 9, 1500, 1, 1500, 1500, NULL, '{\"type\":\"Property\",\"value\":\"x\"}');
             INSERT INTO attr_instances VALUES (103, 11, 1500, 1, 1500, 1500, 9.0, NULL);",
        )
        .unwrap();
    }
    let store = misto_store::sqlite::SqliteStore::open(&path).unwrap();
    let sel = TemporalSelect {
        types: Some(vec!["https://x/T".into()]),
        limit: 10,
        ..Default::default()
    };
    let found = store.temporal_entities("t1", &sel).await.unwrap();
    assert_eq!(found.len(), 1, "the entity is still selected by its type");
    assert_eq!(found[0].types, vec!["https://x/T".to_string()]);
    let series = store.temporal_series("t1", "urn:a", None).await.unwrap();
    let keys: Vec<_> = series
        .iter()
        .map(|s| (s.sid, s.attr.as_str(), s.dataset.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![(7, "https://x/p", ""), (9, "https://x/p", "urn:ds:1")],
        "series keep their numbers, attributes and datasetIds"
    );
    let range = TimeRange {
        from: None,
        to: None,
        prop: TimeProperty::ObservedAt,
    };
    let got = store
        .temporal_instances("t1", &[7, 9, 11], range, Take::First(10))
        .await
        .unwrap();
    let ids: Vec<Vec<i64>> = got
        .iter()
        .map(|l| l.iter().map(|i| i.iid).collect())
        .collect();
    assert_eq!(
        ids,
        vec![vec![100, 101], vec![102], vec![]],
        "instances read back, and another tenant's series stays out of reach"
    );
    assert_eq!(got[0][1].inst.num, Some(2.5));
    // The other tenant's history moved too, and writes go on after the upgrade.
    let other = store.temporal_series("t2", "urn:a", None).await.unwrap();
    assert_eq!(other.len(), 1);
    assert!(store.temporal_delete_entity("t1", "urn:a").await.unwrap());
    assert!(store
        .temporal_series("t1", "urn:a", None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .temporal_series("t2", "urn:a", None)
            .await
            .unwrap()
            .len(),
        1
    );
}
