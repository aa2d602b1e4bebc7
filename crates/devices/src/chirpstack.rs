//! ChirpStack v4 integration events (the proto3 JSON mapping of `integration.proto`): `up`, `join`,
//! `status`, `ack`, `txack`, `log`, `location`. Parsing is lenient: proto3 JSON leaves out fields that are
//! zero or empty (an `fCnt` of 0, a `data` of no bytes), so every field may be absent.

use serde_json::Value;

use crate::uplink::{number, text, DeviceEvent, EventKind, Uplink};

/// A parsed ChirpStack event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Up(Uplink),
    Device(DeviceEvent),
}

fn dev_eui(body: &Value) -> Option<String> {
    text(body.pointer("/deviceInfo/devEui")).map(|s| s.to_ascii_lowercase())
}

fn device_name(body: &Value) -> Option<String> {
    text(body.pointer("/deviceInfo/deviceName"))
}

/// The DevEUI and event of a ChirpStack MQTT event topic,
/// `application/{application_id}/device/{dev_eui}/event/{event}` (for an MQTT transport to call [`parse`]).
pub fn topic(t: &str) -> Option<(String, &str)> {
    match t.split('/').collect::<Vec<_>>().as_slice() {
        ["application", _, "device", eui, "event", event]
            if !eui.is_empty() && !event.is_empty() =>
        {
            Some((eui.to_ascii_lowercase(), *event))
        }
        _ => None,
    }
}

/// The application id of a ChirpStack event topic.
pub fn topic_application(t: &str) -> Option<&str> {
    match t.split('/').collect::<Vec<_>>().as_slice() {
        ["application", app, "device", _, "event", _] if !app.is_empty() => Some(*app),
        _ => None,
    }
}

/// Parse the body of event `event` (`?event=` of the HTTP integration, or the MQTT topic's last level).
pub fn parse(event: &str, body: &Value) -> Result<Event, String> {
    if !body.is_object() {
        return Err("a ChirpStack event is a JSON object".into());
    }
    let time = text(body.get("time"));
    let base = |kind| DeviceEvent {
        source: "chirpstack".into(),
        dev_eui: dev_eui(body),
        device_id: device_name(body),
        time: time.clone(),
        kind,
    };
    Ok(match event {
        "up" => {
            // The best-received copy: highest RSSI among the gateways.
            let best = body.get("rxInfo").and_then(Value::as_array).and_then(|rx| {
                rx.iter().max_by(|a, b| {
                    let (x, y) = (number(a.get("rssi")), number(b.get("rssi")));
                    x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                })
            });
            Event::Up(Uplink {
                source: "chirpstack".into(),
                dev_eui: dev_eui(body),
                device_id: device_name(body),
                application: text(body.pointer("/deviceInfo/applicationId")),
                time,
                f_port: number(body.get("fPort")).map(|f| f as u32),
                f_cnt: Some(number(body.get("fCnt")).unwrap_or(0.0) as i64),
                bytes: Some(text(body.get("data")).unwrap_or_default()),
                decoded: body.get("object").filter(|o| o.is_object()).cloned(),
                rssi: best.and_then(|b| number(b.get("rssi"))),
                snr: best.and_then(|b| number(b.get("snr"))),
                gateway: best.and_then(|b| text(b.get("gatewayId"))),
            })
        }
        "status" => {
            // batteryLevel is a percentage; batteryLevelUnavailable / externalPowerSource mean there is none.
            let unavailable = body.get("batteryLevelUnavailable") == Some(&Value::Bool(true))
                || body.get("externalPowerSource") == Some(&Value::Bool(true));
            let battery = if unavailable {
                None
            } else {
                Some(number(body.get("batteryLevel")).unwrap_or(0.0) / 100.0)
            };
            Event::Device(base(EventKind::Status {
                battery,
                margin: Some(number(body.get("margin")).unwrap_or(0.0)),
            }))
        }
        "join" => Event::Device(base(EventKind::Join)),
        // queueItemId is the id misto gave the command (DownlinkCommand `id`).
        "ack" => Event::Device(base(EventKind::DownlinkAck {
            acknowledged: body.get("acknowledged") == Some(&Value::Bool(true)),
            command: text(body.get("queueItemId")),
            reason: None,
        })),
        "txack" => Event::Device(base(EventKind::DownlinkSent {
            command: text(body.get("queueItemId")),
        })),
        "log" => Event::Device(base(EventKind::Log {
            level: text(body.get("level")).unwrap_or_else(|| "INFO".into()),
            description: text(body.get("description")).unwrap_or_default(),
        })),
        "location" => {
            let lat = number(body.pointer("/location/latitude")).unwrap_or(0.0);
            let lon = number(body.pointer("/location/longitude")).unwrap_or(0.0);
            Event::Device(base(EventKind::Location { lon, lat }))
        }
        other => return Err(format!("unknown ChirpStack event '{other}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_topics() {
        assert_eq!(
            topic("application/17c82e96-be03/device/0101010101010101/event/up"),
            Some(("0101010101010101".into(), "up"))
        );
        assert_eq!(
            topic("application/a/device/AB/event/status"),
            Some(("ab".into(), "status"))
        );
        assert_eq!(topic("application/a/device/x/command/down"), None);
        assert_eq!(topic("application/a/device//event/up"), None);
    }

    #[test]
    fn absent_fields_are_zero_or_empty() {
        // proto3 JSON leaves out fCnt 0, empty data, and everything else that is zero.
        let Event::Up(up) =
            parse("up", &json!({"deviceInfo": {"devEui": "0A0B0C0D0E0F0102"}})).unwrap()
        else {
            panic!("an uplink")
        };
        assert_eq!(up.dev_eui.as_deref(), Some("0a0b0c0d0e0f0102"));
        assert_eq!(
            (up.f_cnt, up.f_port, up.payload()),
            (Some(0), None, Some(vec![]))
        );
        assert_eq!((up.rssi, up.gateway, up.decoded), (None, None, None));
        let Event::Up(up) = parse("up", &json!({})).unwrap() else {
            panic!()
        };
        assert_eq!(up.dev_eui, None);
    }

    #[test]
    fn best_gateway_and_64_bit_strings() {
        let body = json!({
            "fCnt": "4294967295",
            "rxInfo": [{"gatewayId": "a", "rssi": -110, "snr": -3}, {"gatewayId": "b", "rssi": -70, "snr": 9}, {}]
        });
        let Event::Up(up) = parse("up", &body).unwrap() else {
            panic!()
        };
        assert_eq!(up.f_cnt, Some(4294967295));
        assert_eq!(
            (up.gateway.as_deref(), up.rssi, up.snr),
            (Some("b"), Some(-70.0), Some(9.0))
        );
    }

    #[test]
    fn status_battery_is_a_fraction_or_unknown() {
        let Event::Device(ev) = parse("status", &json!({"batteryLevel": 50})).unwrap() else {
            panic!()
        };
        assert_eq!(
            ev.kind,
            EventKind::Status {
                battery: Some(0.5),
                margin: Some(0.0)
            }
        );
        let Event::Device(ev) = parse("status", &json!({"batteryLevelUnavailable": true})).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            ev.kind,
            EventKind::Status {
                battery: None,
                margin: Some(0.0)
            }
        );
        assert!(parse("up", &json!([1])).is_err());
        assert!(parse("integration", &json!({})).is_err());
    }
}
