//! Fetching the Linked Entities of a join (§4.5.23) for entity retrieval and queries (and any other reader,
//! such as notifications, that renders entities with a join): level by level, each level in one store query.

use misto_ngsild::linked::{missing, Join, Linked};
use misto_ngsild::render::RenderOptions;
use misto_ngsild::{Entity, Result};
use misto_store::EntityQuery;

use crate::Broker;

impl Broker {
    /// The Linked Entities `join` reaches from `roots` when they are rendered with `opts`, as visible now;
    /// render them with [`misto_ngsild::linked::render_inline`] or [`misto_ngsild::linked::render_flat`].
    pub async fn linked_entities(
        &self,
        tenant: &str,
        roots: &[Entity],
        opts: &RenderOptions,
        join: &Join,
    ) -> Result<Linked> {
        let mut linked = Linked::new();
        // Each round finds the next level, so `level` rounds find all; one more confirms nothing is left.
        for _ in 0..=join.level {
            let ids = missing(roots, opts, join, &linked);
            if ids.is_empty() {
                break;
            }
            let q = EntityQuery {
                ids: Some(ids.clone()),
                limit: ids.len(),
                ..Default::default()
            };
            for e in self.store.query(tenant, &q).await?.entities {
                if let Some(e) = crate::views::visible(e) {
                    if let Some(id) = e.get("id").and_then(serde_json::Value::as_str) {
                        linked.insert(id.to_string(), Some(e));
                    }
                }
            }
            for id in ids {
                linked.entry(id).or_insert(None);
            }
        }
        Ok(linked)
    }
}
