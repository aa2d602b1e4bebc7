//! PostgreSQL side of [`crate::commands::CommandStore`].

use async_trait::async_trait;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::commands::{may_leave, CommandRecord, CommandStore};
use crate::StoreError;

const COLUMNS: &str =
    "tenant, id, device, f_port, bytes, confirmed, state, reason, created_ms, updated_ms";

fn command_of(r: &PgRow) -> Result<CommandRecord, StoreError> {
    Ok(CommandRecord {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        device: r.try_get(2)?,
        f_port: r.try_get(3)?,
        bytes: r.try_get(4)?,
        confirmed: r.try_get(5)?,
        state: r.try_get(6)?,
        reason: r.try_get(7)?,
        created_ms: r.try_get(8)?,
        updated_ms: r.try_get(9)?,
    })
}

#[async_trait]
impl CommandStore for PgStore {
    async fn add_command(&self, c: &CommandRecord) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO device_commands ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&c.tenant)
        .bind(&c.id)
        .bind(&c.device)
        .bind(c.f_port)
        .bind(&c.bytes)
        .bind(c.confirmed)
        .bind(&c.state)
        .bind(&c.reason)
        .bind(c.created_ms)
        .bind(c.updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_command(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<CommandRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM device_commands WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(command_of)
        .transpose()
    }

    async fn list_commands(
        &self,
        tenant: &str,
        device: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM device_commands WHERE tenant = $1 AND device = $2
             ORDER BY created_ms DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(tenant)
        .bind(device)
        .bind(limit as i64)
        .bind(offset as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(command_of)
        .collect()
    }

    async fn set_command_state(
        &self,
        tenant: &str,
        id: &str,
        state: &str,
        reason: Option<&str>,
        at_ms: i64,
    ) -> Result<Option<CommandRecord>, StoreError> {
        sqlx::query(&format!(
            "UPDATE device_commands SET state = $3, reason = $4, updated_ms = $5
             WHERE tenant = $1 AND id = $2 AND state IN {}",
            may_leave(state)
        ))
        .bind(tenant)
        .bind(id)
        .bind(state)
        .bind(reason)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        self.get_command(tenant, id).await
    }

    async fn set_route(&self, tenant: &str, device: &str, route: &Value) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO device_routes (tenant, device, route) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, device) DO UPDATE SET route = excluded.route",
        )
        .bind(tenant)
        .bind(device)
        .bind(route.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_route(&self, tenant: &str, device: &str) -> Result<Option<Value>, StoreError> {
        let r: Option<String> =
            sqlx::query_scalar("SELECT route FROM device_routes WHERE tenant = $1 AND device = $2")
                .bind(tenant)
                .bind(device)
                .fetch_optional(&self.pool)
                .await?;
        r.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }
}
