//! The broker's own narrow JSON-LD context processing: term definitions, IRI expansion and compaction.
//!
//! NGSI-LD only needs term ↔ IRI mapping for entity types, attribute names and a few value kinds, so this
//! implements that subset of JSON-LD 1.1 instead of general document expansion. The core context is always in
//! force and its terms win over user terms (it is `@protected`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::error::NgsiError;

pub const CORE_CONTEXT_URL: &str =
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
pub const NGSI_LD_NS: &str = "https://uri.etsi.org/ngsi-ld/";

/// Core contexts shipped with the broker, by the URLs ETSI serves them at.
pub const EMBEDDED_CONTEXTS: &[(&str, &str)] = &[
    (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        include_str!("../contexts/ngsi-ld-core-context-v1.0.jsonld"),
    ),
    (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
        include_str!("../contexts/ngsi-ld-core-context-v1.6.jsonld"),
    ),
    (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
        include_str!("../contexts/ngsi-ld-core-context-v1.7.jsonld"),
    ),
    (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld",
        include_str!("../contexts/ngsi-ld-core-context-v1.8.jsonld"),
    ),
    (
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld",
        include_str!("../contexts/ngsi-ld-core-context-v1.9.jsonld"),
    ),
];

/// Is this URL one of the core contexts (which are always in force and need no loading)?
pub fn is_core_context_url(url: &str) -> bool {
    EMBEDDED_CONTEXTS.iter().any(|(u, _)| *u == url)
}

/// One term definition, resolved to an absolute IRI.
#[derive(Debug, Clone, PartialEq)]
pub struct TermDef {
    pub iri: String,
    /// `@type` coercion (`@id`, `@vocab`, `@json`, a datatype IRI).
    pub coercion: Option<String>,
    /// Defined as a plain string ending in a gen-delim: usable as a prefix when compacting.
    pub prefix: bool,
}

#[derive(Debug, Default)]
struct Terms {
    defs: HashMap<String, TermDef>,
    vocab: Option<String>,
    reverse: HashMap<String, String>,
    prefixes: Vec<(String, String)>,
}

/// Bump when the normalized rendering of stored entities changes, so that renderings stored by an older misto
/// are no longer served (see [`Context::fingerprint`]).
pub const RENDER_VERSION: u64 = 1;

impl Terms {
    /// Order-independent of the hash maps' iteration order: definitions are hashed sorted by term.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        RENDER_VERSION.hash(&mut h);
        self.vocab.hash(&mut h);
        let mut defs: Vec<_> = self.defs.iter().collect();
        defs.sort_by(|a, b| a.0.cmp(b.0));
        for (term, d) in defs {
            term.hash(&mut h);
            d.iri.hash(&mut h);
            d.coercion.hash(&mut h);
            d.prefix.hash(&mut h);
        }
        self.prefixes.hash(&mut h);
        h.finish()
    }

    fn build_reverse(&mut self) {
        let mut reverse: HashMap<String, String> = HashMap::new();
        for (term, def) in &self.defs {
            match reverse.get(&def.iri) {
                Some(existing)
                    if (existing.len(), existing.as_str()) <= (term.len(), term.as_str()) => {}
                _ => {
                    reverse.insert(def.iri.clone(), term.clone());
                }
            }
        }
        self.reverse = reverse;
        let mut prefixes: Vec<(String, String)> = self
            .defs
            .iter()
            .filter(|(_, d)| d.prefix)
            .map(|(t, d)| (d.iri.clone(), t.clone()))
            .collect();
        // Longest IRI first gives the shortest suffix.
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        self.prefixes = prefixes;
    }
}

fn core_terms() -> &'static Arc<Terms> {
    static CORE: OnceLock<Arc<Terms>> = OnceLock::new();
    CORE.get_or_init(|| {
        let raw: Value = serde_json::from_str(EMBEDDED_CONTEXTS[3].1).unwrap_or(Value::Null);
        let mut builder = RawDefs::default();
        if let Some(obj) = raw.get("@context").and_then(Value::as_object) {
            builder.add_object(obj);
        }
        // The v1.9 terms (aggregation, snapshots) are a superset; add those not yet defined.
        let raw9: Value = serde_json::from_str(EMBEDDED_CONTEXTS[4].1).unwrap_or(Value::Null);
        if let Some(obj) = raw9.get("@context").and_then(Value::as_object) {
            for (k, v) in obj {
                if !builder.defs.contains_key(k) && !k.starts_with('@') {
                    builder.defs.insert(k.clone(), v.clone());
                }
            }
        }
        Arc::new(builder.resolve(None))
    })
}

