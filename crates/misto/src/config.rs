//! Configuration: defaults < file (`misto.toml` or `--config`) < environment (`MISTO_*`) < flags.
//! clap reads flags and environment together (a flag wins over its variable); the file fills what neither set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use serde::Deserialize;

/// Settings of a running misto (serve, demo) — flags and their environment variables.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// HTTP listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "MISTO_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Data directory for the embedded database and other state [default: ./misto-data]
    #[arg(long, env = "MISTO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: a SQLite file path (sqlite://…) or postgres://… [default: <data-dir>/misto.db]
    #[arg(long, env = "MISTO_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Largest request body in bytes [default: 67108864]
    #[arg(long, env = "MISTO_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Folder of JSON-LD contexts to pre-seed the context cache with (a remote-contexts.json in it maps URLs)
    #[arg(long, env = "MISTO_CONTEXTS_DIR")]
    pub contexts_dir: Option<PathBuf>,
    /// Fetch remote @context URLs that are not cached [default: true]
    #[arg(long, env = "MISTO_REMOTE_CONTEXTS")]
    pub remote_contexts: Option<bool>,
    /// Largest `limit` of a query [default: 1000]
    #[arg(long, env = "MISTO_MAX_LIMIT")]
    pub max_limit: Option<usize>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "MISTO_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Cluster bus: nats://host:port (NATS with JetStream), for several nodes on one PostgreSQL database; see
    /// docs/cluster.md [default: none, in-process]
    #[arg(long, env = "MISTO_BUS_URL")]
    pub bus_url: Option<String>,
    /// This node's name in a cluster (delivery leases, logs); unique per node [default: a random UUID]
    #[arg(long, env = "MISTO_NODE_ID")]
    pub node_id: Option<String>,
    /// Bearer token the LoRaWAN network-server integrations (/integrations/...) must send [default: none, open]
    #[arg(long, env = "MISTO_INTEGRATION_TOKEN")]
    pub integration_token: Option<String>,
    /// Time limit of one payload-codec run, in milliseconds [default: 100]
    #[arg(long, env = "MISTO_CODEC_TIMEOUT_MS")]
    pub codec_timeout_ms: Option<u64>,
    /// Memory limit of a payload codec, in MiB [default: 16]
    #[arg(long, env = "MISTO_CODEC_MEMORY_MB")]
    pub codec_memory_mb: Option<usize>,
    /// MQTT endpoint for devices and network servers (per-device logins and topic ACLs), or `off`
    /// [default: 127.0.0.1:1883; when that default is taken misto starts without it and says so]
    #[arg(long, env = "MISTO_MQTT_ADDR")]
    pub mqtt_addr: Option<String>,
    /// External MQTT broker to take device and network-server messages from: mqtt://[user:password@]host[:port]
    /// [default: none]
    #[arg(long, env = "MISTO_MQTT_EXTERNAL")]
    pub mqtt_external: Option<String>,
}

/// The same settings as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    body_limit: Option<usize>,
    contexts_dir: Option<PathBuf>,
    remote_contexts: Option<bool>,
    max_limit: Option<usize>,
    log_format: Option<String>,
    bus_url: Option<String>,
    node_id: Option<String>,
    integration_token: Option<String>,
    codec_timeout_ms: Option<u64>,
    codec_memory_mb: Option<usize>,
    mqtt_addr: Option<String>,
    mqtt_external: Option<String>,
    /// The tenant messages from the external broker are stored in (default: the default tenant).
    mqtt_external_tenant: Option<String>,
    /// The persistent session's client id on the external broker (default `misto`).
    mqtt_external_client_id: Option<String>,
    /// Entity type → ISO 8601 duration: attribute instances older than that are removed (`[temporal_retention]`).
    temporal_retention: Option<std::collections::BTreeMap<String, String>>,
    /// Environment monitoring: radiation control level, air alert category, water rules (`[environment]`).
    environment: Option<misto_environment::Config>,
}

/// Effective settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub body_limit: usize,
    pub contexts_dir: Option<PathBuf>,
    pub remote_contexts: bool,
    pub max_limit: usize,
    pub log_json: bool,
    pub bus_url: Option<String>,
    pub node_id: String,
    pub integration_token: Option<String>,
    pub codec_timeout_ms: u64,
    pub codec_memory_mb: usize,
    /// The MQTT endpoint's address (None: off), and whether it is the default (taken: start without it).
    pub mqtt_addr: Option<SocketAddr>,
    pub mqtt_addr_is_default: bool,
    pub mqtt_external: Option<String>,
    pub mqtt_external_tenant: String,
    pub mqtt_external_client_id: String,
    /// (entity type, ISO 8601 duration) retention rules of the temporal store.
    pub temporal_retention: Vec<(String, String)>,
    pub environment: misto_environment::Config,
}

