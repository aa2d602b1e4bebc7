//! Linked Entity terms of `q` (`rel{[Type:]term}`, §4.9): how deep they reach, the sub-queries they need
//! answered, and the Relationship objects they test.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::{PendingLink, QExpr, QTerm};

/// The entity ids a (List)Relationship attribute (all its instances) points to.
pub(super) fn object_ids(attr: Option<&Value>) -> impl Iterator<Item = &str> {
    let instances: Vec<&Value> = match attr {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    instances.into_iter().flat_map(|i| {
        let mut ids: Vec<&str> = Vec::new();
        match i.get("object") {
            Some(Value::String(s)) => ids.push(s),
            Some(Value::Array(a)) => ids.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
        if let Some(Value::Array(items)) = i.get("objectList") {
            for item in items {
                match item {
                    Value::String(s) => ids.push(s),
                    Value::Object(o) => ids.extend(o.get("object").and_then(Value::as_str)),
                    _ => {}
                }
            }
        }
        ids
    })
}

impl QTerm {
    fn link_depth(&self) -> usize {
        match self {
            QTerm::Linked(l) => 1 + l.term.link_depth(),
            _ => 0,
        }
    }

    /// Whether a linked term inside still waits for its Linked Entities.
    fn waits(&self) -> bool {
        match self {
            QTerm::Linked(l) => l.matching.is_none() || l.term.waits(),
            _ => false,
        }
    }

    fn visit_ready(&mut self, f: &mut dyn FnMut(&mut super::LinkedTerm)) {
        if let QTerm::Linked(l) = self {
            if l.term.waits() {
                l.term.visit_ready(f);
            } else if l.matching.is_none() {
                f(l);
            }
        }
    }
}

impl QExpr {
    fn visit_terms(&mut self, f: &mut dyn FnMut(&mut QTerm)) {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter_mut().for_each(|e| e.visit_terms(f)),
            QExpr::Term(t) => f(t),
        }
    }

    /// How many Relationships deep the query reaches into Linked Entities (0: it stays in the entity).
    pub fn link_depth(&self) -> usize {
        match self {
            QExpr::And(v) | QExpr::Or(v) => v.iter().map(QExpr::link_depth).max().unwrap_or(0),
            QExpr::Term(t) => t.link_depth(),
        }
    }

    /// The linked sub-queries that can be answered now (their own terms need nothing more), in order. Answer
    /// them with [`QExpr::resolve_links`] and ask again until none is left: each round goes one level up.
    pub fn pending_links(&mut self) -> Vec<PendingLink> {
        let mut out = Vec::new();
        self.visit_terms(&mut |t| {
            t.visit_ready(&mut |l| {
                out.push(PendingLink {
                    entity_type: l.entity_type.clone(),
                    term: (*l.term).clone(),
                })
            })
        });
        out
    }

    /// Hand the answers to what [`QExpr::pending_links`] listed, in its order: for each, the ids of the
    /// entities that match.
    pub fn resolve_links(&mut self, answers: Vec<HashSet<String>>) {
        let mut answers = answers.into_iter();
        self.visit_terms(&mut |t| {
            t.visit_ready(&mut |l| {
                l.matching = Some(Arc::new(answers.next().unwrap_or_default()));
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn parse_print_and_resolve() {
        let mut q = parse("managedBy{Building:name}==\"Pisa\";a==1").unwrap();
        assert_eq!(q.to_string(), "managedBy{Building:name}==\"Pisa\";a==1");
        assert_eq!(q.link_depth(), 1);
        assert_eq!(q.attribute_names(), ["managedBy", "a"]);
        let pending = q.pending_links();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].entity_type.as_deref(), Some("Building"));
        let linked = json!({"name": [{"type": "Property", "value": "Pisa"}]});
        assert!(pending[0].term.matches_map(linked.as_object().unwrap()));

        let e = json!({"a": [{"type": "Property", "value": 1}],
            "managedBy": [{"type": "Relationship", "object": "urn:b:1"}]});
        assert!(!q.matches(&e), "unresolved terms match nothing");
        q.resolve_links(vec![HashSet::from(["urn:b:1".to_string()])]);
        assert!(q.matches(&e));
        assert!(q.pending_links().is_empty());
    }

    #[test]
    fn nested_links_resolve_inside_out() {
        let mut q = parse("a{b{c}}").unwrap();
        assert_eq!(q.link_depth(), 2);
        assert_eq!(q.to_string(), "a{b{c}}");
        let first = q.pending_links();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].term.to_string(), "c");
        q.resolve_links(vec![HashSet::new()]);
        let second = q.pending_links();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].term.to_string(), "b{c}");
        q.resolve_links(vec![HashSet::new()]);
        assert!(q.pending_links().is_empty());
        // `x:` right after the brace is read as a type hint (so a compact IRI there needs its full form).
        assert_eq!(
            parse("a{ns:b}").unwrap().pending_links()[0]
                .entity_type
                .as_deref(),
            Some("ns")
        );
        assert_eq!(
            parse("a{https://x.org/b}").unwrap().pending_links()[0].entity_type,
            None
        );
        assert!(parse("a{b").is_err());
        assert!(parse("a{b}}").is_err());
    }
}
