//! Entity storage for the NGSI-LD broker: one trait, [`EntityStore`], implemented for SQLite (the embedded
//! default) and PostgreSQL. Both pass the same conformance suite (`tests/conformance.rs`).
//!
//! Stores hold entities in the broker's stored form (see `misto_ngsild::entity`) per tenant. All
//! read-modify-write goes through [`EntityStore::modify_many`], which runs the caller's closure on the current
//! state inside the storage transaction, so concurrent updates of one entity never lose each other's changes.

use std::sync::Arc;

use async_trait::async_trait;
use misto_ngsild::{Entity, NgsiError};

pub mod commands;
pub mod devices;
mod doc;
pub mod notify;
pub mod postgres;
pub mod registry;
pub mod sqlite;
mod summary;
pub mod temporal;

pub use commands::CommandStore;
pub use devices::DeviceStore;
pub use notify::NotifyStore;
pub use registry::RegistryStore;
pub use summary::AttrKey;
pub use temporal::TemporalStore;

/// Errors of the storage layer itself (not of the request): the backend failed or is unreachable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
    #[error("storage is shutting down")]
    Closed,
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for NgsiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage error");
        NgsiError::new(
            misto_ngsild::ErrorKind::ServiceUnavailable,
            format!("storage is not available: {e}"),
        )
    }
}

/// What a modification decides to do with the entity it was given.
#[derive(Debug)]
pub enum Change {
    /// Leave the stored entity as it is.
    Keep,
    /// Store this entity (create or replace).
    Put(Entity),
    /// Store this entity with its view rendered already (by the caller, off the storage writer).
    PutRendered(Entity, View),
    /// Remove the entity.
    Delete,
}

/// The closure of a read-modify-write: current state in, decision out. A request error aborts only this
/// operation (other operations of the same batch go on).
pub type ModifyFn = Box<dyn FnOnce(Option<&Entity>) -> Result<Change, NgsiError> + Send>;

/// The closure of a read-modify-write that a store may run more than once: first on a snapshot, outside the
/// storage writer, then again on the current state if the entity changed before the result was committed. It
/// must depend on nothing but the entity it is given (and the request it was made for).
pub type RetryFn = Arc<dyn Fn(Option<&Entity>) -> Result<Change, NgsiError> + Send + Sync>;

/// The entity before and after one modification (None where it did not exist).
#[derive(Debug, Clone, Default)]
pub struct Modified {
    pub before: Option<Entity>,
    pub after: Option<Entity>,
}

/// A rendering of an entity made at write time, stored beside it: the normalized representation (no system
/// attributes, no projection) compacted with the writer's context. A read made with a context of the same
/// fingerprint is answered with these bytes, without parsing and rendering the entity again.
#[derive(Debug, Clone)]
pub struct View {
    /// `Context::fingerprint` of the context it was compacted with.
    pub ctx: u64,
    /// The rendered JSON object.
    pub json: Vec<u8>,
}

/// Renders the view of an entity about to be stored (None: store no view, e.g. for transient entities, whose
/// rendering changes with time).
pub type ViewFn = Arc<dyn Fn(&Entity) -> Option<View> + Send + Sync>;

/// An entity as read for a given context: its stored rendering when one was made with an equal context, else
/// the entity itself.
#[derive(Debug)]
pub enum Found {
    Rendered(Vec<u8>),
    Entity(Entity),
}

/// The members of an attribute instance that say what it is and hold its value (as `q` reads them); see
/// [`EntityQuery::filter_values_only`].
pub const VALUE_MEMBERS: &[&str] = &[
    "type",
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
];

/// A filter evaluated on candidate entities that the backend cannot express in SQL.
pub type EntityFilter = Arc<dyn Fn(&Entity) -> bool + Send + Sync>;

/// A test of one box of the `bbox` GeoProperty's spatial index: whether a geometry inside it may satisfy the
/// filter's geo predicate (false only when none can).
pub type BoxTest = Arc<dyn Fn(&geo::Rect<f64>) -> bool + Send + Sync>;

/// Candidate selection for queries. All set criteria must hold.
#[derive(Clone, Default)]
pub struct EntityQuery {
    /// Any of these ids.
    pub ids: Option<Vec<String>>,
    /// Any of these (expanded) types.
    pub types: Option<Vec<String>>,
    /// Entities with an instance of this GeoProperty whose bounding box intersects this lon/lat box.
    pub bbox: Option<(String, geo::Rect<f64>)>,
    /// Refuses boxes of the `bbox` GeoProperty whose geometry cannot match `filter`. A store whose spatial
    /// index holds each instance's box (or a box around it) may pass over a candidate all of whose boxes it
    /// refuses without reading the entity; the answer is the same either way, since `filter` decides.
    pub bbox_test: Option<BoxTest>,
    /// Evaluated on each candidate after the criteria above.
    pub filter: Option<EntityFilter>,
    /// The top-level members `filter` reads (None: it may read any). A store may hand the filter an entity
    /// holding only these.
    pub filter_reads: Option<Vec<String>>,
    /// `filter` reads of each attribute instance only its kind and value ([`VALUE_MEMBERS`]), and of the
    /// entity only `filter_reads`: a store may hand it entities reduced to that.
    pub filter_values_only: bool,
    pub offset: usize,
    /// Maximum entities to return (0: only count).
    pub limit: usize,
    /// Compute the total number of matches.
    pub count: bool,
    /// Answer with stored renderings made with this context fingerprint where they exist: the page goes to
    /// [`QueryPage::found`] instead of [`QueryPage::entities`].
    pub view_ctx: Option<u64>,
}

