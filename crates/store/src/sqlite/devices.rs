//! SQLite side of [`crate::devices::DeviceStore`]: writes run in the writer's group commit, reads on the
//! reader pool.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::SqliteStore;
use crate::devices::{fcnt_step, DeadLetter, DeviceRecord, DeviceStore, Health, HealthUpdate};
use crate::StoreError;

const DEVICE_COLUMNS: &str =
    "tenant, id, dev_eui, profile_id, token_hash, doc, last_seen_ms, battery, \
     rssi, snr, gateway, last_fcnt, fcnt_gaps, uplinks";

fn json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn device_of(r: &rusqlite::Row<'_>) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        tenant: r.get(0)?,
        id: r.get(1)?,
        dev_eui: r.get(2)?,
        profile_id: r.get(3)?,
        token_hash: r.get(4)?,
        doc: json(&r.get::<_, String>(5)?)?,
        health: Health {
            last_seen_ms: r.get(6)?,
            battery: r.get(7)?,
            rssi: r.get(8)?,
            snr: r.get(9)?,
            gateway: r.get(10)?,
            last_fcnt: r.get(11)?,
            fcnt_gaps: r.get(12)?,
            uplinks: r.get(13)?,
        },
    })
}

fn one_device(
    c: &Connection,
    sql: &str,
    a: &str,
    b: &str,
) -> Result<Option<DeviceRecord>, StoreError> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(params![a, b])?;
    match rows.next()? {
        Some(r) => Ok(Some(device_of(r)?)),
        None => Ok(None),
    }
}

