//! The `@context` store: hosted contexts (`POST /jsonldContexts`), cached remote contexts, and the contexts
//! shipped with the broker. Resolves a request's `@context` to a [`Context`], loading remote documents as needed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use misto_ngsild::context::{Context, ContextBuildError, EMBEDDED_CONTEXTS};
use misto_ngsild::{ErrorKind, NgsiError};
use serde_json::{json, Value};

/// Shipped Smart Data Models contexts and the remote URLs they answer for.
const SHIPPED: &[(&str, &str)] = &[
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld", include_str!("../contexts/dataModel.Alert.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld", include_str!("../contexts/dataModel.Device.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld", include_str!("../contexts/dataModel.Environment.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld", include_str!("../contexts/dataModel.Parking.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/master/context.jsonld", include_str!("../contexts/dataModel.Streetlighting.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld", include_str!("../contexts/dataModel.Transportation.context.jsonld")),
    ("https://smart-data-models.github.io/dataModel.Transportation/context.jsonld", include_str!("../contexts/dataModel.Transportation.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.UrbanMobility/master/context.jsonld", include_str!("../contexts/dataModel.UrbanMobility.context.jsonld")),
    ("https://smart-data-models.github.io/dataModel.UrbanMobility/context.jsonld", include_str!("../contexts/dataModel.UrbanMobility.context.jsonld")),
    ("https://raw.githubusercontent.com/smart-data-models/dataModel.WaterQuality/master/context.jsonld", include_str!("../contexts/dataModel.WaterQuality.context.jsonld")),
];

/// How a context came to be in the store (the `kind` of the spec's context listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// Created by a client with `POST /jsonldContexts`, served by this broker.
    Hosted,
    /// A remote context the broker fetched (or was pre-seeded with).
    Cached,
    /// Built from an inline context of a request.
    ImplicitlyCreated,
}

impl ContextKind {
    fn as_str(self) -> &'static str {
        match self {
            ContextKind::Hosted => "Hosted",
            ContextKind::Cached => "Cached",
            ContextKind::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }
}

#[derive(Debug, Clone)]
struct StoredContext {
    id: String,
    url: String,
    /// The tenant a hosted context was added in: only that tenant sees it (§5.5.10). None: every tenant.
    tenant: Option<String>,
    kind: ContextKind,
    body: Value,
    created_at: String,
    last_usage: Option<String>,
    hits: u64,
}

/// Hosted and cached contexts, and a cache of resolved contexts.
pub struct ContextStore {
    docs: RwLock<HashMap<String, StoredContext>>,
    resolved: RwLock<HashMap<String, Context>>,
    /// Local copies of remote contexts (`--contexts-dir` with a URL mapping): where the broker loads those URLs
    /// from instead of the network, also after a client deleted the cached document.
    mirror: RwLock<HashMap<String, Value>>,
    /// Base URL under which hosted contexts are served, e.g. `http://127.0.0.1:8080/ngsi-ld/v1/jsonldContexts/`.
    base_url: RwLock<String>,
    http: reqwest::Client,
    allow_remote: bool,
}

const RESOLVED_CACHE_MAX: usize = 1024;