/// Term definitions collected in order, before IRI resolution.
#[derive(Default)]
struct RawDefs {
    defs: HashMap<String, Value>,
    vocab: Option<String>,
}

impl RawDefs {
    fn add_object(&mut self, obj: &Map<String, Value>) {
        for (k, v) in obj {
            match k.as_str() {
                "@vocab" => {
                    if let Some(s) = v.as_str() {
                        self.vocab = Some(s.to_string());
                    }
                }
                k if k.starts_with('@') => {}
                _ => {
                    self.defs.insert(k.clone(), v.clone());
                }
            }
        }
    }

    fn resolve(self, core: Option<&Terms>) -> Terms {
        let mut out = Terms::default();
        let lookup_vocab = self
            .vocab
            .clone()
            .or_else(|| core.and_then(|c| c.vocab.clone()));
        for (term, raw) in &self.defs {
            let (iri_raw, coercion) = match raw {
                Value::String(s) => (Some(s.clone()), None),
                Value::Object(o) => (
                    o.get("@id").and_then(Value::as_str).map(str::to_string),
                    o.get("@type").and_then(Value::as_str).map(str::to_string),
                ),
                _ => continue,
            };
            let iri_raw = iri_raw.unwrap_or_else(|| term.clone());
            let iri = resolve_iri(&iri_raw, &self.defs, core, lookup_vocab.as_deref(), 0);
            let coercion = coercion.map(|c| match c.as_str() {
                "@id" | "@vocab" | "@json" | "@none" => c,
                _ => resolve_iri(&c, &self.defs, core, lookup_vocab.as_deref(), 0),
            });
            let prefix = matches!(raw, Value::String(_))
                && (iri.ends_with('/') || iri.ends_with('#') || iri.ends_with(':'));
            out.defs.insert(
                term.clone(),
                TermDef {
                    iri,
                    coercion,
                    prefix,
                },
            );
        }
        out.vocab = self.vocab;
        out.build_reverse();
        out
    }
}

fn raw_iri(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("@id").and_then(Value::as_str),
        _ => None,
    }
}

/// Resolve a term-or-IRI against raw definitions of the context being built (and the core).
fn resolve_iri(
    s: &str,
    defs: &HashMap<String, Value>,
    core: Option<&Terms>,
    vocab: Option<&str>,
    depth: usize,
) -> String {
    if depth > 8 {
        return s.to_string();
    }
    if let Some((prefix, suffix)) = s.split_once(':') {
        if suffix.starts_with("//") || prefix == "_" {
            return s.to_string();
        }
        if let Some(c) = core.and_then(|c| c.defs.get(prefix)) {
            return format!("{}{}", c.iri, suffix);
        }
        if let Some(p) = defs.get(prefix).and_then(raw_iri) {
            let p = resolve_iri(p, defs, core, vocab, depth + 1);
            return format!("{p}{suffix}");
        }
        return s.to_string();
    }
    if let Some(c) = core.and_then(|c| c.defs.get(s)) {
        return c.iri.clone();
    }
    if let Some(p) = defs.get(s).and_then(raw_iri) {
        if p != s {
            return resolve_iri(p, defs, core, vocab, depth + 1);
        }
    }
    format!("{}{}", vocab.unwrap_or(DEFAULT_VOCAB), s)
}

/// Error raised while building a context: either a URL the caller must load first, or a bad context.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextBuildError {
    /// This remote context is not in the cache given; load it and try again.
    Missing(String),
    Invalid(String),
}

/// A resolved `@context`: user terms on top of the always-present core context.
#[derive(Debug, Clone)]
pub struct Context {
    user: Arc<Terms>,
    /// What compaction with this context depends on, hashed (see [`Context::fingerprint`]).
    fingerprint: u64,
    /// The `@context` value as the client gave it (echoed back in responses); `None` for the core alone.
    source: Option<Value>,
}

impl Default for Context {
    fn default() -> Self {
        Context::core()
    }
}

impl Context {
    /// The core context alone.
    pub fn core() -> Context {
        let user = Terms::default();
        Context {
            fingerprint: user.fingerprint(),
            user: Arc::new(user),
            source: None,
        }
    }

