//! Handlers of `/entities` and `/entities/{id}/attrs…`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use misto_broker::{EntityQueryParams, GeoParams};
use misto_ngsild::render::{render_entity, render_feature, RenderOptions};

use crate::{paging, rendered};
use misto_ngsild::update::UpdateResult;
use misto_ngsild::{Context, NgsiError};
use serde_json::{json, Value};

use crate::negotiate::{respond, Accept};
use crate::params::Params;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::{AppState, St};

/// Every item of a projection list must be an attribute name. Nested projections (`a{b}`) reach into linked
/// entities, which only a join retrieves; this broker does not join, so braces are refused whatever their shape.
fn names_valid(param: &str, names: &[String]) -> Result<(), NgsiError> {
    for n in names {
        if n.contains(['{', '}']) {
            return Err(NgsiError::bad_data(format!(
                "{param}: '{n}' projects into linked entities, which needs join (not supported)"
            )));
        }
        misto_ngsild::validate::check_name(n)
            .map_err(|e| NgsiError::bad_data(format!("{param}: {e}")))?;
    }
    Ok(())
}

/// Apply a `pick` (`keep`) or `omit` list of members (attribute names, `id`, `type`).
pub(crate) fn project(o: &mut RenderOptions, names: Vec<String>, keep: bool, ctx: &Context) {
    let mut set = std::collections::HashSet::new();
    let (mut id, mut ty) = (false, false);
    for n in names {
        match n.as_str() {
            "id" => id = true,
            "type" => ty = true,
            _ => {
                set.insert(ctx.expand(&n));
            }
        }
    }
    if keep {
        o.pick_id = id;
        o.pick_type = ty;
        o.attrs = Some(set);
    } else {
        o.pick_id = !id;
        o.pick_type = !ty;
        o.omit = set;
    }
}

/// Rendering options from the parameters.
/// `geometryProperty` only shapes GeoJSON answers (§6.3.15): asking for it in another one is bad data.
fn check_geometry_property(p: &Params, accept: Accept) -> Result<(), NgsiError> {
    if p.get("geometryProperty").is_some() && accept != Accept::GeoJson {
        return Err(NgsiError::bad_data(
            "geometryProperty applies to application/geo+json answers only",
        ));
    }
    Ok(())
}

pub(crate) fn render_options(p: &Params, ctx: &Context) -> Result<RenderOptions, NgsiError> {
    let mut o = RenderOptions::new(p.format()?);
    o.sys_attrs = p.has_option("sysAttrs")?;
    if let Some(ds) = p.list("datasetId")? {
        if let Some(bad) = ds
            .iter()
            .find(|d| *d != "@none" && !misto_ngsild::validate::is_uri(d))
        {
            return Err(NgsiError::bad_data(format!(
                "datasetId: '{bad}' is not a URI (or @none)"
            )));
        }
        o.dataset_ids = Some(ds);
    }
    let expand_names =
        |names: Vec<String>, o: &mut RenderOptions, keep: bool| project(o, names, keep, ctx);
    if let Some(attrs) = p.list("attrs")? {
        names_valid("attrs", &attrs)?;
        // `attrs` names attributes; `id` and `type` are core members (pick/omit may name them).
        if let Some(core) = attrs.iter().find(|a| *a == "id" || *a == "type") {
            return Err(NgsiError::bad_data(format!(
                "attrs: '{core}' is not an attribute (use pick to project core members)"
            )));
        }
        let set = attrs.iter().map(|a| ctx.expand(a)).collect();
        o.attrs = Some(set);
    }
    for k in ["pick", "omit"] {
        if p.get(k).is_some() && p.get("attrs").is_some() {
            return Err(NgsiError::bad_data(format!(
                "{k} and attrs cannot be used together"
            )));
        }
    }
    if let Some(pick) = p.projection("pick")? {
        names_valid("pick", &pick)?;
        expand_names(pick, &mut o, true);
    }
    if let Some(omit) = p.projection("omit")? {
        if p.get("pick").is_some() {
            return Err(NgsiError::bad_data("pick and omit cannot be used together"));
        }
        names_valid("omit", &omit)?;
        expand_names(omit, &mut o, false);
    }
    if let Some(lang) = p.non_empty("lang")? {
        o.lang = Some(language_preference(lang));
    }
    Ok(o)
}

