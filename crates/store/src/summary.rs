//! The (type, attribute, kind) pairs an entity contributes to the type/attribute summary, and the
//! difference between two versions of an entity, so stores update counters only where something changed.

use std::collections::BTreeMap;

use misto_ngsild::entity::{attribute_names, types};
use misto_ngsild::Entity;
use serde_json::Value;

/// (type IRI, attribute IRI or "" for the entity itself, attribute kind or "")
pub type AttrKey = (String, String, String);

/// The summary keys of one entity.
pub fn keys(e: &Entity) -> Vec<AttrKey> {
    // ("", "", "") counts the entity itself once, whatever its number of types.
    let mut out = vec![(String::new(), String::new(), String::new())];
    for t in types(e) {
        out.push((t.to_string(), String::new(), String::new()));
        for name in attribute_names(e) {
            let mut kinds: Vec<&str> = e
                .get(name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| i.get("type").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            kinds.sort_unstable();
            kinds.dedup();
            for k in kinds {
                out.push((t.to_string(), name.clone(), k.to_string()));
            }
        }
    }
    out
}

/// Counter deltas for replacing `before` by `after`.
pub fn delta(before: Option<&Entity>, after: Option<&Entity>, acc: &mut BTreeMap<AttrKey, i64>) {
    if let Some(b) = before {
        for k in keys(b) {
            *acc.entry(k).or_default() -= 1;
        }
    }
    if let Some(a) = after {
        for k in keys(a) {
            *acc.entry(k).or_default() += 1;
        }
    }
}

/// Drop the keys whose counts did not change.
pub fn nonzero(acc: BTreeMap<AttrKey, i64>) -> Vec<(AttrKey, i64)> {
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// Geo index entries of an entity: (attribute IRI, lon/lat bounding box) per GeoProperty instance.
pub fn geo_boxes(e: &Entity) -> Vec<(String, geo::Rect<f64>)> {
    let mut out = Vec::new();
    for name in attribute_names(e) {
        let Some(list) = e.get(name).and_then(Value::as_array) else {
            continue;
        };
        for i in list {
            if i.get("type").and_then(Value::as_str) != Some("GeoProperty") {
                continue;
            }
            let Some(v) = i.get("value") else { continue };
            if let Ok(g) = misto_query::geoq::geometry_from_geojson(v) {
                if let Some(r) = misto_query::geoq::bbox(&g) {
                    out.push((name.clone(), r));
                }
            }
        }
    }
    out
}
