//! The temporal API (§5.6.11–5.6.19, §5.7.3–5.7.4): the history of entities' attributes, read as normalized,
//! simplified (`temporalValues`) or aggregated (`aggregatedValues`) temporal representations, and written
//! instance by instance. Instances come from every entity change (the store writes them in the change's
//! transaction) and from the temporal write operations ([`write`]).

pub mod aggregate;
pub mod means;
pub mod render;
pub mod retention;
pub mod timerel;
mod write;

use std::collections::BTreeMap;

use misto_ngsild::{Context, Entity, NgsiError, Result};
use misto_store::temporal::{
    datetime_of, Series, StoredInstance, Take, TemporalEntity, TemporalSelect, TimeRange,
};
use misto_store::EntityFilter;
use serde_json::{Map, Value};

use crate::query::{EntityQueryParams, GeoParams};
use crate::Broker;
use aggregate::Method;

/// Most instances of one attribute in one answer; longer histories are paged (§6.3.x, 206 + Content-Range).
pub const INSTANCES_PER_ATTRIBUTE: usize = 1000;

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemporalFormat {
    #[default]
    Normalized,
    TemporalValues,
    Aggregated,
}

/// Parameters of a temporal retrieval or query, as received (short names).
#[derive(Debug, Clone, Default)]
pub struct TemporalParams {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<String>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<String>,
    pub geo: GeoParams,
    pub geo_json: Option<Value>,
    pub scope_q: Option<String>,
    pub timerel: Option<String>,
    pub time_at: Option<String>,
    pub end_time_at: Option<String>,
    pub timeproperty: Option<String>,
    pub last_n: Option<usize>,
    pub format: TemporalFormat,
    pub sys_attrs: bool,
    pub aggr_methods: Option<Vec<String>>,
    pub aggr_period: Option<String>,
    pub limit: Option<usize>,
    pub offset: usize,
    pub count: bool,
}

/// An answer: temporal entities, and when some history was cut, the Content-Range of what was returned.
#[derive(Debug, Default)]
pub struct TemporalAnswer {
    pub entities: Vec<Value>,
    /// `date-time <start>-<end>/<size>` when instances were left out (answered with 206).
    pub content_range: Option<String>,
    pub total: Option<u64>,
    /// More entities follow this page.
    pub more: bool,
}

/// The compiled parts of a request that apply to every entity.
struct Plan {
    attrs: Option<Vec<String>>,
    range: TimeRange,
    last_n: Option<usize>,
    format: TemporalFormat,
    sys_attrs: bool,
    methods: Vec<Method>,
    period: Option<jiff::Span>,
}

/// One entity's rendered history and, when it was cut, the instants up to which it is complete.
struct Built {
    entity: Map<String, Value>,
    instances: usize,
    cut: Option<Cut>,
}

/// Where an attribute's history was cut: it is complete from `start` to `end` (in the order read).
#[derive(Debug, Clone, Copy)]
struct Cut {
    start: i64,
    end: i64,
}

impl TemporalParams {
    fn plan(&self, ctx: &Context) -> Result<Plan> {
        let range = timerel::range(
            self.timerel.as_deref(),
            self.time_at.as_deref(),
            self.end_time_at.as_deref(),
            self.timeproperty.as_deref(),
        )?;
        if self.last_n == Some(0) {
            return Err(NgsiError::bad_data("lastN must be a positive integer"));
        }
        for n in self.attrs.iter().flatten() {
            misto_ngsild::validate::check_name(n)
                .map_err(|e| NgsiError::bad_data(format!("attrs: {e}")))?;
        }
        let (methods, period) = match self.format {
            TemporalFormat::Aggregated => (
                aggregate::methods(self.aggr_methods.as_deref())?,
                self.aggr_period
                    .as_deref()
                    .map(aggregate::period)
                    .transpose()?,
            ),
            _ => {
                // Given without aggregatedValues they change nothing, but must still be valid.
                if let Some(m) = &self.aggr_methods {
                    for x in m {
                        Method::parse(x)?;
                    }
                }
                if let Some(p) = &self.aggr_period {
                    aggregate::period(p)?;
                }
                (Vec::new(), None)
            }
        };
        Ok(Plan {
            attrs: self
                .attrs
                .as_ref()
                .map(|a| a.iter().map(|n| ctx.expand(n)).collect()),
            range,
            last_n: self.last_n,
            format: self.format,
            sys_attrs: self.sys_attrs,
            methods,
            period,
        })
    }

