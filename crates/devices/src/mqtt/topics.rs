//! Which topics carry what, and who may publish or subscribe where.
//!
//! - `devices/{device}/up`: a device's own uplink (JSON, as for HTTP ingest); `devices/{device}/down`: its
//!   downlinks.
//! - `application/{application}/device/{devEui}/event/{event}`: ChirpStack v4 events;
//!   `application/{application}/device/{devEui}/command/down`: ChirpStack downlink commands.
//! - `v3/{application}@{tenant}/devices/{device}/{up|join|down/ack|…}`: The Things Stack v3 messages;
//!   `…/down/push` and `…/down/replace`: its downlink queue.

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A device's own uplink.
    Device { device: String },
    /// A ChirpStack event (`up`, `join`, `status`, `ack`, `txack`, `log`, `location`).
    ChirpStack { event: String },
    /// A The Things Stack message (its kind is in the body).
    Tts,
}

impl Route {
    pub fn source(&self) -> &'static str {
        match self {
            Route::Device { .. } => "mqtt",
            Route::ChirpStack { .. } => "chirpstack",
            Route::Tts => "tts",
        }
    }

    pub fn device(&self) -> Option<&str> {
        match self {
            Route::Device { device } => Some(device),
            _ => None,
        }
    }
}

/// The route of a topic misto takes messages from; None for any other topic.
pub fn route(topic: &str) -> Option<Route> {
    if let Some((_, event)) = crate::chirpstack::topic(topic) {
        return Some(Route::ChirpStack {
            event: event.to_string(),
        });
    }
    if let Some((_, _, message)) = crate::tts::topic(topic) {
        // TTS downlink queue operations are what misto sends, not what it takes.
        return (!matches!(message, "down/push" | "down/replace")).then_some(Route::Tts);
    }
    match topic.split('/').collect::<Vec<_>>().as_slice() {
        ["devices", device, "up"] if !device.is_empty() => Some(Route::Device {
            device: device.to_string(),
        }),
        _ => None,
    }
}

/// Who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A registered device, authenticated with its token.
    Device { tenant: String, device: String },
    /// A network server (ChirpStack, The Things Stack), authenticated with the integration token.
    Integration { tenant: String },
}

impl Principal {
    pub fn tenant(&self) -> &str {
        match self {
            Principal::Device { tenant, .. } | Principal::Integration { tenant } => tenant,
        }
    }

    /// May it publish on this route? A device only on its own uplink topic; a network server only on its
    /// integration topics.
    pub fn may_publish(&self, route: &Route) -> bool {
        match (self, route) {
            (Principal::Device { device, .. }, Route::Device { device: d }) => device == d,
            (Principal::Integration { .. }, Route::ChirpStack { .. } | Route::Tts) => true,
            _ => false,
        }
    }

    /// May it subscribe to this filter? A device to its own downlink topic; a network server to the downlink
    /// topics of its integrations (wildcards allowed below the fixed levels).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        if !rumqttc::valid_filter(filter) {
            return false;
        }
        let parts: Vec<&str> = filter.split('/').collect();
        match self {
            Principal::Device { device, .. } => {
                parts.as_slice() == ["devices", device.as_str(), "down"]
            }
            Principal::Integration { .. } => matches!(
                parts.as_slice(),
                ["application", _, "device", _, "command", "down"]
                    | ["v3", _, "devices", _, "down", "push" | "replace" | "+"]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("devices/em300-1/up"),
            Some(Route::Device {
                device: "em300-1".into()
            })
        );
        assert_eq!(
            route("application/6f0e/device/0101010101010101/event/up"),
            Some(Route::ChirpStack { event: "up".into() })
        );
        assert_eq!(route("v3/city@kyiv/devices/aq-7/up"), Some(Route::Tts));
        assert_eq!(
            route("v3/city@kyiv/devices/aq-7/down/ack"),
            Some(Route::Tts)
        );
        assert_eq!(route("v3/city@kyiv/devices/aq-7/down/push"), None);
        assert_eq!(route("devices//up"), None);
        assert_eq!(route("something/else"), None);
    }

    #[test]
    fn a_device_publishes_only_to_its_own_topic() {
        let p = Principal::Device {
            tenant: String::new(),
            device: "a".into(),
        };
        assert!(p.may_publish(&Route::Device { device: "a".into() }));
        assert!(!p.may_publish(&Route::Device { device: "b".into() }));
        assert!(!p.may_publish(&Route::ChirpStack { event: "up".into() }));
        assert!(p.may_subscribe("devices/a/down"));
        assert!(!p.may_subscribe("devices/b/down"));
        assert!(!p.may_subscribe("devices/+/down"));
        assert!(!p.may_subscribe("#"));
    }

    #[test]
    fn a_network_server_publishes_integration_topics() {
        let p = Principal::Integration {
            tenant: String::new(),
        };
        assert!(p.may_publish(&Route::Tts));
        assert!(!p.may_publish(&Route::Device { device: "a".into() }));
        assert!(p.may_subscribe("application/+/device/+/command/down"));
        assert!(p.may_subscribe("v3/+/devices/+/down/push"));
        assert!(!p.may_subscribe("devices/a/down"));
        assert!(!p.may_subscribe("application/#"));
    }
}
