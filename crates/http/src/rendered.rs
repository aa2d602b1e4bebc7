//! Answers built from renderings stored at write time (`misto_store::Found::Rendered`), for the plain reads
//! that can use them: normalized, no system attributes, no projection, no language selection, JSON or JSON-LD.
//! Anything else a request asks for goes through the ordinary renderer.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_ngsild::render::{render_entity, Format, RenderOptions};
use misto_ngsild::{Context, NgsiError};
use misto_store::Found;

use crate::negotiate::{link_header, Accept};
use crate::params::Params;

/// Query parameters that select entities without changing how each one is rendered.
pub(crate) const SELECTING: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "limit",
    "offset",
    "count",
    "scopeQ",
    "local",
];

/// Whether a read may be answered from stored renderings: every parameter is one of `selecting` or asks for
/// the normalized form, and nothing else shapes the answer.
pub(crate) fn plain(
    p: &Params,
    selecting: &[&str],
    opts: &RenderOptions,
    accept: Accept,
    headers: &HeaderMap,
) -> bool {
    matches!(accept, Accept::Json | Accept::JsonLd)
        && opts.format == Format::Normalized
        && !opts.sys_attrs
        && opts.attrs.is_none()
        && opts.omit.is_empty()
        && opts.pick_id
        && opts.pick_type
        && opts.lang.is_none()
        && opts.dataset_ids.is_none()
        && !headers.contains_key("prefer")
        && p.keys()
            .all(|k| selecting.contains(&k) || k == "options" || k == "format")
}

/// The JSON of one entity as `accept` wants it: the stored rendering (with `@context` appended for JSON-LD,
/// where the ordinary renderer puts it too) or the entity rendered now.
fn write_one(
    out: &mut Vec<u8>,
    found: &Found,
    ctx: &Context,
    accept: Accept,
) -> Result<(), NgsiError> {
    let start = out.len();
    match found {
        Found::Rendered(json) => out.extend_from_slice(json),
        Found::Entity(e) => {
            let v = render_entity(e, ctx, &RenderOptions::new(Format::Normalized));
            serde_json::to_writer(&mut *out, &v).map_err(|e| NgsiError::internal(e.to_string()))?;
        }
    }
    if accept == Accept::JsonLd && out.last() == Some(&b'}') {
        out.pop();
        if out.len() > start + 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"@context\":");
        serde_json::to_writer(&mut *out, &ctx.source())
            .map_err(|e| NgsiError::internal(e.to_string()))?;
        out.push(b'}');
    }
    Ok(())
}

fn response(body: Vec<u8>, accept: Accept, link_url: Option<String>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let ctype = if accept == Accept::JsonLd {
        "application/ld+json"
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if accept != Accept::JsonLd {
        if let Some(url) = link_url {
            r.headers_mut().insert(header::LINK, link_header(&url));
        }
    }
    r
}

/// `GET /entities/{id}` answered from a stored rendering.
pub(crate) fn entity(
    found: &Found,
    ctx: &Context,
    accept: Accept,
    link_url: Option<String>,
) -> Result<Response, NgsiError> {
    let mut body = Vec::with_capacity(2048);
    write_one(&mut body, found, ctx, accept)?;
    Ok(response(body, accept, link_url))
}

/// `GET /entities` answered from stored renderings.
pub(crate) fn entities(
    found: &[Found],
    total: Option<u64>,
    ctx: &Context,
    accept: Accept,
    link_url: Option<String>,
) -> Result<Response, NgsiError> {
    let mut body = Vec::with_capacity(2 + found.len() * 1536);
    body.push(b'[');
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        write_one(&mut body, f, ctx, accept)?;
    }
    body.push(b']');
    let mut r = response(body, accept, link_url);
    if let Some(total) = total {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            r.headers_mut().insert("NGSILD-Results-Count", v);
        }
    }
    Ok(r)
}
