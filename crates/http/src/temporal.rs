//! Handlers of the temporal API: `/temporal/entities…` and `/temporalEntityOperations/query`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_broker::temporal::{TemporalAnswer, TemporalFormat, TemporalParams};
use misto_broker::GeoParams;
use misto_ngsild::{Context, NgsiError};
use serde_json::Value;

use crate::negotiate::{respond, Accept};
use crate::params::Params;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::{AppState, St};

/// The representation and its options from `options`/`format`.
fn format_of(p: &Params) -> Result<(TemporalFormat, bool), NgsiError> {
    let mut format = TemporalFormat::Normalized;
    let mut sys_attrs = false;
    let mut set = |f: TemporalFormat| {
        if format != TemporalFormat::Normalized && format != f {
            return Err(NgsiError::bad_data(
                "options: temporalValues and aggregatedValues exclude each other",
            ));
        }
        format = f;
        Ok(())
    };
    for o in p.options()? {
        match o.as_str() {
            "temporalValues" => set(TemporalFormat::TemporalValues)?,
            "aggregatedValues" => set(TemporalFormat::Aggregated)?,
            "sysAttrs" => sys_attrs = true,
            "normalized" => {}
            other => {
                return Err(NgsiError::new(
                    misto_ngsild::ErrorKind::InvalidRequest,
                    format!("options: '{other}' is not an option of the temporal API"),
                ))
            }
        }
    }
    match p.get("format") {
        None | Some("normalized") => {}
        Some("temporalValues") => set(TemporalFormat::TemporalValues)?,
        Some("aggregatedValues") => set(TemporalFormat::Aggregated)?,
        Some(other) => {
            return Err(NgsiError::new(
                misto_ngsild::ErrorKind::InvalidRequest,
                format!("format: '{other}' is not a temporal representation"),
            ))
        }
    }
    Ok((format, sys_attrs))
}

/// `lastN`: a positive integer.
fn last_n(p: &Params) -> Result<Option<usize>, NgsiError> {
    match p.get("lastN") {
        None => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(NgsiError::bad_data(format!(
                "lastN must be a positive integer, not '{v}'"
            ))),
        },
    }
}

/// Parameters shared by retrieval and query.
fn params(p: &Params) -> Result<TemporalParams, NgsiError> {
    let (format, sys_attrs) = format_of(p)?;
    Ok(TemporalParams {
        ids: p.list("id")?,
        id_pattern: p.non_empty("idPattern")?.map(str::to_string),
        types: p.non_empty("type")?.map(str::to_string),
        attrs: p.list("attrs")?,
        q: p.non_empty("q")?.map(str::to_string),
        geo: GeoParams {
            georel: p.non_empty("georel")?.map(str::to_string),
            geometry: p.non_empty("geometry")?.map(str::to_string),
            coordinates: p.non_empty("coordinates")?.map(str::to_string),
            geoproperty: p.non_empty("geoproperty")?.map(str::to_string),
        },
        geo_json: None,
        scope_q: p.non_empty("scopeQ")?.map(str::to_string),
        timerel: p.non_empty("timerel")?.map(str::to_string),
        time_at: p.non_empty("timeAt")?.map(str::to_string),
        end_time_at: p.non_empty("endTimeAt")?.map(str::to_string),
        timeproperty: p.non_empty("timeproperty")?.map(str::to_string),
        last_n: last_n(p)?,
        format,
        sys_attrs,
        aggr_methods: p.list("aggrMethods")?,
        aggr_period: p.non_empty("aggrPeriodDuration")?.map(str::to_string),
        limit: p.usize("limit")?,
        offset: p.usize("offset")?.unwrap_or(0),
        count: p.bool("count")?,
    })
}

