//! `/health`, `/ready`, `/metrics`, and the problem answers for unknown routes and methods.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_ngsild::ErrorKind;
use serde_json::json;

use crate::problem::{problem, ApiResult};
use crate::St;

pub async fn health() -> Response {
    let mut r = (StatusCode::OK, json!({"status": "alive"}).to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub async fn ready(State(s): St) -> ApiResult {
    let started = std::time::Instant::now();
    s.broker.store.ping().await.map_err(|e| {
        problem(
            ErrorKind::ServiceUnavailable,
            format!("storage does not answer: {e}"),
        )
    })?;
    let mut r = (
        StatusCode::OK,
        // The bus only speeds a cluster up (every loop also polls): a disconnected bus is reported, not fatal.
        json!({"status": "ready", "storage": s.broker.store.backend(),
            "storageLatencyMs": started.elapsed().as_secs_f64() * 1000.0,
            "bus": {"kind": s.broker.bus.kind(), "connected": s.broker.bus.connected()}})
        .to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

pub async fn metrics(State(s): St) -> ApiResult {
    if let Ok(tenants) = s.broker.store.tenants().await {
        for (t, n) in tenants {
            let name = if t.is_empty() {
                "default".to_string()
            } else {
                t
            };
            metrics::gauge!("misto_entities", "tenant" => name).set(n as f64);
        }
    }
    let text = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

pub async fn not_found() -> Problem404 {
    Problem404
}

pub struct Problem404;

impl IntoResponse for Problem404 {
    fn into_response(self) -> Response {
        problem(
            ErrorKind::ResourceNotFound,
            "no such resource: check the path",
        )
        .into_response()
    }
}

/// `PUT`/`PATCH /entities` without an id: the request names no entity, which is bad data rather than a wrong
/// method.
pub async fn entity_id_missing() -> Response {
    problem(
        ErrorKind::BadRequestData,
        "replacing or merging an entity needs its id in the path: /entities/{id}",
    )
    .into_response()
}

pub async fn method_not_allowed() -> Response {
    problem(
        ErrorKind::MethodNotAllowed,
        "this method is not allowed on this resource",
    )
    .into_response()
}
