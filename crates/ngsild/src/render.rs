//! Rendering stored entities in the NGSI-LD representations: normalized, concise, keyValues and GeoJSON.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::context::Context;
use crate::entity::{attribute_names, value_member, Entity, INSTANCE_MEMBERS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

/// What to include and how.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub format: Format,
    pub sys_attrs: bool,
    /// Expanded attribute names to keep (`attrs`/`pick`); None keeps all.
    pub attrs: Option<HashSet<String>>,
    /// Expanded attribute names to drop (`omit`).
    pub omit: HashSet<String>,
    /// `pick`/`omit` may name `id` and `type` too.
    pub pick_id: bool,
    pub pick_type: bool,
    /// Language preference (`lang`): tags in order, `*` for any.
    pub lang: Option<Vec<String>>,
    /// Only attribute instances with one of these datasetIds (`@none`: the default instance).
    pub dataset_ids: Option<Vec<String>>,
    /// How Linked Entities reached through a Relationship (expanded name) are rendered when the projection
    /// gave it a nested one (`rel{a,b}`, §4.21); see [`RenderOptions::for_linked`].
    pub linked: HashMap<String, RenderOptions>,
}

impl RenderOptions {
    pub fn new(format: Format) -> Self {
        RenderOptions {
            format,
            pick_id: true,
            pick_type: true,
            ..Default::default()
        }
    }

    /// The options for Linked Entities reached through the Relationship `rel`: its nested projection, or
    /// these options without any projection (a projection names members of the entity it is given for).
    pub fn for_linked(&self, rel: &str) -> RenderOptions {
        match self.linked.get(rel) {
            Some(o) => o.clone(),
            None => self.unprojected(),
        }
    }

    /// These options without `attrs`, `pick`, `omit` or nested projections.
    pub fn unprojected(&self) -> RenderOptions {
        RenderOptions {
            attrs: None,
            omit: HashSet::new(),
            pick_id: true,
            pick_type: true,
            linked: HashMap::new(),
            ..self.clone()
        }
    }

    /// Whether the attribute (expanded name) is rendered at all.
    pub fn keeps(&self, name: &str) -> bool {
        self.attrs.as_ref().is_none_or(|k| k.contains(name)) && !self.omit.contains(name)
    }
}

/// Render one stored entity.
pub fn render_entity(e: &Entity, ctx: &Context, opts: &RenderOptions) -> Value {
    let mut out = Map::new();
    if opts.pick_id {
        if let Some(id) = e.get("id") {
            out.insert("id".into(), id.clone());
        }
    }
    if opts.pick_type {
        if let Some(t) = e.get("type") {
            out.insert("type".into(), compact_types(t, ctx));
        }
    }
    if let Some(scope) = e.get("scope") {
        out.insert("scope".into(), one_or_many(scope));
    }
    // The entity's system attributes are members of the entity in every format, keyValues included (only
    // attribute values lose their metadata there).
    if opts.sys_attrs {
        for k in ["createdAt", "modifiedAt"] {
            if let Some(v) = e.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
    }
    // expiresAt is a system attribute (§6.3.11): shown with sysAttrs only.
    if opts.sys_attrs {
        if let Some(v) = e.get("expiresAt") {
            out.insert("expiresAt".into(), v.clone());
        }
    }
    for name in attribute_names(e) {
        if !opts.keeps(name) {
            continue;
        }
        let instances = selected_instances(e, name, opts);
        if instances.is_empty() {
            continue;
        }
        let short = ctx.compact(name);
        let rendered = render_attribute(&instances, ctx, opts);
        out.insert(short, rendered);
    }
    Value::Object(out)
}

/// The instances of an attribute that `datasetId` selects, in stored order.
pub fn selected_instances<'a>(e: &'a Entity, name: &str, opts: &RenderOptions) -> Cow<'a, [Value]> {
    let Some(instances) = e.get(name).and_then(Value::as_array) else {
        return Cow::Borrowed(&[]);
    };
    match &opts.dataset_ids {
        None => Cow::Borrowed(instances.as_slice()),
        Some(wanted) => Cow::Owned(
            instances
                .iter()
                .filter(|i| {
                    let ds = i
                        .get("datasetId")
                        .and_then(Value::as_str)
                        .unwrap_or("@none");
                    wanted.iter().any(|w| w == ds)
                })
                .cloned()
                .collect(),
        ),
    }
}