    /// Build from a `@context` value (string URL, object, or array of those). `cache` maps URLs to loaded
    /// documents (whole JSON-LD documents with an `@context` member, or bare context objects).
    pub fn build(
        source: &Value,
        cache: &dyn Fn(&str) -> Option<Value>,
    ) -> Result<Context, ContextBuildError> {
        let mut raw = RawDefs::default();
        collect(source, cache, &mut raw, 0)?;
        let user = raw.resolve(Some(core_terms()));
        let source = match source {
            Value::Null => None,
            Value::Array(a) if a.is_empty() => None,
            v => Some(v.clone()),
        };
        Ok(Context {
            fingerprint: user.fingerprint(),
            user: Arc::new(user),
            source,
        })
    }

    /// The `@context` to echo back: the client's own, or the core context URL.
    pub fn source(&self) -> Value {
        self.source
            .clone()
            .unwrap_or_else(|| Value::String(CORE_CONTEXT_URL.to_string()))
    }

    /// The first URL of the client's context, for a `Link` header (None when the context is inline only).
    pub fn link_url(&self) -> Option<String> {
        match &self.source {
            None => Some(CORE_CONTEXT_URL.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) if a.len() == 1 => a[0].as_str().map(str::to_string),
            _ => None,
        }
    }

    /// A hash of everything compaction with this context depends on (the user's term definitions, `@vocab`
    /// and the renderer's version): two contexts with the same fingerprint render an entity identically, so a
    /// rendering stored at write time can answer a later read made with an equal context.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub fn is_core_only(&self) -> bool {
        self.source.is_none()
    }

    fn vocab(&self) -> &str {
        self.user
            .vocab
            .as_deref()
            .or(core_terms().vocab.as_deref())
            .unwrap_or(DEFAULT_VOCAB)
    }

    fn def(&self, term: &str) -> Option<&TermDef> {
        core_terms()
            .defs
            .get(term)
            .or_else(|| self.user.defs.get(term))
    }

    /// Expand a term (attribute name, type name) to an IRI.
    pub fn expand(&self, term: &str) -> String {
        if let Some(d) = self.def(term) {
            return d.iri.clone();
        }
        if let Some((prefix, suffix)) = term.split_once(':') {
            if suffix.starts_with("//") {
                return term.to_string();
            }
            if let Some(d) = self.def(prefix) {
                return format!("{}{}", d.iri, suffix);
            }
            return term.to_string();
        }
        format!("{}{}", self.vocab(), term)
    }

    /// The `@type` coercion of a term, if any.
    pub fn coercion(&self, term: &str) -> Option<&str> {
        self.def(term).and_then(|d| d.coercion.as_deref())
    }

    /// Compact an IRI to the shortest term the context defines for it.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(t) = self.user.reverse.get(iri) {
            return t.clone();
        }
        if let Some(t) = core_terms().reverse.get(iri) {
            return t.clone();
        }
        let vocab = self.vocab();
        if let Some(rest) = iri.strip_prefix(vocab) {
            if !rest.is_empty() && self.def(rest).is_none() {
                return rest.to_string();
            }
        }
        for prefixes in [&self.user.prefixes, &core_terms().prefixes] {
            for (p_iri, p_term) in prefixes.iter() {
                if let Some(rest) = iri.strip_prefix(p_iri.as_str()) {
                    if !rest.is_empty() && !rest.starts_with("//") {
                        return format!("{p_term}:{rest}");
                    }
                }
            }
        }
        iri.to_string()
    }
}

fn collect(
    v: &Value,
    cache: &dyn Fn(&str) -> Option<Value>,
    raw: &mut RawDefs,
    depth: usize,
) -> Result<(), ContextBuildError> {
    if depth > 16 {
        return Err(ContextBuildError::Invalid(
            "@context nests remote contexts more than 16 levels deep".into(),
        ));
    }
    match v {
        Value::Null => Ok(()),
        Value::String(url) => {
            if is_core_context_url(url) {
                return Ok(());
            }
            // A reference relative to the request's host (`/ngsi-ld/v1/jsonldContexts/…`) is left to the
            // loader to resolve, as JSON-LD resolves it against the document's base.
            let relative = url.starts_with('/') && !url.starts_with("//");
            if !looks_like_url(url) && !relative {
                return Err(ContextBuildError::Invalid(format!(
                    "@context entry '{url}' is not a URL"
                )));
            }
            let doc = cache(url).ok_or_else(|| ContextBuildError::Missing(url.clone()))?;
            match doc.get("@context") {
                Some(inner) => collect(inner, cache, raw, depth + 1),
                None if doc.is_object() => collect(&doc, cache, raw, depth + 1),
                None => Err(ContextBuildError::Invalid(format!(
                    "the document at {url} has no @context"
                ))),
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, cache, raw, depth)?;
            }
            Ok(())
        }
        Value::Object(obj) => {
            // A request's own (inline) context may not carry scoped contexts (§5.5.7); remote documents are
            // read as published.
            if depth == 0 {
                if let Some((term, _)) = obj.iter().find(|(_, d)| d.get("@context").is_some()) {
                    return Err(ContextBuildError::Invalid(format!(
                        "the term '{term}' defines a scoped @context, which a user @context must not contain"
                    )));
                }
            }
            raw.add_object(obj);
            Ok(())
        }
        other => Err(ContextBuildError::Invalid(format!(
            "@context must be a URL, an object or an array of those, not {other}"
        ))),
    }
}

