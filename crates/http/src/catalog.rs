//! Handlers of `/types`, `/attributes` and `/jsonldContexts`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use misto_ngsild::NgsiError;

use crate::negotiate::respond;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::St;

pub async fn types(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let body = s
        .broker
        .list_types(&tenant, &ctx, p.bool("details")?)
        .await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

pub async fn type_info(State(s): St, headers: HeaderMap, Path(t): Path<String>) -> ApiResult {
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let body = s.broker.type_info(&tenant, &ctx, &t).await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

pub async fn attributes(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let body = s
        .broker
        .list_attributes(&tenant, &ctx, p.bool("details")?)
        .await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

pub async fn attribute_info(State(s): St, headers: HeaderMap, Path(a): Path<String>) -> ApiResult {
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let body = s.broker.attribute_info(&tenant, &ctx, &a).await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

fn plain_json(
    status: StatusCode,
    body: serde_json::Value,
    ctype: &'static str,
) -> axum::response::Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

// Hosted contexts belong to the tenant they were added in (§5.5.10); an unknown tenant simply has none.
pub async fn list_contexts(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::tenant(&headers)?;
    let body = s
        .broker
        .contexts
        .list(&tenant, p.bool("details")?, p.get("kind"))?;
    Ok(plain_json(StatusCode::OK, body, "application/json"))
}

pub async fn create_context(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct != "application/json" && ct != "application/ld+json" {
        return Err(NgsiError::new(
            misto_ngsild::ErrorKind::UnsupportedMediaType,
            "a context is created from application/json or application/ld+json",
        )
        .into());
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| NgsiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let tenant = request::tenant(&headers)?;
    let (id, _url) = s.broker.contexts.create_hosted(&tenant, body)?;
    // The Location is relative, as for every created resource; the hosted context's absolute URL is its
    // `URL` in the details (and a relative reference to it resolves against this broker).
    Ok(request::created("/ngsi-ld/v1/jsonldContexts", &id))
}

pub async fn get_context(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let details = p.bool("details")?;
    let tenant = request::tenant(&headers)?;
    let body = s.broker.contexts.get(&tenant, &id, details)?;
    // A context document is JSON; it is labelled JSON-LD only for a client that asks for that.
    let wants_ld = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/ld+json"));
    let ctype = if wants_ld && !details {
        "application/ld+json"
    } else {
        "application/json"
    };
    Ok(plain_json(StatusCode::OK, body, ctype))
}

pub async fn delete_context(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::tenant(&headers)?;
    s.broker
        .contexts
        .delete(&tenant, &id, p.bool("reload")?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
