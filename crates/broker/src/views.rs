//! Renderings stored at write time (see `misto_store::View`): the normalized representation of an entity,
//! compacted with the writer's context. A plain read with an equal context — the common case of a client that
//! writes and reads with one `@context` — is then answered from the stored bytes, without parsing and rendering.

use std::sync::Arc;

use misto_ngsild::render::{render_entity, Format, RenderOptions};
use misto_ngsild::{Context, Entity, NgsiError, Result};
use misto_store::{Found, View, ViewFn};
use serde_json::Value;

use crate::Broker;

/// The view renderer for writes made with `ctx`.
pub(crate) fn viewer(ctx: &Context) -> Option<ViewFn> {
    let ctx = ctx.clone();
    Some(Arc::new(move |e: &Entity| render_view(e, &ctx)))
}

/// The view of an entity written with `ctx` (None for transient entities: what they show changes with time
/// alone, so they are rendered on each read).
pub(crate) fn render_view(e: &Entity, ctx: &Context) -> Option<View> {
    if has_expiry(e) {
        return None;
    }
    let v = render_entity(e, ctx, &RenderOptions::new(Format::Normalized));
    serde_json::to_vec(&v).ok().map(|json| View {
        ctx: ctx.fingerprint(),
        json,
    })
}

/// A whole new entity to store, with its view rendered here (on the request's thread) rather than by the
/// storage writer, which serializes all writes. The view shows no system attributes, so keeping the stored
/// createdAt later does not change it.
pub(crate) fn put_rendered(e: Entity, view: Option<View>) -> misto_store::Change {
    match view {
        Some(v) => misto_store::Change::PutRendered(e, v),
        None => misto_store::Change::Put(e),
    }
}

/// Whether the entity or any attribute instance (or sub-attribute) carries `expiresAt`.
fn has_expiry(e: &Entity) -> bool {
    fn deep(v: &Value, depth: usize) -> bool {
        match v {
            Value::Object(o) => {
                o.contains_key("expiresAt") || (depth < 4 && o.values().any(|x| deep(x, depth + 1)))
            }
            Value::Array(a) => depth < 4 && a.iter().any(|x| deep(x, depth + 1)),
            _ => false,
        }
    }
    e.contains_key("expiresAt") || e.values().any(|v| deep(v, 0))
}

/// An entity as visible now (None once expired); stored views never hold transient entities.
pub(crate) fn visible(e: Entity) -> Option<Entity> {
    misto_ngsild::expiry::visible_owned(e, jiff::Timestamp::now())
}

/// A page of found entities as visible now.
pub(crate) fn visible_found(found: Vec<Found>) -> Vec<Found> {
    found
        .into_iter()
        .filter_map(|f| match f {
            Found::Entity(e) => visible(e).map(Found::Entity),
            r => Some(r),
        })
        .collect()
}

impl Broker {
    /// `GET /entities/{id}` for a plain normalized read: the stored rendering when it was made with `ctx`,
    /// else the entity.
    pub async fn get_found(&self, tenant: &str, ctx: &Context, id: &str) -> Result<Found> {
        crate::entities::check_id(id)?;
        let found = match self.store.get_found(tenant, id, ctx.fingerprint()).await? {
            Some(Found::Entity(e)) => visible(e).map(Found::Entity),
            other => other,
        };
        found.ok_or_else(|| NgsiError::not_found(format!("entity {id} does not exist")))
    }
}
