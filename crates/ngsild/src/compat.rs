//! Payloads for consumers that understand only an earlier NGSI-LD version (§4.3.6.8, Tables 4.3.6.8-1 to -3):
//! members introduced later are removed and attribute kinds introduced later are reformatted as the Property or
//! Relationship they extend. Works on rendered entities (normalized, concise or keyValues).

use serde_json::{Map, Value};

/// An NGSI-LD version `major.minor` as a consumer asks for it (`1.5`, `1.8.1`: the patch level does not matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version(major, minor))
    }

    fn before(self, major: u32, minor: u32) -> bool {
        self < Version(major, minor)
    }
}

/// Whether a member of an attribute instance is one of its own (not a sub-attribute). `valueType` (V1.9) is
/// not parsed on input, so the parser's list leaves it out.
fn is_instance_member(k: &str) -> bool {
    crate::entity::INSTANCE_MEMBERS.contains(&k) || k == "valueType"
}

/// Amend a rendered entity for a consumer of version `v`; true when anything changed.
pub fn downgrade_entity(e: &mut Map<String, Value>, v: Version) -> bool {
    let mut changed = false;
    if v.before(1, 9) {
        changed |= e.remove("expiresAt").is_some();
    }
    if v.before(1, 4) {
        changed |= e.remove("scope").is_some();
    }
    if v.before(1, 3) {
        // Note 1: one type only, the first.
        if let Some(Value::Array(types)) = e.get_mut("type") {
            if let Some(first) = types.first().cloned() {
                e.insert("type".into(), first);
                changed = true;
            }
        }
    }
    let names: Vec<String> = e
        .keys()
        .filter(|k| !crate::entity::ENTITY_MEMBERS.contains(&k.as_str()))
        .cloned()
        .collect();
    for n in names {
        if let Some(a) = e.get_mut(&n) {
            changed |= downgrade_attribute(a, v);
        }
    }
    changed
}

/// An attribute: one instance or an array of them (notes 2 and 3: before 1.3, the default instance only).
fn downgrade_attribute(a: &mut Value, v: Version) -> bool {
    let mut changed = false;
    if v.before(1, 3) {
        if let Value::Array(list) = a {
            if list.iter().all(Value::is_object) && !list.is_empty() {
                let pick = list
                    .iter()
                    .position(|i| i.get("datasetId").is_none())
                    .unwrap_or(0);
                let one = list.swap_remove(pick);
                *a = one;
                changed = true;
            }
        }
    }
    match a {
        Value::Array(list) if list.iter().all(Value::is_object) => {
            for i in list.iter_mut() {
                changed |= downgrade_instance(i, v);
            }
        }
        i @ Value::Object(_) => changed |= downgrade_instance(i, v),
        _ => {}
    }
    changed
}

/// The kind of a rendered instance: its `type`, else (concise) what its value member says.
fn kind_of(i: &Map<String, Value>) -> Option<&str> {
    if let Some(t) = i.get("type").and_then(Value::as_str) {
        return Some(t);
    }
    [
        ("languageMap", "LanguageProperty"),
        ("vocab", "VocabProperty"),
        ("json", "JsonProperty"),
        ("valueList", "ListProperty"),
        ("objectList", "ListRelationship"),
        ("object", "Relationship"),
        ("value", "Property"),
    ]
    .iter()
    .find(|(m, _)| i.contains_key(*m))
    .map(|(_, k)| *k)
}

fn downgrade_instance(inst: &mut Value, v: Version) -> bool {
    let Some(i) = inst.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    let typed = i.contains_key("type");
    let kind = kind_of(i).map(str::to_string);
    // Table 4.3.6.8-1: the kinds introduced later become the Property or Relationship they extend.
    let reformat = match kind.as_deref() {
        Some("LanguageProperty") if v.before(1, 4) => Some(("languageMap", "value", "Property")),
        Some("VocabProperty") if v.before(1, 8) => Some(("vocab", "value", "Property")),
        Some("JsonProperty") if v.before(1, 8) => Some(("json", "value", "Property")),
        Some("ListProperty") if v.before(1, 8) => Some(("valueList", "value", "Property")),
        Some("ListRelationship") if v.before(1, 8) => {
            Some(("objectList", "object", "Relationship"))
        }
        _ => None,
    };
    if let Some((from, to, new_kind)) = reformat {
        if let Some(mut x) = i.remove(from) {
            if from == "objectList" {
                x = crate::render::object_uris(x);
            }
            i.insert(to.into(), x);
        }
        if typed {
            i.insert("type".into(), Value::String(new_kind.into()));
        }
        changed = true;
    }
    // Tables 4.3.6.8-2 and -3: members introduced later are removed.
    let mut drop = Vec::new();
    if v.before(1, 3) {
        drop.extend(["datasetId", "observedAt", "unitCode"]);
    }
    if v.before(1, 8) {
        drop.push("objectType");
    }
    if v.before(1, 9) {
        drop.extend(["expiresAt", "valueType"]);
    }
    for m in drop {
        changed |= i.remove(m).is_some();
    }
    // Sub-attributes follow the same rules.
    let subs: Vec<String> = i
        .keys()
        .filter(|k| !is_instance_member(k))
        .cloned()
        .collect();
    for s in subs {
        if let Some(a) = i.get_mut(&s) {
            changed |= downgrade_attribute(a, v);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_kinds_and_members_fall_back() {
        let mut e = json!({
            "id": "urn:x:1", "type": ["Building", "Place"], "scope": "/a",
            "category": {"type": "VocabProperty", "vocab": "commercial"},
            "cfg": {"type": "JsonProperty", "json": {"a": 1}},
            "name": {"type": "LanguageProperty", "languageMap": {"en": "x"}},
            "rels": {"type": "ListRelationship", "objectList": [{"object": "urn:a"}, {"object": "urn:b"}]},
            "owner": {"type": "Relationship", "object": "urn:p", "objectType": "Person"},
            "temp": [{"type": "Property", "value": 1, "datasetId": "urn:d"}, {"type": "Property", "value": 2}]
        });
        let o = e.as_object_mut().unwrap();
        let mut v19 = o.clone();
        assert!(
            !downgrade_entity(&mut v19, Version(1, 9)),
            "nothing to amend"
        );
        assert!(downgrade_entity(o, Version(1, 5)));
        assert_eq!(
            o["category"],
            json!({"type": "Property", "value": "commercial"})
        );
        assert_eq!(o["cfg"], json!({"type": "Property", "value": {"a": 1}}));
        assert_eq!(o["name"]["type"], "LanguageProperty", "introduced in 1.4");
        assert_eq!(
            o["rels"],
            json!({"type": "Relationship", "object": ["urn:a", "urn:b"]})
        );
        assert!(o["owner"].get("objectType").is_none());
        assert_eq!(o["scope"], "/a");
        assert!(downgrade_entity(o, Version(1, 0)));
        assert_eq!(o["type"], "Building");
        assert!(o.get("scope").is_none());
        assert_eq!(o["name"], json!({"type": "Property", "value": {"en": "x"}}));
        assert_eq!(
            o["temp"],
            json!({"type": "Property", "value": 2}),
            "the default instance"
        );
        assert_eq!(Version::parse("1.8.1"), Some(Version(1, 8)));
    }
}
