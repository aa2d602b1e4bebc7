//! Air-quality indices from averaged concentrations, by a [`BandTable`].

use crate::bands::{BandTable, Kind, PollutantScale};

/// One pollutant's part of an index.
#[derive(Debug, Clone, PartialEq)]
pub struct SubIndex {
    pub pollutant: String,
    /// The averaging window the value came from (`PT24H`, …).
    pub averaging: String,
    /// The averaged concentration, in the scale's unit.
    pub concentration: f64,
    /// The level number (levels tables: 1 = the first category) or the index (linear tables).
    pub value: f64,
    /// Category number, 0 = the best.
    pub category: usize,
}

/// An index of a station: the worst sub-index, and which pollutant it is.
#[derive(Debug, Clone, PartialEq)]
pub struct AqiResult {
    pub table: String,
    pub value: f64,
    pub category: usize,
    pub category_name: String,
    pub dominant: String,
    pub parts: Vec<SubIndex>,
}

fn truncate(c: f64, decimals: u32) -> f64 {
    let f = 10f64.powi(decimals as i32);
    (c * f + 1e-9).floor() / f
}

/// The (value, category) of one concentration on one scale; None when the scale does not define it (e.g. the
/// EPA's 8-hour ozone above 0.200 ppm, or its 1-hour ozone below 0.125 ppm).
pub fn scale_value(table: &BandTable, s: &PollutantScale, c: f64) -> Option<(f64, usize)> {
    if !c.is_finite() || c < 0.0 {
        return None;
    }
    match table.kind {
        Kind::Levels => {
            let i = s
                .bounds
                .iter()
                .position(|b| c <= *b)
                .unwrap_or(s.bounds.len() - 1);
            Some(((i + 1) as f64, i))
        }
        Kind::Linear => {
            let c = truncate(c, s.decimals);
            let first = s.rows.first()?;
            if c < first[0] {
                return None;
            }
            for (i, r) in s.rows.iter().enumerate() {
                let cat = s.first_category + i;
                let [ilo, ihi] = table.indices[cat];
                if c <= r[1] {
                    // Between two rows (a gap the truncation cannot close): the upper row's low end.
                    let v = if c < r[0] {
                        ilo
                    } else if r[1] > r[0] {
                        (ihi - ilo) / (r[1] - r[0]) * (c - r[0]) + ilo
                    } else {
                        ilo
                    };
                    return Some((v.round(), cat));
                }
            }
            let last = s.first_category + s.rows.len() - 1;
            (last + 1 == table.categories.len()).then(|| (table.indices[last][1], last))
        }
    }
}

