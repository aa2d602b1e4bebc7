//! Checks every API request passes before its handler runs: a body's length must be declared (411), and only
//! the query parameters the operation defines may appear (an unknown one is an InvalidRequest, §6.3.20). Answers
//! echo the request's tenant.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use misto_ngsild::{ErrorKind, NgsiError};

use crate::problem::Problem;

/// Parameters of entity selection shared by queries, purges and the types/attributes catalog.
const SELECT: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "attrs",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "scopeQ",
    "csf",
    "local",
    "via",
];
/// Parameters shaping how entities are rendered.
const RENDER: &[&str] = &[
    "options",
    "format",
    "attrs",
    "pick",
    "omit",
    "lang",
    "geometryProperty",
    "datasetId",
    "join",
    "joinLevel",
    "containedBy",
    "entityMap",
    "expandValues",
    "local",
    "via",
    "type",
];
/// Paging, counting and ordering of lists.
const LIST: &[&str] = &[
    "limit",
    "offset",
    "count",
    "orderBy",
    "collation",
    "orderFrom",
];

/// The parameters an operation defines; None leaves the route unchecked.
fn allowed(route: &str, method: &Method) -> Option<Vec<&'static str>> {
    let r = route.strip_prefix("/ngsi-ld/v1").unwrap_or(route);
    let m = method.as_str();
    let v: Vec<&'static str> = match (r, m) {
        ("/entities", "GET") => [SELECT, RENDER, LIST].concat(),
        ("/entities", "DELETE") => [SELECT, &["keep", "drop", "count"][..]].concat(),
        ("/entities", "POST") => vec!["local"],
        ("/entities/{id}", _)
        | ("/entities/{id}/attrs", _)
        | ("/entities/{id}/attrs/{attr}", _) => {
            [RENDER, &["deleteAll", "noOverwrite"][..]].concat()
        }
        ("/entityOperations/query", _) => [RENDER, LIST].concat(),
        (r, _) if r.starts_with("/entityOperations/") => vec!["options", "local"],
        ("/types", _) | ("/types/{type}", _) | ("/attributes", _) | ("/attributes/{attr}", _) => {
            vec!["details", "local", "via", "limit", "offset"]
        }
        (r, _) if r.starts_with("/jsonldContexts") => vec!["details", "kind", "reload"],
        _ => return None,
    };
    Some(v)
}

fn refuse(kind: ErrorKind, detail: String) -> Response {
    Problem::from(NgsiError::new(kind, detail)).into_response()
}

pub(crate) async fn precheck(req: Request, next: Next) -> Response {
    // A chunked body has no declared length; §6.3.4 answers it with a bare 411.
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && !req.headers().contains_key(header::CONTENT_LENGTH)
        && req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return StatusCode::LENGTH_REQUIRED.into_response();
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    if let (Some(route), Some(query)) = (route, req.uri().query()) {
        if let Some(ok) = allowed(&route, req.method()) {
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(k, _)| k);
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                if !ok.contains(&name.as_ref()) {
                    return refuse(
                        ErrorKind::InvalidRequest,
                        format!("'{name}' is not a parameter of this operation"),
                    );
                }
            }
        }
    }
    // Every answer names the tenant it was given for (§6.3.14).
    let tenant = req.headers().get("NGSILD-Tenant").cloned();
    let mut resp = next.run(req).await;
    if let Some(t) = tenant {
        resp.headers_mut().entry("NGSILD-Tenant").or_insert(t);
    }
    resp
}
