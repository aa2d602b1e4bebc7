//! `/entityMaps/{id}` (§5.14, §6.34 of the HTTP binding): retrieve, update and delete the entity maps the
//! broker made for earlier requests.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use crate::negotiate::respond;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::St;

pub async fn retrieve(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let accept = request::accept(&headers, false)?;
    let tenant = request::tenant(&headers)?;
    let ctx = request::context(&s, &headers).await?;
    let body = s.broker.get_entity_map(&tenant, &id).await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

pub async fn update(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, _ctx) = request::body(&s, &headers, &bytes, true).await?;
    s.broker.update_entity_map(&tenant, &id, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    s.broker.delete_entity_map(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
