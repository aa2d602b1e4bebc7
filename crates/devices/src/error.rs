//! Errors of the device layer, each answered once as RFC 7807 problem details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_ngsild::NgsiError;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{0}")]
    Invalid(String),
    /// A profile's codec failed one of its test vectors.
    #[error("codec test vector '{}' failed: {}", .0.name, .0.detail)]
    VectorFailed(Box<VectorFailure>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("storage: {0}")]
    Store(#[from] misto_store::StoreError),
    #[error("{}", .0.detail)]
    Broker(NgsiError),
}

/// A failed codec test vector: the vector and what came out.
#[derive(Debug)]
pub struct VectorFailure {
    pub name: String,
    pub detail: String,
    pub vector: Value,
    pub got: Value,
}

impl From<NgsiError> for DeviceError {
    fn from(e: NgsiError) -> Self {
        DeviceError::Broker(e)
    }
}

impl DeviceError {
    pub fn invalid(s: impl Into<String>) -> Self {
        DeviceError::Invalid(s.into())
    }

    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            DeviceError::Invalid(_) => (StatusCode::BAD_REQUEST, "BadRequestData"),
            DeviceError::VectorFailed(_) => (StatusCode::BAD_REQUEST, "CodecTestVectorFailed"),
            DeviceError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            DeviceError::Conflict(_) => (StatusCode::CONFLICT, "AlreadyExists"),
            DeviceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            DeviceError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            DeviceError::Broker(e) => (
                StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
                "BrokerError",
            ),
        }
    }
}

impl IntoResponse for DeviceError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        if status.is_server_error() {
            tracing::warn!(error = %self, "device request failed");
        }
        let mut body = match &self {
            DeviceError::Broker(e) => e.to_problem(),
            _ => json!({
                "type": format!("urn:misto:devices:{kind}"),
                "title": kind,
                "status": status.as_u16(),
                "detail": self.to_string(),
            }),
        };
        if let (DeviceError::VectorFailed(f), Some(o)) = (&self, body.as_object_mut()) {
            o.insert("vector".into(), f.vector.clone());
            o.insert("got".into(), f.got.clone());
        }
        let mut r = (status, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}
