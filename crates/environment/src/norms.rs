//! Threshold rules with hysteresis: a value outside its limits opens a breach, and only a value back inside by a
//! margin closes it, so a reading oscillating around a limit raises one alert, not hundreds.

use serde::Deserialize;

use crate::Error;

/// A limit on one attribute (water norms, the radiation control level, an air pollutant's alert level).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Rule {
    /// The attribute's short name in its Smart Data Model (`NO3`, `pH`, `doseRate`, …).
    pub attribute: String,
    /// A human name for alerts (`nitrates`).
    #[serde(default)]
    pub label: String,
    /// The unit the limits are in, as text for people.
    #[serde(default)]
    pub unit: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// How far back inside a limit a value must come to close a breach, as a share of the limit
    /// (default 5 %).
    #[serde(default)]
    pub clear_margin: Option<f64>,
}

/// A norm table (e.g. drinking water, DSanPiN 2.2.4-171-10).
#[derive(Debug, Clone, Deserialize)]
pub struct NormTable {
    pub id: String,
    pub name: String,
    pub rules: Vec<Rule>,
}

/// The drinking-water norms shipped with misto.
pub const WATER_DSANPIN: &str = include_str!("../data/water-dsanpin-2.2.4-171-10.toml");

pub const DEFAULT_CLEAR_MARGIN: f64 = 0.05;

impl NormTable {
    pub fn parse(text: &str) -> Result<NormTable, Error> {
        let t: NormTable = toml::from_str(text)
            .map_err(|e| Error::Table(format!("not a valid norm table: {e}")))?;
        for r in &t.rules {
            r.check()?;
        }
        Ok(t)
    }

    /// Replace or add rules by attribute (a city's own limits over the shipped table).
    pub fn with_overrides(mut self, rules: &[Rule]) -> Result<NormTable, Error> {
        for r in rules {
            r.check()?;
            match self.rules.iter_mut().find(|x| x.attribute == r.attribute) {
                Some(x) => *x = r.clone(),
                None => self.rules.push(r.clone()),
            }
        }
        Ok(self)
    }
}

/// What a new value does to a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Open,
    Close,
    Stay,
}

impl Rule {
    fn check(&self) -> Result<(), Error> {
        match (self.min, self.max) {
            (None, None) => Err(Error::Table(format!(
                "the rule for {} has neither min nor max",
                self.attribute
            ))),
            (Some(a), Some(b)) if a > b => Err(Error::Table(format!(
                "the rule for {} has min above max",
                self.attribute
            ))),
            _ if self.clear_margin.is_some_and(|m| !(0.0..1.0).contains(&m)) => Err(Error::Table(
                format!("clear_margin of {} must be in [0, 1)", self.attribute),
            )),
            _ => Ok(()),
        }
    }

    fn margin(&self, limit: f64) -> f64 {
        limit.abs() * self.clear_margin.unwrap_or(DEFAULT_CLEAR_MARGIN)
    }

    /// Is the value outside the limits?
    pub fn breached(&self, v: f64) -> bool {
        self.max.is_some_and(|m| v > m) || self.min.is_some_and(|m| v < m)
    }

    /// Is the value inside the limits by the margin (a breach may close)?
    pub fn cleared(&self, v: f64) -> bool {
        self.max.is_none_or(|m| v <= m - self.margin(m))
            && self.min.is_none_or(|m| v >= m + self.margin(m))
    }

    /// The step a value makes from a breach state.
    pub fn step(&self, open: bool, v: f64) -> Transition {
        match open {
            false if self.breached(v) => Transition::Open,
            true if self.cleared(v) => Transition::Close,
            _ => Transition::Stay,
        }
    }

    /// The limit a value breaks, for messages.
    pub fn broken_limit(&self, v: f64) -> Option<(&'static str, f64)> {
        match (self.min, self.max) {
            (_, Some(m)) if v > m => Some(("above", m)),
            (Some(m), _) if v < m => Some(("below", m)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nitrates() -> Rule {
        Rule {
            attribute: "NO3".into(),
            label: "nitrates".into(),
            unit: "mg/dm3".into(),
            min: None,
            max: Some(50.0),
            clear_margin: None,
        }
    }

    #[test]
    fn oscillation_around_the_limit_opens_once() {
        let r = nitrates();
        let mut open = false;
        let mut opened = 0;
        let mut closed = 0;
        for v in [49.0, 50.5, 49.8, 50.2, 49.0, 51.0, 48.0, 47.4, 47.6, 51.0] {
            match r.step(open, v) {
                Transition::Open => {
                    open = true;
                    opened += 1
                }
                Transition::Close => {
                    open = false;
                    closed += 1
                }
                Transition::Stay => {}
            }
        }
        // Opens at 50.5, stays open through 49.8…48.0 (not 5 % below 50), closes at 47.4, opens again at 51.
        assert_eq!((opened, closed, open), (2, 1, true));
    }

    #[test]
    fn a_range_breaks_on_both_sides() {
        let ph = Rule {
            attribute: "pH".into(),
            label: "pH".into(),
            unit: String::new(),
            min: Some(6.5),
            max: Some(8.5),
            clear_margin: Some(0.02),
        };
        assert_eq!(ph.step(false, 6.4), Transition::Open);
        assert_eq!(ph.step(true, 6.55), Transition::Stay);
        assert_eq!(ph.step(true, 6.7), Transition::Close);
        assert_eq!(ph.step(false, 8.6), Transition::Open);
        assert_eq!(ph.broken_limit(8.6), Some(("above", 8.5)));
    }

    #[test]
    fn shipped_water_norms_parse_and_overrides_apply() {
        let t = NormTable::parse(WATER_DSANPIN).unwrap();
        assert!(t
            .rules
            .iter()
            .any(|r| r.attribute == "NO3" && r.max == Some(50.0)));
        let mut fe = t
            .rules
            .iter()
            .find(|r| r.attribute == "Fe")
            .unwrap()
            .clone();
        fe.max = Some(0.3);
        let t = t.with_overrides(&[fe]).unwrap();
        assert_eq!(
            t.rules.iter().find(|r| r.attribute == "Fe").unwrap().max,
            Some(0.3)
        );
        let bad = Rule {
            min: Some(2.0),
            max: Some(1.0),
            ..nitrates()
        };
        assert!(t.with_overrides(&[bad]).is_err());
    }
}
