//! Downlink commands: a command is made from a profile's `encodeDownlink` (or raw bytes), stored as `queued`,
//! and published on the topic of the network the device last reached misto through (its route); network-server
//! events move it to `sent`, `acknowledged` or `failed`.

use std::sync::Arc;

use base64::Engine as _;
use misto_store::commands::{CommandRecord, ACKNOWLEDGED, FAILED, QUEUED, SENT};
use serde_json::{json, Value};

use crate::codec::Entry;
use crate::uplink::Uplink;
use crate::{DeviceError, Devices};

/// Where a device's downlinks go, learned from its uplinks (stored as JSON with `network`).
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    ChirpStack {
        application: String,
        dev_eui: String,
    },
    Tts {
        application: String,
        device: String,
    },
    /// On misto's own MQTT endpoint (`devices/{id}/down`).
    Mqtt,
}

impl Route {
    pub fn to_json(&self) -> Value {
        match self {
            Route::ChirpStack {
                application,
                dev_eui,
            } => json!({"network": "chirpstack", "application": application, "devEui": dev_eui}),
            Route::Tts {
                application,
                device,
            } => json!({"network": "tts", "application": application, "device": device}),
            Route::Mqtt => json!({"network": "mqtt"}),
        }
    }

    pub fn from_json(v: &Value) -> Option<Route> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match v.get("network")?.as_str()? {
            "chirpstack" => Some(Route::ChirpStack {
                application: s("application")?,
                dev_eui: s("devEui")?,
            }),
            "tts" => Some(Route::Tts {
                application: s("application")?,
                device: s("device")?,
            }),
            "mqtt" => Some(Route::Mqtt),
            _ => None,
        }
    }

    /// The route an uplink of `device` (its short id and DevEUI) shows; None for transports without downlinks.
    pub fn of_uplink(up: &Uplink, id: &str, dev_eui: Option<&str>) -> Option<Route> {
        match up.source.as_str() {
            "chirpstack" => Some(Route::ChirpStack {
                application: up.application.clone()?,
                dev_eui: up.dev_eui.as_deref().or(dev_eui)?.to_string(),
            }),
            "tts" => Some(Route::Tts {
                application: up.application.clone()?,
                device: up.device_id.clone()?,
            }),
            "mqtt" => Some(Route::Mqtt).filter(|_| up.device_id.as_deref() == Some(id)),
            _ => None,
        }
    }

    /// The topic and payload of `c` on this route.
    pub fn message(&self, c: &CommandRecord) -> (String, Value) {
        match self {
            Route::ChirpStack {
                application,
                dev_eui,
            } => (
                format!("application/{application}/device/{dev_eui}/command/down"),
                json!({"id": c.id, "devEui": dev_eui, "confirmed": c.confirmed, "fPort": c.f_port, "data": c.bytes}),
            ),
            Route::Tts {
                application,
                device,
            } => (
                format!("v3/{application}/devices/{device}/down/push"),
                json!({"downlinks": [{"f_port": c.f_port, "frm_payload": c.bytes, "confirmed": c.confirmed,
                    "correlation_ids": [format!("{CORRELATION_PREFIX}{}", c.id)]}]}),
            ),
            Route::Mqtt => (
                format!("devices/{}/down", c.device),
                json!({"id": c.id, "bytes": c.bytes, "fPort": c.f_port, "confirmed": c.confirmed}),
            ),
        }
    }
}

/// How misto marks its downlinks on The Things Stack.
pub const CORRELATION_PREFIX: &str = "misto:command:";

