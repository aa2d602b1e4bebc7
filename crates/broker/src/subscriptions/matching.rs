//! Which entity changes a subscription is notified of (§5.8.6, Table 5.2.12-1 notificationTrigger), and what
//! each notification's data item holds (§5.8.6: the entity in the subscription's format; deleted attributes
//! as NGSI-LD Null; `showChanges` adds the previous values).

use std::collections::HashSet;

use misto_ngsild::entity::{attribute_names, types, Entity};
use misto_ngsild::render::{render_attribute, render_entity, Format, RenderOptions};
use misto_ngsild::{Context, NgsiError, Result};
use misto_store::EntityQuery;
use serde_json::{json, Map, Value};

use super::{Record, DEFAULT_TRIGGERS};
use crate::query::{compile, EntityQueryParams};

const NULL: &str = "urn:ngsi-ld:null";

/// A notification endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: String,
    pub accept: String,
    pub receiver_info: Vec<(String, String)>,
    pub notifier_info: Vec<(String, String)>,
}

/// A subscription ready to be matched against changes.
pub struct Compiled {
    pub tenant: String,
    pub id: String,
    /// The context names are expanded with and notifications are compacted with.
    pub ctx: Context,
    selectors: Vec<EntityQuery>,
    watched: Option<HashSet<String>>,
    triggers: HashSet<String>,
    pub active: bool,
    pub expires_at: Option<jiff::Timestamp>,
    pub throttling: Option<f64>,
    pub time_interval: Option<f64>,
    pub render: RenderOptions,
    pub show_changes: bool,
    pub endpoint: Endpoint,
    /// The parameters of a query for the periodic notifications of `timeInterval` subscriptions.
    pub periodic: Vec<EntityQueryParams>,
}

/// What a subscription's entity selectors pin down, for indexing: every selector names ids, or every
/// selector names types, or neither.
#[derive(Debug, PartialEq)]
pub enum SelectionKeys {
    Ids(Vec<String>),
    Types(Vec<String>),
    Any,
}

/// What changed in one entity.
#[derive(Debug, Default)]
pub struct ChangeSet {
    pub created: bool,
    pub deleted: bool,
    pub attrs_created: Vec<String>,
    pub attrs_updated: Vec<String>,
    pub attrs_deleted: Vec<String>,
    /// Something other than attributes changed (type, scope).
    pub entity_only: bool,
    /// Attributes that lost some of their instances (by datasetId) but not all: the lost instances.
    pub instances_deleted: Vec<(String, Vec<Value>)>,
}

fn dataset_of(inst: &Value) -> Option<&Value> {
    inst.get("datasetId")
}

impl ChangeSet {
    pub fn of(before: Option<&Entity>, after: Option<&Entity>) -> ChangeSet {
        let mut c = ChangeSet::default();
        match (before, after) {
            (None, Some(a)) => {
                c.created = true;
                c.attrs_created = attribute_names(a).cloned().collect();
            }
            (Some(b), None) => {
                c.deleted = true;
                c.attrs_deleted = attribute_names(b).cloned().collect();
            }
            (Some(b), Some(a)) => {
                for n in attribute_names(a) {
                    match b.get(n) {
                        None => c.attrs_created.push(n.clone()),
                        Some(old) if Some(old) != a.get(n) => {
                            let (Some(old), Some(new)) =
                                (old.as_array(), a.get(n).and_then(Value::as_array))
                            else {
                                c.attrs_updated.push(n.clone());
                                continue;
                            };
                            // Instances whose datasetId is gone were deleted (an attributeDeleted of
                            // those instances); the attribute was updated only if what remains changed.
                            let (kept, lost): (Vec<&Value>, Vec<&Value>) = old
                                .iter()
                                .partition(|i| new.iter().any(|j| dataset_of(j) == dataset_of(i)));
                            if !lost.is_empty() {
                                c.instances_deleted
                                    .push((n.clone(), lost.into_iter().cloned().collect()));
                            }
                            if kept.len() != new.len() || kept.iter().zip(new).any(|(k, j)| *k != j)
                            {
                                c.attrs_updated.push(n.clone());
                            }
                        }
                        _ => {}
                    }
                }
                for n in attribute_names(b) {
                    if !a.contains_key(n) {
                        c.attrs_deleted.push(n.clone());
                    }
                }
                c.entity_only = b.get("type") != a.get("type") || b.get("scope") != a.get("scope");
            }
            (None, None) => {}
        }
        c
    }
}

fn opt_names(v: Option<&Value>, ctx: &Context) -> Option<HashSet<String>> {
    v.and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(|n| ctx.expand(n))
            .collect()
    })
}

