//! Storage behind the device layer (`misto-devices`): the private record of each device (device EUI, profile,
//! hashed token, health), device profiles, and dead letters (uplinks that could not be decoded or mapped).
//! Documents (a device's public fields, a profile) are opaque JSON to the store; the device layer owns their
//! form. Nothing here touches entity tables: a device's NGSI-LD `Device` entity is written through the broker.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

/// A device's private record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceRecord {
    pub tenant: String,
    /// The device's short id (its DevEUI in lower-case hex, or a name); the entity id is derived from it.
    pub id: String,
    /// LoRaWAN DevEUI, lower-case hex; unique in a tenant.
    pub dev_eui: Option<String>,
    pub profile_id: Option<String>,
    /// PHC string of the device token's argon2 hash.
    pub token_hash: Option<String>,
    /// Public fields (name, controlledProperty, location, …), in the device layer's form.
    pub doc: Value,
    pub health: Health,
}

/// What the last uplinks told about a device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// Last uplink, ms since the Unix epoch.
    pub last_seen_ms: Option<i64>,
    /// Battery level, 0–1 (unknown when absent).
    pub battery: Option<f64>,
    pub rssi: Option<f64>,
    pub snr: Option<f64>,
    /// Gateway that received the last uplink best.
    pub gateway: Option<String>,
    pub last_fcnt: Option<i64>,
    /// Frames missed, judged from frame-counter gaps.
    pub fcnt_gaps: i64,
    pub uplinks: i64,
}

/// What one event says about a device's health; absent members leave the stored value as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthUpdate {
    /// Set for uplinks (counts an uplink and updates last seen).
    pub seen_ms: Option<i64>,
    pub battery: Option<f64>,
    pub rssi: Option<f64>,
    pub snr: Option<f64>,
    pub gateway: Option<String>,
    pub fcnt: Option<i64>,
}

/// The new frame-counter state: a counter more than one above the last one means frames were lost; a lower
/// one means the device re-joined (counters restart), which is no loss.
pub fn fcnt_step(last: Option<i64>, gaps: i64, fcnt: Option<i64>) -> (Option<i64>, i64) {
    match (last, fcnt) {
        (Some(l), Some(f)) if f > l + 1 => (Some(f), gaps + (f - l - 1)),
        (_, Some(f)) => (Some(f), gaps),
        (l, None) => (l, gaps),
    }
}

/// An uplink that could not be decoded or mapped.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub tenant: String,
    pub at_ms: i64,
    /// The device the uplink named (DevEUI or id), if any.
    pub device: Option<String>,
    pub reason: String,
    /// The uplink in the device layer's transport-independent form.
    pub uplink: Value,
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Store a device; with `create`, refuse (false) if the id exists. A DevEUI taken by another device of
    /// the tenant is refused too (`Ok(false)`).
    async fn put_device(&self, d: &DeviceRecord, create: bool) -> Result<bool, StoreError>;

    async fn get_device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, StoreError>;

    async fn device_by_eui(
        &self,
        tenant: &str,
        dev_eui: &str,
    ) -> Result<Option<DeviceRecord>, StoreError>;

    /// Devices of a tenant in id order, after `after` (keyset paging).
    async fn list_devices(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError>;

    async fn delete_device(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Apply one event's health news in one transaction; returns the new health (None: no such device).
    async fn update_health(
        &self,
        tenant: &str,
        id: &str,
        u: &HealthUpdate,
    ) -> Result<Option<Health>, StoreError>;

    /// Store a profile (opaque document); with `create`, refuse (false) if it exists.
    async fn put_profile(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError>;

    async fn get_profile(&self, tenant: &str, id: &str) -> Result<Option<Value>, StoreError>;

    async fn list_profiles(&self, tenant: &str) -> Result<Vec<(String, Value)>, StoreError>;

    async fn delete_profile(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;

    /// Record a dead letter; returns its id.
    async fn add_dead_letter(
        &self,
        tenant: &str,
        at_ms: i64,
        device: Option<&str>,
        reason: &str,
        uplink: &Value,
    ) -> Result<i64, StoreError>;

    /// Dead letters of a tenant, oldest first, with ids above `after`.
    async fn list_dead_letters(
        &self,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    async fn delete_dead_letter(&self, tenant: &str, id: i64) -> Result<bool, StoreError>;

    async fn count_dead_letters(&self, tenant: &str) -> Result<u64, StoreError>;
}
