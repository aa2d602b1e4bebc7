//! The `q` query language.
