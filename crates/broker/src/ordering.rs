//! Ordering of query results (`orderBy`, `collation`; ETSI GS CIM 009 V1.9 §4.23, OrderingParams §5.2.43).
//!
//! `orderBy` lists criteria `path[;direction]`: the path is `id`, `type`, `createdAt`, `modifiedAt`, an
//! attribute (ordered by its value) or `attribute.member` (a sub-attribute's value or the attribute's
//! `createdAt`, `modifiedAt`, `observedAt`, `unitCode`); the direction is `asc` (default), `desc`, or for a
//! GeoProperty `dist-asc`/`dist-desc` from a reference geometry. Entities without the member come last.
//! Ordering needs every match, so an ordered query sorts all matches and then pages.

use std::cmp::Ordering;

use geo::Geometry;
use misto_ngsild::entity::value_member;
use misto_ngsild::{Context, Entity, NgsiError, Result};
use misto_query::geoq;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Direction {
    Asc,
    Desc,
    DistAsc,
    DistDesc,
}

#[derive(Debug, Clone)]
struct Criterion {
    /// Expanded attribute name or a core member (`id`, `type`, `createdAt`, `modifiedAt`).
    head: String,
    /// `attribute.member`: the expanded sub-attribute name or an instance member.
    member: Option<String>,
    /// `attribute[a.b]`: the path into the attribute's compound value.
    subitems: Vec<String>,
    dir: Direction,
}

/// A parsed `orderBy`.
#[derive(Debug, Clone)]
pub struct OrderBy {
    criteria: Vec<Criterion>,
    reference: Option<Geometry<f64>>,
    /// Compare strings by their letters first (accents and case second), as a collation does.
    collate: bool,
}

const CORE_MEMBERS: &[&str] = &["id", "type", "createdAt", "modifiedAt"];
const INSTANCE_ORDER_MEMBERS: &[&str] = &["createdAt", "modifiedAt", "observedAt", "unitCode"];

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

