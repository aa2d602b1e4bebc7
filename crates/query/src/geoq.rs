//! NGSI-LD geo-queries (ETSI GS CIM 009 §4.10) and GeoJSON geometry handling.
//!
//! The stored entity's geometry is the subject of every relation: `within` means the entity's GeoProperty lies
//! within the query geometry. Distances are great-circle (haversine, mean Earth radius) in metres.

use std::fmt;

use geo::{
    BoundingRect, Closest, ClosestPoint, Contains, Coord, Distance, Geometry, GeometryCollection,
    Haversine, Intersects, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon,
    Rect,
};
use serde_json::{json, Value};

const MAX_COORDINATES_TEXT: usize = 1 << 20;
const MAX_POSITIONS: usize = 100_000;
const METRES_PER_DEGREE: f64 = 111_320.0;
/// The Earth radius `geo::Haversine` uses.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// What is wrong with a geo-query or a GeoJSON geometry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct GeoError(pub String);

fn gerr<T>(m: impl Into<String>) -> Result<T, GeoError> {
    Err(GeoError(m.into()))
}

/// The geo relations.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoRel {
    Near {
        max_distance: Option<f64>,
        min_distance: Option<f64>,
    },
    Within,
    Contains,
    Intersects,
    Equals,
    Disjoint,
    Overlaps,
}

impl GeoRel {
    pub fn parse(s: &str) -> Result<GeoRel, GeoError> {
        let mut parts = s.split(';');
        let name = parts.next().unwrap_or("").trim();
        let rel = match name {
            "near" => {
                let (mut max, mut min) = (None, None);
                for p in parts {
                    let (k, v) = p
                        .split_once("==")
                        .ok_or_else(|| GeoError(format!("georel: '{p}' should be maxDistance==<metres> or minDistance==<metres>")))?;
                    let d: f64 = v
                        .trim()
                        .parse()
                        .map_err(|_| GeoError(format!("georel: distance '{v}' is not a number")))?;
                    // §4.10: nearRel = "near" ";" distance "==" PositiveNumber — one modifier, above zero.
                    if !d.is_finite() || d <= 0.0 {
                        return gerr(format!(
                            "georel: distance {v} must be a positive number of metres"
                        ));
                    }
                    if max.is_some() || min.is_some() {
                        return gerr("georel: near takes one distance, maxDistance or minDistance");
                    }
                    match k.trim() {
                        "maxDistance" => max = Some(d),
                        "minDistance" => min = Some(d),
                        other => return gerr(format!("georel: unexpected '{other}' after near")),
                    }
                }
                if max.is_none() && min.is_none() {
                    return gerr(
                        "georel: near needs maxDistance==<metres> or minDistance==<metres>",
                    );
                }
                GeoRel::Near {
                    max_distance: max,
                    min_distance: min,
                }
            }
            "within" => GeoRel::Within,
            "contains" => GeoRel::Contains,
            "intersects" => GeoRel::Intersects,
            "equals" => GeoRel::Equals,
            "disjoint" => GeoRel::Disjoint,
            "overlaps" => GeoRel::Overlaps,
            "" => return gerr("georel is empty"),
            other => return gerr(format!("georel: unknown relation '{other}'")),
        };
        if !matches!(rel, GeoRel::Near { .. }) && parts_left(s) {
            return gerr(format!("georel: '{name}' takes no parameters"));
        }
        Ok(rel)
    }
}

fn parts_left(s: &str) -> bool {
    s.contains(';')
}

impl fmt::Display for GeoRel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GeoRel::Near {
                max_distance,
                min_distance,
            } => {
                f.write_str("near")?;
                if let Some(m) = max_distance {
                    write!(f, ";maxDistance=={m}")?;
                }
                if let Some(m) = min_distance {
                    write!(f, ";minDistance=={m}")?;
                }
                Ok(())
            }
            GeoRel::Within => f.write_str("within"),
            GeoRel::Contains => f.write_str("contains"),
            GeoRel::Intersects => f.write_str("intersects"),
            GeoRel::Equals => f.write_str("equals"),
            GeoRel::Disjoint => f.write_str("disjoint"),
            GeoRel::Overlaps => f.write_str("overlaps"),
        }
    }
}