/// `lang` as RFC 9110 language ranges in order of preference: by q-value (1 when absent), then by position;
/// a range with q=0 is not wanted at all.
fn language_preference(lang: &str) -> Vec<String> {
    let mut ranges: Vec<(f32, usize, String)> = lang
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_string();
            let q = it
                .filter_map(|x| {
                    x.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.trim().parse().ok())
                })
                .next()
                .unwrap_or(1.0f32);
            (!tag.is_empty() && q > 0.0).then_some((q, i, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, t)| t).collect()
}

fn geoproperty(p: &Params, ctx: &Context) -> String {
    ctx.expand(p.get("geometryProperty").unwrap_or("location"))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// 204 when everything was updated, else 207 with the UpdateResult body.
fn update_response(r: UpdateResult, ctx: &Context) -> Response {
    if r.is_complete() {
        return no_content();
    }
    let body = json!({
        "updated": r.updated.iter().map(|n| ctx.compact(n)).collect::<Vec<_>>(),
        "notUpdated": r.not_updated.iter().map(|(n, why)| json!({"attributeName": ctx.compact(n), "reason": why})).collect::<Vec<_>>(),
    });
    let mut resp = (StatusCode::MULTI_STATUS, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `?type=` on a single-entity URL: the operation applies only to an entity of (one of) these types; any
/// other answers ResourceNotFound as if it did not exist.
async fn type_gate(
    s: &AppState,
    tenant: &str,
    ctx: &Context,
    id: &str,
    raw_query: Option<&str>,
) -> Result<(), NgsiError> {
    let p = request::params(raw_query)?;
    if let Some(t) = p.non_empty("type")? {
        let e = s.broker.get_entity(tenant, id).await?;
        misto_broker::query::check_types(&e, t, ctx, id)?;
    }
    Ok(())
}

pub async fn create(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let id = s.broker.create_entity(&tenant, &ctx, &body).await?;
    s.note_tenant(&tenant);
    Ok(request::created("/ngsi-ld/v1/entities", &id))
}

pub async fn retrieve(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, true)?;
    check_geometry_property(&p, accept)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let opts = render_options(&p, &ctx)?;
    if rendered::plain(&p, &[], &opts, accept, &headers) {
        let found = s.broker.get_found(&tenant, &ctx, &id).await?;
        return Ok(rendered::entity(
            &found,
            &ctx,
            accept,
            request::link_for(&s, &ctx),
        )?);
    }
    let e = s.broker.get_entity(&tenant, &id).await?;
    if let Some(t) = p.non_empty("type")? {
        misto_broker::query::check_types(&e, t, &ctx, &id)?;
    }
    // Asking for attributes the entity has none of finds nothing (§5.7.1).
    if let Some(attrs) = p.list("attrs")? {
        if !attrs.iter().any(|a| e.contains_key(&ctx.expand(a))) {
            return Err(NgsiError::not_found(format!(
                "entity {id} has none of the attributes {}",
                attrs.join(", ")
            ))
            .into());
        }
    }
    let body = if accept == Accept::GeoJson {
        let mut f = render_feature(&e, &ctx, &opts, &geoproperty(&p, &ctx));
        if !crate::negotiate::prefers_plain_json(&headers) {
            f["@context"] = ctx.source();
        }
        f
    } else {
        render_entity(&e, &ctx, &opts)
    };
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

/// Parse the query parameters of GET /entities (and purge).
pub(crate) fn query_params(p: &Params) -> Result<EntityQueryParams, NgsiError> {
    // A context source filter selects registrations; misto has none to select, but the filter must be valid.
    if let Some(csf) = p.get("csf") {
        misto_broker::query::check_csf(csf)?;
    }
    let limit = p.usize("limit")?;
    let offset = p.usize("offset")?.unwrap_or(0);
    Ok(EntityQueryParams {
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
        limit,
        offset,
        count: p.bool("count")?,
        local: p.bool("local")?,
        order_by: p.non_empty("orderBy")?.map(|o| vec![o.to_string()]),
        collation: p.non_empty("collation")?.map(str::to_string),
        order_from: p.non_empty("orderFrom")?.map(str::to_string),
        order_geometry: None,
    })
}

/// Render a query result with the count header.
pub(crate) fn query_response(
    s: &AppState,
    result: misto_broker::QueryResult,
    ctx: &Context,
    p: &Params,
    opts: &RenderOptions,
    accept: Accept,
    plain_json: bool,
) -> ApiResult {
    let body = if accept == Accept::GeoJson {
        let gp = geoproperty(p, ctx);
        let mut fc = json!({
            "type": "FeatureCollection",
            "features": result.entities.iter().map(|e| render_feature(e, ctx, opts, &gp)).collect::<Vec<_>>(),
        });
        if !plain_json {
            fc["@context"] = ctx.source();
        }
        fc
    } else {
        Value::Array(
            result
                .entities
                .iter()
                .map(|e| render_entity(e, ctx, opts))
                .collect(),
        )
    };
    let mut r = respond(StatusCode::OK, body, ctx, accept, request::link_for(s, ctx))?;
    if let Some(total) = result.total {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            r.headers_mut().insert("NGSILD-Results-Count", v);
        }
    }
    Ok(r)
}

pub async fn query(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, true)?;
    check_geometry_property(&p, accept)?;
    let ctx = request::context(&s, &headers).await?;
    let params = query_params(&p)?;
    let opts = render_options(&p, &ctx)?;
    if params.types.as_deref() == Some("*") && p.get("local") == Some("false") {
        return Err(NgsiError::bad_data(
            "type=* (every type) needs the local scope and cannot be combined with local=false",
        )
        .into());
    }
    if !params.has_selector() && p.get("local").is_none() {
        return Err(NgsiError::bad_data(
            "a query needs at least one of type, attrs, q, geoQ or local (id and idPattern only narrow one)",
        )
        .into());
    }
    let tenant = request::read_tenant(&s, &headers)?;
    let mut page = paging::Page {
        offset: params.offset,
        limit: params.limit.unwrap_or(s.broker.config.default_limit),
        more: false,
    };
    let mut r = if rendered::plain(&p, rendered::SELECTING, &opts, accept, &headers) {
        let found = s.broker.query_found(&tenant, &ctx, &params).await?;
        page.more = found.more;
        rendered::entities(
            &found.found,
            found.total,
            &ctx,
            accept,
            request::link_for(&s, &ctx),
        )?
    } else {
        let result = s.broker.query_entities(&tenant, &ctx, &params).await?;
        page.more = result.more;
        let plain = crate::negotiate::prefers_plain_json(&headers);
        query_response(&s, result, &ctx, &p, &opts, accept, plain)?
    };
    paging::add_links(&mut r, "/ngsi-ld/v1/entities", &p, &page);
    Ok(r)
}

pub async fn purge(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    match (p.get("keep").is_some(), p.get("drop").is_some()) {
        (true, true) => {
            return Err(NgsiError::bad_data("keep and drop cannot be used together").into())
        }
        (true, false) | (false, true) => {
            // Refused rather than ignored: ignoring them would delete whole entities.
            return Err(NgsiError::new(
                misto_ngsild::ErrorKind::OperationNotSupported,
                "purging only some attributes (keep/drop) is not supported yet",
            )
            .into());
        }
        (false, false) => {}
    }
    let params = query_params(&p)?;
    if let Some(attrs) = &params.attrs {
        // Linked-entity projections (`owner{name}`) select nothing to purge (§5.6.21.4).
        names_valid("attrs", attrs)?;
    }
    s.broker.purge_entities(&tenant, &ctx, &params).await?;
    Ok(no_content())
}

pub async fn replace(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker.replace_entity(&tenant, &ctx, &id, &body).await?;
    Ok(no_content())
}

pub async fn merge(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, true).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker.merge_entity(&tenant, &ctx, &id, &body).await?;
    Ok(no_content())
}

pub async fn delete(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker.delete_entity(&tenant, &id).await?;
    Ok(no_content())
}

pub async fn append_attrs(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    let r = s
        .broker
        .append_attrs(&tenant, &ctx, &id, &body, p.has_option("noOverwrite")?)
        .await?;
    Ok(update_response(r, &ctx))
}

pub async fn update_attrs(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    let r = s.broker.update_attrs(&tenant, &ctx, &id, &body).await?;
    Ok(update_response(r, &ctx))
}

pub async fn patch_attr(
    State(s): St,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, true).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker
        .patch_attr(&tenant, &ctx, &id, &attr, &body)
        .await?;
    Ok(no_content())
}

pub async fn replace_attr(
    State(s): St,
    headers: HeaderMap,
    Path((id, attr)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker
        .replace_attr(&tenant, &ctx, &id, &attr, &body)
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
    type_gate(&s, &tenant, &ctx, &id, q.as_deref()).await?;
    s.broker
        .delete_attr(
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
