//! The temporal store: the history of every attribute as **attribute instances** (NGSI-LD temporal API, §5.6.11 and
//! §5.7.3 of ETSI GS CIM 009).
//!
//! Every change of an attribute instance becomes one row, written in the entity change's own transaction (so a
//! change that was acknowledged has its history). Rows are grouped in **series**: one per (tenant, entity,
//! attribute, datasetId), numbered by `sid`, and keyed by (sid, time) so that one attribute's history of one entity
//! is a range scan whatever the number of rows in the tenant. A numeric value is kept in a column of its own, so
//! aggregations run in SQL over an index without reading documents.

use async_trait::async_trait;
use misto_ngsild::validate::{format_datetime, parse_datetime};
use misto_ngsild::Entity;
use serde_json::{Map, Value};

use crate::StoreError;

/// The prefix of instance ids: `urn:ngsi-ld:instance:<number>`.
pub const INSTANCE_PREFIX: &str = "urn:ngsi-ld:instance:";

/// Members of an instance that live in columns, not in the stored document.
const COLUMN_MEMBERS: &[&str] = &[
    "observedAt",
    "createdAt",
    "modifiedAt",
    "instanceId",
    "datasetId",
];

/// An attribute instance about to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInstance {
    /// Expanded attribute name.
    pub attr: String,
    /// `datasetId` ("" for the default instance).
    pub dataset: String,
    /// Its time: `observedAt`, else the modification time (ms since the epoch).
    pub t_ms: i64,
    /// Whether `t_ms` is an `observedAt`.
    pub observed: bool,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// The value when it is a number (aggregations read only this).
    pub num: Option<f64>,
    /// The instance without the members kept in columns, as JSON; None for `{"type":"Property","value":num}`,
    /// the common case, which then costs no document at all.
    pub doc: Option<String>,
    /// When a transient instance stops existing (its `expiresAt`, ms since the epoch; also kept in `doc`).
    pub expires_ms: Option<i64>,
}

/// An attribute instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredInstance {
    pub iid: i64,
    pub inst: NewInstance,
}

/// One history: an attribute (and datasetId) of an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub sid: i64,
    pub attr: String,
    pub dataset: String,
}

/// An entity that has a temporal history, with its (expanded) types.
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalEntity {
    pub id: String,
    pub types: Vec<String>,
}

/// Which time of an instance a temporal query reads (`timeproperty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeProperty {
    #[default]
    ObservedAt,
    CreatedAt,
    ModifiedAt,
}

/// A range of instance times: `from` inclusive, `to` exclusive (ms since the epoch; None: open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub prop: TimeProperty,
}

/// Instances of a series to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The first n in time order.
    First(usize),
    /// The last n (`lastN`), returned in time order.
    Last(usize),
}

/// Aggregates of the instances of one series in one time bucket. Numeric aggregates cover numeric values only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// All instances.
    pub count: u64,
    /// Distinct values.
    pub distinct: u64,
    /// Numeric instances.
    pub numeric: u64,
    pub sum: f64,
    pub sumsq: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Candidate selection of temporal entities (any-of lists; None: no condition).
#[derive(Debug, Clone, Default)]
pub struct TemporalSelect {
    pub ids: Option<Vec<String>>,
    pub types: Option<Vec<String>>,
    /// Keyset paging: entities with ids after this one.
    pub after: Option<String>,
    pub limit: usize,
}

