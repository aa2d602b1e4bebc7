//! Content negotiation (§6.3.4–6.3.6): where the request's `@context` comes from, which representation the
//! client accepts, and how a response carries its context (Link header or `@context` member).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use misto_ngsild::{Context, ErrorKind, NgsiError};
use serde_json::Value;

use crate::problem::{problem, ApiResult};

pub const JSONLD_CONTEXT_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// What the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Json,
    JsonLd,
    GeoJson,
}

/// Pick the response type from `Accept` (§6.3.4 with RFC 9110 §5.3.2): each representation the operation offers
/// takes the weight of the most specific media range matching it (exact > `type/*` > `*/*`); weight 0 refuses it;
/// among equal weights the §6.3.4 list order (JSON, JSON-LD, GeoJSON) decides. A malformed `q` keeps weight 1.
pub fn accept(headers: &HeaderMap, allow_geo: bool) -> Result<Accept, NgsiError> {
    let Some(raw) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Accept::Json);
    };
    if raw.trim().is_empty() {
        return Ok(Accept::Json);
    }
    // (media range, weight) per listed entry.
    let ranges: Vec<(String, f32)> = raw
        .split(',')
        .map(|part| {
            let mut it = part.split(';');
            let mime = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .filter_map(|p| p.trim().strip_prefix("q=").map(str::trim))
                .filter_map(|v| v.parse::<f32>().ok())
                .rfind(|q| (0.0..=1.0).contains(q))
                .unwrap_or(1.0);
            (mime, q)
        })
        .collect();
    let offers: &[(&str, Accept)] = if allow_geo {
        &[
            ("application/json", Accept::Json),
            ("application/ld+json", Accept::JsonLd),
            ("application/geo+json", Accept::GeoJson),
        ]
    } else {
        &[
            ("application/json", Accept::Json),
            ("application/ld+json", Accept::JsonLd),
        ]
    };
    let mut best: Option<(f32, Accept)> = None;
    for (mime, a) in offers {
        if let Some(q) = weight_of(mime, &ranges) {
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, *a));
            }
        }
    }
    best.map(|(_, a)| a).ok_or_else(|| {
        NgsiError::new(
            ErrorKind::NotAcceptable,
            format!("cannot answer with any of the accepted types '{raw}'; use application/json or application/ld+json"),
        )
    })
}

/// The weight `mime` gets from the most specific matching range, if any range matches it.
fn weight_of(mime: &str, ranges: &[(String, f32)]) -> Option<f32> {
    let major = mime.split('/').next().unwrap_or("");
    let mut best: Option<(u8, f32)> = None;
    for (range, q) in ranges {
        let specificity = if range == mime {
            3
        } else if range.strip_suffix("/*") == Some(major) {
            2
        } else if range == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, *q));
        }
    }
    best.map(|(_, q)| q)
}

/// `Prefer: body=json` (§6.3.6): a GeoJSON answer leaves its `@context` to the Link header.
pub fn prefers_plain_json(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("body=json"))
}

/// The NGSI-LD version a client prefers (`Prefer: ngsi-ld=1.x`, §6.3.6 and RFC 7240: preference names are
/// case-insensitive, values may be quoted and carry parameters, and other preferences may come before it),
/// as it goes back in `Preference-Applied` (None: no version this broker can answer in was asked for).
pub fn version_preference(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|pref| {
            let token = pref.split(';').next()?.trim();
            let (name, value) = token.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("ngsi-ld") {
                return None;
            }
            let v = value.trim().trim_matches('"');
            let (major, minor) = v.split_once('.')?;
            let known = major == "1"
                && minor
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            known.then(|| format!("ngsi-ld={v}"))
        })
}

/// Amend rendered entities (one, or an array) for the NGSI-LD version the client prefers (§4.3.6.8). Returns
/// the `Preference-Applied` value (None: no version preference) and whether the payload was altered (then
/// answered 203 Non-Authoritative Information).
pub fn amend_for_version(headers: &HeaderMap, body: &mut Value) -> (Option<HeaderValue>, bool) {
    let Some(pref) = version_preference(headers) else {
        return (None, false);
    };
    let applied = HeaderValue::from_str(&pref).ok();
    let Some(v) = pref
        .strip_prefix("ngsi-ld=")
        .and_then(misto_ngsild::compat::Version::parse)
    else {
        return (applied, false);
    };
    let mut altered = false;
    match body {
        Value::Object(e) => altered = misto_ngsild::compat::downgrade_entity(e, v),
        Value::Array(items) => {
            for e in items.iter_mut().filter_map(Value::as_object_mut) {
                altered |= misto_ngsild::compat::downgrade_entity(e, v);
            }
        }
        _ => {}
    }
    (applied, altered)
}

