//! Subscriptions (§5.2.12, §5.8): validation of subscription documents, their storage form, their
//! representation, and the CRUD operations. Matching changes and delivering notifications live in
//! [`matching`] and [`notifier`].
//!
//! Storage form: the document as the client sent it (short names, without read-only members), the
//! `@context` source it was written with, and timestamps. Names are expanded with that context wherever
//! they are used (matching, rendering for a reader with another context), so a subscription means the same
//! whatever context later reads it.

mod index;
pub mod matching;
pub mod mqtt;
pub mod notifier;

use misto_ngsild::{Context, NgsiError, Result};
use misto_store::notify::StoredSubscription;
use serde_json::{json, Map, Value};

use crate::Broker;

pub const TRIGGERS: &[&str] = &[
    "entityCreated",
    "entityUpdated",
    "entityDeleted",
    "attributeCreated",
    "attributeUpdated",
    "attributeDeleted",
];
/// §5.2.12: when a subscription names no triggers.
pub const DEFAULT_TRIGGERS: &[&str] = &["attributeCreated", "attributeUpdated"];

/// Members the broker maintains; a client's values for them are ignored (Table 5.2.12-2).
const READ_ONLY: &[&str] = &["status", "createdAt", "modifiedAt"];
const NOTIFICATION_READ_ONLY: &[&str] = &[
    "status",
    "timesSent",
    "timesFailed",
    "lastNotification",
    "lastFailure",
    "lastSuccess",
];
const FORMATS: &[&str] = &["normalized", "concise", "keyValues", "simplified"];

fn bad(msg: impl Into<String>) -> NgsiError {
    NgsiError::bad_data(msg)
}

fn string_list(v: &Value, what: &str) -> Result<Vec<String>> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(format!("{what} must be an array of strings")))?;
    if items.is_empty() {
        return Err(bad(format!("{what} must not be empty")));
    }
    items
        .iter()
        .map(|i| {
            i.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(format!("{what} must be an array of strings")))
        })
        .collect()
}

fn names(v: &Value, what: &str) -> Result<Vec<String>> {
    let out = string_list(v, what)?;
    for n in &out {
        misto_ngsild::validate::check_name(n).map_err(|e| bad(format!("{what}: {e}")))?;
    }
    Ok(out)
}

