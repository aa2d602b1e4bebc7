//! Distributed retrieval (§4.3.6, §5.7.1): an entity that registered context sources hold is asked of them
//! and merged with what the broker holds itself. The tenant's registrations are kept compiled in a small
//! cache, so a retrieval in a tenant without registrations costs a map lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use misto_ngsild::entity::Parser;
use misto_ngsild::{Entity, Result};
use serde_json::Value;

use super::Compiled;
use crate::Broker;

/// How long a tenant's compiled registrations are trusted. The node that changes a registration drops its
/// copy at once; other nodes sharing a PostgreSQL store see the change within this time.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// How long a context source may take to answer a forwarded request.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Operation groups of registrations (§4.20, Table 4.20-1) and the operations each stands for.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "federationOps",
        &[
            "retrieveEntity",
            "queryEntity",
            "queryBatch",
            "retrieveEntityTypes",
            "retrieveEntityTypeDetails",
            "retrieveEntityTypeInfo",
            "retrieveAttrTypes",
            "retrieveAttrTypeDetails",
            "retrieveAttrTypeInfo",
            "createSubscription",
            "updateSubscription",
            "retrieveSubscription",
            "querySubscription",
            "deleteSubscription",
        ],
    ),
    (
        "updateOps",
        &[
            "updateEntity",
            "updateAttrs",
            "replaceEntity",
            "replaceAttrs",
        ],
    ),
    ("retrieveOps", &["retrieveEntity", "queryEntity"]),
    (
        "redirectionOps",
        &[
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
            "retrieveEntity",
            "queryEntity",
            "retrieveEntityTypes",
            "retrieveEntityTypeDetails",
            "retrieveEntityTypeInfo",
            "retrieveAttrTypes",
            "retrieveAttrTypeDetails",
            "retrieveAttrTypeInfo",
        ],
    ),
];

/// Does the operation group `group` include `op`?
pub fn group_has(group: &str, op: &str) -> bool {
    GROUPS
        .iter()
        .any(|(g, ops)| *g == group && ops.contains(&op))
}

/// A tenant's compiled registrations and when they were loaded.
type Loaded = (Instant, Arc<Vec<Compiled>>);

/// Compiled registrations per tenant.
#[derive(Default)]
pub struct Cache {
    map: Mutex<HashMap<String, Loaded>>,
}

impl Cache {
    pub fn get(&self, tenant: &str) -> Option<Arc<Vec<Compiled>>> {
        let m = self.map.lock().ok()?;
        m.get(tenant)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, c)| c.clone())
    }

    pub fn put(&self, tenant: &str, list: Vec<Compiled>) -> Arc<Vec<Compiled>> {
        let list = Arc::new(list);
        if let Ok(mut m) = self.map.lock() {
            m.insert(tenant.to_string(), (Instant::now(), list.clone()));
        }
        list
    }

    pub fn invalidate(&self, tenant: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(tenant);
        }
    }
}

/// Where an entity's data came from: a registration's id, or `@none` for the broker itself (§5.2.39).
pub const LOCAL_SOURCE: &str = "@none";

/// The result of a distributed retrieval: the merged entity (None: nobody has it) and its sources.
pub struct Retrieved {
    pub entity: Option<Entity>,
    pub sources: Vec<String>,
}

/// Add what `remote` holds to `into`: its types, and its attribute instances whose datasetId `into` has no
/// instance of (the broker's own data wins where both hold an instance).
fn merge(into: &mut Entity, remote: Entity) {
    for (k, v) in remote {
        match k.as_str() {
            "id" | "createdAt" | "modifiedAt" => {}
            "type" => {
                let types = into
                    .entry("type")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(have), Some(add)) = (types.as_array_mut(), v.as_array()) {
                    for t in add {
                        if !have.contains(t) {
                            have.push(t.clone());
                        }
                    }
                }
            }
            _ => match (into.get_mut(&k), v) {
                (Some(Value::Array(have)), Value::Array(add)) => {
                    for inst in add {
                        let ds = inst.get("datasetId").cloned();
                        if !have.iter().any(|h| h.get("datasetId").cloned() == ds) {
                            have.push(inst);
                        }
                    }
                }
                (None, v) => {
                    into.insert(k, v);
                }
                _ => {}
            },
        }
    }
}

impl Broker {
    /// The tenant's registrations that hold data of entity `id` for operation `op`.
    pub async fn sources_for_entity(
        &self,
        tenant: &str,
        id: &str,
        op: &str,
    ) -> Result<Vec<Compiled>> {
        let all = self.compiled_registrations(tenant).await?;
        Ok(all
            .iter()
            .filter(|c| c.supports(op) && c.matches(Some(&[id.to_string()]), None, None, None))
            .cloned()
            .collect())
    }