/// The `@context` URL of a `Link` header with the JSON-LD context relation.
pub fn link_context(headers: &HeaderMap) -> Result<Option<String>, NgsiError> {
    let mut found = None;
    for v in headers.get_all(header::LINK) {
        let s = v
            .to_str()
            .map_err(|_| NgsiError::bad_data("the Link header is not valid text"))?;
        for link in s.split(',') {
            let link = link.trim();
            if !link.contains(JSONLD_CONTEXT_REL) {
                continue;
            }
            let url = link
                .strip_prefix('<')
                .and_then(|r| r.split_once('>'))
                .map(|(u, _)| u.trim().to_string())
                .ok_or_else(|| NgsiError::bad_data(format!("malformed Link header '{link}'")))?;
            if url.is_empty() || !url.contains(':') {
                return Err(NgsiError::bad_data(format!(
                    "the Link header's context '{url}' is not a URL"
                )));
            }
            found = Some(url);
        }
    }
    Ok(found)
}

/// Parsed request body with its `@context` (for requests with a body).
pub struct JsonBody {
    pub body: Value,
    /// The context source: from the body (`application/ld+json`) or the Link header (`application/json`).
    pub context: Option<Value>,
}

/// The request's Content-Type (`true` for JSON-LD; merge-patch only where allowed) and its body parsed as
/// JSON. A missing or other type is UnsupportedMediaType; an empty or malformed body is InvalidRequest.
fn parse_json(
    headers: &HeaderMap,
    bytes: &[u8],
    allow_merge_patch: bool,
) -> Result<(bool, Value), NgsiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| {
            s.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let ld = match ct.as_deref() {
        Some("application/json") => false,
        Some("application/merge-patch+json") if allow_merge_patch => false,
        Some("application/ld+json") => true,
        None => {
            return Err(NgsiError::new(
                ErrorKind::UnsupportedMediaType,
                "Content-Type is missing; use application/json or application/ld+json",
            ))
        }
        Some(other) => {
            return Err(NgsiError::new(
                ErrorKind::UnsupportedMediaType,
                format!("Content-Type '{other}' is not supported; use application/json or application/ld+json"),
            ))
        }
    };
    if bytes.is_empty() {
        return Err(NgsiError::invalid("the request body is empty"));
    }
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| NgsiError::invalid(format!("the body is not valid JSON: {e}")))?;
    Ok((ld, body))
}

/// Check the content type and parse the body.
pub fn json_body(
    headers: &HeaderMap,
    bytes: &[u8],
    allow_merge_patch: bool,
) -> Result<JsonBody, NgsiError> {
    let (ld, mut body) = parse_json(headers, bytes, allow_merge_patch)?;
    let link = link_context(headers)?;
    let context = if ld {
        // A JSON-LD request body is one object (batches have their own reader).
        if !body.is_object() {
            return Err(NgsiError::invalid("the body must be a JSON object"));
        }
        if link.is_some() {
            return Err(NgsiError::bad_data(
                "with Content-Type application/ld+json the @context must be in the body, not in a Link header",
            ));
        }
        let ctx = match &mut body {
            Value::Object(o) => o.remove("@context"),
            Value::Array(items) => {
                let mut first = None;
                for item in items.iter_mut() {
                    let c = item.as_object_mut().and_then(|o| o.remove("@context"));
                    if c.is_none() {
                        return Err(NgsiError::bad_data(
                            "with Content-Type application/ld+json every item needs an @context",
                        ));
                    }
                    if first.is_none() {
                        first = c;
                    }
                }
                first
            }
            _ => None,
        };
        Some(ctx.ok_or_else(|| {
            NgsiError::bad_data(
                "with Content-Type application/ld+json the body must carry an @context",
            )
        })?)
    } else {
        let has_ctx = match &body {
            Value::Object(o) => o.contains_key("@context"),
            Value::Array(a) => a.iter().any(|i| i.get("@context").is_some()),
            _ => false,
        };
        if has_ctx {
            return Err(NgsiError::bad_data(
                "with Content-Type application/json the @context must be given in a Link header, not in the body",
            ));
        }
        link.map(Value::String)
    };
    Ok(JsonBody { body, context })
}

