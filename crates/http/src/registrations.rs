//! `/csourceRegistrations` (§5.9, §5.10, §6.8–6.9 of the HTTP binding): create, discover, retrieve, update,
//! delete; and `/csourceSubscriptions`, which misto does not offer (answered after content negotiation).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use misto_broker::registrations::{RegistrationQuery, ShowOptions};
use misto_ngsild::{ErrorKind, NgsiError};
use serde_json::Value;

use crate::negotiate::respond;
use crate::problem::ApiResult;
use crate::request::{self, LimitedBody};
use crate::{paging, St};

const COLLECTION: &str = "/ngsi-ld/v1/csourceRegistrations";

pub async fn create(
    State(s): St,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::tenant(&headers)?;
    let (body, ctx) = request::body(&s, &headers, &bytes, false).await?;
    let id = s.broker.create_registration(&tenant, &ctx, &body).await?;
    s.note_tenant(&tenant);
    Ok(request::created(COLLECTION, &id))
}

fn show_options(p: &crate::params::Params) -> Result<ShowOptions, NgsiError> {
    Ok(ShowOptions {
        sys_attrs: p.has_option("sysAttrs")?,
    })
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
    let reg = s.broker.get_registration(&tenant, &id).await?;
    let body = s
        .broker
        .registration_view(&reg, &ctx, show_options(&p)?)
        .await?;
    respond(
        StatusCode::OK,
        body,
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )
}

/// Discovery filters misto does not evaluate on registrations yet: refused rather than ignored, so that an
/// answer never claims more than was checked.
const UNSUPPORTED: &[&str] = &[
    "q",
    "csf",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "timerel",
    "timeAt",
    "endTimeAt",
    "timeproperty",
    "scopeQ",
];

/// Filters are checked as entity queries check them, so a malformed one is BadRequestData whether or not
/// discovery can evaluate it.
fn check_filters(p: &crate::params::Params, ctx: &misto_ngsild::Context) -> Result<(), NgsiError> {
    if let Some(csf) = p.get("csf") {
        misto_broker::query::check_csf(csf)?;
    }
    let selection = misto_broker::EntityQueryParams {
        ids: p.list("id")?,
        q: p.get("q").map(str::to_string),
        scope_q: p.get("scopeQ").map(str::to_string),
        geo: misto_broker::GeoParams {
            georel: p.get("georel").map(str::to_string),
            geometry: p.get("geometry").map(str::to_string),
            coordinates: p.get("coordinates").map(str::to_string),
            geoproperty: p.get("geoproperty").map(str::to_string),
        },
        ..Default::default()
    };
    misto_broker::query::compile(&selection, ctx, 1)?;
    let time = |k: &str| -> Result<Option<jiff::Timestamp>, NgsiError> {
        p.get(k)
            .map(|v| {
                misto_ngsild::validate::parse_datetime(v)
                    .ok_or_else(|| NgsiError::bad_data(format!("{k} must be a DateTime")))
            })
            .transpose()
    };
    let (at, end) = (time("timeAt")?, time("endTimeAt")?);
    match p.get("timerel") {
        None if at.is_some() || end.is_some() => Err(NgsiError::bad_data("timeAt needs timerel")),
        None => Ok(()),
        Some("before" | "after") if at.is_some() => Ok(()),
        Some("between") if at.is_some() && end.is_some() => Ok(()),
        Some(r @ ("before" | "after" | "between")) => Err(NgsiError::bad_data(format!(
            "timerel={r} needs timeAt{}",
            if r == "between" { " and endTimeAt" } else { "" }
        ))),
        Some(r) => Err(NgsiError::bad_data(format!(
            "timerel must be before, after or between, not '{r}'"
        ))),
    }
}

pub async fn list(State(s): St, headers: HeaderMap, RawQuery(q): RawQuery) -> ApiResult {
    let p = request::params(q.as_deref())?;
    let accept = request::accept(&headers, false)?;
    let tenant = request::read_tenant(&s, &headers)?;
    let ctx = request::context(&s, &headers).await?;
    check_filters(&p, &ctx)?;
    // §5.10.2: discovery names entity types or attributes (or both).
    if p.non_empty("type")?.is_none() && p.list("attrs")?.is_none() {
        return Err(NgsiError::bad_data(
            "discovering context source registrations needs type or attrs",
        )
        .into());
    }
    if let Some(k) = UNSUPPORTED.iter().find(|k| p.get(k).is_some()) {
        return Err(NgsiError::new(
            ErrorKind::OperationNotSupported,
            format!("discovering registrations by '{k}' is not supported"),
        )
        .into());
    }
    let opts = show_options(&p)?;
    let limit = p.usize("limit")?.unwrap_or(s.broker.config.default_limit);
    if limit > s.broker.config.max_limit {
        return Err(NgsiError::new(
            ErrorKind::TooManyResults,
            format!("limit may be at most {}", s.broker.config.max_limit),
        )
        .into());
    }
    let offset = p.usize("offset")?.unwrap_or(0);
    let query = RegistrationQuery {
        ids: p.list("id")?,
        id_pattern: p.non_empty("idPattern")?.map(str::to_string),
        types: p.non_empty("type")?.map(str::to_string),
        attrs: p.list("attrs")?,
    };
    let all = s.broker.query_registrations(&tenant, &ctx, &query).await?;
    let total = all.len();
    let mut items = Vec::new();
    for reg in all.iter().skip(offset).take(limit) {
        items.push(s.broker.registration_view(reg, &ctx, opts).await?);
    }
    let mut r = respond(
        StatusCode::OK,
        Value::Array(items),
        &ctx,
        accept,
        request::link_for(&s, &ctx),
    )?;
    if p.bool("count")? {
        if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
            r.headers_mut().insert("NGSILD-Results-Count", v);
        }
    }
    let page = paging::Page {
        offset,
        limit,
        more: offset.saturating_add(limit) < total,
    };
    paging::add_links(&mut r, COLLECTION, &p, &page);
    Ok(r)
}

pub async fn update(
    State(s): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    if !misto_ngsild::validate::is_uri(&id) {
        return Err(NgsiError::bad_data(format!("'{id}' is not a URI")).into());
    }
    let (body, ctx) = request::body(&s, &headers, &bytes, true).await?;
    s.broker
        .update_registration(&tenant, &id, &ctx, &body)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn delete(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    let tenant = request::read_tenant(&s, &headers)?;
    s.broker.delete_registration(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `/csourceSubscriptions` (§5.11): not offered. The request's representation is negotiated first, as for
/// every resource, so a client learns about an unacceptable media type before it learns the operation is
/// not supported.
pub async fn subscriptions_not_supported(headers: HeaderMap) -> ApiResult {
    request::accept(&headers, false)?;
    Err(NgsiError::new(
        ErrorKind::OperationNotSupported,
        "context source registration subscriptions are not supported",
    )
    .into())
}
