//! Handlers of `/entityOperations/*`: batch create, upsert, update, delete, merge, and query by POST.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_broker::{BatchOutcome, EntityQueryParams, GeoParams};
use misto_ngsild::NgsiError;
use serde_json::{json, Value};

use crate::entities::{join_page, query_response};
use crate::negotiate::BatchBody;
use crate::problem::ApiResult;
use crate::representation::{language_preference, parse_projection, project, render_options};
use crate::request::{self, LimitedBody};
use crate::St;

fn multi_status(o: &BatchOutcome) -> Response {
    let body = json!({
        "success": o.success,
        "errors": o.errors.iter().map(|(id, e)| json!({"entityId": id, "error": e.to_problem()})).collect::<Vec<_>>(),
    });
    let mut r = (StatusCode::MULTI_STATUS, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Run a batch over the items that passed the request-level checks; the refused ones join its errors. When
/// every item was refused, the batch itself does not run.
async fn run_batch<F, Fut>(b: BatchBody, run: F) -> Result<BatchOutcome, NgsiError>
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = Result<BatchOutcome, NgsiError>>,
{
    let mut o = if b.items.is_empty() {
        BatchOutcome::default()
    } else {
        run(Value::Array(b.items)).await?
    };
    o.errors.splice(0..0, b.refused);
    Ok(o)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub async fn create(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (b, ctx) = request::batch_body(&s, &headers, &bytes).await?;
    let (broker, t) = (&s.broker, tenant.as_str());
    let o = run_batch(b, |body| async move {
        broker.batch_create(t, &ctx, &body).await
    })
    .await?;
    if !o.success.is_empty() {
        s.note_tenant(&tenant);
    }
    if o.errors.is_empty() {
        return Ok(json_response(StatusCode::CREATED, json!(o.success)));
    }
    Ok(multi_status(&o))
}

pub async fn upsert(
    State(s): St,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::tenant(&headers)?;
    let (b, ctx) = request::batch_body(&s, &headers, &bytes).await?;
    let opts = p.options()?;
    let update = opts.iter().any(|o| o == "update");
    if update && opts.iter().any(|o| o == "replace") {
        return Err(NgsiError::bad_data("options replace and update exclude each other").into());
    }
    let (broker, t) = (&s.broker, tenant.as_str());
    let o = run_batch(b, |body| async move {
        broker.batch_upsert(t, &ctx, &body, !update).await
    })
    .await?;
    if !o.success.is_empty() {
        s.note_tenant(&tenant);
    }
    if !o.errors.is_empty() {
        return Ok(multi_status(&o));
    }
    if o.created.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(json_response(StatusCode::CREATED, json!(o.created)))
    }
}

pub async fn update(
    State(s): St,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::tenant(&headers)?;
    let (b, ctx) = request::batch_body(&s, &headers, &bytes).await?;
    let no_overwrite = p.has_option("noOverwrite")?;
    let (broker, t) = (&s.broker, tenant.as_str());
    let o = run_batch(b, |body| async move {
        broker.batch_update(t, &ctx, &body, no_overwrite).await
    })
    .await?;
    if o.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(multi_status(&o))
    }
}

pub async fn merge(State(s): St, headers: HeaderMap, LimitedBody(bytes): LimitedBody) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (b, ctx) = request::batch_body(&s, &headers, &bytes).await?;
    let (broker, t) = (&s.broker, tenant.as_str());
    let o = run_batch(
        b,
        |body| async move { broker.batch_merge(t, &ctx, &body).await },
    )
    .await?;
    if o.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(multi_status(&o))
    }
}

pub async fn delete(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (b, _ctx) = request::batch_body(&s, &headers, &bytes).await?;
    let (broker, t) = (&s.broker, tenant.as_str());
    let o = run_batch(b, |body| async move { broker.batch_delete(t, &body).await }).await?;
    if o.errors.is_empty() {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Ok(multi_status(&o))
    }
}

/// Every item of a JSON array as a string; `error` when one is not.
fn strings(items: &[Value], error: &str) -> Result<Vec<String>, NgsiError> {
    items
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| NgsiError::bad_data(error))
        })
        .collect()
}

fn str_member(v: &Value, k: &str) -> Result<Option<String>, NgsiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(NgsiError::bad_data(format!(
            "query: {k} must be a non-empty string"
        ))),
    }
}

/// The Query data type (§5.2.23) to query parameters.
fn query_from_body(body: &Value) -> Result<EntityQueryParams, NgsiError> {
    if body.get("temporalQ").is_some() {
        return Err(NgsiError::bad_data(
            "query: temporalQ belongs to the temporal API, not to entity queries",
        ));
    }
    query_selection(body)
}

