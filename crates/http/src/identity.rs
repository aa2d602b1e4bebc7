//! `GET /info/sourceIdentity` (V1.9 §5.15.1, ContextSourceIdentity §5.2.40): who this broker is, per tenant, and
//! for how long it has been up — what a federating peer records about it.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use crate::problem::ApiResult;
use crate::{request, St};

/// When this process started and the identifier it goes by.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: String,
    pub started: Instant,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            id: format!("urn:ngsi-ld:ContextSource:{}", uuid::Uuid::new_v4()),
            started: Instant::now(),
        }
    }
}

/// An ISO 8601 duration with millisecond precision.
fn duration(d: std::time::Duration) -> String {
    format!("PT{}.{:03}S", d.as_secs(), d.subsec_millis())
}

pub async fn source_identity(State(s): St, headers: HeaderMap) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    // The alias names this broker and, in a tenant, that tenant (§4.14): two tenants never share one.
    let alias = if tenant.is_empty() {
        "misto".to_string()
    } else {
        format!("misto/{tenant}")
    };
    let body = json!({
        "id": s.identity.id,
        "type": "ContextSourceIdentity",
        "contextSourceAlias": alias,
        "contextSourceUptime": duration(s.identity.started.elapsed()),
        "contextSourceTimeAt": misto_ngsild::validate::now(),
        "contextSourceExtras": {"software": "misto", "version": env!("CARGO_PKG_VERSION")},
    });
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
