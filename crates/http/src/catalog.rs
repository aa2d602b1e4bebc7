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

pub async fn list_contexts(State(s): St, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let body = s.broker.contexts.list(p.bool("details")?, p.get("kind"))?;
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
    let url = s.broker.contexts.create_hosted(body)?;
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn get_context(State(s): St, Path(id): Path<String>, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let details = p.bool("details")?;
    let body = s.broker.contexts.get(&id, details)?;
    Ok(plain_json(
        StatusCode::OK,
        body,
        if details {
            "application/json"
        } else {
            "application/ld+json"
        },
    ))
}

pub async fn delete_context(
    State(s): St,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    s.broker.contexts.delete(&id, p.bool("reload")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