impl ContextStore {
    pub fn new(allow_remote: bool) -> Self {
        let store = ContextStore {
            docs: RwLock::new(HashMap::new()),
            resolved: RwLock::new(HashMap::new()),
            mirror: RwLock::new(HashMap::new()),
            base_url: RwLock::new("http://127.0.0.1:8080/ngsi-ld/v1/jsonldContexts/".into()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            allow_remote,
        };
        for (url, text) in EMBEDDED_CONTEXTS.iter().chain(SHIPPED.iter()) {
            if let Ok(body) = serde_json::from_str::<Value>(text) {
                store.insert(url, ContextKind::Cached, body);
            }
        }
        store
    }

    /// Where hosted contexts are served (set from the HTTP address at start).
    pub fn set_base_url(&self, base: &str) {
        if let Ok(mut b) = self.base_url.write() {
            *b = base.to_string();
        }
    }

    fn insert(&self, url: &str, kind: ContextKind, body: Value) -> String {
        let id = url.to_string();
        if let Ok(mut docs) = self.docs.write() {
            docs.insert(
                url.to_string(),
                StoredContext {
                    id: id.clone(),
                    url: url.to_string(),
                    tenant: None,
                    kind,
                    body,
                    created_at: misto_ngsild::validate::now(),
                    last_usage: None,
                    hits: 0,
                },
            );
        }
        if let Ok(mut r) = self.resolved.write() {
            r.clear();
        }
        id
    }

    /// Pre-seed from a folder: every `*.jsonld`/`*.json` file, under the URL given by a `remote-contexts.json`
    /// mapping in the folder if it names the file, else under `file://<path>`. Returns how many were loaded.
    pub fn seed_from_dir(&self, dir: &Path) -> std::io::Result<usize> {
        let mut mapping: HashMap<String, String> = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(dir.join("remote-contexts.json")) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let Some(m) = v.get("contexts").and_then(Value::as_object) {
                    for (url, file) in m {
                        if let Some(f) = file.as_str() {
                            mapping.insert(f.to_string(), url.clone());
                        }
                    }
                }
            }
        }
        let mut n = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
                    continue;
                };
                if ext != "jsonld" && ext != "json" {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let Ok(body) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if body.get("@context").is_none() {
                    continue;
                }
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .to_string();
                let urls: Vec<String> = mapping
                    .iter()
                    .filter(|(f, _)| **f == rel)
                    .map(|(_, u)| u.clone())
                    .collect();
                if urls.is_empty() {
                    self.insert(
                        &format!("file://{}", path.display()),
                        ContextKind::Cached,
                        body,
                    );
                } else {
                    for u in urls {
                        self.insert(&u, ContextKind::Cached, body.clone());
                        if let Ok(mut m) = self.mirror.write() {
                            m.insert(u, body.clone());
                        }
                    }
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// A reference relative to this broker (`/ngsi-ld/v1/jsonldContexts/…`, as the Location of a hosted
    /// context reads) made absolute against the base URL; other references as they are.
    fn absolute(&self, url: &str) -> String {
        if !url.starts_with('/') || url.starts_with("//") {
            return url.to_string();
        }
        let base = self.base_url.read().map(|b| b.clone()).unwrap_or_default();
        let origin_end = base
            .find("://")
            .and_then(|k| base[k + 3..].find('/').map(|p| k + 3 + p))
            .unwrap_or(base.len());
        format!("{}{url}", &base[..origin_end])
    }

    fn lookup(&self, url: &str) -> Option<Value> {
        let url = self.absolute(url);
        let mut docs = self.docs.write().ok()?;
        let d = docs.get_mut(&url)?;
        d.hits += 1;
        d.last_usage = Some(misto_ngsild::validate::now());
        Some(d.body.clone())
    }

    async fn fetch(&self, url: &str) -> Result<Value, NgsiError> {
        let unavailable = |why: String| {
            NgsiError::new(
                ErrorKind::LdContextNotAvailable,
                format!("the @context at {url} could not be loaded: {why}"),
            )
        };
        let copy = self.mirror.read().ok().and_then(|m| m.get(url).cloned());
        if let Some(body) = copy {
            self.insert(url, ContextKind::Cached, body.clone());
            return Ok(body);
        }
        if !self.allow_remote {
            return Err(unavailable("remote contexts are disabled".into()));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(unavailable("only http(s) URLs can be fetched".into()));
        }
        let resp = self
            .http
            .get(url)
            .header("Accept", "application/ld+json, application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| unavailable(e.to_string()))?;
        if bytes.len() > 4 << 20 {
            return Err(unavailable("the document is larger than 4 MiB".into()));
        }
        // A document that arrived but is not a context is bad data of the request (§5.5.6), not an outage.
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| NgsiError::bad_data(format!("the @context at {url} is not JSON: {e}")))?;
        if !body.is_object() || body.get("@context").is_none() {
            return Err(NgsiError::bad_data(format!(
                "the document at {url} is not a JSON-LD context (no @context member)"
            )));
        }
        self.insert(url, ContextKind::Cached, body.clone());
        Ok(body)
    }

    /// Resolve a request's `@context` (None: the core context alone).
    pub async fn resolve(&self, source: Option<&Value>) -> Result<Context, NgsiError> {
        let Some(source) = source else {
            return Ok(Context::core());
        };
        let key = source.to_string();
        if let Some(c) = self.resolved.read().ok().and_then(|r| r.get(&key).cloned()) {
            return Ok(c);
        }
        // Load missing remote documents until the context builds (bounded: each round loads one more URL).
        for _ in 0..32 {
            match Context::build(source, &|u| self.lookup(u)) {
                Ok(ctx) => {
                    if let Ok(mut r) = self.resolved.write() {
                        if r.len() >= RESOLVED_CACHE_MAX {
                            r.clear();
                        }
                        r.insert(key, ctx.clone());
                    }
                    return Ok(ctx);
                }
                Err(ContextBuildError::Missing(url)) => {
                    self.fetch(&url).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(NgsiError::bad_data(
            "@context references too many remote contexts",
        ))
    }

    /// `POST /jsonldContexts` in `tenant`: host a context; returns its id (its local id) and URL.
    pub fn create_hosted(&self, tenant: &str, body: Value) -> Result<(String, String), NgsiError> {
        // A body that is not a context document at all is a malformed request; a context with bad
        // definitions is bad data (§5.13.2).
        let inner = body.get("@context").ok_or_else(|| {
            NgsiError::invalid("the body must be a JSON object with an @context member")
        })?;
        if !(inner.is_object() || inner.is_array() || inner.is_string()) {
            return Err(NgsiError::bad_data(
                "@context must be an object, an array or a URL",
            ));
        }
        // Validate it builds (remote parts may be missing; that is fine for hosting).
        if let Err(ContextBuildError::Invalid(d)) =
            Context::build(inner, &|_| Some(json!({"@context": {}})))
        {
            return Err(NgsiError::bad_data(d));
        }
        let id = format!("urn:ngsi-ld:Context:{}", uuid::Uuid::new_v4());
        let base = self.base_url.read().map(|b| b.clone()).unwrap_or_default();
        let url = format!("{base}{id}");
        if let Ok(mut docs) = self.docs.write() {
            docs.insert(
                url.clone(),
                StoredContext {
                    id: id.clone(),
                    url: url.clone(),
                    tenant: Some(tenant.to_string()),
                    kind: ContextKind::Hosted,
                    body,
                    created_at: misto_ngsild::validate::now(),
                    last_usage: None,
                    hits: 0,
                },
            );
        }
        Ok((id, url))
    }

    /// Host an inline request context so responses can link to it (kind ImplicitlyCreated); same content,
    /// same URL.
    pub fn implicit(&self, source: &Value) -> String {
        use std::hash::{Hash, Hasher};
        let text = source.to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        let id = format!("urn:ngsi-ld:Context:implicit-{:016x}", h.finish());
        let base = self.base_url.read().map(|b| b.clone()).unwrap_or_default();
        let url = format!("{base}{id}");
        let exists = self
            .docs
            .read()
            .map(|d| d.contains_key(&url))
            .unwrap_or(false);
        if !exists {
            if let Ok(mut docs) = self.docs.write() {
                docs.insert(
                    url.clone(),
                    StoredContext {
                        id,
                        url: url.clone(),
                        tenant: None,
                        kind: ContextKind::ImplicitlyCreated,
                        body: json!({ "@context": source }),
                        created_at: misto_ngsild::validate::now(),
                        last_usage: None,
                        hits: 0,
                    },
                );
            }
        }
        url
    }

    /// A context `tenant` sees, by id, URL or URL relative to this broker.
    fn find(&self, tenant: &str, id_or_url: &str) -> Option<StoredContext> {
        let docs = self.docs.read().ok()?;
        docs.get(&self.absolute(id_or_url))
            .or_else(|| docs.values().find(|d| d.id == id_or_url))
            .filter(|d| visible_to(d, tenant))
            .cloned()
    }

    /// `GET /jsonldContexts/{id}`: the context document itself, or with `details=true` its metadata.
    pub fn get(&self, tenant: &str, id: &str, details: bool) -> Result<Value, NgsiError> {
        let d = self
            .find(tenant, id)
            .ok_or_else(|| NgsiError::not_found(format!("no @context with id {id}")))?;
        if details {
            return Ok(info(&d));
        }
        if let Ok(mut docs) = self.docs.write() {
            if let Some(x) = docs.get_mut(&d.url) {
                x.hits += 1;
                x.last_usage = Some(misto_ngsild::validate::now());
            }
        }
        Ok(d.body)
    }

    /// `GET /jsonldContexts`: URLs, or with `details=true` metadata; optionally only one kind.
    pub fn list(
        &self,
        tenant: &str,
        details: bool,
        kind: Option<&str>,
    ) -> Result<Value, NgsiError> {
        let kind = match kind {
            None => None,
            Some(k @ ("Hosted" | "Cached" | "ImplicitlyCreated")) => Some(k.to_string()),
            Some(other) => {
                return Err(NgsiError::bad_data(format!(
                    "unknown context kind '{other}'"
                )))
            }
        };
        let docs = self
            .docs
            .read()
            .map_err(|_| NgsiError::internal("context store poisoned"))?;
        let mut items: Vec<&StoredContext> = docs
            .values()
            .filter(|d| visible_to(d, tenant))
            .filter(|d| kind.as_deref().is_none_or(|k| d.kind.as_str() == k))
            .collect();
        items.sort_by(|a, b| a.url.cmp(&b.url));
        Ok(Value::Array(
            items
                .into_iter()
                .map(|d| {
                    if details {
                        info(d)
                    } else {
                        Value::String(d.url.clone())
                    }
                })
                .collect(),
        ))
    }

    /// `DELETE /jsonldContexts/{id}`: remove a hosted context, or drop (or with `reload`, re-fetch) a cached
    /// one. The core context is always in force: it cannot be deleted, and reloading it keeps the shipped
    /// copy.
    pub async fn delete(&self, tenant: &str, id: &str, reload: bool) -> Result<(), NgsiError> {
        let Some(d) = self.find(tenant, id) else {
            // Only a cached context, named by its URL, can be reloaded.
            if reload {
                return Err(NgsiError::bad_data(format!(
                    "{id} names no cached @context that could be reloaded"
                )));
            }
            return Err(NgsiError::not_found(format!("no @context with id {id}")));
        };
        let core = misto_ngsild::context::is_core_context_url(&d.url);
        if reload {
            if d.kind != ContextKind::Cached {
                return Err(NgsiError::bad_data("only cached contexts can be reloaded"));
            }
            if !core && d.url.starts_with("http") && self.allow_remote {
                self.fetch(&d.url).await?;
            }
            return Ok(());
        }
        if core {
            return Err(NgsiError::bad_data(
                "the NGSI-LD core @context cannot be deleted",
            ));
        }
        if let Ok(mut docs) = self.docs.write() {
            docs.remove(&d.url);
        }
        if let Ok(mut r) = self.resolved.write() {
            r.clear();
        }
        Ok(())
    }
}

fn visible_to(d: &StoredContext, tenant: &str) -> bool {
    d.tenant.as_deref().is_none_or(|t| t == tenant)
}

/// The details of a context: `URL`, `localId`, `kind`, `createdAt` and the usage counters.
fn info(d: &StoredContext) -> Value {
    let mut v = json!({
        "URL": d.url,
        "localId": d.id,
        "kind": d.kind.as_str(),
        "createdAt": d.created_at,
        "numberOfHits": d.hits,
    });
    if let Some(l) = &d.last_usage {
        v["lastUsage"] = json!(l);
    }
    v
}

pub type SharedContexts = Arc<ContextStore>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A pre-seeded copy stands in for its URL: deleting the cached document and using the URL again loads
    /// the copy, without the network.
    #[tokio::test]
    async fn seeded_copies_come_back_after_a_delete() {
        let dir = std::env::temp_dir().join(format!("misto-ctx-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let url = "https://example.org/ctx.jsonld";
        let _ = std::fs::write(
            dir.join("ctx.jsonld"),
            r#"{"@context": {"Thing": "https://example.org/Thing"}}"#,
        );
        let _ = std::fs::write(
            dir.join("remote-contexts.json"),
            json!({"contexts": {url: "ctx.jsonld"}}).to_string(),
        );
        let store = ContextStore::new(false);
        assert_eq!(store.seed_from_dir(&dir).ok(), Some(1));
        let _ = std::fs::remove_dir_all(&dir);
        let source = json!(url);
        let ctx = store.resolve(Some(&source)).await;
        assert_eq!(
            ctx.map(|c| c.expand("Thing")).ok().as_deref(),
            Some("https://example.org/Thing")
        );
        assert!(store.delete("", url, false).await.is_ok());
        let listed = store.list("", false, Some("Cached")).unwrap_or_default();
        assert!(!listed.to_string().contains(url), "deleted");
        let ctx = store.resolve(Some(&source)).await;
        assert!(ctx.is_ok(), "loaded from the copy again: {ctx:?}");
        let listed = store.list("", false, Some("Cached")).unwrap_or_default();
        assert!(listed.to_string().contains(url));
    }
}
