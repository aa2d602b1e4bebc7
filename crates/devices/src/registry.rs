//! The device registry: profiles (checked against their codec test vectors when saved), devices (a private
//! record plus an NGSI-LD `Device` entity written through the broker), device tokens, and CSV import.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use misto_store::devices::DeviceRecord;
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::codec::{same_json, Entry};
use crate::ingest::decoded_data;
use crate::model::{
    canonical_eui, check_id, device_entity_id, DeviceInput, Profile, DEVICE_CONTEXT,
};
use crate::{DeviceError, Devices};

/// A device as the API shows it.
pub fn device_view(d: &DeviceRecord) -> Value {
    let mut v = d.doc.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(d.id));
        if let Some(e) = &d.dev_eui {
            o.insert("devEui".into(), json!(e));
        }
        if let Some(p) = &d.profile_id {
            o.insert("profile".into(), json!(p));
        }
        o.insert("entityId".into(), json!(device_entity_id(&d.id)));
        o.insert("hasToken".into(), json!(d.token_hash.is_some()));
        let h = &d.health;
        let mut health = Map::new();
        if let Some(t) = h
            .last_seen_ms
            .and_then(|t| jiff::Timestamp::from_millisecond(t).ok())
        {
            health.insert(
                "lastSeen".into(),
                json!(misto_ngsild::validate::format_datetime(t)),
            );
        }
        for (k, val) in [
            ("batteryLevel", h.battery),
            ("rssi", h.rssi),
            ("snr", h.snr),
        ] {
            if let Some(x) = val {
                health.insert(k.into(), json!(x));
            }
        }
        if let Some(g) = &h.gateway {
            health.insert("gateway".into(), json!(g));
        }
        if let Some(f) = h.last_fcnt {
            health.insert("lastFrameCounter".into(), json!(f));
        }
        health.insert("frameCounterGaps".into(), json!(h.fcnt_gaps));
        health.insert("uplinks".into(), json!(h.uplinks));
        o.insert("health".into(), Value::Object(health));
    }
    v
}

fn hash_token(token: &str) -> Result<String, DeviceError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(token.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DeviceError::invalid(format!("cannot hash the token: {e}")))
}

/// A new device token: `<device id>.<64 hex digits>`; the id part lets ingest find the device to verify.
fn new_token(id: &str) -> String {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    format!("{id}.{}", hex::encode(secret))
}

impl Devices {
    /// Save a profile (`create`: it must not exist). Its codec must compile and pass every test vector.
    pub async fn put_profile(
        &self,
        tenant: &str,
        id: Option<&str>,
        body: Value,
        create: bool,
    ) -> Result<Profile, DeviceError> {
        let mut p: Profile = serde_json::from_value(body)
            .map_err(|e| DeviceError::invalid(format!("not a device profile: {e}")))?;
        if let Some(id) = id {
            if !p.id.is_empty() && p.id != id {
                return Err(DeviceError::invalid(
                    "the profile's id differs from the one in the path",
                ));
            }
            p.id = id.to_string();
        }
        p.check()?;
        self.check_vectors(&p).await?;
        let doc = serde_json::to_value(&p).map_err(|e| DeviceError::invalid(e.to_string()))?;
        if !self
            .broker
            .store
            .put_profile(tenant, &p.id, &doc, create)
            .await?
        {
            return Err(DeviceError::Conflict(format!("profile {} exists", p.id)));
        }
        self.forget_profile(tenant, &p.id);
        Ok(p)
    }