fn looks_like_url(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
                && !rest.is_empty()
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

impl From<ContextBuildError> for NgsiError {
    fn from(e: ContextBuildError) -> Self {
        match e {
            ContextBuildError::Missing(url) => NgsiError::new(
                crate::error::ErrorKind::LdContextNotAvailable,
                format!("the @context at {url} could not be loaded"),
            ),
            ContextBuildError::Invalid(d) => NgsiError::bad_data(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn none(_: &str) -> Option<Value> {
        None
    }

    #[test]
    fn core_terms_expand_and_compact() {
        let c = Context::core();
        assert_eq!(
            c.expand("location"),
            "https://uri.etsi.org/ngsi-ld/location"
        );
        assert_eq!(
            c.expand("Property"),
            "https://uri.etsi.org/ngsi-ld/Property"
        );
        assert_eq!(
            c.expand("pm25"),
            "https://uri.etsi.org/ngsi-ld/default-context/pm25"
        );
        assert_eq!(
            c.compact("https://uri.etsi.org/ngsi-ld/default-context/pm25"),
            "pm25"
        );
        assert_eq!(
            c.compact("https://uri.etsi.org/ngsi-ld/location"),
            "location"
        );
        assert_eq!(c.expand("urn:x:y"), "urn:x:y");
        assert_eq!(c.expand("http://ex.org/a#b"), "http://ex.org/a#b");
    }

    #[test]
    fn user_terms_and_prefixes() {
        let src = json!([{"ex": "https://example.org/ns#", "Building": "ex:Building", "height": {"@id": "ex:height"}}]);
        let c = Context::build(&src, &none).unwrap();
        assert_eq!(c.expand("Building"), "https://example.org/ns#Building");
        assert_eq!(c.expand("height"), "https://example.org/ns#height");
        assert_eq!(c.expand("ex:width"), "https://example.org/ns#width");
        assert_eq!(c.compact("https://example.org/ns#height"), "height");
        assert_eq!(c.compact("https://example.org/ns#width"), "ex:width");
        assert_eq!(c.compact("https://other.org/x"), "https://other.org/x");
    }

    #[test]
    fn remote_contexts_are_requested_then_used() {
        let src = json!("https://example.org/ctx.jsonld");
        let e = Context::build(&src, &none).unwrap_err();
        assert_eq!(
            e,
            ContextBuildError::Missing("https://example.org/ctx.jsonld".into())
        );
        let cache = |u: &str| {
            (u == "https://example.org/ctx.jsonld")
                .then(|| json!({"@context": {"Road": "https://example.org/Road"}}))
        };
        let c = Context::build(&src, &cache).unwrap();
        assert_eq!(c.expand("Road"), "https://example.org/Road");
        assert_eq!(
            c.link_url().as_deref(),
            Some("https://example.org/ctx.jsonld")
        );
    }

    #[test]
    fn core_wins_over_user_redefinitions() {
        let c = Context::build(&json!({"location": "https://evil.org/loc"}), &none).unwrap();
        assert_eq!(
            c.expand("location"),
            "https://uri.etsi.org/ngsi-ld/location"
        );
    }

    #[test]
    fn bad_contexts_are_rejected() {
        assert!(matches!(
            Context::build(&json!(42), &none),
            Err(ContextBuildError::Invalid(_))
        ));
        assert!(matches!(
            Context::build(&json!("not a url"), &none),
            Err(ContextBuildError::Invalid(_))
        ));
    }
}