fn positive_number(v: &Value, what: &str) -> Result<f64> {
    match v.as_f64() {
        Some(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(bad(format!("{what} must be a number greater than 0"))),
    }
}

fn key_values(v: &Value, what: &str) -> Result<()> {
    let items = v
        .as_array()
        .ok_or_else(|| bad(format!("{what} must be an array of key-value pairs")))?;
    for i in items {
        let ok = i.get("key").is_some_and(Value::is_string)
            && i.get("value").is_some_and(Value::is_string);
        if !ok {
            return Err(bad(format!(
                "{what}: every pair needs a string key and a string value"
            )));
        }
    }
    Ok(())
}

/// Check a whole subscription document (after an update too).
pub fn validate(doc: &Map<String, Value>) -> Result<()> {
    if let Some(t) = doc.get("type") {
        if t != "Subscription" {
            return Err(bad("type must be \"Subscription\""));
        }
    }
    if let Some(id) = doc.get("id") {
        match id.as_str() {
            Some(s) if misto_ngsild::validate::is_uri(s) => {}
            _ => return Err(bad("id must be a URI")),
        }
    }
    for k in [
        "subscriptionName",
        "description",
        "q",
        "csf",
        "scopeQ",
        "lang",
    ] {
        if let Some(v) = doc.get(k) {
            if !v.is_string() {
                return Err(bad(format!("{k} must be a string")));
            }
        }
    }
    let entities = doc.get("entities");
    if let Some(e) = entities {
        crate::typeexpr::check_entity_selectors(e, "entity selector")?;
    }
    let watched = doc.get("watchedAttributes");
    if let Some(w) = watched {
        names(w, "watchedAttributes")?;
    }
    if entities.is_none() && watched.is_none() {
        return Err(bad(
            "a subscription needs entities or watchedAttributes (or both)",
        ));
    }
    if let Some(t) = doc.get("notificationTrigger") {
        for n in string_list(t, "notificationTrigger")? {
            if !TRIGGERS.contains(&n.as_str()) {
                return Err(bad(format!(
                    "notificationTrigger: '{n}' is not one of {}",
                    TRIGGERS.join(", ")
                )));
            }
        }
    }
    if let Some(t) = doc.get("timeInterval") {
        positive_number(t, "timeInterval")?;
        if watched.is_some() {
            return Err(bad("timeInterval and watchedAttributes exclude each other"));
        }
        if doc.get("throttling").is_some() {
            return Err(bad("timeInterval and throttling exclude each other"));
        }
    }
    if let Some(t) = doc.get("throttling") {
        positive_number(t, "throttling")?;
    }
    if let Some(a) = doc.get("isActive") {
        if !a.is_boolean() {
            return Err(bad("isActive must be true or false"));
        }
    }
    if let Some(x) = doc.get("expiresAt") {
        let at = x
            .as_str()
            .and_then(misto_ngsild::validate::parse_datetime)
            .ok_or_else(|| bad("expiresAt must be a DateTime"))?;
        if at <= jiff::Timestamp::now() {
            return Err(bad("expiresAt is in the past"));
        }
    }
    if let Some(q) = doc.get("q").and_then(Value::as_str) {
        misto_query::q::parse(q).map_err(|e| bad(format!("q: {e}")))?;
    }
    if let Some(c) = doc.get("csf").and_then(Value::as_str) {
        crate::query::check_csf(c)?;
    }
    if let Some(s) = doc.get("scopeQ").and_then(Value::as_str) {
        crate::typeexpr::ScopeQuery::parse(s)?;
    }
    if let Some(g) = doc.get("geoQ") {
        misto_query::geoq::GeoQuery::from_json(g).map_err(|e| bad(format!("geoQ: {e}")))?;
    }
    if let Some(d) = doc.get("datasetId") {
        string_list(d, "datasetId")?;
    }
    if let Some(c) = doc.get("jsonldContext") {
        if !c.as_str().is_some_and(misto_ngsild::validate::is_uri) {
            return Err(bad("jsonldContext must be a URI"));
        }
    }
    let n = doc
        .get("notification")
        .ok_or_else(|| bad("a subscription needs notification parameters"))?
        .as_object()
        .ok_or_else(|| bad("notification must be an object"))?;
    validate_notification(n)?;
    Ok(())
}

fn validate_notification(n: &Map<String, Value>) -> Result<()> {
    let attrs = n
        .get("attributes")
        .map(|a| names(a, "notification.attributes"))
        .transpose()?;
    let pick = n
        .get("pick")
        .map(|a| string_list(a, "notification.pick"))
        .transpose()?;
    let omit = n
        .get("omit")
        .map(|a| string_list(a, "notification.omit"))
        .transpose()?;
    if attrs.is_some() && (pick.is_some() || omit.is_some()) {
        return Err(bad(
            "notification.attributes excludes notification.pick and notification.omit",
        ));
    }
    if let (Some(p), Some(o)) = (&pick, &omit) {
        if let Some(both) = p.iter().find(|m| o.contains(m)) {
            return Err(bad(format!(
                "'{both}' is both picked and omitted in notification"
            )));
        }
    }
    let format = match n.get("format") {
        None => "normalized",
        Some(f) => f.as_str().filter(|f| FORMATS.contains(f)).ok_or_else(|| {
            bad(format!(
                "notification.format must be one of {}",
                FORMATS.join(", ")
            ))
        })?,
    };
    if let Some(s) = n.get("showChanges") {
        let on = s
            .as_bool()
            .ok_or_else(|| bad("notification.showChanges must be true or false"))?;
        if on && matches!(format, "keyValues" | "simplified") {
            return Err(bad("showChanges cannot be used with the keyValues format"));
        }
    }
    if let Some(s) = n.get("sysAttrs") {
        if !s.is_boolean() {
            return Err(bad("notification.sysAttrs must be true or false"));
        }
    }
    let ep = n
        .get("endpoint")
        .ok_or_else(|| bad("notification.endpoint is required"))?
        .as_object()
        .ok_or_else(|| bad("notification.endpoint must be an object"))?;
    let uri = ep
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("notification.endpoint.uri is required"))?;
    let parsed = url::Url::parse(uri)
        .map_err(|e| bad(format!("notification.endpoint.uri is not a URI: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https" | "mqtt" | "mqtts") {
        return Err(bad(format!(
            "notification.endpoint.uri: the scheme '{}' is not supported (http, https, mqtt, mqtts)",
            parsed.scheme()
        )));
    }
    if let Some(a) = ep.get("accept") {
        if !a.as_str().is_some_and(|a| {
            matches!(
                a,
                "application/json" | "application/ld+json" | "application/geo+json"
            )
        }) {
            return Err(bad(
                "notification.endpoint.accept must be application/json, application/ld+json or application/geo+json",
            ));
        }
    }
    for k in ["receiverInfo", "notifierInfo"] {
        if let Some(v) = ep.get(k) {
            key_values(v, &format!("notification.endpoint.{k}"))?;
        }
    }
    if matches!(parsed.scheme(), "mqtt" | "mqtts") {
        let info = matching::key_value_pairs(ep.get("notifierInfo").unwrap_or(&Value::Null));
        mqtt::endpoint(uri, &info).map_err(|e| bad(format!("notification.endpoint: {e}")))?;
    }
    Ok(())
}

/// The members of a Subscription (Table 5.2.12-1); anything else a client sends is not kept.
const MEMBERS: &[&str] = &[
    "id",
    "type",
    "subscriptionName",
    "description",
    "entities",
    "watchedAttributes",
    "notificationTrigger",
    "timeInterval",
    "q",
    "geoQ",
    "csf",
    "isActive",
    "notification",
    "expiresAt",
    "throttling",
    "temporalQ",
    "scopeQ",
    "lang",
    "datasetId",
    "jsonldContext",
];

/// Drop the members the broker maintains itself and any that are not members of a subscription.
fn strip_read_only(doc: &mut Map<String, Value>) {
    doc.retain(|k, _| MEMBERS.contains(&k.as_str()));
    for k in READ_ONLY {
        doc.remove(*k);
    }
    if let Some(n) = doc.get_mut("notification").and_then(Value::as_object_mut) {
        for k in NOTIFICATION_READ_ONLY {
            n.remove(*k);
        }
    }
    doc.remove("@context");
}

/// Expand a name with one context and compact it with another.
fn recompact(name: &str, from: &Context, to: &Context) -> String {
    to.compact(&from.expand(name))
}

pub(crate) fn recompact_types(t: &str, from: &Context, to: &Context) -> String {
    // Type expressions are names joined by operators; each name is translated on its own.
    let mut out = String::new();
    let mut word = String::new();
    for c in t.chars() {
        if matches!(c, ',' | ';' | '|' | '(' | ')') {
            if !word.is_empty() {
                out.push_str(&recompact(word.trim(), from, to));
                word.clear();
            }
            out.push(c);
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push_str(&recompact(word.trim(), from, to));
    }
    out
}

/// The stored record of a subscription.
pub struct Record {
    pub doc: Map<String, Value>,
    pub context: Value,
    pub created_at: String,
    pub modified_at: String,
}

impl Record {
    pub fn from_stored(s: &StoredSubscription) -> Result<Record> {
        let doc = s
            .doc
            .get("doc")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| NgsiError::internal("stored subscription has no document"))?;
        Ok(Record {
            doc,
            context: s.doc.get("context").cloned().unwrap_or(Value::Null),
            created_at: s.doc["createdAt"].as_str().unwrap_or_default().to_string(),
            modified_at: s.doc["modifiedAt"].as_str().unwrap_or_default().to_string(),
        })
    }

    fn to_stored(&self) -> Value {
        json!({
            "doc": self.doc,
            "context": self.context,
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
        })
    }

    pub fn context_source(&self) -> Option<&Value> {
        (!self.context.is_null()).then_some(&self.context)
    }
}

/// §5.2.12 status: expired once expiresAt has passed, paused while isActive is false, else active.
pub fn status_of(doc: &Map<String, Value>) -> &'static str {
    let expired = doc
        .get("expiresAt")
        .and_then(Value::as_str)
        .and_then(misto_ngsild::validate::parse_datetime)
        .is_some_and(|t| t <= jiff::Timestamp::now());
    if expired {
        "expired"
    } else if doc.get("isActive") == Some(&Value::Bool(false)) {
        "paused"
    } else {
        "active"
    }
}

/// Representation options of a retrieved subscription.
#[derive(Default, Clone, Copy)]
pub struct ShowOptions {
    pub sys_attrs: bool,
}

/// The subscription as a client sees it, with names compacted for the reader's context.
pub fn represent(
    s: &StoredSubscription,
    rec: &Record,
    written: &Context,
    reader: &Context,
    opts: ShowOptions,
) -> Value {
    let mut d = rec.doc.clone();
    d.insert("id".into(), Value::String(s.id.clone()));
    d.insert("type".into(), Value::String("Subscription".into()));
    if let Some(list) = d.get_mut("entities").and_then(Value::as_array_mut) {
        for sel in list.iter_mut() {
            if let Some(t) = sel.get("type").and_then(Value::as_str).map(str::to_string) {
                sel["type"] = Value::String(recompact_types(&t, written, reader));
            }
        }
    }
    let names_in = |v: &mut Value| {
        if let Some(a) = v.as_array_mut() {
            for n in a.iter_mut() {
                if let Some(s) = n.as_str().map(str::to_string) {
                    *n = Value::String(recompact(&s, written, reader));
                }
            }
        }
    };
    if let Some(w) = d.get_mut("watchedAttributes") {
        names_in(w);
    }
    d.insert("status".into(), Value::String(status_of(&rec.doc).into()));
    if !d.contains_key("notificationTrigger") {
        d.insert("notificationTrigger".into(), json!(DEFAULT_TRIGGERS));
    }
    if let Some(n) = d.get_mut("notification").and_then(Value::as_object_mut) {
        for k in ["attributes", "pick", "omit"] {
            if let Some(v) = n.get_mut(k) {
                names_in(v);
            }
        }
        n.entry("format").or_insert_with(|| json!("normalized"));
        if let Some(ep) = n.get_mut("endpoint").and_then(Value::as_object_mut) {
            ep.entry("accept")
                .or_insert_with(|| json!("application/json"));
        }
        let st = &s.status;
        // Counters appear once there is something to count.
        if st.times_sent > 0 {
            n.insert("timesSent".into(), json!(st.times_sent));
        }
        if st.times_failed > 0 {
            n.insert("timesFailed".into(), json!(st.times_failed));
        }
        for (k, v) in [
            ("lastNotification", &st.last_notification),
            ("lastSuccess", &st.last_success),
            ("lastFailure", &st.last_failure),
        ] {
            if let Some(v) = v {
                n.insert(k.into(), json!(v));
            }
        }
        // §5.2.14: "failed" when the last attempt failed.
        let failed = match (&st.last_failure, &st.last_success) {
            (Some(f), Some(s)) => f > s,
            (Some(_), None) => true,
            _ => false,
        };
        if st.last_notification.is_some() {
            n.insert("status".into(), json!(if failed { "failed" } else { "ok" }));
        }
    }
    if opts.sys_attrs {
        d.insert("createdAt".into(), json!(rec.created_at));
        d.insert("modifiedAt".into(), json!(rec.modified_at));
    }
    Value::Object(d)
}

impl Broker {
    /// Create a subscription (§5.8.1); returns its id.
    pub async fn create_subscription(
        &self,
        tenant: &str,
        ctx: &Context,
        body: &Value,
    ) -> Result<String> {
        let mut doc = body
            .as_object()
            .cloned()
            .ok_or_else(|| NgsiError::invalid("the body must be a JSON object"))?;
        if doc.is_empty() {
            return Err(bad("the subscription is empty"));
        }
        strip_read_only(&mut doc);
        let id = match doc.remove("id") {
            Some(Value::String(s)) if misto_ngsild::validate::is_uri(&s) => s,
            None => format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4()),
            Some(_) => return Err(bad("id must be a URI")),
        };
        if doc.get("type").is_none() {
            return Err(bad("type must be \"Subscription\""));
        }
        validate(&doc)?;
        self.check_subscription_contexts(&doc).await?;
        let now = misto_ngsild::validate::now();
        let rec = Record {
            doc,
            context: ctx.source(),
            created_at: now.clone(),
            modified_at: now,
        };
        // Compile once now so that a subscription that cannot be matched is refused, not stored.
        matching::Compiled::build(tenant, &id, &rec, ctx)?;
        if !rec.doc.contains_key("jsonldContext") {
            self.implicit_context(ctx);
        }
        if !self
            .store
            .put_subscription(tenant, &id, &rec.to_stored(), true)
            .await?
        {
            return Err(NgsiError::exists(format!(
                "subscription {id} already exists"
            )));
        }
        self.notifier.subscription_changed(self, tenant, &id).await;
        Ok(id)
    }

    /// A jsonldContext must be a context the broker can load.
    async fn check_subscription_contexts(&self, doc: &Map<String, Value>) -> Result<()> {
        if let Some(c) = doc.get("jsonldContext") {
            self.contexts.resolve(Some(c)).await?;
        }
        Ok(())
    }

    pub async fn get_subscription(&self, tenant: &str, id: &str) -> Result<StoredSubscription> {
        if !misto_ngsild::validate::is_uri(id) {
            return Err(bad(format!("'{id}' is not a URI")));
        }
        self.store
            .get_subscription(tenant, id)
            .await?
            .ok_or_else(|| NgsiError::not_found(format!("subscription {id} not found")))
    }

    /// A subscription rendered for a reader.
    pub async fn subscription_view(
        &self,
        s: &StoredSubscription,
        reader: &Context,
        opts: ShowOptions,
    ) -> Result<Value> {
        let rec = Record::from_stored(s)?;
        let written = self.contexts.resolve(rec.context_source()).await?;
        let mut view = represent(s, &rec, &written, reader, opts);
        if !rec.doc.contains_key("jsonldContext") {
            if let (Some(url), Some(o)) = (self.implicit_context(&written), view.as_object_mut()) {
                o.insert("jsonldContext".into(), Value::String(url));
            }
        }
        Ok(view)
    }

    /// The context a subscription written with `written` notifies with, when it is no single URL: the broker
    /// hosts it (kind ImplicitlyCreated, §5.13) and the subscription names it as its `jsonldContext`, the
    /// dereferenceable URI notifications link to.
    pub(crate) fn implicit_context(&self, written: &Context) -> Option<String> {
        if written.is_core_only() || written.link_url().is_some() {
            return None;
        }
        Some(self.contexts.implicit(&written.source()))
    }

    pub async fn list_subscriptions(&self, tenant: &str) -> Result<Vec<StoredSubscription>> {
        Ok(self.store.list_subscriptions(Some(tenant)).await?)
    }

    /// Update a subscription with a fragment (§5.8.2): members in the fragment replace those stored; a null
    /// removes an optional member.
    pub async fn update_subscription(
        &self,
        tenant: &str,
        id: &str,
        ctx: &Context,
        fragment: &Value,
    ) -> Result<()> {
        let frag = fragment
            .as_object()
            .ok_or_else(|| NgsiError::invalid("the body must be a JSON object"))?;
        if frag.is_empty() {
            return Err(bad("the fragment is empty"));
        }
        if let Some(fid) = frag.get("id") {
            if fid.as_str() != Some(id) {
                return Err(bad("the fragment's id differs from the subscription's"));
            }
        }
        let stored = self.get_subscription(tenant, id).await?;
        let mut rec = Record::from_stored(&stored)?;
        let written = self.contexts.resolve(rec.context_source()).await?;
        for (k, v) in frag {
            if matches!(k.as_str(), "id" | "@context")
                || READ_ONLY.contains(&k.as_str())
                || !MEMBERS.contains(&k.as_str())
            {
                continue;
            }
            if v.is_null() {
                if matches!(k.as_str(), "notification" | "type") {
                    return Err(bad(format!("{k} is mandatory and cannot be removed")));
                }
                rec.doc.remove(k);
                continue;
            }
            // Names in the fragment are in the fragment's context: store them in the subscription's.
            let mut v = v.clone();
            match k.as_str() {
                "entities" => {
                    if let Some(list) = v.as_array_mut() {
                        for sel in list.iter_mut() {
                            if let Some(t) =
                                sel.get("type").and_then(Value::as_str).map(str::to_string)
                            {
                                sel["type"] = Value::String(recompact_types(&t, ctx, &written));
                            }
                        }
                    }
                }
                "watchedAttributes" => {
                    if let Some(a) = v.as_array_mut() {
                        for n in a.iter_mut() {
                            if let Some(s) = n.as_str().map(str::to_string) {
                                *n = Value::String(recompact(&s, ctx, &written));
                            }
                        }
                    }
                }
                "notification" => {
                    if let Some(n) = v.as_object_mut() {
                        for kk in NOTIFICATION_READ_ONLY {
                            n.remove(*kk);
                        }
                        // The fragment's notification replaces the stored one as a whole (§5.8.2).
                        for (nk, nv) in n.iter_mut() {
                            if matches!(nk.as_str(), "attributes" | "pick" | "omit") {
                                if let Some(a) = nv.as_array_mut() {
                                    for x in a.iter_mut() {
                                        if let Some(s) = x.as_str().map(str::to_string) {
                                            *x = Value::String(recompact(&s, ctx, &written));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            rec.doc.insert(k.clone(), v);
        }
        validate(&rec.doc)?;
        self.check_subscription_contexts(&rec.doc).await?;
        matching::Compiled::build(tenant, id, &rec, &written)?;
        rec.modified_at = misto_ngsild::validate::now();
        self.store
            .put_subscription(tenant, id, &rec.to_stored(), false)
            .await?;
        self.notifier.subscription_changed(self, tenant, id).await;
        Ok(())
    }

    pub async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<()> {
        if !misto_ngsild::validate::is_uri(id) {
            return Err(bad(format!("'{id}' is not a URI")));
        }
        if !self.store.delete_subscription(tenant, id).await? {
            return Err(NgsiError::not_found(format!("subscription {id} not found")));
        }
        self.notifier.subscription_changed(self, tenant, id).await;
        Ok(())
    }
}
