//! The SQLite store's form of an entity document: its JSON compressed with zstd (a stored entity repeats its
//! timestamps and IRIs many times, so it shrinks about fourfold; a row then fits a database page instead of a
//! chain of overflow pages). Rows written as plain JSON text are still read.
//!
//! Query filters often read two or three attributes of an entity with dozens: [`partial`] parses only those
//! members, and the full parse happens only for entities that pass.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use misto_ngsild::Entity;
use rusqlite::types::ValueRef;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::StoreError;

/// zstd level: the fastest; documents are small and writes are on the request path.
const LEVEL: i32 = 1;
/// The largest document this store will inflate (a request body is limited far below this).
const MAX_DOC: usize = 256 << 20;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Serialize and compress an entity for storage.
pub fn encode(e: &Entity) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(e).map_err(|e| StoreError::Other(e.to_string()))?;
    compress(&json)
}

/// Compress JSON bytes for storage.
pub fn compress(json: &[u8]) -> Result<Vec<u8>, StoreError> {
    COMPRESSOR.with(|c| {
        let mut slot = c.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(LEVEL).map_err(corrupt)?);
        }
        match slot.as_mut() {
            Some(z) => z.compress(json).map_err(corrupt),
            None => Err(corrupt("no compressor")),
        }
    })
}

/// The JSON bytes of a stored document (a BLOB is compressed, TEXT is JSON as it was written by older
/// versions).
pub fn json_of(v: ValueRef<'_>) -> Result<Cow<'_, [u8]>, StoreError> {
    match v {
        ValueRef::Text(t) => Ok(Cow::Borrowed(t)),
        ValueRef::Blob(b) => {
            let size = zstd::zstd_safe::get_frame_content_size(b)
                .ok()
                .flatten()
                .ok_or_else(|| corrupt("compressed document without its size"))?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= MAX_DOC)
                .ok_or_else(|| corrupt("compressed document is too large"))?;
            DECOMPRESSOR.with(|d| {
                let mut slot = d.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new().map_err(corrupt)?);
                }
                match slot.as_mut() {
                    Some(z) => z.decompress(b, size).map(Cow::Owned).map_err(corrupt),
                    None => Err(corrupt("no decompressor")),
                }
            })
        }
        _ => Err(corrupt("document is neither text nor blob")),
    }
}

/// The whole entity.
pub fn full(json: &[u8]) -> Result<Entity, StoreError> {
    serde_json::from_slice(json).map_err(corrupt)
}

/// Only the named top-level members (the rest are absent). Falls back to the whole entity when member names
/// carry JSON escapes, which a borrowed parse cannot hold.
pub fn partial(json: &[u8], needs: &[String]) -> Result<Entity, StoreError> {
    let members: HashMap<&str, &RawValue> = match serde_json::from_slice(json) {
        Ok(m) => m,
        Err(_) => return full(json),
    };
    let mut e = Entity::new();
    for name in needs {
        if let Some(raw) = members.get(name.as_str()) {
            e.insert(
                name.clone(),
                serde_json::from_str(raw.get()).map_err(corrupt)?,
            );
        }
    }
    Ok(e)
}

/// The filter head of an entity: each top-level member, attribute instances reduced to their kind and value
/// ([`crate::VALUE_MEMBERS`]), as records `u16 name length, name, u32 JSON length, JSON` (little-endian),
/// compressed. A filter that reads only those ([`crate::EntityQuery::filter_values_only`]) judges a candidate
/// from its head: a small inflate and the parse of the few members it reads, not of the whole document.
pub fn head(e: &Entity) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(1024);
    for (name, v) in e {
        let Ok(len) = u16::try_from(name.len()) else {
            // Too long a name for a record: no head; filters read the document instead.
            return Ok(Vec::new());
        };
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        reduced(name, v, &mut out)?;
        let n = u32::try_from(out.len() - at - 4).map_err(|_| corrupt("member too large"))?;
        out[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    compress(&out)
}

/// Write a member as the head holds it: entity members whole, attribute instances reduced (serialized
/// through filtering views, without copying the entity).
fn reduced(name: &str, v: &Value, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let r = if misto_query::q::ENTITY_MEMBERS.contains(&name) {
        serde_json::to_writer(out, v)
    } else {
        match v {
            Value::Array(items) => serde_json::to_writer(out, &ReducedList(items)),
            other => serde_json::to_writer(out, &Reduced(other)),
        }
    };
    r.map_err(|e| StoreError::Other(e.to_string()))
}

/// An attribute instance as the head holds it: only [`crate::VALUE_MEMBERS`] (anything but an object as is).
struct Reduced<'a>(&'a Value);

impl serde::Serialize for Reduced<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(m) => {
                let kept = || {
                    m.iter()
                        .filter(|(k, _)| crate::VALUE_MEMBERS.contains(&k.as_str()))
                };
                let mut map = s.serialize_map(Some(kept().count()))?;
                for (k, v) in kept() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A list of attribute instances as the head holds it.
struct ReducedList<'a>(&'a [Value]);