/// A BCP 47 language tag, syntactically: subtags of 1–8 letters or digits joined by hyphens, the first of
/// 2–8 letters.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl OrderBy {
    /// Parse the criteria (each item may itself hold several, comma-separated). `reference` is the
    /// geometry and coordinates that distance ordering measures from.
    pub fn parse(
        items: &[String],
        collation: Option<&str>,
        reference: Option<(&str, &str)>,
        ctx: &Context,
    ) -> Result<OrderBy> {
        let mut criteria = Vec::new();
        for item in items.iter().flat_map(|i| i.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                return Err(bad("orderBy has an empty criterion"));
            }
            let (path, dir) = match item.split_once(';') {
                None => (item, Direction::Asc),
                Some((p, d)) => (
                    p,
                    match d {
                        "asc" => Direction::Asc,
                        "desc" => Direction::Desc,
                        "dist-asc" => Direction::DistAsc,
                        "dist-desc" => Direction::DistDesc,
                        other => {
                            return Err(bad(format!(
                            "orderBy direction '{other}' is not one of asc, desc, dist-asc, dist-desc"
                        )))
                        }
                    },
                ),
            };
            // `attribute[member]` orders by a member of a compound value (`[a.b]` or `[a][b]` go deeper).
            let (path, subitems) = match path.split_once('[') {
                None => (path, Vec::new()),
                Some((p, rest)) => {
                    let inner = rest
                        .strip_suffix(']')
                        .ok_or_else(|| bad(format!("orderBy path '{item}' has an unclosed [")))?;
                    let items: Vec<String> = inner
                        .split(['.', '[', ']'])
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect();
                    if items.is_empty() {
                        return Err(bad(format!("orderBy path '{item}' has an empty []")));
                    }
                    (p, items)
                }
            };
            let mut segs = path.split('.');
            let head = segs.next().unwrap_or_default();
            let member = segs.next();
            if segs.next().is_some() || head.is_empty() || member == Some("") {
                return Err(bad(format!(
                    "orderBy path '{path}' must be a member or attribute[.member]"
                )));
            }
            if let Err(e) = misto_ngsild::validate::check_name(head) {
                return Err(bad(format!("orderBy path '{path}': {e}")));
            }
            let head = if CORE_MEMBERS.contains(&head) && member.is_none() {
                head.to_string()
            } else {
                ctx.expand(head)
            };
            let member = member.map(|m| {
                if INSTANCE_ORDER_MEMBERS.contains(&m) {
                    m.to_string()
                } else {
                    ctx.expand(m)
                }
            });
            criteria.push(Criterion {
                head,
                member,
                subitems,
                dir,
            });
        }
        if criteria.is_empty() {
            return Err(bad("orderBy names no criterion"));
        }
        let by_distance = criteria
            .iter()
            .any(|c| matches!(c.dir, Direction::DistAsc | Direction::DistDesc));
        let reference = match (by_distance, reference) {
            (false, _) => None,
            (true, None) => {
                return Err(bad(
                    "ordering by distance needs geometry and coordinates to measure from",
                ))
            }
            (true, Some((geometry, coordinates))) => {
                let q =
                    geoq::GeoQuery::from_params("near;maxDistance==1", geometry, coordinates, None)
                        .map_err(|e| bad(format!("the reference of orderBy: {}", e.0)))?;
                Some(q.geometry)
            }
        };
        let collate = match collation {
            None => false,
            Some(tag) if is_language_tag(tag) => true,
            Some(tag) => {
                return Err(bad(format!(
                    "collation '{tag}' is not a BCP 47 language tag"
                )))
            }
        };
        Ok(OrderBy {
            criteria,
            reference,
            collate,
        })
    }

    /// Sort entities in place (stable: ties keep their storage order).
    pub fn sort(&self, entities: &mut Vec<Entity>) {
        let mut keyed: Vec<(Vec<Key>, Entity)> = entities
            .drain(..)
            .map(|e| (self.criteria.iter().map(|c| self.key(&e, c)).collect(), e))
            .collect();
        keyed.sort_by(|(a, _), (b, _)| {
            for ((ka, kb), c) in a.iter().zip(b).zip(&self.criteria) {
                let o = compare(ka, kb, self.collate);
                // Missing members come last in either direction.
                let o = match (ka, kb, c.dir) {
                    (Key::Missing, _, _) | (_, Key::Missing, _) => o,
                    (_, _, Direction::Desc | Direction::DistDesc) => o.reverse(),
                    _ => o,
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
        entities.extend(keyed.into_iter().map(|(_, e)| e));
    }

    fn key(&self, e: &Entity, c: &Criterion) -> Key {
        if c.member.is_none() && CORE_MEMBERS.contains(&c.head.as_str()) {
            let v = match c.head.as_str() {
                "type" => match e.get("type") {
                    Some(Value::Array(a)) => a.first(),
                    other => other,
                },
                k => e.get(k),
            };
            return Key::of(v);
        }
        let Some(instance) = default_instance(e.get(&c.head)) else {
            return Key::Missing;
        };
        let target = match &c.member {
            None => instance,
            Some(m) if INSTANCE_ORDER_MEMBERS.contains(&m.as_str()) => {
                return Key::of(instance.get(m.as_str()))
            }
            Some(m) => match default_instance(instance.get(m)) {
                Some(sub) => sub,
                None => return Key::Missing,
            },
        };
        let kind = target
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Property");
        let value = target.get(value_member(kind).unwrap_or("value"));
        match (c.dir, &self.reference) {
            (Direction::DistAsc | Direction::DistDesc, Some(r)) => value
                .and_then(|v| geoq::geometry_from_geojson(v).ok())
                .map(|g| Key::Number(geoq::distance_m(r, &g)))
                .unwrap_or(Key::Missing),
            _ => {
                Key::of(value.and_then(|v| c.subitems.iter().try_fold(v, |v, k| v.get(k.as_str()))))
            }
        }
    }
}

/// The instance an attribute orders by: the default one (no datasetId), else the first.
fn default_instance(v: Option<&Value>) -> Option<&Value> {
    match v? {
        Value::Array(a) => a
            .iter()
            .find(|i| i.get("datasetId").is_none())
            .or_else(|| a.first()),
        o @ Value::Object(_) => Some(o),
        _ => None,
    }
}

#[derive(Debug)]
enum Key {
    Missing,
    Bool(bool),
    Number(f64),
    Text(String),
    /// Arrays and objects, compared by their JSON text.
    Other(String),
}

impl Key {
    fn of(v: Option<&Value>) -> Key {
        match v {
            None | Some(Value::Null) => Key::Missing,
            Some(Value::Bool(b)) => Key::Bool(*b),
            Some(Value::Number(n)) => n.as_f64().map(Key::Number).unwrap_or(Key::Missing),
            Some(Value::String(s)) => Key::Text(s.clone()),
            Some(other) => Key::Other(other.to_string()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Bool(_) => 0,
            Key::Number(_) => 1,
            Key::Text(_) => 2,
            Key::Other(_) => 3,
            Key::Missing => 4,
        }
    }
}

/// Letters without accents, lower-cased: the primary strength of a collation.
fn primary(s: &str) -> String {
    s.nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn compare(a: &Key, b: &Key, collate: bool) -> Ordering {
    match (a, b) {
        (Key::Bool(x), Key::Bool(y)) => x.cmp(y),
        (Key::Number(x), Key::Number(y)) => x.total_cmp(y),
        (Key::Text(x), Key::Text(y)) if collate => {
            primary(x).cmp(&primary(y)).then_with(|| x.cmp(y))
        }
        (Key::Text(x), Key::Text(y)) | (Key::Other(x), Key::Other(y)) => x.cmp(y),
        _ => a.rank().cmp(&b.rank()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ent(id: &str, name: Option<&str>, n: Option<f64>) -> Entity {
        let mut e = json!({"id": id, "type": ["https://uri.etsi.org/ngsi-ld/default-context/T"]});
        if let Some(name) = name {
            e["https://uri.etsi.org/ngsi-ld/default-context/name"] =
                json!([{"type": "Property", "value": name}]);
        }
        if let Some(n) = n {
            e["https://uri.etsi.org/ngsi-ld/default-context/n"] = json!([{"type": "Property", "value": n, "https://uri.etsi.org/ngsi-ld/default-context/sub": [{"type": "Property", "value": -n}]}]);
        }
        e.as_object().cloned().unwrap_or_default()
    }

    fn ids(v: &[Entity]) -> Vec<&str> {
        v.iter().map(|e| e["id"].as_str().unwrap_or("")).collect()
    }

    fn order(spec: &str, collation: Option<&str>, v: &mut Vec<Entity>) {
        let ob = OrderBy::parse(&[spec.to_string()], collation, None, &Context::core());
        ob.expect("valid orderBy").sort(v);
    }

    #[test]
    fn attribute_values_order_with_missing_last() {
        let mut v = vec![
            ent("urn:c", Some("c"), Some(1.0)),
            ent("urn:x", None, None),
            ent("urn:a", Some("a"), Some(3.0)),
            ent("urn:b", Some("b"), Some(2.0)),
        ];
        order("name", None, &mut v);
        assert_eq!(ids(&v), ["urn:a", "urn:b", "urn:c", "urn:x"]);
        order("name;desc", None, &mut v);
        assert_eq!(ids(&v), ["urn:c", "urn:b", "urn:a", "urn:x"]);
        order("n", None, &mut v);
        assert_eq!(ids(&v), ["urn:c", "urn:b", "urn:a", "urn:x"]);
        order("n.sub", None, &mut v);
        assert_eq!(ids(&v), ["urn:a", "urn:b", "urn:c", "urn:x"]);
        order("type,id;desc", None, &mut v);
        assert_eq!(ids(&v), ["urn:x", "urn:c", "urn:b", "urn:a"]);
    }

    #[test]
    fn a_collation_orders_accented_letters_with_their_base() {
        let mut v = vec![
            ent("urn:z", Some("Zebra"), None),
            ent("urn:a", Some("Ähre"), None),
        ];
        order("name", None, &mut v);
        assert_eq!(
            ids(&v),
            ["urn:z", "urn:a"],
            "code point order without a collation"
        );
        order("name", Some("de-u-co-phonebk"), &mut v);
        assert_eq!(ids(&v), ["urn:a", "urn:z"]);
    }

    #[test]
    fn bad_criteria_are_refused() {
        let ctx = Context::core();
        for (spec, collation) in [
            ("name;up", None),
            ("", None),
            ("a.b.c", None),
            ("location;dist-asc", None),
            ("id", Some("not a bcp47 tag!!")),
        ] {
            assert!(
                OrderBy::parse(&[spec.to_string()], collation, None, &ctx).is_err(),
                "{spec} {collation:?}"
            );
        }
    }
}
