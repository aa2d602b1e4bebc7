//! `/subscriptions` (§5.8, §6.10–6.11 of the HTTP binding): create, list, retrieve, update, delete.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use misto_broker::subscriptions::ShowOptions;
use misto_ngsild::NgsiError;
use serde_json::Value;

use crate::negotiate::respond;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::{paging, St};

pub async fn create(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let id = s.broker.create_subscription(&tenant, &ctx, &body).await?;
    s.note_tenant(&tenant);
    Ok(request::created("/ngsi-ld/v1/subscriptions", &id))
}

fn show_options(p: &crate::params::Params) -> Result<ShowOptions, NgsiError> {
    Ok(ShowOptions {
        sys_attrs: p.has_option("sysAttrs")?,
    })
}

pub async fn retrieve(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let sub = s.broker.get_subscription(&tenant, &id).await?;
    let body = s
        .broker
        .subscription_view(&sub, &ctx, show_options(&p)?)
        .await?;
    let mut r = respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )?;
    // A Subscription has no earlier-version fallbacks (§4.3.6.8 covers Entity data): it is answered as it
    // is, and the version preference is still applied.
    if let Some(v) = crate::negotiate::version_preference(&headers) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            r.headers_mut().insert("Preference-Applied", v);
        }
    }
    Ok(r)
}

pub async fn list(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let opts = show_options(&p)?;
    let limit = p.usize("limit")?.unwrap_or(s.broker.config.default_limit);
    if limit > s.broker.config.max_limit {
        return Err(NgsiError::new(
            misto_ngsild::ErrorKind::TooManyResults,
            format!("limit may be at most {}", s.broker.config.max_limit),
        )
        .into());
    }
    let offset = p.usize("offset")?.unwrap_or(0);
    let all = s.broker.list_subscriptions(&tenant).await?;
    let total = all.len();
    let mut items = Vec::new();
    for sub in all.iter().skip(offset).take(limit) {
        items.push(s.broker.subscription_view(sub, &ctx, opts).await?);
    }
    let mut r = respond(
        StatusCode::OK,
        Value::Array(items),
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )?;
    if p.bool("count")? {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            r.headers_mut().insert("NGSILD-Results-Count", v);
        }
    }
    let page = paging::Page {
        offset,
        limit,
        more: offset.saturating_add(limit) < total,
    };
    paging::add_links(&mut r, "/ngsi-ld/v1/subscriptions", &p, &page);
    Ok(r)
}

pub async fn update(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    if !misto_ngsild::validate::is_uri(&id) {
        return Err(NgsiError::bad_data(format!("'{id}' is not a URI")).into());
    }
    let (body, ctx) = request::body(&s, &headers, &bytes, true).await?;
    s.broker
        .update_subscription(&tenant, &id, &ctx, &body)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    s.broker.delete_subscription(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
