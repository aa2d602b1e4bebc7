//! SQLite side of [`crate::temporal::TemporalStore`]: series, attribute instances and their aggregation.
//! Instances of entity changes are written by the writer in the change's own transaction ([`record`]).

use std::collections::HashMap;

use async_trait::async_trait;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::SqliteStore;
use crate::temporal::{
    Bucket, NewInstance, Series, StoredInstance, Take, TemporalEntity, TemporalSelect,
    TemporalStore, TimeProperty, TimeRange,
};
use crate::StoreError;

/// The column a time property is stored in.
fn column(p: TimeProperty) -> &'static str {
    match p {
        TimeProperty::ObservedAt => "t",
        TimeProperty::CreatedAt => "created",
        TimeProperty::ModifiedAt => "modified",
    }
}

thread_local! {
    /// Name numbers the writer has read or given (names are never deleted). Only the writer thread fills it;
    /// it is emptied whenever the writer rolls work back ([`forget_names`]), which may undo a number it gave.
    static NAMES: std::cell::RefCell<HashMap<(String, String), i64>> = std::cell::RefCell::new(HashMap::new());
}

/// The writer rolled something back: name numbers given since the last commit may not exist.
pub(super) fn forget_names() {
    NAMES.with(|n| n.borrow_mut().clear());
}

/// The number of a name (attribute or type IRI) of the tenant, given one on first use.
fn name_id(c: &Connection, tenant: &str, name: &str) -> Result<i64, StoreError> {
    let key = (tenant.to_string(), name.to_string());
    if let Some(nid) = NAMES.with(|n| n.borrow().get(&key).copied()) {
        return Ok(nid);
    }
    let nid = lookup_or_give_name(c, tenant, name)?;
    NAMES.with(|n| n.borrow_mut().insert(key, nid));
    Ok(nid)
}

fn lookup_or_give_name(c: &Connection, tenant: &str, name: &str) -> Result<i64, StoreError> {
    let found: Option<i64> = c
        .prepare_cached("SELECT nid FROM temporal_names WHERE tenant = ?1 AND name = ?2")?
        .query_row(params![tenant, name], |r| r.get(0))
        .optional()?;
    if let Some(nid) = found {
        return Ok(nid);
    }
    c.prepare_cached("INSERT INTO temporal_names (tenant, name) VALUES (?1, ?2)")?
        .execute(params![tenant, name])?;
    Ok(c.last_insert_rowid())
}

/// The number of an entity with a history (None: it has none).
fn entity_eid(c: &Connection, tenant: &str, entity: &str) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT eid FROM temporal_entities WHERE tenant = ?1 AND id = ?2")?
            .query_row(params![tenant, entity], |r| r.get(0))
            .optional()?,
    )
}

