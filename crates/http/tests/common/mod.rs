//! A misto HTTP server in the test process on a free loopback port, with a fresh database.
//! `MISTO_TEST_BACKEND=postgres` runs it on PostgreSQL (`MISTO_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) in a schema of its own; otherwise on a temporary SQLite file.

#![allow(dead_code)]

use std::sync::Arc;

use misto_broker::{Broker, BrokerConfig, ContextStore};
use misto_http::{AppState, HttpConfig};
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

pub const ENV_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld";
pub const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

pub struct TestServer {
    pub base: String,
    pub client: Client,
    _dir: Option<tempfile::TempDir>,
}

pub fn link(url: &str) -> String {
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(HttpConfig::default()).await
    }

    pub async fn start_with(config: HttpConfig) -> TestServer {
        let (store, dir): (Arc<dyn misto_store::EntityStore>, Option<tempfile::TempDir>) =
            if std::env::var("MISTO_TEST_BACKEND").as_deref() == Ok("postgres") {
                let url = std::env::var("MISTO_TEST_DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let store = misto_store::postgres::PgStore::connect_isolated(&url)
                    .await
                    .expect("PostgreSQL must be reachable for MISTO_TEST_BACKEND=postgres");
                (Arc::new(store), None)
            } else {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = misto_store::sqlite::SqliteStore::open(dir.path().join("t.db"))
                    .expect("sqlite");
                (Arc::new(store), Some(dir))
            };
        let contexts = Arc::new(ContextStore::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        contexts.set_base_url(&format!("http://{addr}/ngsi-ld/v1/jsonldContexts/"));
        let broker = Broker::new(store, contexts, BrokerConfig::default());
        broker.spawn_expiry(std::time::Duration::from_millis(200));
        broker.spawn_notifier();
        let state = AppState::new(broker, config, None).await;
        let app = misto_http::router(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer {
            base: format!("http://{addr}"),
            client: Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/ngsi-ld/v1{}", self.base, path)
    }

    pub fn req(&self, m: Method, path: &str) -> RequestBuilder {
        self.client.request(m, self.url(path))
    }

    /// POST/PATCH/PUT JSON with the given Link context (None: core only).
    pub async fn send(&self, m: Method, path: &str, body: &Value, ctx: Option<&str>) -> Response {
        let mut r = self
            .req(m, path)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(c) = ctx {
            r = r.header("Link", link(c));
        }
        r.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, ctx: Option<&str>) -> Response {
        let mut r = self.req(Method::GET, path);
        if let Some(c) = ctx {
            r = r.header("Link", link(c));
        }
        r.send().await.expect("request")
    }

    pub async fn get_json(&self, path: &str, ctx: Option<&str>) -> Value {
        let r = self.get(path, ctx).await;
        let status = r.status();
        let text = r.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("json")
    }

    pub async fn create(&self, body: &Value, ctx: Option<&str>) {
        let r = self.send(Method::POST, "/entities", body, ctx).await;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 201, "create failed: {text}");
    }
}

/// The body of a problem-details answer, checked for shape.
pub async fn problem(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "expected {status}, got {got}: {text}");
    assert!(
        ct.starts_with("application/json") || ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let v: Value = serde_json::from_str(&text).expect("problem body is JSON");
    assert!(
        v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://uri.etsi.org/ngsi-ld/errors/")),
        "{v}"
    );
    assert!(v["title"].is_string(), "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    v
}
