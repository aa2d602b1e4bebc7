//! Storage of downlink commands (`misto-devices`): each command sent to a device with its state, and per
//! device the route its downlinks take (how it last reached misto), an opaque JSON document the device layer
//! owns.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

/// States a command can be in; `acknowledged` and `failed` are final.
pub const QUEUED: &str = "queued";
pub const SENT: &str = "sent";
pub const ACKNOWLEDGED: &str = "acknowledged";
pub const FAILED: &str = "failed";

/// One downlink command.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandRecord {
    pub tenant: String,
    /// A UUID, also the id the network server reports back.
    pub id: String,
    /// The device's short id.
    pub device: String,
    pub f_port: i64,
    /// The payload, base64.
    pub bytes: String,
    pub confirmed: bool,
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// ms since the Unix epoch.
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[async_trait]
pub trait CommandStore: Send + Sync {
    async fn add_command(&self, c: &CommandRecord) -> Result<(), StoreError>;

    async fn get_command(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<CommandRecord>, StoreError>;

    /// Commands of one device, newest first.
    async fn list_commands(
        &self,
        tenant: &str,
        device: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError>;

    /// Move a command to `state` (with `reason`), unless it is in a final state already or `state` is `sent`
    /// and it is past that; returns the command as it is now (None: no such command).
    async fn set_command_state(
        &self,
        tenant: &str,
        id: &str,
        state: &str,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<CommandRecord>, StoreError>;

    /// Remember how a device last reached misto.
    async fn set_route(&self, tenant: &str, device: &str, route: &Value) -> Result<(), StoreError>;

    async fn get_route(&self, tenant: &str, device: &str) -> Result<Option<Value>, StoreError>;
}

/// The guard of [`CommandStore::set_command_state`], shared by both backends as SQL: the states a command
/// may leave for `to`.
pub(crate) fn may_leave(to: &str) -> &'static str {
    if to == SENT {
        "('queued')"
    } else {
        "('queued', 'sent')"
    }
}
