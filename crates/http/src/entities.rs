//! Handlers of `/entities` and `/entities/{id}/attrs…`.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;

use misto_broker::purge::AttributePurge;
use misto_broker::{EntityQueryParams, GeoParams};
use misto_ngsild::render::{render_feature, RenderOptions};

use crate::{paging, rendered};
use misto_ngsild::update::UpdateResult;
use misto_ngsild::{Context, NgsiError};
use serde_json::json;

use crate::negotiate::{respond, Accept};
use crate::params::Params;
use crate::problem::ApiResult;
use crate::representation::{render_list, render_one, render_options, Joined};
use crate::request::{self, LimitedBody};
use crate::{AppState, St};

/// `geometryProperty` only shapes GeoJSON answers (§6.3.15): asking for it in another one is bad data.
fn check_geometry_property(p: &Params, accept: Accept) -> Result<(), NgsiError> {
    if p.get("geometryProperty").is_some() && accept != Accept::GeoJson {
        return Err(NgsiError::bad_data(
            "geometryProperty applies to application/geo+json answers only",
        ));
    }
    Ok(())
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
    let join = crate::join::from_params(&p)?;
    let opts = render_options(&p, &ctx, join.as_ref())?;
    // Registered context sources that hold this entity are asked too, unless the request is local
    // (§5.7.1); an entity map records who answered (§5.7.1.4).
    let sources = if p.bool("local")? {
        Vec::new()
    } else {
        s.broker
            .sources_for_entity(&tenant, &id, "retrieveEntity")
            .await?
    };
    let map_header = headers
        .get(ENTITY_MAP_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let want_map = p.bool("entityMap")?;
    if sources.is_empty()
        && map_header.is_none()
        && !want_map
        && rendered::plain(&p, &[], &opts, accept, &headers)
    {
        let found = s.broker.get_found(&tenant, &ctx, &id).await?;
        return Ok(rendered::entity(
            &found,
            &ctx,
            accept,
            request::link_for(&s, &ctx),
        )?);
    }
    let (e, origins) = if sources.is_empty() {
        let e = s.broker.get_entity(&tenant, &id).await?;
        (
            e,
            vec![misto_broker::registrations::forward::LOCAL_SOURCE.to_string()],
        )
    } else {
        let attrs: Option<Vec<String>> = p
            .list("attrs")?
            .map(|a| a.iter().map(|n| ctx.expand(n)).collect());
        let r = s
            .broker
            .retrieve_distributed(&tenant, &id, attrs.as_deref(), &sources)
            .await?;
        let e = r
            .entity
            .ok_or_else(|| NgsiError::not_found(format!("entity {id} does not exist")))?;
        (e, r.sources)
    };
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
    let mut body = if accept == Accept::GeoJson {
        let mut f = render_feature(&e, &ctx, &opts, &geoproperty(&p, &ctx));
        if !crate::negotiate::prefers_plain_json(&headers) {
            f["@context"] = ctx.source();
        }
        f
    } else {
        let joined = match join {
            Some(j) => {
                let linked = s
                    .broker
                    .linked_entities(&tenant, std::slice::from_ref(&e), &opts, &j)
                    .await?;
                Some((j, linked))
            }
            None => None,
        };
        render_one(&e, &ctx, &opts, joined.as_ref())
    };
    // A projection that leaves nothing of the entity finds nothing (§4.21).
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(NgsiError::not_found(format!(
            "entity {id} has none of the members pick/omit select"
        ))
        .into());
    }
    let (applied, altered) = if accept == Accept::GeoJson {
        (None, false)
    } else {
        crate::negotiate::amend_for_version(&headers, &mut body)
    };
    let status = if altered {
        StatusCode::NON_AUTHORITATIVE_INFORMATION
    } else {
        StatusCode::OK
    };
    let mut r = respond(status, body, &ctx, accept, request::link_for(&s, &ctx))?;
    if let Some(v) = applied {
        r.headers_mut().insert("Preference-Applied", v);
    }
    let map = s
        .broker
        .entity_map_for(&tenant, map_header.as_deref(), want_map, || {
            let mut m = serde_json::Map::new();
            m.insert(id.clone(), serde_json::json!(origins));
            m
        })
        .await?;
    if let Some(v) = map.and_then(|m| HeaderValue::from_str(&m).ok()) {
        r.headers_mut().insert(ENTITY_MAP_HEADER, v);
    }
    Ok(r)
}

