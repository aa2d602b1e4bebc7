//! Temporal write operations (§5.6.11–5.6.19): create or extend an entity's history from a temporal
//! representation, add attributes, and change or remove instances. They write the history only; the entity
//! itself (if any) is left as it is.

use misto_ngsild::entity::{entity_id, Parser, ENTITY_MEMBERS};
use misto_ngsild::validate::now;
use misto_ngsild::{Context, NgsiError, Result};
use misto_store::temporal::{instance_number, NewInstance, TemporalSelect};
use serde_json::{Map, Value};

use crate::Broker;

fn body_object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object().ok_or_else(|| {
        NgsiError::new(
            misto_ngsild::ErrorKind::InvalidRequest,
            "the body must be a JSON object",
        )
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The instances of the attributes of a temporal representation: each attribute is one instance or an array
/// of them, any number per datasetId.
fn instances(parser: &Parser<'_>, obj: &Map<String, Value>) -> Result<Vec<NewInstance>> {
    let mut out = Vec::new();
    let at = now_ms();
    for (name, v) in obj {
        if ENTITY_MEMBERS.contains(&name.as_str()) {
            continue;
        }
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let expanded = parser.ctx.expand(name);
        for item in items {
            for inst in parser.attribute(name, item)? {
                out.push(
                    NewInstance::from_stored(&expanded, &inst, at)
                        .map_err(|e| NgsiError::bad_data(e.to_string()))?,
                );
            }
        }
    }
    Ok(out)
}

fn instance_of(id: &str) -> Result<i64> {
    instance_number(id)
        .ok_or_else(|| NgsiError::not_found(format!("no attribute instance has the id {id}")))
}

impl Broker {
    async fn temporal_types(&self, tenant: &str, id: &str) -> Result<Option<Vec<String>>> {
        Ok(self
            .store
            .temporal_entities(
                tenant,
                &TemporalSelect {
                    ids: Some(vec![id.to_string()]),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await?
            .pop()
            .map(|e| e.types))
    }

    /// `POST /temporal/entities`: create an entity's history or add to it; true when it was created.
    pub async fn create_temporal(&self, tenant: &str, ctx: &Context, body: &Value) -> Result<bool> {
        let obj = body_object(body)?;
        let id = entity_id(obj)?;
        let ts = now();
        let parser = Parser::new(ctx, &ts);
        let types: Vec<String> = parser
            .entity_types(obj.get("type").or_else(|| obj.get("@type")))?
            .into_iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        let list = instances(&parser, obj)?;
        let existed = self.temporal_types(tenant, &id).await?.is_some();
        self.store
            .temporal_append(tenant, &id, &types, list)
            .await?;
        Ok(!existed)
    }

    /// `POST /temporal/entities/{id}/attrs`: add instances to an existing history.
    pub async fn append_temporal_attrs(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        body: &Value,
    ) -> Result<()> {
        crate::entities::check_id(id)?;
        let obj = body_object(body)?;
        if let Some(Value::String(s)) = obj.get("id") {
            if s != id {
                return Err(NgsiError::bad_data(format!(
                    "the body's id '{s}' differs from the entity id '{id}' in the path"
                )));
            }
        }
        let types = self
            .temporal_types(tenant, id)
            .await?
            .ok_or_else(|| super::not_found(id))?;
        let ts = now();
        let list = instances(&Parser::new(ctx, &ts), obj)?;
        self.store.temporal_append(tenant, id, &types, list).await?;
        Ok(())
    }

    /// `DELETE /temporal/entities/{id}`.
    pub async fn delete_temporal(&self, tenant: &str, id: &str) -> Result<()> {
        crate::entities::check_id(id)?;
        if self.store.temporal_delete_entity(tenant, id).await? {
            Ok(())
        } else {
            Err(super::not_found(id))
        }
    }

    /// `DELETE /temporal/entities/{id}/attrs/{attr}`: the default instance's history, one datasetId's, or all.
    pub async fn delete_temporal_attr(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        dataset: Option<&str>,
        all: bool,
    ) -> Result<()> {
        crate::entities::check_id(id)?;
        misto_ngsild::validate::check_name(attr).map_err(NgsiError::bad_data)?;
        if all && dataset.is_some() {
            return Err(NgsiError::bad_data(
                "deleteAll and datasetId cannot be used together",
            ));
        }
        let dataset = if all {
            None
        } else {
            Some(dataset.unwrap_or(""))
        };
        if self
            .store
            .temporal_delete_attr(tenant, id, &ctx.expand(attr), dataset)
            .await?
        {
            Ok(())
        } else {
            Err(NgsiError::not_found(format!(
                "entity {id} has no temporal history of attribute {attr}"
            )))
        }
    }

    /// `PATCH /temporal/entities/{id}/attrs/{attr}/{instanceId}`: change members of one instance.
    pub async fn patch_temporal_instance(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        instance: &str,
        body: &Value,
    ) -> Result<()> {
        crate::entities::check_id(id)?;
        misto_ngsild::validate::check_name(attr).map_err(NgsiError::bad_data)?;
        let obj = body_object(body)?;
        let iid = instance_of(instance)?;
        let expanded = ctx.expand(attr);
        let current = self
            .store
            .temporal_instance(tenant, id, &expanded, iid)
            .await?
            .ok_or_else(|| {
                NgsiError::not_found(format!("no instance {instance} of {attr} in {id}"))
            })?;
        // The body is a fragment naming the attribute (§5.6.18), or the instance itself.
        let fragment = match obj.get(attr) {
            Some(v) if obj.len() == 1 => v,
            _ => body,
        };
        let ts = now();
        let mut parser = Parser::new(ctx, &ts);
        parser.partial = true;
        let patch = parser
            .attribute(attr, fragment)?
            .pop()
            .ok_or_else(|| NgsiError::bad_data("the body holds no attribute instance"))?;
        let mut merged = current
            .to_stored()
            .map_err(|e| NgsiError::internal(e.to_string()))?;
        if let (Some(m), Some(p)) = (merged.as_object_mut(), patch.as_object()) {
            for (k, v) in p {
                if k != "createdAt" {
                    m.insert(k.clone(), v.clone());
                }
            }
            m.insert("modifiedAt".into(), Value::String(ts.clone()));
        }
        let with = NewInstance::from_stored(&expanded, &merged, now_ms())
            .map_err(|e| NgsiError::bad_data(e.to_string()))?;
        if self
            .store
            .temporal_replace_instance(tenant, id, &expanded, iid, with)
            .await?
        {
            Ok(())
        } else {
            Err(NgsiError::not_found(format!(
                "no instance {instance} of {attr} in {id}"
            )))
        }
    }

    /// `DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId}`.
    pub async fn delete_temporal_instance(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        attr: &str,
        instance: &str,
    ) -> Result<()> {
        crate::entities::check_id(id)?;
        misto_ngsild::validate::check_name(attr).map_err(NgsiError::bad_data)?;
        let iid = instance_of(instance)?;
        if self
            .store
            .temporal_delete_instance(tenant, id, &ctx.expand(attr), iid)
            .await?
        {
            Ok(())
        } else {
            Err(NgsiError::not_found(format!(
                "no instance {instance} of {attr} in {id}"
            )))
        }
    }
}
