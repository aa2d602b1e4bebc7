//! The transport-independent form of what devices and network servers send: every integration (ChirpStack,
//! The Things Stack, HTTP ingest, and later MQTT) turns its messages into these and hands them to
//! [`crate::Ingest`].

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One uplink of one device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Uplink {
    /// `chirpstack`, `tts`, `http`, …
    pub source: String,
    /// DevEUI (lower-case hex) when the sender knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_eui: Option<String>,
    /// The device's id in misto (or the network server's device name), when no DevEUI identifies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// When it was received (RFC 3339); None: when misto received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The network server's application (ChirpStack application id, TTS `{app}@{tenant}`), for downlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_cnt: Option<i64>,
    /// The application payload, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<String>,
    /// An object decoded already (by the network server, or sent as JSON by the device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

impl Uplink {
    /// The payload bytes (None: absent or not base64).
    pub fn payload(&self) -> Option<Vec<u8>> {
        self.bytes
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }
}

/// What a non-uplink event says about a device.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceEvent {
    pub source: String,
    pub dev_eui: Option<String>,
    pub device_id: Option<String>,
    pub time: Option<String>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum EventKind {
    /// Battery level 0–1 (None: the device cannot tell), link margin in dB.
    Status {
        battery: Option<f64>,
        margin: Option<f64>,
    },
    Join,
    /// A downlink was acknowledged (`true`) or not / failed; `command` is misto's command id when the
    /// network server reports it, `reason` why it failed.
    DownlinkAck {
        acknowledged: bool,
        command: Option<String>,
        reason: Option<String>,
    },
    /// The gateway sent a downlink.
    DownlinkSent {
        command: Option<String>,
    },
    /// Position as [longitude, latitude].
    Location {
        lon: f64,
        lat: f64,
    },
    /// A network-server log line.
    Log {
        level: String,
        description: String,
    },
    #[default]
    Other,
}

/// Read a JSON number that proto3/TTS JSON may also write as a string (64-bit integers, frequencies).
pub fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The uplink a device sends itself as JSON (HTTP ingest, MQTT `devices/{id}/up`): either
/// `{"bytes": "<base64>", "fPort": n}` for the profile's codec, or `{"data": {…}}`, or the decoded object itself;
/// `time` (RFC 3339) and `fCnt` are optional members of the first two forms.
pub fn device_uplink(source: &str, device: &str, body: &Value) -> Result<Uplink, String> {
    let Value::Object(o) = body else {
        return Err("the body must be a JSON object".into());
    };
    let mut up = Uplink {
        source: source.into(),
        device_id: Some(device.into()),
        ..Default::default()
    };
    if o.contains_key("bytes") || o.contains_key("data") {
        up.bytes = o.get("bytes").and_then(Value::as_str).map(str::to_string);
        up.decoded = o.get("data").cloned();
        up.f_port = o.get("fPort").and_then(Value::as_u64).map(|f| f as u32);
        up.f_cnt = o.get("fCnt").and_then(Value::as_i64);
        up.time = o.get("time").and_then(Value::as_str).map(str::to_string);
    } else {
        up.decoded = Some(body.clone());
    }
    Ok(up)
}