/// A geo-query.
#[derive(Debug, Clone)]
pub struct GeoQuery {
    pub rel: GeoRel,
    pub geometry: Geometry<f64>,
    /// The query geometry as GeoJSON.
    pub geojson: Value,
    pub geoproperty: String,
}

impl PartialEq for GeoQuery {
    fn eq(&self, o: &Self) -> bool {
        self.rel == o.rel && self.geojson == o.geojson && self.geoproperty == o.geoproperty
    }
}

impl GeoQuery {
    /// From the HTTP parameters `georel`, `geometry`, `coordinates`, `geoproperty`.
    pub fn from_params(
        georel: &str,
        geometry: &str,
        coordinates: &str,
        geoproperty: Option<&str>,
    ) -> Result<GeoQuery, GeoError> {
        let rel = GeoRel::parse(georel)?;
        if geometry.is_empty() {
            return gerr("geometry is missing");
        }
        if coordinates.is_empty() {
            return gerr("coordinates are missing");
        }
        if coordinates.len() > MAX_COORDINATES_TEXT {
            return gerr("coordinates are longer than 1 MiB");
        }
        let coords: Value = match serde_json::from_str(coordinates) {
            Ok(v) => v,
            // Legacy point form without brackets: `30.5,50.4`.
            Err(_) if geometry == "Point" => serde_json::from_str(&format!("[{coordinates}]"))
                .map_err(|_| {
                    GeoError(format!(
                        "coordinates '{}' are not a JSON array",
                        clip(coordinates)
                    ))
                })?,
            Err(_) => {
                return gerr(format!(
                    "coordinates '{}' are not a JSON array",
                    clip(coordinates)
                ))
            }
        };
        Self::build(rel, geometry, coords, geoproperty)
    }

