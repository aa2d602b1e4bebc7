//! PostgreSQL implementation of [`crate::EntityStore`] (sqlx). With PostGIS, geo candidates come from a GiST
//! index on a geometry column; without it, from a GiST index on the built-in `box` type.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use async_trait::async_trait;
use misto_ngsild::{Entity, NgsiError};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::summary::{delta, geo_boxes, nonzero};
use crate::{
    AttrKey, Change, EntityQuery, EntityStore, Found, Modified, ModifyFn, QueryPage, StoreError,
    TypeSummary, ViewFn,
};

mod commands;
mod devices;
mod notify;
mod registry;
mod temporal;

const SCAN_CHUNK: i64 = 500;

/// The PostgreSQL entity store.
pub struct PgStore {
    pool: PgPool,
    postgis: bool,
}

/// A bind value of a dynamically built query.
#[derive(Clone, Debug)]
enum Arg {
    Text(String),
    TextArray(Vec<String>),
    Float(f64),
    Int(i64),
}

fn observe(op: &'static str, started: Instant) {
    metrics::histogram!("misto_storage_seconds", "backend" => "postgres", "op" => op)
        .record(started.elapsed().as_secs_f64());
}

fn decode(doc: &str) -> Result<Entity, StoreError> {
    serde_json::from_str::<Entity>(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode(e: &Entity) -> Result<String, StoreError> {
    serde_json::to_string(e).map_err(|e| StoreError::Other(e.to_string()))
}

/// The entity's expiry in one format, so that stored expiries compare as text.
fn expires_of(e: &Entity) -> Option<String> {
    e.get("expiresAt")
        .and_then(Value::as_str)
        .and_then(misto_ngsild::validate::parse_datetime)
        .map(misto_ngsild::validate::format_datetime)
}

impl PgStore {
    /// Connect, create PostGIS if possible, and apply migrations.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        Self::connect_with(opts).await
    }

    /// Connect in a schema of its own, created on the spot: isolated databases for tests.
    pub async fn connect_isolated(url: &str) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions = url.parse()?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let schema = format!("misto_{}", uuid_hex());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        Self::connect_with(opts.options([("search_path", format!("{schema},public"))])).await
    }

    async fn connect_with(opts: PgConnectOptions) -> Result<PgStore, StoreError> {
        // A statement that runs away (a plan gone wrong, a lock held elsewhere) is cancelled rather than left
        // holding a connection after its request is long gone.
        let opts = opts.options([("statement_timeout", "60s")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        // PostGIS is optional: creating it needs privileges and the package; the box index serves otherwise.
        let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public")
            .execute(&pool)
            .await;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let postgis: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'postgis')",
        )
        .fetch_one(&pool)
        .await?;
        if postgis {
            sqlx::query(
                "ALTER TABLE geo_index ADD COLUMN IF NOT EXISTS geom geometry(Polygon, 4326)",
            )
            .execute(&pool)
            .await?;
            sqlx::query("CREATE INDEX IF NOT EXISTS geo_index_geom ON geo_index USING GIST (geom)")
                .execute(&pool)
                .await?;
        }
        tracing::info!(postgis, "PostgreSQL store ready");
        Ok(PgStore { pool, postgis })
    }

    pub fn has_postgis(&self) -> bool {
        self.postgis
    }
}

fn uuid_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::TextArray(v) => q.bind(v.as_slice()),
            Arg::Float(f) => q.bind(*f),
            Arg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// The state of one entity during a batch: as loaded, and after the operations so far.
struct Slot {
    seq: Option<i64>,
    original: Option<Entity>,
    current: Option<Entity>,
}