/// A command as the API shows it.
pub fn command_json(c: &CommandRecord) -> Value {
    let at = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(misto_ngsild::validate::format_datetime)
            .unwrap_or_default()
    };
    let mut v = json!({
        "id": c.id, "device": c.device, "fPort": c.f_port, "bytes": c.bytes, "confirmed": c.confirmed,
        "state": c.state, "createdAt": at(c.created_ms), "modifiedAt": at(c.updated_ms),
    });
    if let (Some(r), Some(o)) = (&c.reason, v.as_object_mut()) {
        o.insert("reason".into(), json!(r));
    }
    v
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Devices {
    /// Make, store and send a command to device `id` from a request body (`{"data": {…}}` through the
    /// profile's `encodeDownlink`, or `{"bytes", "fPort"}`; optional `confirmed`). A command that cannot be sent
    /// is stored as `failed` with the reason.
    pub async fn command(
        &self,
        tenant: &str,
        id: &str,
        body: &Value,
    ) -> Result<CommandRecord, DeviceError> {
        let Value::Object(o) = body else {
            return Err(DeviceError::invalid("a command is a JSON object"));
        };
        let confirmed = match o.get("confirmed") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(DeviceError::invalid("confirmed must be true or false")),
        };
        let device = self
            .broker
            .store
            .get_device(tenant, id)
            .await?
            .ok_or_else(|| DeviceError::NotFound(format!("device {id} does not exist")))?;
        let (bytes, f_port) = match (o.get("data"), o.get("bytes")) {
            (Some(data), None) => {
                self.encode(tenant, device.profile_id.as_deref(), data)
                    .await?
            }
            (None, Some(b)) => {
                let b = b
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .ok_or_else(|| DeviceError::invalid("bytes must be base64 text"))?;
                let port = o
                    .get("fPort")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| DeviceError::invalid("fPort (1–223) is required with bytes"))?;
                (b, port)
            }
            _ => {
                return Err(DeviceError::invalid(
                    "a command has either data (for the profile's codec) or bytes with fPort",
                ))
            }
        };
        if !(1..=223).contains(&f_port) {
            return Err(DeviceError::invalid(format!(
                "fPort {f_port} is outside 1–223"
            )));
        }
        let now = now_ms();
        let mut c = CommandRecord {
            tenant: tenant.into(),
            id: uuid::Uuid::new_v4().to_string(),
            device: device.id.clone(),
            f_port: f_port as i64,
            bytes: base64::engine::general_purpose::STANDARD.encode(&bytes),
            confirmed,
            state: QUEUED.into(),
            reason: None,
            created_ms: now,
            updated_ms: now,
        };
        self.broker.store.add_command(&c).await?;
        let (state, reason) = match self.send(tenant, &c).await? {
            Ok(direct) => (if direct { SENT } else { QUEUED }, None),
            Err(reason) => (FAILED, Some(reason)),
        };
        if state != QUEUED {
            c = self
                .move_command(tenant, &c.id, state, reason.as_deref())
                .await?
                .unwrap_or(c);
        }
        metrics::counter!("misto_devices_commands_total", "state" => QUEUED).increment(1);
        Ok(c)
    }

    /// `encodeDownlink` of the device's profile → (bytes, fPort).
    async fn encode(
        &self,
        tenant: &str,
        profile: Option<&str>,
        data: &Value,
    ) -> Result<(Vec<u8>, u64), DeviceError> {
        let profile = profile.ok_or_else(|| {
            DeviceError::invalid("the device has no profile to encode data with; send bytes")
        })?;
        let p = self
            .profile(tenant, profile)
            .await?
            .map_err(DeviceError::Invalid)?;
        let codec = p.codec.as_deref().ok_or_else(|| {
            DeviceError::invalid(format!("profile {profile} has no codec; send bytes"))
        })?;
        let out = self
            .codecs
            .run(Arc::from(codec), Entry::Encode, json!({"data": data}))
            .await
            .map_err(|e| DeviceError::invalid(format!("encodeDownlink: {e}")))?;
        if let Some(errs) = out
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let list: Vec<String> = errs
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| e.to_string())
                })
                .collect();
            return Err(DeviceError::invalid(format!(
                "encodeDownlink reported errors: {}",
                list.join("; ")
            )));
        }
        let bytes = out
            .get("bytes")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .map(|b| b.as_u64().filter(|b| *b < 256).map(|b| b as u8))
                    .collect::<Option<Vec<u8>>>()
            })
            .ok_or_else(|| {
                DeviceError::invalid("encodeDownlink returned no bytes (an array of 0–255)")
            })?;
        let port = out
            .get("fPort")
            .and_then(Value::as_u64)
            .ok_or_else(|| DeviceError::invalid("encodeDownlink returned no fPort"))?;
        Ok((bytes, port))
    }

    /// Publish `c` on its device's route: Ok(true) when it went straight to the device (misto's endpoint),
    /// Ok(false) when a network server has it, Err(reason) when it could not be sent.
    async fn send(
        &self,
        tenant: &str,
        c: &CommandRecord,
    ) -> Result<Result<bool, String>, DeviceError> {
        let Some(route) = self
            .broker
            .store
            .get_route(tenant, &c.device)
            .await?
            .as_ref()
            .and_then(Route::from_json)
        else {
            return Ok(Err(format!(
                "no route to device {} is known: it has sent no uplink through ChirpStack, The Things Stack or \
                 misto's MQTT endpoint yet",
                c.device
            )));
        };
        let (topic, payload) = route.message(c);
        let payload = payload.to_string().into_bytes();
        let (gateway, external) = self.transports();
        let mut delivered = false;
        if let Some(g) = &gateway {
            delivered |= g.publish(tenant, &topic, payload.clone().into()) > 0;
        }
        let mut error = None;
        if let Some((link, _)) = external.filter(|(_, t)| t == tenant) {
            match link.publish(&topic, payload).await {
                Ok(()) => delivered = true,
                Err(e) => error = Some(format!("the external MQTT broker refused it: {e}")),
            }
        } else if gateway.is_none() {
            return Ok(Err(
                "no MQTT transport (embedded endpoint or external broker) runs for this tenant"
                    .into(),
            ));
        }
        if !delivered {
            return Ok(Err(
                error.unwrap_or_else(|| format!("nobody is subscribed to {topic}"))
            ));
        }
        tracing::info!(
            tenant,
            device = c.device,
            command = c.id,
            topic,
            "downlink command published"
        );
        Ok(Ok(route == Route::Mqtt))
    }

    /// Move a command to `state` (final states stay), counting the move.
    pub(crate) async fn move_command(
        &self,
        tenant: &str,
        id: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<Option<CommandRecord>, DeviceError> {
        let c = self
            .broker
            .store
            .set_command_state(tenant, id, state, reason, now_ms())
            .await?;
        if c.as_ref().is_some_and(|c| c.state == state) {
            metrics::counter!("misto_devices_commands_total", "state" => state.to_string())
                .increment(1);
        }
        Ok(c)
    }

    /// A network server's word on a command (`sent`, or acknowledged or not).
    pub(crate) async fn command_event(
        &self,
        tenant: &str,
        id: &str,
        ack: Option<bool>,
        reason: Option<&str>,
    ) -> Result<(), DeviceError> {
        let (state, reason) = match ack {
            None => (SENT, None),
            Some(true) => (ACKNOWLEDGED, None),
            Some(false) => (
                FAILED,
                Some(reason.unwrap_or("the device did not acknowledge it")),
            ),
        };
        if self
            .move_command(tenant, id, state, reason)
            .await?
            .is_none()
        {
            tracing::debug!(
                tenant,
                command = id,
                "event about a command misto does not know"
            );
        }
        Ok(())
    }

    pub async fn get_command(&self, tenant: &str, id: &str) -> Result<CommandRecord, DeviceError> {
        self.broker
            .store
            .get_command(tenant, id)
            .await?
            .ok_or_else(|| DeviceError::NotFound(format!("command {id} does not exist")))
    }

    pub async fn list_commands(
        &self,
        tenant: &str,
        device: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, DeviceError> {
        if self
            .broker
            .store
            .get_device(tenant, device)
            .await?
            .is_none()
        {
            return Err(DeviceError::NotFound(format!(
                "device {device} does not exist"
            )));
        }
        Ok(self
            .broker
            .store
            .list_commands(tenant, device, offset, limit)
            .await?)
    }

    /// Remember how a device reached misto, writing only when it changed.
    pub(crate) async fn learn_route(
        &self,
        tenant: &str,
        device: &str,
        route: Route,
    ) -> Result<(), DeviceError> {
        let key = (tenant.to_string(), device.to_string());
        let v = route.to_json();
        if self
            .routes
            .lock()
            .ok()
            .and_then(|r| r.get(&key).cloned())
            .as_ref()
            == Some(&v)
        {
            return Ok(());
        }
        self.broker.store.set_route(tenant, device, &v).await?;
        if let Ok(mut r) = self.routes.lock() {
            if r.len() >= 100_000 {
                r.clear();
            }
            r.insert(key, v);
        }
        Ok(())
    }
}
