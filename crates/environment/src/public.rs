//! The residents' read API, no login: every station's current air quality, radiation and water status, and
//! the open environment alerts, as GeoJSON for a map.
//!
//! `GET /public/v1/environment/stations` and `GET /public/v1/environment/alerts`; the tenant is the default one
//! unless `NGSILD-Tenant` names another.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use misto_broker::EntityQueryParams;
use misto_http::problem::Problem;
use misto_ngsild::{Context, Entity, ErrorKind};
use serde_json::{json, Map, Value};

use crate::monitor::{instance, Monitor, DOSE_RATE, RADIATION_TYPE};
use crate::ALERT_CONTEXT;

/// Most stations or alerts in one answer (a city has hundreds).
const MAX_FEATURES: usize = 20_000;

const AIR_MEASUREMENTS: &[&str] = &[
    "pm25",
    "pm10",
    "no2",
    "o3",
    "so2",
    "co",
    "temperature",
    "relativeHumidity",
];

pub fn router(monitor: Arc<Monitor>) -> Router {
    Router::new()
        .route("/public/v1/environment/stations", get(stations))
        .route("/public/v1/environment/alerts", get(alerts))
        .with_state(monitor)
}

fn geojson(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/geo+json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=10"),
    );
    r
}

/// Every entity of a type, page by page.
async fn all_of(
    m: &Monitor,
    tenant: &str,
    ctx: &Context,
    ty: &str,
    q: Option<&str>,
) -> Result<Vec<Entity>, Problem> {
    let b = m.broker();
    let mut out = Vec::new();
    loop {
        let p = EntityQueryParams {
            types: Some(ty.into()),
            q: q.map(str::to_string),
            limit: Some(b.config.max_limit.min(1000)),
            offset: out.len(),
            ..Default::default()
        };
        let page = match b.query_entities(tenant, ctx, &p).await {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::NonexistentTenant => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let n = page.entities.len();
        out.extend(page.entities);
        if !page.more || n == 0 || out.len() >= MAX_FEATURES {
            return Ok(out);
        }
    }
}

/// `{value, unitCode?, observedAt?}` of a Property instance, or its plain value for sub-attributes.
fn reading(inst: &Map<String, Value>) -> Value {
    let mut r = Map::new();
    for k in ["value", "unitCode", "observedAt"] {
        if let Some(v) = inst.get(k) {
            r.insert(k.into(), v.clone());
        }
    }
    Value::Object(r)
}

fn sub_value(inst: &Map<String, Value>, ctx: &Context, name: &str) -> Value {
    inst.get(&ctx.expand(name))
        .and_then(|s| s.get("value"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn index(e: &Entity, ctx: &Context, name: &str) -> Option<Value> {
    let i = instance(e, &ctx.expand(name))?;
    Some(json!({
        "value": i.get("value"),
        "category": sub_value(i, ctx, "category"),
        "dominantPollutant": sub_value(i, ctx, "dominantPollutant"),
        "observedAt": i.get("observedAt"),
    }))
}

fn value(e: &Entity, ctx: &Context, name: &str) -> Value {
    instance(e, &ctx.expand(name))
        .and_then(|i| i.get("value"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn feature(e: &Entity, ctx: &Context, kind: &str, mut props: Map<String, Value>) -> Option<Value> {
    let geometry = instance(e, &ctx.expand("location"))?.get("value")?.clone();
    props.insert("kind".into(), json!(kind));
    props.insert("name".into(), value(e, ctx, "name"));
    Some(json!({"type": "Feature", "id": e.get("id"), "geometry": geometry, "properties": props}))
}

fn measurements(e: &Entity, ctx: &Context, names: &[&str]) -> Value {
    let mut m = Map::new();
    for n in names {
        if let Some(i) = instance(e, &ctx.expand(n)) {
            if i.get("value").is_some_and(Value::is_number) {
                m.insert(n.to_string(), reading(i));
            }
        }
    }
    Value::Object(m)
}

async fn stations(State(m): State<Arc<Monitor>>, headers: HeaderMap) -> Result<Response, Problem> {
    let tenant = misto_http::request::tenant(&headers)?;
    let mut features = Vec::new();
    let env = &m.env;
    for e in all_of(&m, &tenant, env, "AirQualityObserved", None).await? {
        let mut p = Map::new();
        p.insert(
            "measurements".into(),
            measurements(&e, env, AIR_MEASUREMENTS),
        );
        p.insert("europeanAqi".into(), index(&e, env, "europeanAqi").into());
        p.insert("usAqi".into(), index(&e, env, "usAqi").into());
        p.insert("airQualityLevel".into(), value(&e, env, "airQualityLevel"));
        features.extend(feature(&e, env, "air", p));
    }
    for e in all_of(&m, &tenant, env, RADIATION_TYPE, None).await? {
        let mut p = Map::new();
        p.insert("measurements".into(), measurements(&e, env, &[DOSE_RATE]));
        p.insert("radiationStatus".into(), value(&e, env, "radiationStatus"));
        p.insert("controlLevel".into(), json!(m.control_level()));
        features.extend(feature(&e, env, "radiation", p));
    }
    let w = &m.water_ctx;
    let names: Vec<&str> = m
        .water_rules()
        .iter()
        .map(|r| r.attribute.as_str())
        .collect();
    for e in all_of(&m, &tenant, w, "WaterQualityObserved", None).await? {
        let mut p = Map::new();
        p.insert("measurements".into(), measurements(&e, w, &names));
        p.insert("complianceStatus".into(), value(&e, w, "complianceStatus"));
        p.insert(
            "nonCompliantParameters".into(),
            value(&e, w, "nonCompliantParameters"),
        );
        features.extend(feature(&e, w, "water", p));
    }
    Ok(geojson(
        json!({"type": "FeatureCollection", "features": features}),
    ))
}

async fn alerts(State(m): State<Arc<Monitor>>, headers: HeaderMap) -> Result<Response, Problem> {
    let tenant = misto_http::request::tenant(&headers)?;
    let ctx = m
        .broker()
        .contexts
        .resolve(Some(&json!([ALERT_CONTEXT])))
        .await?;
    let open = all_of(
        &m,
        &tenant,
        &ctx,
        "Alert",
        Some("!validTo;category==\"environment\""),
    )
    .await?;
    let mut features = Vec::new();
    for e in &open {
        let mut p = Map::new();
        for n in ["severity", "subCategory", "description", "alertSource"] {
            p.insert(n.into(), value(e, &ctx, n));
        }
        let from = value(e, &ctx, "validFrom");
        p.insert(
            "validFrom".into(),
            from.get("@value").cloned().unwrap_or(from),
        );
        features.extend(feature(e, &ctx, "alert", p));
    }
    Ok(geojson(
        json!({"type": "FeatureCollection", "features": features}),
    ))
}
