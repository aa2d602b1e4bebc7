//! The device layer of misto: a registry of devices (NGSI-LD `Device` entities plus private records),
//! device profiles (codec, mapping to a Smart Data Model, test vectors), LoRaWAN network-server integrations
//! (ChirpStack v4, The Things Stack v3), HTTP ingest with device tokens, JavaScript payload codecs and dead
//! letters. It writes entities only through [`misto_broker::Broker`], like every domain module; its private
//! tables sit behind [`misto_store::DeviceStore`].
//!
//! Every transport ends in [`Devices::uplink`] (or [`Devices::event`]) with a transport-independent
//! [`Uplink`], so an MQTT listener can feed the same pipeline.

pub mod chirpstack;
pub mod codec;
pub mod commands;
pub mod error;
pub mod http;
mod ingest;
pub mod model;
pub mod mqtt;
mod offline;
mod registry;
pub mod tts;
pub mod uplink;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use misto_broker::Broker;

pub use codec::{CodecEngine, CodecLimits};
pub use error::DeviceError;
pub use ingest::Outcome;
pub use uplink::{DeviceEvent, EventKind, Uplink};

/// Settings of the device layer.
#[derive(Debug, Clone, Default)]
pub struct DevicesConfig {
    /// Threads that run codecs (0: one).
    pub codec_threads: usize,
    pub codec_limits: CodecLimits,
    /// When set, the network-server integrations (`/integrations/...`) require
    /// `Authorization: Bearer <this>`.
    pub integration_token: Option<String>,
}

/// (tenant, device or profile id).
type TenantDevice = (String, String);

/// The device layer. Cheap to clone.
#[derive(Clone)]
pub struct Devices {
    pub broker: Broker,
    codecs: CodecEngine,
    config: DevicesConfig,
    /// Device tokens verified already (SHA-256 of the token → tenant and device), so argon2 runs once per
    /// token, not once per uplink.
    verified: Arc<Mutex<HashMap<[u8; 32], TenantDevice>>>,
    /// Target entities this process has written with their current `refDevice` and `location` (a hash of
    /// tenant, entity and location): those unchanging members are left out of later uplinks, so each reading
    /// adds history only for what it measured.
    linked: Arc<Mutex<HashSet<u64>>>,
    /// Profiles read lately, by (tenant, id), with when they were read.
    profiles: Arc<Mutex<HashMap<TenantDevice, CachedProfile>>>,
    /// Routes of devices written lately (so an uplink writes its device's route only when it changed).
    routes: Arc<Mutex<HashMap<TenantDevice, serde_json::Value>>>,
    /// The MQTT transports downlinks leave through, set once they run.
    transports: Arc<Mutex<Transports>>,
}

/// The embedded endpoint and the external broker link (with the tenant it serves), when running.
#[derive(Default)]
struct Transports {
    gateway: Option<mqtt::gateway::Gateway>,
    external: Option<(mqtt::external::ExternalLink, String)>,
}

type CachedProfile = (std::time::Instant, Arc<model::Profile>);

impl Devices {
    pub fn new(broker: Broker, config: DevicesConfig) -> std::io::Result<Devices> {
        let codecs = CodecEngine::start(config.codec_threads.max(1), config.codec_limits)?;
        Ok(Devices {
            broker,
            codecs,
            config,
            verified: Arc::default(),
            linked: Arc::default(),
            profiles: Arc::default(),
            routes: Arc::default(),
            transports: Arc::default(),
        })
    }

    /// Send downlinks through misto's MQTT endpoint.
    pub fn set_gateway(&self, g: mqtt::gateway::Gateway) {
        if let Ok(mut t) = self.transports.lock() {
            t.gateway = Some(g);
        }
    }

    /// Send the downlinks of `tenant` through the external broker.
    pub fn set_external(&self, link: mqtt::external::ExternalLink, tenant: &str) {
        if let Ok(mut t) = self.transports.lock() {
            t.external = Some((link, tenant.to_string()));
        }
    }

    fn transports(
        &self,
    ) -> (
        Option<mqtt::gateway::Gateway>,
        Option<(mqtt::external::ExternalLink, String)>,
    ) {
        self.transports
            .lock()
            .map(|t| (t.gateway.clone(), t.external.clone()))
            .unwrap_or_default()
    }

    /// The token network servers authenticate with (HTTP integrations, MQTT `integration` login).
    pub fn integration_token(&self) -> Option<&str> {
        self.config.integration_token.as_deref()
    }

    pub fn codecs(&self) -> &CodecEngine {
        &self.codecs
    }
}
