//! The Things Stack v3 application-layer messages (webhooks and MQTT share the JSON): `uplink_message`,
//! `join_accept`, `downlink_ack`, `downlink_nack`, `downlink_sent`, `downlink_failed`, `downlink_queued`,
//! `location_solved`, `service_data`. Empty, zero and false fields are left out by TTS; all are optional here.

use serde_json::Value;

use crate::chirpstack::Event;
use crate::uplink::{number, text, DeviceEvent, EventKind, Uplink};

fn ids(body: &Value) -> (Option<String>, Option<String>) {
    (
        text(body.pointer("/end_device_ids/dev_eui")).map(|s| s.to_ascii_lowercase()),
        text(body.pointer("/end_device_ids/device_id")),
    )
}

/// The message kind of a body, from the member it carries (webhook paths name it too, but may be anything).
pub fn kind_of(body: &Value) -> Option<&'static str> {
    const KINDS: &[&str] = &[
        "uplink_message",
        "join_accept",
        "downlink_ack",
        "downlink_nack",
        "downlink_sent",
        "downlink_failed",
        "downlink_queued",
        "location_solved",
        "service_data",
    ];
    KINDS.iter().copied().find(|k| body.get(*k).is_some())
}

/// The application (`{app}` is `{application id}@{tenant}` on TTS Cloud/TTN, else the application id) and
/// device id of a TTS MQTT topic `v3/{app}/devices/{device id}/{message…}`, with the message path
/// (`up`, `join`, `down/ack`, …), for an MQTT transport to call [`parse`].
pub fn topic(t: &str) -> Option<(&str, &str, &str)> {
    let rest = t.strip_prefix("v3/")?;
    let (app, rest) = rest.split_once("/devices/")?;
    let (device, message) = rest.split_once('/')?;
    (!app.is_empty() && !device.is_empty() && !message.is_empty()).then_some((app, device, message))
}

/// misto's command id among the correlation ids of a downlink message (of the message, or of the downlink).
fn command_of(body: &Value, kind: &str) -> Option<String> {
    let lists = [
        body.get("correlation_ids"),
        body.get(kind).and_then(|m| m.get("correlation_ids")),
        body.get(kind)
            .and_then(|m| m.get("downlink"))
            .and_then(|d| d.get("correlation_ids")),
    ];
    lists
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|c| c.strip_prefix(crate::commands::CORRELATION_PREFIX))
        .map(str::to_string)
}

pub fn parse(body: &Value) -> Result<Event, String> {
    let kind = kind_of(body)
        .ok_or("no TTS message member (uplink_message, join_accept, …) in the body")?;
    let (dev_eui, device_id) = ids(body);
    let time = text(body.get("received_at"));
    let base = |kind| DeviceEvent {
        source: "tts".into(),
        dev_eui: dev_eui.clone(),
        device_id: device_id.clone(),
        time: time.clone(),
        kind,
    };
    Ok(match kind {
        "uplink_message" => {
            let up = &body["uplink_message"];
            let best = up
                .get("rx_metadata")
                .and_then(Value::as_array)
                .and_then(|rx| {
                    rx.iter().max_by(|a, b| {
                        let (x, y) = (number(a.get("rssi")), number(b.get("rssi")));
                        x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
                    })
                });
            Event::Up(Uplink {
                source: "tts".into(),
                dev_eui: dev_eui.clone(),
                device_id: device_id.clone(),
                application: text(body.pointer("/end_device_ids/application_ids/application_id")),
                time: time.clone().or_else(|| text(up.get("received_at"))),
                f_port: number(up.get("f_port")).map(|f| f as u32),
                f_cnt: Some(number(up.get("f_cnt")).unwrap_or(0.0) as i64),
                bytes: Some(text(up.get("frm_payload")).unwrap_or_default()),
                decoded: up.get("decoded_payload").filter(|o| o.is_object()).cloned(),
                rssi: best.and_then(|b| number(b.get("rssi")).or(number(b.get("channel_rssi")))),
                snr: best.and_then(|b| number(b.get("snr"))),
                gateway: best.and_then(|b| text(b.pointer("/gateway_ids/gateway_id"))),
            })
        }
        "join_accept" => Event::Device(base(EventKind::Join)),
        "downlink_ack" => Event::Device(base(EventKind::DownlinkAck {
            acknowledged: true,
            command: command_of(body, kind),
            reason: None,
        })),
        "downlink_nack" | "downlink_failed" => Event::Device(base(EventKind::DownlinkAck {
            acknowledged: false,
            command: command_of(body, kind),
            reason: Some(
                text(body.pointer("/downlink_failed/error/message_format"))
                    .unwrap_or_else(|| format!("The Things Stack reported {kind}")),
            ),
        })),
        "downlink_sent" => Event::Device(base(EventKind::DownlinkSent {
            command: command_of(body, kind),
        })),
        "location_solved" => {
            let loc = &body["location_solved"]["location"];
            Event::Device(base(EventKind::Location {
                lon: number(loc.get("longitude")).unwrap_or(0.0),
                lat: number(loc.get("latitude")).unwrap_or(0.0),
            }))
        }
        _ => Event::Device(base(EventKind::Other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topics() {
        assert_eq!(
            topic("v3/app1@ttn/devices/dev1/up"),
            Some(("app1@ttn", "dev1", "up"))
        );
        assert_eq!(
            topic("v3/app1/devices/dev1/down/ack"),
            Some(("app1", "dev1", "down/ack"))
        );
        assert_eq!(topic("v3/app1/devices/dev1"), None);
        assert_eq!(topic("application/a/device/b/event/up"), None);
    }

    #[test]
    fn minimal_uplink() {
        let Event::Up(up) =
            parse(&json!({"end_device_ids": {"device_id": "d"}, "uplink_message": {}})).unwrap()
        else {
            panic!("an uplink")
        };
        assert_eq!(
            (up.device_id.as_deref(), up.dev_eui.as_deref(), up.f_cnt),
            (Some("d"), None, Some(0))
        );
        assert_eq!(up.payload(), Some(vec![]));
    }

    #[test]
    fn kinds_come_from_the_body() {
        let Event::Device(ev) = parse(&json!({"downlink_failed": {}})).unwrap() else {
            panic!()
        };
        assert_eq!(
            ev.kind,
            EventKind::DownlinkAck {
                acknowledged: false,
                command: None,
                reason: Some("The Things Stack reported downlink_failed".into()),
            }
        );
        let Event::Device(ev) =
            parse(&json!({"location_solved": {"location": {"latitude": 50.4, "longitude": 30.5}}}))
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            ev.kind,
            EventKind::Location {
                lon: 30.5,
                lat: 50.4
            }
        );
        assert!(parse(&json!({"something": {}})).is_err());
    }
}
