//! Update semantics on stored entities: append, update, merge, replace and delete of attributes.

use serde_json::{Map, Value};

use crate::entity::{Entity, INSTANCE_MEMBERS, NGSI_LD_NULL};

/// Outcome of an attribute-level operation: which attributes changed and which did not, with why.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UpdateResult {
    pub updated: Vec<String>,
    pub not_updated: Vec<(String, String)>,
}

impl UpdateResult {
    pub fn is_complete(&self) -> bool {
        self.not_updated.is_empty()
    }
}

fn dataset_id(i: &Value) -> Option<&Value> {
    i.get("datasetId")
}

fn instances_mut<'a>(e: &'a mut Entity, name: &str) -> Option<&'a mut Vec<Value>> {
    e.get_mut(name).and_then(Value::as_array_mut)
}

/// Is this instance NGSI-LD Null (its value member `urn:ngsi-ld:null`, or a language map
/// `{"@none": "urn:ngsi-ld:null"}`), which deletes it in update and merge operations?
pub fn is_null_marker(i: &Value) -> bool {
    [
        "value",
        "object",
        "languageMap",
        "vocab",
        "json",
        "valueList",
        "objectList",
    ]
    .iter()
    .any(|m| match i.get(*m) {
        Some(Value::String(s)) => s == NGSI_LD_NULL,
        Some(Value::Object(map)) if *m == "languageMap" => {
            map.len() == 1 && map.get("@none").and_then(Value::as_str) == Some(NGSI_LD_NULL)
        }
        _ => false,
    })
}

/// Keep the creation time of the instance being replaced.
fn carry_created(new: &mut Value, old: &Value) {
    if let (Some(n), Some(c)) = (new.as_object_mut(), old.get("createdAt")) {
        n.insert("createdAt".into(), c.clone());
    }
}

/// Append (POST …/attrs): add new attributes and instances; replace existing ones unless `no_overwrite`.
pub fn append(e: &mut Entity, attrs: Vec<(String, Value)>, no_overwrite: bool) -> UpdateResult {
    let mut r = UpdateResult::default();
    for (name, new_instances) in attrs {
        let new_instances = match new_instances {
            Value::Array(a) => a,
            other => vec![other],
        };
        let mut changed = false;
        for mut inst in new_instances {
            let existing = instances_mut(e, &name);
            match existing {
                None => {
                    e.insert(name.clone(), Value::Array(vec![inst]));
                    changed = true;
                }
                Some(list) => match list.iter().position(|i| dataset_id(i) == dataset_id(&inst)) {
                    Some(_) if no_overwrite => {}
                    Some(pos) => {
                        carry_created(&mut inst, &list[pos]);
                        list[pos] = inst;
                        changed = true;
                    }
                    None => {
                        list.push(inst);
                        changed = true;
                    }
                },
            }
        }
        if changed {
            r.updated.push(name);
        } else {
            r.not_updated.push((
                name,
                "attribute exists and noOverwrite was requested".into(),
            ));
        }
    }
    r
}

/// Update (PATCH …/attrs): replace existing instances only; unknown attributes are reported, not added.
pub fn update(e: &mut Entity, attrs: Vec<(String, Value)>) -> UpdateResult {
    let mut r = UpdateResult::default();
    for (name, new_instances) in attrs {
        let new_instances = match new_instances {
            Value::Array(a) => a,
            other => vec![other],
        };
        let Some(list) = instances_mut(e, &name) else {
            r.not_updated
                .push((name, "attribute does not exist".into()));
            continue;
        };
        let mut changed = false;
        let mut missing = false;
        for mut inst in new_instances {
            match list.iter().position(|i| dataset_id(i) == dataset_id(&inst)) {
                Some(pos) => {
                    if is_null_marker(&inst) {
                        list.remove(pos);
                    } else {
                        carry_created(&mut inst, &list[pos]);
                        list[pos] = inst;
                    }
                    changed = true;
                }
                None => missing = true,
            }
        }
        if list.is_empty() {
            e.remove(&name);
        }
        if changed {
            r.updated.push(name);
        } else if missing {
            r.not_updated.push((
                name,
                "attribute instance with this datasetId does not exist".into(),
            ));
        }
    }
    r
}

