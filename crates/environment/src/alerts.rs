//! `Alert` entities (Smart Data Model dataModel.Alert) for breaches: opened with `validFrom`, closed with
//! `validTo`. An alert's `data` names the station and the rule, so the open alerts can be found again after a
//! restart.

use serde_json::{json, Value};

/// What a breach is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The observing station's entity id.
    pub station: String,
    /// The rule's key, unique per station (`air:pm25`, `radiation:doseRate`, `water:NO3`).
    pub rule: String,
    /// Smart Data Model `subCategory` (`airPollution`, `waterPollution`), where the model has one.
    pub sub_category: Option<&'static str>,
    pub severity: &'static str,
    pub description: String,
    pub value: f64,
    pub limit: f64,
    pub unit: String,
    /// When the breaching value was observed (ISO 8601).
    pub at: String,
    pub location: Option<Value>,
}

/// Who raises these alerts (`alertSource` names the station; this marks the module).
pub const RAISED_BY: &str = "misto-environment";

/// The id of an alert: one per opening, so a closed alert stays as a record and a new breach opens a new one.
pub fn alert_id(b: &Breach) -> String {
    let station = b.station.rsplit(':').next().unwrap_or(&b.station);
    let rule: String = b
        .rule
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let at: String = b.at.chars().filter(|c| c.is_ascii_digit()).collect();
    format!("urn:ngsi-ld:Alert:environment:{station}:{rule}:{at}")
}

/// The body (normalized, Alert + core context terms) of a new alert.
pub fn open_body(b: &Breach) -> Value {
    let mut e = json!({
        "id": alert_id(b),
        "type": "Alert",
        "category": {"type": "Property", "value": "environment"},
        "severity": {"type": "Property", "value": b.severity},
        "description": {"type": "Property", "value": b.description},
        "alertSource": {"type": "Property", "value": b.station},
        "dateIssued": {"type": "Property", "value": {"@type": "DateTime", "@value": b.at}},
        "validFrom": {"type": "Property", "value": {"@type": "DateTime", "@value": b.at}},
        "data": {"type": "Property", "value": {
            "raisedBy": RAISED_BY,
            "station": b.station,
            "rule": b.rule,
            "value": b.value,
            "limit": b.limit,
            "unit": b.unit,
        }},
    });
    if let Some(s) = b.sub_category {
        e["subCategory"] = json!({"type": "Property", "value": s});
    }
    if let Some(l) = &b.location {
        e["location"] = json!({"type": "GeoProperty", "value": l});
    }
    e
}

/// The merge that closes an alert at `at`, with the value that cleared it.
pub fn close_body(at: &str, value: f64) -> Value {
    json!({
        "validTo": {"type": "Property", "value": {"@type": "DateTime", "@value": at}},
        "clearedBy": {"type": "Property", "value": value, "observedAt": at},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uris_per_opening() {
        let b = Breach {
            station: "urn:ngsi-ld:AirQualityObserved:podil-1".into(),
            rule: "air:pm25".into(),
            sub_category: Some("airPollution"),
            severity: "medium",
            description: "x".into(),
            value: 30.0,
            limit: 25.0,
            unit: "ug/m3".into(),
            at: "2025-03-01T08:00:00.000Z".into(),
            location: None,
        };
        assert_eq!(
            alert_id(&b),
            "urn:ngsi-ld:Alert:environment:podil-1:air-pm25:20250301080000000"
        );
        let body = open_body(&b);
        assert_eq!(body["subCategory"]["value"], "airPollution");
        assert_eq!(body["data"]["value"]["rule"], "air:pm25");
    }
}
