//! Per-request inputs shared by handlers: tenant, parameters, context, accepted representation, body.

use axum::body::Bytes;
use axum::http::HeaderMap;
use misto_ngsild::{Context, ErrorKind, NgsiError};
use serde_json::Value;

use crate::negotiate::{self, Accept, JsonBody};
use crate::params::Params;
use crate::AppState;

pub const TENANT_HEADER: &str = "NGSILD-Tenant";

/// The tenant named by the request (empty: the default tenant).
pub fn tenant(headers: &HeaderMap) -> Result<String, NgsiError> {
    let Some(v) = headers.get(TENANT_HEADER) else {
        return Ok(String::new());
    };
    let t = v
        .to_str()
        .map_err(|_| NgsiError::bad_data("NGSILD-Tenant is not valid text"))?
        .trim();
    if t.len() > 128
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
    {
        return Err(NgsiError::bad_data(format!(
            "NGSILD-Tenant '{t}' must be at most 128 letters, digits or _ - . : /"
        )));
    }
    Ok(t.to_string())
}

/// Tenant for a read: an unknown tenant is an error (§6.3.? NonexistentTenant).
pub fn read_tenant(state: &AppState, headers: &HeaderMap) -> Result<String, NgsiError> {
    let t = tenant(headers)?;
    if !state.tenant_exists(&t) {
        return Err(NgsiError::new(
            ErrorKind::NonexistentTenant,
            format!("tenant '{t}' does not exist"),
        ));
    }
    Ok(t)
}

/// The resolved context of a request without body.
pub async fn context(state: &AppState, headers: &HeaderMap) -> Result<Context, NgsiError> {
    let src = negotiate::query_context(headers)?;
    state.broker.contexts.resolve(src.as_ref()).await
}

/// A body above the configured limit is PayloadTooLarge.
fn check_limit(state: &AppState, bytes: &Bytes) -> Result<(), NgsiError> {
    if bytes.len() > state.config.body_limit {
        return Err(NgsiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the body has {} bytes; the limit is {}",
                bytes.len(),
                state.config.body_limit
            ),
        ));
    }
    Ok(())
}

/// Body, its context resolved.
pub async fn body(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &Bytes,
    merge_patch: bool,
) -> Result<(serde_json::Value, Context), NgsiError> {
    check_limit(state, bytes)?;
    let JsonBody { body, context } = negotiate::json_body(headers, bytes, merge_patch)?;
    let ctx = state.broker.contexts.resolve(context.as_ref()).await?;
    Ok((body, ctx))
}

/// A batch body (see [`negotiate::batch_json_body`]) with its context resolved.
pub async fn batch_body(
    state: &AppState,
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<(negotiate::BatchBody, Context), NgsiError> {
    check_limit(state, bytes)?;
    let mut b = negotiate::batch_json_body(headers, bytes)?;
    if b.item_contexts.is_empty() {
        let ctx = state.broker.contexts.resolve(b.context.as_ref()).await?;
        return Ok((b, ctx));
    }
    // Each entity of a JSON-LD batch carries its own @context: one that cannot be loaded fails that entity
    // (an error of the 207 answer), not the batch. The batch is read with the first context that loads.
    let mut tried: Vec<(Value, Result<Context, NgsiError>)> = Vec::new();
    let mut shared: Option<Context> = None;
    let mut items = Vec::with_capacity(b.items.len());
    for (item, c) in std::mem::take(&mut b.items)
        .into_iter()
        .zip(std::mem::take(&mut b.item_contexts))
    {
        let known = tried.iter().position(|(v, _)| *v == c);
        let at = match known {
            Some(i) => i,
            None => {
                let r = state.broker.contexts.resolve(Some(&c)).await;
                tried.push((c, r));
                tried.len() - 1
            }
        };
        match &tried[at].1 {
            Ok(ctx) => {
                if shared.is_none() {
                    shared = Some(ctx.clone());
                }
                items.push(item);
            }
            Err(e) => {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                b.refused.push((id.to_string(), e.clone()));
            }
        }
    }
    b.items = items;
    let ctx = match shared {
        Some(c) => c,
        None => state.broker.contexts.resolve(None).await?,
    };
    Ok((b, ctx))
}

pub fn params(raw: Option<&str>) -> Result<Params, NgsiError> {
    Params::parse(raw)
}

pub fn accept(headers: &HeaderMap, geo: bool) -> Result<Accept, NgsiError> {
    negotiate::accept(headers, geo)
}

/// Where a response links its context: the request's URL, or the hosted copy of an inline context.
pub fn link_for(state: &AppState, ctx: &Context) -> Option<String> {
    ctx.link_url()
        .or_else(|| Some(state.broker.contexts.implicit(&ctx.source())))
}

/// The request body read up to the configured limit; larger bodies get a 413 problem, not a dropped connection.
pub struct LimitedBody(pub Bytes);

impl axum::extract::FromRequest<AppState> for LimitedBody {
    type Rejection = crate::Problem;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let limit = state.config.body_limit;
        match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(b) => Ok(LimitedBody(b)),
            Err(e) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                if too_large {
                    Err(crate::Problem(NgsiError::new(
                        ErrorKind::PayloadTooLarge,
                        format!("the body is larger than the limit of {limit} bytes"),
                    )))
                } else {
                    Err(crate::Problem(NgsiError::invalid(format!(
                        "the body could not be read: {e}"
                    ))))
                }
            }
        }
    }
}

/// Characters an id may hold that cannot stand in a URL path segment as they are.
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

/// A 201 answer whose Location is `collection/id` (the tenant is echoed by the precheck).
pub fn created(collection: &str, id: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = axum::http::StatusCode::CREATED.into_response();
    let loc = format!(
        "{collection}/{}",
        percent_encoding::utf8_percent_encode(id, PATH_UNSAFE)
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&loc) {
        r.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    r
}