/// Render the instances of one attribute.
pub fn render_attribute(instances: &[Value], ctx: &Context, opts: &RenderOptions) -> Value {
    match opts.format {
        Format::KeyValues => {
            if instances.len() == 1 && instances[0].get("datasetId").is_none() {
                simplified_value(&instances[0], ctx, opts)
            } else {
                // Several instances: a dataset map keyed by datasetId, "@none" for the default (§4.5.4).
                let mut map = Map::new();
                for i in instances {
                    let key = i
                        .get("datasetId")
                        .and_then(Value::as_str)
                        .unwrap_or("@none")
                        .to_string();
                    map.insert(key, simplified_value(i, ctx, opts));
                }
                let mut out = Map::new();
                out.insert("dataset".into(), Value::Object(map));
                Value::Object(out)
            }
        }
        _ => {
            if instances.len() == 1 {
                render_instance(&instances[0], ctx, opts, false)
            } else {
                Value::Array(
                    instances
                        .iter()
                        .map(|i| render_instance(i, ctx, opts, true))
                        .collect(),
                )
            }
        }
    }
}

fn instance_kind(i: &Value) -> &str {
    i.get("type").and_then(Value::as_str).unwrap_or("Property")
}

/// The language-selected string of a languageMap, per `lang`.
fn pick_language<'a>(
    map: &'a Map<String, Value>,
    langs: &[String],
) -> Option<(&'a str, &'a Value)> {
    for l in langs {
        if l == "*" {
            return map.iter().next().map(|(k, v)| (k.as_str(), v));
        }
        // Tags compare case-insensitively (RFC 5646).
        if let Some((k, v)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(l)) {
            return Some((k.as_str(), v));
        }
        // "en" matches "en-GB".
        if let Some((k, v)) = map.iter().find(|(k, _)| {
            k.split('-')
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case(l))
        }) {
            return Some((k.as_str(), v));
        }
        // "nl-BE" falls back to "nl" (RFC 4647 lookup truncates the range).
        let mut range = l.as_str();
        while let Some((shorter, _)) = range.rsplit_once('-') {
            range = shorter;
            if let Some((k, v)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(range)) {
                return Some((k.as_str(), v));
            }
        }
    }
    map.get_key_value("@none")
        .or_else(|| map.iter().next())
        .map(|(k, v)| (k.as_str(), v))
}

fn compact_vocab(v: &Value, ctx: &Context) -> Value {
    match v {
        Value::String(s) => Value::String(ctx.compact(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| compact_vocab(x, ctx)).collect()),
        other => other.clone(),
    }
}

/// keyValues value of an instance.
fn simplified_value(i: &Value, ctx: &Context, opts: &RenderOptions) -> Value {
    let kind = instance_kind(i);
    let member = value_member(kind).unwrap_or("value");
    let v = i.get(member).cloned().unwrap_or(Value::Null);
    // Members that would read back as another kind keep their key (§4.5.4): {"vocab": …}, {"json": …}.
    let wrap = |key: &str, v: Value| {
        let mut m = Map::new();
        m.insert(key.into(), v);
        Value::Object(m)
    };
    match kind {
        "VocabProperty" => wrap("vocab", compact_vocab(&v, ctx)),
        "JsonProperty" => wrap("json", v),
        // Simplified, a ListRelationship is the array of its object URIs (§4.5.4).
        "ListRelationship" => object_uris(v),
        "LanguageProperty" => match (&opts.lang, v.as_object()) {
            (Some(langs), Some(map)) => pick_language(map, langs)
                .map(|(_, t)| t.clone())
                .unwrap_or(Value::Null),
            _ => {
                let mut m = Map::new();
                m.insert("languageMap".into(), v);
                Value::Object(m)
            }
        },
        _ => v,
    }
}

