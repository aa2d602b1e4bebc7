//! Context source registrations (§5.2.9, §5.9, §5.10): validation, storage form, representation, CRUD and
//! discovery. What a registration changes in entity operations (forwarding to the context source) is in
//! [`forward`].
//!
//! Storage form, as for subscriptions: the document as the client sent it (short names, without read-only
//! members), the `@context` it was written with and timestamps. Names are expanded with that context where
//! they are used, so a registration means the same whatever context later reads it. The store drops a
//! registration once its `expiresAt` has passed (§5.9.2).

pub mod forward;

use misto_ngsild::{Context, ErrorKind, NgsiError, Result};
use misto_store::registry::{Kind, StoredDoc};
use serde_json::{json, Map, Value};

use crate::typeexpr::TypeExpr;
use crate::Broker;

pub const TYPE: &str = "ContextSourceRegistration";

/// §5.2.9: how a context source's information relates to the broker's own.
pub const MODES: &[&str] = &["inclusive", "exclusive", "redirect", "auxiliary"];

/// Members of a ContextSourceRegistration the broker maintains (a client's values are ignored).
const READ_ONLY: &[&str] = &[
    "createdAt",
    "modifiedAt",
    "status",
    "timesSent",
    "timesFailed",
    "lastSuccess",
    "lastFailure",
];

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn names(v: &Value, what: &str) -> Result<()> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad(format!("{what} must be a non-empty array of names")))?;
    for n in items {
        let n = n
            .as_str()
            .ok_or_else(|| bad(format!("{what} must be an array of strings")))?;
        misto_ngsild::validate::check_name(n).map_err(|e| bad(format!("{what}: {e}")))?;
    }
    Ok(())
}

fn datetime(v: &Value, what: &str) -> Result<jiff::Timestamp> {
    v.as_str()
        .and_then(misto_ngsild::validate::parse_datetime)
        .ok_or_else(|| bad(format!("{what} must be a DateTime")))
}

fn interval(v: &Value, what: &str) -> Result<()> {
    let o = v
        .as_object()
        .ok_or_else(|| bad(format!("{what} must be an object with startAt and endAt")))?;
    let start = datetime(
        o.get("startAt")
            .ok_or_else(|| bad(format!("{what} needs startAt")))?,
        &format!("{what}.startAt"),
    )?;
    if let Some(end) = o.get("endAt") {
        if datetime(end, &format!("{what}.endAt"))? < start {
            return Err(bad(format!("{what}: endAt is before startAt")));
        }
    }
    Ok(())
}

