//! The device layer's documents: device profiles, devices as the API takes them, and codec test vectors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DeviceError;

/// A device profile: what a kind of device sends and how it becomes entities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// JavaScript source defining `decodeUplink` (and optionally `encodeDownlink`). None: the
    /// network server's decoded object is used as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Seconds between two reports, as the device is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_interval: Option<u64>,
    /// Entity type the readings go to, e.g. `AirQualityObserved`.
    pub target_type: String,
    /// `@context` of the attribute names (a URL, or a list); default: the Smart Data Models context of the
    /// target type when misto ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Decoded field → attribute; empty: every scalar field under its own name.
    #[serde(default)]
    pub mapping: Vec<FieldMap>,
    #[serde(default)]
    pub test_vectors: Vec<TestVector>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldMap {
    /// Field of the decoded object; `a.b` reaches into nested objects.
    pub field: String,
    /// Attribute name (default: the field's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// UN/CEFACT unit code, e.g. `CEL`, `GQ` (µg/m³).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_code: Option<String>,
}

/// A codec test vector in the ChirpStack device-profile repository's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestVector {
    #[serde(default)]
    pub name: String,
    pub input: VectorInput,
    pub expected: VectorExpected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VectorInput {
    pub bytes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorExpected {
    pub data: Value,
}

/// Smart Data Models contexts misto ships, by the entity types they define.
const SHIPPED: &[(&str, &[&str])] = &[
    (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld",
        &["AirQualityObserved", "NoiseLevelObserved", "WaterObserved"],
    ),
    (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.WaterQuality/master/context.jsonld",
        &["WaterQualityObserved"],
    ),
    (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld",
        &["ParkingSpot", "OffStreetParking", "OnStreetParking"],
    ),
    (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld",
        &["TrafficFlowObserved"],
    ),
    (
        "https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/master/context.jsonld",
        &["Streetlight", "StreetlightControlCabinet"],
    ),
];

pub const DEVICE_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Device/master/context.jsonld";

impl Profile {
    /// The `@context` its entities are written with: the Device model's terms, then the profile's own.
    pub fn write_context(&self) -> Value {
        let own = self.context.clone().or_else(|| {
            SHIPPED
                .iter()
                .find(|(_, types)| types.contains(&self.target_type.as_str()))
                .map(|(url, _)| Value::String((*url).to_string()))
        });
        match own {
            Some(Value::Array(mut a)) => {
                a.insert(0, Value::String(DEVICE_CONTEXT.into()));
                Value::Array(a)
            }
            Some(v) => Value::Array(vec![Value::String(DEVICE_CONTEXT.into()), v]),
            None => Value::String(DEVICE_CONTEXT.into()),
        }
    }

    /// Check what needs no codec run.
    pub fn check(&self) -> Result<(), DeviceError> {
        check_id("profile id", &self.id)?;
        if self.target_type.is_empty()
            || !self
                .target_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(DeviceError::invalid(
                "targetType must be an entity type name (letters, digits, _)",
            ));
        }
        for m in &self.mapping {
            if m.field.is_empty() {
                return Err(DeviceError::invalid("a mapping has an empty field"));
            }
        }
        if !self.test_vectors.is_empty() && self.codec.is_none() {
            return Err(DeviceError::invalid("test vectors need a codec"));
        }
        Ok(())
    }
}

/// Ids of devices and profiles: they become parts of entity ids and URL paths.
pub fn check_id(what: &str, id: &str) -> Result<(), DeviceError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(DeviceError::invalid(format!(
            "{what} '{id}' must be 1–128 letters, digits or _ - . :"
        )));
    }
    Ok(())
}

/// A DevEUI in its canonical form (16 lower-case hex digits).
pub fn canonical_eui(s: &str) -> Result<String, DeviceError> {
    let e = s.trim().to_ascii_lowercase().replace(['-', ':'], "");
    if e.len() == 16 && e.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(e)
    } else {
        Err(DeviceError::invalid(format!(
            "devEui '{s}' must be 16 hexadecimal digits"
        )))
    }
}

/// A device as the API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_eui: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controlled_property: Vec<String>,
    /// GeoJSON geometry where the device is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_state: Option<String>,
}

/// The entity id of a device.
pub fn device_entity_id(id: &str) -> String {
    format!("urn:ngsi-ld:Device:{id}")
}
