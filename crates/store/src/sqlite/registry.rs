//! SQLite side of [`crate::registry::RegistryStore`].

use async_trait::async_trait;
use rusqlite::{params, Row};

use super::SqliteStore;
use crate::registry::{Kind, RegistryStore, StoredDoc};
use crate::StoreError;

fn doc_of(r: &Row<'_>) -> Result<StoredDoc, StoreError> {
    let text: String = r.get(2)?;
    Ok(StoredDoc {
        tenant: r.get(0)?,
        id: r.get(1)?,
        doc: serde_json::from_str(&text)
            .map_err(|e| StoreError::Other(format!("stored document is not JSON: {e}")))?,
        expires_ms: r.get(3)?,
    })
}

const LIVE: &str = "(expires_ms IS NULL OR expires_ms > ?3)";

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn registry_put(
        &self,
        kind: Kind,
        doc: &StoredDoc,
        create: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let d = doc.clone();
        let text = doc.doc.to_string();
        self.write(move |c| {
            let live: bool = c.query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM registry_docs WHERE kind = ?1 AND tenant = ?2 AND id = ?4 AND {LIVE})"
                ),
                params![kind.as_str(), d.tenant, now_ms, d.id],
                |r| r.get(0),
            )?;
            if live == create {
                return Ok(false);
            }
            if create {
                // An expired document with the id gives way (the sweep would remove it anyway).
                c.prepare_cached(
                    "DELETE FROM registry_docs WHERE kind = ?1 AND tenant = ?2 AND id = ?3",
                )?
                .execute(params![kind.as_str(), d.tenant, d.id])?;
                c.prepare_cached(
                    "INSERT INTO registry_docs (kind, tenant, id, doc, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![kind.as_str(), d.tenant, d.id, text, d.expires_ms])?;
            } else {
                c.prepare_cached(
                    "UPDATE registry_docs SET doc = ?4, expires_ms = ?5 WHERE kind = ?1 AND tenant = ?2 AND id = ?3",
                )?
                .execute(params![kind.as_str(), d.tenant, d.id, text, d.expires_ms])?;
            }
            Ok(true)
        })
        .await
    }

    async fn registry_get(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredDoc>, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.read("registry_get", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT tenant, id, doc, expires_ms FROM registry_docs
                 WHERE kind = ?1 AND tenant = ?2 AND id = ?4 AND {LIVE}"
            ))?;
            let mut rows = st.query(params![kind.as_str(), tenant, now_ms, id])?;
            match rows.next()? {
                Some(r) => Ok(Some(doc_of(r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn registry_list(
        &self,
        kind: Kind,
        tenant: &str,
        now_ms: i64,
    ) -> Result<Vec<StoredDoc>, StoreError> {
        let tenant = tenant.to_string();
        self.read("registry_list", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT tenant, id, doc, expires_ms FROM registry_docs
                 WHERE kind = ?1 AND tenant = ?2 AND {LIVE} ORDER BY seq"
            ))?;
            let mut rows = st.query(params![kind.as_str(), tenant, now_ms])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(doc_of(r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn registry_delete(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .prepare_cached(&format!(
                    "DELETE FROM registry_docs WHERE kind = ?1 AND tenant = ?2 AND id = ?4 AND {LIVE}"
                ))?
                .execute(params![kind.as_str(), tenant, now_ms, id])?;
            Ok(n > 0)
        })
        .await
    }

    async fn registry_expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM registry_docs WHERE expires_ms <= ?1")?
                .execute(params![now_ms])?;
            Ok(n as u64)
        })
        .await
    }
}
