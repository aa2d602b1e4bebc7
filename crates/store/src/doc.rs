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
    fn garbage_is_an_error_not_a_panic() {
        assert!(json_of(ValueRef::Blob(b"not zstd")).is_err());
        assert!(full(b"{").is_err());
    }
}
