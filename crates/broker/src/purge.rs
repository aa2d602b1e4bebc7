//! Purging entities (`DELETE /entities?…`, V1.9 §5.6.21): whole entities, or with `keep`/`drop` only some
//! attributes of every matching entity.

use std::collections::HashSet;

use misto_ngsild::entity::{attribute_names, Entity};
use misto_ngsild::validate::now;
use misto_ngsild::{Context, NgsiError, Result};
use misto_store::{Change, RetryFn};
use serde_json::Value;

use crate::query::{compile_with, EntityQueryParams};
use crate::{BatchOutcome, Broker};

/// Which attributes a purge removes from each matching entity.
#[derive(Debug, Clone)]
pub enum AttributePurge {
    /// Only these (expanded names); the rest stays.
    Drop(HashSet<String>),
    /// Every attribute but these (expanded names).
    Keep(HashSet<String>),
}

impl AttributePurge {
    fn removes(&self, name: &str) -> bool {
        match self {
            AttributePurge::Drop(names) => names.contains(name),
            AttributePurge::Keep(names) => !names.contains(name),
        }
    }
}

/// An id or idPattern alone does not qualify a purge (§5.6.21.4), nor a q or attrs over system members only:
/// the selection must say what kind of entities it touches.
fn check_selection(p: &EntityQueryParams) -> Result<()> {
    let q_names_attributes = match &p.q {
        Some(q) => misto_query::q::parse(q)
            .map(|e| !e.attribute_names().is_empty())
            .unwrap_or(true),
        None => false,
    };
    let attrs_select = p.attrs.as_ref().is_some_and(|a| {
        a.iter().any(|n| {
            !matches!(
                n.as_str(),
                "createdAt" | "modifiedAt" | "deletedAt" | "id" | "type"
            )
        })
    });
    if p.types.is_none() && !attrs_select && !q_names_attributes && p.scope_q.is_none() && !p.local
    {
        return Err(NgsiError::bad_data(
            "purging entities needs at least one of type, attrs, q (on attributes), scopeQ or local=true",
        ));
    }
    Ok(())
}

impl Broker {
    /// Delete every matching entity; returns how many.
    pub async fn purge_entities(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
    ) -> Result<usize> {
        check_selection(p)?;
        let q = self.prepared_q(tenant, ctx, p).await?;
        let c = compile_with(p, ctx, usize::MAX, q)?;
        let ids = self.store.purge(tenant, &c.store).await?;
        for id in &ids {
            self.publish(crate::EntityChange {
                tenant: tenant.to_string(),
                id: id.clone(),
                before: None,
                after: None,
            });
        }
        Ok(ids.len())
    }

    /// Remove attributes (`keep`/`drop`) from every matching entity; the entities stay. One storage
    /// transaction; an entity that loses nothing is left untouched.
    pub async fn purge_attributes(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
        what: AttributePurge,
    ) -> Result<BatchOutcome> {
        check_selection(p)?;
        let q = self.prepared_q(tenant, ctx, p).await?;
        let c = compile_with(p, ctx, usize::MAX, q)?;
        let ids: Vec<String> = self
            .store
            .query(tenant, &c.store)
            .await?
            .entities
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let ts = now();
        let items = ids
            .into_iter()
            .map(|id| {
                let what = what.clone();
                let ts = ts.clone();
                let f: RetryFn = std::sync::Arc::new(move |cur: Option<&Entity>| {
                    let Some(cur) = cur else {
                        return Ok(Change::Keep);
                    };
                    let gone: Vec<String> = attribute_names(cur)
                        .filter(|n| what.removes(n))
                        .cloned()
                        .collect();
                    if gone.is_empty() {
                        return Ok(Change::Keep);
                    }
                    let mut e = cur.clone();
                    for n in gone {
                        e.remove(&n);
                    }
                    e.insert("modifiedAt".into(), Value::String(ts.clone()));
                    Ok(Change::Put(e))
                });
                Ok((id, f))
            })
            .collect();
        self.run_batch(tenant, Some(ctx), items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_and_drop_choose_opposite_sides() {
        let names = HashSet::from(["a".to_string()]);
        assert!(AttributePurge::Drop(names.clone()).removes("a"));
        assert!(!AttributePurge::Drop(names.clone()).removes("b"));
        assert!(!AttributePurge::Keep(names.clone()).removes("a"));
        assert!(AttributePurge::Keep(names).removes("b"));
    }
}