    /// The entity-selecting part, in the form entity queries compile.
    fn selection(&self) -> EntityQueryParams {
        EntityQueryParams {
            ids: self.ids.clone(),
            id_pattern: self.id_pattern.clone(),
            types: self.types.clone(),
            q: self.q.clone(),
            geo: self.geo.clone(),
            geo_json: self.geo_json.clone(),
            scope_q: self.scope_q.clone(),
            ..Default::default()
        }
    }

    /// Whether the filter needs the entity's current state (q, geoQ, scopeQ) rather than its id and types.
    fn needs_state(&self) -> bool {
        self.q.is_some()
            || self.geo.georel.is_some()
            || self.geo_json.is_some()
            || self.scope_q.is_some()
    }
}

fn stub(e: &TemporalEntity) -> Entity {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(e.id.clone()));
    m.insert(
        "type".into(),
        Value::Array(e.types.iter().cloned().map(Value::String).collect()),
    );
    m
}

fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity {id} has no temporal representation"))
}

impl Broker {
    /// `GET /temporal/entities/{id}`.
    pub async fn temporal_entity(
        &self,
        tenant: &str,
        ctx: &Context,
        id: &str,
        p: &TemporalParams,
    ) -> Result<TemporalAnswer> {
        crate::entities::check_id(id)?;
        let plan = p.plan(ctx)?;
        let found = self
            .store
            .temporal_entities(
                tenant,
                &TemporalSelect {
                    ids: Some(vec![id.to_string()]),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await?;
        let e = found.into_iter().next().ok_or_else(|| not_found(id))?;
        if let Some(t) = p.types.as_deref() {
            crate::query::check_types(&stub(&e), t, ctx, id)?;
        }
        let built = self.build(tenant, ctx, &e, &plan).await?;
        let mut answer = TemporalAnswer::default();
        let mut entities = vec![built];
        answer.content_range = cut_all(&mut entities, &plan);
        answer.entities = entities
            .into_iter()
            .map(|b| Value::Object(b.entity))
            .collect();
        Ok(answer)
    }

    /// `GET /temporal/entities` and `POST /temporalEntityOperations/query`.
    pub async fn temporal_query(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &TemporalParams,
    ) -> Result<TemporalAnswer> {
        let sel = p.selection();
        let names_attrs = p.attrs.as_ref().is_some_and(|a| !a.is_empty());
        if !sel.has_selector() && !names_attrs && p.ids.is_none() {
            return Err(NgsiError::bad_data(
                "a temporal query needs at least one of type, attrs, q, geoQ or id",
            ));
        }
        let plan = p.plan(ctx)?;
        let limit = p.limit.unwrap_or(self.config.default_limit);
        if limit > self.config.max_limit {
            return Err(NgsiError::new(
                misto_ngsild::ErrorKind::TooManyResults,
                format!(
                    "limit {limit} is above the maximum of {}",
                    self.config.max_limit
                ),
            ));
        }
        if limit == 0 && !p.count {
            return Err(NgsiError::bad_data(
                "limit=0 is only allowed together with count=true",
            ));
        }
        let compiled = crate::query::compile(&sel, ctx, usize::MAX)?;
        let filter: Option<EntityFilter> = compiled.store.filter.clone();
        let mut select = TemporalSelect {
            ids: compiled.store.ids.clone(),
            types: compiled.store.types.clone(),
            after: None,
            limit: 200,
        };
        let mut answer = TemporalAnswer::default();
        let mut page: Vec<Built> = Vec::new();
        let mut matched: u64 = 0;
        'scan: loop {
            let chunk = self.store.temporal_entities(tenant, &select).await?;
            let n = chunk.len();
            for e in chunk {
                select.after = Some(e.id.clone());
                if let Some(f) = &filter {
                    let passes = if p.needs_state() {
                        match self.store.get(tenant, &e.id).await? {
                            Some(cur) => f(&cur),
                            None => false,
                        }
                    } else {
                        f(&stub(&e))
                    };
                    if !passes {
                        continue;
                    }
                }
                let built = self.build(tenant, ctx, &e, &plan).await?;
                // Entities without history in range are not part of the answer.
                if built.instances == 0 {
                    continue;
                }
                if matched as usize >= p.offset {
                    if page.len() < limit {
                        page.push(built);
                    } else {
                        answer.more = true;
                        if !p.count {
                            break 'scan;
                        }
                    }
                }
                matched += 1;
            }
            if n < select.limit {
                break;
            }
        }
        if p.count {
            answer.total = Some(matched);
        }
        answer.content_range = cut_all(&mut page, &plan);
        answer.entities = page.into_iter().map(|b| Value::Object(b.entity)).collect();
        Ok(answer)
    }

    /// One entity's temporal representation under `plan`.
    async fn build(
        &self,
        tenant: &str,
        ctx: &Context,
        e: &TemporalEntity,
        plan: &Plan,
    ) -> Result<Built> {
        let series = self
            .store
            .temporal_series(tenant, &e.id, plan.attrs.as_deref())
            .await?;
        let mut out = Built {
            entity: render::head(&e.id, &e.types, ctx),
            instances: 0,
            cut: None,
        };
        if series.is_empty() {
            return Ok(out);
        }
        let sids: Vec<i64> = series.iter().map(|s| s.sid).collect();
        if plan.format == TemporalFormat::Aggregated {
            return self
                .build_aggregated(tenant, ctx, &series, &sids, plan, out)
                .await;
        }
        let take = match plan.last_n {
            Some(n) => Take::Last(n.min(INSTANCES_PER_ATTRIBUTE + 1)),
            None => Take::First(INSTANCES_PER_ATTRIBUTE + 1),
        };
        let lists = self
            .store
            .temporal_instances(tenant, &sids, plan.range, take)
            .await?;
        let mut by_attr: BTreeMap<&str, Vec<(&Series, Vec<StoredInstance>)>> = BTreeMap::new();
        for (s, mut list) in series.iter().zip(lists) {
            if list.is_empty() {
                continue;
            }
            if list.len() > INSTANCES_PER_ATTRIBUTE {
                // Cut to the page; the answer says up to which instant this history is complete.
                match take {
                    Take::First(_) => {
                        list.truncate(INSTANCES_PER_ATTRIBUTE);
                    }
                    Take::Last(_) => {
                        list.remove(0);
                    }
                }
                let first = list
                    .first()
                    .map(|i| i.inst.time(plan.range.prop))
                    .unwrap_or(0);
                let last = list
                    .last()
                    .map(|i| i.inst.time(plan.range.prop))
                    .unwrap_or(0);
                let cut = match take {
                    Take::First(_) => Cut {
                        start: first,
                        end: last,
                    },
                    Take::Last(_) => Cut {
                        start: last,
                        end: first,
                    },
                };
                out.cut = Some(match (out.cut, take) {
                    (None, _) => cut,
                    (Some(c), Take::First(_)) => Cut {
                        start: c.start.min(cut.start),
                        end: c.end.min(cut.end),
                    },
                    (Some(c), Take::Last(_)) => Cut {
                        start: c.start.max(cut.start),
                        end: c.end.max(cut.end),
                    },
                });
            }
            out.instances += list.len();
            by_attr.entry(s.attr.as_str()).or_default().push((s, list));
        }
        for (attr, group) in by_attr {
            let value = match plan.format {
                TemporalFormat::TemporalValues => {
                    let mut items = Vec::new();
                    for (s, list) in &group {
                        items.push(render::temporal_values(list, &s.dataset, plan.range.prop)?);
                    }
                    if items.len() == 1 {
                        items.remove(0)
                    } else {
                        Value::Array(items)
                    }
                }
                _ => {
                    let mut items = Vec::new();
                    for (_, list) in &group {
                        items.extend(render::normalized(list, ctx, plan.sys_attrs)?);
                    }
                    Value::Array(items)
                }
            };
            out.entity.insert(ctx.compact(attr), value);
        }
        Ok(out)
    }

    async fn build_aggregated(
        &self,
        tenant: &str,
        ctx: &Context,
        series: &[Series],
        sids: &[i64],
        plan: &Plan,
        mut out: Built,
    ) -> Result<Built> {
        // The bounds of the histories in range: buckets start at timeAt, else at the first instance.
        let firsts = self
            .store
            .temporal_instances(tenant, sids, plan.range, Take::First(1))
            .await?;
        let lasts = self
            .store
            .temporal_instances(tenant, sids, plan.range, Take::Last(1))
            .await?;
        let times = |l: &[Vec<StoredInstance>]| -> Vec<i64> {
            l.iter()
                .flatten()
                .map(|i| i.inst.time(plan.range.prop))
                .collect()
        };
        let (Some(first), Some(last)) = (
            times(&firsts).into_iter().min(),
            times(&lasts).into_iter().max(),
        ) else {
            return Ok(out);
        };
        let from = plan.range.from.unwrap_or(first);
        let to = plan.range.to.unwrap_or(last.saturating_add(1));
        let buckets = aggregate::buckets(from, to, plan.period)?;
        let values = self
            .store
            .temporal_aggregate(
                tenant,
                sids,
                plan.range.prop,
                &buckets,
                plan.methods.contains(&Method::DistinctCount),
            )
            .await?;
        let mut by_attr: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        for ((s, v), last) in series.iter().zip(values).zip(&lasts) {
            if v.iter().all(|b| b.count == 0) {
                continue;
            }
            out.instances += v.iter().map(|b| b.count as usize).sum::<usize>();
            let kind = render::kind_of(last)?;
            by_attr
                .entry(s.attr.as_str())
                .or_default()
                .push(render::aggregated(
                    &kind,
                    &s.dataset,
                    &plan.methods,
                    &buckets,
                    &v,
                ));
        }
        for (attr, mut items) in by_attr {
            let v = if items.len() == 1 {
                items.remove(0)
            } else {
                Value::Array(items)
            };
            out.entity.insert(ctx.compact(attr), v);
        }
        Ok(out)
    }
}

/// When some history was cut, cut every attribute of every entity at the same instant (so that the answer is
/// complete over one range) and describe that range as a Content-Range value.
fn cut_all(entities: &mut [Built], plan: &Plan) -> Option<String> {
    let cuts: Vec<Cut> = entities.iter().filter_map(|b| b.cut).collect();
    let last_n = plan.last_n.is_some();
    let cut = cuts.into_iter().reduce(|a, b| {
        if last_n {
            Cut {
                start: a.start.max(b.start),
                end: a.end.max(b.end),
            }
        } else {
            Cut {
                start: a.start.min(b.start),
                end: a.end.min(b.end),
            }
        }
    })?;
    if plan.format != TemporalFormat::Aggregated {
        for b in entities.iter_mut() {
            for (k, v) in b.entity.iter_mut() {
                if k == "id" || k == "type" {
                    continue;
                }
                keep_within(v, cut.end, last_n, plan);
            }
        }
    }
    let start = plan.range.from.filter(|_| !last_n).unwrap_or(cut.start);
    let size = plan.last_n.map_or("*".to_string(), |n| n.to_string());
    let text = |ms: i64| datetime_of(ms).as_str().unwrap_or_default().to_string();
    Some(format!(
        "date-time {}-{}/{}",
        text(start),
        text(cut.end),
        size
    ))
}

/// Drop instances beyond `end` (after it when reading forwards, before it when reading the last ones).
fn keep_within(v: &mut Value, end: i64, last_n: bool, plan: &Plan) {
    let prop = match plan.range.prop {
        misto_store::temporal::TimeProperty::ObservedAt => "observedAt",
        misto_store::temporal::TimeProperty::CreatedAt => "createdAt",
        misto_store::temporal::TimeProperty::ModifiedAt => "modifiedAt",
    };
    let inside = |t: Option<i64>| t.is_none_or(|t| if last_n { t >= end } else { t <= end });
    let ms = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(misto_ngsild::validate::parse_datetime)
            .map(|t| t.as_millisecond())
    };
    match v {
        Value::Array(items) => {
            for item in items.iter_mut() {
                if item.get("values").is_some() || item.get("objects").is_some() {
                    keep_within(item, end, last_n, plan);
                }
            }
            items.retain(|i| i.get(prop).is_none() || inside(ms(i.get(prop))));
        }
        Value::Object(o) => {
            for list in o.values_mut() {
                if let Value::Array(pairs) = list {
                    pairs.retain(|p| !p.is_array() || inside(ms(p.get(1))));
                }
            }
        }
        _ => {}
    }
}
