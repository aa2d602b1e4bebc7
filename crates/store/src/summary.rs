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

/// The attribute kinds of one attribute's instances, sorted, without repeats.
fn kinds(v: Option<&Value>) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("type").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    k.sort_unstable();
    k.dedup();
    k
}

/// Whether two versions of an entity have the same summary keys (as most updates of values do), decided
/// without building them.
pub fn same_keys(a: &Entity, b: &Entity) -> bool {
    types(a) == types(b)
        && attribute_names(a).count() == attribute_names(b).count()
        && attribute_names(a).all(|n| b.contains_key(n) && kinds(a.get(n)) == kinds(b.get(n)))
}

/// The GeoProperty values of an entity, in order: equal lists index to equal boxes.
pub fn geo_values(e: &Entity) -> Vec<(&String, &Value)> {
    let mut out = Vec::new();
    for name in attribute_names(e) {
        for i in e.get(name).and_then(Value::as_array).into_iter().flatten() {
            if i.get("type").and_then(Value::as_str) == Some("GeoProperty") {
                if let Some(v) = i.get("value") {
                    out.push((name, v));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn e(v: Value) -> Entity {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn same_keys_agrees_with_the_delta() {
        let base = json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Property", "value": 1}],
                          "r": [{"type": "Relationship", "object": "urn:b"}]});
        let variants = [
            json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Property", "value": 2}],
                   "r": [{"type": "Relationship", "object": "urn:c"}]}),
            json!({"id": "urn:a", "type": ["T", "U"], "p": [{"type": "Property", "value": 1}],
                   "r": [{"type": "Relationship", "object": "urn:b"}]}),
            json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Relationship", "object": "urn:x"}],
                   "r": [{"type": "Relationship", "object": "urn:b"}]}),
            json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Property", "value": 1}]}),
            json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Property", "value": 1}],
                   "q": [{"type": "Relationship", "object": "urn:b"}]}),
        ];
        for v in variants {
            let (a, b) = (e(base.clone()), e(v));
            let mut acc = BTreeMap::new();
            delta(Some(&a), Some(&b), &mut acc);
            assert_eq!(same_keys(&a, &b), nonzero(acc).is_empty(), "{b:?}");
        }
    }
}