    async fn check_vectors(&self, p: &Profile) -> Result<(), DeviceError> {
        let Some(codec) = &p.codec else { return Ok(()) };
        let codec: Arc<str> = Arc::from(codec.as_str());
        if p.test_vectors.is_empty() {
            // Still prove it compiles and defines decodeUplink: run it on no bytes, ignoring what it says.
            return match self
                .codecs()
                .run(
                    codec,
                    Entry::Decode,
                    json!({"bytes": [], "fPort": 1, "recvTime": misto_ngsild::validate::now()}),
                )
                .await
            {
                Err(e @ crate::codec::CodecError::Compile(_)) => {
                    Err(DeviceError::invalid(e.to_string()))
                }
                Err(crate::codec::CodecError::Threw(m))
                    if m.contains("decodeUplink is not defined") =>
                {
                    Err(DeviceError::invalid(
                        "the codec defines no decodeUplink function",
                    ))
                }
                _ => Ok(()),
            };
        }
        for v in &p.test_vectors {
            let vector = serde_json::to_value(v).unwrap_or(Value::Null);
            let input = json!({
                "bytes": v.input.bytes,
                "fPort": v.input.f_port.unwrap_or(1),
                "recvTime": v.input.recv_time.clone().unwrap_or_else(misto_ngsild::validate::now),
            });
            let failed = |detail: String, got: Value| {
                DeviceError::VectorFailed(Box::new(crate::error::VectorFailure {
                    name: v.name.clone(),
                    detail,
                    vector: vector.clone(),
                    got,
                }))
            };
            let out = self
                .codecs()
                .run(codec.clone(), Entry::Decode, input)
                .await
                .map_err(|e| failed(e.to_string(), Value::Null))?;
            let data = decoded_data(&out).map_err(|r| failed(r, out.clone()))?;
            let data = Value::Object(data);
            if !same_json(&data, &v.expected.data) {
                return Err(failed(
                    "decoded data differs from the expected data".into(),
                    data,
                ));
            }
        }
        Ok(())
    }

    pub async fn get_profile(&self, tenant: &str, id: &str) -> Result<Value, DeviceError> {
        self.broker
            .store
            .get_profile(tenant, id)
            .await?
            .ok_or_else(|| DeviceError::NotFound(format!("profile {id} does not exist")))
    }