#[async_trait]
pub trait TemporalStore: Send + Sync + 'static {
    /// Entities with a history, in id order, from `sel.after` on, at most `sel.limit`.
    async fn temporal_entities(
        &self,
        tenant: &str,
        sel: &TemporalSelect,
    ) -> Result<Vec<TemporalEntity>, StoreError>;

    /// The series of an entity (all, or those of these expanded attribute names), by attribute and datasetId.
    async fn temporal_series(
        &self,
        tenant: &str,
        entity: &str,
        attrs: Option<&[String]>,
    ) -> Result<Vec<Series>, StoreError>;

    /// Instances of each of the series `sids` within `range`, in time order; instances of transient attributes
    /// are left out once due.
    async fn temporal_instances(
        &self,
        tenant: &str,
        sids: &[i64],
        range: TimeRange,
        take: Take,
    ) -> Result<Vec<Vec<StoredInstance>>, StoreError>;

    /// Per series, the aggregates of each bucket `[start, end)` (by `prop`). The distinct count reads every
    /// instance's document, so it is computed only when `distinct` asks for it (0 otherwise).
    async fn temporal_aggregate(
        &self,
        tenant: &str,
        sids: &[i64],
        prop: TimeProperty,
        buckets: &[(i64, i64)],
        distinct: bool,
    ) -> Result<Vec<Vec<Bucket>>, StoreError>;

    /// Add instances to an entity's history (creating it with these types, or giving it these types).
    async fn temporal_append(
        &self,
        tenant: &str,
        entity: &str,
        types: &[String],
        instances: Vec<NewInstance>,
    ) -> Result<(), StoreError>;

    /// Remove an entity's whole history; false when it had none.
    async fn temporal_delete_entity(&self, tenant: &str, entity: &str) -> Result<bool, StoreError>;

    /// Remove an attribute's history: one datasetId ("" the default), or every one (None); false when none.
    async fn temporal_delete_attr(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        dataset: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Replace one instance of an attribute (keeping its id); false when it does not exist.
    async fn temporal_replace_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
        with: NewInstance,
    ) -> Result<bool, StoreError>;

    /// The instance `iid` of an attribute of an entity.
    async fn temporal_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<Option<StoredInstance>, StoreError>;

    /// Remove one instance; false when it does not exist.
    async fn temporal_delete_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<bool, StoreError>;

    /// Remove the instances of transient attributes whose `expiresAt` is at or before `now_ms` (any tenant);
    /// returns how many went.
    async fn temporal_expire(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Remove at most `batch` instances older than `before_ms` of entities of type `type_iri` (any tenant);
    /// returns how many went. Called repeatedly by a background task, so writes are never held up for long.
    async fn temporal_retain(
        &self,
        type_iri: &str,
        before_ms: i64,
        batch: usize,
    ) -> Result<u64, StoreError>;
}

/// The instance id of instance number `iid`.
pub fn instance_id(iid: i64) -> String {
    format!("{INSTANCE_PREFIX}{iid}")
}

/// The number of an instance id (None: not one of ours).
pub fn instance_number(id: &str) -> Option<i64> {
    id.strip_prefix(INSTANCE_PREFIX)?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

fn ms_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(parse_datetime)
        .map(|t| t.as_millisecond())
}

