//! Concentration units and conversions between mass and volume mixing ratios (at 25 °C and 1 atm, the
//! reference conditions of the US EPA: one mole of gas takes 24.45 litres).

use serde::Deserialize;

/// A concentration unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Unit {
    /// µg/m³ (UN/CEFACT `GQ`).
    #[serde(rename = "ug/m3")]
    MicrogramPerCubicMetre,
    /// mg/m³ (`GP`).
    #[serde(rename = "mg/m3")]
    MilligramPerCubicMetre,
    /// parts per million (`59`).
    #[serde(rename = "ppm")]
    Ppm,
    /// parts per billion (`61`).
    #[serde(rename = "ppb")]
    Ppb,
}

impl Unit {
    /// The unit of a UN/CEFACT common code, as NGSI-LD `unitCode` carries it.
    pub fn from_code(code: &str) -> Option<Unit> {
        match code {
            "GQ" => Some(Unit::MicrogramPerCubicMetre),
            "GP" => Some(Unit::MilligramPerCubicMetre),
            "59" => Some(Unit::Ppm),
            "61" => Some(Unit::Ppb),
            _ => None,
        }
    }
}

const MOLAR_VOLUME_L: f64 = 24.45;

/// Molecular weight (g/mol) of the gases whose indices are given as mixing ratios.
fn molecular_weight(pollutant: &str) -> Option<f64> {
    match pollutant {
        "no2" => Some(46.0055),
        "o3" => Some(47.9982),
        "so2" => Some(64.066),
        "co" => Some(28.010),
        _ => None,
    }
}

/// `value` of `pollutant` in `from`, expressed in `to`; None when a mass/volume conversion is needed for a
/// pollutant without a molecular weight (particles).
pub fn convert(pollutant: &str, value: f64, from: Unit, to: Unit) -> Option<f64> {
    use Unit::*;
    if from == to {
        return Some(value);
    }
    // Everything through µg/m³.
    let ug = match from {
        MicrogramPerCubicMetre => value,
        MilligramPerCubicMetre => value * 1000.0,
        Ppb => value * molecular_weight(pollutant)? / MOLAR_VOLUME_L,
        Ppm => value * 1000.0 * molecular_weight(pollutant)? / MOLAR_VOLUME_L,
    };
    match to {
        MicrogramPerCubicMetre => Some(ug),
        MilligramPerCubicMetre => Some(ug / 1000.0),
        Ppb => Some(ug * MOLAR_VOLUME_L / molecular_weight(pollutant)?),
        Ppm => Some(ug * MOLAR_VOLUME_L / molecular_weight(pollutant)? / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no2_of_100_ug_is_53_ppb() {
        let ppb = convert("no2", 100.0, Unit::MicrogramPerCubicMetre, Unit::Ppb).unwrap();
        assert!((ppb - 53.15).abs() < 0.01, "{ppb}");
    }

    #[test]
    fn co_in_mg_to_ppm_and_back() {
        let ppm = convert("co", 1.145, Unit::MilligramPerCubicMetre, Unit::Ppm).unwrap();
        assert!((ppm - 1.0).abs() < 0.001, "{ppm}");
        let back = convert("co", ppm, Unit::Ppm, Unit::MilligramPerCubicMetre).unwrap();
        assert!((back - 1.145).abs() < 1e-9);
    }

    #[test]
    fn particles_have_no_mixing_ratio() {
        assert_eq!(
            convert("pm25", 10.0, Unit::MicrogramPerCubicMetre, Unit::Ppb),
            None
        );
    }
}