/// The header naming an entity map (§6.3.x: `NGSILD-EntityMap`).
const ENTITY_MAP_HEADER: &str = "NGSILD-EntityMap";

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
        expand_values: p.list("expandValues")?,
    })
}

/// The Linked Entities of a page of entities, when joined (GeoJSON answers show no Linked Entities).
pub(crate) async fn join_page(
    s: &AppState,
    tenant: &str,
    result: &misto_broker::QueryResult,
    opts: &RenderOptions,
    join: Option<misto_ngsild::linked::Join>,
    accept: Accept,
) -> Result<Option<Joined>, NgsiError> {
    match join {
        Some(j) if accept != Accept::GeoJson => {
            let linked = s
                .broker
                .linked_entities(tenant, &result.entities, opts, &j)
                .await?;
            Ok(Some((j, linked)))
        }
        _ => Ok(None),
    }
}

/// Render a query result with the count header: each entity with `opts` and, when joined, its Linked
/// Entities.
pub(crate) fn query_response(
    s: &AppState,
    result: misto_broker::QueryResult,
    ctx: &Context,
    p: &Params,
    (opts, joined): (&RenderOptions, Option<&Joined>),
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
        render_list(&result.entities, ctx, opts, joined)
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
    let join = crate::join::from_params(&p)?;
    if let Some(q) = &params.q {
        crate::join::check_reach("q", misto_broker::query::q_link_depth(q), join.as_ref())?;
    }
    let opts = render_options(&p, &ctx, join.as_ref())?;
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
        )?
    };
    paging::add_links(&mut r, "/ngsi-ld/v1/entities", &p, &page);
    Ok(r)
}

pub async fn purge(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    let params = query_params(&p)?;
    // A purge retrieves no Linked Entities: a selection reaching into them selects nothing (§5.6.21.4).
    for a in params.attrs.iter().flatten() {
        if a.contains(['{', '}']) {
            return Err(NgsiError::bad_data(format!(
                "attrs: '{a}' reaches into Linked Entities, which a purge does not retrieve"
            ))
            .into());
        }
        misto_ngsild::validate::check_name(a)
            .map_err(|e| NgsiError::bad_data(format!("attrs: {e}")))?;
    }
    if let Some(q) = &params.q {
        crate::join::check_reach("q", misto_broker::query::q_link_depth(q), None)?;
    }
    let names = |k: &str| -> Result<Option<HashSet<String>>, NgsiError> {
        let Some(list) = p.list(k)? else {
            return Ok(None);
        };
        for n in &list {
            if n.contains(['{', '}']) {
                return Err(NgsiError::bad_data(format!(
                    "{k}: '{n}' is not an attribute name"
                )));
            }
            misto_ngsild::validate::check_name(n)
                .map_err(|e| NgsiError::bad_data(format!("{k}: {e}")))?;
        }
        Ok(Some(list.iter().map(|n| ctx.expand(n)).collect()))
    };
    let what = match (names("keep")?, names("drop")?) {
        (Some(_), Some(_)) => {
            return Err(NgsiError::bad_data("keep and drop cannot be used together").into())
        }
        (Some(keep), None) => Some(AttributePurge::Keep(keep)),
        (None, Some(drop)) => Some(AttributePurge::Drop(drop)),
        (None, None) => None,
    };
    match what {
        Some(what) => {
            s.broker
                .purge_attributes(&tenant, &ctx, &params, what)
                .await?;
        }
        None => {
            s.broker.purge_entities(&tenant, &ctx, &params).await?;
        }
    }
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