impl PgStore {
    async fn write_indexes(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: &str,
        seq: i64,
        e: &Entity,
    ) -> Result<(), StoreError> {
        let types: Vec<String> = misto_ngsild::entity::types(e)
            .into_iter()
            .map(str::to_string)
            .collect();
        sqlx::query("INSERT INTO entity_types (tenant, type, seq) SELECT $1, t, $2 FROM UNNEST($3::text[]) AS t ON CONFLICT DO NOTHING")
            .bind(tenant)
            .bind(seq)
            .bind(&types)
            .execute(&mut **tx)
            .await?;
        let boxes = geo_boxes(e);
        if !boxes.is_empty() {
            let attrs: Vec<String> = boxes.iter().map(|(a, _)| a.clone()).collect();
            let minx: Vec<f64> = boxes.iter().map(|(_, r)| r.min().x).collect();
            let miny: Vec<f64> = boxes.iter().map(|(_, r)| r.min().y).collect();
            let maxx: Vec<f64> = boxes.iter().map(|(_, r)| r.max().x).collect();
            let maxy: Vec<f64> = boxes.iter().map(|(_, r)| r.max().y).collect();
            let sql = if self.postgis {
                "INSERT INTO geo_index (seq, attr, bbox, geom) SELECT $1, a, box(point(x0, y0), point(x1, y1)), ST_MakeEnvelope(x0, y0, x1, y1, 4326) FROM UNNEST($2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[]) AS u(a, x0, y0, x1, y1)"
            } else {
                "INSERT INTO geo_index (seq, attr, bbox) SELECT $1, a, box(point(x0, y0), point(x1, y1)) FROM UNNEST($2::text[], $3::float8[], $4::float8[], $5::float8[], $6::float8[]) AS u(a, x0, y0, x1, y1)"
            };
            sqlx::query(sql)
                .bind(seq)
                .bind(&attrs)
                .bind(&minx)
                .bind(&miny)
                .bind(&maxx)
                .bind(&maxy)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    async fn clear_indexes(tx: &mut Transaction<'_, Postgres>, seq: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM entity_types WHERE seq = $1")
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM geo_index WHERE seq = $1")
            .bind(seq)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn write_counts(
        tx: &mut Transaction<'_, Postgres>,
        tenant: &str,
        counts: BTreeMap<AttrKey, i64>,
    ) -> Result<(), StoreError> {
        let changes = nonzero(counts);
        if changes.is_empty() {
            return Ok(());
        }
        let mut t = Vec::new();
        let mut a = Vec::new();
        let mut k = Vec::new();
        let mut n = Vec::new();
        for ((ty, at, ki), d) in changes {
            t.push(ty);
            a.push(at);
            k.push(ki);
            n.push(d);
        }
        sqlx::query(
            "INSERT INTO type_attr_counts (tenant, type, attr, kind, n) SELECT $1, t, a, k, n FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[]) AS u(t, a, k, n)
             ON CONFLICT (tenant, type, attr, kind) DO UPDATE SET n = type_attr_counts.n + excluded.n",
        )
        .bind(tenant)
        .bind(&t)
        .bind(&a)
        .bind(&k)
        .bind(&n)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM type_attr_counts WHERE tenant = $1 AND n <= 0")
            .bind(tenant)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// FROM/WHERE of the candidates, with `$n` placeholders starting at 1.
    fn candidate_sql(&self, tenant: &str, q: &EntityQuery) -> (String, Vec<Arg>) {
        let mut args = vec![Arg::Text(tenant.to_string())];
        // PostgreSQL's planner picks the driving index (types, GiST, ids) from these predicates itself.
        let mut sql = String::from("FROM entities e WHERE e.tenant = $1");
        if let Some(ids) = &q.ids {
            args.push(Arg::TextArray(ids.clone()));
            sql.push_str(&format!(" AND e.id = ANY(${})", args.len()));
        }
        if let Some(types) = &q.types {
            args.push(Arg::TextArray(types.clone()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM entity_types t WHERE t.tenant = e.tenant AND t.type = ANY(${}) AND t.seq = e.seq)",
                args.len()
            ));
        }
        if let Some((attr, r)) = &q.bbox {
            let base = args.len();
            args.push(Arg::Float(r.min().x));
            args.push(Arg::Float(r.min().y));
            args.push(Arg::Float(r.max().x));
            args.push(Arg::Float(r.max().y));
            args.push(Arg::Text(attr.clone()));
            let pred = if self.postgis {
                format!(
                    "g.geom && ST_MakeEnvelope(${}, ${}, ${}, ${}, 4326)",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4
                )
            } else {
                format!(
                    "g.bbox && box(point(${}, ${}), point(${}, ${}))",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4
                )
            };
            // The spatial index drives: its candidates are found first (MATERIALIZED keeps the planner from
            // walking entities in seq order and probing the index for each), then ordered by seq.
            sql = format!(
                "FROM (WITH g AS MATERIALIZED (SELECT DISTINCT g.seq FROM geo_index g WHERE g.attr = ${} AND {pred}) SELECT e.* FROM g JOIN entities e ON e.seq = g.seq) e{}",
                base + 5,
                &sql["FROM entities e".len()..]
            );
        }
        (sql, args)
    }

    async fn run_query(&self, tenant: &str, q: &EntityQuery) -> Result<QueryPage, StoreError> {
        let (from, args) = self.candidate_sql(tenant, q);
        let mut page = QueryPage::default();
        match &q.filter {
            None => {
                if q.count {
                    let sql = format!("SELECT count(*) {from}");
                    let row = bind_all(sqlx::query(&sql), &args)
                        .fetch_one(&self.pool)
                        .await?;
                    page.total = Some(row.try_get::<i64, _>(0)? as u64);
                }
                if q.limit > 0 {
                    let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
                    let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
                    let mut a = args.clone();
                    a.push(Arg::Int(limit));
                    a.push(Arg::Int(offset));
                    let sql = format!(
                        "SELECT e.doc {from} ORDER BY e.seq LIMIT ${} OFFSET ${}",
                        a.len() - 1,
                        a.len()
                    );
                    let rows = bind_all(sqlx::query(&sql), &a)
                        .fetch_all(&self.pool)
                        .await?;
                    for r in rows {
                        page.entities.push(decode(&r.try_get::<String, _>(0)?)?);
                    }
                }
            }
            Some(filter) => {
                let n = args.len();
                let sql = format!(
                    "SELECT e.seq, e.doc {from} AND e.seq > ${} ORDER BY e.seq LIMIT ${}",
                    n + 1,
                    n + 2
                );
                // The first chunk is about what the page needs; later ones grow, up to SCAN_CHUNK.
                let mut chunk = i64::try_from(q.offset.saturating_add(q.limit).saturating_add(8))
                    .unwrap_or(SCAN_CHUNK)
                    .clamp(16, SCAN_CHUNK);
                let mut cursor: i64 = 0;
                let mut matched: u64 = 0;
                'scan: loop {
                    let mut a = args.clone();
                    a.push(Arg::Int(cursor));
                    a.push(Arg::Int(chunk));
                    let rows: Vec<PgRow> = bind_all(sqlx::query(&sql), &a)
                        .fetch_all(&self.pool)
                        .await?;
                    let got = rows.len() as i64;
                    for r in rows {
                        cursor = r.try_get::<i64, _>(0)?;
                        let e = decode(&r.try_get::<String, _>(1)?)?;
                        if !filter(&e) {
                            continue;
                        }
                        matched += 1;
                        if matched as usize > q.offset && page.entities.len() < q.limit {
                            page.entities.push(e);
                        }
                        if !q.count && page.entities.len() >= q.limit {
                            break 'scan;
                        }
                    }
                    if got < chunk {
                        break;
                    }
                    chunk = (chunk * 2).min(SCAN_CHUNK);
                }
                if q.count {
                    page.total = Some(matched);
                }
            }
        }
        // Queries here parse every candidate for the filter anyway; stored views serve lookups by id.
        if q.view_ctx.is_some() {
            page.found = std::mem::take(&mut page.entities)
                .into_iter()
                .map(Found::Entity)
                .collect();
        }
        Ok(page)
    }
}

#[async_trait]
impl EntityStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        observe("ping", started);
        Ok(())
    }