/// A time as NGSI-LD DateTime: whole seconds without a fraction (as clients usually write them), else with
/// milliseconds.
pub fn datetime_of(ms: i64) -> Value {
    let Ok(t) = jiff::Timestamp::from_millisecond(ms) else {
        return Value::Null;
    };
    if ms.rem_euclid(1000) == 0 {
        Value::String(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    } else {
        Value::String(format_datetime(t))
    }
}

impl NewInstance {
    /// An instance of attribute `attr` in the broker's stored form; `now_ms` stands in for missing times.
    pub fn from_stored(attr: &str, inst: &Value, now_ms: i64) -> Result<NewInstance, StoreError> {
        let obj = inst
            .as_object()
            .ok_or_else(|| StoreError::Other("an attribute instance is not an object".into()))?;
        let modified_ms = ms_of(obj.get("modifiedAt")).unwrap_or(now_ms);
        let created_ms = ms_of(obj.get("createdAt")).unwrap_or(modified_ms);
        let observed_ms = ms_of(obj.get("observedAt"));
        let dataset = obj
            .get("datasetId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut rest: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| !COLUMN_MEMBERS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let kind = rest
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("Property");
        let num = (kind == "Property")
            .then(|| rest.get("value").and_then(Value::as_f64))
            .flatten();
        let plain = num.is_some() && rest.len() == 2 && rest.contains_key("type");
        // A plain number is rebuilt from `num`; anything else keeps its document.
        let doc = if plain {
            None
        } else {
            if !rest.contains_key("type") {
                rest.insert("type".into(), Value::String("Property".into()));
            }
            Some(serde_json::to_string(&rest).map_err(|e| StoreError::Other(e.to_string()))?)
        };
        Ok(NewInstance {
            attr: attr.to_string(),
            dataset,
            t_ms: observed_ms.unwrap_or(modified_ms),
            observed: observed_ms.is_some(),
            created_ms,
            modified_ms,
            num,
            doc,
            expires_ms: ms_of(obj.get("expiresAt")),
        })
    }

    /// The time `prop` reads.
    pub fn time(&self, prop: TimeProperty) -> i64 {
        match prop {
            TimeProperty::ObservedAt => self.t_ms,
            TimeProperty::CreatedAt => self.created_ms,
            TimeProperty::ModifiedAt => self.modified_ms,
        }
    }
}

impl StoredInstance {
    /// The instance in the broker's stored form, with `instanceId`, `observedAt`, `datasetId` and the system
    /// times.
    pub fn to_stored(&self) -> Result<Value, StoreError> {
        let i = &self.inst;
        let mut obj: Map<String, Value> = match &i.doc {
            Some(d) => serde_json::from_str(d).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => {
                let mut m = Map::new();
                m.insert("type".into(), Value::String("Property".into()));
                m.insert("value".into(), i.num.map(number).unwrap_or(Value::Null));
                m
            }
        };
        if i.observed {
            obj.insert("observedAt".into(), datetime_of(i.t_ms));
        }
        if !i.dataset.is_empty() {
            obj.insert("datasetId".into(), Value::String(i.dataset.clone()));
        }
        obj.insert("instanceId".into(), Value::String(instance_id(self.iid)));
        obj.insert("createdAt".into(), datetime_of(i.created_ms));
        obj.insert("modifiedAt".into(), datetime_of(i.modified_ms));
        Ok(Value::Object(obj))
    }
}

/// A number as JSON: integral values stay integers (`21` rather than `21.0`).
pub fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// The attribute instances an entity change creates: every instance of `after` that `before` does not hold
/// as it is (new attributes, new values, new metadata). Removed attributes add nothing: their history stays.
pub fn changed_instances(
    before: Option<&Entity>,
    after: &Entity,
    now_ms: i64,
) -> Result<Vec<NewInstance>, StoreError> {
    let mut out = Vec::new();
    for name in misto_ngsild::entity::attribute_names(after) {
        let Some(list) = after.get(name).and_then(Value::as_array) else {
            continue;
        };
        let old = before.and_then(|b| b.get(name)).and_then(Value::as_array);
        for inst in list {
            if old.is_some_and(|o| o.contains(inst)) {
                continue;
            }
            out.push(NewInstance::from_stored(name, inst, now_ms)?);
        }
    }
    Ok(out)
}

/// The types of an entity as stored.
pub fn entity_types(e: &Entity) -> Vec<String> {
    misto_ngsild::entity::types(e)
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_numbers_cost_no_document_and_come_back() {
        let i = json!({"type": "Property", "value": 21.5, "observedAt": "2024-01-01T10:00:00.000Z",
            "createdAt": "2024-01-01T10:00:01.000Z", "modifiedAt": "2024-01-01T10:00:02.000Z"});
        let n = NewInstance::from_stored("urn:a", &i, 0).unwrap();
        assert_eq!(n.doc, None);
        assert_eq!(n.num, Some(21.5));
        assert!(n.observed);
        let back = StoredInstance { iid: 7, inst: n }.to_stored().unwrap();
        assert_eq!(back["value"], json!(21.5));
        assert_eq!(back["observedAt"], json!("2024-01-01T10:00:00Z"));
        assert_eq!(back["instanceId"], json!("urn:ngsi-ld:instance:7"));
        assert_eq!(instance_number("urn:ngsi-ld:instance:7"), Some(7));
    }

    #[test]
    fn other_instances_keep_their_members() {
        let i = json!({"type": "Relationship", "object": "urn:x", "datasetId": "urn:d",
            "modifiedAt": "2024-01-01T10:00:02.000Z", "urn:sub": {"type": "Property", "value": 1}});
        let n = NewInstance::from_stored("urn:a", &i, 0).unwrap();
        assert_eq!(n.dataset, "urn:d");
        assert!(!n.observed);
        let back = StoredInstance { iid: 1, inst: n }.to_stored().unwrap();
        assert_eq!(back["object"], json!("urn:x"));
        assert_eq!(back["urn:sub"]["value"], json!(1));
        assert_eq!(back["datasetId"], json!("urn:d"));
        assert!(back.get("observedAt").is_none());
    }
}
