//! Transient entities and attributes (V1.9 `expiresAt`): what has expired is gone at once for every reader and
//! writer, whether or not the background sweep has removed it from storage yet.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::Value;

use crate::entity::{attribute_names, Entity};
use crate::validate::parse_datetime;

fn due(v: Option<&Value>, now: Timestamp) -> bool {
    v.and_then(Value::as_str)
        .and_then(parse_datetime)
        .is_some_and(|t| t <= now)
}

fn instance_due(i: &Value, now: Timestamp) -> bool {
    due(i.get("expiresAt"), now)
}

/// The entity as visible at `now`: None once the entity has expired; otherwise without its expired attribute
/// instances (borrowed as it is when nothing has expired).
pub fn visible(e: &Entity, now: Timestamp) -> Option<Cow<'_, Entity>> {
    if due(e.get("expiresAt"), now) {
        return None;
    }
    let expired_any = attribute_names(e).any(|n| {
        e.get(n)
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|i| instance_due(i, now)))
    });
    if !expired_any {
        return Some(Cow::Borrowed(e));
    }
    let mut out = e.clone();
    let names: Vec<String> = attribute_names(e).cloned().collect();
    for n in names {
        let keep = match out.get_mut(&n).and_then(Value::as_array_mut) {
            Some(a) => {
                a.retain(|i| !instance_due(i, now));
                !a.is_empty()
            }
            None => true,
        };
        if !keep {
            out.remove(&n);
        }
    }
    Some(Cow::Owned(out))
}

/// [`visible`] for an owned entity.
pub fn visible_owned(e: Entity, now: Timestamp) -> Option<Entity> {
    match visible(&e, now)? {
        Cow::Borrowed(_) => Some(e),
        Cow::Owned(o) => Some(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        parse_datetime(s).unwrap_or_default()
    }

    #[test]
    fn expired_entities_and_instances_are_gone() {
        let e = json!({
            "id": "urn:x:1", "type": ["T"],
            "a": [{"type": "Property", "value": 1, "expiresAt": "2025-01-01T00:00:00Z"},
                  {"type": "Property", "value": 2, "datasetId": "urn:d:1"}],
            "b": [{"type": "Property", "value": 3, "expiresAt": "2025-01-01T00:00:00Z"}],
            "c": [{"type": "Property", "value": 4, "expiresAt": "2030-01-01T00:00:00Z"}]
        });
        let e = e.as_object().cloned().unwrap_or_default();
        let before = visible(&e, at("2024-06-01T00:00:00Z")).map(Cow::into_owned);
        assert_eq!(before.as_ref(), Some(&e), "nothing due yet");
        let after = visible(&e, at("2026-01-01T00:00:00Z")).map(Cow::into_owned);
        let after = after.unwrap_or_default();
        assert_eq!(after["a"].as_array().map(Vec::len), Some(1));
        assert!(
            after.get("b").is_none(),
            "an attribute with no instance left is gone"
        );
        assert!(after.get("c").is_some());
        let mut gone = e.clone();
        gone.insert("expiresAt".into(), json!("2025-06-01T00:00:00.000Z"));
        assert!(visible(&gone, at("2026-01-01T00:00:00Z")).is_none());
    }
}