    /// Retrieve entity `id` from the broker and from `sources` (§5.7.1 in a distributed system); `attrs`
    /// (expanded) narrows what is asked. Sources that fail are left out (and logged).
    pub async fn retrieve_distributed(
        &self,
        tenant: &str,
        id: &str,
        attrs: Option<&[String]>,
        sources: &[Compiled],
    ) -> Result<Retrieved> {
        // A redirect or exclusive registration makes the source the authority on what it registers; the
        // broker's own copy still answers for the rest.
        let mut out = Retrieved {
            entity: None,
            sources: Vec::new(),
        };
        match self.get_entity(tenant, id).await {
            Ok(e) => {
                out.entity = Some(e);
                out.sources.push(LOCAL_SOURCE.to_string());
            }
            Err(e) if e.kind == misto_ngsild::ErrorKind::ResourceNotFound => {}
            Err(e) => return Err(e),
        }
        for src in sources {
            match self.fetch_from_source(src, id, attrs).await {
                Ok(Some(remote)) => {
                    out.sources.push(src.id.clone());
                    match &mut out.entity {
                        Some(e) => merge(e, remote),
                        None => out.entity = Some(remote),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(registration = %src.id, endpoint = %src.endpoint, error = %e,
                        "context source did not answer a forwarded retrieval");
                }
            }
        }
        Ok(out)
    }

    /// Ask one context source for an entity: `GET {endpoint}/ngsi-ld/v1/entities/{id}`, with the
    /// registration's context and tenant (never the requester's tenant, §4.14), narrowed to the attributes
    /// the registration names. Ok(None): the source does not have it.
    async fn fetch_from_source(
        &self,
        src: &Compiled,
        id: &str,
        attrs: Option<&[String]>,
    ) -> Result<Option<Entity>> {
        let ctx_src = src.context_url.clone().map(Value::String);
        let ctx = self.contexts.resolve(ctx_src.as_ref()).await?;
        let covers =
            |i: &super::Info| i.entities.is_empty() || i.entities.iter().any(|s| s.admits_id(id));
        let registered: Vec<&String> = src
            .infos
            .iter()
            .filter(|i| covers(i))
            .flat_map(|i| i.attrs.iter())
            .collect();
        let every_attr = src.infos.iter().any(|i| i.attrs.is_empty() && covers(i));
        let mut ask: Vec<String> = match (attrs, every_attr) {
            (Some(want), true) => want.to_vec(),
            (Some(want), false) => want
                .iter()
                .filter(|a| registered.contains(a))
                .cloned()
                .collect(),
            (None, true) => Vec::new(),
            (None, false) => registered.into_iter().cloned().collect(),
        };
        if attrs.is_some() && ask.is_empty() {
            return Ok(None);
        }
        ask.dedup();
        let base = src.endpoint.trim_end_matches('/');
        let mut url = url::Url::parse(&format!("{base}/ngsi-ld/v1/entities/"))
            .map_err(|e| super::source_error(format!("endpoint {}: {e}", src.endpoint)))?;
        url.path_segments_mut()
            .map_err(|_| super::source_error(format!("endpoint {} has no path", src.endpoint)))?
            .pop_if_empty()
            .push(id);
        if !ask.is_empty() {
            let names: Vec<String> = ask.iter().map(|a| ctx.compact(a)).collect();
            url.query_pairs_mut().append_pair("attrs", &names.join(","));
        }
        let mut req = self
            .forwarder
            .get(url.clone())
            .header("Accept", "application/json");
        if let Some(link) = &src.context_url {
            req = req.header(
                "Link",
                format!(
                    "<{link}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
                ),
            );
        }
        if let Some(t) = &src.tenant {
            req = req.header("NGSILD-Tenant", t);
        }
        let resp = req
            .timeout(SOURCE_TIMEOUT)
            .send()
            .await
            .map_err(|e| super::source_error(format!("{url}: {e}")))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(super::source_error(format!(
                "{url} answered {}",
                resp.status()
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| super::source_error(format!("{url}: the answer is not JSON: {e}")))?;
        // A JSON-LD answer brings its own context; a JSON one is in the context the request linked.
        let ctx = match body.get("@context") {
            Some(c) => self.contexts.resolve(Some(c)).await?,
            None => ctx,
        };
        let mut body = body;
        if let Some(o) = body.as_object_mut() {
            o.remove("@context");
        }
        let now = misto_ngsild::validate::now();
        let e = Parser::new(&ctx, &now).entity(&body).map_err(|e| {
            super::source_error(format!("{url}: the answer is not an entity: {}", e.detail))
        })?;
        if e.get("id").and_then(Value::as_str) != Some(id) {
            return Err(super::source_error(format!(
                "{url}: the answer is another entity"
            )));
        }
        Ok(Some(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn groups_stand_for_their_operations() {
        assert!(group_has("redirectionOps", "retrieveEntity"));
        assert!(group_has("federationOps", "queryEntity"));
        assert!(!group_has("updateOps", "retrieveEntity"));
        assert!(!group_has("retrieveEntity", "retrieveEntity"));
    }

    #[test]
    fn merging_keeps_the_brokers_instances() {
        let mut local =
            json!({"id": "urn:a", "type": ["T"], "p": [{"type": "Property", "value": 1}]})
                .as_object()
                .cloned()
                .unwrap_or_default();
        let remote = json!({"id": "urn:a", "type": ["U"],
            "p": [{"type": "Property", "value": 2}, {"type": "Property", "value": 3, "datasetId": "urn:d"}],
            "q": [{"type": "Property", "value": 4}]})
        .as_object()
        .cloned()
        .unwrap_or_default();
        merge(&mut local, remote);
        assert_eq!(local["type"], json!(["T", "U"]));
        assert_eq!(
            local["p"],
            json!([{"type": "Property", "value": 1}, {"type": "Property", "value": 3, "datasetId": "urn:d"}])
        );
        assert_eq!(local["q"], json!([{"type": "Property", "value": 4}]));
    }
}
