//! The NGSI-LD query languages (ETSI GS CIM 009 §4.9 and §4.10): `q` filters and `geoQ` geo-queries.
//! Pure functions only: no I/O, no knowledge of storage.

pub mod geoq;
pub mod q;
