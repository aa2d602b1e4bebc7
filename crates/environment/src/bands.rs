//! Air-quality index tables as data: the European (EEA) index by levels and the US EPA index by linear
//! segments. Tables ship in `data/` and are versioned by their `id`; a city may load others.

use serde::Deserialize;

use crate::units::Unit;
use crate::Error;

/// How a table turns concentrations into an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A level number (1 = the first category) per pollutant, from upper bounds.
    Levels,
    /// A number interpolated within the row the concentration falls in (US EPA).
    Linear,
}

/// One pollutant's scale in a table.
#[derive(Debug, Clone, Deserialize)]
pub struct PollutantScale {
    /// The Smart Data Model attribute name (`pm25`, `no2`, …).
    pub pollutant: String,
    /// The averaging window, an ISO 8601 duration (`PT1H`, `PT8H`, `PT24H`).
    pub averaging: String,
    pub unit: Unit,
    /// Levels: upper bound of each level, in order.
    #[serde(default)]
    pub bounds: Vec<f64>,
    /// Linear: the [low, high] concentrations of each row, row i being category `first_category + i`.
    #[serde(default)]
    pub rows: Vec<[f64; 2]>,
    #[serde(default)]
    pub first_category: usize,
    /// Linear: the concentration is truncated to this many decimals before it is looked up.
    #[serde(default)]
    pub decimals: u32,
}

/// An index table.
#[derive(Debug, Clone, Deserialize)]
pub struct BandTable {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    /// Category names, best first.
    pub categories: Vec<String>,
    /// Linear: the [low, high] index of each category.
    #[serde(default)]
    pub indices: Vec<[f64; 2]>,
    pub pollutants: Vec<PollutantScale>,
}

/// The European index shipped with misto.
pub const EEA_EAQI: &str = include_str!("../data/eea-eaqi-6-level.toml");
/// The US EPA index (2024 breakpoints) shipped with misto.
pub const US_EPA_AQI: &str = include_str!("../data/us-epa-aqi-2024.toml");

impl BandTable {
    /// Parse and check a table.
    pub fn parse(text: &str) -> Result<BandTable, Error> {
        let t: BandTable =
            toml::from_str(text).map_err(|e| Error::Table(format!("not a valid table: {e}")))?;
        t.check()?;
        Ok(t)
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::Table(format!("{}: {m}", self.id)));
        if self.categories.is_empty() {
            return bad("no categories".into());
        }
        if self.kind == Kind::Linear && self.indices.len() != self.categories.len() {
            return bad("one index range per category is needed".into());
        }
        for p in &self.pollutants {
            crate::window_ms(&p.averaging)
                .map_err(|e| Error::Table(format!("{}: {}: {e}", self.id, p.pollutant)))?;
            let ordered = |v: &[f64]| v.windows(2).all(|w| w[0] < w[1]);
            match self.kind {
                Kind::Levels => {
                    if p.bounds.len() != self.categories.len() || !ordered(&p.bounds) {
                        return bad(format!(
                            "{} needs one increasing bound per category",
                            p.pollutant
                        ));
                    }
                }
                Kind::Linear => {
                    let flat: Vec<f64> = p.rows.iter().flat_map(|r| [r[0], r[1]]).collect();
                    if p.rows.is_empty()
                        || p.first_category + p.rows.len() > self.categories.len()
                        || !flat.windows(2).all(|w| w[0] <= w[1])
                    {
                        return bad(format!("{} has rows out of order or range", p.pollutant));
                    }
                }
            }
        }
        Ok(())
    }

    /// The scales of a pollutant (the EPA's ozone has two).
    pub fn scales<'a>(&'a self, pollutant: &'a str) -> impl Iterator<Item = &'a PollutantScale> {
        self.pollutants
            .iter()
            .filter(move |p| p.pollutant == pollutant)
    }

    /// The pollutants the table knows, each once, in table order.
    pub fn pollutant_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.pollutants {
            if !out.contains(&p.pollutant.as_str()) {
                out.push(&p.pollutant);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tables_parse() {
        let e = BandTable::parse(EEA_EAQI).unwrap();
        assert_eq!(e.categories.len(), 6);
        assert_eq!(e.pollutant_names(), ["pm25", "pm10", "no2", "o3", "so2"]);
        let u = BandTable::parse(US_EPA_AQI).unwrap();
        assert_eq!(u.scales("o3").count(), 2);
    }

    #[test]
    fn a_table_with_unordered_bounds_is_refused() {
        let text = EEA_EAQI.replace("[10, 20, 25, 50, 75, 800]", "[10, 20, 15, 50, 75, 800]");
        let err = BandTable::parse(&text).unwrap_err().to_string();
        assert!(err.contains("pm25"), "{err}");
    }
}
