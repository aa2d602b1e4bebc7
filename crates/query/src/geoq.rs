//! The `geoQ` geo-query language.
