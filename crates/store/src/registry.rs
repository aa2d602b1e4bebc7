//! Storage of the small per-tenant resources the broker keeps beside entities: context source registrations
//! (§5.9) and entity maps (§5.2.39). Each is a document opaque to the store, keyed by (kind, tenant, id),
//! with an optional expiry: an expired document is never returned, and [`RegistryStore::registry_expire`]
//! removes it for good.

use async_trait::async_trait;
use serde_json::Value;

use crate::StoreError;

/// Which kind of resource a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ContextSourceRegistration (§5.2.9).
    Registration,
    /// An EntityMap (§5.2.39).
    EntityMap,
}

impl Kind {
    /// The value of the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Registration => "csr",
            Kind::EntityMap => "entitymap",
        }
    }
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDoc {
    pub tenant: String,
    pub id: String,
    pub doc: Value,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: Option<i64>,
}

#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Create (`create`: Ok(false) when a live document has the id; an expired one is replaced) or replace a
    /// document (Ok(false) when there is no live one to replace).
    async fn registry_put(
        &self,
        kind: Kind,
        doc: &StoredDoc,
        create: bool,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// A live document (not expired at `now_ms`).
    async fn registry_get(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<StoredDoc>, StoreError>;

    /// A tenant's live documents of a kind, in creation order.
    async fn registry_list(
        &self,
        kind: Kind,
        tenant: &str,
        now_ms: i64,
    ) -> Result<Vec<StoredDoc>, StoreError>;

    /// Remove a document; false when there was no live one.
    async fn registry_delete(
        &self,
        kind: Kind,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Remove every document expired at `now_ms` (all kinds and tenants); returns how many went.
    async fn registry_expire(&self, now_ms: i64) -> Result<u64, StoreError>;
}