/// A batch body: its items, the `@context` they share, and the items refused on their own (an entity with an
/// `@context` under `application/json`, one without under `application/ld+json`): those are errors of that
/// entity in the 207 answer, not of the whole batch. A `null` item makes the whole batch invalid.
pub struct BatchBody {
    pub items: Vec<Value>,
    pub context: Option<Value>,
    pub refused: Vec<(String, NgsiError)>,
    /// Under `application/ld+json`, each item's own `@context` (parallel to `items`).
    pub item_contexts: Vec<Value>,
}

pub fn batch_json_body(headers: &HeaderMap, bytes: &[u8]) -> Result<BatchBody, NgsiError> {
    let (ld, body) = parse_json(headers, bytes, false)?;
    let Value::Array(all) = body else {
        return Err(NgsiError::bad_data("a batch body must be a JSON array"));
    };
    if all.is_empty() {
        return Err(NgsiError::bad_data("a batch needs at least one item"));
    }
    if all.iter().any(Value::is_null) {
        return Err(NgsiError::bad_data(
            "a batch must not contain null items (§5.6.7): nothing was done",
        ));
    }
    let link = link_context(headers)?;
    if ld && link.is_some() {
        return Err(NgsiError::bad_data(
            "with Content-Type application/ld+json the @context must be in the body, not in a Link header",
        ));
    }
    let mut out = BatchBody {
        items: Vec::with_capacity(all.len()),
        context: if ld { None } else { link.map(Value::String) },
        refused: Vec::new(),
        item_contexts: Vec::new(),
    };
    for mut item in all {
        let id = item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let Some(o) = item.as_object_mut() else {
            out.items.push(item);
            continue;
        };
        match (ld, o.remove("@context")) {
            (true, None) => out.refused.push((
                id,
                NgsiError::bad_data(
                    "with Content-Type application/ld+json every entity needs an @context",
                ),
            )),
            (false, Some(_)) => out.refused.push((
                id,
                NgsiError::bad_data(
                    "with Content-Type application/json the @context must be given in a Link header, not in the body",
                ),
            )),
            (true, Some(c)) => {
                if out.context.is_none() {
                    out.context = Some(c.clone());
                }
                out.item_contexts.push(c);
                out.items.push(item);
            }
            (false, None) => out.items.push(item),
        }
    }
    Ok(out)
}

/// The `@context` of a request without a body (GET, DELETE): the Link header's, if any.
pub fn query_context(headers: &HeaderMap) -> Result<Option<Value>, NgsiError> {
    Ok(link_context(headers)?.map(Value::String))
}

/// A `Link` header value for a context URL.
pub fn link_header(url: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "<{url}>; rel=\"{JSONLD_CONTEXT_REL}\"; type=\"application/ld+json\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A JSON response carrying `ctx` the way `accept` asks: `@context` in the body (JSON-LD, GeoJSON) or a Link.
pub fn respond(
    status: StatusCode,
    mut body: Value,
    ctx: &Context,
    accept: Accept,
    link_url: Option<String>,
) -> ApiResult {
    let ctype = match accept {
        Accept::JsonLd => {
            let c = ctx.source();
            match &mut body {
                Value::Object(o) => {
                    o.insert("@context".into(), c);
                }
                Value::Array(items) => {
                    for i in items.iter_mut() {
                        if let Some(o) = i.as_object_mut() {
                            o.insert("@context".into(), c.clone());
                        }
                    }
                }
                _ => {}
            }
            "application/ld+json"
        }
        Accept::GeoJson => "application/geo+json",
        Accept::Json => "application/json",
    };
    let bytes =
        serde_json::to_vec(&body).map_err(|e| problem(ErrorKind::InternalError, e.to_string()))?;
    let mut r = (status, bytes).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if accept != Accept::JsonLd {
        if let Some(url) = link_url {
            r.headers_mut().insert(header::LINK, link_header(&url));
        }
    }
    Ok(r)
}