/// Merge flags/env over the file over defaults.
pub fn resolve(args: &ServeArgs, file: Option<&Path>) -> anyhow::Result<Settings> {
    let file_cfg = match file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the config file {}", p.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("the config file {} is not valid", p.display()))?
        }
        None if Path::new("misto.toml").exists() => {
            let text = std::fs::read_to_string("misto.toml").context("cannot read misto.toml")?;
            toml::from_str::<FileConfig>(&text).context("misto.toml is not valid")?
        }
        None => FileConfig::default(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .or(file_cfg.data_dir)
        .unwrap_or_else(|| PathBuf::from("./misto-data"));
    let database_url = args
        .database_url
        .clone()
        .or(file_cfg.database_url)
        .unwrap_or_else(|| data_dir.join("misto.db").to_string_lossy().to_string());
    let log_format = args
        .log_format
        .clone()
        .or(file_cfg.log_format)
        .unwrap_or_else(|| "text".into());
    let log_json = match log_format.as_str() {
        "json" => true,
        "text" => false,
        other => bail!("log format must be text or json, not '{other}'"),
    };
    let bus_url = args.bus_url.clone().or(file_cfg.bus_url);
    if let Some(u) = &bus_url {
        if !(u.starts_with("nats://") || u.starts_with("tls://")) {
            bail!("the bus URL must be nats://host:port, not '{u}'");
        }
    }
    let node_id = args
        .node_id
        .clone()
        .or(file_cfg.node_id)
        .unwrap_or_else(|| misto_broker::subscriptions::notifier::NotifierConfig::default().node);
    if node_id.is_empty() {
        bail!("the node id must not be empty");
    }
    let body_limit = args.body_limit.or(file_cfg.body_limit).unwrap_or(64 << 20);
    if body_limit < 1024 {
        bail!("the body limit must be at least 1024 bytes");
    }
    let codec_timeout_ms = args
        .codec_timeout_ms
        .or(file_cfg.codec_timeout_ms)
        .unwrap_or(100);
    if !(1..=60_000).contains(&codec_timeout_ms) {
        bail!("the codec time limit must be 1–60000 ms");
    }
    let codec_memory_mb = args
        .codec_memory_mb
        .or(file_cfg.codec_memory_mb)
        .unwrap_or(16);
    if !(1..=1024).contains(&codec_memory_mb) {
        bail!("the codec memory limit must be 1–1024 MiB");
    }
    let (mqtt_addr, mqtt_addr_is_default) = match args.mqtt_addr.clone().or(file_cfg.mqtt_addr) {
        None => (Some(SocketAddr::from(([127, 0, 0, 1], 1883))), true),
        Some(a) if a == "off" => (None, false),
        Some(a) => (
            Some(a.parse::<SocketAddr>().map_err(|_| {
                anyhow::anyhow!("the MQTT address must be host:port or off, not '{a}'")
            })?),
            false,
        ),
    };
    let mqtt_external = args.mqtt_external.clone().or(file_cfg.mqtt_external);
    if let Some(u) = &mqtt_external {
        misto_devices::mqtt::external::ExternalConfig::from_url(u, "check", "")
            .map_err(|e| anyhow::anyhow!("the external MQTT broker: {e}"))?;
    }
    Ok(Settings {
        http_addr: args
            .http_addr
            .or(file_cfg.http_addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        data_dir,
        database_url,
        body_limit,
        contexts_dir: args.contexts_dir.clone().or(file_cfg.contexts_dir),
        remote_contexts: args
            .remote_contexts
            .or(file_cfg.remote_contexts)
            .unwrap_or(true),
        max_limit: args.max_limit.or(file_cfg.max_limit).unwrap_or(1000),
        log_json,
        bus_url,
        node_id,
        integration_token: args
            .integration_token
            .clone()
            .or(file_cfg.integration_token)
            .filter(|t| !t.is_empty()),
        codec_timeout_ms,
        codec_memory_mb,
        mqtt_addr,
        mqtt_addr_is_default,
        mqtt_external,
        mqtt_external_tenant: file_cfg.mqtt_external_tenant.unwrap_or_default(),
        mqtt_external_client_id: file_cfg
            .mqtt_external_client_id
            .unwrap_or_else(|| "misto".into()),
        temporal_retention: file_cfg
            .temporal_retention
            .unwrap_or_default()
            .into_iter()
            .collect(),
        environment: file_cfg.environment.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_in_order() {
        let dir = std::env::temp_dir().join(format!("misto-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("misto.toml");
        std::fs::write(&f, "http_addr = \"127.0.0.1:9000\"\nbody_limit = 5000\n").unwrap();
        let s = resolve(&ServeArgs::default(), Some(&f)).unwrap();
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.body_limit, 5000);
        let args = ServeArgs {
            http_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let s = resolve(&args, Some(&f)).unwrap();
        assert_eq!(s.http_addr.port(), 9100, "flags/env win over the file");
        assert!(s.database_url.ends_with("misto.db"));
        std::fs::write(&f, "bus_url = \"nats://127.0.0.1:4222\"\nnode_id = \"a\"\n").unwrap();
        let s = resolve(&ServeArgs::default(), Some(&f)).unwrap();
        assert_eq!(s.bus_url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(s.node_id, "a");
        let args = ServeArgs {
            bus_url: Some("http://x".into()),
            ..Default::default()
        };
        assert!(
            resolve(&args, Some(&f)).is_err(),
            "a bus URL that is not nats://"
        );
        std::fs::write(
            &f,
            "[environment]\nradiation_control_level = 0.3\n\n[[environment.water_rules]]\nattribute = \"NO2\"\nmax = 0.5\n",
        )
        .unwrap();
        let s = resolve(&ServeArgs::default(), Some(&f)).unwrap();
        assert_eq!(s.environment.radiation_control_level, 0.3);
        assert_eq!(s.environment.water_rules[0].attribute, "NO2");
        std::fs::write(&f, "nonsense = 1\n").unwrap();
        assert!(resolve(&ServeArgs::default(), Some(&f)).is_err());
    }
}