    /// From a JSON `geoQ` object (queries by POST and subscriptions).
    pub fn from_json(v: &Value) -> Result<GeoQuery, GeoError> {
        let o = v
            .as_object()
            .ok_or_else(|| GeoError("geoQ must be an object".into()))?;
        let rel = o
            .get("georel")
            .and_then(Value::as_str)
            .ok_or_else(|| GeoError("geoQ.georel is missing".into()))?;
        let geometry = o
            .get("geometry")
            .and_then(Value::as_str)
            .ok_or_else(|| GeoError("geoQ.geometry is missing".into()))?;
        let prop = match o.get("geoproperty") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return gerr("geoQ.geoproperty must be a string"),
        };
        match o.get("coordinates") {
            Some(Value::String(s)) => Self::from_params(rel, geometry, s, prop),
            Some(c @ Value::Array(_)) => {
                Self::build(GeoRel::parse(rel)?, geometry, c.clone(), prop)
            }
            _ => gerr("geoQ.coordinates is missing"),
        }
    }

    fn build(
        rel: GeoRel,
        geometry: &str,
        coords: Value,
        geoproperty: Option<&str>,
    ) -> Result<GeoQuery, GeoError> {
        if !matches!(
            geometry,
            "Point" | "MultiPoint" | "LineString" | "MultiLineString" | "Polygon" | "MultiPolygon"
        ) {
            return gerr(format!(
                "geometry '{geometry}' is not a GeoJSON geometry type"
            ));
        }
        let geojson = json!({"type": geometry, "coordinates": coords});
        let g = geometry_from_geojson(&geojson)?;
        let prop = geoproperty.unwrap_or("location");
        if prop.is_empty() || prop.contains(char::is_whitespace) {
            return gerr("geoproperty must be an attribute name");
        }
        Ok(GeoQuery {
            rel,
            geometry: g,
            geojson,
            geoproperty: prop.to_string(),
        })
    }

    /// Does an entity's geometry stand in the relation to the query geometry?
    pub fn matches(&self, target: &Geometry<f64>) -> bool {
        let q = &self.geometry;
        match &self.rel {
            GeoRel::Near {
                max_distance,
                min_distance,
            } => {
                let d = distance_m(q, target);
                max_distance.is_none_or(|m| d <= m) && min_distance.is_none_or(|m| d >= m)
            }
            GeoRel::Within => {
                q.contains(target) || (is_point(target) && q.intersects(target) && !is_point(q))
            }
            GeoRel::Contains => target.contains(q),
            GeoRel::Intersects => target.intersects(q),
            GeoRel::Disjoint => !target.intersects(q),
            GeoRel::Equals => geometry_to_geojson(target) == geometry_to_geojson(q),
            GeoRel::Overlaps => target.intersects(q) && !target.contains(q) && !q.contains(target),
        }
    }

    /// A lon/lat box every matching geometry meets, for index pre-filtering (None: no such box).
    pub fn candidate_bbox(&self) -> Option<Rect<f64>> {
        let b = bbox(&self.geometry)?;
        match &self.rel {
            GeoRel::Near {
                max_distance: Some(m),
                ..
            } => {
                let dlat = m / METRES_PER_DEGREE * 1.01 + 1e-9;
                let max_lat = (b.max().y.abs().max(b.min().y.abs()) + dlat).min(90.0);
                let cos = max_lat.to_radians().cos();
                let dlon = if cos < 1e-6 {
                    360.0
                } else {
                    (m / (METRES_PER_DEGREE * cos)) * 1.01 + 1e-9
                };
                let (min_x, max_x) =
                    if dlon >= 180.0 || b.min().x - dlon < -180.0 || b.max().x + dlon > 180.0 {
                        (-180.0, 180.0)
                    } else {
                        (b.min().x - dlon, b.max().x + dlon)
                    };
                Some(Rect::new(
                    Coord {
                        x: min_x,
                        y: (b.min().y - dlat).max(-90.0),
                    },
                    Coord {
                        x: max_x,
                        y: (b.max().y + dlat).min(90.0),
                    },
                ))
            }
            GeoRel::Near { .. } | GeoRel::Disjoint => None,
            _ => Some(b),
        }
    }

    /// Whether some geometry lying inside the lon/lat box `b` may stand in the relation: false only when none
    /// can, so that an index of boxes can refuse a candidate without reading its geometry. Decided for `near`
    /// with `maxDistance` from a Point (the benchmark's and the common case); any other query may match.
    pub fn may_match_within(&self, b: &Rect<f64>) -> bool {
        let (
            GeoRel::Near {
                max_distance: Some(m),
                ..
            },
            Geometry::Point(p),
        ) = (&self.rel, &self.geometry)
        else {
            return true;
        };
        let c = b.center();
        // The farthest a point of the box lies from its centre, bounded by going along the meridian and then
        // along the parallel (an arc of a parallel is never shorter than the great circle between its ends).
        let min_abs_lat = if b.min().y <= 0.0 && b.max().y >= 0.0 {
            0.0
        } else {
            b.min().y.abs().min(b.max().y.abs())
        };
        let reach = EARTH_RADIUS_M
            * ((b.height() / 2.0).to_radians()
                + min_abs_lat.to_radians().cos() * (b.width() / 2.0).to_radians());
        let d = Haversine::distance(*p, Point::from(c));
        // Triangle inequality: every point of the box is at least d - reach away. The margin is far above
        // floating-point error; NaN (a malformed box) means "may match".
        let nearest = d - reach;
        nearest.is_nan() || nearest <= m * (1.0 + 1e-9) + 1e-3
    }

    /// Canonical (georel, geometry, coordinates) parameters.
    pub fn to_params(&self) -> (String, String, String) {
        (
            self.rel.to_string(),
            self.geojson["type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            self.geojson["coordinates"].to_string(),
        )
    }
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

fn is_point(g: &Geometry<f64>) -> bool {
    matches!(g, Geometry::Point(_))
}

/// Great-circle distance in metres between the closest points of two geometries (0 when they meet).
pub fn distance_m(a: &Geometry<f64>, b: &Geometry<f64>) -> f64 {
    if a.intersects(b) {
        return 0.0;
    }
    match (a, b) {
        (Geometry::Point(p), Geometry::Point(q)) => Haversine::distance(*p, *q),
        (Geometry::Point(p), other) | (other, Geometry::Point(p)) => closest_m(p, other),
        (a, b) => {
            // Closest vertex of one to the other, both ways: exact enough for city-scale queries.
            let mut best = f64::INFINITY;
            for (x, y) in [(a, b), (b, a)] {
                for c in coords(x) {
                    best = best.min(closest_m(&Point::from(c), y));
                }
            }
            best
        }
    }
}

/// Great-circle distance in metres from `p` to the closest point of `g`. The closest point is found in
/// metric proportions around `p` (longitudes scaled by the cosine of its latitude): in plain degrees a degree
/// of longitude would count as much as one of latitude, which picks the wrong point away from the equator.
fn closest_m(p: &Point<f64>, g: &Geometry<f64>) -> f64 {
    use geo::MapCoords;
    let k = p.y().to_radians().cos().max(1e-9);
    let local = g.map_coords(|c| Coord {
        x: (c.x - p.x()) * k,
        y: c.y - p.y(),
    });
    match local.closest_point(&Point::new(0.0, 0.0)) {
        Closest::Intersection(c) | Closest::SinglePoint(c) => {
            Haversine::distance(*p, Point::new(c.x() / k + p.x(), c.y() + p.y()))
        }
        Closest::Indeterminate => f64::INFINITY,
    }
}

fn coords(g: &Geometry<f64>) -> Vec<Coord<f64>> {
    use geo::CoordsIter;
    g.coords_iter().collect()
}

/// Lon/lat bounding box.
pub fn bbox(g: &Geometry<f64>) -> Option<Rect<f64>> {
    g.bounding_rect()
}

// ---------------------------------------------------------------- GeoJSON

struct Counter(usize);

fn position(v: &Value, n: &mut Counter) -> Result<Coord<f64>, GeoError> {
    let a = v.as_array().ok_or_else(|| {
        GeoError(format!(
            "a position must be an array of numbers, not {}",
            short(v)
        ))
    })?;
    if a.len() < 2 || a.len() > 3 {
        return gerr(format!("a position has 2 or 3 numbers, not {}", a.len()));
    }
    n.0 += 1;
    if n.0 > MAX_POSITIONS {
        return gerr(format!(
            "a geometry may have at most {MAX_POSITIONS} positions"
        ));
    }
    let x = a[0]
        .as_f64()
        .ok_or_else(|| GeoError(format!("longitude {} is not a number", short(&a[0]))))?;
    let y = a[1]
        .as_f64()
        .ok_or_else(|| GeoError(format!("latitude {} is not a number", short(&a[1]))))?;
    if a.len() == 3 && a[2].as_f64().is_none() {
        return gerr("altitude is not a number");
    }
    if !(-180.0..=180.0).contains(&x) {
        return gerr(format!("longitude {x} is outside [-180, 180]"));
    }
    if !(-90.0..=90.0).contains(&y) {
        return gerr(format!("latitude {y} is outside [-90, 90]"));
    }
    Ok(Coord { x, y })
}

fn positions(v: &Value, n: &mut Counter) -> Result<Vec<Coord<f64>>, GeoError> {
    v.as_array()
        .ok_or_else(|| GeoError(format!("expected an array of positions, not {}", short(v))))?
        .iter()
        .map(|p| position(p, n))
        .collect()
}

fn line(v: &Value, n: &mut Counter) -> Result<LineString<f64>, GeoError> {
    let ps = positions(v, n)?;
    if ps.len() < 2 {
        return gerr("a LineString needs at least 2 positions");
    }
    Ok(LineString::from(ps))
}

fn polygon(v: &Value, n: &mut Counter) -> Result<Polygon<f64>, GeoError> {
    let rings = v
        .as_array()
        .ok_or_else(|| GeoError("a Polygon's coordinates must be an array of rings".into()))?;
    if rings.is_empty() {
        return gerr("a Polygon needs at least one ring");
    }
    let mut ls = Vec::with_capacity(rings.len());
    for r in rings {
        let ps = positions(r, n)?;
        if ps.len() < 4 {
            return gerr("a Polygon ring needs at least 4 positions");
        }
        if ps.first() != ps.last() {
            return gerr("a Polygon ring must be closed (first and last positions equal)");
        }
        ls.push(LineString::from(ps));
    }
    let exterior = ls.remove(0);
    Ok(Polygon::new(exterior, ls))
}

fn short(v: &Value) -> String {
    clip(&v.to_string())
}

/// Validate a GeoJSON geometry object and convert it.
pub fn geometry_from_geojson(v: &Value) -> Result<Geometry<f64>, GeoError> {
    geometry_depth(v, 0, &mut Counter(0))
}

fn geometry_depth(v: &Value, depth: usize, n: &mut Counter) -> Result<Geometry<f64>, GeoError> {
    if depth > 8 {
        return gerr("GeometryCollections nest too deeply");
    }
    let o = v.as_object().ok_or_else(|| {
        GeoError(format!(
            "a geometry must be a GeoJSON object, not {}",
            short(v)
        ))
    })?;
    let t = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| GeoError("a geometry needs a type".into()))?;
    if t == "GeometryCollection" {
        let gs = o
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or_else(|| GeoError("a GeometryCollection needs geometries".into()))?;
        let items = gs
            .iter()
            .map(|g| geometry_depth(g, depth + 1, n))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Geometry::GeometryCollection(GeometryCollection::from(
            items,
        )));
    }
    let c = o
        .get("coordinates")
        .ok_or_else(|| GeoError(format!("the {t} has no coordinates")))?;
    Ok(match t {
        "Point" => Geometry::Point(Point::from(position(c, n)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint::from(
            positions(c, n)?
                .into_iter()
                .map(Point::from)
                .collect::<Vec<_>>(),
        )),
        "LineString" => Geometry::LineString(line(c, n)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString::new(
            c.as_array()
                .ok_or_else(|| GeoError("a MultiLineString's coordinates must be an array".into()))?
                .iter()
                .map(|l| line(l, n))
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(c, n)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon::new(
            c.as_array()
                .ok_or_else(|| GeoError("a MultiPolygon's coordinates must be an array".into()))?
                .iter()
                .map(|p| polygon(p, n))
                .collect::<Result<_, _>>()?,
        )),
        other => return gerr(format!("'{other}' is not a GeoJSON geometry type")),
    })
}

fn coord_json(c: &Coord<f64>) -> Value {
    json!([c.x, c.y])
}

fn line_json(l: &LineString<f64>) -> Value {
    Value::Array(l.0.iter().map(coord_json).collect())
}

fn polygon_json(p: &Polygon<f64>) -> Value {
    let mut rings = vec![line_json(p.exterior())];
    rings.extend(p.interiors().iter().map(line_json));
    Value::Array(rings)
}

/// GeoJSON of a geometry.
pub fn geometry_to_geojson(g: &Geometry<f64>) -> Value {
    match g {
        Geometry::Point(p) => json!({"type": "Point", "coordinates": coord_json(&p.0)}),
        Geometry::MultiPoint(m) => {
            json!({"type": "MultiPoint", "coordinates": m.0.iter().map(|p| coord_json(&p.0)).collect::<Vec<_>>()})
        }
        Geometry::LineString(l) => json!({"type": "LineString", "coordinates": line_json(l)}),
        Geometry::MultiLineString(m) => {
            json!({"type": "MultiLineString", "coordinates": m.0.iter().map(line_json).collect::<Vec<_>>()})
        }
        Geometry::Polygon(p) => json!({"type": "Polygon", "coordinates": polygon_json(p)}),
        Geometry::MultiPolygon(m) => {
            json!({"type": "MultiPolygon", "coordinates": m.0.iter().map(polygon_json).collect::<Vec<_>>()})
        }
        Geometry::GeometryCollection(c) => {
            json!({"type": "GeometryCollection", "geometries": c.0.iter().map(geometry_to_geojson).collect::<Vec<_>>()})
        }
        Geometry::Rect(r) => geometry_to_geojson(&Geometry::Polygon(r.to_polygon())),
        Geometry::Triangle(t) => geometry_to_geojson(&Geometry::Polygon(t.to_polygon())),
        Geometry::Line(l) => geometry_to_geojson(&Geometry::LineString(LineString::from(vec![
            l.start, l.end,
        ]))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIDAN: (f64, f64) = (30.5234, 50.4501);

    fn pt(x: f64, y: f64) -> Geometry<f64> {
        Geometry::Point(Point::new(x, y))
    }

    fn near(m: f64) -> GeoQuery {
        GeoQuery::from_params(
            &format!("near;maxDistance=={m}"),
            "Point",
            &format!("[{},{}]", MAIDAN.0, MAIDAN.1),
            None,
        )
        .unwrap()
    }

    #[test]
    fn near_a_line_is_metric_at_high_latitude() {
        // From [0,85] the end [1,85] is ~9.7 km away, the other end [0,85.6] ~67 km: in plain degrees the
        // closest point of the line would lie ~49 km away.
        let line: Geometry<f64> = LineString::from(vec![(0.0, 85.6), (1.0, 85.0)]).into();
        let d = distance_m(&pt(0.0, 85.0), &line);
        assert!((9000.0..9800.0).contains(&d), "{d}");
        let q = GeoQuery::from_params("near;maxDistance==20000", "Point", "[0,85]", None).unwrap();
        assert!(q.matches(&line));
    }

    #[test]
    fn near_by_distance() {
        // ~1.42 km east of Maidan.
        let p = pt(MAIDAN.0 + 0.02, MAIDAN.1);
        let d = distance_m(&pt(MAIDAN.0, MAIDAN.1), &p);
        assert!((1400.0..1440.0).contains(&d), "{d}");
        assert!(near(2000.0).matches(&p));
        assert!(!near(1000.0).matches(&p));
        let far =
            GeoQuery::from_params("near;minDistance==1000", "Point", "[30.5234,50.4501]", None)
                .unwrap();
        assert!(far.matches(&p) && !far.matches(&pt(MAIDAN.0, MAIDAN.1)));
        let legacy =
            GeoQuery::from_params("near;maxDistance==10", "Point", "30.5234,50.4501", None)
                .unwrap();
        assert!(legacy.matches(&pt(MAIDAN.0, MAIDAN.1)));
    }

    #[test]
    fn relations_with_polygons() {
        let square = "[[[30.5,50.4],[30.6,50.4],[30.6,50.5],[30.5,50.5],[30.5,50.4]]]";
        let within = GeoQuery::from_params("within", "Polygon", square, None).unwrap();
        assert!(within.matches(&pt(30.55, 50.45)) && !within.matches(&pt(30.7, 50.45)));
        let inter = GeoQuery::from_params("intersects", "Polygon", square, None).unwrap();
        let road = geometry_from_geojson(
            &json!({"type": "LineString", "coordinates": [[30.4, 50.45], [30.55, 50.45]]}),
        )
        .unwrap();
        assert!(inter.matches(&road) && !within.matches(&road));
        let disjoint = GeoQuery::from_params("disjoint", "Polygon", square, None).unwrap();
        assert!(disjoint.matches(&pt(31.0, 50.0)) && !disjoint.matches(&pt(30.55, 50.45)));
        let district = geometry_from_geojson(&json!({"type": "Polygon", "coordinates": [[[30.0,50.0],[31.0,50.0],[31.0,51.0],[30.0,51.0],[30.0,50.0]]]})).unwrap();
        let contains = GeoQuery::from_params("contains", "Point", "[30.55,50.45]", None).unwrap();
        assert!(contains.matches(&district) && !contains.matches(&pt(30.55, 50.46)));
        let eq = GeoQuery::from_params("equals", "Point", "[30.55,50.45]", None).unwrap();
        assert!(eq.matches(&pt(30.55, 50.45)) && !eq.matches(&pt(30.55, 50.4501)));
        let half = geometry_from_geojson(&json!({"type": "Polygon", "coordinates": [[[30.55,50.4],[30.7,50.4],[30.7,50.5],[30.55,50.5],[30.55,50.4]]]})).unwrap();
        let overlaps = GeoQuery::from_params("overlaps", "Polygon", square, None).unwrap();
        assert!(overlaps.matches(&half) && !overlaps.matches(&district));
    }

    #[test]
    fn candidate_boxes_hold_every_match() {
        let q = near(2000.0);
        let b = q.candidate_bbox().unwrap();
        for i in 0..400 {
            let a = (i as f64) * 0.0157;
            let r = 0.03 * ((i % 20) as f64 / 20.0);
            let p = pt(MAIDAN.0 + r * a.cos(), MAIDAN.1 + r * a.sin() * 0.6);
            if q.matches(&p) {
                if let Geometry::Point(pp) = p {
                    assert!(b.intersects(&pp), "{pp:?} outside {b:?}");
                }
            }
        }
        assert!(GeoQuery::from_params("disjoint", "Point", "[1,2]", None)
            .unwrap()
            .candidate_bbox()
            .is_none());
    }

    #[test]
    fn box_test_never_refuses_a_match() {
        let q = near(2000.0);
        let mut refused = 0;
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for i in 0..20_000 {
            // Boxes from a point (degenerate, as the index stores Points) up to a few kilometres wide.
            let size = if i % 2 == 0 { 0.0 } else { next() * 0.05 };
            let x = MAIDAN.0 + (next() - 0.5) * 0.08;
            let y = MAIDAN.1 + (next() - 0.5) * 0.06;
            let b = Rect::new((x, y), (x + size, y + size * next()));
            if !q.may_match_within(&b) {
                refused += 1;
                for k in 0..5 {
                    let t = k as f64 / 4.0;
                    let inside = pt(
                        b.min().x + b.width() * t,
                        b.min().y + b.height() * (1.0 - t),
                    );
                    assert!(!q.matches(&inside), "{b:?} refused, but {inside:?} matches");
                }
            }
        }
        assert!(refused > 1000, "the test refuses far boxes ({refused})");
        let inside = Rect::new((MAIDAN.0, MAIDAN.1), (MAIDAN.0, MAIDAN.1));
        assert!(q.may_match_within(&inside));
        let polygon = GeoQuery::from_params(
            "near;maxDistance==10",
            "Polygon",
            "[[[30.5,50.4],[30.6,50.4],[30.6,50.5],[30.5,50.4]]]",
            None,
        )
        .unwrap();
        let far = Rect::new((10.0, 10.0), (10.0, 10.0));
        assert!(polygon.may_match_within(&far), "only decided for points");
        let nan = Rect::new((f64::NAN, 1.0), (f64::NAN, 1.0));
        assert!(q.may_match_within(&nan));
    }

    #[test]
    fn bad_inputs_say_what_is_wrong() {
        let bad: &[(&str, &str, &str)] = &[
            ("", "Point", "[1,2]"),
            ("nearby", "Point", "[1,2]"),
            ("near", "Point", "[1,2]"),
            ("near;maxDistance==-5", "Point", "[1,2]"),
            ("near;maxDistance==x", "Point", "[1,2]"),
            ("near;maxDistance", "Point", "[1,2]"),
            ("near;foo==3", "Point", "[1,2]"),
            ("within;x==1", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]"),
            ("within", "", "[1,2]"),
            ("within", "Point", ""),
            ("within", "Circle", "[1,2]"),
            ("within", "Point", "[1]"),
            ("within", "Point", "[1,2,3,4]"),
            ("within", "Point", "[200,2]"),
            ("within", "Point", "[1,95]"),
            ("within", "Point", "[\"a\",2]"),
            ("within", "Point", "{x}"),
            ("within", "LineString", "[[1,2]]"),
            ("within", "Polygon", "[[[0,0],[1,0],[1,1]]]"),
            ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,1]]]"),
            ("within", "Polygon", "[]"),
            ("within", "MultiPolygon", "[1]"),
            ("within", "Polygon", "[[0,0],[1,0],[1,1],[0,0]]"),
            ("within", "MultiPoint", "[[1]]"),
            ("within", "point", "[1,2]"),
            ("near;maxDistance==NaN", "Point", "[1,2]"),
            ("near;maxDistance==1;maxDistance==2", "Point", "[1,2]"),
        ];
        for (r, g, c) in bad {
            let e = GeoQuery::from_params(r, g, c, None);
            assert!(e.is_err(), "{r} {g} {c} should fail");
            assert!(!e.unwrap_err().0.is_empty());
        }
        assert!(geometry_from_geojson(&json!({"type": "Point"})).is_err());
        assert!(geometry_from_geojson(&json!({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [1, 2]}]})).is_ok());
    }

    #[test]
    fn params_round_trip() {
        for (r, g, c) in [
            ("near;maxDistance==2000", "Point", "[30.5,50.4]"),
            ("within", "Polygon", "[[[0,0],[1,0],[1,1],[0,0]]]"),
            ("near;minDistance==5.5", "LineString", "[[1,2],[3,4]]"),
        ] {
            let q = GeoQuery::from_params(r, g, c, None).unwrap();
            let (a, b, d) = q.to_params();
            assert_eq!(GeoQuery::from_params(&a, &b, &d, None).unwrap(), q);
            assert_eq!(a, r);
        }
    }
}