impl Compiled {
    pub fn build(tenant: &str, id: &str, rec: &Record, ctx: &Context) -> Result<Compiled> {
        let d = &rec.doc;
        let geo_json = d.get("geoQ").cloned();
        let base = EntityQueryParams {
            // A q may come percent-encoded, as it would stand in a URL.
            q: d.get("q").and_then(Value::as_str).map(|q| {
                percent_encoding::percent_decode_str(q)
                    .decode_utf8_lossy()
                    .into_owned()
            }),
            geo_json,
            scope_q: d.get("scopeQ").and_then(Value::as_str).map(str::to_string),
            ..Default::default()
        };
        let mut params = Vec::new();
        match d.get("entities").and_then(Value::as_array) {
            Some(list) => {
                for sel in list {
                    params.push(EntityQueryParams {
                        ids: sel
                            .get("id")
                            .and_then(Value::as_str)
                            .map(|s| vec![s.to_string()]),
                        id_pattern: sel
                            .get("idPattern")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        types: sel.get("type").and_then(Value::as_str).map(str::to_string),
                        ..base.clone()
                    });
                }
            }
            None => params.push(base.clone()),
        }
        let selectors = params
            .iter()
            .map(|p| compile(p, ctx, 0).map(|c| c.store))
            .collect::<Result<Vec<_>>>()?;
        let triggers: HashSet<String> = match d.get("notificationTrigger").and_then(Value::as_array)
        {
            Some(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            None => DEFAULT_TRIGGERS.iter().map(|s| s.to_string()).collect(),
        };
        let n = d
            .get("notification")
            .and_then(Value::as_object)
            .ok_or_else(|| NgsiError::bad_data("notification is required"))?;
        let format = match n.get("format").and_then(Value::as_str) {
            Some("keyValues" | "simplified") => Format::KeyValues,
            Some("concise") => Format::Concise,
            _ => Format::Normalized,
        };
        let mut render = RenderOptions::new(format);
        render.sys_attrs = n.get("sysAttrs") == Some(&Value::Bool(true));
        render.attrs =
            opt_names(n.get("attributes"), ctx).or_else(|| opt_names(n.get("pick"), ctx));
        if let Some(omit) = n.get("omit").and_then(Value::as_array) {
            let has = |m: &str| omit.iter().any(|p| p == m);
            render.pick_id = !has("id");
            render.pick_type = !has("type");
            render.omit = opt_names(n.get("omit"), ctx).unwrap_or_default();
        }
        if let Some(pick) = n.get("pick").and_then(Value::as_array) {
            let has = |m: &str| pick.iter().any(|p| p == m);
            render.pick_id = has("id");
            render.pick_type = has("type");
        }
        render.lang = d
            .get("lang")
            .and_then(Value::as_str)
            .map(|l| l.split(',').map(|s| s.trim().to_string()).collect());
        render.dataset_ids = d.get("datasetId").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
        let ep = n.get("endpoint").cloned().unwrap_or(Value::Null);
        let endpoint = Endpoint {
            uri: ep["uri"].as_str().unwrap_or_default().to_string(),
            accept: ep["accept"]
                .as_str()
                .unwrap_or("application/json")
                .to_string(),
            receiver_info: key_value_pairs(&ep["receiverInfo"]),
            notifier_info: key_value_pairs(&ep["notifierInfo"]),
        };
        Ok(Compiled {
            tenant: tenant.to_string(),
            id: id.to_string(),
            ctx: ctx.clone(),
            selectors,
            watched: opt_names(d.get("watchedAttributes"), ctx),
            triggers,
            active: d.get("isActive") != Some(&Value::Bool(false)),
            expires_at: d
                .get("expiresAt")
                .and_then(Value::as_str)
                .and_then(misto_ngsild::validate::parse_datetime),
            throttling: d.get("throttling").and_then(Value::as_f64),
            time_interval: d.get("timeInterval").and_then(Value::as_f64),
            render,
            show_changes: n.get("showChanges") == Some(&Value::Bool(true)),
            endpoint,
            periodic: params,
        })
    }

    /// Is the subscription in force now (active and not expired)?
    pub fn in_force(&self, now: jiff::Timestamp) -> bool {
        self.active && self.expires_at.is_none_or(|x| x > now)
    }

    /// The ids or types every entity this subscription selects has one of (deduplicated).
    pub fn selection_keys(&self) -> SelectionKeys {
        let all = |f: fn(&EntityQuery) -> Option<&Vec<String>>| -> Option<Vec<String>> {
            let mut keys = Vec::new();
            for s in &self.selectors {
                keys.extend(f(s)?.iter().cloned());
            }
            keys.sort_unstable();
            keys.dedup();
            Some(keys)
        };
        if self.selectors.is_empty() {
            return SelectionKeys::Any;
        }
        if let Some(ids) = all(|s| s.ids.as_ref()) {
            return SelectionKeys::Ids(ids);
        }
        if let Some(ts) = all(|s| s.types.as_ref()) {
            return SelectionKeys::Types(ts);
        }
        SelectionKeys::Any
    }

    /// Does the entity satisfy the subscription's selection (entities, q, geoQ, scopeQ)?
    pub fn selects(&self, e: &Entity) -> bool {
        let id = e.get("id").and_then(Value::as_str).unwrap_or_default();
        let have = types(e);
        self.selectors.iter().any(|s| {
            s.ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == id))
                && s.types
                    .as_ref()
                    .is_none_or(|ts| ts.iter().any(|t| have.contains(&t.as_str())))
                && s.filter.as_ref().is_none_or(|f| f(e))
        })
    }

    fn watches(&self, attrs: &[String]) -> Vec<String> {
        attrs
            .iter()
            .filter(|a| self.watched.as_ref().is_none_or(|w| w.contains(*a)))
            .cloned()
            .collect()
    }

    /// The notification data item for a change, or None when the subscription is not notified of it.
    pub fn notify(
        &self,
        before: Option<&Entity>,
        after: Option<&Entity>,
        at: &str,
    ) -> Option<Value> {
        if self.time_interval.is_some() {
            return None;
        }
        let c = ChangeSet::of(before, after);
        let subject = after.or(before)?;
        if !self.selects(subject) {
            return None;
        }
        let on = |t: &str| self.triggers.contains(t);
        let created = self.watches(&c.attrs_created);
        let updated = self.watches(&c.attrs_updated);
        let mut deleted = self.watches(&c.attrs_deleted);
        let instance_names: Vec<String> =
            c.instances_deleted.iter().map(|(n, _)| n.clone()).collect();
        deleted.extend(self.watches(&instance_names));
        let any_watched = !created.is_empty() || !updated.is_empty() || !deleted.is_empty();
        let fires_deleted_attrs = on("attributeDeleted") && !deleted.is_empty();
        let fires = if c.created {
            (on("entityCreated") && (self.watched.is_none() || any_watched))
                || (on("attributeCreated") && !created.is_empty())
        } else if c.deleted {
            on("entityDeleted") || fires_deleted_attrs
        } else {
            (on("entityUpdated") && (any_watched || (self.watched.is_none() && c.entity_only)))
                || (on("attributeCreated") && !created.is_empty())
                || (on("attributeUpdated") && !updated.is_empty())
                || fires_deleted_attrs
        };
        if !fires {
            return None;
        }
        Some(self.data_item(before, after, &c, &deleted, fires_deleted_attrs, at))
    }

    fn shows(&self, name: &str) -> bool {
        self.render.attrs.as_ref().is_none_or(|a| a.contains(name))
            && !self.render.omit.contains(name)
    }

    fn data_item(
        &self,
        before: Option<&Entity>,
        after: Option<&Entity>,
        c: &ChangeSet,
        deleted_watched: &[String],
        deleted_fired: bool,
        at: &str,
    ) -> Value {
        let mut item = match after {
            Some(a) => match render_entity(a, &self.ctx, &self.render) {
                Value::Object(o) => o,
                _ => Map::new(),
            },
            None => {
                let b = before.cloned().unwrap_or_default();
                let mut m = Map::new();
                if self.render.pick_id {
                    m.insert("id".into(), b.get("id").cloned().unwrap_or(Value::Null));
                }
                if self.render.pick_type {
                    if let Some(t) = b.get("type") {
                        m.insert(
                            "type".into(),
                            misto_ngsild::render::compact_types(t, &self.ctx),
                        );
                    }
                }
                m.insert("deletedAt".into(), json!(at));
                if self.render.sys_attrs {
                    for k in ["createdAt", "modifiedAt"] {
                        if let Some(v) = b.get(k) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                }
                m
            }
        };
        // Deleted attributes appear as NGSI-LD Null (with their previous value when changes are shown).
        let shown_deleted: Vec<&String> = if self.show_changes {
            c.attrs_deleted.iter().collect()
        } else if deleted_fired {
            deleted_watched.iter().collect()
        } else {
            Vec::new()
        };
        for name in shown_deleted {
            // Instance deletions of attributes that remain are shown below, beside what remains.
            if !self.shows(name) || !c.attrs_deleted.contains(name) {
                continue;
            }
            let Some(old) = before.and_then(|b| b.get(name)).and_then(Value::as_array) else {
                continue;
            };
            let Some(inst) = old.first().and_then(Value::as_object) else {
                continue;
            };
            let kind = inst
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("Property");
            let key = self.ctx.compact(name);
            let v = match self.render.format {
                Format::KeyValues => json!(NULL),
                _ => {
                    let mut m = Map::new();
                    m.insert("type".into(), json!(kind));
                    match null_member(kind) {
                        ("languageMap", _) => {
                            m.insert("languageMap".into(), json!({"@none": NULL}))
                        }
                        (member, _) => m.insert(member.into(), json!(NULL)),
                    };
                    if self.render.sys_attrs {
                        for k in ["createdAt", "modifiedAt"] {
                            if let Some(v) = inst.get(k) {
                                m.insert(k.into(), v.clone());
                            }
                        }
                        m.insert("deletedAt".into(), json!(at));
                    }
                    if self.show_changes {
                        if let Some((pk, pv)) = previous(inst, &self.ctx) {
                            m.insert(pk.into(), pv);
                        }
                    }
                    Value::Object(m)
                }
            };
            item.insert(key, v);
        }
        // Deleted instances of attributes that keep others join the remaining instances as NGSI-LD Null
        // with their datasetId.
        if deleted_fired || self.show_changes {
            for (name, lost) in &c.instances_deleted {
                if !self.shows(name) || !(self.show_changes || deleted_watched.contains(name)) {
                    continue;
                }
                let key = self.ctx.compact(name);
                if self.render.format == Format::KeyValues {
                    // keyValues shows instances as {"dataset": {datasetId or @none: value}}.
                    let mut dataset = match item.remove(&key) {
                        Some(Value::Object(mut o))
                            if o.get("dataset").is_some_and(Value::is_object) =>
                        {
                            match o.remove("dataset") {
                                Some(Value::Object(d)) => d,
                                _ => Map::new(),
                            }
                        }
                        Some(v) => Map::from_iter([("@none".to_string(), v)]),
                        None => Map::new(),
                    };
                    for inst in lost {
                        let ds = dataset_of(inst).and_then(Value::as_str).unwrap_or("@none");
                        dataset.insert(ds.to_string(), json!(NULL));
                    }
                    item.insert(key, json!({ "dataset": dataset }));
                    continue;
                }
                let mut list = match item.remove(&key) {
                    Some(Value::Array(a)) => a,
                    Some(v) => vec![v],
                    None => Vec::new(),
                };
                for inst in lost {
                    let kind = inst
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("Property");
                    let mut m = Map::new();
                    m.insert("type".into(), json!(kind));
                    if let Some(d) = dataset_of(inst) {
                        m.insert("datasetId".into(), d.clone());
                    }
                    match null_member(kind) {
                        ("languageMap", _) => {
                            m.insert("languageMap".into(), json!({"@none": NULL}))
                        }
                        (member, _) => m.insert(member.into(), json!(NULL)),
                    };
                    if self.render.sys_attrs {
                        m.insert("deletedAt".into(), json!(at));
                    }
                    list.push(Value::Object(m));
                }
                item.insert(key, Value::Array(list));
            }
        }
        if self.show_changes && self.render.format != Format::KeyValues {
            if let (Some(b), Some(_)) = (before, after) {
                for name in &c.attrs_updated {
                    let key = self.ctx.compact(name);
                    let Some(Value::Object(slot)) = item.get_mut(&key) else {
                        continue;
                    };
                    if let Some(inst) = b
                        .get(name)
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(Value::as_object)
                    {
                        if let Some((pk, pv)) = previous(inst, &self.ctx) {
                            slot.insert(pk.into(), pv);
                        }
                    }
                }
            }
        }
        Value::Object(item)
    }
}

/// The member that holds an attribute's value, by kind, and the member that shows its previous value.
fn null_member(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "Relationship" => ("object", "previousObject"),
        "LanguageProperty" => ("languageMap", "previousLanguageMap"),
        "JsonProperty" => ("json", "previousJson"),
        "VocabProperty" => ("vocab", "previousVocab"),
        "ListProperty" => ("valueList", "previousValueList"),
        "ListRelationship" => ("objectList", "previousObjectList"),
        _ => ("value", "previousValue"),
    }
}

/// The previous-value member of a stored attribute instance, rendered as in the normalized form.
fn previous(inst: &Map<String, Value>, ctx: &Context) -> Option<(&'static str, Value)> {
    let kind = inst
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Property");
    let (member, prev_key) = null_member(kind);
    let attr = render_attribute(
        &[Value::Object(inst.clone())],
        ctx,
        &RenderOptions::new(Format::Normalized),
    );
    attr.get(member).cloned().map(|v| (prev_key, v))
}

/// The pairs of a KeyValuePair array (receiverInfo, notifierInfo); validation has checked their shape.
pub(super) fn key_value_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    Some((
                        p["key"].as_str()?.to_string(),
                        p["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}
