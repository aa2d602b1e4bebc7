//! The subscriptions in force of one tenant, indexed by what they select, so that a change is matched only
//! against the subscriptions that could select its entity (by id, by type, or those that select by neither)
//! rather than against every subscription of the tenant.

use std::collections::HashMap;
use std::sync::Arc;

use super::matching::{Compiled, SelectionKeys};

#[derive(Default)]
pub struct TenantSubscriptions {
    all: HashMap<String, Arc<Compiled>>,
    by_id: HashMap<String, Vec<Arc<Compiled>>>,
    by_type: HashMap<String, Vec<Arc<Compiled>>>,
    unkeyed: Vec<Arc<Compiled>>,
}

fn remove_from(list: &mut Vec<Arc<Compiled>>, id: &str) {
    list.retain(|c| c.id != id);
}

impl TenantSubscriptions {
    pub fn get(&self, id: &str) -> Option<&Arc<Compiled>> {
        self.all.get(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Compiled>> {
        self.all.values()
    }

    pub fn insert(&mut self, c: Arc<Compiled>) {
        self.remove(&c.id);
        match c.selection_keys() {
            SelectionKeys::Ids(ids) => {
                for i in ids {
                    self.by_id.entry(i).or_default().push(c.clone());
                }
            }
            SelectionKeys::Types(ts) => {
                for t in ts {
                    self.by_type.entry(t).or_default().push(c.clone());
                }
            }
            SelectionKeys::Any => self.unkeyed.push(c.clone()),
        }
        self.all.insert(c.id.clone(), c);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.all.remove(id) else {
            return;
        };
        match old.selection_keys() {
            SelectionKeys::Ids(ids) => {
                for i in ids {
                    if let Some(l) = self.by_id.get_mut(&i) {
                        remove_from(l, id);
                        if l.is_empty() {
                            self.by_id.remove(&i);
                        }
                    }
                }
            }
            SelectionKeys::Types(ts) => {
                for t in ts {
                    if let Some(l) = self.by_type.get_mut(&t) {
                        remove_from(l, id);
                        if l.is_empty() {
                            self.by_type.remove(&t);
                        }
                    }
                }
            }
            SelectionKeys::Any => remove_from(&mut self.unkeyed, id),
        }
    }

    /// The subscriptions that may select an entity with this id and these types, each once.
    pub fn candidates(&self, id: &str, types: &[&str]) -> Vec<Arc<Compiled>> {
        let mut out: Vec<Arc<Compiled>> = self.by_id.get(id).cloned().unwrap_or_default();
        // A subscription is under one kind of key, each key once; only an entity of several types can
        // reach one subscription twice.
        let mut seen = std::collections::HashSet::new();
        for t in types {
            for c in self.by_type.get(*t).into_iter().flatten() {
                if types.len() == 1 || seen.insert(Arc::as_ptr(c)) {
                    out.push(c.clone());
                }
            }
        }
        out.extend(self.unkeyed.iter().cloned());
        out
    }
}
