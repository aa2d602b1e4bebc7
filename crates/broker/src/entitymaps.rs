//! Entity maps (§5.2.39, §5.5.14, §5.14): which source (a registration's id, or `@none` for the broker
//! itself) provided each entity of an answer, kept for a while so that follow-up requests can reuse it
//! (`NGSILD-EntityMap` header). Stored per tenant with an expiry; an expired map cannot be accessed.

use misto_ngsild::{NgsiError, Result};
use misto_store::registry::{Kind, StoredDoc};
use serde_json::{json, Map, Value};

use crate::Broker;

/// How long a map lives when nobody asks otherwise.
pub const DEFAULT_LIFETIME_MS: i64 = 60 * 60 * 1000;
/// The longest a map may live: a longer requested expiry is cut to this (the broker sets the actual
/// expiry, Table 6.4.3.2-1).
pub const MAX_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;
/// Where maps are served; the `NGSILD-EntityMap` header names a map by this path and its id.
pub const PATH: &str = "/ngsi-ld/v1/entityMaps";

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity map {id} not found"))
}

fn check_uri(id: &str) -> Result<()> {
    if misto_ngsild::validate::is_uri(id) {
        Ok(())
    } else {
        Err(NgsiError::bad_data(format!("'{id}' is not a URI")))
    }
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{}", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")))
        .unwrap_or_default()
}

/// The map's id named by an `NGSILD-EntityMap` header value (its resource path or URL, or the bare id).
pub fn id_from_header(v: &str) -> String {
    let last = v.trim().rsplit('/').next().unwrap_or_default();
    percent_encoding::percent_decode_str(last)
        .decode_utf8_lossy()
        .into_owned()
}

/// Characters of an id that cannot stand in a path segment as they are (a URN's colons can).
const PATH_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

/// The `NGSILD-EntityMap` header value naming map `id`.
pub fn location(id: &str) -> String {
    format!(
        "{PATH}/{}",
        percent_encoding::utf8_percent_encode(id, PATH_UNSAFE)
    )
}

/// The map as a client sees it (§5.2.39).
fn represent(d: &StoredDoc) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(d.id));
    o.insert("type".into(), json!("EntityMap"));
    if let Some(ms) = d.expires_ms {
        o.insert("expiresAt".into(), json!(timestamp(ms)));
    }
    o.insert(
        "entityMap".into(),
        d.doc.get("entityMap").cloned().unwrap_or_else(|| json!({})),
    );
    Value::Object(o)
}

impl Broker {
    /// Create a map of `entries` (entity id → its sources); returns its id.
    pub async fn create_entity_map(
        &self,
        tenant: &str,
        entries: Map<String, Value>,
    ) -> Result<String> {
        let now = now_ms();
        let id = format!("urn:ngsi-ld:EntityMap:{}", uuid::Uuid::new_v4());
        let doc = StoredDoc {
            tenant: tenant.to_string(),
            id: id.clone(),
            doc: json!({ "entityMap": entries }),
            expires_ms: Some(now + DEFAULT_LIFETIME_MS),
        };
        self.store
            .registry_put(Kind::EntityMap, &doc, true, now)
            .await?;
        Ok(id)
    }

    /// The map to answer with, given the request's `NGSILD-EntityMap` header and whether the request asks
    /// for a map (`entityMap=true`): a live referenced map is used as it is (Ok(Some(its header))); a dead
    /// reference, or the flag, makes a new map of `entries` (§5.7.1.4). Ok(None): no map is involved.
    pub async fn entity_map_for(
        &self,
        tenant: &str,
        header: Option<&str>,
        wanted: bool,
        entries: impl FnOnce() -> Map<String, Value>,
    ) -> Result<Option<String>> {
        if let Some(h) = header {
            let id = id_from_header(h);
            if misto_ngsild::validate::is_uri(&id)
                && self
                    .store
                    .registry_get(Kind::EntityMap, tenant, &id, now_ms())
                    .await?
                    .is_some()
            {
                return Ok(Some(h.trim().to_string()));
            }
        } else if !wanted {
            return Ok(None);
        }
        let id = self.create_entity_map(tenant, entries()).await?;
        Ok(Some(location(&id)))
    }

    /// `GET /entityMaps/{id}` (§5.14.1).
    pub async fn get_entity_map(&self, tenant: &str, id: &str) -> Result<Value> {
        check_uri(id)?;
        let d = self
            .store
            .registry_get(Kind::EntityMap, tenant, id, now_ms())
            .await?
            .ok_or_else(|| not_found(id))?;
        Ok(represent(&d))
    }

    /// `PATCH /entityMaps/{id}` (§5.14.2): `expiresAt` is applied, within the longest lifetime (a past one
    /// ends the map); the mapping itself is the broker's and is not changed by clients.
    pub async fn update_entity_map(&self, tenant: &str, id: &str, fragment: &Value) -> Result<()> {
        check_uri(id)?;
        let frag = fragment
            .as_object()
            .ok_or_else(|| NgsiError::invalid("the body must be a JSON object"))?;
        let now = now_ms();
        let mut d = self
            .store
            .registry_get(Kind::EntityMap, tenant, id, now)
            .await?
            .ok_or_else(|| not_found(id))?;
        if let Some(x) = frag.get("expiresAt") {
            let at = x
                .as_str()
                .and_then(misto_ngsild::validate::parse_datetime)
                .ok_or_else(|| NgsiError::bad_data("expiresAt must be a DateTime"))?;
            d.expires_ms = Some(at.as_millisecond().min(now + MAX_LIFETIME_MS));
        }
        if !self
            .store
            .registry_put(Kind::EntityMap, &d, false, now)
            .await?
        {
            return Err(not_found(id));
        }
        Ok(())
    }

    /// `DELETE /entityMaps/{id}` (§5.14.3).
    pub async fn delete_entity_map(&self, tenant: &str, id: &str) -> Result<()> {
        check_uri(id)?;
        if !self
            .store
            .registry_delete(Kind::EntityMap, tenant, id, now_ms())
            .await?
        {
            return Err(not_found(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_the_map_by_its_last_segment() {
        let id = "urn:ngsi-ld:EntityMap:1";
        assert_eq!(id_from_header(&location(id)), id);
        assert_eq!(id_from_header(id), id);
        assert_eq!(
            id_from_header("http://h:1/ngsi-ld/v1/entityMaps/urn:ngsi-ld:EntityMap:2"),
            "urn:ngsi-ld:EntityMap:2"
        );
    }
}
