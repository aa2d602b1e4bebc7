//! Entity and attribute operations (ETSI GS CIM 009 §5.6, §5.7 batch, V1.9 purge).

use misto_ngsild::entity::{entity_id, Entity, Parser};
use misto_ngsild::expiry;
use misto_ngsild::update::{self, UpdateResult};
use misto_ngsild::validate::{is_uri, now};
use misto_ngsild::{Context, NgsiError, Result};
use std::sync::Arc;

use misto_store::{Change, Modified, RetryFn};
use serde_json::{Map, Value};

use crate::Broker;

/// A committed change of one entity (both None for an expiry whose content is gone).
#[derive(Debug, Clone)]
pub struct EntityChange {
    pub tenant: String,
    pub id: String,
    pub before: Option<Entity>,
    pub after: Option<Entity>,
}

/// Result of a batch operation: ids that succeeded and per-entity errors.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub success: Vec<String>,
    /// Ids created (as opposed to updated) — upsert answers 201 only when some were created.
    pub created: Vec<String>,
    pub errors: Vec<(String, NgsiError)>,
}

pub(crate) fn check_id(id: &str) -> Result<()> {
    if is_uri(id) {
        Ok(())
    } else {
        Err(NgsiError::bad_data(format!(
            "the entity id '{id}' is not a URI"
        )))
    }
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity {id} does not exist"))
}

/// A body that is not a JSON object is not an NGSI-LD request at all: InvalidRequest.
fn body_object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object().ok_or_else(|| {
        NgsiError::new(
            misto_ngsild::ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        )
    })
}

/// A body fragment may repeat the entity id, but not name another one.
fn check_body_id(obj: &Map<String, Value>, id: &str) -> Result<()> {
    match obj.get("id").or_else(|| obj.get("@id")) {
        Some(Value::String(s)) if s != id => Err(NgsiError::bad_data(format!(
            "the body's id '{s}' differs from the entity id '{id}' in the path"
        ))),
        Some(Value::String(_)) | None => Ok(()),
        Some(_) => Err(NgsiError::bad_data("the entity id must be a string")),
    }
}

/// A modification that sees the entity as visible now: an expired entity is absent, expired attribute
/// instances are gone (and stay gone once the entity is written back). The closure may run more than once.
fn unexpired(f: RetryFn) -> RetryFn {
    std::sync::Arc::new(move |cur: Option<&Entity>| {
        let now = jiff::Timestamp::now();
        match cur.map(|e| expiry::visible(e, now)) {
            None => f(None),
            Some(None) => f(None),
            Some(Some(v)) => f(Some(v.as_ref())),
        }
    })
}

/// Apply a merge fragment's `expiresAt` (see [`misto_ngsild::entity::merged_expires`]).
fn set_expires(e: &mut Entity, expires: Option<Option<Value>>) {
    match expires {
        None => {}
        Some(None) => {
            e.remove("expiresAt");
        }
        Some(Some(x)) => {
            e.insert("expiresAt".into(), x);
        }
    }
}

fn keep_created(new: &mut Entity, old: &Entity) {
    if let Some(c) = old.get("createdAt") {
        new.insert("createdAt".into(), c.clone());
    }
}

impl Broker {
    /// One read-modify-write; `ctx` (the writer's context) renders the entity's stored view. The closure may
    /// run more than once (see [`RetryFn`]): the store computes the change outside its writer and commits it
    /// only if the entity did not change meanwhile.
    async fn modify_one(
        &self,
        tenant: &str,
        ctx: Option<&Context>,
        id: &str,
        f: RetryFn,
    ) -> Result<()> {
        let view = ctx.and_then(crate::views::viewer);
        let f = unexpired(f);
        let out = self.store.modify_retrying(tenant, id, f, view).await??;
        self.note(tenant, id, out);
        Ok(())
    }

    /// Count a committed change and publish it (moved, not copied: entities are large and most writes have no
    /// listener).
    fn note(&self, tenant: &str, id: &str, m: Modified) {
        if m.before.is_some() || m.after.is_some() {
            if m.before == m.after {
                return;
            }
            metrics::counter!("misto_entity_writes_total").increment(1);
            self.publish(EntityChange {
                tenant: tenant.to_string(),
                id: id.to_string(),
                before: m.before,
                after: m.after,
            });
        }
    }