    pub async fn list_profiles(&self, tenant: &str) -> Result<Vec<Value>, DeviceError> {
        Ok(self
            .broker
            .store
            .list_profiles(tenant)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    pub async fn delete_profile(&self, tenant: &str, id: &str) -> Result<(), DeviceError> {
        if self.broker.store.delete_profile(tenant, id).await? {
            self.forget_profile(tenant, id);
            Ok(())
        } else {
            Err(DeviceError::NotFound(format!(
                "profile {id} does not exist"
            )))
        }
    }

    /// Register (`create`) or replace a device. With `issue_token`, a new device token is made and returned
    /// (the only time it is shown; misto keeps its argon2 hash). Replacing keeps the old token otherwise.
    pub async fn put_device(
        &self,
        tenant: &str,
        path_id: Option<&str>,
        input: DeviceInput,
        create: bool,
        issue_token: bool,
    ) -> Result<(Value, Option<String>), DeviceError> {
        let dev_eui = input.dev_eui.as_deref().map(canonical_eui).transpose()?;
        let id = match (path_id, &input.id, &dev_eui) {
            (Some(p), Some(b), _) if p != b => {
                return Err(DeviceError::invalid(
                    "the device's id differs from the one in the path",
                ))
            }
            (Some(p), _, _) => p.to_string(),
            (None, Some(b), _) => b.clone(),
            (None, None, Some(e)) => e.clone(),
            (None, None, None) => {
                return Err(DeviceError::invalid("a device needs an id or a devEui"))
            }
        };
        check_id("device id", &id)?;
        if let Some(p) = &input.profile {
            if self.broker.store.get_profile(tenant, p).await?.is_none() {
                return Err(DeviceError::invalid(format!("profile {p} does not exist")));
            }
        }
        if let Some(loc) = &input.location {
            if loc.get("type").and_then(Value::as_str).is_none() || loc.get("coordinates").is_none()
            {
                return Err(DeviceError::invalid("location must be a GeoJSON geometry"));
            }
        }
        let old = self.broker.store.get_device(tenant, &id).await?;
        // Refuse before the public entity is touched (the store checks again, atomically).
        if create && old.is_some() {
            return Err(DeviceError::Conflict(format!("device {id} exists")));
        }
        if let Some(e) = &dev_eui {
            if let Some(other) = self.broker.store.device_by_eui(tenant, e).await? {
                if other.id != id {
                    return Err(DeviceError::Conflict(format!(
                        "devEui {e} belongs to device {}",
                        other.id
                    )));
                }
            }
        }
        let token = issue_token.then(|| new_token(&id));
        let token_hash = match &token {
            // argon2 is deliberately slow: off the async threads.
            Some(t) => {
                let t = t.clone();
                Some(
                    tokio::task::spawn_blocking(move || hash_token(&t))
                        .await
                        .map_err(|e| {
                            DeviceError::invalid(format!("cannot hash the token: {e}"))
                        })??,
                )
            }
            None => old.as_ref().and_then(|o| o.token_hash.clone()),
        };
        let mut doc = Map::new();
        if let Some(n) = &input.name {
            doc.insert("name".into(), json!(n));
        }
        if !input.controlled_property.is_empty() {
            doc.insert(
                "controlledProperty".into(),
                json!(input.controlled_property),
            );
        }
        if let Some(l) = &input.location {
            doc.insert("location".into(), l.clone());
        }
        if let Some(s) = &input.device_state {
            doc.insert("deviceState".into(), json!(s));
        }
        let rec = DeviceRecord {
            tenant: tenant.to_string(),
            id: id.clone(),
            dev_eui,
            profile_id: input.profile.clone(),
            token_hash,
            doc: Value::Object(doc),
            health: Default::default(),
        };
        // The public entity first: if its input is bad, nothing is stored.
        self.write_device_entity(tenant, &rec).await?;
        if !self.broker.store.put_device(&rec, create).await? {
            return Err(DeviceError::Conflict(format!(
                "device {id} exists, or its devEui belongs to another device"
            )));
        }
        self.forget_tokens(tenant, &id);
        let stored = self
            .broker
            .store
            .get_device(tenant, &id)
            .await?
            .unwrap_or(rec);
        Ok((device_view(&stored), token))
    }

    async fn write_device_entity(&self, tenant: &str, d: &DeviceRecord) -> Result<(), DeviceError> {
        let mut e = Map::new();
        e.insert("id".into(), json!(device_entity_id(&d.id)));
        e.insert("type".into(), json!("Device"));
        let prop = |v: &Value| json!({"type": "Property", "value": v});
        if let Some(n) = d.doc.get("name") {
            e.insert("name".into(), prop(n));
        }
        if let Some(c) = d.doc.get("controlledProperty") {
            e.insert("controlledProperty".into(), prop(c));
        }
        if let Some(l) = d.doc.get("location") {
            e.insert(
                "location".into(),
                json!({"type": "GeoProperty", "value": l}),
            );
        }
        e.insert(
            "deviceState".into(),
            prop(d.doc.get("deviceState").unwrap_or(&json!("registered"))),
        );
        if let Some(p) = &d.profile_id {
            e.insert("deviceProfile".into(), prop(&json!(p)));
        }
        let ctx = self
            .broker
            .contexts
            .resolve(Some(&json!(DEVICE_CONTEXT)))
            .await?;
        let o = self
            .broker
            .batch_upsert(tenant, &ctx, &Value::Array(vec![Value::Object(e)]), false)
            .await?;
        match o.errors.into_iter().next() {
            Some((_, e)) => Err(DeviceError::Broker(e)),
            None => Ok(()),
        }
    }

    pub async fn get_device(&self, tenant: &str, id: &str) -> Result<Value, DeviceError> {
        self.broker
            .store
            .get_device(tenant, id)
            .await?
            .map(|d| device_view(&d))
            .ok_or_else(|| DeviceError::NotFound(format!("device {id} does not exist")))
    }

    pub async fn list_devices(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Value>, DeviceError> {
        Ok(self
            .broker
            .store
            .list_devices(tenant, after, limit)
            .await?
            .iter()
            .map(device_view)
            .collect())
    }

    /// Remove a device: its private record and its `Device` entity (its readings stay).
    pub async fn delete_device(&self, tenant: &str, id: &str) -> Result<(), DeviceError> {
        if !self.broker.store.delete_device(tenant, id).await? {
            return Err(DeviceError::NotFound(format!("device {id} does not exist")));
        }
        self.forget_tokens(tenant, id);
        match self
            .broker
            .delete_entity(tenant, &device_entity_id(id))
            .await
        {
            Err(e) if e.kind != misto_ngsild::ErrorKind::ResourceNotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn forget_tokens(&self, tenant: &str, id: &str) {
        if let Ok(mut v) = self.verified.lock() {
            v.retain(|_, (t, d)| !(t == tenant && d == id));
        }
    }

    /// The device a token belongs to (argon2 verification, remembered per token).
    pub async fn device_for_token(&self, tenant: &str, token: &str) -> Result<String, DeviceError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((t, id)) = self
            .verified
            .lock()
            .ok()
            .and_then(|v| v.get(&digest).cloned())
        {
            if t == tenant {
                return Ok(id);
            }
        }
        let refused = || DeviceError::Unauthorized("the device token is not valid".into());
        let (id, _) = token.rsplit_once('.').ok_or_else(refused)?;
        let d = self
            .broker
            .store
            .get_device(tenant, id)
            .await?
            .ok_or_else(refused)?;
        let hash = d.token_hash.ok_or_else(refused)?;
        let token_owned = token.to_string();
        // argon2 is deliberately slow: off the async threads.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(token_owned.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !ok {
            return Err(refused());
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() > 100_000 {
                v.clear();
            }
            v.insert(digest, (tenant.to_string(), d.id.clone()));
        }
        Ok(d.id)
    }

    /// Register devices from CSV with a header row. Columns: `id`, `devEui`, `profile`, `name`,
    /// `controlledProperty` (`;`-separated), `longitude`, `latitude`, `token` (`yes` to issue one); any may be
    /// left out but a row needs an id or a devEui. Returns per row the device (and token) or the error.
    pub async fn import_csv(&self, tenant: &str, text: &str) -> Result<Vec<Value>, DeviceError> {
        let mut r = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers = r
            .headers()
            .map_err(|e| DeviceError::invalid(format!("CSV header: {e}")))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (c_id, c_eui, c_prof, c_name, c_cp, c_lon, c_lat, c_tok) = (
            col("id"),
            col("devEui"),
            col("profile"),
            col("name"),
            col("controlledProperty"),
            col("longitude"),
            col("latitude"),
            col("token"),
        );
        if c_id.is_none() && c_eui.is_none() {
            return Err(DeviceError::invalid(
                "the CSV needs an id or a devEui column",
            ));
        }
        let mut out = Vec::new();
        for (n, rec) in r.records().enumerate() {
            let line = n + 2;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    out.push(json!({"line": line, "error": e.to_string()}));
                    continue;
                }
            };
            let get = |c: Option<usize>| {
                c.and_then(|i| rec.get(i))
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let location = match (get(c_lon), get(c_lat)) {
                (Some(lon), Some(lat)) => match (lon.parse::<f64>(), lat.parse::<f64>()) {
                    (Ok(lon), Ok(lat)) => Some(json!({"type": "Point", "coordinates": [lon, lat]})),
                    _ => {
                        out.push(
                            json!({"line": line, "error": "longitude/latitude are not numbers"}),
                        );
                        continue;
                    }
                },
                _ => None,
            };
            let input = DeviceInput {
                id: get(c_id),
                dev_eui: get(c_eui),
                profile: get(c_prof),
                name: get(c_name),
                controlled_property: get(c_cp)
                    .map(|s| {
                        s.split(';')
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                location,
                device_state: None,
            };
            let token = get(c_tok).is_some_and(|t| {
                t.eq_ignore_ascii_case("yes") || t == "1" || t.eq_ignore_ascii_case("true")
            });
            match self.put_device(tenant, None, input, true, token).await {
                Ok((d, t)) => {
                    let mut row = json!({"line": line, "device": d});
                    if let (Some(t), Some(o)) = (t, row.as_object_mut()) {
                        o.insert("token".into(), json!(t));
                    }
                    out.push(row);
                }
                Err(DeviceError::Store(e)) => return Err(DeviceError::Store(e)),
                Err(e) => out.push(json!({"line": line, "error": e.to_string()})),
            }
        }
        Ok(out)
    }
}
