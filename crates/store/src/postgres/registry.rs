//! PostgreSQL side of [`crate::registry::RegistryStore`].

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::registry::{Kind, RegistryStore, StoredDoc};
use crate::StoreError;

fn doc_of(r: &PgRow) -> Result<StoredDoc, StoreError> {
    let text: String = r.try_get("doc")?;
    Ok(StoredDoc {
        tenant: r.try_get("tenant")?,
        id: r.try_get("id")?,
        doc: serde_json::from_str(&text)
            .map_err(|e| StoreError::Other(format!("stored document is not JSON: {e}")))?,
        expires_ms: r.try_get("expires_ms")?,
    })
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn registry_put(
        &self,
        kind: Kind,
        doc: &StoredDoc,
        create: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let text = doc.doc.to_string();
        let n = if create {
            // An expired document with the id gives way (the sweep would remove it anyway).
            sqlx::query(
                "INSERT INTO registry_docs (kind, tenant, id, doc, expires_ms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, tenant, id) DO UPDATE SET doc = EXCLUDED.doc, expires_ms = EXCLUDED.expires_ms
                 WHERE registry_docs.expires_ms IS NOT NULL AND registry_docs.expires_ms <= $6",
            )
        } else {
            sqlx::query(
                "UPDATE registry_docs SET doc = $4, expires_ms = $5
                 WHERE kind = $1 AND tenant = $2 AND id = $3 AND (expires_ms IS NULL OR expires_ms > $6)",
            )
        }
        .bind(kind.as_str())
        .bind(&doc.tenant)
        .bind(&doc.id)
        .bind(&text)
        .bind(doc.expires_ms)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn registry_get(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredDoc>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant, id, doc, expires_ms FROM registry_docs
             WHERE kind = $1 AND tenant = $2 AND id = $3 AND (expires_ms IS NULL OR expires_ms > $4)",
        )
        .bind(kind.as_str())
        .bind(tenant)
        .bind(id)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(doc_of).transpose()
    }

    async fn registry_list(
        &self,
        kind: Kind,
        tenant: &str,
        now_ms: i64,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, id, doc, expires_ms FROM registry_docs
             WHERE kind = $1 AND tenant = $2 AND (expires_ms IS NULL OR expires_ms > $3) ORDER BY seq",
        )
        .bind(kind.as_str())
        .bind(tenant)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(doc_of).collect()
    }

    async fn registry_delete(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "DELETE FROM registry_docs
             WHERE kind = $1 AND tenant = $2 AND id = $3 AND (expires_ms IS NULL OR expires_ms > $4)",
        )
        .bind(kind.as_str())
        .bind(tenant)
        .bind(id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn registry_expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM registry_docs WHERE expires_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}
