//! Entity queries (§5.7.2 GET /entities, §5.7.? POST /entityOperations/query): from request parameters to a
//! storage query with SQL-side candidate selection and an in-process exact filter.

use std::collections::HashSet;
use std::sync::Arc;

use misto_ngsild::entity::{attribute_names, types, Entity};
use misto_ngsild::{Context, NgsiError, Result};
use misto_query::geoq::{geometry_from_geojson, GeoQuery};
use misto_query::q::QExpr;
use misto_store::EntityQuery;
use serde_json::Value;

use crate::typeexpr::{ScopeQuery, TypeExpr};
use crate::Broker;

/// Geo-query parameters as received.
#[derive(Debug, Clone, Default)]
pub struct GeoParams {
    pub georel: Option<String>,
    pub geometry: Option<String>,
    pub coordinates: Option<String>,
    pub geoproperty: Option<String>,
}

/// Query parameters as received (short names, not yet expanded).
#[derive(Debug, Clone, Default)]
pub struct EntityQueryParams {
    pub ids: Option<Vec<String>>,
    pub id_pattern: Option<String>,
    pub types: Option<String>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<String>,
    pub geo: GeoParams,
    /// A geoQ given as JSON (POST /entityOperations/query).
    pub geo_json: Option<Value>,
    pub scope_q: Option<String>,
    pub limit: Option<usize>,
    pub offset: usize,
    pub count: bool,
    /// `local=true`: only this broker's own entities (it has no others; it qualifies a purge).
    pub local: bool,
    /// `orderBy` criteria (§4.23) and the `collation` for strings.
    pub order_by: Option<Vec<String>>,
    pub collation: Option<String>,
    /// The reference of distance ordering: `orderFrom` coordinates (JSON text) and their geometry type
    /// (Point when not given).
    pub order_from: Option<String>,
    pub order_geometry: Option<String>,
    /// `expandValues`: attributes whose values in `q` are expanded with the @context like vocab terms.
    pub expand_values: Option<Vec<String>>,
}

/// A page of entities and the total if asked.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub entities: Vec<Entity>,
    pub total: Option<u64>,
    /// More matches follow this page (§4.12: the client is told there are remaining elements).
    pub more: bool,
}

/// `?type=` on a single-entity URL: ResourceNotFound unless the entity matches the type expression.
pub fn check_types(e: &Entity, types: &str, ctx: &Context, id: &str) -> Result<()> {
    let mut te = TypeExpr::parse(types)?;
    te.expand(ctx);
    let have = misto_ngsild::entity::types(e);
    if te.matches(&have) {
        Ok(())
    } else {
        Err(NgsiError::not_found(format!(
            "entity {id} is not of type {types}"
        )))
    }
}

/// A context source filter (`csf`) has the grammar of `q`.
pub fn check_csf(csf: &str) -> Result<()> {
    misto_query::q::parse(csf)
        .map(|_| ())
        .map_err(|e| NgsiError::bad_data(format!("csf is not a valid filter: {e}")))
}

/// How many matches to fetch for a page of `limit`: one more shows whether more follow (none for a count-only
/// query).
fn probe(limit: usize) -> usize {
    if limit == 0 {
        0
    } else {
        limit.saturating_add(1)
    }
}

/// A page for a plain normalized answer (see [`Broker::query_found`]).
#[derive(Debug, Default)]
pub struct FoundPage {
    pub found: Vec<misto_store::Found>,
    pub total: Option<u64>,
    pub more: bool,
}

/// Compiled query: storage criteria and the exact filter.
pub struct CompiledQuery {
    pub store: EntityQuery,
    /// Expanded attribute names asked for in `attrs` (projection).
    pub attrs: Option<HashSet<String>>,
}

