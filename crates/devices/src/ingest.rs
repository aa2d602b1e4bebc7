//! The uplink pipeline: find the device, note its health, decode the payload (the profile's codec, else the
//! network server's object), map the decoded fields to the profile's target entity and write it — and the
//! Device entity's last-report attributes — through the broker in one batch. An uplink that fails any step
//! but storage becomes a dead letter with the reason.

use std::sync::Arc;

use misto_ngsild::validate::{format_datetime, parse_datetime};
use misto_store::devices::{DeviceRecord, HealthUpdate};
use serde_json::{json, Map, Value};

use crate::codec::{CodecError, Entry};
use crate::model::{device_entity_id, Profile};
use crate::uplink::{DeviceEvent, EventKind, Uplink};
use crate::{DeviceError, Devices};

/// How long a cached profile is used before it is read again (for changes made on other nodes).
pub const PROFILE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// What became of an uplink.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written to this entity.
    Stored { entity: String },
    /// Kept as a dead letter.
    DeadLettered { id: i64, reason: String },
}

/// Why an uplink could not be taken (the dead letter's reason), with a short kind for metrics.
struct Failure {
    kind: &'static str,
    reason: String,
    device: Option<String>,
}

fn fail(kind: &'static str, reason: impl Into<String>, device: Option<&str>) -> Failure {
    Failure {
        kind,
        reason: reason.into(),
        device: device.map(str::to_string),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Devices {
    /// Take one uplink of `tenant`: store what it says, or keep it as a dead letter. Only a storage failure is
    /// an error (the sender should retry).
    pub async fn uplink(&self, tenant: &str, up: Uplink) -> Result<Outcome, DeviceError> {
        let source = up.source.clone();
        match self.process(tenant, &up, true).await? {
            Ok(entity) => {
                metrics::counter!("misto_devices_uplinks_total", "source" => source, "outcome" => "stored")
                    .increment(1);
                Ok(Outcome::Stored { entity })
            }
            Err(f) => {
                metrics::counter!("misto_devices_uplinks_total", "source" => source, "outcome" => "dead_letter")
                    .increment(1);
                metrics::counter!("misto_devices_dead_letters_total", "reason" => f.kind)
                    .increment(1);
                tracing::info!(tenant, device = ?f.device, reason = %f.reason, "uplink kept as a dead letter");
                let body = serde_json::to_value(&up).unwrap_or(Value::Null);
                let id = self
                    .broker
                    .store
                    .add_dead_letter(tenant, now_ms(), f.device.as_deref(), &f.reason, &body)
                    .await?;
                Ok(Outcome::DeadLettered {
                    id,
                    reason: f.reason,
                })
            }
        }
    }

    /// Run the dead letters of `tenant` (all, or the one `only`) through the pipeline again; those that go
    /// through leave the list. Returns (id, outcome) per dead letter tried: `Ok(entity)` or `Err(reason)`.
    pub async fn replay(
        &self,
        tenant: &str,
        only: Option<i64>,
    ) -> Result<Vec<(i64, Result<String, String>)>, DeviceError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .broker
                .store
                .list_dead_letters(tenant, after, 500)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for dl in page {
                if only.is_some_and(|o| o != dl.id) {
                    continue;
                }
                let up: Uplink = match serde_json::from_value(dl.uplink.clone()) {
                    Ok(u) => u,
                    Err(e) => {
                        out.push((dl.id, Err(format!("stored uplink is unreadable: {e}"))));
                        continue;
                    }
                };
                // Its health news was taken when it arrived; taking it again would count it twice and
                // read its old frame counter as a re-join.
                match self.process(tenant, &up, false).await? {
                    Ok(entity) => {
                        self.broker.store.delete_dead_letter(tenant, dl.id).await?;
                        metrics::counter!("misto_devices_replayed_total").increment(1);
                        out.push((dl.id, Ok(entity)));
                    }
                    Err(f) => out.push((dl.id, Err(f.reason))),
                }
            }
        }
        Ok(out)
    }

    async fn find_device(
        &self,
        tenant: &str,
        dev_eui: Option<&str>,
        device_id: Option<&str>,
    ) -> Result<Option<DeviceRecord>, DeviceError> {
        if let Some(eui) = dev_eui {
            if let Some(d) = self.broker.store.device_by_eui(tenant, eui).await? {
                return Ok(Some(d));
            }
        }
        if let Some(id) = device_id {
            return Ok(self.broker.store.get_device(tenant, id).await?);
        }
        Ok(None)
    }

    async fn process(
        &self,
        tenant: &str,
        up: &Uplink,
        record_health: bool,
    ) -> Result<Result<String, Failure>, DeviceError> {
        let named = up.dev_eui.as_deref().or(up.device_id.as_deref());
        let Some(device) = self
            .find_device(tenant, up.dev_eui.as_deref(), up.device_id.as_deref())
            .await?
        else {
            return Ok(Err(fail(
                "unknown_device",
                format!("unknown device {}", named.unwrap_or("(no DevEUI or id)")),
                named,
            )));
        };
        let dev = Some(device.id.as_str());
        if record_health {
            if let Some(r) =
                crate::commands::Route::of_uplink(up, &device.id, device.dev_eui.as_deref())
            {
                self.learn_route(tenant, &device.id, r).await?;
            }
        }
        let time = up
            .time
            .as_deref()
            .and_then(parse_datetime)
            .unwrap_or_else(jiff::Timestamp::now);
        let health = if record_health {
            self.broker
                .store
                .update_health(
                    tenant,
                    &device.id,
                    &HealthUpdate {
                        seen_ms: Some(time.as_millisecond()),
                        rssi: up.rssi,
                        snr: up.snr,
                        gateway: up.gateway.clone(),
                        fcnt: up.f_cnt,
                        battery: None,
                    },
                )
                .await?
        } else {
            None
        };
        let Some(profile_id) = device.profile_id.as_deref() else {
            return Ok(Err(fail("no_profile", "the device has no profile", dev)));
        };
        let profile = match self.profile(tenant, profile_id).await? {
            Ok(p) => p,
            Err(reason) => return Ok(Err(fail("no_profile", reason, dev))),
        };
        let at = format_datetime(time);
        let data = match self.decode(&profile, up, &at).await {
            Ok(d) => d,
            Err(f) => return Ok(Err(fail(f.0, f.1, dev))),
        };
        let target = match target_entity(&profile, &device, &data, &at) {
            Ok(t) => t,
            Err(reason) => return Ok(Err(fail("mapping", reason, dev))),
        };
        let target_id = target["id"].as_str().unwrap_or_default().to_string();
        let link_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (
                tenant,
                &target_id,
                target.get("location").map(Value::to_string),
            )
                .hash(&mut h);
            h.finish()
        };
        let mut target = target;
        let linked = self
            .linked
            .lock()
            .map(|l| l.contains(&link_key))
            .unwrap_or(false);
        if linked {
            if let Some(o) = target.as_object_mut() {
                o.remove("refDevice");
                o.remove("location");
            }
        }
        let mut device_entity = json!({
            "id": device_entity_id(&device.id),
            "type": "Device",
            "dateLastValueReported": {"type": "Property", "value": {"@type": "DateTime", "@value": at}},
        });
        if let (Some(rssi), Some(o)) = (
            health.as_ref().and_then(|h| h.rssi),
            device_entity.as_object_mut(),
        ) {
            o.insert(
                "rssi".into(),
                json!({"type": "Property", "value": rssi, "observedAt": at}),
            );
        }
        // A replayed reading is old news for the Device entity (its last report must not go back in time).
        let batch = if record_health {
            vec![target, device_entity]
        } else {
            vec![target]
        };
        let ctx = self
            .broker
            .contexts
            .resolve(Some(&profile.write_context()))
            .await;
        let ctx = match ctx {
            Ok(c) => c,
            Err(e) => {
                return Ok(Err(fail(
                    "mapping",
                    format!("profile @context: {}", e.detail),
                    dev,
                )))
            }
        };
        let outcome = self
            .broker
            .batch_upsert(tenant, &ctx, &Value::Array(batch), false)
            .await;
        match outcome {
            Ok(o) => match o.errors.into_iter().next() {
                // A storage failure is the sender's to retry, not a dead letter.
                Some((_, e)) if e.kind == misto_ngsild::ErrorKind::ServiceUnavailable => {
                    Err(DeviceError::Broker(e))
                }
                Some((id, e)) => Ok(Err(fail("mapping", format!("{id}: {}", e.detail), dev))),
                None => {
                    if !linked {
                        if let Ok(mut l) = self.linked.lock() {
                            if l.len() >= 100_000 {
                                l.clear();
                            }
                            l.insert(link_key);
                        }
                    }
                    Ok(Ok(target_id))
                }
            },
            Err(e) if e.kind == misto_ngsild::ErrorKind::ServiceUnavailable => {
                Err(DeviceError::Broker(e))
            }
            Err(e) => Ok(Err(fail("mapping", e.detail, dev))),
        }
    }

    /// A profile, from the cache while it is fresh. Saving or deleting a profile on this node clears its
    /// entry; another node's change is seen within [`PROFILE_TTL`].
    pub(crate) async fn profile(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Result<Arc<Profile>, String>, DeviceError> {
        let key = (tenant.to_string(), id.to_string());
        if let Some((at, p)) = self.profiles.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if at.elapsed() < PROFILE_TTL {
                return Ok(Ok(p));
            }
        }
        let Some(doc) = self.broker.store.get_profile(tenant, id).await? else {
            return Ok(Err(format!("profile {id} does not exist")));
        };
        let p: Profile = match serde_json::from_value(doc) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("profile {id} is unreadable: {e}"))),
        };
        let p = Arc::new(p);
        if let Ok(mut c) = self.profiles.lock() {
            if c.len() >= 10_000 {
                c.clear();
            }
            c.insert(key, (std::time::Instant::now(), p.clone()));
        }
        Ok(Ok(p))
    }

    pub(crate) fn forget_profile(&self, tenant: &str, id: &str) {
        if let Ok(mut c) = self.profiles.lock() {
            c.remove(&(tenant.to_string(), id.to_string()));
        }
    }

    /// The decoded object: the profile's codec on the payload, else what the network server decoded.
    async fn decode(
        &self,
        p: &Profile,
        up: &Uplink,
        at: &str,
    ) -> Result<Map<String, Value>, (&'static str, String)> {
        let Some(codec) = &p.codec else {
            return match &up.decoded {
                Some(Value::Object(o)) => Ok(o.clone()),
                _ => Err((
                    "no_data",
                    "the profile has no codec and the uplink no decoded object".into(),
                )),
            };
        };
        let Some(bytes) = up.payload() else {
            return match &up.decoded {
                Some(Value::Object(o)) => Ok(o.clone()),
                _ => Err((
                    "no_data",
                    "the uplink has no payload bytes (or they are not base64)".into(),
                )),
            };
        };
        let input = json!({"bytes": bytes, "fPort": up.f_port.unwrap_or(0), "recvTime": at});
        let out = self
            .codecs
            .run(Arc::from(codec.as_str()), Entry::Decode, input)
            .await
            .map_err(|e| (codec_kind(&e), e.to_string()))?;
        decoded_data(&out).map_err(|r| ("codec", r))
    }

    /// Take a non-uplink event: health (battery), location, and log lines. An event of an unknown device is
    /// dropped (and counted), as the network server has nothing to retry.
    pub async fn event(&self, tenant: &str, ev: DeviceEvent) -> Result<bool, DeviceError> {
        let Some(device) = self
            .find_device(tenant, ev.dev_eui.as_deref(), ev.device_id.as_deref())
            .await?
        else {
            metrics::counter!("misto_devices_events_total", "source" => ev.source, "outcome" => "unknown_device")
                .increment(1);
            return Ok(false);
        };
        metrics::counter!("misto_devices_events_total", "source" => ev.source.clone(), "outcome" => "taken")
            .increment(1);
        let at = ev
            .time
            .as_deref()
            .and_then(parse_datetime)
            .map(format_datetime)
            .unwrap_or_else(misto_ngsild::validate::now);
        let mut attrs = Map::new();
        match &ev.kind {
            EventKind::Status { battery, .. } => {
                self.broker
                    .store
                    .update_health(
                        tenant,
                        &device.id,
                        &HealthUpdate {
                            battery: *battery,
                            ..Default::default()
                        },
                    )
                    .await?;
                if let Some(b) = battery {
                    attrs.insert(
                        "batteryLevel".into(),
                        json!({"type": "Property", "value": b, "observedAt": at}),
                    );
                }
            }
            EventKind::Location { lon, lat } => {
                attrs.insert(
                    "location".into(),
                    json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}, "observedAt": at}),
                );
            }
            EventKind::Join => {
                attrs.insert(
                    "deviceState".into(),
                    json!({"type": "Property", "value": "joined", "observedAt": at}),
                );
            }
            EventKind::Log { level, description } => {
                tracing::info!(
                    tenant,
                    device = device.id,
                    level,
                    description,
                    "network-server log event"
                );
            }
            EventKind::DownlinkAck {
                acknowledged,
                command,
                reason,
            } => {
                tracing::debug!(
                    tenant,
                    device = device.id,
                    acknowledged,
                    command,
                    "downlink acknowledgement"
                );
                if let Some(c) = command {
                    self.command_event(tenant, c, Some(*acknowledged), reason.as_deref())
                        .await?;
                }
            }
            EventKind::DownlinkSent { command } => {
                if let Some(c) = command {
                    self.command_event(tenant, c, None, None).await?;
                }
            }
            EventKind::Other => {}
        }
        if !attrs.is_empty() {
            attrs.insert("id".into(), json!(device_entity_id(&device.id)));
            attrs.insert("type".into(), json!("Device"));
            let ctx = self
                .broker
                .contexts
                .resolve(Some(&json!(crate::model::DEVICE_CONTEXT)))
                .await?;
            let o = self
                .broker
                .batch_upsert(
                    tenant,
                    &ctx,
                    &Value::Array(vec![Value::Object(attrs)]),
                    false,
                )
                .await?;
            if let Some((_, e)) = o.errors.into_iter().next() {
                return Err(DeviceError::Broker(e));
            }
        }
        Ok(true)
    }
}

