//! Pagination links of query answers (§4.12, §6.3.14 of the HTTP binding): `Link` headers with `rel="prev"`
//! and `rel="next"` pointing at the neighbouring pages, present only where such a page exists.

use axum::http::{header, HeaderValue};
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::params::Params;

/// What a parameter value cannot hold literally inside a query string within a `Link` header.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'<')
    .add(b'>')
    .add(b';');

/// The page of a result set the client asked for.
pub(crate) struct Page {
    pub offset: usize,
    pub limit: usize,
    /// More matches follow this page.
    pub more: bool,
}

fn link(path: &str, p: &Params, offset: usize, limit: usize, rel: &str, ctype: &str) -> String {
    let mut pairs: Vec<(String, String)> = p
        .pairs()
        .into_iter()
        .filter(|(k, _)| *k != "offset" && *k != "limit")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("limit".into(), limit.to_string()));
    pairs.push(("offset".into(), offset.to_string()));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, VALUE),
                utf8_percent_encode(v, VALUE)
            )
        })
        .collect();
    format!(
        "<{path}?{}>; rel=\"{rel}\";type=\"{ctype}\"",
        query.join("&")
    )
}

/// Add the prev/next links of `page` to a query answer at `path`.
pub(crate) fn add_links(r: &mut Response, path: &str, p: &Params, page: &Page) {
    if page.limit == 0 {
        return;
    }
    let ctype = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let mut links = Vec::new();
    if page.offset > 0 {
        let prev = page.offset.saturating_sub(page.limit);
        links.push(link(path, p, prev, page.limit, "prev", &ctype));
    }
    if page.more {
        let next = page.offset.saturating_add(page.limit);
        links.push(link(path, p, next, page.limit, "next", &ctype));
    }
    for l in links {
        if let Ok(v) = HeaderValue::from_str(&l) {
            r.headers_mut().append(header::LINK, v);
        }
    }
}