impl EntityQueryParams {
    /// Does the query select anything at all (the spec requires at least one selector)?
    /// Whether the query names what kind of entities it wants (§5.7.2: type, attrs, q or geoQ; id and
    /// idPattern only narrow such a selection).
    /// `attrs` naming only system members and a `q` over system members only are too wide (§5.7.2.4).
    pub fn has_selector(&self) -> bool {
        const SYSTEM: &[&str] = &[
            "createdAt",
            "modifiedAt",
            "deletedAt",
            "id",
            "type",
            "scope",
        ];
        let attrs_select = self
            .attrs
            .as_ref()
            .is_some_and(|a| a.iter().any(|n| !SYSTEM.contains(&n.as_str())));
        let q_selects = self.q.as_deref().is_some_and(|q| {
            misto_query::q::parse(q)
                .map(|e| !e.attribute_names().is_empty())
                // A q that does not parse is reported as such by the query itself.
                .unwrap_or(true)
        });
        self.types.is_some()
            || attrs_select
            || q_selects
            || self.geo.georel.is_some()
            || self.geo_json.is_some()
    }
}

/// One exact condition on a candidate entity.
type Check = Box<dyn Fn(&Entity) -> bool + Send + Sync>;

/// Record members a check reads (unless the checks already read everything).
fn note(reads: &mut Option<Vec<String>>, names: &[&str]) {
    if let Some(r) = reads.as_mut() {
        r.extend(names.iter().map(|n| n.to_string()));
    }
}

/// How many Relationships deep a `q` reaches into Linked Entities (0 when it does not, or does not parse:
/// the query itself reports that).
pub fn q_link_depth(q: &str) -> usize {
    misto_query::q::parse(q).map_or(0, |e| e.link_depth())
}

/// `q` parsed, with its names expanded in `ctx`, and the values of the `expandValues` attributes too.
fn parse_q(q: &str, ctx: &Context, expand_values: Option<&[String]>) -> Result<QExpr> {
    let mut expr: QExpr =
        misto_query::q::parse(q).map_err(|e| NgsiError::bad_data(format!("q: {e}")))?;
    if let Some(attrs) = expand_values {
        expr.map_values(attrs, &mut |v: &str| ctx.expand(v));
    }
    expr.map_attribute_names(&mut |n: &str| ctx.expand(n));
    Ok(expr)
}

/// Compile parameters in a context. Terms of `q` about Linked Entities match nothing here: queries answer
/// them first (see [`Broker::prepared_q`]) and use [`compile_with`].
pub fn compile(p: &EntityQueryParams, ctx: &Context, limit: usize) -> Result<CompiledQuery> {
    compile_with(p, ctx, limit, None)
}

