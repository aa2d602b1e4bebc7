//! Starting and stopping the platform.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use misto_broker::subscriptions::notifier::NotifierConfig;
use misto_broker::{Broker, BrokerConfig, ContextStore};
use misto_http::{AppState, HttpConfig};

use crate::config::Settings;

/// Something to run once the broker is up (e.g. seeding the demo city).
pub type Seeder =
    Box<dyn FnOnce(Broker) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send>;

pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MISTO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

/// Hide a password in a database URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub async fn serve(s: Settings, seeder: Option<Seeder>) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .ok()
        .and_then(|b| b.install_recorder().ok());
    std::fs::create_dir_all(&s.data_dir)
        .with_context(|| format!("cannot create the data directory {}", s.data_dir.display()))?;
    let store = misto_store::open(&s.database_url)
        .await
        .with_context(|| format!("cannot open the database {}", redact(&s.database_url)))?;
    tracing::info!(backend = store.backend(), url = %redact(&s.database_url), "storage ready");
    let contexts = std::sync::Arc::new(ContextStore::new(s.remote_contexts));
    if let Some(dir) = &s.contexts_dir {
        let n = contexts
            .seed_from_dir(dir)
            .with_context(|| format!("cannot read the contexts folder {}", dir.display()))?;
        tracing::info!(count = n, dir = %dir.display(), "pre-seeded @contexts");
    }
    let listener = tokio::net::TcpListener::bind(s.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", s.http_addr))?;
    let addr = listener.local_addr()?;
    contexts.set_base_url(&format!("http://{addr}/ngsi-ld/v1/jsonldContexts/"));
    let mut broker = Broker::with_notifier(
        store,
        contexts,
        BrokerConfig {
            max_limit: s.max_limit,
            ..Default::default()
        },
        NotifierConfig {
            node: s.node_id.clone(),
            ..Default::default()
        },
    );
    if let Some(url) = &s.bus_url {
        let bus = misto_broker::bus::nats::NatsBus::start(url, &s.node_id)?;
        broker = broker.with_bus(Arc::new(bus));
        tracing::info!(node = s.node_id, bus = url, "cluster bus configured");
    }
    let expiry = broker.spawn_expiry(Duration::from_secs(1));
    let notifier = broker.spawn_notifier();
    let retention = misto_broker::temporal::retention::Retention::parse(&s.temporal_retention)
        .map_err(|e| anyhow::anyhow!("temporal_retention: {e}"))?;
    let retention =
        (!retention.is_empty()).then(|| broker.spawn_retention(retention, Duration::from_secs(60)));
    let state = AppState::new(
        broker.clone(),
        HttpConfig {
            body_limit: s.body_limit,
        },
        metrics,
    )
    .await;
    let monitor = misto_environment::Monitor::new(broker.clone(), s.environment.clone())
        .await
        .map_err(|e| anyhow::anyhow!("environment: {e}"))?;
    let monitor = Arc::new(monitor);
    let environment = monitor.clone().spawn();
    let devices = misto_devices::Devices::new(
        broker.clone(),
        misto_devices::DevicesConfig {
            codec_threads: 2,
            codec_limits: misto_devices::CodecLimits {
                time: Duration::from_millis(s.codec_timeout_ms),
                memory: s.codec_memory_mb << 20,
            },
            integration_token: s.integration_token.clone(),
        },
    )
    .context("cannot start the payload-codec threads")?;
    let offline = devices.spawn_offline_check(Duration::from_secs(60));
    let mut mqtt = Vec::new();
    if let Some(a) = s.mqtt_addr {
        match misto_devices::mqtt::gateway::Gateway::start(devices.clone(), a).await {
            Ok((gw, task)) => {
                devices.set_gateway(gw.clone());
                println!("misto MQTT endpoint on {}", gw.local_addr());
                mqtt.push(task);
            }
            Err(e) if s.mqtt_addr_is_default => tracing::warn!(
                addr = %a, error = %e,
                "the default MQTT address is taken: starting without the MQTT endpoint (set MISTO_MQTT_ADDR to \
                 another address, or off)"
            ),
            Err(e) => return Err(e).with_context(|| format!("cannot listen for MQTT on {a}")),
        }
    }
    if let Some(url) = &s.mqtt_external {
        let cfg = misto_devices::mqtt::external::ExternalConfig::from_url(
            url,
            &s.mqtt_external_client_id,
            &s.mqtt_external_tenant,
        )
        .map_err(|e| anyhow::anyhow!("the external MQTT broker: {e}"))?;
        let tenant = cfg.tenant.clone();
        let (link, task) = misto_devices::mqtt::external::ExternalLink::start(devices.clone(), cfg);
        devices.set_external(link, &tenant);
        mqtt.push(task);
    }
    let domains =
        misto_environment::public::router(monitor).merge(misto_devices::http::router(devices));
    let app = misto_http::router_with(state, domains);
    tracing::info!(%addr, "misto is listening: NGSI-LD API at http://{addr}/ngsi-ld/v1, devices at /devices/v1");
    println!("misto listening on http://{addr}");
    if let Some(seed) = seeder {
        let b = broker.clone();
        tokio::spawn(async move {
            if let Err(e) = seed(b).await {
                tracing::error!(error = %e, "seeding failed");
            }
        });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    expiry.abort();
    notifier.abort();
    environment.abort();
    offline.abort();
    for t in mqtt {
        t.abort();
    }
    if let Some(r) = retention {
        r.abort();
    }
    tracing::info!("stopped: in-flight requests finished");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
