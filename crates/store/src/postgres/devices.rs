//! PostgreSQL side of [`crate::devices::DeviceStore`].

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::devices::{fcnt_step, DeadLetter, DeviceRecord, DeviceStore, Health, HealthUpdate};
use crate::StoreError;

const DEVICE_COLUMNS: &str =
    "tenant, id, dev_eui, profile_id, token_hash, doc, last_seen_ms, battery, \
     rssi, snr, gateway, last_fcnt, fcnt_gaps, uplinks";

fn json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn device_of(r: &PgRow) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        dev_eui: r.try_get(2)?,
        profile_id: r.try_get(3)?,
        token_hash: r.try_get(4)?,
        doc: json(&r.try_get::<String, _>(5)?)?,
        health: Health {
            last_seen_ms: r.try_get(6)?,
            battery: r.try_get(7)?,
            rssi: r.try_get(8)?,
            snr: r.try_get(9)?,
            gateway: r.try_get(10)?,
            last_fcnt: r.try_get(11)?,
            fcnt_gaps: r.try_get(12)?,
            uplinks: r.try_get(13)?,
        },
    })
}

fn dead_letter_of(r: &PgRow) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        at_ms: r.try_get(2)?,
        device: r.try_get(3)?,
        reason: r.try_get(4)?,
        uplink: json(&r.try_get::<String, _>(5)?)?,
    })
}

#[async_trait]
impl DeviceStore for PgStore {
    async fn put_device(&self, d: &DeviceRecord, create: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Serialize writers of one tenant's devices, so the DevEUI check below cannot race.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('devices:' || $1))")
            .bind(&d.tenant)
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant = $1 AND id = $2)",
        )
        .bind(&d.tenant)
        .bind(&d.id)
        .fetch_one(&mut *tx)
        .await?;
        if exists && create {
            return Ok(false);
        }
        if let Some(eui) = &d.dev_eui {
            let taken: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE tenant = $1 AND dev_eui = $2 AND id <> $3)",
            )
            .bind(&d.tenant)
            .bind(eui)
            .bind(&d.id)
            .fetch_one(&mut *tx)
            .await?;
            if taken {
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO devices (tenant, id, dev_eui, profile_id, token_hash, doc) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant, id) DO UPDATE SET dev_eui = excluded.dev_eui, profile_id = excluded.profile_id,
             token_hash = excluded.token_hash, doc = excluded.doc",
        )
        .bind(&d.tenant)
        .bind(&d.id)
        .bind(&d.dev_eui)
        .bind(&d.profile_id)
        .bind(&d.token_hash)
        .bind(d.doc.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn get_device(&self, tenant: &str, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_of).transpose()
    }

    async fn device_by_eui(
        &self,
        tenant: &str,
        dev_eui: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 AND dev_eui = $2"
        ))
        .bind(tenant)
        .bind(dev_eui)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_of).transpose()
    }

    async fn list_devices(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 AND id COLLATE \"C\" > $2 ORDER BY id COLLATE \"C\" LIMIT $3"
        ))
        .bind(tenant)
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_of).collect()
    }

    async fn delete_device(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM devices WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn update_health(
        &self,
        tenant: &str,
        id: &str,
        u: &HealthUpdate,
    ) -> Result<Option<Health>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE tenant = $1 AND id = $2 FOR UPDATE"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut h = device_of(&row)?.health;
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
        sqlx::query(
            "UPDATE devices SET last_seen_ms = $3, battery = $4, rssi = $5, snr = $6, gateway = $7,
             last_fcnt = $8, fcnt_gaps = $9, uplinks = $10 WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(h.last_seen_ms)
        .bind(h.battery)
        .bind(h.rssi)
        .bind(h.snr)
        .bind(&h.gateway)
        .bind(h.last_fcnt)
        .bind(h.fcnt_gaps)
        .bind(h.uplinks)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(h))
    }

    async fn put_profile(
        &self,
        tenant: &str,
        id: &str,
        doc: &Value,
        create: bool,
    ) -> Result<bool, StoreError> {
        let sql = if create {
            "INSERT INTO device_profiles (tenant, id, doc) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO device_profiles (tenant, id, doc) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc"
        };
        let n = sqlx::query(sql)
            .bind(tenant)
            .bind(id)
            .bind(doc.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn get_profile(&self, tenant: &str, id: &str) -> Result<Option<Value>, StoreError> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc FROM device_profiles WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        doc.as_deref().map(json).transpose()
    }

    async fn list_profiles(&self, tenant: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, doc FROM device_profiles WHERE tenant = $1 ORDER BY id COLLATE \"C\"",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, json(&r.try_get::<String, _>(1)?)?)))
            .collect()
    }

    async fn delete_profile(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM device_profiles WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn add_dead_letter(
        &self,
        tenant: &str,
        at_ms: i64,
        device: Option<&str>,
        reason: &str,
        uplink: &Value,
    ) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO dead_letters (tenant, at_ms, device, reason, uplink) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(tenant)
        .bind(at_ms)
        .bind(device)
        .bind(reason)
        .bind(uplink.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn list_dead_letters(
        &self,
        tenant: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, tenant, at_ms, device, reason, uplink FROM dead_letters
             WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dead_letter_of).collect()
    }

    async fn delete_dead_letter(&self, tenant: &str, id: i64) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM dead_letters WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn count_dead_letters(&self, tenant: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }
}