fn codec_kind(e: &CodecError) -> &'static str {
    match e {
        CodecError::Timeout(_) => "codec_timeout",
        CodecError::Memory => "codec_memory",
        CodecError::Garbage(_) => "codec_garbage",
        _ => "codec",
    }
}

/// `{data, warnings, errors}` → data, refusing codec-reported errors and anything but an object.
pub(crate) fn decoded_data(out: &Value) -> Result<Map<String, Value>, String> {
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
        return Err(format!("codec reported errors: {}", list.join("; ")));
    }
    match out.get("data") {
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(format!(
            "codec returned data that is no object: {}",
            short(other)
        )),
        None => Err(format!("codec returned no data member: {}", short(out))),
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

fn field<'a>(data: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = data.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

/// The profile's target entity for one decoded reading, in normalized NGSI-LD.
fn target_entity(
    p: &Profile,
    device: &DeviceRecord,
    data: &Map<String, Value>,
    at: &str,
) -> Result<Value, String> {
    let mut e = Map::new();
    e.insert(
        "id".into(),
        json!(format!("urn:ngsi-ld:{}:{}", p.target_type, device.id)),
    );
    e.insert("type".into(), json!(p.target_type));
    let prop = |v: &Value, unit: Option<&str>| {
        let mut a = json!({"type": "Property", "value": v, "observedAt": at});
        if let (Some(u), Some(o)) = (unit, a.as_object_mut()) {
            o.insert("unitCode".into(), json!(u));
        }
        a
    };
    let mut mapped = 0;
    if p.mapping.is_empty() {
        for (k, v) in data {
            if (v.is_number() || v.is_string() || v.is_boolean()) && !RESERVED.contains(&k.as_str())
            {
                e.insert(k.clone(), prop(v, None));
                mapped += 1;
            }
        }
    } else {
        for m in &p.mapping {
            let Some(v) = field(data, &m.field).filter(|v| !v.is_null()) else {
                continue;
            };
            let name = m.attribute.as_deref().unwrap_or(&m.field);
            if RESERVED.contains(&name) {
                return Err(format!("mapping to the reserved member '{name}'"));
            }
            e.insert(name.to_string(), prop(v, m.unit_code.as_deref()));
            mapped += 1;
        }
    }
    if mapped == 0 {
        return Err(format!(
            "no mapped field in the decoded data {}",
            short(&Value::Object(data.clone()))
        ));
    }
    e.insert(
        "dateObserved".into(),
        json!({"type": "Property", "value": {"@type": "DateTime", "@value": at}}),
    );
    e.insert(
        "refDevice".into(),
        json!({"type": "Relationship", "object": device_entity_id(&device.id)}),
    );
    if let Some(loc) = device.doc.get("location").filter(|l| l.is_object()) {
        e.insert(
            "location".into(),
            json!({"type": "GeoProperty", "value": loc}),
        );
    }
    Ok(Value::Object(e))
}

/// Members of an entity a decoded field may not become.
const RESERVED: &[&str] = &[
    "id",
    "type",
    "@context",
    "location",
    "refDevice",
    "dateObserved",
    "createdAt",
    "modifiedAt",
    "scope",
];
