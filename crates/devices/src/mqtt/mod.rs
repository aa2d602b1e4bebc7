//! MQTT transports of the device layer: the embedded endpoint devices and network servers connect to
//! ([`gateway`]), and a client of an external broker such as Mosquitto ([`external`]). Both route a message by
//! its topic ([`topics`]) into the same pipeline as the HTTP integrations.

pub mod external;
pub mod gateway;
pub mod topics;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::chirpstack::{self, Event};
use crate::uplink::device_uplink;
use crate::{tts, DeviceError, Devices};
use topics::Route;

/// Take one message that arrived on `topic` (already routed): store it, or keep it as a dead letter with the
/// reason. An error means storage failed and the message was not taken (the sender should send it again).
pub(crate) async fn take(
    devices: &Devices,
    tenant: &str,
    route: &Route,
    topic: &str,
    payload: &[u8],
) -> Result<(), DeviceError> {
    let source = route.source();
    let parsed = serde_json::from_slice::<Value>(payload)
        .map_err(|e| format!("the payload is not JSON: {e}"))
        .and_then(|body| match route {
            Route::Device { device } => device_uplink(source, device, &body).map(Event::Up),
            Route::ChirpStack { event } => chirpstack::parse(event, &body),
            Route::Tts => tts::parse(&body),
        });
    match parsed {
        Ok(Event::Up(mut up)) => {
            // The topic names the application as downlinks must (TTS: `{app}@{tenant}`).
            if let Some(app) = chirpstack::topic_application(topic)
                .or_else(|| tts::topic(topic).map(|(app, _, _)| app))
            {
                up.application = Some(app.to_string());
            }
            devices.uplink(tenant, up).await.map(|_| ())
        }
        Ok(Event::Device(ev)) => devices.event(tenant, ev).await.map(|_| ()),
        Err(reason) => {
            metrics::counter!("misto_devices_dead_letters_total", "reason" => "unreadable")
                .increment(1);
            tracing::info!(tenant, topic, reason, "MQTT message kept as a dead letter");
            // Not an uplink: kept with its topic and raw bytes, for people to read; replay cannot take it.
            let body = json!({
                "source": source,
                "topic": topic,
                "payload": base64::engine::general_purpose::STANDARD.encode(payload),
            });
            devices
                .broker
                .store
                .add_dead_letter(
                    tenant,
                    jiff::Timestamp::now().as_millisecond(),
                    route.device(),
                    &reason,
                    &body,
                )
                .await?;
            Ok(())
        }
    }
}
