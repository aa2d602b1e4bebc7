//! Parsing NGSI-LD entities and attributes (normalized or concise) into the broker's stored form.
//!
//! Stored form: a JSON object with `id`, `type` (array of expanded IRIs), optional `scope` (array),
//! `createdAt`/`modifiedAt`, optional `expiresAt`, and one member per attribute: its expanded IRI mapped to an
//! ARRAY of instances (one per `datasetId`). Each instance keeps its NGSI-LD members (`type`, `value`,
//! `object`, `observedAt`, …) and carries its sub-attributes as single objects under their expanded IRIs.

use serde_json::{json, Map, Value};

use crate::context::Context;
use crate::error::{NgsiError, Result};
use crate::validate::{check_name, is_uri, parse_datetime};

pub type Entity = Map<String, Value>;

/// The attribute kinds of NGSI-LD and the member that holds each one's value.
pub const ATTRIBUTE_KINDS: &[(&str, &str)] = &[
    ("Property", "value"),
    ("Relationship", "object"),
    ("GeoProperty", "value"),
    ("LanguageProperty", "languageMap"),
    ("VocabProperty", "vocab"),
    ("JsonProperty", "json"),
    ("ListProperty", "valueList"),
    ("ListRelationship", "objectList"),
];

/// Members of an attribute instance that are not sub-attributes.
pub const INSTANCE_MEMBERS: &[&str] = &[
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "instanceId",
    "objectType",
    "lang",
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousVocab",
    "previousJson",
    "previousValueList",
    "previousObjectList",
    "expiresAt",
    "entityIdSealed",
    "entityTypeSealed",
];

/// The Property carrying a W3C Data Integrity proof of the entity (§4.5.2.2).
pub const NGSILD_PROOF: &str = "https://uri.etsi.org/ngsi-ld/ngsildproof";

/// Attributes the core context defines as GeoProperties.
const CORE_GEO_PROPERTIES: &[&str] = &[
    "https://uri.etsi.org/ngsi-ld/location",
    "https://uri.etsi.org/ngsi-ld/observationSpace",
    "https://uri.etsi.org/ngsi-ld/operationSpace",
];

/// Entity members that are not attributes.
pub const ENTITY_MEMBERS: &[&str] = &[
    "id",
    "@id",
    "type",
    "@type",
    "scope",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "expiresAt",
    "@context",
];

/// Core terms that are members of attributes and would be misread as such if they named one (§4.5.1). Terms
/// such as `value` are left out: real data models (Smart Data Models' Device) name attributes so.
const NON_REIFIED_TERMS: &[&str] = &["datasetId", "instanceId", "observedAt"];

/// System-generated members: accepted on input but ignored.
const SYSTEM_MEMBERS: &[&str] = &["createdAt", "modifiedAt", "deletedAt", "instanceId"];

const GEOJSON_TYPES: &[&str] = &[
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
];

/// The value-holding member for an attribute kind.
pub fn value_member(kind: &str) -> Option<&'static str> {
    ATTRIBUTE_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, m)| *m)
}

/// `urn:ngsi-ld:null` marks deletion in merge-patch operations.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

const MAX_DEPTH: usize = 8;

/// Parses request bodies in the context of one request.
pub struct Parser<'a> {
    pub ctx: &'a Context,
    pub now: &'a str,
    /// Allow `urn:ngsi-ld:null` and `null` values (merge and update operations).
    pub allow_null: bool,
    /// Accept attribute fragments without a value (partial updates of metadata or sub-attributes).
    pub partial: bool,
    /// A merge (§5.5.12): `urn:ngsi-ld:null` inside a compound value removes that key.
    pub merge: bool,
}

/// Whether an NGSI-LD Null (or JSON null) sits anywhere inside a compound value.
fn nested_null(v: &Value) -> bool {
    let inner = |x: &Value| x.is_null() || x.as_str() == Some(NGSI_LD_NULL) || nested_null(x);
    match v {
        Value::Object(o) => o.values().any(inner),
        Value::Array(a) => a.iter().any(inner),
        _ => false,
    }
}

impl<'a> Parser<'a> {
    pub fn new(ctx: &'a Context, now: &'a str) -> Self {
        Parser {
            ctx,
            now,
            allow_null: false,
            partial: false,
            merge: false,
        }
    }

