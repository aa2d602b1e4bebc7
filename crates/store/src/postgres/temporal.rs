//! PostgreSQL side of [`crate::temporal::TemporalStore`]: series, attribute instances and their aggregation.
//! Instances of entity changes are written in the change's own transaction ([`record`]).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};

use super::PgStore;
use crate::temporal::{
    Bucket, NewInstance, Series, StoredInstance, Take, TemporalEntity, TemporalSelect,
    TemporalStore, TimeProperty, TimeRange,
};
use crate::StoreError;

fn column(p: TimeProperty) -> &'static str {
    match p {
        TimeProperty::ObservedAt => "t",
        TimeProperty::CreatedAt => "created",
        TimeProperty::ModifiedAt => "modified",
    }
}

/// A pending history write of one entity: its types, whether they are new, and its new instances.
pub(super) struct Pending {
    pub id: String,
    pub types: Vec<String>,
    pub types_changed: bool,
    pub instances: Vec<NewInstance>,
}

async fn write_types(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    entity: &str,
    types: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO temporal_entities (tenant, id, types) VALUES ($1, $2, $3)
         ON CONFLICT (tenant, id) DO UPDATE SET types = excluded.types WHERE temporal_entities.types <> excluded.types",
    )
    .bind(tenant)
    .bind(entity)
    .bind(types)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM temporal_types WHERE tenant = $1 AND id = $2")
        .bind(tenant)
        .bind(entity)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO temporal_types (tenant, type, id) SELECT $1, t, $2 FROM UNNEST($3::text[]) AS t ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(entity)
    .bind(types)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn series_id(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    entity: &str,
    attr: &str,
    dataset: &str,
    types: &[String],
) -> Result<i64, StoreError> {
    let select = "SELECT sid FROM temporal_series WHERE tenant = $1 AND entity = $2 AND attr = $3 AND dataset = $4";
    let found: Option<i64> = sqlx::query_scalar(select)
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .bind(dataset)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(sid) = found {
        return Ok(sid);
    }
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM temporal_entities WHERE tenant = $1 AND id = $2)",
    )
    .bind(tenant)
    .bind(entity)
    .fetch_one(&mut **tx)
    .await?;
    if !known {
        write_types(tx, tenant, entity, types).await?;
    }
    // A concurrent writer may create the same series: DO NOTHING waits for it, and the select then sees it.
    sqlx::query(
        "INSERT INTO temporal_series (tenant, entity, attr, dataset) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(entity)
    .bind(attr)
    .bind(dataset)
    .execute(&mut **tx)
    .await?;
    Ok(sqlx::query_scalar(select)
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .bind(dataset)
        .fetch_one(&mut **tx)
        .await?)
}

/// Write the histories of a modification, in its transaction.
pub(super) async fn record(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    pending: &[Pending],
) -> Result<(), StoreError> {
    for p in pending {
        if p.types_changed {
            write_types(tx, tenant, &p.id, &p.types).await?;
        }
        if p.instances.is_empty() {
            continue;
        }
        let mut sids: HashMap<(&str, &str), i64> = HashMap::new();
        let n = p.instances.len();
        let (mut sid, mut t, mut obs) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut cr, mut md, mut num, mut doc) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut exp = Vec::with_capacity(n);
        for i in &p.instances {
            let key = (i.attr.as_str(), i.dataset.as_str());
            let s = match sids.get(&key) {
                Some(s) => *s,
                None => {
                    let s = series_id(tx, tenant, &p.id, &i.attr, &i.dataset, &p.types).await?;
                    sids.insert(key, s);
                    s
                }
            };
            sid.push(s);
            t.push(i.t_ms);
            obs.push(i.observed);
            cr.push(i.created_ms);
            md.push(i.modified_ms);
            num.push(i.num);
            doc.push(i.doc.clone());
            exp.push(i.expires_ms);
        }
        sqlx::query(
            "INSERT INTO attr_instances (sid, t, observed, created, modified, num, doc, expires)
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::bool[], $4::int8[], $5::int8[], $6::float8[], $7::text[], $8::int8[])",
        )
        .bind(&sid)
        .bind(&t)
        .bind(&obs)
        .bind(&cr)
        .bind(&md)
        .bind(&num)
        .bind(&doc)
        .bind(&exp)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

const INSTANCE_COLUMNS: &str = "iid, t, observed, created, modified, num, doc, expires";