    async fn get(&self, tenant: &str, id: &str) -> Result<Option<Entity>, StoreError> {
        let started = Instant::now();
        let row: Option<(String,)> =
            sqlx::query_as("SELECT doc FROM entities WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        observe("get", started);
        row.map(|(d,)| decode(&d)).transpose()
    }

    async fn get_found(
        &self,
        tenant: &str,
        id: &str,
        ctx: u64,
    ) -> Result<Option<Found>, StoreError> {
        let started = Instant::now();
        let row: Option<(bool, String)> = sqlx::query_as(
            "SELECT view_ctx IS NOT DISTINCT FROM $3, CASE WHEN view_ctx = $3 THEN view ELSE doc END FROM entities WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(ctx as i64)
        .fetch_optional(&self.pool)
        .await?;
        observe("get", started);
        match row {
            Some((true, view)) => Ok(Some(Found::Rendered(view.into_bytes()))),
            Some((false, doc)) => decode(&doc).map(|e| Some(Found::Entity(e))),
            None => Ok(None),
        }
    }

    async fn modify_many_viewed(
        &self,
        tenant: &str,
        ops: Vec<(String, ModifyFn)>,
        view: Option<ViewFn>,
    ) -> Result<Vec<Result<Modified, NgsiError>>, StoreError> {
        let started = Instant::now();
        let mut tx = self.pool.begin().await?;
        let mut ids: Vec<String> = ops.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        // Lock every row the batch touches, in id order (a stable order avoids deadlocks between batches).
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT seq, id, doc FROM entities WHERE tenant = $1 AND id = ANY($2) ORDER BY id FOR UPDATE")
                .bind(tenant)
                .bind(&ids)
                .fetch_all(&mut *tx)
                .await?;
        let mut slots: HashMap<String, Slot> = HashMap::with_capacity(ids.len());
        for (seq, id, doc) in rows {
            let e = decode(&doc)?;
            slots.insert(
                id,
                Slot {
                    seq: Some(seq),
                    original: Some(e.clone()),
                    current: Some(e),
                },
            );
        }
        let mut order: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(ops.len());
        let mut rendered: HashMap<String, crate::View> = HashMap::new();
        let mut history: Vec<temporal::Pending> = Vec::new();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        for (id, f) in ops {
            let slot = slots.entry(id.clone()).or_insert_with(|| {
                order.push(id.clone());
                Slot {
                    seq: None,
                    original: None,
                    current: None,
                }
            });
            let outcome = match f(slot.current.as_ref()) {
                Ok(Change::PutRendered(e, v)) => {
                    rendered.insert(id.clone(), v);
                    Ok(Change::Put(e))
                }
                Ok(Change::Put(e)) => {
                    // An earlier rendering of this id no longer holds.
                    rendered.remove(&id);
                    Ok(Change::Put(e))
                }
                other => other,
            };
            match outcome {
                Err(e) => out.push(Err(e)),
                Ok(Change::Keep) => out.push(Ok(Modified {
                    before: slot.current.clone(),
                    after: slot.current.clone(),
                })),
                Ok(Change::Put(new) | Change::PutRendered(new, _)) => {
                    let instances =
                        crate::temporal::changed_instances(slot.current.as_ref(), &new, now_ms)?;
                    let types_changed = slot.current.as_ref().is_none_or(|old| {
                        misto_ngsild::entity::types(old) != misto_ngsild::entity::types(&new)
                    });
                    if types_changed || !instances.is_empty() {
                        history.push(temporal::Pending {
                            id: id.clone(),
                            types: crate::temporal::entity_types(&new),
                            types_changed,
                            instances,
                        });
                    }
                    let before = slot.current.replace(new.clone());
                    out.push(Ok(Modified {
                        before,
                        after: Some(new),
                    }));
                }
                Ok(Change::Delete) => {
                    let before = slot.current.take();
                    out.push(Ok(Modified {
                        before,
                        after: None,
                    }));
                }
            }
        }
        // Write the net effect per entity.
        let mut counts: BTreeMap<AttrKey, i64> = BTreeMap::new();
        let mut new_ids = Vec::new();
        let mut new_docs = Vec::new();
        let mut new_exp: Vec<Option<String>> = Vec::new();
        let mut new_view: Vec<Option<String>> = Vec::new();
        let mut new_vctx: Vec<Option<i64>> = Vec::new();
        let mut upd_view: Vec<Option<String>> = Vec::new();
        let mut upd_vctx: Vec<Option<i64>> = Vec::new();
        let view_of = |id: &str, e: &Entity| match rendered
            .get(id)
            .cloned()
            .or_else(|| view.as_ref().and_then(|f| f(e)))
        {
            Some(v) => (String::from_utf8(v.json).ok(), Some(v.ctx as i64)),
            None => (None, None),
        };
        let mut fresh: Vec<&Entity> = Vec::new();
        let mut upd_seq = Vec::new();
        let mut upd_doc = Vec::new();
        let mut upd_exp: Vec<Option<String>> = Vec::new();
        let mut reindex: Vec<(i64, &Entity)> = Vec::new();
        let mut deleted = Vec::new();
        let mut keys: Vec<&String> = slots.keys().collect();
        keys.sort();
        for id in keys {
            let s = &slots[id];
            match (s.seq, &s.original, &s.current) {
                (None, _, Some(e)) => {
                    new_ids.push(id.clone());
                    new_docs.push(encode(e)?);
                    new_exp.push(expires_of(e));
                    let (v, c) = view_of(id, e);
                    new_view.push(v);
                    new_vctx.push(c);
                    fresh.push(e);
                    delta(None, Some(e), &mut counts);
                }
                (Some(seq), Some(o), Some(e)) if o != e => {
                    upd_seq.push(seq);
                    upd_doc.push(encode(e)?);
                    upd_exp.push(expires_of(e));
                    let (v, c) = view_of(id, e);
                    upd_view.push(v);
                    upd_vctx.push(c);
                    if misto_ngsild::entity::types(o) != misto_ngsild::entity::types(e)
                        || geo_boxes(o) != geo_boxes(e)
                    {
                        reindex.push((seq, e));
                    }
                    delta(Some(o), Some(e), &mut counts);
                }
                (Some(seq), Some(o), None) => {
                    deleted.push(seq);
                    delta(Some(o), None, &mut counts);
                }
                _ => {}
            }
        }
        if !new_ids.is_empty() {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "INSERT INTO entities (tenant, id, doc, expires_at, view, view_ctx) SELECT $1, i, d, x::timestamptz, v, c FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[]) AS u(i, d, x, v, c) RETURNING seq, id",
            )
            .bind(tenant)
            .bind(&new_ids)
            .bind(&new_docs)
            .bind(&new_exp)
            .bind(&new_view)
            .bind(&new_vctx)
            .fetch_all(&mut *tx)
            .await?;
            let seqs: HashMap<String, i64> = rows.into_iter().map(|(s, i)| (i, s)).collect();
            for (id, e) in new_ids.iter().zip(fresh) {
                if let Some(seq) = seqs.get(id) {
                    self.write_indexes(&mut tx, tenant, *seq, e).await?;
                }
            }
        }
        if !upd_seq.is_empty() {
            sqlx::query(
                "UPDATE entities e SET doc = u.d, expires_at = u.x::timestamptz, view = u.v, view_ctx = u.c FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[]) AS u(s, d, x, v, c) WHERE e.seq = u.s",
            )
            .bind(&upd_seq)
            .bind(&upd_doc)
            .bind(&upd_exp)
            .bind(&upd_view)
            .bind(&upd_vctx)
            .execute(&mut *tx)
            .await?;
            for (seq, e) in reindex {
                Self::clear_indexes(&mut tx, seq).await?;
                self.write_indexes(&mut tx, tenant, seq, e).await?;
            }
        }
        if !deleted.is_empty() {
            sqlx::query("DELETE FROM entities WHERE seq = ANY($1)")
                .bind(&deleted)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM entity_types WHERE seq = ANY($1)")
                .bind(&deleted)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM geo_index WHERE seq = ANY($1)")
                .bind(&deleted)
                .execute(&mut *tx)
                .await?;
        }
        Self::write_counts(&mut tx, tenant, counts).await?;
        temporal::record(&mut tx, tenant, &history).await?;
        notify::journal(&mut tx, tenant, &out).await?;
        tx.commit().await?;
        observe("modify", started);
        Ok(out)
    }

    async fn query(&self, tenant: &str, q: &EntityQuery) -> Result<QueryPage, StoreError> {
        let started = Instant::now();
        let r = self.run_query(tenant, q).await;
        observe("query", started);
        r
    }

    async fn purge(&self, tenant: &str, q: &EntityQuery) -> Result<Vec<String>, StoreError> {
        let all = EntityQuery {
            offset: 0,
            limit: usize::MAX,
            count: false,
            ..q.clone()
        };
        let page = self.run_query(tenant, &all).await?;
        let ids: Vec<String> = page
            .entities
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
            .collect();
        let ops: Vec<(String, ModifyFn)> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    Box::new(|_: Option<&Entity>| Ok(Change::Delete)) as ModifyFn,
                )
            })
            .collect();
        let outcomes = self.modify_many(tenant, ops).await?;
        Ok(ids
            .into_iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Ok(m) if m.before.is_some()))
            .map(|(id, _)| id)
            .collect())
    }

    async fn types(&self, tenant: &str) -> Result<Vec<TypeSummary>, StoreError> {
        let started = Instant::now();
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT type, attr, kind, n FROM type_attr_counts WHERE tenant = $1 AND type <> '' AND n > 0 ORDER BY type, attr, kind",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<TypeSummary> = Vec::new();
        for (t, a, k, n) in rows {
            if out.last().map(|s| s.type_iri != t).unwrap_or(true) {
                out.push(TypeSummary {
                    type_iri: t.clone(),
                    count: 0,
                    attributes: Vec::new(),
                });
            }
            if let Some(s) = out.last_mut() {
                if a.is_empty() {
                    s.count = n as u64;
                } else {
                    s.attributes.push((a, k, n as u64));
                }
            }
        }
        observe("types", started);
        Ok(out)
    }

    async fn expire(&self, now: &str) -> Result<Vec<(String, String)>, StoreError> {
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT tenant, id FROM entities WHERE expires_at IS NOT NULL AND expires_at <= $1::text::timestamptz ORDER BY tenant LIMIT 10000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (t, id) in due {
            by_tenant.entry(t).or_default().push(id);
        }
        let mut out = Vec::new();
        for (tenant, ids) in by_tenant {
            let now_s = now.to_string();
            let ops: Vec<(String, ModifyFn)> = ids
                .iter()
                .map(|id| {
                    let now_c = now_s.clone();
                    // Re-check under the lock: the entity may have been given a new expiry meanwhile.
                    let f: ModifyFn = Box::new(move |cur: Option<&Entity>| {
                        let due = cur
                            .and_then(|e| e.get("expiresAt").and_then(Value::as_str))
                            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                            .zip(now_c.parse::<jiff::Timestamp>().ok())
                            .is_some_and(|(exp, now)| exp <= now);
                        Ok(if due { Change::Delete } else { Change::Keep })
                    });
                    (id.clone(), f)
                })
                .collect();
            let res = self.modify_many(&tenant, ops).await?;
            for (id, r) in ids.into_iter().zip(res) {
                if matches!(r, Ok(ref m) if m.before.is_some() && m.after.is_none()) {
                    out.push((tenant.clone(), id));
                }
            }
        }
        Ok(out)
    }

    async fn tenants(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT tenant, n FROM type_attr_counts WHERE type = '' AND attr = '' AND n > 0 ORDER BY tenant")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(t, n)| (t, n as u64)).collect())
    }
}