    /// A whole entity: `id` and `type` required.
    pub fn entity(&self, body: &Value) -> Result<Entity> {
        let obj = body
            .as_object()
            .ok_or_else(|| NgsiError::bad_data("an entity must be a JSON object"))?;
        let id = entity_id(obj)?;
        let types = self.entity_types(obj.get("type").or_else(|| obj.get("@type")))?;
        let mut out = Map::new();
        out.insert("id".into(), Value::String(id));
        out.insert("type".into(), Value::Array(types));
        if let Some(scope) = obj.get("scope") {
            out.insert("scope".into(), parse_scope(scope)?);
        }
        if let Some(exp) = obj.get("expiresAt") {
            out.insert("expiresAt".into(), parse_expires(exp)?);
        }
        out.insert("createdAt".into(), Value::String(self.now.to_string()));
        out.insert("modifiedAt".into(), Value::String(self.now.to_string()));
        for (name, attrs) in self.attributes(obj)? {
            out.insert(name, attrs);
        }
        Ok(out)
    }

    /// Entity types: a string or a non-empty array of strings, expanded.
    pub fn entity_types(&self, v: Option<&Value>) -> Result<Vec<Value>> {
        let raw: Vec<&str> = match v {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|t| {
                    t.as_str()
                        .ok_or_else(|| NgsiError::bad_data("entity type must be a string"))
                })
                .collect::<Result<_>>()?,
            Some(_) => {
                return Err(NgsiError::bad_data(
                    "entity type must be a string or a non-empty array of strings",
                ))
            }
            None => return Err(NgsiError::bad_data("the entity has no type")),
        };
        let mut out: Vec<Value> = Vec::with_capacity(raw.len());
        for t in raw {
            check_name(t).map_err(|e| NgsiError::bad_data(format!("invalid entity type: {e}")))?;
            if t.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(NgsiError::bad_data(format!(
                    "invalid entity type '{t}': a name starts with a letter (§4.6.2)"
                )));
            }
            let expanded = self.ctx.expand(t);
            // `id` and `type` are the core context's aliases of @id and @type, not names of types.
            if !is_uri(&expanded) || matches!(t, "id" | "type" | "@id" | "@type") {
                return Err(NgsiError::bad_data(format!(
                    "invalid entity type '{t}': it expands to '{expanded}', which is not an IRI"
                )));
            }
            let iri = Value::String(expanded);
            if !out.contains(&iri) {
                out.push(iri);
            }
        }
        Ok(out)
    }

    /// The attribute members of a body (entity members skipped), each expanded name → array of instances.
    pub fn attributes(&self, obj: &Map<String, Value>) -> Result<Vec<(String, Value)>> {
        let mut out = Vec::new();
        for (name, v) in obj {
            if ENTITY_MEMBERS.contains(&name.as_str()) {
                continue;
            }
            let instances = self.attribute(name, v)?;
            out.push((self.ctx.expand(name), Value::Array(instances)));
        }
        Ok(out)
    }

    /// One attribute, normalized or concise, possibly a multi-attribute array; returns its instances.
    pub fn attribute(&self, name: &str, v: &Value) -> Result<Vec<Value>> {
        check_name(name)
            .map_err(|e| NgsiError::bad_data(format!("invalid attribute name: {e}")))?;
        if matches!(name, "id" | "type" | "@id" | "@type") || NON_REIFIED_TERMS.contains(&name) {
            return Err(NgsiError::bad_data(format!(
                "'{name}' is a term of the NGSI-LD core and cannot be used as an attribute name"
            )));
        }
        let embeds_context = match v {
            Value::Array(a) => a.iter().any(|i| i.get("@context").is_some()),
            other => other.get("@context").is_some(),
        };
        if embeds_context {
            return Err(NgsiError::bad_data(format!(
                "attribute '{name}' carries its own @context: a request has one @context, at its top level"
            )));
        }
        let items: Vec<&Value> = match v {
            Value::Array(a) if !a.is_empty() && a.iter().all(looks_like_attribute) => {
                a.iter().collect()
            }
            other => vec![other],
        };
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        let expanded = self.ctx.expand(name);
        for item in items {
            let inst = self.instance(name, item, 0)?;
            // The core's location, observationSpace and operationSpace are GeoProperties (§4.7.1). Published
            // Smart Data Models examples declare some as Properties holding GeoJSON; those are tolerated.
            if CORE_GEO_PROPERTIES.contains(&expanded.as_str()) {
                let geo_value = inst.get("value").is_some_and(is_geojson_geometry);
                if let Some(k) = inst.get("type").and_then(Value::as_str) {
                    if k != "GeoProperty" && !geo_value {
                        return Err(NgsiError::bad_data(format!(
                            "attribute '{name}' is a GeoProperty of the NGSI-LD core, not a {k}"
                        )));
                    }
                }
            }
            let ds = inst.get("datasetId").cloned();
            if out.iter().any(|o| o.get("datasetId").cloned() == ds) {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{name}' has two instances with the same datasetId"
                )));
            }
            out.push(Value::Object(inst));
        }
        Ok(out)
    }

    /// One attribute instance (or sub-attribute) in normalized or concise form.
    pub fn instance(&self, name: &str, v: &Value, depth: usize) -> Result<Map<String, Value>> {
        if depth > MAX_DEPTH {
            return Err(NgsiError::bad_data(format!(
                "attribute '{name}' nests sub-attributes deeper than {MAX_DEPTH} levels"
            )));
        }
        let obj = match v {
            Value::Object(o) => o,
            Value::Null if self.allow_null => {
                let mut m = Map::new();
                m.insert("type".into(), "Property".into());
                m.insert("value".into(), NGSI_LD_NULL.into());
                return Ok(m);
            }
            Value::Null => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{name}' has a null value"
                )))
            }
            // Concise: a bare value is a Property.
            other => {
                if !self.merge && nested_null(other) {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': urn:ngsi-ld:null inside a value is only allowed in a merge"
                    )));
                }
                let mut m = Map::new();
                m.insert("type".into(), "Property".into());
                m.insert("value".into(), other.clone());
                self.stamp(&mut m);
                return Ok(m);
            }
        };
        let kind = match obj.get("type") {
            Some(Value::String(t)) if value_member(t).is_some() => t.clone(),
            Some(Value::String(t)) if GEOJSON_TYPES.contains(&t.as_str()) => {
                // Concise GeoProperty: the GeoJSON geometry itself.
                let mut m = Map::new();
                m.insert("type".into(), "GeoProperty".into());
                m.insert("value".into(), self.geo_value(name, v)?);
                self.stamp(&mut m);
                return Ok(m);
            }
            Some(Value::String(t)) => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{name}' has the unknown type '{t}'"
                )))
            }
            Some(_) => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{name}' has a type that is not a string"
                )))
            }
            None => match infer_kind(obj) {
                Some(k) => k.to_string(),
                None if self.partial && depth == 0 => String::new(),
                None => {
                    // Concise: an object without NGSI-LD members is a Property's structured value.
                    if !self.merge && nested_null(v) {
                        return Err(NgsiError::bad_data(format!(
                            "attribute '{name}': urn:ngsi-ld:null inside a value is only allowed in a merge"
                        )));
                    }
                    let mut m = Map::new();
                    m.insert("type".into(), "Property".into());
                    m.insert("value".into(), v.clone());
                    self.stamp(&mut m);
                    return Ok(m);
                }
            },
        };
        let member = value_member(&kind).unwrap_or("value");
        let mut out = Map::new();
        if !kind.is_empty() {
            out.insert("type".into(), Value::String(kind.clone()));
        }
        let raw = obj.get(member);
        let value = match raw {
            None if kind.is_empty() => Value::Null,
            None => {
                return Err(NgsiError::bad_data(format!(
                    "attribute '{name}' of type {kind} has no '{member}' member"
                )))
            }
            // JSON null is not NGSI-LD Null: JSON-LD expansion removes it, leaving no value (§5.2.1).
            Some(Value::Null) => {
                return Err(NgsiError::bad_data(format!(
                "attribute '{name}' has a null '{member}' (NGSI-LD Null is \"urn:ngsi-ld:null\")"
            )))
            }
            Some(Value::String(s)) if s == NGSI_LD_NULL => {
                if self.allow_null {
                    Value::String(s.clone())
                } else {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': urn:ngsi-ld:null is only allowed in merge operations"
                    )));
                }
            }
            Some(val) => {
                if kind == "Property" && !self.merge && nested_null(val) {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': urn:ngsi-ld:null inside a value is only allowed in a merge"
                    )));
                }
                self.kind_value(name, &kind, obj, val)?
            }
        };
        if !kind.is_empty() {
            out.insert(member.into(), value);
        }
        if kind == "GeoProperty"
            && out
                .get("value")
                .and_then(|v| v.get("type"))
                .and_then(Value::as_str)
                == Some("GeometryCollection")
        {
            return Err(NgsiError::bad_data(format!(
                "attribute '{name}': a GeometryCollection is not a GeoProperty value (§4.7)"
            )));
        }
        // Concise inference: a `value` that is a GeoJSON geometry makes a GeoProperty.
        if obj.get("type").is_none() && kind == "Property" {
            if let Some(val) = out.get("value") {
                if is_geojson_geometry(val) {
                    out.insert("type".into(), "GeoProperty".into());
                }
            }
        }
        for (k, sub) in obj {
            match k.as_str() {
                "type" => {}
                k if k == member => {}
                "observedAt" => {
                    // Offsets other than Z are kept as given: published Smart Data Models examples use them.
                    let s = sub
                        .as_str()
                        .filter(|s| parse_datetime(s).is_some())
                        .ok_or_else(|| {
                            NgsiError::bad_data(format!(
                                "attribute '{name}': observedAt must be an ISO 8601 date-time"
                            ))
                        })?;
                    out.insert("observedAt".into(), s.into());
                }
                "unitCode" if !matches!(kind.as_str(), "Property" | "ListProperty" | "") => {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': a {kind} has no unitCode (only Property and ListProperty do)"
                    )))
                }
                "previousValue" | "previousObject" | "previousLanguageMap" | "previousVocab"
                | "previousJson" | "previousValueList" | "previousObjectList" => {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': {k} is output-only (it appears in notifications)"
                    )))
                }
                "unitCode" => {
                    let s = sub.as_str().ok_or_else(|| {
                        NgsiError::bad_data(format!(
                            "attribute '{name}': unitCode must be a string"
                        ))
                    })?;
                    out.insert("unitCode".into(), s.into());
                }
                // "@none" names the default instance, which has no datasetId (§4.5.5).
                "datasetId" if sub.as_str() == Some("@none") => {}
                "datasetId" => {
                    let s = sub.as_str().filter(|s| is_uri(s)).ok_or_else(|| {
                        NgsiError::bad_data(format!("attribute '{name}': datasetId must be a URI"))
                    })?;
                    out.insert("datasetId".into(), s.into());
                }
                "objectType" => {
                    let t = match sub {
                        Value::String(s) => Value::String(self.ctx.expand(s)),
                        Value::Array(a) => Value::Array(
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|s| Value::String(self.ctx.expand(s)))
                                .collect(),
                        ),
                        _ => {
                            return Err(NgsiError::bad_data(format!(
                                "attribute '{name}': objectType must be a string"
                            )))
                        }
                    };
                    out.insert("objectType".into(), t);
                }
                "lang" => {
                    if let Some(s) = sub.as_str() {
                        out.insert("lang".into(), s.into());
                    }
                }
                // A LanguageProperty's value type can only be rdf:langString (Table 5.2.32-1).
                "valueType" if kind == "LanguageProperty" => {
                    if !sub.as_str().is_some_and(|t| {
                        t == "langString" || t == "rdf:langString" || t.ends_with("#langString")
                    }) {
                        return Err(NgsiError::bad_data(format!(
                            "attribute '{name}': a LanguageProperty's valueType must be langString"
                        )));
                    }
                }
                "expiresAt" => {
                    out.insert("expiresAt".into(), parse_expires(sub)?);
                }
                // §4.5.2.2: non-reified members of ngsildproof only, and strings (the type is a type name).
                k @ ("entityIdSealed" | "entityTypeSealed") => {
                    if depth > 0 || !self.is_proof(name) {
                        return Err(NgsiError::bad_data(format!(
                            "attribute '{name}': {k} is only allowed in the ngsildproof Property"
                        )));
                    }
                    let Some(text) = sub.as_str() else {
                        return Err(NgsiError::bad_data(format!(
                            "attribute '{name}': {k} must be a string"
                        )));
                    };
                    let v = if k == "entityTypeSealed" {
                        self.ctx.expand(text)
                    } else {
                        text.to_string()
                    };
                    out.insert(k.into(), Value::String(v));
                }
                k if SYSTEM_MEMBERS.contains(&k) || k.starts_with("previous") => {}
                "@context" if depth > 0 => {
                    return Err(NgsiError::bad_data(format!(
                        "sub-attribute '{name}' carries its own @context: a request has one @context, at its top level"
                    )))
                }
                "@context" => {}
                k if INSTANCE_MEMBERS.contains(&k) => {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}' of type {kind} must not have a '{k}' member"
                    )))
                }
                sub_name => {
                    check_name(sub_name).map_err(|e| {
                        NgsiError::bad_data(format!("invalid sub-attribute name: {e}"))
                    })?;
                    let item = match sub {
                        Value::Array(a) if a.len() == 1 && looks_like_attribute(&a[0]) => &a[0],
                        other => other,
                    };
                    let inst = self.instance(sub_name, item, depth + 1)?;
                    out.insert(self.ctx.expand(sub_name), Value::Object(inst));
                }
            }
        }
        // §4.5.2.2: the value of ngsildproof is the proof structure, an object.
        if depth == 0 && self.is_proof(name) {
            if let Some(v) = out.get("value") {
                if !v.is_object() && v.as_str() != Some(NGSI_LD_NULL) {
                    return Err(NgsiError::bad_data(format!(
                        "attribute '{name}': the value of ngsildproof must be a proof object"
                    )));
                }
            }
        }
        self.stamp(&mut out);
        Ok(out)
    }

    /// Whether an attribute is the ngsildproof Property: the V1.9 core term, also under contexts built on an
    /// earlier core context that does not define it (§4.5.2.2 names the Property by that term).
    fn is_proof(&self, name: &str) -> bool {
        name == "ngsildproof" || self.ctx.expand(name) == NGSILD_PROOF
    }

    fn stamp(&self, m: &mut Map<String, Value>) {
        m.insert("createdAt".into(), Value::String(self.now.to_string()));
        m.insert("modifiedAt".into(), Value::String(self.now.to_string()));
    }

    fn geo_value(&self, name: &str, v: &Value) -> Result<Value> {
        // A geometry may arrive as its JSON text (§4.7.2); it is stored and served as the object.
        if let Value::String(text) = v {
            let parsed: Value = serde_json::from_str(text).map_err(|_| {
                NgsiError::bad_data(format!(
                    "attribute '{name}' is a GeoProperty whose value is neither a GeoJSON geometry nor its JSON text"
                ))
            })?;
            if parsed.is_object() {
                return self.geo_value(name, &parsed);
            }
        }
        misto_query::geoq::geometry_from_geojson(v).map_err(|e| {
            NgsiError::bad_data(format!(
                "attribute '{name}' is not a valid GeoJSON geometry: {e}"
            ))
        })?;
        Ok(v.clone())
    }

    fn kind_value(
        &self,
        name: &str,
        kind: &str,
        _obj: &Map<String, Value>,
        val: &Value,
    ) -> Result<Value> {
        let bad = |what: &str| NgsiError::bad_data(format!("attribute '{name}': {what}"));
        match kind {
            "Property" => Ok(val.clone()),
            "GeoProperty" => self.geo_value(name, val),
            "Relationship" => match val {
                Value::String(s) if is_uri(s) => Ok(val.clone()),
                Value::Array(a)
                    if !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(is_uri)) =>
                {
                    Ok(val.clone())
                }
                _ => Err(bad("a Relationship's object must be a URI")),
            },
            "LanguageProperty" => {
                let m = val
                    .as_object()
                    .ok_or_else(|| bad("a LanguageProperty's languageMap must be an object"))?;
                if !self.allow_null && m.values().any(|t| t.as_str() == Some(NGSI_LD_NULL)) {
                    return Err(bad(
                        "urn:ngsi-ld:null in a languageMap deletes it, which only a partial update or merge can do",
                    ));
                }
                for (lang, text) in m {
                    let ok = match text {
                        Value::String(_) => true,
                        Value::Array(a) => a.iter().all(Value::is_string),
                        _ => false,
                    };
                    if !ok || lang.is_empty() {
                        return Err(bad(
                            "languageMap values must be strings keyed by language tags",
                        ));
                    }
                }
                Ok(val.clone())
            }
            "VocabProperty" => match val {
                Value::String(s) => Ok(Value::String(self.ctx.expand(s))),
                Value::Array(a) if a.iter().all(Value::is_string) => Ok(Value::Array(
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|s| Value::String(self.ctx.expand(s)))
                        .collect(),
                )),
                _ => Err(bad(
                    "a VocabProperty's vocab must be a string or an array of strings",
                )),
            },
            "JsonProperty" => match val {
                Value::Object(_) => Ok(val.clone()),
                Value::Array(a) if a.iter().all(Value::is_object) => Ok(val.clone()),
                _ => Err(bad(
                    "a JsonProperty's json must be a JSON object or an array of objects",
                )),
            },
            "ListProperty" => match val {
                Value::Array(_) => Ok(val.clone()),
                _ => Err(bad("a ListProperty's valueList must be an array")),
            },
            "ListRelationship" => match val {
                Value::Array(a) => {
                    for item in a {
                        let ok = match item {
                            Value::String(s) => is_uri(s),
                            Value::Object(o) => {
                                o.get("object").and_then(Value::as_str).is_some_and(is_uri)
                            }
                            _ => false,
                        };
                        if !ok {
                            return Err(bad("a ListRelationship's objectList must hold URIs"));
                        }
                    }
                    // Stored (and shown normalized) as {"object": URI} entries, whichever form came in
                    // (§4.5.22.2).
                    Ok(Value::Array(
                        a.iter()
                            .map(|item| match item {
                                Value::String(_) => json!({ "object": item }),
                                other => other.clone(),
                            })
                            .collect(),
                    ))
                }
                _ => Err(bad("a ListRelationship's objectList must be an array")),
            },
            _ => Err(bad("unknown attribute type")),
        }
    }
}