/// Record an entity's types for its history: replace what entity `eid` had, or create the entity (None).
fn write_types(
    c: &Connection,
    tenant: &str,
    entity: &str,
    eid: Option<i64>,
    types: &[String],
) -> Result<i64, StoreError> {
    let text = serde_json::to_string(types).map_err(|e| StoreError::Other(e.to_string()))?;
    let eid = match eid {
        Some(eid) => {
            c.prepare_cached(
                "UPDATE temporal_entities SET types = ?2 WHERE eid = ?1 AND types <> ?2",
            )?
            .execute(params![eid, text])?;
            c.prepare_cached("DELETE FROM temporal_types WHERE eid = ?1")?
                .execute(params![eid])?;
            eid
        }
        None => {
            c.prepare_cached(
                "INSERT INTO temporal_entities (tenant, id, types) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![tenant, entity, text])?;
            c.last_insert_rowid()
        }
    };
    let mut ins =
        c.prepare_cached("INSERT OR IGNORE INTO temporal_types (eid, nid) VALUES (?1, ?2)")?;
    for t in types {
        ins.execute(params![eid, name_id(c, tenant, t)?])?;
    }
    Ok(eid)
}

/// The series number of (entity, attribute, datasetId), created on first use (`fresh`: the entity's history
/// begins now, so it has no series yet).
fn series_id(
    c: &Connection,
    tenant: &str,
    eid: i64,
    fresh: bool,
    attr: &str,
    dataset: &str,
) -> Result<i64, StoreError> {
    let aid = name_id(c, tenant, attr)?;
    if !fresh {
        let found: Option<i64> = c
            .prepare_cached(
                "SELECT sid FROM temporal_series WHERE eid = ?1 AND aid = ?2 AND dataset = ?3",
            )?
            .query_row(params![eid, aid, dataset], |r| r.get(0))
            .optional()?;
        if let Some(sid) = found {
            return Ok(sid);
        }
    }
    c.prepare_cached("INSERT INTO temporal_series (eid, aid, dataset) VALUES (?1, ?2, ?3)")?
        .execute(params![eid, aid, dataset])?;
    Ok(c.last_insert_rowid())
}

/// Append instances to an entity's history, in the writer's transaction. `types_changed`: the entity's types
/// are new or differ from those recorded.
pub(super) fn record(
    c: &Connection,
    tenant: &str,
    entity: &str,
    types: &[String],
    types_changed: bool,
    instances: &[NewInstance],
) -> Result<(), StoreError> {
    let found = entity_eid(c, tenant, entity)?;
    let fresh = found.is_none();
    let eid = match found {
        Some(eid) if !types_changed => eid,
        found => write_types(c, tenant, entity, found, types)?,
    };
    let mut sids: HashMap<(&str, &str), i64> = HashMap::new();
    let mut ins = c.prepare_cached(
        "INSERT INTO attr_instances (sid, t, observed, created, modified, num, doc, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for i in instances {
        let key = (i.attr.as_str(), i.dataset.as_str());
        let sid = match sids.get(&key) {
            Some(s) => *s,
            None => {
                let s = series_id(c, tenant, eid, fresh, &i.attr, &i.dataset)?;
                sids.insert(key, s);
                s
            }
        };
        ins.execute(params![
            sid,
            i.t_ms,
            i.observed,
            i.created_ms,
            i.modified_ms,
            i.num,
            i.doc,
            i.expires_ms
        ])?;
    }
    Ok(())
}

const INSTANCE_COLUMNS: &str = "iid, t, observed, created, modified, num, doc, expires";

fn instance_of(
    r: &rusqlite::Row<'_>,
    attr: &str,
    dataset: &str,
) -> Result<StoredInstance, rusqlite::Error> {
    Ok(StoredInstance {
        iid: r.get(0)?,
        inst: NewInstance {
            attr: attr.to_string(),
            dataset: dataset.to_string(),
            t_ms: r.get(1)?,
            observed: r.get(2)?,
            created_ms: r.get(3)?,
            modified_ms: r.get(4)?,
            num: r.get(5)?,
            doc: r.get(6)?,
            expires_ms: r.get(7)?,
        },
    })
}

/// The (attr, dataset) of a series of the tenant (None: not the tenant's).
fn series_of(
    c: &Connection,
    tenant: &str,
    sid: i64,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT n.name, s.dataset FROM temporal_series s
         JOIN temporal_entities e ON e.eid = s.eid JOIN temporal_names n ON n.nid = s.aid
         WHERE s.sid = ?1 AND e.tenant = ?2",
    )?
    .query_row(params![sid, tenant], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?)
}