/// Normalized or concise rendering of an instance (or sub-attribute).
fn render_instance(i: &Value, ctx: &Context, opts: &RenderOptions, in_array: bool) -> Value {
    let Some(obj) = i.as_object() else {
        return i.clone();
    };
    let mut kind = instance_kind(i).to_string();
    let member = value_member(&kind).unwrap_or("value");
    let mut out = Map::new();
    let mut value = obj.get(member).cloned().unwrap_or(Value::Null);
    let mut value_key = member;
    let mut lang_tag: Option<String> = None;
    if kind == "LanguageProperty" {
        if let (Some(langs), Some(map)) = (&opts.lang, value.as_object()) {
            if let Some((tag, text)) = pick_language(map, langs) {
                lang_tag = Some(tag.to_string());
                value = text.clone();
                value_key = "value";
                kind = "Property".into();
            }
        }
    }
    if kind == "VocabProperty" {
        value = compact_vocab(&value, ctx);
    }
    let concise = opts.format == Format::Concise;
    // A Property holding GeoJSON keeps its type in concise form, or it would read back as a GeoProperty.
    if !concise || (kind == "Property" && crate::entity::is_geojson_geometry(&value)) {
        out.insert("type".into(), Value::String(kind.clone()));
    }
    out.insert(value_key.into(), value);
    if let Some(tag) = lang_tag {
        out.insert("lang".into(), Value::String(tag));
    }
    for k in ["observedAt", "unitCode", "datasetId"] {
        if let Some(v) = obj.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(ot) = obj.get("objectType") {
        out.insert("objectType".into(), compact_vocab(ot, ctx));
    }
    if let Some(id) = obj.get("entityIdSealed") {
        out.insert("entityIdSealed".into(), id.clone());
    }
    if let Some(t) = obj.get("entityTypeSealed") {
        out.insert("entityTypeSealed".into(), compact_vocab(t, ctx));
    }
    if opts.sys_attrs {
        for k in ["createdAt", "modifiedAt", "expiresAt"] {
            if let Some(v) = obj.get(k) {
                out.insert(k.into(), v.clone());
            }
        }
    }
    let mut has_subattrs = false;
    for (k, sub) in obj {
        if INSTANCE_MEMBERS.contains(&k.as_str()) {
            continue;
        }
        has_subattrs = true;
        out.insert(ctx.compact(k), render_instance(sub, ctx, opts, false));
    }
    if concise && !in_array && !has_subattrs && out.len() == 1 {
        // Bare value form, where it cannot be mistaken for an attribute object when read back.
        let v = out.get(value_key).cloned().unwrap_or(Value::Null);
        match kind.as_str() {
            "Property" if !value_is_ambiguous(&v) => return v,
            "GeoProperty" => return v,
            _ => {}
        }
    }
    Value::Object(out)
}

/// A Property value that, written bare in concise form, would be read back as something else.
fn value_is_ambiguous(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            o.contains_key("type")
                || crate::entity::ATTRIBUTE_KINDS
                    .iter()
                    .any(|(_, m)| o.contains_key(*m))
        }
        Value::Array(a) => a.iter().any(value_is_ambiguous),
        Value::Null => true,
        _ => false,
    }
}

fn one_or_many(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.len() == 1 => a[0].clone(),
        other => other.clone(),
    }
}

/// Entity types compacted: a string for one, an array for several.
pub fn compact_types(t: &Value, ctx: &Context) -> Value {
    match t {
        Value::Array(a) if a.len() == 1 => Value::String(ctx.compact(a[0].as_str().unwrap_or(""))),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| Value::String(ctx.compact(s)))
                .collect(),
        ),
        Value::String(s) => Value::String(ctx.compact(s)),
        other => other.clone(),
    }
}

/// GeoJSON Feature of an entity (§4.5.16): geometry from `geoproperty` (expanded name), the rest as properties.
pub fn render_feature(e: &Entity, ctx: &Context, opts: &RenderOptions, geoproperty: &str) -> Value {
    let rendered = render_entity(e, ctx, opts);
    let mut props = match rendered {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let id = props.remove("id").unwrap_or(Value::Null);
    // The default instance's geometry (the first instance when none is default); null when the property is
    // missing or holds no GeoJSON geometry (§4.5.16).
    let geometry = e
        .get(geoproperty)
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|i| i.get("datasetId").is_none())
                .or_else(|| a.first())
        })
        .and_then(|i| i.get("value"))
        .filter(|v| crate::entity::is_geojson_geometry(v))
        .cloned()
        .unwrap_or(Value::Null);
    let mut f = Map::new();
    f.insert("id".into(), id);
    f.insert("type".into(), "Feature".into());
    f.insert("geometry".into(), geometry);
    f.insert("properties".into(), Value::Object(props));
    Value::Object(f)
}

/// An objectList as the URIs of its entries (`{"object": uri}` or `uri`): a simplified ListRelationship.
pub(crate) fn object_uris(list: Value) -> Value {
    match list {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|x| match x {
                    Value::Object(mut o) => o.remove("object").unwrap_or(Value::Object(o)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}