/// Concise form: which kind an object without `type` is, from the member it carries.
fn infer_kind(obj: &Map<String, Value>) -> Option<&'static str> {
    for (kind, member) in ATTRIBUTE_KINDS {
        if *kind == "GeoProperty" {
            continue;
        }
        if obj.contains_key(*member) {
            return Some(kind);
        }
    }
    None
}

fn looks_like_attribute(v: &Value) -> bool {
    match v {
        Value::Object(o) => {
            o.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| value_member(t).is_some())
                || infer_kind(o).is_some()
        }
        _ => false,
    }
}

/// Is this a GeoJSON geometry object (by shape; full validation happens separately)?
pub fn is_geojson_geometry(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| GEOJSON_TYPES.contains(&t))
        && (v.get("coordinates").is_some() || v.get("geometries").is_some())
}

/// The entity id of a body: `id` (or `@id`) must be a URI.
pub fn entity_id(obj: &Map<String, Value>) -> Result<String> {
    match obj.get("id").or_else(|| obj.get("@id")) {
        Some(Value::String(s)) if s == NGSI_LD_NULL => Err(NgsiError::bad_data(
            "urn:ngsi-ld:null is NGSI-LD's Null, not an entity id",
        )),
        Some(Value::String(s)) if is_uri(s) => Ok(s.clone()),
        Some(Value::String(s)) => Err(NgsiError::bad_data(format!(
            "the entity id '{s}' is not a URI"
        ))),
        Some(_) => Err(NgsiError::bad_data("the entity id must be a string")),
        None => Err(NgsiError::bad_data("the entity has no id")),
    }
}

