//! Type and attribute discovery (§5.7.5–5.7.8: /types, /types/{type}, /attributes, /attributes/{attr}),
//! answered from the storage's counters, never by scanning entities.

use std::collections::{BTreeMap, BTreeSet};

use misto_ngsild::{Context, NgsiError, Result};
use serde_json::{json, Value};

use crate::Broker;

impl Broker {
    /// `GET /types`
    pub async fn list_types(&self, tenant: &str, ctx: &Context, details: bool) -> Result<Value> {
        let types = self.store.types(tenant).await?;
        if details {
            return Ok(Value::Array(
                types
                    .iter()
                    .map(|t| {
                        let names: BTreeSet<String> = t
                            .attributes
                            .iter()
                            .map(|(a, _, _)| ctx.compact(a))
                            .collect();
                        json!({
                            "id": t.type_iri,
                            "type": "EntityType",
                            "typeName": ctx.compact(&t.type_iri),
                            "attributeNames": names,
                        })
                    })
                    .collect(),
            ));
        }
        let list: Vec<String> = types.iter().map(|t| ctx.compact(&t.type_iri)).collect();
        Ok(json!({
            "id": format!("urn:ngsi-ld:EntityTypeList:{}", uuid::Uuid::new_v4()),
            "type": "EntityTypeList",
            "typeList": list,
        }))
    }

    /// `GET /types/{type}`
    pub async fn type_info(&self, tenant: &str, ctx: &Context, name: &str) -> Result<Value> {
        let iri = ctx.expand(name);
        let types = self.store.types(tenant).await?;
        let t = types
            .iter()
            .find(|t| t.type_iri == iri)
            .ok_or_else(|| NgsiError::not_found(format!("no entities of type {name}")))?;
        let mut attrs: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (a, k, _) in &t.attributes {
            attrs.entry(a).or_default().insert(k);
        }
        Ok(json!({
            "id": t.type_iri,
            "type": "EntityTypeInfo",
            "typeName": ctx.compact(&t.type_iri),
            "entityCount": t.count,
            "attributeDetails": attrs.iter().map(|(a, kinds)| json!({
                "id": a,
                "type": "Attribute",
                "attributeName": ctx.compact(a),
                "attributeTypes": kinds,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Per attribute: (kinds, types, count).
    async fn attribute_table(
        &self,
        tenant: &str,
    ) -> Result<BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, u64)>> {
        let types = self.store.types(tenant).await?;
        let mut out: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, u64)> = BTreeMap::new();
        for t in &types {
            for (a, k, n) in &t.attributes {
                let e = out.entry(a.clone()).or_default();
                e.0.insert(k.clone());
                e.1.insert(t.type_iri.clone());
                e.2 += n;
            }
        }
        Ok(out)
    }

    /// `GET /attributes`
    pub async fn list_attributes(
        &self,
        tenant: &str,
        ctx: &Context,
        details: bool,
    ) -> Result<Value> {
        let table = self.attribute_table(tenant).await?;
        if details {
            return Ok(Value::Array(
                table
                    .iter()
                    .map(|(a, (_, types, _))| {
                        json!({
                            "id": a,
                            "type": "Attribute",
                            "attributeName": ctx.compact(a),
                            "typeNames": types.iter().map(|t| ctx.compact(t)).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            ));
        }
        Ok(json!({
            "id": format!("urn:ngsi-ld:AttributeList:{}", uuid::Uuid::new_v4()),
            "type": "AttributeList",
            "attributeList": table.keys().map(|a| ctx.compact(a)).collect::<Vec<_>>(),
        }))
    }

    /// `GET /attributes/{attr}`
    pub async fn attribute_info(&self, tenant: &str, ctx: &Context, name: &str) -> Result<Value> {
        let iri = ctx.expand(name);
        let table = self.attribute_table(tenant).await?;
        let (kinds, types, n) = table
            .get(&iri)
            .ok_or_else(|| NgsiError::not_found(format!("no entity has the attribute {name}")))?;
        Ok(json!({
            "id": iri,
            "type": "Attribute",
            "attributeName": ctx.compact(&iri),
            "attributeCount": n,
            "attributeTypes": kinds,
            "typeNames": types.iter().map(|t| ctx.compact(t)).collect::<Vec<_>>(),
        }))
    }
}