/// The series numbers of an attribute of an entity (every datasetId).
fn attr_sids(
    c: &Connection,
    tenant: &str,
    entity: &str,
    attr: &str,
) -> Result<Vec<i64>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT s.sid FROM temporal_entities e
         JOIN temporal_series s ON s.eid = e.eid JOIN temporal_names n ON n.nid = s.aid
         WHERE e.tenant = ?1 AND e.id = ?2 AND n.name = ?3",
    )?;
    let rows = st.query_map(params![tenant, entity, attr], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn placeholders(n: usize) -> String {
    vec!["?"; n.max(1)].join(",")
}

#[async_trait]
impl TemporalStore for SqliteStore {
    async fn temporal_entities(
        &self,
        tenant: &str,
        sel: &TemporalSelect,
    ) -> Result<Vec<TemporalEntity>, StoreError> {
        use rusqlite::types::Value as V;
        let (tenant, sel) = (tenant.to_string(), sel.clone());
        self.read("temporal", move |c| {
            let mut args: Vec<V> = vec![V::Text(tenant)];
            let mut sql = String::from("SELECT e.id, e.types FROM temporal_entities e");
            if let Some(types) = &sel.types {
                sql.push_str(&format!(
                    " WHERE e.tenant = ?1 AND EXISTS (SELECT 1 FROM temporal_types t JOIN temporal_names n ON n.nid = t.nid WHERE t.eid = e.eid AND n.name IN ({}))",
                    placeholders(types.len())
                ));
                if types.is_empty() {
                    args.push(V::Null);
                }
                args.extend(types.iter().map(|t| V::Text(t.clone())));
            } else {
                sql.push_str(" WHERE e.tenant = ?1");
            }
            if let Some(ids) = &sel.ids {
                sql.push_str(&format!(" AND e.id IN ({})", placeholders(ids.len())));
                if ids.is_empty() {
                    args.push(V::Null);
                }
                args.extend(ids.iter().map(|i| V::Text(i.clone())));
            }
            if let Some(after) = &sel.after {
                sql.push_str(" AND e.id > ?");
                args.push(V::Text(after.clone()));
            }
            sql.push_str(&format!(
                " ORDER BY e.id LIMIT {}",
                i64::try_from(sel.limit).unwrap_or(-1)
            ));
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query(params_from_iter(args.iter()))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let types: String = r.get(1)?;
                out.push(TemporalEntity {
                    id: r.get(0)?,
                    types: serde_json::from_str(&types)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn temporal_series(
        &self,
        tenant: &str,
        entity: &str,
        attrs: Option<&[String]>,
    ) -> Result<Vec<Series>, StoreError> {
        let (tenant, entity) = (tenant.to_string(), entity.to_string());
        let attrs = attrs.map(<[String]>::to_vec);
        self.read("temporal", move |c| {
            let mut st = c.prepare_cached(
                "SELECT s.sid, n.name, s.dataset FROM temporal_entities e
                 JOIN temporal_series s ON s.eid = e.eid JOIN temporal_names n ON n.nid = s.aid
                 WHERE e.tenant = ?1 AND e.id = ?2 ORDER BY n.name, s.dataset",
            )?;
            let rows = st.query_map(params![tenant, entity], |r| {
                Ok(Series {
                    sid: r.get(0)?,
                    attr: r.get(1)?,
                    dataset: r.get(2)?,
                })
            })?;
            let mut out = Vec::new();
            for s in rows {
                let s = s?;
                if attrs.as_ref().is_none_or(|a| a.contains(&s.attr)) {
                    out.push(s);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn temporal_instances(
        &self,
        tenant: &str,
        sids: &[i64],
        range: TimeRange,
        take: Take,
    ) -> Result<Vec<Vec<StoredInstance>>, StoreError> {
        let (tenant, sids) = (tenant.to_string(), sids.to_vec());
        self.read("temporal", move |c| {
            let col = column(range.prop);
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let (order, n) = match take {
                Take::First(n) => ("ASC", n),
                Take::Last(n) => ("DESC", n),
            };
            let mut st = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS} FROM attr_instances WHERE sid = ?1 AND {col} >= ?2 AND {col} < ?3 AND (expires IS NULL OR expires > ?5) ORDER BY {col} {order} LIMIT ?4"
            ))?;
            let mut out = Vec::with_capacity(sids.len());
            for sid in sids {
                let Some((attr, dataset)) = series_of(c, &tenant, sid)? else {
                    out.push(Vec::new());
                    continue;
                };
                let rows = st.query_map(
                    params![
                        sid,
                        range.from.unwrap_or(i64::MIN),
                        range.to.unwrap_or(i64::MAX),
                        i64::try_from(n).unwrap_or(i64::MAX),
                        now_ms
                    ],
                    |r| instance_of(r, &attr, &dataset),
                )?;
                let mut list = rows.collect::<Result<Vec<_>, _>>()?;
                if matches!(take, Take::Last(_)) {
                    list.reverse();
                }
                out.push(list);
            }
            Ok(out)
        })
        .await
    }

    async fn temporal_aggregate(
        &self,
        tenant: &str,
        sids: &[i64],
        prop: TimeProperty,
        buckets: &[(i64, i64)],
        distinct: bool,
    ) -> Result<Vec<Vec<Bucket>>, StoreError> {
        let (tenant, sids, buckets) = (tenant.to_string(), sids.to_vec(), buckets.to_vec());
        let want_distinct = distinct;
        self.read("temporal", move |c| {
            let col = column(prop);
            // Everything but the distinct count reads the (sid, t, num) index alone.
            let mut st = c.prepare_cached(&format!(
                "SELECT count(*), count(num), total(num), total(num * num), min(num), max(num) FROM attr_instances WHERE sid = ?1 AND {col} >= ?2 AND {col} < ?3"
            ))?;
            let mut distinct_st = c.prepare_cached(&format!(
                "SELECT count(DISTINCT coalesce(num, doc)) FROM attr_instances WHERE sid = ?1 AND {col} >= ?2 AND {col} < ?3"
            ))?;
            let mut out = Vec::with_capacity(sids.len());
            for sid in sids {
                if series_of(c, &tenant, sid)?.is_none() {
                    out.push(Vec::new());
                    continue;
                }
                let mut list = Vec::with_capacity(buckets.len());
                for (from, to) in &buckets {
                    let mut b = st.query_row(params![sid, from, to], |r| {
                        Ok(Bucket {
                            count: r.get::<_, i64>(0)? as u64,
                            distinct: 0,
                            numeric: r.get::<_, i64>(1)? as u64,
                            sum: r.get(2)?,
                            sumsq: r.get(3)?,
                            min: r.get(4)?,
                            max: r.get(5)?,
                        })
                    })?;
                    if want_distinct && b.count > 0 {
                        b.distinct = distinct_st
                            .query_row(params![sid, from, to], |r| r.get::<_, i64>(0))?
                            as u64;
                    }
                    list.push(b);
                }
                out.push(list);
            }
            Ok(out)
        })
        .await
    }

    async fn temporal_append(
        &self,
        tenant: &str,
        entity: &str,
        types: &[String],
        instances: Vec<NewInstance>,
    ) -> Result<(), StoreError> {
        let (tenant, entity, types) = (tenant.to_string(), entity.to_string(), types.to_vec());
        self.write(move |c| record(c, &tenant, &entity, &types, true, &instances))
            .await
    }

    async fn temporal_delete_entity(&self, tenant: &str, entity: &str) -> Result<bool, StoreError> {
        let (tenant, entity) = (tenant.to_string(), entity.to_string());
        self.write(move |c| {
            let Some(eid) = entity_eid(c, &tenant, &entity)? else {
                return Ok(false);
            };
            c.execute(
                "DELETE FROM attr_instances WHERE sid IN (SELECT sid FROM temporal_series WHERE eid = ?1)",
                params![eid],
            )?;
            c.execute("DELETE FROM temporal_series WHERE eid = ?1", params![eid])?;
            c.execute("DELETE FROM temporal_types WHERE eid = ?1", params![eid])?;
            c.execute("DELETE FROM temporal_entities WHERE eid = ?1", params![eid])?;
            Ok(true)
        })
        .await
    }

    async fn temporal_delete_attr(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        dataset: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (tenant, entity, attr) = (tenant.to_string(), entity.to_string(), attr.to_string());
        let dataset = dataset.map(str::to_string);
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "SELECT s.sid FROM temporal_entities e
                 JOIN temporal_series s ON s.eid = e.eid JOIN temporal_names n ON n.nid = s.aid
                 WHERE e.tenant = ?1 AND e.id = ?2 AND n.name = ?3 AND (?4 IS NULL OR s.dataset = ?4)",
            )?;
            let sids = st
                .query_map(params![tenant, entity, attr, dataset], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            for sid in &sids {
                c.execute("DELETE FROM attr_instances WHERE sid = ?1", params![sid])?;
                c.execute("DELETE FROM temporal_series WHERE sid = ?1", params![sid])?;
            }
            Ok(!sids.is_empty())
        })
        .await
    }

    async fn temporal_replace_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
        with: NewInstance,
    ) -> Result<bool, StoreError> {
        let (tenant, entity, attr) = (tenant.to_string(), entity.to_string(), attr.to_string());
        self.write(move |c| {
            let sids = attr_sids(c, &tenant, &entity, &attr)?;
            let mut n = 0;
            for sid in sids {
                n += c
                    .prepare_cached(
                        "UPDATE attr_instances SET t = ?3, observed = ?4, created = ?5, modified = ?6, num = ?7, doc = ?8, expires = ?9 WHERE iid = ?1 AND sid = ?2",
                    )?
                    .execute(params![
                        iid,
                        sid,
                        with.t_ms,
                        with.observed,
                        with.created_ms,
                        with.modified_ms,
                        with.num,
                        with.doc,
                        with.expires_ms
                    ])?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn temporal_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<Option<StoredInstance>, StoreError> {
        let (tenant, entity, attr) = (tenant.to_string(), entity.to_string(), attr.to_string());
        self.read("temporal", move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {INSTANCE_COLUMNS}, s.dataset FROM attr_instances a JOIN temporal_series s ON s.sid = a.sid
                 JOIN temporal_entities e ON e.eid = s.eid JOIN temporal_names n ON n.nid = s.aid
                 WHERE a.iid = ?1 AND e.tenant = ?2 AND e.id = ?3 AND n.name = ?4"
            ))?;
            Ok(st
                .query_row(params![iid, tenant, entity, attr], |r| {
                    let ds: String = r.get(8)?;
                    instance_of(r, &attr, &ds)
                })
                .optional()?)
        })
        .await
    }

    async fn temporal_delete_instance(
        &self,
        tenant: &str,
        entity: &str,
        attr: &str,
        iid: i64,
    ) -> Result<bool, StoreError> {
        let (tenant, entity, attr) = (tenant.to_string(), entity.to_string(), attr.to_string());
        self.write(move |c| {
            let sids = attr_sids(c, &tenant, &entity, &attr)?;
            let mut n = 0;
            for sid in sids {
                n += c
                    .prepare_cached("DELETE FROM attr_instances WHERE iid = ?1 AND sid = ?2")?
                    .execute(params![iid, sid])?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn temporal_expire(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM attr_instances WHERE expires IS NOT NULL AND expires <= ?1",
                )?
                .execute(params![now_ms])?;
            Ok(n as u64)
        })
        .await
    }

    async fn temporal_retain(
        &self,
        type_iri: &str,
        before_ms: i64,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let type_iri = type_iri.to_string();
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM attr_instances WHERE iid IN (
                         SELECT a.iid FROM temporal_names n
                         JOIN temporal_types ty ON ty.nid = n.nid
                         JOIN temporal_series s ON s.eid = ty.eid
                         JOIN attr_instances a ON a.sid = s.sid
                         WHERE n.name = ?1 AND a.t < ?2 LIMIT ?3)",
                )?
                .execute(params![type_iri, before_ms, batch])?;
            Ok(n as u64)
        })
        .await
    }
}
