//! Fuzz the geoQ parser: never panic; whatever parses prints to parameters that parse to the same query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use misto_query::geoq::GeoQuery;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let mut parts = s.splitn(3, '\n');
        let (r, g, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if let Ok(q) = GeoQuery::from_params(r, g, c, None) {
            let (a, b, d) = q.to_params();
            let again = GeoQuery::from_params(&a, &b, &d, None).expect("printed geo-query parses");
            assert_eq!(again, q);
            let _ = q.candidate_bbox();
        }
    }
});