/// RFC 7396 merge patch, with `urn:ngsi-ld:null` (or null) removing a key.
fn merge_patch(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() || v.as_str() == Some(NGSI_LD_NULL) {
                        t.remove(&k);
                    } else {
                        merge_patch(t.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other,
    }
}

/// A new instance from a merge fragment: keys set to null inside its compound value are simply absent.
fn without_nulls(mut inst: Map<String, Value>) -> Map<String, Value> {
    if let Some(v @ Value::Object(_)) = inst.get_mut("value") {
        let patch = std::mem::take(v);
        merge_patch(v, patch);
    }
    inst
}

/// Overlay a partial instance onto an existing one: given members replace, sub-attributes merge
/// (a sub-attribute whose value is `urn:ngsi-ld:null` is removed). With `patch_values` (merge, §5.5.12) a
/// Property's compound value is merge-patched into the stored one instead of replacing it.
pub fn merge_instance(
    existing: &mut Map<String, Value>,
    partial: Map<String, Value>,
    patch_values: bool,
) {
    let is_property = partial
        .get("type")
        .or_else(|| existing.get("type"))
        .and_then(Value::as_str)
        .is_none_or(|k| k == "Property");
    let new_kind = partial
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(k) = &new_kind {
        if existing.get("type").and_then(Value::as_str) != Some(k.as_str()) {
            // The kind changed: drop the old value member.
            for m in [
                "value",
                "object",
                "languageMap",
                "vocab",
                "json",
                "valueList",
                "objectList",
            ] {
                existing.remove(m);
            }
        }
    }
    for (k, v) in partial {
        if k == "createdAt" {
            continue;
        }
        if !INSTANCE_MEMBERS.contains(&k.as_str()) && is_null_marker(&v) {
            existing.remove(&k);
            continue;
        }
        match (existing.get_mut(&k), v) {
            (Some(old @ Value::Object(_)), new @ Value::Object(_))
                if patch_values && is_property && k == "value" =>
            {
                merge_patch(old, new);
            }
            (Some(Value::Object(old)), Value::Object(new))
                if !INSTANCE_MEMBERS.contains(&k.as_str()) =>
            {
                merge_instance(old, new, patch_values);
            }
            (_, v) => {
                existing.insert(k, v);
            }
        }
    }
}

/// Merge (PATCH /entities/{id}, PATCH …/attrs/{attr}): merge each attribute's instances into the existing
/// ones with the same datasetId, add new ones, delete those set to `urn:ngsi-ld:null`.
pub fn merge(e: &mut Entity, attrs: Vec<(String, Value)>) -> UpdateResult {
    let mut r = UpdateResult::default();
    for (name, new_instances) in attrs {
        let new_instances = match new_instances {
            Value::Array(a) => a,
            other => vec![other],
        };
        for inst in new_instances {
            let Value::Object(partial) = inst else {
                continue;
            };
            let delete = is_null_marker(&Value::Object(partial.clone()));
            match instances_mut(e, &name) {
                Some(list) => {
                    let ds = partial.get("datasetId").cloned();
                    match list.iter().position(|i| i.get("datasetId").cloned() == ds) {
                        Some(pos) if delete => {
                            list.remove(pos);
                        }
                        Some(pos) => {
                            if let Some(old) = list[pos].as_object_mut() {
                                merge_instance(old, partial, true);
                            }
                        }
                        None if delete => {}
                        None => list.push(Value::Object(without_nulls(partial))),
                    }
                    if list.is_empty() {
                        e.remove(&name);
                    }
                }
                None if delete => {}
                None => {
                    e.insert(
                        name.clone(),
                        Value::Array(vec![Value::Object(without_nulls(partial))]),
                    );
                }
            }
        }
        r.updated.push(name);
    }
    r
}

/// Delete an attribute: one instance by datasetId (None = the default instance), or all with `delete_all`.
/// Returns false when nothing matched.
pub fn delete_attribute(
    e: &mut Entity,
    name: &str,
    dataset_id: Option<&str>,
    delete_all: bool,
) -> bool {
    if delete_all {
        return e.remove(name).is_some();
    }
    let Some(list) = instances_mut(e, name) else {
        return false;
    };
    let before = list.len();
    list.retain(|i| i.get("datasetId").and_then(Value::as_str) != dataset_id);
    let removed = list.len() != before;
    if list.is_empty() {
        e.remove(name);
    }
    removed
}
