//! SQLite side of [`crate::commands::CommandStore`].

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::SqliteStore;
use crate::commands::{may_leave, CommandRecord, CommandStore};
use crate::StoreError;

const COLUMNS: &str =
    "tenant, id, device, f_port, bytes, confirmed, state, reason, created_ms, updated_ms";

fn command_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRecord> {
    Ok(CommandRecord {
        tenant: r.get(0)?,
        id: r.get(1)?,
        device: r.get(2)?,
        f_port: r.get(3)?,
        bytes: r.get(4)?,
        confirmed: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        created_ms: r.get(8)?,
        updated_ms: r.get(9)?,
    })
}

fn one(c: &Connection, tenant: &str, id: &str) -> Result<Option<CommandRecord>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM device_commands WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row(params![tenant, id], command_of)
    .optional()?)
}

#[async_trait]
impl CommandStore for SqliteStore {
    async fn add_command(&self, c: &CommandRecord) -> Result<(), StoreError> {
        let c = c.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO device_commands ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(params![
                c.tenant,
                c.id,
                c.device,
                c.f_port,
                c.bytes,
                c.confirmed,
                c.state,
                c.reason,
                c.created_ms,
                c.updated_ms
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_command(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read("command", move |c| one(c, &tenant, &id)).await
    }

    async fn list_commands(
        &self,
        tenant: &str,
        device: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let (tenant, device) = (tenant.to_string(), device.to_string());
        self.read("commands", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM device_commands WHERE tenant = ?1 AND device = ?2
                 ORDER BY created_ms DESC, id DESC LIMIT ?3 OFFSET ?4"
            ))?;
            let rows = st.query_map(
                params![tenant, device, limit as i64, offset as i64],
                command_of,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn set_command_state(
        &self,
        tenant: &str,
        id: &str,
        state: &str,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<CommandRecord>, StoreError> {
        let (tenant, id, state, reason) = (
            tenant.to_string(),
            id.to_string(),
            state.to_string(),
            reason.map(str::to_string),
        );
        self.write(move |c| {
            c.prepare_cached(&format!(
                "UPDATE device_commands SET state = ?3, reason = ?4, updated_ms = ?5
                 WHERE tenant = ?1 AND id = ?2 AND state IN {}",
                may_leave(&state)
            ))?
            .execute(params![tenant, id, state, reason, at_ms])?;
            one(c, &tenant, &id)
        })
        .await
    }

    async fn set_route(&self, tenant: &str, device: &str, route: &Value) -> Result<(), StoreError> {
        let (tenant, device, route) = (tenant.to_string(), device.to_string(), route.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO device_routes (tenant, device, route) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, device) DO UPDATE SET route = excluded.route",
            )?
            .execute(params![tenant, device, route])?;
            Ok(())
        })
        .await
    }

    async fn get_route(&self, tenant: &str, device: &str) -> Result<Option<Value>, StoreError> {
        let (tenant, device) = (tenant.to_string(), device.to_string());
        self.read("device_route", move |c| {
            let r: Option<String> = c
                .prepare_cached(
                    "SELECT route FROM device_routes WHERE tenant = ?1 AND device = ?2",
                )?
                .query_row(params![tenant, device], |r| r.get(0))
                .optional()?;
            r.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
                .transpose()
        })
        .await
    }
}
