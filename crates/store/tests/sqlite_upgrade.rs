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
