//! How the entities of an answer are rendered, from the request's parameters: representation, system
//! attributes, `attrs`, `pick`/`omit` (with nested projections of Linked Entities), `datasetId` and `lang`.

use std::collections::HashSet;

use misto_ngsild::linked::{self, Join, JoinKind};
use misto_ngsild::projection::{self, Member};
use misto_ngsild::render::{render_entity, RenderOptions};
use misto_ngsild::{Context, Entity, NgsiError};
use serde_json::{Map, Value};

use crate::join::check_reach;
use crate::params::Params;

/// Every name of a projection must be an attribute name, `id` or `type`; only a Relationship (an attribute)
/// can have a nested projection.
fn members_valid(param: &str, members: &[Member]) -> Result<(), NgsiError> {
    for m in members {
        let core = m.name == "id" || m.name == "type";
        if core && m.nested.is_some() {
            return Err(NgsiError::bad_data(format!(
                "{param}: '{}' is not a Relationship and has no Linked Entity to project",
                m.name
            )));
        }
        if !core {
            misto_ngsild::validate::check_name(&m.name)
                .map_err(|e| NgsiError::bad_data(format!("{param}: {e}")))?;
        }
        if let Some(n) = &m.nested {
            members_valid(param, n)?;
        }
    }
    Ok(())
}

/// Apply a `pick` (`keep`) or `omit` projection. A member `rel{…}` projects the Linked Entities reached
/// through `rel`; with omit it removes members of those, not `rel` itself.
pub(crate) fn project(o: &mut RenderOptions, members: &[Member], keep: bool, ctx: &Context) {
    let base = o.unprojected();
    let mut set = HashSet::new();
    let (mut id, mut ty) = (false, false);
    for m in members {
        match m.name.as_str() {
            "id" => id = true,
            "type" => ty = true,
            name => {
                let name = ctx.expand(name);
                if let Some(nested) = &m.nested {
                    let mut sub = base.clone();
                    project(&mut sub, nested, keep, ctx);
                    o.linked.insert(name.clone(), sub);
                }
                if keep || m.nested.is_none() {
                    set.insert(name);
                }
            }
        }
    }
    if keep {
        o.pick_id = id;
        o.pick_type = ty;
        o.attrs = Some(set);
    } else {
        o.pick_id = !id;
        o.pick_type = !ty;
        o.omit = set;
    }
}

/// Parse and check a projection given as text; `join` bounds how deep it may reach.
pub(crate) fn parse_projection(
    param: &str,
    text: &str,
    join: Option<&Join>,
) -> Result<Vec<Member>, NgsiError> {
    let members = projection::parse(param, text)?;
    members_valid(param, &members)?;
    check_reach(param, projection::depth(&members), join)?;
    Ok(members)
}

/// The `options` values that shape how entities are rendered.
const RENDER_OPTIONS: &[&str] = &[
    "keyValues",
    "simplified",
    "concise",
    "normalized",
    "sysAttrs",
];

/// Rendering options from the parameters; `join` is the request's join (it bounds nested projections).
pub(crate) fn render_options(
    p: &Params,
    ctx: &Context,
    join: Option<&Join>,
) -> Result<RenderOptions, NgsiError> {
    p.check_options(RENDER_OPTIONS)?;
    let mut o = RenderOptions::new(p.format()?);
    o.sys_attrs = p.has_option("sysAttrs")?;
    if let Some(ds) = p.list("datasetId")? {
        if let Some(bad) = ds
            .iter()
            .find(|d| *d != "@none" && !misto_ngsild::validate::is_uri(d))
        {
            return Err(NgsiError::bad_data(format!(
                "datasetId: '{bad}' is not a URI (or @none)"
            )));
        }
        o.dataset_ids = Some(ds);
    }
    if let Some(attrs) = p.list("attrs")? {
        for a in &attrs {
            if a.contains(['{', '}']) {
                return Err(NgsiError::bad_data(format!(
                    "attrs: '{a}' is not an attribute name (pick projects Linked Entities)"
                )));
            }
            misto_ngsild::validate::check_name(a)
                .map_err(|e| NgsiError::bad_data(format!("attrs: {e}")))?;
        }
        // `attrs` names attributes; `id` and `type` are core members (pick/omit may name them).
        if let Some(core) = attrs.iter().find(|a| *a == "id" || *a == "type") {
            return Err(NgsiError::bad_data(format!(
                "attrs: '{core}' is not an attribute (use pick to project core members)"
            )));
        }
        let set = attrs.iter().map(|a| ctx.expand(a)).collect();
        o.attrs = Some(set);
    }
    for k in ["pick", "omit"] {
        if p.get(k).is_some() && p.get("attrs").is_some() {
            return Err(NgsiError::bad_data(format!(
                "{k} and attrs cannot be used together"
            )));
        }
    }
    if p.get("pick").is_some() && p.get("omit").is_some() {
        return Err(NgsiError::bad_data("pick and omit cannot be used together"));
    }
    for (k, keep) in [("pick", true), ("omit", false)] {
        if let Some(text) = p.joined(k)? {
            let members = parse_projection(k, &text, join)?;
            project(&mut o, &members, keep, ctx);
        }
    }
    if let Some(lang) = p.non_empty("lang")? {
        o.lang = Some(language_preference(lang));
    }
    Ok(o)
}

/// `lang` as RFC 9110 language ranges in order of preference: by q-value (1 when absent), then by position;
/// a range with q=0 is not wanted at all.
pub(crate) fn language_preference(lang: &str) -> Vec<String> {
    let mut ranges: Vec<(f32, usize, String)> = lang
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_string();
            let q = it
                .filter_map(|x| {
                    x.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.trim().parse().ok())
                })
                .next()
                .unwrap_or(1.0f32);
            (!tag.is_empty() && q > 0.0).then_some((q, i, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges.into_iter().map(|(_, _, t)| t).collect()
}

/// A join with the Linked Entities it reached.
pub(crate) type Joined = (Join, misto_ngsild::linked::Linked);

/// One entity as an answer: with `join=flat` an array of it and the Linked Entities found.
pub(crate) fn render_one(
    e: &Entity,
    ctx: &Context,
    opts: &RenderOptions,
    joined: Option<&Joined>,
) -> Value {
    match joined {
        None => render_entity(e, ctx, opts),
        Some((j, linked)) => match j.kind {
            JoinKind::Inline => linked::render_inline(e, ctx, opts, j, linked),
            JoinKind::Flat => {
                let mut all = linked::render_flat(std::slice::from_ref(e), ctx, opts, j, linked);
                // Nothing linked was found: the answer is the entity alone, as without a join.
                if all.len() == 1 {
                    all.swap_remove(0)
                } else {
                    Value::Array(all)
                }
            }
        },
    }
}

/// A page of entities as an answer: with `join=flat` their Linked Entities follow them.
pub(crate) fn render_list(
    entities: &[Entity],
    ctx: &Context,
    opts: &RenderOptions,
    joined: Option<&Joined>,
) -> Value {
    match joined {
        Some((j, linked)) if j.kind == JoinKind::Flat => {
            Value::Array(linked::render_flat(entities, ctx, opts, j, linked))
        }
        // An entity of which a projection leaves nothing is not in the answer (§4.21), as a single retrieval
        // of it finds nothing.
        _ => Value::Array(
            entities
                .iter()
                .map(|e| render_one(e, ctx, opts, joined))
                .filter(|v| !v.as_object().is_some_and(Map::is_empty))
                .collect(),
        ),
    }
}