fn dead_letter_of(r: &rusqlite::Row<'_>) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: r.get(0)?,
        tenant: r.get(1)?,
        at_ms: r.get(2)?,
        device: r.get(3)?,
        reason: r.get(4)?,
        uplink: json(&r.get::<_, String>(5)?)?,
    })
}

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn put_device(&self, d: &DeviceRecord, create: bool) -> Result<bool, StoreError> {
        let d = d.clone();
        let doc = d.doc.to_string();
        self.write(move |c| {
            let exists: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM devices WHERE tenant = ?1 AND id = ?2)")?
                .query_row(params![d.tenant, d.id], |r| r.get(0))?;
            if exists && create {
                return Ok(false);
            }
            if let Some(eui) = &d.dev_eui {
                let other: Option<String> = c
                    .prepare_cached(
                        "SELECT id FROM devices WHERE tenant = ?1 AND dev_eui = ?2 AND id <> ?3",
                    )?
                    .query_row(params![d.tenant, eui, d.id], |r| r.get(0))
                    .optional()?;
                if other.is_some() {
                    return Ok(false);
                }
            }
            // Health belongs to the uplinks, not to the caller: a replaced device keeps it.
            c.prepare_cached(
                "INSERT INTO devices (tenant, id, dev_eui, profile_id, token_hash, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, id) DO UPDATE SET dev_eui = excluded.dev_eui, profile_id = excluded.profile_id,
                 token_hash = excluded.token_hash, doc = excluded.doc",
            )?
            .execute(params![d.tenant, d.id, d.dev_eui, d.profile_id, d.token_hash, doc])?;
            Ok(true)
        })
        .await
    }

    async fn get_device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read("device", move |c| {
            one_device(
                c,
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = ?1 AND id = ?2"),
                &tenant,
                &id,
            )
        })
        .await
    }

    async fn device_by_eui(
        &self,
        tenant: &str,
        dev_eui: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let (tenant, eui) = (tenant.to_string(), dev_eui.to_string());
        self.read("device", move |c| {
            one_device(
                c,
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = ?1 AND dev_eui = ?2"),
                &tenant,
                &eui,
            )
        })
        .await
    }

    async fn list_devices(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let (tenant, after) = (tenant.to_string(), after.unwrap_or("").to_string());
        self.read("devices", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let mut rows = st.query(params![tenant, after, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(device_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_device(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM devices WHERE tenant = ?1 AND id = ?2")?
                .execute(params![tenant, id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn update_health(
        &self,
        tenant: &str,
        id: &str,
        u: &HealthUpdate,
    ) -> Result<Option<Health>, StoreError> {
        let (tenant, id, u) = (tenant.to_string(), id.to_string(), u.clone());
        self.write(move |c| {
            let Some(d) = one_device(
                c,
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = ?1 AND id = ?2"),
                &tenant,
                &id,
            )?
            else {
                return Ok(None);
            };
            let mut h = d.health;
            let (last, gaps) = fcnt_step(h.last_fcnt, h.fcnt_gaps, u.fcnt);
            h.last_fcnt = last;
            h.fcnt_gaps = gaps;
            if let Some(t) = u.seen_ms {
                h.last_seen_ms = Some(h.last_seen_ms.map_or(t, |l| l.max(t)));
                h.uplinks += 1;
            }
            h.battery = u.battery.or(h.battery);
            h.rssi = u.rssi.or(h.rssi);
            h.snr = u.snr.or(h.snr);
            h.gateway = u.gateway.clone().or(h.gateway);
            c.prepare_cached(
                "UPDATE devices SET last_seen_ms = ?3, battery = ?4, rssi = ?5, snr = ?6, gateway = ?7,
                 last_fcnt = ?8, fcnt_gaps = ?9, uplinks = ?10 WHERE tenant = ?1 AND id = ?2",
            )?
            .execute(params![
                tenant,
                id,
                h.last_seen_ms,
                h.battery,
                h.rssi,
                h.snr,
                h.gateway,
                h.last_fcnt,
                h.fcnt_gaps,
                h.uplinks
            ])?;
            Ok(Some(h))
        })
        .await
    }

    async fn put_profile(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError> {
        let (tenant, id, doc) = (tenant.to_string(), id.to_string(), doc.to_string());
        self.write(move |c| {
            let sql = if create {
                "INSERT INTO device_profiles (tenant, id, doc) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO device_profiles (tenant, id, doc) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc"
            };
            Ok(c.prepare_cached(sql)?.execute(params![tenant, id, doc])? > 0)
        })
        .await
    }

    async fn get_profile(&self, tenant: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read("device_profile", move |c| {
            let doc: Option<String> = c
                .prepare_cached("SELECT doc FROM device_profiles WHERE tenant = ?1 AND id = ?2")?
                .query_row(params![tenant, id], |r| r.get(0))
                .optional()?;
            doc.as_deref().map(json).transpose()
        })
        .await
    }

    async fn list_profiles(&self, tenant: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let tenant = tenant.to_string();
        self.read("device_profiles", move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, doc FROM device_profiles WHERE tenant = ?1 ORDER BY id",
            )?;
            let mut rows = st.query(params![tenant])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push((r.get(0)?, json(&r.get::<_, String>(1)?)?));
            }
            Ok(out)
        })
        .await
    }

    async fn delete_profile(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM device_profiles WHERE tenant = ?1 AND id = ?2")?
                .execute(params![tenant, id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn add_dead_letter(
        &self,
        tenant: &str,
        at_ms: i64,
        device: Option<&str>,
        reason: &str,
        uplink: &Value,
    ) -> Result<i64, StoreError> {
        let (tenant, device, reason, uplink) = (
            tenant.to_string(),
            device.map(str::to_string),
            reason.to_string(),
            uplink.to_string(),
        );
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO dead_letters (tenant, at_ms, device, reason, uplink) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![tenant, at_ms, device, reason, uplink])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let tenant = tenant.to_string();
        self.read("dead_letters", move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, tenant, at_ms, device, reason, uplink FROM dead_letters
                 WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let mut rows = st.query(params![tenant, after, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(dead_letter_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_dead_letter(&self, tenant: &str, id: i64) -> Result<bool, StoreError> {
        let tenant = tenant.to_string();
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM dead_letters WHERE tenant = ?1 AND id = ?2")?
                .execute(params![tenant, id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_dead_letters(&self, tenant: &str) -> Result<u64, StoreError> {
        let tenant = tenant.to_string();
        self.read("dead_letters", move |c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM dead_letters WHERE tenant = ?1")?
                .query_row(params![tenant], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }
}