/// [`compile`] with `q` already prepared (None: parse `p.q`).
pub fn compile_with(
    p: &EntityQueryParams,
    ctx: &Context,
    limit: usize,
    prepared_q: Option<QExpr>,
) -> Result<CompiledQuery> {
    let mut store = EntityQuery {
        limit,
        offset: p.offset,
        count: p.count,
        ..Default::default()
    };
    let mut checks: Vec<Check> = Vec::new();
    // The top-level members the checks read (None: any of them), so stores can parse only those.
    let mut reads: Option<Vec<String>> = Some(Vec::new());
    // Whether the checks read of attribute instances only their kind and value (see
    // `EntityQuery::filter_values_only`): all do except a `q` naming sub-attributes or metadata.
    let mut values_only = true;

    if let Some(ids) = &p.ids {
        for id in ids {
            if !misto_ngsild::validate::is_uri(id) {
                return Err(NgsiError::bad_data(format!("id: '{id}' is not a URI")));
            }
        }
        store.ids = Some(ids.clone());
    }
    if let Some(pat) = &p.id_pattern {
        if let Some(at) = stacked_quantifier(pat) {
            return Err(NgsiError::bad_data(format!(
                "idPattern is not a valid regular expression: a repetition operator at {at} repeats nothing"
            )));
        }
        let re = regex::RegexBuilder::new(pat)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                NgsiError::bad_data(format!("idPattern is not a valid regular expression: {e}"))
            })?;
        note(&mut reads, &["id"]);
        checks.push(Box::new(move |e: &Entity| {
            e.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| re.is_match(id))
        }));
    }
    // `type=*` selects every entity type (§4.17): no type criterion at all.
    if let Some(t) = p.types.as_deref().filter(|t| *t != "*") {
        let mut te = TypeExpr::parse(t)?;
        te.expand(ctx);
        let mut atoms = te.atoms();
        atoms.sort();
        atoms.dedup();
        store.types = Some(atoms);
        if !te.is_any_of() {
            note(&mut reads, &["type"]);
            checks.push(Box::new(move |e: &Entity| te.matches(&types(e))));
        }
    }
    for n in p.attrs.iter().flatten() {
        misto_ngsild::validate::check_name(n)
            .map_err(|e| NgsiError::bad_data(format!("attrs: {e}")))?;
    }
    let attrs: Option<HashSet<String>> = p
        .attrs
        .as_ref()
        .map(|a| a.iter().map(|n| ctx.expand(n)).collect());
    if let Some(want) = attrs.clone() {
        reads = None;
        checks.push(Box::new(move |e: &Entity| {
            attribute_names(e).any(|n| want.contains(n))
        }));
    }
    let expr = match prepared_q {
        Some(e) => Some(e),
        None => {
            p.q.as_deref()
                .map(|q| parse_q(q, ctx, p.expand_values.as_deref()))
                .transpose()?
        }
    };
    if let Some(expr) = expr {
        note(&mut reads, &expr.attribute_names());
        note(&mut reads, &expr.entity_members());
        values_only &= expr.reads_values_only();
        checks.push(Box::new(move |e: &Entity| expr.matches_map(e)));
    }
    let geo = match (&p.geo_json, &p.geo.georel) {
        (Some(j), _) => {
            Some(GeoQuery::from_json(j).map_err(|e| NgsiError::bad_data(format!("geoQ: {e}")))?)
        }
        (None, Some(rel)) => Some(
            GeoQuery::from_params(
                rel,
                p.geo.geometry.as_deref().unwrap_or(""),
                p.geo.coordinates.as_deref().unwrap_or(""),
                p.geo.geoproperty.as_deref(),
            )
            .map_err(|e| NgsiError::bad_data(format!("geoQ: {e}")))?,
        ),
        (None, None) => {
            if p.geo.geometry.is_some() || p.geo.coordinates.is_some() {
                return Err(NgsiError::bad_data(
                    "geoQ: geometry and coordinates need georel",
                ));
            }
            None
        }
    };
    if let Some(g) = geo {
        let prop = ctx.expand(&g.geoproperty);
        note(&mut reads, &[prop.as_str()]);
        if let Some(r) = g.candidate_bbox() {
            store.bbox = Some((prop.clone(), r));
            let g = g.clone();
            store.bbox_test = Some(Arc::new(move |b: &geo::Rect<f64>| g.may_match_within(b)));
        }
        checks.push(Box::new(move |e: &Entity| {
            e.get(&prop).and_then(Value::as_array).is_some_and(|list| {
                list.iter().any(|i| {
                    i.get("value")
                        .and_then(|v| geometry_from_geojson(v).ok())
                        .is_some_and(|geom| g.matches(&geom))
                })
            })
        }));
    }
    if let Some(s) = &p.scope_q {
        let sq = ScopeQuery::parse(s)?;
        note(&mut reads, &["scope"]);
        checks.push(Box::new(move |e: &Entity| {
            let scopes: Vec<&str> = match e.get("scope") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(Value::String(s)) => vec![s.as_str()],
                _ => vec![],
            };
            sq.matches(&scopes)
        }));
    }
    if !checks.is_empty() {
        store.filter_values_only = values_only && reads.is_some();
        store.filter_reads = reads;
        store.filter = Some(Arc::new(move |e: &Entity| checks.iter().all(|c| c(e))));
    }
    Ok(CompiledQuery { store, attrs })
}

/// Where a pattern has a repetition operator directly after another (`a**`, `a+*`): POSIX and
/// ECMAScript regular expressions refuse it, although the `regex` crate reads it as a nested repetition.
/// A `?` after a repetition makes it lazy and is allowed.
fn stacked_quantifier(pat: &str) -> Option<usize> {
    let mut after_quantifier = false;
    let mut in_class = false;
    let mut chars = pat.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
            after_quantifier = false;
            continue;
        }
        if in_class {
            in_class = c != ']';
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                after_quantifier = false;
            }
            '*' | '+' if after_quantifier => return Some(i),
            '*' | '+' | '?' | '}' => after_quantifier = true,
            _ => after_quantifier = false,
        }
    }
    None
}