fn validate_information(v: &Value) -> Result<()> {
    let infos = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("information must be a non-empty array of RegistrationInfo"))?;
    for info in infos {
        let info = info
            .as_object()
            .ok_or_else(|| bad("a RegistrationInfo must be an object"))?;
        if info.is_empty() {
            return Err(bad(
                "a RegistrationInfo needs entities, propertyNames or relationshipNames",
            ));
        }
        for (k, v) in info {
            match k.as_str() {
                "entities" => crate::typeexpr::check_entity_selectors(v, "EntityInfo")?,
                "propertyNames" | "relationshipNames" => names(v, k)?,
                other => {
                    return Err(bad(format!(
                        "'{other}' is not a member of RegistrationInfo"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Check a whole registration document (after an update too).
pub fn validate(doc: &Map<String, Value>) -> Result<()> {
    match doc.get("type").and_then(Value::as_str) {
        Some(TYPE) => {}
        _ => return Err(bad(format!("type must be \"{TYPE}\""))),
    }
    if let Some(id) = doc.get("id") {
        if !id.as_str().is_some_and(misto_ngsild::validate::is_uri) {
            return Err(bad("id must be a URI"));
        }
    }
    for k in ["registrationName", "description", "tenant"] {
        if let Some(v) = doc.get(k) {
            if !v.is_string() {
                return Err(bad(format!("{k} must be a string")));
            }
        }
    }
    validate_information(
        doc.get("information")
            .ok_or_else(|| bad("a registration needs information"))?,
    )?;
    let endpoint = doc
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a registration needs an endpoint URI"))?;
    url::Url::parse(endpoint).map_err(|e| bad(format!("endpoint is not a URI: {e}")))?;
    if let Some(x) = doc.get("expiresAt") {
        if datetime(x, "expiresAt")? <= jiff::Timestamp::now() {
            return Err(bad("expiresAt is in the past"));
        }
    }
    for k in ["observationInterval", "managementInterval"] {
        if let Some(v) = doc.get(k) {
            interval(v, k)?;
        }
    }
    for k in ["location", "observationSpace", "operationSpace"] {
        if let Some(g) = doc.get(k) {
            if !misto_ngsild::entity::is_geojson_geometry(g) {
                return Err(bad(format!("{k} must be a GeoJSON geometry")));
            }
        }
    }
    if let Some(v) = doc.get("contextSourceInfo") {
        let ok = v.as_array().is_some_and(|a| {
            a.iter().all(|i| {
                i.get("key").is_some_and(Value::is_string)
                    && i.get("value").is_some_and(Value::is_string)
            })
        });
        if !ok {
            return Err(bad(
                "contextSourceInfo must be an array of key-value pairs of strings",
            ));
        }
    }
    if let Some(s) = doc.get("scope") {
        misto_ngsild::entity::parse_scope(s)?;
    }
    if let Some(m) = doc.get("mode") {
        if !m.as_str().is_some_and(|m| MODES.contains(&m)) {
            return Err(bad(format!("mode must be one of {}", MODES.join(", "))));
        }
    }
    if let Some(o) = doc.get("operations") {
        let ok = o
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
        if !ok {
            return Err(bad("operations must be a non-empty array of strings"));
        }
    }
    check_mode_rules(doc)?;
    if let Some(r) = doc.get("refreshRate") {
        if !r.is_string() {
            return Err(bad("refreshRate must be a duration string"));
        }
    }
    Ok(())
}

/// Operations (and groups) that change data: an auxiliary registration may not name them (§4.3.6.3).
const WRITE_OPERATIONS: &[&str] = &[
    "updateOps",
    "redirectionOps",
    "createEntity",
    "updateEntity",
    "updateAttrs",
    "appendAttrs",
    "deleteAttrs",
    "deleteEntity",
    "mergeEntity",
    "replaceEntity",
    "replaceAttrs",
    "createBatch",
    "upsertBatch",
    "updateBatch",
    "deleteBatch",
    "mergeBatch",
    "purgeEntity",
    "createTemporal",
    "updateAttrsTemporal",
    "deleteAttrsTemporal",
    "deleteAttrInstanceTemporal",
    "deleteTemporal",
];

/// §4.3.6.3: an exclusive registration names each entity by id (no type-only groups, no id patterns) and
/// its attributes; an auxiliary one only reads.
fn check_mode_rules(doc: &Map<String, Value>) -> Result<()> {
    match doc.get("mode").and_then(Value::as_str) {
        Some("exclusive") => {
            for info in doc
                .get("information")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let named = info
                    .get("entities")
                    .and_then(Value::as_array)
                    .is_some_and(|list| {
                        list.iter()
                            .all(|e| e.get("id").is_some() && e.get("idPattern").is_none())
                    });
                if !named {
                    return Err(bad("an exclusive registration names every entity by id (no type-only groups or idPattern)"));
                }
                if info.get("propertyNames").is_none() && info.get("relationshipNames").is_none() {
                    return Err(bad(
                        "an exclusive registration names the attributes it holds",
                    ));
                }
            }
            Ok(())
        }
        Some("auxiliary") => {
            let writes = doc
                .get("operations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|o| WRITE_OPERATIONS.contains(o));
            match writes {
                Some(op) => Err(bad(format!(
                    "an auxiliary registration only reads; '{op}' writes"
                ))),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The stored record of a registration.
pub struct Record {
    pub doc: Map<String, Value>,
    pub context: Value,
    pub created_at: String,
    pub modified_at: String,
}

impl Record {
    pub fn from_stored(s: &StoredDoc) -> Result<Record> {
        let doc = s
            .doc
            .get("doc")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| NgsiError::internal("stored registration has no document"))?;
        Ok(Record {
            doc,
            context: s.doc.get("context").cloned().unwrap_or(Value::Null),
            created_at: s.doc["createdAt"].as_str().unwrap_or_default().to_string(),
            modified_at: s.doc["modifiedAt"].as_str().unwrap_or_default().to_string(),
        })
    }

    fn to_stored(&self, tenant: &str, id: &str) -> Result<StoredDoc> {
        let expires_ms = match self.doc.get("expiresAt") {
            Some(x) => Some(datetime(x, "expiresAt")?.as_millisecond()),
            None => None,
        };
        Ok(StoredDoc {
            tenant: tenant.to_string(),
            id: id.to_string(),
            doc: json!({
                "doc": self.doc,
                "context": self.context,
                "createdAt": self.created_at,
                "modifiedAt": self.modified_at,
            }),
            expires_ms,
        })
    }

    pub fn context_source(&self) -> Option<&Value> {
        (!self.context.is_null()).then_some(&self.context)
    }
}

/// Translate the names of a registration document from one context to another (types in entity
/// selectors, property and relationship names).
fn translate(doc: &mut Map<String, Value>, from: &Context, to: &Context) {
    let Some(infos) = doc.get_mut("information").and_then(Value::as_array_mut) else {
        return;
    };
    for info in infos.iter_mut() {
        if let Some(list) = info.get_mut("entities").and_then(Value::as_array_mut) {
            for e in list.iter_mut() {
                if let Some(t) = e.get("type").and_then(Value::as_str).map(str::to_string) {
                    e["type"] = Value::String(crate::subscriptions::recompact_types(&t, from, to));
                }
            }
        }
        for k in ["propertyNames", "relationshipNames"] {
            if let Some(a) = info.get_mut(k).and_then(Value::as_array_mut) {
                for n in a.iter_mut() {
                    if let Some(s) = n.as_str() {
                        *n = Value::String(to.compact(&from.expand(s)));
                    }
                }
            }
        }
    }
}

/// Representation options of a retrieved registration.
#[derive(Default, Clone, Copy)]
pub struct ShowOptions {
    pub sys_attrs: bool,
}

/// What `GET /csourceRegistrations` selects (§5.10.2); names as the client wrote them.
#[derive(Debug, Default, Clone)]
pub struct RegistrationQuery {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<String>,
    pub attrs: Option<Vec<String>>,
}

/// A registration with its names expanded, as matching needs it.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub id: String,
    pub endpoint: String,
    pub mode: String,
    pub operations: Vec<String>,
    /// The tenant to use at the context source (§4.14), if the registration names one.
    pub tenant: Option<String>,
    pub infos: Vec<Info>,
    /// The context the registration was written with, when it is one URL (sent to the context source).
    pub context_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Info {
    pub entities: Vec<EntitySel>,
    /// Expanded property and relationship names; empty: every attribute.
    pub attrs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EntitySel {
    pub id: Option<String>,
    pub id_pattern: Option<regex::Regex>,
    /// Expanded type names.
    pub types: Vec<String>,
}

impl EntitySel {
    /// Could an entity of this id be among the ones this selector describes?
    fn admits_id(&self, id: &str) -> bool {
        match (&self.id, &self.id_pattern) {
            (Some(i), _) => i == id,
            (None, Some(p)) => p.is_match(id),
            (None, None) => true,
        }
    }
}

impl Compiled {
    pub fn build(id: &str, rec: &Record, ctx: &Context) -> Result<Compiled> {
        let mut infos = Vec::new();
        for info in rec
            .doc
            .get("information")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut entities = Vec::new();
            for e in info
                .get("entities")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let t = e.get("type").and_then(Value::as_str).unwrap_or_default();
                let mut te = TypeExpr::parse(t)?;
                te.expand(ctx);
                let types = te.atoms();
                let id_pattern = match e.get("idPattern").and_then(Value::as_str) {
                    Some(p) => {
                        Some(regex::Regex::new(p).map_err(|e| bad(format!("idPattern: {e}")))?)
                    }
                    None => None,
                };
                entities.push(EntitySel {
                    id: e.get("id").and_then(Value::as_str).map(str::to_string),
                    id_pattern,
                    types,
                });
            }
            let attrs = ["propertyNames", "relationshipNames"]
                .iter()
                .filter_map(|k| info.get(*k).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .map(|n| ctx.expand(n))
                .collect();
            infos.push(Info { entities, attrs });
        }
        let operations = rec
            .doc
            .get("operations")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_else(|| vec!["federationOps".to_string()]);
        Ok(Compiled {
            id: id.to_string(),
            endpoint: rec
                .doc
                .get("endpoint")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            mode: rec
                .doc
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("inclusive")
                .to_string(),
            operations,
            tenant: rec
                .doc
                .get("tenant")
                .and_then(Value::as_str)
                .map(str::to_string),
            infos,
            context_url: ctx.link_url(),
        })
    }

    /// Does the registration cover the selection (§5.12)? Entity criteria and attribute criteria must hold
    /// in the same RegistrationInfo.
    pub fn matches(
        &self,
        ids: Option<&[String]>,
        id_pattern: Option<&regex::Regex>,
        types: Option<&TypeExpr>,
        attrs: Option<&[String]>,
    ) -> bool {
        self.infos.iter().any(|info| {
            let entities_ok = if ids.is_none() && id_pattern.is_none() && types.is_none() {
                true
            } else if info.entities.is_empty() {
                // An information that names no entities covers entities of any type with its attributes.
                true
            } else {
                info.entities.iter().any(|sel| {
                    let names: Vec<&str> = sel.types.iter().map(String::as_str).collect();
                    let type_ok = types.is_none_or(|t| t.matches(&names));
                    let id_ok = match ids {
                        Some(list) => list.iter().any(|i| sel.admits_id(i)),
                        None => true,
                    };
                    let pattern_ok = match (id_pattern, &sel.id) {
                        (Some(p), Some(i)) => p.is_match(i),
                        _ => true,
                    };
                    type_ok && id_ok && pattern_ok
                })
            };
            let attrs_ok = match attrs {
                Some(want) if !info.attrs.is_empty() => want.iter().any(|a| info.attrs.contains(a)),
                _ => true,
            };
            entities_ok && attrs_ok
        })
    }

    /// Does the registration name the operation (directly or through its group, Table 4.20-1)?
    pub fn supports(&self, op: &str) -> bool {
        self.operations
            .iter()
            .any(|o| o == op || forward::group_has(o, op))
    }
}

/// The registration as a client sees it, with names compacted for the reader's context.
pub fn represent(
    id: &str,
    rec: &Record,
    written: &Context,
    reader: &Context,
    opts: ShowOptions,
) -> Value {
    let mut d = rec.doc.clone();
    translate(&mut d, written, reader);
    d.insert("id".into(), Value::String(id.to_string()));
    d.insert("type".into(), Value::String(TYPE.into()));
    if opts.sys_attrs {
        d.insert("createdAt".into(), json!(rec.created_at));
        d.insert("modifiedAt".into(), json!(rec.modified_at));
    }
    Value::Object(d)
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("context source registration {id} not found"))
}

fn check_uri(id: &str) -> Result<()> {
    if misto_ngsild::validate::is_uri(id) {
        Ok(())
    } else {
        Err(bad(format!("'{id}' is not a URI")))
    }
}

impl Broker {
    /// Create a registration (§5.9.2); returns its id.
    pub async fn create_registration(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
    ) -> Result<String> {
        let mut doc = body
            .as_object()
            .cloned()
            .ok_or_else(|| NgsiError::invalid("the body must be a JSON object"))?;
        doc.remove("@context");
        // Members the broker maintains are not the client's to write; any other member is a context source
        // property of the registration (§5.2.9) and is kept.
        for k in READ_ONLY {
            doc.remove(*k);
        }
        let id = match doc.remove("id") {
            Some(Value::String(s)) if misto_ngsild::validate::is_uri(&s) => s,
            None => format!(
                "urn:ngsi-ld:ContextSourceRegistration:{}",
                uuid::Uuid::new_v4()
            ),
            Some(_) => return Err(bad("id must be a URI")),
        };
        validate(&doc)?;
        let now = misto_ngsild::validate::now();
        let rec = Record {
            doc,
            context: ctx.source(),
            created_at: now.clone(),
            modified_at: now,
        };
        let compiled = Compiled::build(&id, &rec, ctx)?;
        self.check_conflicts(tenant, &compiled).await?;
        if !self
            .store
            .registry_put(
                Kind::Registration,
                &rec.to_stored(tenant, &id)?,
                true,
                now_ms(),
            )
            .await?
        {
            return Err(NgsiError::exists(format!(
                "context source registration {id} already exists"
            )));
        }
        self.registrations.invalidate(tenant);
        Ok(id)
    }

    /// §4.3.6.3: an exclusive or redirect registration may not cover what an exclusive registration already
    /// holds (the same entity id and an attribute in common); a redirect one may not cover an entity the broker
    /// holds itself, nor an exclusive one an attribute the broker holds (409 Conflict).
    async fn check_conflicts(&self, tenant: &str, new: &Compiled) -> Result<()> {
        if !matches!(new.mode.as_str(), "exclusive" | "redirect") {
            return Ok(());
        }
        let conflict = |d: String| NgsiError::new(ErrorKind::Conflict, d);
        let overlaps = |a: &[String], b: &[String]| {
            a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
        };
        let existing = self.compiled_registrations(tenant).await?;
        for info in &new.infos {
            for sel in &info.entities {
                let Some(eid) = &sel.id else { continue };
                for other in existing
                    .iter()
                    .filter(|o| o.mode == "exclusive" && o.id != new.id)
                {
                    let clash = other.infos.iter().any(|oi| {
                        oi.entities
                            .iter()
                            .any(|os| os.id.as_deref() == Some(eid.as_str()))
                            && overlaps(&oi.attrs, &info.attrs)
                    });
                    if clash {
                        return Err(conflict(format!(
                            "the exclusive registration {} already holds entity {eid}",
                            other.id
                        )));
                    }
                }
                let local = match self.get_entity(tenant, eid).await {
                    Ok(e) => Some(e),
                    Err(e) if e.kind == ErrorKind::ResourceNotFound => None,
                    Err(e) => return Err(e),
                };
                if let Some(e) = local {
                    let held =
                        info.attrs.is_empty() || info.attrs.iter().any(|a| e.contains_key(a));
                    if new.mode == "redirect" || held {
                        return Err(conflict(format!(
                            "entity {eid} is held by this broker; a {} registration cannot take it over",
                            new.mode
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub async fn get_registration(&self, tenant: &str, id: &str) -> Result<StoredDoc> {
        check_uri(id)?;
        self.store
            .registry_get(Kind::Registration, tenant, id, now_ms())
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// A registration rendered for a reader.
    pub async fn registration_view(
        &self,
        s: &StoredDoc,
        reader: &Context,
        opts: ShowOptions,
    ) -> Result<Value> {
        let rec = Record::from_stored(s)?;
        let written = self.contexts.resolve(rec.context_source()).await?;
        Ok(represent(&s.id, &rec, &written, reader, opts))
    }

    /// The tenant's registrations, compiled (cached; see [`forward::Cache`]).
    pub async fn compiled_registrations(
        &self,
        tenant: &str,
    ) -> Result<std::sync::Arc<Vec<Compiled>>> {
        if let Some(c) = self.registrations.get(tenant) {
            return Ok(c);
        }
        let mut out = Vec::new();
        for s in self
            .store
            .registry_list(Kind::Registration, tenant, now_ms())
            .await?
        {
            let rec = Record::from_stored(&s)?;
            let written = self.contexts.resolve(rec.context_source()).await?;
            out.push(Compiled::build(&s.id, &rec, &written)?);
        }
        Ok(self.registrations.put(tenant, out))
    }

    /// Discover registrations (§5.10.2): the ones whose information covers the selection.
    pub async fn query_registrations(
        &self,
        tenant: &str,
        ctx: &Context,
        q: &RegistrationQuery,
    ) -> Result<Vec<StoredDoc>> {
        let types = q
            .types
            .as_deref()
            .map(|t| {
                TypeExpr::parse(t).map(|mut t| {
                    t.expand(ctx);
                    t
                })
            })
            .transpose()?;
        let pattern = q
            .id_pattern
            .as_deref()
            .map(|p| regex::Regex::new(p).map_err(|e| bad(format!("idPattern: {e}"))))
            .transpose()?;
        if let Some(ids) = &q.ids {
            for i in ids {
                check_uri(i)?;
            }
        }
        let attrs: Option<Vec<String>> = q
            .attrs
            .as_ref()
            .map(|a| a.iter().map(|n| ctx.expand(n)).collect());
        let mut out = Vec::new();
        for s in self
            .store
            .registry_list(Kind::Registration, tenant, now_ms())
            .await?
        {
            let rec = Record::from_stored(&s)?;
            let written = self.contexts.resolve(rec.context_source()).await?;
            let c = Compiled::build(&s.id, &rec, &written)?;
            if c.matches(
                q.ids.as_deref(),
                pattern.as_ref(),
                types.as_ref(),
                attrs.as_deref(),
            ) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Update a registration with a fragment (§5.9.3): members in the fragment replace those stored; a null
    /// removes an optional member.
    pub async fn update_registration(
        &self,
        tenant: &str,
        id: &str,
        ctx: &Context,
        fragment: &Value,
    ) -> Result<()> {
        let frag = fragment
            .as_object()
            .ok_or_else(|| NgsiError::invalid("the body must be a JSON object"))?;
        if frag.is_empty() {
            return Err(bad("the fragment is empty"));
        }
        if let Some(fid) = frag.get("id") {
            if fid.as_str() != Some(id) {
                return Err(bad("the fragment's id differs from the registration's"));
            }
        }
        let stored = self.get_registration(tenant, id).await?;
        let mut rec = Record::from_stored(&stored)?;
        let written = self.contexts.resolve(rec.context_source()).await?;
        let mut changes = Map::new();
        for (k, v) in frag {
            if matches!(k.as_str(), "id" | "@context") {
                continue;
            }
            if READ_ONLY.contains(&k.as_str()) {
                continue;
            }
            changes.insert(k.clone(), v.clone());
        }
        // Names in the fragment are in the fragment's context: store them in the registration's.
        translate(&mut changes, ctx, &written);
        for (k, v) in changes {
            if v.is_null() {
                if matches!(k.as_str(), "type" | "information" | "endpoint") {
                    return Err(bad(format!("{k} is mandatory and cannot be removed")));
                }
                rec.doc.remove(&k);
            } else {
                rec.doc.insert(k, v);
            }
        }
        validate(&rec.doc)?;
        Compiled::build(id, &rec, &written)?;
        rec.modified_at = misto_ngsild::validate::now();
        if !self
            .store
            .registry_put(
                Kind::Registration,
                &rec.to_stored(tenant, id)?,
                false,
                now_ms(),
            )
            .await?
        {
            return Err(not_found(id));
        }
        self.registrations.invalidate(tenant);
        Ok(())
    }

    pub async fn delete_registration(&self, tenant: &str, id: &str) -> Result<()> {
        check_uri(id)?;
        if !self
            .store
            .registry_delete(Kind::Registration, tenant, id, now_ms())
            .await?
        {
            return Err(not_found(id));
        }
        self.registrations.invalidate(tenant);
        Ok(())
    }
}

/// `ErrorKind` of a context source that could not be reached or answered badly.
pub(crate) fn source_error(detail: String) -> NgsiError {
    NgsiError::new(ErrorKind::ServiceUnavailable, detail)
}