fn instance_of(
    r: &sqlx::postgres::PgRow,
    attr: &str,
    dataset: &str,
) -> Result<StoredInstance, StoreError> {
    Ok(StoredInstance {
        iid: r.try_get(0)?,
        inst: NewInstance {
            attr: attr.to_string(),
            dataset: dataset.to_string(),
            t_ms: r.try_get(1)?,
            observed: r.try_get(2)?,
            created_ms: r.try_get(3)?,
            modified_ms: r.try_get(4)?,
            num: r.try_get(5)?,
            doc: r.try_get(6)?,
            expires_ms: r.try_get(7)?,
        },
    })
}

impl PgStore {
    async fn series_of(
        &self,
        tenant: &str,
        sid: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT attr, dataset FROM temporal_series WHERE sid = $1 AND tenant = $2",
        )
        .bind(sid)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn attr_sids(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: &str,
        entity: &str,
        attr: &str,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT sid FROM temporal_series WHERE tenant = $1 AND entity = $2 AND attr = $3",
        )
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .fetch_all(&mut **tx)
        .await?)
    }
}

#[async_trait]
impl TemporalStore for PgStore {
    async fn temporal_entities(
        &self,
        tenant: &str,
        sel: &TemporalSelect,
    ) -> Result<Vec<TemporalEntity>, StoreError> {
        let rows: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT e.id, e.types FROM temporal_entities e
             WHERE e.tenant = $1
               AND ($2::text[] IS NULL OR e.id = ANY($2))
               AND ($3::text[] IS NULL OR EXISTS (SELECT 1 FROM temporal_types t WHERE t.tenant = e.tenant AND t.id = e.id AND t.type = ANY($3)))
               AND ($4::text IS NULL OR e.id > $4)
             ORDER BY e.id LIMIT $5",
        )
        .bind(tenant)
        .bind(sel.ids.as_deref())
        .bind(sel.types.as_deref())
        .bind(sel.after.as_deref())
        .bind(i64::try_from(sel.limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, types)| TemporalEntity { id, types })
            .collect())
    }

    async fn temporal_series(
        &self,
        tenant: &str,
        entity: &str,
        attrs: Option<&[String]>,
    ) -> Result<Vec<Series>, StoreError> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT sid, attr, dataset FROM temporal_series WHERE tenant = $1 AND entity = $2
               AND ($3::text[] IS NULL OR attr = ANY($3)) ORDER BY attr, dataset",
        )
        .bind(tenant)
        .bind(entity)
        .bind(attrs)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(sid, attr, dataset)| Series { sid, attr, dataset })
            .collect())
    }

    async fn temporal_instances(
        &self,
        tenant: &str,
        sids: &[i64],
        range: TimeRange,
        take: Take,
    ) -> Result<Vec<Vec<StoredInstance>>, StoreError> {
        let col = column(range.prop);
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let (order, n) = match take {
            Take::First(n) => ("ASC", n),
            Take::Last(n) => ("DESC", n),
        };
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM attr_instances WHERE sid = $1 AND {col} >= $2 AND {col} < $3 AND (expires IS NULL OR expires > $5) ORDER BY {col} {order} LIMIT $4"
        );
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            let Some((attr, dataset)) = self.series_of(tenant, *sid).await? else {
                out.push(Vec::new());
                continue;
            };
            let rows = sqlx::query(&sql)
                .bind(sid)
                .bind(range.from.unwrap_or(i64::MIN))
                .bind(range.to.unwrap_or(i64::MAX))
                .bind(i64::try_from(n).unwrap_or(i64::MAX))
                .bind(now_ms)
                .fetch_all(&self.pool)
                .await?;
            let mut list = rows
                .iter()
                .map(|r| instance_of(r, &attr, &dataset))
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(take, Take::Last(_)) {
                list.reverse();
            }
            out.push(list);
        }
        Ok(out)
    }

    async fn temporal_aggregate(
        &self,
        tenant: &str,
        sids: &[i64],
        prop: TimeProperty,
        buckets: &[(i64, i64)],
        distinct: bool,
    ) -> Result<Vec<Vec<Bucket>>, StoreError> {
        let col = column(prop);
        let starts: Vec<i64> = buckets.iter().map(|b| b.0).collect();
        let ends: Vec<i64> = buckets.iter().map(|b| b.1).collect();
        let distinct = if distinct {
            "count(DISTINCT coalesce(num::text, doc))"
        } else {
            "0::int8"
        };
        // One statement per series: each bucket is an index range scan (a lateral join per bucket).
        let sql = format!(
            "SELECT b.n, x.* FROM UNNEST($2::int8[], $3::int8[]) WITH ORDINALITY AS b(s, e, n)
             CROSS JOIN LATERAL (
                 SELECT count(*), count(num), coalesce(sum(num), 0), coalesce(sum(num * num), 0), min(num), max(num),
                        {distinct}
                 FROM attr_instances WHERE sid = $1 AND {col} >= b.s AND {col} < b.e) x
             ORDER BY b.n"
        );
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            if self.series_of(tenant, *sid).await?.is_none() {
                out.push(Vec::new());
                continue;
            }
            let rows = sqlx::query(&sql)
                .bind(sid)
                .bind(&starts)
                .bind(&ends)
                .fetch_all(&self.pool)
                .await?;
            let mut list = Vec::with_capacity(rows.len());
            for r in rows {
                list.push(Bucket {
                    count: r.try_get::<i64, _>(1)? as u64,
                    numeric: r.try_get::<i64, _>(2)? as u64,
                    sum: r.try_get(3)?,
                    sumsq: r.try_get(4)?,
                    min: r.try_get(5)?,
                    max: r.try_get(6)?,
                    distinct: r.try_get::<i64, _>(7)? as u64,
                });
            }
            out.push(list);
        }
        Ok(out)
    }

    async fn temporal_append(
        &self,
        tenant: &str,
        entity: &str,
        types: &[String],
        instances: Vec<NewInstance>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        record(
            &mut tx,
            tenant,
            &[Pending {
                id: entity.to_string(),
                types: types.to_vec(),
                types_changed: true,
                instances,
            }],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn temporal_delete_entity(&self, tenant: &str, entity: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM attr_instances WHERE sid IN (SELECT sid FROM temporal_series WHERE tenant = $1 AND entity = $2)")
            .bind(tenant)
            .bind(entity)
            .execute(&mut *tx)
            .await?;
        for table in [
            "temporal_series WHERE tenant = $1 AND entity = $2",
            "temporal_types WHERE tenant = $1 AND id = $2",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .bind(tenant)
                .bind(entity)
                .execute(&mut *tx)
                .await?;
        }
        let n = sqlx::query("DELETE FROM temporal_entities WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(entity)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn temporal_delete_attr(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        dataset: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let sids: Vec<i64> = sqlx::query_scalar(
            "DELETE FROM temporal_series WHERE tenant = $1 AND entity = $2 AND attr = $3 AND ($4::text IS NULL OR dataset = $4) RETURNING sid",
        )
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .bind(dataset)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM attr_instances WHERE sid = ANY($1)")
            .bind(&sids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(!sids.is_empty())
    }

    async fn temporal_replace_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
        with: NewInstance,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let sids = self.attr_sids(&mut tx, tenant, entity, attr).await?;
        let n = sqlx::query(
            "UPDATE attr_instances SET t = $3, observed = $4, created = $5, modified = $6, num = $7, doc = $8, expires = $9 WHERE iid = $1 AND sid = ANY($2)",
        )
        .bind(iid)
        .bind(&sids)
        .bind(with.t_ms)
        .bind(with.observed)
        .bind(with.created_ms)
        .bind(with.modified_ms)
        .bind(with.num)
        .bind(&with.doc)
        .bind(with.expires_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn temporal_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<Option<StoredInstance>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS}, s.dataset FROM attr_instances a JOIN temporal_series s ON s.sid = a.sid
             WHERE a.iid = $1 AND s.tenant = $2 AND s.entity = $3 AND s.attr = $4"
        ))
        .bind(iid)
        .bind(tenant)
        .bind(entity)
        .bind(attr)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => {
                let ds: String = r.try_get(8)?;
                Ok(Some(instance_of(&r, attr, &ds)?))
            }
            None => Ok(None),
        }
    }

    async fn temporal_delete_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let sids = self.attr_sids(&mut tx, tenant, entity, attr).await?;
        let n = sqlx::query("DELETE FROM attr_instances WHERE iid = $1 AND sid = ANY($2)")
            .bind(iid)
            .bind(&sids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn temporal_expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n =
            sqlx::query("DELETE FROM attr_instances WHERE expires IS NOT NULL AND expires <= $1")
                .bind(now_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(n)
    }

    async fn temporal_retain(
        &self,
        type_iri: &str,
        before_ms: i64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let n = sqlx::query(
            "DELETE FROM attr_instances WHERE iid IN (
                 SELECT a.iid FROM temporal_types ty
                 JOIN temporal_series s ON s.tenant = ty.tenant AND s.entity = ty.id
                 JOIN attr_instances a ON a.sid = s.sid
                 WHERE ty.type = $1 AND a.t < $2 LIMIT $3)",
        )
        .bind(type_iri)
        .bind(before_ms)
        .bind(i64::try_from(batch).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }
}
