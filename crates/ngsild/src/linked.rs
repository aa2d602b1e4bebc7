//! Linked Entity retrieval (§4.5.23): which Linked Entities a join reaches from some entities, and how they
//! are shown — `inline` (each Relationship carries its Linked Entity as `entity`, a ListRelationship its
//! Linked Entities as `entityList`; in keyValues the Linked Entity takes the place of its id) or `flat` (the
//! Linked Entities follow the entities in one array, each once).
//!
//! Pure: the caller fetches the ids [`missing`] names, adds them to its [`Linked`] map and asks again until
//! nothing is missing (at most `joinLevel` rounds), then renders. Only Relationships the projection keeps are
//! followed, and a Linked Entity met before at a shallower depth is shown without expanding its own links
//! again, so cycles end.

use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

use crate::context::Context;
use crate::entity::{attribute_names, Entity};
use crate::render::{render_entity, selected_instances, Format, RenderOptions};

/// The highest `joinLevel` followed.
pub const MAX_JOIN_LEVEL: usize = 10;

/// How Linked Entities are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inline,
    Flat,
}

/// A join as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub kind: JoinKind,
    /// How many Relationships deep to follow (`joinLevel`, 1 to [`MAX_JOIN_LEVEL`]).
    pub level: usize,
    /// Entities the requester already holds (`containedBy`): never retrieved again.
    pub contained_by: HashSet<String>,
}

/// Linked Entities fetched so far, by id; None for an id that names no entity.
pub type Linked = HashMap<String, Option<Entity>>;

/// Whether an attribute instance links to entities.
fn is_link(instance: &Value) -> bool {
    matches!(
        instance.get("type").and_then(Value::as_str),
        Some("Relationship" | "ListRelationship")
    )
}

/// The entity ids an attribute instance links to, in order.
fn targets(instance: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    match instance.get("object") {
        Some(Value::String(s)) => out.push(s.as_str()),
        Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
        _ => {}
    }
    if let Some(Value::Array(a)) = instance.get("objectList") {
        for item in a {
            match item {
                Value::String(s) => out.push(s.as_str()),
                Value::Object(o) => out.extend(o.get("object").and_then(Value::as_str)),
                _ => {}
            }
        }
    }
    out
}

/// The Relationships `opts` renders in `e` (expanded names) with the ids each links to.
fn links<'a>(e: &'a Entity, opts: &RenderOptions) -> Vec<(&'a str, Vec<String>)> {
    attribute_names(e)
        .filter(|name| opts.keeps(name))
        .filter_map(|name| {
            let ids: Vec<String> = selected_instances(e, name, opts)
                .iter()
                .filter(|i| is_link(i))
                .flat_map(|i| targets(i).into_iter().map(str::to_string))
                .collect();
            (!ids.is_empty()).then_some((name.as_str(), ids))
        })
        .collect()
}

/// A breadth-first walk from some entities: every Linked Entity at its first (shallowest) encounter.
struct Walk {
    /// (id, depth, options) of each Linked Entity found, in the order met.
    order: Vec<(String, usize, RenderOptions)>,
    /// The depth at which each id was first met (the entities walked from: 0).
    depth: HashMap<String, usize>,
    /// Ids met that `linked` does not know yet.
    missing: Vec<String>,
}

fn walk(roots: &[&Entity], opts: &RenderOptions, join: &Join, linked: &Linked) -> Walk {
    let mut w = Walk {
        order: Vec::new(),
        depth: HashMap::new(),
        missing: Vec::new(),
    };
    let mut queue: VecDeque<(&Entity, RenderOptions, usize)> = VecDeque::new();
    for e in roots {
        if let Some(id) = e.get("id").and_then(Value::as_str) {
            w.depth.insert(id.to_string(), 0);
        }
        queue.push_back((e, opts.clone(), 0));
    }
    while let Some((e, o, d)) = queue.pop_front() {
        if d >= join.level {
            continue;
        }
        for (rel, ids) in links(e, &o) {
            let sub = o.for_linked(rel);
            for id in ids {
                if join.contained_by.contains(&id) || w.depth.contains_key(&id) {
                    continue;
                }
                w.depth.insert(id.clone(), d + 1);
                match linked.get(&id) {
                    None => w.missing.push(id),
                    Some(None) => {}
                    Some(Some(le)) => {
                        w.order.push((id, d + 1, sub.clone()));
                        queue.push_back((le, sub.clone(), d + 1));
                    }
                }
            }
        }
    }
    w
}

/// The ids the join reaches from `roots` that `linked` does not hold yet.
pub fn missing(
    roots: &[Entity],
    opts: &RenderOptions,
    join: &Join,
    linked: &Linked,
) -> Vec<String> {
    let roots: Vec<&Entity> = roots.iter().collect();
    walk(&roots, opts, join, linked).missing
}

/// `join=flat`: the entities, then every Linked Entity they reach, each once, in breadth-first order.
pub fn render_flat(
    roots: &[Entity],
    ctx: &Context,
    opts: &RenderOptions,
    join: &Join,
    linked: &Linked,
) -> Vec<Value> {
    let refs: Vec<&Entity> = roots.iter().collect();
    let w = walk(&refs, opts, join, linked);
    let mut out: Vec<Value> = roots.iter().map(|e| render_entity(e, ctx, opts)).collect();
    for (id, _, o) in &w.order {
        if let Some(Some(le)) = linked.get(id) {
            out.push(render_entity(le, ctx, o));
        }
    }
    out
}

