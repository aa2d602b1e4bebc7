//! RFC 7807 problem-details responses for NGSI-LD errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_ngsild::{ErrorKind, NgsiError};

/// An error answered as `application/json` problem details.
#[derive(Debug)]
pub struct Problem(pub NgsiError);

impl From<NgsiError> for Problem {
    fn from(e: NgsiError) -> Self {
        Problem(e)
    }
}

impl From<misto_store::StoreError> for Problem {
    fn from(e: misto_store::StoreError) -> Self {
        Problem(e.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(detail = %self.0.detail, "request failed");
        }
        let body = serde_json::to_vec(&self.0.to_problem()).unwrap_or_default();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

pub fn problem(kind: ErrorKind, detail: impl Into<String>) -> Problem {
    Problem(NgsiError::new(kind, detail))
}

pub type ApiResult<T = Response> = Result<T, Problem>;