/// 200, or 206 with Content-Range when histories were cut; the count header when asked.
fn answer(s: &AppState, a: TemporalAnswer, one: bool, ctx: &Context, accept: Accept) -> ApiResult {
    let status = if a.content_range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body = if one {
        a.entities.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(a.entities)
    };
    let mut r = respond(status, body, ctx, accept, request::link_for(s, ctx))?;
    if let Some(range) = a.content_range {
        if let Ok(v) = HeaderValue::from_str(&range) {
            r.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if let Some(total) = a.total {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            r.headers_mut().insert("NGSILD-Results-Count", v);
        }
    }
    Ok(r)
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub async fn retrieve(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let tp = params(&p)?;
    let a = s.broker.temporal_entity(&tenant, &ctx, &id, &tp).await?;
    answer(&s, a, true, &ctx, accept)
}

pub async fn query(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let tp = params(&p)?;
    let a = s.broker.temporal_query(&tenant, &ctx, &tp).await?;
    answer(&s, a, false, &ctx, accept)
}

/// A string member of `temporalQ`.
fn temporal_member(tq: &Value, k: &str) -> Result<Option<String>, NgsiError> {
    match tq.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(NgsiError::bad_data(format!(
            "temporalQ: {k} must be a non-empty string"
        ))),
    }
}

/// `POST /temporalEntityOperations/query`: a Query body with `temporalQ`; representation from the URL.
pub async fn query_post(
    State(s): St,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let sel = crate::ops::query_selection(&body)?;
    let mut tp = params(&p)?;
    tp.ids = sel.ids;
    tp.id_pattern = sel.id_pattern;
    tp.types = sel.types;
    tp.attrs = sel.attrs;
    tp.q = sel.q;
    tp.geo_json = sel.geo_json;
    tp.scope_q = sel.scope_q;
    if let Some(tq) = body.get("temporalQ") {
        if !tq.is_object() {
            return Err(NgsiError::bad_data("temporalQ must be an object").into());
        }
        tp.timerel = temporal_member(tq, "timerel")?;
        tp.time_at = temporal_member(tq, "timeAt")?;
        tp.end_time_at = temporal_member(tq, "endTimeAt")?;
        tp.timeproperty = temporal_member(tq, "timeproperty")?;
        if let Some(n) = tq.get("lastN") {
            tp.last_n = Some(
                n.as_u64()
                    .filter(|n| *n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        NgsiError::bad_data("temporalQ: lastN must be a positive integer")
                    })?,
            );
        }
    }
    let tenant = request::read_tenant(&s, &headers)?;
    let a = s.broker.temporal_query(&tenant, &ctx, &tp).await?;
    answer(&s, a, false, &ctx, accept)
}

pub async fn create(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let created = s.broker.create_temporal(&tenant, &ctx, &body).await?;
    s.note_tenant(&tenant);
    if created {
        let id = body
            .get("id")
            .or_else(|| body.get("@id"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(request::created("/ngsi-ld/v1/temporal/entities", id))
    } else {
        Ok(no_content())
    }
}

pub async fn delete(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    s.broker.delete_temporal(&tenant, &id).await?;
    Ok(no_content())
}

pub async fn append_attrs(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    s.broker
        .append_temporal_attrs(&tenant, &ctx, &id, &body)
        .await?;
    Ok(no_content())
}

pub async fn delete_attr(
    State(s): St,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    s.broker
        .delete_temporal_attr(
            &tenant,
            &ctx,
            &id,
            &attr,
            p.non_empty("datasetId")?,
            p.bool("deleteAll")?,
        )
        .await?;
    Ok(no_content())
}

pub async fn patch_instance(
    State(s): St,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, true).await?;
    s.broker
        .patch_temporal_instance(&tenant, &ctx, &id, &attr, &instance, &body)
        .await?;
    Ok(no_content())
}

pub async fn delete_instance(
    State(s): St,
    headers: HeaderMap,
    Path((id, attr, instance)): Path<(String, String, String)>,
) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    s.broker
        .delete_temporal_instance(&tenant, &ctx, &id, &attr, &instance)
        .await?;
    Ok(no_content())
}