/// A page of query results.
#[derive(Debug, Default)]
pub struct QueryPage {
    pub entities: Vec<Entity>,
    /// The page when [`EntityQuery::view_ctx`] was set.
    pub found: Vec<Found>,
    pub total: Option<u64>,
}

impl QueryPage {
    /// Entities on the page, in whichever form.
    pub fn len(&self) -> usize {
        self.entities.len() + self.found.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per type and attribute: how many entities (attribute `None` counts entities of the type).
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSummary {
    pub type_iri: String,
    pub count: u64,
    /// (attribute IRI, attribute kind such as `Property`, number of entities)
    pub attributes: Vec<(String, String, u64)>,
}

#[async_trait]
pub trait EntityStore:
    NotifyStore + TemporalStore + DeviceStore + CommandStore + RegistryStore + Send + Sync + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Does the backend answer?
    async fn ping(&self) -> Result<(), StoreError>;

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>, StoreError>;

    /// The entity, or its stored rendering when that was made with the context fingerprint `ctx`.
    async fn get_found(
        &self,
        tenant: &str,
        id: &str,
        ctx: u64,
    ) -> Result<Option<Found>, StoreError>;

    /// Run read-modify-write operations in one transaction; each gets its own outcome. Every entity stored
    /// gets the view `view` renders (and loses any view it had when `view` is None).
    async fn modify_many_viewed(
        &self,
        tenant: &str,
        ops: Vec<(String, ModifyFn)>,
        view: Option<ViewFn>,
    ) -> Result<Vec<Result<Modified, NgsiError>>, StoreError>;

    /// [`EntityStore::modify_many_viewed`] storing no views.
    async fn modify_many(
        &self,
        tenant: &str,
        ops: Vec<(String, ModifyFn)>,
    ) -> Result<Vec<Result<Modified, NgsiError>>, StoreError> {
        self.modify_many_viewed(tenant, ops, None).await
    }

    /// One read-modify-write whose closure may run more than once (see [`RetryFn`]): a store may compute the
    /// change from a snapshot off its writer and commit it only if the entity is still as it was in the
    /// snapshot (compare-and-set), running the closure again on the current state otherwise. Outcome and
    /// guarantees are those of [`EntityStore::modify_many_viewed`] with one operation; a closure error or a
    /// [`Change::Keep`] may be answered from the snapshot without writing.
    async fn modify_retrying(
        &self,
        tenant: &str,
        id: &str,
        f: RetryFn,
        view: Option<ViewFn>,
    ) -> Result<Result<Modified, NgsiError>, StoreError> {
        let op: ModifyFn = Box::new(move |cur| f(cur));
        let mut out = self
            .modify_many_viewed(tenant, vec![(id.to_string(), op)], view)
            .await?;
        Ok(out
            .pop()
            .unwrap_or_else(|| Err(NgsiError::internal("storage returned no outcome"))))
    }

    /// Many read-modify-writes whose closures may run more than once (see [`RetryFn`]), each with its own
    /// outcome, as [`EntityStore::modify_retrying`] is to one: a store may compute the changes from snapshots
    /// off its writer and commit each only if its entity is still as it was. Closure errors and
    /// [`Change::Keep`]s may be answered from the snapshot.
    async fn modify_many_retrying(
        &self,
        tenant: &str,
        ops: Vec<(String, RetryFn)>,
        view: Option<ViewFn>,
    ) -> Result<Vec<Result<Modified, NgsiError>>, StoreError> {
        let ops = ops
            .into_iter()
            .map(|(id, f)| {
                let op: ModifyFn = Box::new(move |cur| f(cur));
                (id, op)
            })
            .collect();
        self.modify_many_viewed(tenant, ops, view).await
    }

    async fn query(&self, tenant: &str, q: &EntityQuery) -> Result<QueryPage, StoreError>;

    /// Delete every entity matching `q` (its offset/limit are ignored); returns the deleted entities' ids.
    async fn purge(&self, tenant: &str, q: &EntityQuery) -> Result<Vec<String>, StoreError>;

    /// Entity types with counts and attributes, from a summary kept up to date on every write.
    async fn types(&self, tenant: &str) -> Result<Vec<TypeSummary>, StoreError>;

    /// Remove entities whose `expiresAt` is at or before `now`; returns (tenant, id) of each.
    async fn expire(&self, now: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Tenants that hold at least one entity, with their entity counts.
    async fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Convenience wrappers over `modify_many` for single operations.
pub async fn modify(
    store: &dyn EntityStore,
    tenant: &str,
    id: &str,
    f: ModifyFn,
) -> Result<Result<Modified, NgsiError>, StoreError> {
    modify_viewed(store, tenant, id, f, None).await
}

/// [`modify`] storing the view `view` renders.
pub async fn modify_viewed(
    store: &dyn EntityStore,
    tenant: &str,
    id: &str,
    f: ModifyFn,
    view: Option<ViewFn>,
) -> Result<Result<Modified, NgsiError>, StoreError> {
    let mut out = store
        .modify_many_viewed(tenant, vec![(id.to_string(), f)], view)
        .await?;
    Ok(out
        .pop()
        .unwrap_or_else(|| Err(NgsiError::internal("storage returned no outcome"))))
}

/// Open a store for a database URL: `sqlite://path` / a plain path, or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn EntityStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        Ok(Arc::new(sqlite::SqliteStore::open(path)?))
    }
}