/// The index of a station from the concentration of each scale (`conc` gives the averaged concentration of a
/// scale in its unit, None when unknown). None when no pollutant has a value.
pub fn compute(
    table: &BandTable,
    conc: impl Fn(&PollutantScale) -> Option<f64>,
) -> Option<AqiResult> {
    let mut parts: Vec<SubIndex> = Vec::new();
    for s in &table.pollutants {
        let Some(c) = conc(s) else { continue };
        let Some((value, category)) = scale_value(table, s, c) else {
            continue;
        };
        // A pollutant with two scales (EPA ozone) keeps the higher.
        if let Some(p) = parts.iter_mut().find(|p| p.pollutant == s.pollutant) {
            if value > p.value {
                *p = SubIndex {
                    pollutant: s.pollutant.clone(),
                    averaging: s.averaging.clone(),
                    concentration: c,
                    value,
                    category,
                };
            }
            continue;
        }
        parts.push(SubIndex {
            pollutant: s.pollutant.clone(),
            averaging: s.averaging.clone(),
            concentration: c,
            value,
            category,
        });
    }
    let worst = parts.iter().fold(None::<&SubIndex>, |w, p| match w {
        Some(w) if w.value >= p.value => Some(w),
        _ => Some(p),
    })?;
    Some(AqiResult {
        table: table.id.clone(),
        value: worst.value,
        category: worst.category,
        category_name: table.categories[worst.category].clone(),
        dominant: worst.pollutant.clone(),
        parts: parts.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bands::{EEA_EAQI, US_EPA_AQI};
    use std::collections::HashMap;

    fn run(text: &str, conc: &[(&str, &str, f64)]) -> Option<AqiResult> {
        let t = BandTable::parse(text).unwrap();
        let m: HashMap<(String, String), f64> = conc
            .iter()
            .map(|(p, a, c)| ((p.to_string(), a.to_string()), *c))
            .collect();
        compute(&t, |s| {
            m.get(&(s.pollutant.clone(), s.averaging.clone())).copied()
        })
    }

    #[test]
    fn epa_pm25_breakpoints_of_2024() {
        // 9.0 is the top of "good"; 9.1 starts "moderate" at 51.
        let good = run(US_EPA_AQI, &[("pm25", "PT24H", 9.0)]).unwrap();
        assert_eq!((good.value, good.category_name.as_str()), (50.0, "good"));
        let moderate = run(US_EPA_AQI, &[("pm25", "PT24H", 9.1)]).unwrap();
        assert_eq!(moderate.value, 51.0);
        // 35.0 µg/m³: (100-51)/(35.4-9.1)*(35.0-9.1)+51 = 99.25 → 99
        assert_eq!(
            run(US_EPA_AQI, &[("pm25", "PT24H", 35.04)]).unwrap().value,
            99.0
        );
        // Truncation: 9.08 is read as 9.0.
        assert_eq!(
            run(US_EPA_AQI, &[("pm25", "PT24H", 9.08)]).unwrap().value,
            50.0
        );
        // Above the table: 500.
        assert_eq!(
            run(US_EPA_AQI, &[("pm25", "PT24H", 900.0)]).unwrap().value,
            500.0
        );
    }

    #[test]
    fn epa_reports_the_dominant_pollutant() {
        let r = run(
            US_EPA_AQI,
            &[
                ("pm25", "PT24H", 12.0),
                ("no2", "PT1H", 120.0),
                ("o3", "PT8H", 0.04),
            ],
        )
        .unwrap();
        // NO2 120 ppb: (150-101)/(360-101)*(120-101)+101 = 104.6 → 105
        assert_eq!(r.dominant, "no2");
        assert_eq!(r.value, 105.0);
        assert_eq!(r.category_name, "unhealthyForSensitiveGroups");
        assert_eq!(r.parts.len(), 3);
    }

    #[test]
    fn epa_ozone_takes_the_higher_of_its_two_scales() {
        // 8-hour 0.060 ppm → 67; 1-hour 0.170 ppm → (200-151)/(0.204-0.165)*(0.005)+151 = 157.3 → 157.
        let r = run(US_EPA_AQI, &[("o3", "PT8H", 0.060), ("o3", "PT1H", 0.170)]).unwrap();
        assert_eq!(r.value, 157.0);
        assert_eq!(r.parts[0].averaging, "PT1H");
        // 1-hour ozone below its table adds nothing.
        let r = run(US_EPA_AQI, &[("o3", "PT8H", 0.060), ("o3", "PT1H", 0.070)]).unwrap();
        assert_eq!(r.value, 67.0);
        // 8-hour ozone above 0.200 ppm is not defined.
        assert!(run(US_EPA_AQI, &[("o3", "PT8H", 0.25)]).is_none());
    }

    #[test]
    fn eea_levels_and_dominant_pollutant() {
        let r = run(
            EEA_EAQI,
            &[
                ("pm25", "PT24H", 22.0),
                ("no2", "PT1H", 35.0),
                ("o3", "PT1H", 140.0),
            ],
        )
        .unwrap();
        // PM2.5 22 → moderate (3); NO2 35 → good (1); O3 140 → poor (4).
        assert_eq!(r.dominant, "o3");
        assert_eq!((r.value, r.category_name.as_str()), (4.0, "poor"));
        let top = run(EEA_EAQI, &[("pm25", "PT24H", 10.0)]).unwrap();
        assert_eq!(top.category_name, "good");
        let over = run(EEA_EAQI, &[("pm25", "PT24H", 2000.0)]).unwrap();
        assert_eq!(over.category_name, "extremelyPoor");
    }

    #[test]
    fn no_values_no_index() {
        assert!(run(EEA_EAQI, &[]).is_none());
        assert!(run(EEA_EAQI, &[("pm25", "PT24H", f64::NAN)]).is_none());
    }
}
