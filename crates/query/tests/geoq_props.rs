//! Property tests: geo-query parsing never panics, printing round-trips, and the index box never loses a match.

use geo::{Geometry, Intersects, Point};
use misto_query::geoq::GeoQuery;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics(r in "\\PC{0,40}", g in "\\PC{0,16}", c in "\\PC{0,60}") {
        let _ = GeoQuery::from_params(&r, &g, &c, None);
    }

    #[test]
    fn never_panics_on_geo_like_text(r in "(near|within|intersects|disjoint)(;(max|min)Distance==[0-9.-]{1,6}){0,2}", c in "[\\[\\]0-9.,-]{0,40}") {
        for g in ["Point", "LineString", "Polygon", "MultiPolygon"] {
            let _ = GeoQuery::from_params(&r, g, &c, None);
        }
    }

    #[test]
    fn near_round_trips_and_box_holds_matches(lon in -170.0f64..170.0, lat in -80.0f64..80.0, d in 1.0f64..50_000.0, dx in -1.0f64..1.0, dy in -1.0f64..1.0) {
        let q = GeoQuery::from_params(&format!("near;maxDistance=={d}"), "Point", &format!("[{lon},{lat}]"), None).unwrap();
        let (a, b, c) = q.to_params();
        prop_assert_eq!(&GeoQuery::from_params(&a, &b, &c, None).unwrap(), &q);
        let p = Point::new(lon + dx * d / 50_000.0, lat + dy * d / 100_000.0);
        if q.matches(&Geometry::Point(p)) {
            let bbox = q.candidate_bbox().unwrap();
            prop_assert!(bbox.intersects(&p), "{p:?} matches but lies outside {bbox:?}");
        }
    }

    #[test]
    fn polygon_round_trips(x in -170.0f64..170.0, y in -80.0f64..80.0, w in 0.001f64..5.0) {
        let c = format!("[[[{x},{y}],[{},{y}],[{},{}],[{x},{y}]]]", x + w, x + w, y + w);
        let q = GeoQuery::from_params("within", "Polygon", &c, Some("area")).unwrap();
        let (a, b, c2) = q.to_params();
        prop_assert_eq!(GeoQuery::from_params(&a, &b, &c2, Some("area")).unwrap(), q);
    }
}
