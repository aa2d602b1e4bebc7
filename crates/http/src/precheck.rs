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

/// The temporal query (§5.7.3) and the temporal representations.
const TEMPORAL: &[&str] = &[
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "lastN",
    "aggrMethods",
    "aggrPeriodDuration",
    "options",
    "format",
    "attrs",
    "lang",
    "type",
];

/// The parameters an operation defines, as groups; None leaves the route unchecked.
fn allowed(route: &str, method: &Method) -> Option<&'static [&'static [&'static str]]> {
    let r = route.strip_prefix("/ngsi-ld/v1").unwrap_or(route);
    let groups: &'static [&'static [&'static str]] = match (r, method.as_str()) {
        ("/entities", "GET") => &[SELECT, RENDER, LIST],
        ("/entities", "DELETE") => &[SELECT, &["keep", "drop", "count"]],
        ("/entities", "POST") => &[&["local"]],
        ("/entities/{id}", _)
        | ("/entities/{id}/attrs", _)
        | ("/entities/{id}/attrs/{attr}", _) => &[RENDER, &["deleteAll", "noOverwrite"]],
        ("/entityOperations/query", _) => &[RENDER, LIST],
        ("/temporal/entities", "GET") => &[SELECT, TEMPORAL, LIST],
        ("/temporal/entities", _) => &[&["local"]],
        ("/temporal/entities/{id}", "GET") => &[TEMPORAL],
        ("/temporalEntityOperations/query", _) | ("/temporal/entityOperations/query", _) => {
            &[TEMPORAL, LIST]
        }
        (r, _) if r.starts_with("/temporal/") => &[&["datasetId", "deleteAll"]],
        (r, _) if r.starts_with("/entityOperations/") => &[&["options", "local"]],
        // §6.3.20: the lists define details and local (attributes also count), one type or attribute local.
        ("/types", _) => &[&["details", "local", "via"]],
        ("/attributes", _) => &[&["details", "local", "count", "via"]],
        ("/types/{type}", _) | ("/attributes/{attr}", _) => &[&["local", "via"]],
        ("/subscriptions", "GET") => &[&["limit", "offset", "count", "options", "format"]],
        ("/subscriptions", _) => &[],
        ("/subscriptions/{id}", _) => &[&["options", "format"]],
        (r, _) if r.starts_with("/jsonldContexts") => &[&["details", "kind", "reload"]],
        ("/csourceRegistrations", "GET") => &[
            &[
                "id",
                "type",
                "idPattern",
                "attrs",
                "q",
                "csf",
                "georel",
                "geometry",
                "coordinates",
                "geoproperty",
                "timeproperty",
                "timerel",
                "timeAt",
                "endTimeAt",
                "scopeQ",
                "options",
            ],
            LIST,
        ],
        ("/csourceRegistrations", _) => &[],
        ("/csourceRegistrations/{id}", _) => &[&["options"]],
        ("/entityMaps/{id}", _) => &[],
        _ => return None,
    };
    Some(groups)
}

/// The first query parameter the operation does not define.
fn undefined_parameter(req: &Request) -> Option<String> {
    let route = req.extensions().get::<MatchedPath>()?;
    let groups = allowed(route.as_str(), req.method())?;
    req.uri()
        .query()?
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k))
        .map(|name| percent_encoding::percent_decode_str(name).decode_utf8_lossy())
        .find(|name| !groups.iter().any(|g| g.contains(&name.as_ref())))
        .map(|name| name.into_owned())
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
    if let Some(name) = undefined_parameter(&req) {
        return refuse(
            ErrorKind::InvalidRequest,
            format!("'{name}' is not a parameter of this operation"),
        );
    }
    // Every answer names the tenant it was given for (§6.3.14).
    let tenant = req.headers().get("NGSILD-Tenant").cloned();
    let mut resp = next.run(req).await;
    if let Some(t) = tenant {
        resp.headers_mut().entry("NGSILD-Tenant").or_insert(t);
    }
    resp
}
