//! The temporal query (§4.11): `timerel`, `timeAt`, `endTimeAt` and `timeproperty` as a range of instance times.
//! `before` is an exclusive upper bound, `after` an inclusive lower bound, `between` is [timeAt, endTimeAt).

use misto_ngsild::{NgsiError, Result};
use misto_store::temporal::{TimeProperty, TimeRange};

/// A DateTime parameter in milliseconds since the epoch.
pub fn parse_time(name: &str, v: &str) -> Result<i64> {
    misto_ngsild::validate::parse_datetime(v)
        .map(|t| t.as_millisecond())
        .ok_or_else(|| NgsiError::bad_data(format!("{name}: '{v}' is not an ISO 8601 DateTime")))
}

fn time_property(v: Option<&str>) -> Result<TimeProperty> {
    match v {
        None | Some("observedAt") => Ok(TimeProperty::ObservedAt),
        Some("createdAt") => Ok(TimeProperty::CreatedAt),
        Some("modifiedAt") => Ok(TimeProperty::ModifiedAt),
        Some(other) => Err(NgsiError::bad_data(format!(
            "timeproperty: '{other}' is none of observedAt, createdAt, modifiedAt"
        ))),
    }
}

/// The range the parameters select (an open range without `timerel`).
pub fn range(
    timerel: Option<&str>,
    time_at: Option<&str>,
    end_time_at: Option<&str>,
    timeproperty: Option<&str>,
) -> Result<TimeRange> {
    let prop = time_property(timeproperty)?;
    let at = time_at.map(|v| parse_time("timeAt", v)).transpose()?;
    let end = end_time_at
        .map(|v| parse_time("endTimeAt", v))
        .transpose()?;
    let need_at = || NgsiError::bad_data("timerel needs timeAt");
    let (from, to) = match timerel {
        None => {
            if at.is_some() || end.is_some() {
                return Err(NgsiError::bad_data("timeAt and endTimeAt need timerel"));
            }
            (None, None)
        }
        Some("before") => (None, Some(at.ok_or_else(need_at)?)),
        Some("after") => (Some(at.ok_or_else(need_at)?), None),
        Some("between") => {
            let from = at.ok_or_else(need_at)?;
            let to = end.ok_or_else(|| NgsiError::bad_data("timerel=between needs endTimeAt"))?;
            if to <= from {
                return Err(NgsiError::bad_data("endTimeAt must be after timeAt"));
            }
            (Some(from), Some(to))
        }
        Some(other) => {
            return Err(NgsiError::bad_data(format!(
                "timerel: '{other}' is none of before, after, between"
            )))
        }
    };
    if end.is_some() && timerel != Some("between") {
        return Err(NgsiError::bad_data("endTimeAt is only for timerel=between"));
    }
    Ok(TimeRange { from, to, prop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let r = range(
            Some("between"),
            Some("2020-01-01T00:00:00Z"),
            Some("2020-01-01T00:00:01.000Z"),
            None,
        )
        .unwrap();
        assert_eq!(r.to.unwrap() - r.from.unwrap(), 1000);
        assert!(range(Some("before"), None, None, None).is_err());
        assert!(range(Some("around"), Some("2020-01-01T00:00:00Z"), None, None).is_err());
        assert!(range(None, Some("2020-01-01T00:00:00Z"), None, None).is_err());
        assert!(range(Some("after"), Some("yesterday"), None, None).is_err());
        assert_eq!(
            range(None, None, None, Some("createdAt")).unwrap().prop,
            TimeProperty::CreatedAt
        );
    }
}