impl serde::Serialize for ReducedList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Reduced))
    }
}

/// Only the named members of an (inflated) head.
pub fn head_partial(head: &[u8], needs: &[String]) -> Result<Entity, StoreError> {
    let mut e = Entity::new();
    let mut rest = head;
    while !rest.is_empty() {
        let (name, json, more) = record(rest).ok_or_else(|| corrupt("truncated filter head"))?;
        rest = more;
        if let Some(n) = needs.iter().find(|n| n.as_bytes() == name) {
            e.insert(n.clone(), serde_json::from_slice(json).map_err(corrupt)?);
        }
    }
    Ok(e)
}

/// One record of a head: (name, JSON, what follows).
fn record(b: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let n = u16::from_le_bytes(b.get(..2)?.try_into().ok()?) as usize;
    let name = b.get(2..2 + n)?;
    let at = 2 + n;
    let len = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
    let json = b.get(at + 4..at + 4 + len)?;
    Some((name, json, b.get(at + 4 + len..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity() -> Entity {
        json!({"id": "urn:a", "type": ["T"], "https://x/p": [{"type": "Property", "value": 1}],
               "https://x/q": [{"type": "Property", "value": "two"}]})
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    #[test]
    fn compressed_documents_read_back_whole() {
        let e = entity();
        let blob = encode(&e).unwrap();
        let json = json_of(ValueRef::Blob(&blob)).unwrap();
        assert_eq!(full(&json).unwrap(), e);
    }

    #[test]
    fn text_documents_of_older_versions_still_read() {
        let text = serde_json::to_string(&entity()).unwrap();
        let json = json_of(ValueRef::Text(text.as_bytes())).unwrap();
        assert_eq!(full(&json).unwrap(), entity());
    }

    #[test]
    fn partial_parse_holds_only_what_is_asked() {
        let json = serde_json::to_vec(&entity()).unwrap();
        let p = partial(
            &json,
            &["type".into(), "https://x/q".into(), "absent".into()],
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p["https://x/q"], entity()["https://x/q"]);
    }

    #[test]
    fn filters_on_values_judge_the_head_as_the_document() {
        let e: Entity = json!({
            "id": "urn:a", "type": ["T"], "scope": ["/k"], "createdAt": "2024-01-01T00:00:00Z",
            "modifiedAt": "2024-01-02T00:00:00Z",
            "https://x/p": [{"type": "Property", "value": 12.5, "unitCode": "GQ", "observedAt": "2024-01-01T00:00:00Z",
                             "createdAt": "2024-01-01T00:00:00Z", "https://x/sub": [{"type": "Property", "value": 1}]},
                            {"type": "Property", "value": 3, "datasetId": "urn:d:1"}],
            "https://x/r": [{"type": "Relationship", "object": "urn:b", "observedAt": "2024-01-01T00:00:00Z"}],
            "https://x/l": [{"type": "LanguageProperty", "languageMap": {"en": "one", "uk": "odyn"}}],
            "https://x/s": [{"type": "Property", "value": {"city": "Kyiv", "n": [1, 2]}}],
            "https://x/g": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [30.5, 50.4]}}]
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        let raw = json_of(ValueRef::Blob(&head(&e).unwrap()))
            .unwrap()
            .into_owned();
        for q in [
            "https://x/p>10",
            "https://x/p==3",
            "https://x/p<1",
            "https://x/r==urn:b",
            "https://x/r>1",
            "https://x/l==odyn",
            "https://x/l[uk]==odyn",
            "https://x/s[city]==Kyiv",
            "https://x/s[n]==2",
            "https://x/g",
            "!https://x/q",
            "id==urn:a",
            "type==T",
            "scope==/k",
            "modifiedAt>2024-01-01T12:00:00Z",
            "https://x/p>10;https://x/r==urn:c|id==urn:a",
        ] {
            let expr = misto_query::q::parse(q).unwrap();
            assert!(expr.reads_values_only(), "{q}");
            let mut needs: Vec<String> = expr
                .attribute_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
            needs.extend(expr.entity_members().iter().map(|n| n.to_string()));
            let h = head_partial(&raw, &needs).unwrap();
            assert_eq!(expr.matches_map(&h), expr.matches_map(&e), "{q}");
        }
        assert!(
            !misto_query::q::parse("https://x/p.observedAt>2020-01-01T00:00:00Z")
                .unwrap()
                .reads_values_only()
        );
        let h = head_partial(&raw, &["https://x/p".to_string()]).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(
            h["https://x/p"][0],
            json!({"type": "Property", "value": 12.5})
        );
        assert!(head_partial(&raw[..raw.len() - 1], &["x".into()]).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(json_of(ValueRef::Blob(b"not zstd")).is_err());
        assert!(full(b"{").is_err());
    }
}
