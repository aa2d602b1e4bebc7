//! The HTTP face of misto: the NGSI-LD API under `/ngsi-ld/v1`, health, readiness and metrics.
//! Handlers translate HTTP to calls of the [`misto_broker::Broker`] and back; they hold no domain logic.

mod catalog;
mod entities;
mod entitymaps;
mod health;
mod identity;
mod join;
mod negotiate;
mod ops;
mod paging;
mod params;
mod precheck;
pub mod problem;
mod registrations;
mod rendered;
mod representation;
pub mod request;
mod subscriptions;
mod temporal;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use misto_broker::Broker;
use tower::Layer;

pub use problem::Problem;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 64 << 20,
        }
    }
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub broker: Broker,
    pub config: HttpConfig,
    metrics: Option<PrometheusHandle>,
    /// Tenants that exist (have been written to), for the spec's NonexistentTenant answer on reads.
    tenants: Arc<RwLock<HashSet<String>>>,
    identity: identity::Identity,
}

impl AppState {
    pub async fn new(
        broker: Broker,
        config: HttpConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let mut known = HashSet::new();
        if let Ok(list) = broker.store.tenants().await {
            known.extend(list.into_iter().map(|(t, _)| t));
        }
        AppState {
            broker,
            config,
            metrics,
            tenants: Arc::new(RwLock::new(known)),
            identity: identity::Identity::default(),
        }
    }

    pub(crate) fn tenant_exists(&self, t: &str) -> bool {
        t.is_empty() || self.tenants.read().map(|s| s.contains(t)).unwrap_or(true)
    }

    pub(crate) fn note_tenant(&self, t: &str) {
        if t.is_empty() {
            return;
        }
        if !self.tenant_exists(t) {
            if let Ok(mut s) = self.tenants.write() {
                s.insert(t.to_string());
            }
        }
    }
}

/// The full router.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// The router with the routes of domain modules (which carry their own state) beside the NGSI-LD API: they
/// share the request metrics, the trailing-slash rule and the 404 answer.
pub fn router_with(state: AppState, domains: Router) -> Router {
    let api = Router::new()
        .route(
            "/entities",
            get(entities::query)
                .post(entities::create)
                .delete(entities::purge)
                .put(health::entity_id_missing)
                .patch(health::entity_id_missing),
        )
        .route(
            "/entities/{id}",
            get(entities::retrieve)
                .put(entities::replace)
                .patch(entities::merge)
                .delete(entities::delete),
        )
        .route(
            "/entities/{id}/attrs",
            post(entities::append_attrs).patch(entities::update_attrs),
        )
        .route(
            "/entities/{id}/attrs/{attr}",
            axum::routing::patch(entities::patch_attr)
                .put(entities::replace_attr)
                .delete(entities::delete_attr),
        )
        .route("/entityOperations/create", post(ops::create))
        .route("/entityOperations/upsert", post(ops::upsert))
        .route("/entityOperations/update", post(ops::update))
        .route("/entityOperations/delete", post(ops::delete))
        .route("/entityOperations/merge", post(ops::merge))
        .route("/entityOperations/query", post(ops::query))
        .route("/info/sourceIdentity", get(identity::source_identity))
        .route(
            "/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/subscriptions/{id}",
            get(subscriptions::retrieve)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            "/temporal/entities",
            get(temporal::query).post(temporal::create),
        )
        .route(
            "/temporal/entities/{id}",
            get(temporal::retrieve).delete(temporal::delete),
        )
        .route(
            "/temporal/entities/{id}/attrs",
            post(temporal::append_attrs),
        )
        .route(
            "/temporal/entities/{id}/attrs/{attr}",
            axum::routing::delete(temporal::delete_attr),
        )
        .route(
            "/temporal/entities/{id}/attrs/{attr}/{instance}",
            axum::routing::patch(temporal::patch_instance).delete(temporal::delete_instance),
        )
        // §6.24 names it /temporal/entityOperations/query; earlier drafts /temporalEntityOperations/query.
        .route(
            "/temporal/entityOperations/query",
            post(temporal::query_post),
        )
        .route(
            "/temporalEntityOperations/query",
            post(temporal::query_post),
        )
        .route("/types", get(catalog::types))
        .route("/types/{type}", get(catalog::type_info))
        .route("/attributes", get(catalog::attributes))
        .route("/attributes/{attr}", get(catalog::attribute_info))
        .route(
            "/jsonldContexts",
            get(catalog::list_contexts).post(catalog::create_context),
        )
        .route(
            "/jsonldContexts/{id}",
            get(catalog::get_context).delete(catalog::delete_context),
        )
        .route(
            "/csourceRegistrations",
            get(registrations::list).post(registrations::create),
        )
        .route(
            "/csourceRegistrations/{id}",
            get(registrations::retrieve)
                .patch(registrations::update)
                .delete(registrations::delete),
        )
        .route(
            "/csourceSubscriptions",
            get(registrations::subscriptions_not_supported)
                .post(registrations::subscriptions_not_supported),
        )
        .route(
            "/csourceSubscriptions/{id}",
            get(registrations::subscriptions_not_supported)
                .patch(registrations::subscriptions_not_supported)
                .delete(registrations::subscriptions_not_supported),
        )
        .route(
            "/entityMaps/{id}",
            get(entitymaps::retrieve)
                .patch(entitymaps::update)
                .delete(entitymaps::delete),
        )
        .route_layer(middleware::from_fn(precheck::precheck))
        .method_not_allowed_fallback(health::method_not_allowed)
        .fallback(health::not_found);
    let routes = Router::new()
        .nest("/ngsi-ld/v1", api)
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(health::not_found)
        .with_state(state)
        .merge(domains)
        .layer(middleware::from_fn(track));
    // `/entities/` and `/entities` are the same resource (clients and the ETSI suite use both); the slash
    // goes before routing, so every route answers either way.
    Router::new().fallback_service(
        tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(routes),
    )
}

/// Request count and latency per route and status.
async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("misto_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("misto_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

pub(crate) type St = State<AppState>;