/// The entity selection of a Query (§5.2.23): everything but `temporalQ`.
pub(crate) fn query_selection(body: &Value) -> Result<EntityQueryParams, NgsiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("the query must be a JSON object"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("Query") => {}
        _ => return Err(NgsiError::bad_data("the query's type must be \"Query\"")),
    }
    let mut p = EntityQueryParams::default();
    if let Some(ents) = obj.get("entities") {
        let list = ents
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| NgsiError::bad_data("query: entities must be a non-empty array"))?;
        let mut types = Vec::new();
        let mut ids = Vec::new();
        for sel in list {
            let t = str_member(sel, "type")?
                .ok_or_else(|| NgsiError::bad_data("query: every entity selector needs a type"))?;
            types.push(t);
            // id (a URI or an array of URIs) takes precedence over idPattern (§5.2.33).
            match sel.get("id") {
                None => {
                    if let Some(pat) = str_member(sel, "idPattern")? {
                        p.id_pattern = Some(pat);
                    }
                }
                Some(Value::String(id)) => ids.push(id.clone()),
                Some(Value::Array(a)) => {
                    for id in a {
                        let id = id.as_str().ok_or_else(|| {
                            NgsiError::bad_data("query: id must be a URI or an array of URIs")
                        })?;
                        ids.push(id.to_string());
                    }
                }
                Some(_) => {
                    return Err(NgsiError::bad_data(
                        "query: id must be a URI or an array of URIs",
                    ))
                }
            }
        }
        p.types = Some(types.join(","));
        if !ids.is_empty() {
            p.ids = Some(ids);
        }
    }
    if let Some(a) = obj.get("attrs") {
        let list = a.as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
            NgsiError::bad_data("query: attrs must be a non-empty array of names")
        })?;
        p.attrs = Some(strings(list, "query: attrs must be an array of names")?);
    }
    p.q = str_member(body, "q")?;
    p.scope_q = str_member(body, "scopeQ")?;
    if let Some(g) = obj.get("geoQ") {
        p.geo_json = Some(g.clone());
    }
    p.geo = GeoParams::default();
    ordering_from_body(obj, &mut p)?;
    Ok(p)
}

/// The OrderingParams of a query body (§5.2.43), in its `ordering` member: `orderBy` (strings), the
/// `geometry` and `coordinates` that distance ordering measures from, and `collation`.
fn ordering_from_body(
    obj: &serde_json::Map<String, Value>,
    p: &mut EntityQueryParams,
) -> Result<(), NgsiError> {
    let Some(o) = obj.get("ordering") else {
        return Ok(());
    };
    let o = o
        .as_object()
        .ok_or_else(|| NgsiError::bad_data("query: ordering must be a JSON object"))?;
    let items = match o.get("orderBy") {
        None => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(strings(a, "query: orderBy must be an array of strings")?),
        Some(_) => {
            return Err(NgsiError::bad_data(
                "query: orderBy must be an array of strings",
            ))
        }
    };
    match o.get("geometry") {
        None => {}
        Some(Value::String(g)) => p.order_geometry = Some(g.clone()),
        Some(_) => return Err(NgsiError::bad_data("query: geometry must be a string")),
    }
    match o.get("coordinates") {
        None => {}
        Some(c @ Value::Array(_)) => p.order_from = Some(c.to_string()),
        Some(_) => {
            return Err(NgsiError::bad_data(
                "query: coordinates must be a JSON array",
            ))
        }
    }
    p.collation = str_member(&Value::Object(o.clone()), "collation")?;
    p.order_by = items;
    Ok(())
}

/// The join of a query: the body's `join`, `joinLevel` and `containedBy` (§5.2.23), else the parameters'.
fn join_from_body(
    body: &Value,
    p: &crate::params::Params,
) -> Result<Option<misto_ngsild::linked::Join>, NgsiError> {
    if body.get("join").is_none() && body.get("joinLevel").is_none() {
        return crate::join::from_params(p);
    }
    let level =
        match body.get("joinLevel") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                NgsiError::bad_data("query: joinLevel must be a positive integer")
            })?),
        };
    let contained_by = match body.get("containedBy") {
        None => None,
        Some(Value::Array(a)) => Some(strings(a, "query: containedBy must be an array of URIs")?),
        Some(_) => {
            return Err(NgsiError::bad_data(
                "query: containedBy must be an array of URIs",
            ))
        }
    };
    let join = match body.get("join") {
        None => None,
        Some(Value::String(j)) => Some(j.as_str()),
        Some(_) => return Err(NgsiError::bad_data("query: join must be a string")),
    };
    crate::join::build(join, level, contained_by)
}

pub async fn query(
    State(s): St,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, true)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let mut params = query_from_body(&body)?;
    params.limit = p.usize("limit")?;
    params.offset = p.usize("offset")?.unwrap_or(0);
    params.count = p.bool("count")?;
    let join = join_from_body(&body, &p)?;
    if let Some(q) = &params.q {
        crate::join::check_reach("q", misto_broker::query::q_link_depth(q), join.as_ref())?;
    }
    let mut opts = render_options(&p, &ctx, join.as_ref())?;
    if let Some(attrs) = &params.attrs {
        opts.attrs = Some(attrs.iter().map(|a| ctx.expand(a)).collect());
    }
    // pick/omit in the query body (§5.2.23): an array of member names, or one comma-separated string.
    for (k, keep) in [("pick", true), ("omit", false)] {
        let text = match body.get(k) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) => {
                Some(strings(a, &format!("query: {k} must be member names"))?.join(","))
            }
            Some(_) => {
                return Err(NgsiError::bad_data(format!("query: {k} must be member names")).into())
            }
        };
        if let Some(text) = text {
            let members = parse_projection(&format!("query: {k}"), &text, join.as_ref())?;
            project(&mut opts, &members, keep, &ctx);
        }
    }
    if let Some(lang) = body.get("lang").and_then(Value::as_str) {
        opts.lang = Some(language_preference(lang));
    }
    let tenant = request::read_tenant(&s, &headers)?;
    let result = s.broker.query_entities(&tenant, &ctx, &params).await?;
    let joined = join_page(&s, &tenant, &result, &opts, join, accept).await?;
    let plain = crate::negotiate::prefers_plain_json(&headers);
    query_response(
        &s,
        result,
        &ctx,
        &p,
        (&opts, joined.as_ref()),
        accept,
        plain,
    )
}