impl Broker {
    /// `q` parsed and expanded, its terms about Linked Entities answered: each sub-query (`rel{name==…}`)
    /// becomes the set of entities it matches, innermost first.
    pub async fn prepared_q(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
    ) -> Result<Option<QExpr>> {
        let Some(q) = &p.q else { return Ok(None) };
        let mut expr = parse_q(q, ctx, p.expand_values.as_deref())?;
        loop {
            let pending = expr.pending_links();
            if pending.is_empty() {
                break;
            }
            let mut answers = Vec::with_capacity(pending.len());
            for link in pending {
                let term = link.term;
                let sub = EntityQuery {
                    types: link.entity_type.map(|t| vec![t]),
                    filter: Some(Arc::new(move |e: &Entity| term.matches_map(e))),
                    limit: usize::MAX,
                    ..Default::default()
                };
                let ids: HashSet<String> = self
                    .store
                    .query(tenant, &sub)
                    .await?
                    .entities
                    .into_iter()
                    .filter_map(crate::views::visible)
                    .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect();
                answers.push(ids);
            }
            expr.resolve_links(answers);
        }
        Ok(Some(expr))
    }

    /// Query entities.
    pub async fn query_entities(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
    ) -> Result<QueryResult> {
        let limit = self.checked_limit(p)?;
        if let Some(items) = &p.order_by {
            return self.query_ordered(tenant, ctx, p, items, limit).await;
        }
        // One more than the page shows whether more follow.
        let q = self.prepared_q(tenant, ctx, p).await?;
        let c = compile_with(p, ctx, probe(limit), q)?;
        let mut page = self.store.query(tenant, &c.store).await?;
        let more = page.entities.len() > limit;
        page.entities.truncate(limit);
        let entities = page
            .entities
            .into_iter()
            .filter_map(crate::views::visible)
            .collect();
        Ok(QueryResult {
            entities,
            total: page.total,
            more,
        })
    }

    /// [`Broker::query_entities`] for a plain normalized answer: each entity on the page comes as its stored
    /// rendering when that was made with `ctx`, else as the entity.
    pub async fn query_found(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
    ) -> Result<FoundPage> {
        let limit = self.checked_limit(p)?;
        let q = self.prepared_q(tenant, ctx, p).await?;
        let mut c = compile_with(p, ctx, probe(limit), q)?;
        c.store.view_ctx = Some(ctx.fingerprint());
        let mut page = self.store.query(tenant, &c.store).await?;
        let more = page.found.len() > limit;
        page.found.truncate(limit);
        Ok(FoundPage {
            found: crate::views::visible_found(page.found),
            total: page.total,
            more,
        })
    }

    /// An ordered query: every match, sorted, then paged.
    async fn query_ordered(
        &self,
        tenant: &str,
        ctx: &Context,
        p: &EntityQueryParams,
        items: &[String],
        limit: usize,
    ) -> Result<QueryResult> {
        let reference = p
            .order_from
            .as_deref()
            .map(|c| (p.order_geometry.as_deref().unwrap_or("Point"), c));
        let order = crate::ordering::OrderBy::parse(items, p.collation.as_deref(), reference, ctx)?;
        let q = self.prepared_q(tenant, ctx, p).await?;
        let mut c = compile_with(p, ctx, usize::MAX, q)?;
        c.store.offset = 0;
        c.store.count = false;
        let mut all: Vec<Entity> = self
            .store
            .query(tenant, &c.store)
            .await?
            .entities
            .into_iter()
            .filter_map(crate::views::visible)
            .collect();
        order.sort(&mut all);
        let total = p.count.then_some(all.len() as u64);
        let more = limit > 0 && all.len() > p.offset.saturating_add(limit);
        let entities = all.into_iter().skip(p.offset).take(limit).collect();
        Ok(QueryResult {
            entities,
            total,
            more,
        })
    }

    fn checked_limit(&self, p: &EntityQueryParams) -> Result<usize> {
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
        Ok(limit)
    }
}