/// `join=inline`: the entity with its Linked Entities inside the Relationships that point to them.
pub fn render_inline(
    e: &Entity,
    ctx: &Context,
    opts: &RenderOptions,
    join: &Join,
    linked: &Linked,
) -> Value {
    let w = walk(&[e], opts, join, linked);
    Inliner {
        ctx,
        join,
        linked,
        first: &w.depth,
    }
    .render(e, opts, 0)
}

struct Inliner<'a> {
    ctx: &'a Context,
    join: &'a Join,
    linked: &'a Linked,
    first: &'a HashMap<String, usize>,
}

impl Inliner<'_> {
    fn render(&self, e: &Entity, opts: &RenderOptions, depth: usize) -> Value {
        let mut v = render_entity(e, self.ctx, opts);
        let id = e.get("id").and_then(Value::as_str).unwrap_or("");
        // Met at a shallower depth: its links are shown there.
        let first = self.first.get(id).copied().unwrap_or(depth);
        if depth >= self.join.level || first < depth {
            return v;
        }
        let Some(out) = v.as_object_mut() else {
            return v;
        };
        for (rel, _) in links(e, opts) {
            let sub = opts.for_linked(rel);
            let Some(shown) = out.get_mut(&self.ctx.compact(rel)) else {
                continue;
            };
            let resolve = |id: &str| -> Option<Value> {
                if self.join.contained_by.contains(id) {
                    return None;
                }
                let le = self.linked.get(id)?.as_ref()?;
                Some(self.render(le, &sub, depth + 1))
            };
            match opts.format {
                Format::KeyValues => replace_ids(shown, &resolve),
                _ => match shown {
                    Value::Array(instances) => {
                        for i in instances {
                            attach(i, &resolve);
                        }
                    }
                    one => attach(one, &resolve),
                },
            }
        }
        v
    }
}

/// Add `entity` (or `entityList`) to a rendered Relationship (or ListRelationship) instance.
fn attach(instance: &mut Value, resolve: &dyn Fn(&str) -> Option<Value>) {
    let Some(o) = instance.as_object_mut() else {
        return;
    };
    let entity = match o.get("object") {
        Some(Value::String(id)) => resolve(id),
        Some(Value::Array(ids)) => {
            let found: Vec<Value> = ids
                .iter()
                .filter_map(Value::as_str)
                .filter_map(resolve)
                .collect();
            (!found.is_empty()).then_some(Value::Array(found))
        }
        _ => None,
    };
    if let Some(le) = entity {
        o.insert("entity".into(), le);
    }
    if let Some(Value::Array(items)) = o.get("objectList") {
        let found: Vec<Value> = items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.as_str()),
                Value::Object(x) => x.get("object").and_then(Value::as_str),
                _ => None,
            })
            .filter_map(resolve)
            .collect();
        if !found.is_empty() {
            o.insert("entityList".into(), Value::Array(found));
        }
    }
}

/// keyValues: each id (alone, in a list, or in a dataset map) becomes its Linked Entity where one was found.
fn replace_ids(v: &mut Value, resolve: &dyn Fn(&str) -> Option<Value>) {
    match v {
        Value::String(id) => {
            if let Some(le) = resolve(id) {
                *v = le;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| replace_ids(i, resolve)),
        Value::Object(o) => {
            if let Some(Value::Object(by_dataset)) = o.get_mut("dataset") {
                by_dataset
                    .values_mut()
                    .for_each(|i| replace_ids(i, resolve));
            } else if let Some(id) = o.get("object").and_then(Value::as_str) {
                if let Some(le) = resolve(id) {
                    *v = le;
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(v: Value) -> Entity {
        v.as_object().cloned().unwrap()
    }

    fn rel(object: &str) -> Value {
        json!([{"type": "Relationship", "object": object}])
    }

    fn setup() -> (Entity, Linked) {
        let b = entity(
            json!({"id": "urn:b", "type": ["https://uri.etsi.org/ngsi-ld/default-context/B"],
            "https://uri.etsi.org/ngsi-ld/default-context/at": rel("urn:c")}),
        );
        let c = entity(
            json!({"id": "urn:c", "type": ["https://uri.etsi.org/ngsi-ld/default-context/C"],
            "https://uri.etsi.org/ngsi-ld/default-context/in": rel("urn:b")}),
        );
        let mut linked = Linked::new();
        linked.insert("urn:c".into(), Some(c));
        (b, linked)
    }

    fn join(kind: JoinKind, level: usize) -> Join {
        Join {
            kind,
            level,
            contained_by: HashSet::new(),
        }
    }

    #[test]
    fn cycles_end_and_flat_lists_each_entity_once() {
        let (b, linked) = setup();
        let ctx = Context::core();
        let o = RenderOptions::new(Format::Normalized);
        let j = join(JoinKind::Inline, 5);
        assert!(missing(std::slice::from_ref(&b), &o, &j, &linked).is_empty());
        let v = render_inline(&b, &ctx, &o, &j, &linked);
        assert_eq!(v["at"]["entity"]["id"], "urn:c");
        // urn:b was met at depth 0: shown again at depth 2 is not possible (not re-fetched), so no entity.
        assert!(v["at"]["entity"]["in"].get("entity").is_none());
        let flat = render_flat(
            std::slice::from_ref(&b),
            &ctx,
            &o,
            &join(JoinKind::Flat, 5),
            &linked,
        );
        assert_eq!(flat.len(), 2);
    }

    #[test]
    fn key_values_replace_the_id() {
        let (b, linked) = setup();
        let ctx = Context::core();
        let o = RenderOptions::new(Format::KeyValues);
        let v = render_inline(&b, &ctx, &o, &join(JoinKind::Inline, 1), &linked);
        assert_eq!(v["at"]["id"], "urn:c");
        assert_eq!(v["at"]["in"], "urn:b");
    }
}