    /// `POST /entities`: returns the new entity's id.
    pub async fn create_entity(&self, tenant: &str, ctx: &Context, body: &Value) -> Result<String> {
        let ts = now();
        body_object(body)?;
        let e = Parser::new(ctx, &ts).entity(body)?;
        let id = e
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let idc = id.clone();
        let view = crate::views::render_view(&e, ctx);
        self.modify_one(
            tenant,
            Some(ctx),
            &id,
            std::sync::Arc::new(move |cur: Option<&Entity>| match cur {
                Some(_) => Err(NgsiError::exists(format!("entity {idc} already exists"))),
                None => Ok(crate::views::put_rendered(e.clone(), view.clone())),
            }),
        )
        .await?;
        Ok(id)
    }

    /// `GET /entities/{id}`: the stored entity, as visible now (expired parts gone).
    pub async fn get_entity(&self, tenant: &str, id: &str) -> Result<Entity> {
        check_id(id)?;
        self.store
            .get(tenant, id)
            .await?
            .and_then(|e| expiry::visible_owned(e, jiff::Timestamp::now()))
            .ok_or_else(|| not_found(id))
    }

    /// `DELETE /entities/{id}`
    pub async fn delete_entity(&self, tenant: &str, id: &str) -> Result<()> {
        check_id(id)?;
        let idc = id.to_string();
        self.modify_one(
            tenant,
            None,
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| match cur {
                Some(_) => Ok(Change::Delete),
                None => Err(not_found(&idc)),
            }),
        )
        .await?;
        Ok(())
    }

    /// `PUT /entities/{id}`: replace everything but the id and creation time.
    pub async fn replace_entity(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        body: &Value,
    ) -> Result<()> {
        check_id(id)?;
        let obj = body_object(body)?;
        check_body_id(obj, id)?;
        let ts = now();
        let mut with_id = obj.clone();
        with_id.insert("id".into(), Value::String(id.to_string()));
        let parser = Parser::new(ctx, &ts);
        let has_type = obj.contains_key("type") || obj.contains_key("@type");
        if !has_type {
            with_id.insert("type".into(), Value::String("__keep__".into()));
        }
        let new = parser.entity(&Value::Object(with_id))?;
        let idc = id.to_string();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let old = cur.ok_or_else(|| not_found(&idc))?;
                let mut new = new.clone();
                if !has_type {
                    if let Some(t) = old.get("type") {
                        new.insert("type".into(), t.clone());
                    }
                }
                keep_created(&mut new, old);
                Ok(Change::Put(new))
            }),
        )
        .await?;
        Ok(())
    }

    /// `PATCH /entities/{id}`: merge-patch (§5.6.17).
    pub async fn merge_entity(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        body: &Value,
    ) -> Result<()> {
        check_id(id)?;
        let obj = body_object(body)?;
        check_body_id(obj, id)?;
        let ts = now();
        let mut parser = Parser::new(ctx, &ts);
        parser.allow_null = true;
        parser.merge = true;
        parser.partial = true;
        let attrs = parser.attributes(obj)?;
        let types = match obj.get("type").or_else(|| obj.get("@type")) {
            Some(t) => Some(parser.entity_types(Some(t))?),
            None => None,
        };
        let scope = obj
            .get("scope")
            .map(misto_ngsild::entity::parse_scope)
            .transpose()?;
        let expires = misto_ngsild::entity::merged_expires(obj)?;
        let idc = id.to_string();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                set_expires(&mut e, expires.clone());
                if let Some(types) = &types {
                    let list = e.entry("type").or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(a) = list {
                        for t in types {
                            if !a.contains(t) {
                                a.push(t.clone());
                            }
                        }
                    }
                }
                if let Some(s) = &scope {
                    e.insert("scope".into(), s.clone());
                }
                update::merge(&mut e, attrs.clone());
                e.insert("modifiedAt".into(), Value::String(ts.clone()));
                Ok(Change::Put(e))
            }),
        )
        .await?;
        Ok(())
    }

    /// `POST /entities/{id}/attrs`: append (optionally without overwriting).
    pub async fn append_attrs(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        body: &Value,
        no_overwrite: bool,
    ) -> Result<UpdateResult> {
        check_id(id)?;
        let obj = body_object(body)?;
        check_body_id(obj, id)?;
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        let attrs = parser.attributes(obj)?;
        let new_types = body_types(&parser, obj)?;
        let scope = obj
            .get("scope")
            .map(misto_ngsild::entity::parse_scope)
            .transpose()?;
        let idc = id.to_string();
        let out = std::sync::Arc::new(std::sync::Mutex::new(UpdateResult::default()));
        let outc = out.clone();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                let r = update::append(&mut e, attrs.clone(), no_overwrite);
                let mut changed = !r.updated.is_empty() | add_types(&mut e, &new_types);
                if let Some(s) = scope.clone() {
                    // noOverwrite keeps the scopes there are and adds the new ones.
                    let s = match (no_overwrite, e.get("scope")) {
                        (true, Some(Value::Array(old))) => {
                            let mut all = old.clone();
                            for x in s.as_array().into_iter().flatten() {
                                if !all.contains(x) {
                                    all.push(x.clone());
                                }
                            }
                            Value::Array(all)
                        }
                        _ => s,
                    };
                    e.insert("scope".into(), s);
                    changed = true;
                }
                if let Ok(mut o) = outc.lock() {
                    *o = r;
                }
                if changed {
                    e.insert("modifiedAt".into(), Value::String(ts.clone()));
                    Ok(Change::Put(e))
                } else {
                    Ok(Change::Keep)
                }
            }),
        )
        .await?;
        let r = out.lock().map(|g| g.clone()).unwrap_or_default();
        Ok(r)
    }

    /// `PATCH /entities/{id}/attrs`: update existing attributes only.
    pub async fn update_attrs(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        body: &Value,
    ) -> Result<UpdateResult> {
        check_id(id)?;
        let obj = body_object(body)?;
        check_body_id(obj, id)?;
        let ts = now();
        let mut parser = Parser::new(ctx, &ts);
        parser.allow_null = true;
        let attrs = parser.attributes(obj)?;
        let new_types = body_types(&parser, obj)?;
        let scope = obj
            .get("scope")
            .map(misto_ngsild::entity::parse_scope)
            .transpose()?;
        let idc = id.to_string();
        let out = std::sync::Arc::new(std::sync::Mutex::new(UpdateResult::default()));
        let outc = out.clone();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                let mut r = update::update(&mut e, attrs.clone());
                // Like an attribute, scope is updated only where the entity has one.
                if let Some(s) = scope.clone() {
                    if e.contains_key("scope") {
                        e.insert("scope".into(), s);
                        r.updated.push("scope".into());
                    } else {
                        r.not_updated
                            .push(("scope".into(), "the entity has no scope".into()));
                    }
                }
                let changed = !r.updated.is_empty() | add_types(&mut e, &new_types);
                if let Ok(mut o) = outc.lock() {
                    *o = r;
                }
                if changed {
                    e.insert("modifiedAt".into(), Value::String(ts.clone()));
                    Ok(Change::Put(e))
                } else {
                    Ok(Change::Keep)
                }
            }),
        )
        .await?;
        let r = out.lock().map(|g| g.clone()).unwrap_or_default();
        Ok(r)
    }

    /// `PATCH /entities/{id}/attrs/{attr}`: partial update of one attribute (instance by datasetId).
    pub async fn patch_attr(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        body: &Value,
    ) -> Result<()> {
        check_id(id)?;
        misto_ngsild::validate::check_name(attr)
            .map_err(|e| NgsiError::bad_data(format!("invalid attribute name: {e}")))?;
        if attr == "scope" {
            return Err(NgsiError::bad_data(
                "scope is not an attribute: it is replaced by PATCH /entities/{id}/attrs or a merge",
            ));
        }
        let obj = body_object(body)?;
        let ts = now();
        let mut parser = Parser::new(ctx, &ts);
        parser.partial = true;
        parser.allow_null = true;
        let mut inst = parser.instance(attr, body, 0)?;
        inst.remove("createdAt");
        let name = ctx.expand(attr);
        let idc = id.to_string();
        let attrc = attr.to_string();
        let ds = obj.get("datasetId").cloned();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                let list = e
                    .get_mut(&name)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| {
                        NgsiError::not_found(format!("entity {idc} has no attribute {attrc}"))
                    })?;
                let pos = list
                    .iter()
                    .position(|i| i.get("datasetId").cloned() == ds)
                    .ok_or_else(|| {
                        NgsiError::not_found(format!(
                            "attribute {attrc} has no instance with this datasetId"
                        ))
                    })?;
                if update::is_null_marker(&Value::Object(inst.clone())) {
                    // NGSI-LD Null as the whole value deletes the instance.
                    list.remove(pos);
                    if list.is_empty() {
                        e.remove(&name);
                    }
                } else if let Some(target) = list[pos].as_object_mut() {
                    // A partial update keeps the attribute's kind (§5.6.4).
                    let kind_of = |m: &serde_json::Map<String, Value>| {
                        m.get("type").and_then(Value::as_str).map(str::to_string)
                    };
                    if let (Some(new), Some(old)) = (kind_of(&inst), kind_of(target)) {
                        if new != old {
                            return Err(NgsiError::bad_data(format!(
                                "attribute {attrc} is a {old}; a partial update cannot make it a {new}"
                            )));
                        }
                    }
                    update::merge_instance(target, inst.clone(), false);
                }
                e.insert("modifiedAt".into(), Value::String(ts.clone()));
                Ok(Change::Put(e))
            }),
        )
        .await?;
        Ok(())
    }

    /// `PUT /entities/{id}/attrs/{attr}`: replace one attribute instance.
    pub async fn replace_attr(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        body: &Value,
    ) -> Result<()> {
        check_id(id)?;
        misto_ngsild::validate::check_name(attr)
            .map_err(|e| NgsiError::bad_data(format!("invalid attribute name: {e}")))?;
        if attr == "scope" {
            return Err(NgsiError::bad_data(
                "scope is not an attribute: it is replaced by PATCH /entities/{id}/attrs or a merge",
            ));
        }
        body_object(body)?;
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        let inst = parser.instance(attr, body, 0)?;
        let name = ctx.expand(attr);
        let idc = id.to_string();
        let attrc = attr.to_string();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                let exists = e.get(&name).and_then(Value::as_array).is_some_and(|l| {
                    l.iter()
                        .any(|i| i.get("datasetId") == inst.get("datasetId"))
                });
                if !exists {
                    return Err(NgsiError::not_found(format!(
                        "entity {idc} has no attribute {attrc}"
                    )));
                }
                let r = update::append(
                    &mut e,
                    vec![(
                        name.clone(),
                        Value::Array(vec![Value::Object(inst.clone())]),
                    )],
                    false,
                );
                debug_assert!(r.is_complete());
                e.insert("modifiedAt".into(), Value::String(ts.clone()));
                Ok(Change::Put(e))
            }),
        )
        .await?;
        Ok(())
    }

    /// `DELETE /entities/{id}/attrs/{attr}`
    pub async fn delete_attr(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        dataset_id: Option<&str>,
        delete_all: bool,
    ) -> Result<()> {
        check_id(id)?;
        misto_ngsild::validate::check_name(attr)
            .map_err(|e| NgsiError::bad_data(format!("invalid attribute name: {e}")))?;
        if let Some(ds) = dataset_id {
            if !is_uri(ds) {
                return Err(NgsiError::bad_data("datasetId must be a URI"));
            }
        }
        let name = ctx.expand(attr);
        let idc = id.to_string();
        let attrc = attr.to_string();
        let ds = dataset_id.map(str::to_string);
        let ts = now();
        self.modify_one(
            tenant,
            Some(ctx),
            id,
            std::sync::Arc::new(move |cur: Option<&Entity>| {
                let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                // Scope is deleted like an attribute, though it is an entity member.
                if attrc == "scope" {
                    if e.remove("scope").is_none() {
                        return Err(NgsiError::not_found(format!("entity {idc} has no scope")));
                    }
                } else if !update::delete_attribute(&mut e, &name, ds.as_deref(), delete_all) {
                    return Err(NgsiError::not_found(format!(
                        "entity {idc} has no attribute {attrc}{}",
                        ds.as_deref()
                            .map(|d| format!(" with datasetId {d}"))
                            .unwrap_or_default()
                    )));
                }
                e.insert("modifiedAt".into(), Value::String(ts.clone()));
                Ok(Change::Put(e))
            }),
        )
        .await?;
        Ok(())
    }

    /// Run a batch: each item becomes (id, operation) or an error; one storage transaction for all.
    pub(crate) async fn run_batch(
        &self,
        tenant: &str,
        ctx: Option<&Context>,
        items: Vec<Result<(String, RetryFn), (String, NgsiError)>>,
    ) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        let mut ops = Vec::new();
        let mut ids = Vec::new();
        for item in items {
            match item {
                Ok((id, f)) => {
                    ids.push(id.clone());
                    ops.push((id, unexpired(f)));
                }
                Err((id, e)) => outcome.errors.push((id, e)),
            }
        }
        if !ops.is_empty() {
            let results = self
                .store
                .modify_many_retrying(tenant, ops, ctx.and_then(crate::views::viewer))
                .await?;
            for (id, r) in ids.into_iter().zip(results) {
                match r {
                    Ok(m) => {
                        if m.before.is_none() && m.after.is_some() {
                            outcome.created.push(id.clone());
                        }
                        self.note(tenant, &id, m);
                        outcome.success.push(id);
                    }
                    Err(e) => outcome.errors.push((id, e)),
                }
            }
        }
        Ok(outcome)
    }

    fn batch_items(body: &Value) -> Result<&Vec<Value>> {
        body.as_array()
            .ok_or_else(|| NgsiError::bad_data("a batch body must be a JSON array"))
    }

    /// `POST /entityOperations/create`
    pub async fn batch_create(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
    ) -> Result<BatchOutcome> {
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        let mut seen = std::collections::HashSet::new();
        let items = Self::batch_items(body)?
            .iter()
            .map(|item| {
                let id = item_id(item);
                let e = parser.entity(item).map_err(|e| (id.clone(), e))?;
                if !seen.insert(id.clone()) {
                    return Err((
                        id.clone(),
                        NgsiError::exists(format!("entity {id} appears twice in the batch")),
                    ));
                }
                let idc = id.clone();
                let view = crate::views::render_view(&e, ctx);
                let f: RetryFn = Arc::new(move |cur| match cur {
                    Some(_) => Err(NgsiError::exists(format!("entity {idc} already exists"))),
                    None => Ok(crate::views::put_rendered(e.clone(), view.clone())),
                });
                Ok((id, f))
            })
            .collect();
        self.run_batch(tenant, Some(ctx), items).await
    }

    /// `POST /entityOperations/upsert` (`replace`: whole entities replaced; else attributes appended).
    pub async fn batch_upsert(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
        replace: bool,
    ) -> Result<BatchOutcome> {
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        let items = Self::batch_items(body)?
            .iter()
            .map(|item| {
                let id = item_id(item);
                let e = parser.entity(item).map_err(|e| (id.clone(), e))?;
                let view = crate::views::render_view(&e, ctx);
                let f: RetryFn = Arc::new(move |cur| match cur {
                    None => Ok(crate::views::put_rendered(e.clone(), view.clone())),
                    Some(old) if replace => {
                        let mut e = e.clone();
                        keep_created(&mut e, old);
                        Ok(crate::views::put_rendered(e, view.clone()))
                    }
                    Some(old) => {
                        let mut merged = old.clone();
                        let attrs: Vec<(String, Value)> = misto_ngsild::entity::attribute_names(&e)
                            .map(|n| (n.clone(), e.get(n).cloned().unwrap_or(Value::Null)))
                            .collect();
                        update::append(&mut merged, attrs, false);
                        if let (Some(Value::Array(dst)), Some(Value::Array(src))) =
                            (merged.get("type").cloned(), e.get("type"))
                        {
                            let mut all = dst;
                            for t in src {
                                if !all.contains(t) {
                                    all.push(t.clone());
                                }
                            }
                            merged.insert("type".into(), Value::Array(all));
                        }
                        if let Some(m) = e.get("modifiedAt") {
                            merged.insert("modifiedAt".into(), m.clone());
                        }
                        if let Some(x) = e.get("expiresAt") {
                            merged.insert("expiresAt".into(), x.clone());
                        }
                        Ok(Change::Put(merged))
                    }
                });
                Ok((id, f))
            })
            .collect();
        self.run_batch(tenant, Some(ctx), items).await
    }

    /// `POST /entityOperations/update` (append attributes to existing entities).
    pub async fn batch_update(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
        no_overwrite: bool,
    ) -> Result<BatchOutcome> {
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        // Attributes each entity kept under noOverwrite: such an entity is reported as not fully updated. Keyed
        // by id, so that a closure run again (on the current state) replaces what its first run found.
        let kept = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            String,
            Vec<String>,
        >::new()));
        let items = Self::batch_items(body)?
            .iter()
            .map(|item| {
                let id = item_id(item);
                let obj = item.as_object().ok_or_else(|| {
                    (
                        id.clone(),
                        NgsiError::bad_data("a batch item must be an object"),
                    )
                })?;
                entity_id(obj).map_err(|e| (id.clone(), e))?;
                let attrs = parser.attributes(obj).map_err(|e| (id.clone(), e))?;
                let new_types = body_types(&parser, obj).map_err(|e| (id.clone(), e))?;
                let idc = id.clone();
                let ts = ts.clone();
                let kept = kept.clone();
                let f: RetryFn = Arc::new(move |cur| {
                    let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                    let r = update::append(&mut e, attrs.clone(), no_overwrite);
                    add_types(&mut e, &new_types);
                    if let Ok(mut k) = kept.lock() {
                        if r.not_updated.is_empty() {
                            k.remove(&idc);
                        } else {
                            k.insert(
                                idc.clone(),
                                r.not_updated.into_iter().map(|(n, _)| n).collect(),
                            );
                        }
                    }
                    e.insert("modifiedAt".into(), Value::String(ts.clone()));
                    Ok(Change::Put(e))
                });
                Ok((id, f))
            })
            .collect();
        let mut o = self.run_batch(tenant, Some(ctx), items).await?;
        let kept = kept.lock().map(|k| k.clone()).unwrap_or_default();
        for (id, names) in kept {
            if let Some(pos) = o.success.iter().position(|s| *s == id) {
                o.success.remove(pos);
                o.errors.push((
                    id,
                    NgsiError::bad_data(format!(
                        "not updated (noOverwrite keeps existing attributes): {}",
                        names.join(", ")
                    )),
                ));
            }
        }
        Ok(o)
    }

    /// `POST /entityOperations/merge`
    pub async fn batch_merge(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
    ) -> Result<BatchOutcome> {
        let ts = now();
        let mut parser = Parser::new(ctx, &ts);
        parser.allow_null = true;
        parser.merge = true;
        parser.partial = true;
        let items = Self::batch_items(body)?
            .iter()
            .map(|item| {
                let id = item_id(item);
                let obj = item.as_object().ok_or_else(|| {
                    (
                        id.clone(),
                        NgsiError::bad_data("a batch item must be an object"),
                    )
                })?;
                entity_id(obj).map_err(|e| (id.clone(), e))?;
                let attrs = parser.attributes(obj).map_err(|e| (id.clone(), e))?;
                let expires =
                    misto_ngsild::entity::merged_expires(obj).map_err(|e| (id.clone(), e))?;
                let idc = id.clone();
                let ts = ts.clone();
                let f: RetryFn = Arc::new(move |cur| {
                    let mut e = cur.cloned().ok_or_else(|| not_found(&idc))?;
                    set_expires(&mut e, expires.clone());
                    update::merge(&mut e, attrs.clone());
                    e.insert("modifiedAt".into(), Value::String(ts.clone()));
                    Ok(Change::Put(e))
                });
                Ok((id, f))
            })
            .collect();
        self.run_batch(tenant, Some(ctx), items).await
    }

    /// `POST /entityOperations/delete`: body is an array of ids.
    pub async fn batch_delete(&self, tenant: &str, body: &Value) -> Result<BatchOutcome> {
        let items = Self::batch_items(body)?
            .iter()
            .map(|item| {
                let id = item
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| item.to_string());
                if !item.as_str().is_some_and(is_uri) {
                    return Err((
                        id.clone(),
                        NgsiError::bad_data(format!("'{id}' is not an entity id (a URI)")),
                    ));
                }
                let idc = id.clone();
                let f: RetryFn = Arc::new(move |cur| match cur {
                    Some(_) => Ok(Change::Delete),
                    None => Err(not_found(&idc)),
                });
                Ok((id, f))
            })
            .collect();
        self.run_batch(tenant, None, items).await
    }
}

fn item_id(item: &Value) -> String {
    item.get("id")
        .or_else(|| item.get("@id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The entity types a request body names (none when it names none), expanded.
fn body_types(parser: &Parser, obj: &serde_json::Map<String, Value>) -> Result<Vec<Value>> {
    match obj.get("type").or_else(|| obj.get("@type")) {
        Some(t) => parser.entity_types(Some(t)),
        None => Ok(Vec::new()),
    }
}

/// Add types to an entity (types are only ever added by attribute operations, §5.6.3/§5.6.4); true when any
/// was new.
fn add_types(e: &mut Entity, types: &[Value]) -> bool {
    if types.is_empty() {
        return false;
    }
    let mut current: Vec<Value> = match e.get("type") {
        Some(Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
        None => Vec::new(),
    };
    let before = current.len();
    for t in types {
        if !current.contains(t) {
            current.push(t.clone());
        }
    }
    let added = current.len() > before;
    if added {
        e.insert("type".into(), Value::Array(current));
    }
    added
}
