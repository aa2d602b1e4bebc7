//! The temporal representations of an entity (§4.5.7 normalized, §4.5.9 simplified `temporalValues`, §4.5.19
//! aggregated): attributes compacted with the reader's context.

use misto_ngsild::entity::value_member;
use misto_ngsild::render::{compact_types, render_attribute, Format, RenderOptions};
use misto_ngsild::{Context, NgsiError, Result};
use misto_store::temporal::{
    datetime_of, instance_id, number, Bucket, StoredInstance, TimeProperty,
};
use serde_json::{Map, Value};

use super::aggregate::Method;

/// The entity's head: `id` and compacted `type`.
pub fn head(id: &str, types: &[String], ctx: &Context) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(id.to_string()));
    let t = Value::Array(types.iter().cloned().map(Value::String).collect());
    out.insert("type".into(), compact_types(&t, ctx));
    out
}

fn stored(i: &StoredInstance) -> Result<Value> {
    i.to_stored()
        .map_err(|e| NgsiError::internal(format!("a stored attribute instance is unreadable: {e}")))
}

/// Normalized temporal representation of one attribute's instances: each instance with its `instanceId`.
pub fn normalized(
    instances: &[StoredInstance],
    ctx: &Context,
    sys_attrs: bool,
) -> Result<Vec<Value>> {
    let mut opts = RenderOptions::new(Format::Normalized);
    opts.sys_attrs = sys_attrs;
    let mut out = Vec::with_capacity(instances.len());
    for i in instances {
        let mut v = render_attribute(&[stored(i)?], ctx, &opts);
        if let Some(o) = v.as_object_mut() {
            o.insert("instanceId".into(), Value::String(instance_id(i.iid)));
        }
        out.push(v);
    }
    Ok(out)
}

/// The member holding a kind's list of values in the simplified representation.
fn values_key(kind: &str) -> &'static str {
    match kind {
        "Relationship" => "objects",
        "LanguageProperty" => "languageMaps",
        "VocabProperty" => "vocabs",
        "JsonProperty" => "jsons",
        "ListProperty" => "valueLists",
        "ListRelationship" => "objectLists",
        _ => "values",
    }
}

/// The kind of the instances of a series (that of its last instance).
pub fn kind_of(instances: &[StoredInstance]) -> Result<String> {
    match instances.last() {
        Some(i) => Ok(stored(i)?
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Property")
            .to_string()),
        None => Ok("Property".into()),
    }
}

/// Simplified temporal representation of one series: `{type, values: [[value, time], …]}`.
pub fn temporal_values(
    instances: &[StoredInstance],
    dataset: &str,
    prop: TimeProperty,
) -> Result<Value> {
    let kind = kind_of(instances)?;
    let member = value_member(&kind).unwrap_or("value");
    let mut pairs = Vec::with_capacity(instances.len());
    for i in instances {
        let v = match (&i.inst.doc, i.inst.num) {
            (None, Some(n)) => number(n),
            _ => stored(i)?.get(member).cloned().unwrap_or(Value::Null),
        };
        pairs.push(Value::Array(vec![v, datetime_of(i.inst.time(prop))]));
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(kind.clone()));
    out.insert(values_key(&kind).into(), Value::Array(pairs));
    if !dataset.is_empty() {
        out.insert("datasetId".into(), Value::String(dataset.to_string()));
    }
    Ok(Value::Object(out))
}

/// Aggregated representation of one series: per method, `[[value, start, end], …]` over non-empty buckets.
pub fn aggregated(
    kind: &str,
    dataset: &str,
    methods: &[Method],
    buckets: &[(i64, i64)],
    values: &[Bucket],
) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::String(kind.to_string()));
    for m in methods {
        let list: Vec<Value> = buckets
            .iter()
            .zip(values)
            .filter_map(|((s, e), b)| {
                m.of(b)
                    .map(|v| Value::Array(vec![v, datetime_of(*s), datetime_of(*e)]))
            })
            .collect();
        out.insert(m.name().into(), Value::Array(list));
    }
    if !dataset.is_empty() {
        out.insert("datasetId".into(), Value::String(dataset.to_string()));
    }
    Value::Object(out)
}
