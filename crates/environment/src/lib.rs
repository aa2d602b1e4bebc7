//! Environment monitoring, the first domain module on the NGSI-LD spine.
//!
//! It watches the broker's change feed for air-quality, radiation and water observations and, for each:
//! - **air**: recomputes the European (EEA) and US EPA air-quality indices from the temporal store, with each
//!   pollutant averaged over the window its table defines ([`bands`], [`aqi`]), and writes them back onto the
//!   station's entity (`airQualityIndex`, `airQualityLevel`, `europeanAqi`, `usAqi`);
//! - **radiation** (`RadiationObserved`, a documented extension of AirQualityObserved with `doseRate` in µSv/h):
//!   compares the dose rate with the control level;
//! - **water** (`WaterQualityObserved`): checks each sample against a norm table ([`norms`]).
//!
//! A breach opens an `Alert` entity (Smart Data Model) and its end closes it (`validTo`), with hysteresis
//! ([`norms::Rule::step`]). Everything is read and written through [`misto_broker::Broker`]; [`public`] serves
//! the residents' map without login.

pub mod alerts;
pub mod aqi;
pub mod bands;
pub mod monitor;
pub mod norms;
pub mod public;
pub mod units;

use serde::Deserialize;

pub use monitor::Monitor;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Table(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ngsi(#[from] misto_ngsild::NgsiError),
}

/// The Smart Data Models contexts the module reads and writes with (shipped in the broker, never fetched).
pub const ENVIRONMENT_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld";
pub const WATER_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.WaterQuality/master/context.jsonld";
pub const ALERT_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld";

/// Settings (`[environment]` in `misto.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Radiation control level in µSv/h (Kyiv: 0.26).
    #[serde(default = "default_control_level")]
    pub radiation_control_level: f64,
    /// The European index category from which an air pollutant raises an alert.
    #[serde(default = "default_air_alert")]
    pub air_alert_category: String,
    /// Which index goes into the Smart Data Model's `airQualityIndex`/`airQualityLevel`: `eea` or `us-epa`.
    #[serde(default = "default_primary")]
    pub primary_index: String,
    /// Water rules added to or replacing those of the shipped drinking-water table.
    #[serde(default)]
    pub water_rules: Vec<norms::Rule>,
}

fn default_control_level() -> f64 {
    0.26
}
fn default_air_alert() -> String {
    "poor".into()
}
fn default_primary() -> String {
    "eea".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            radiation_control_level: default_control_level(),
            air_alert_category: default_air_alert(),
            primary_index: default_primary(),
            water_rules: Vec::new(),
        }
    }
}

/// An ISO 8601 duration of hours, minutes or seconds (`PT1H`, `PT8H`, `PT24H`) in milliseconds.
pub fn window_ms(iso: &str) -> Result<i64, String> {
    let span: jiff::Span = iso
        .parse()
        .map_err(|e| format!("'{iso}' is not an ISO 8601 duration: {e}"))?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("'{iso}': {e}"))?;
    let ms = d.as_millis();
    if ms <= 0 || ms > i64::MAX as i128 {
        return Err(format!("'{iso}' is not a positive duration"));
    }
    Ok(ms as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows() {
        assert_eq!(super::window_ms("PT24H"), Ok(86_400_000));
        assert_eq!(super::window_ms("PT1H"), Ok(3_600_000));
        assert!(super::window_ms("soon").is_err());
        assert!(super::window_ms("PT0S").is_err());
    }
}