/// Scopes: a string or an array of strings, each starting with `/`.
pub fn parse_scope(v: &Value) -> Result<Value> {
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    for s in items {
        match s.as_str() {
            Some(s)
                if s.starts_with('/')
                    && !s.contains(char::is_whitespace)
                    && (s == "/" || !s[1..].split('/').any(str::is_empty)) =>
            {
                out.push(Value::String(s.to_string()))
            }
            Some(s) if s == NGSI_LD_NULL => {
                return Err(NgsiError::bad_data(
                    "scope: urn:ngsi-ld:null is only allowed in merge operations",
                ))
            }
            _ => {
                return Err(NgsiError::bad_data(
                    "scope must be a string or an array of strings starting with '/', with no empty level",
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// The entity's `expiresAt` as a merge fragment sets it (§5.6.17, §4.22): None when the fragment has none,
/// Some(None) when NGSI-LD Null removes it (the entity becomes durable again), else the new instant.
pub fn merged_expires(obj: &Map<String, Value>) -> Result<Option<Option<Value>>> {
    match obj.get("expiresAt") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s == NGSI_LD_NULL => Ok(Some(None)),
        Some(v) => Ok(Some(Some(parse_expires(v)?))),
    }
}

fn parse_expires(v: &Value) -> Result<Value> {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("value").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    // Kept as the client wrote it (it is shown back with sysAttrs); compared as a point in time.
    parse_datetime(s)
        .ok_or_else(|| NgsiError::bad_data("expiresAt must be an ISO 8601 date-time"))?;
    Ok(Value::String(s.to_string()))
}

/// Attribute names of a stored entity (its members that are not entity members).
pub fn attribute_names(e: &Entity) -> impl Iterator<Item = &String> {
    e.keys().filter(|k| !ENTITY_MEMBERS.contains(&k.as_str()))
}

/// Entity types of a stored entity.
pub fn types(e: &Entity) -> Vec<&str> {
    match e.get("type") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => vec![],
    }
}
