//! Aggregated temporal representation (§4.5.19): `aggrMethods` over buckets of `aggrPeriodDuration` (an ISO 8601
//! duration, calendar units included, stepped with jiff in UTC).

use jiff::{Span, Timestamp, ToSpan, Zoned};
use misto_ngsild::{NgsiError, Result};
use misto_store::temporal::Bucket;
use serde_json::Value;

/// Most buckets one attribute may be split into.
pub const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    TotalCount,
    DistinctCount,
    Sum,
    Avg,
    Min,
    Max,
    Stddev,
    Sumsq,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        Ok(match s {
            "totalCount" => Method::TotalCount,
            "distinctCount" => Method::DistinctCount,
            "sum" => Method::Sum,
            "avg" => Method::Avg,
            "min" => Method::Min,
            "max" => Method::Max,
            "stddev" => Method::Stddev,
            "sumsq" => Method::Sumsq,
            other => {
                return Err(NgsiError::bad_data(format!(
                    "aggrMethods: '{other}' is none of totalCount, distinctCount, sum, avg, min, max, stddev, sumsq"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::TotalCount => "totalCount",
            Method::DistinctCount => "distinctCount",
            Method::Sum => "sum",
            Method::Avg => "avg",
            Method::Min => "min",
            Method::Max => "max",
            Method::Stddev => "stddev",
            Method::Sumsq => "sumsq",
        }
    }

    /// The method's value over a bucket (None: nothing to say, e.g. an average of no numbers).
    pub fn of(self, b: &Bucket) -> Option<Value> {
        if b.count == 0 {
            return None;
        }
        let n = b.numeric as f64;
        let num = |x: f64| serde_json::Number::from_f64(x).map(Value::Number);
        match self {
            Method::TotalCount => Some(Value::from(b.count)),
            Method::DistinctCount => Some(Value::from(b.distinct)),
            _ if b.numeric == 0 => None,
            Method::Sum => num(b.sum),
            Method::Avg => num(b.sum / n),
            Method::Min => b.min.and_then(num),
            Method::Max => b.max.and_then(num),
            Method::Sumsq => num(b.sumsq),
            Method::Stddev => {
                let mean = b.sum / n;
                num((b.sumsq / n - mean * mean).max(0.0).sqrt())
            }
        }
    }
}

/// `aggrMethods`: a non-empty list of methods.
pub fn methods(list: Option<&[String]>) -> Result<Vec<Method>> {
    let list = list
        .filter(|l| !l.is_empty())
        .ok_or_else(|| NgsiError::bad_data("options=aggregatedValues needs aggrMethods"))?;
    let mut out = Vec::new();
    for m in list {
        let m = Method::parse(m)?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// `aggrPeriodDuration`: a positive ISO 8601 duration.
pub fn period(s: &str) -> Result<Span> {
    let bad = || {
        NgsiError::bad_data(format!(
            "aggrPeriodDuration: '{s}' is not a positive ISO 8601 duration"
        ))
    };
    if !s.starts_with(['P', 'p']) {
        return Err(bad());
    }
    let span: Span = s.parse().map_err(|_| bad())?;
    if span.is_zero() || span.is_negative() {
        return Err(bad());
    }
    Ok(span)
}

/// Buckets `[start, end)` from `from` up to `to` (ms), each `span` long (the whole range when None).
pub fn buckets(from: i64, to: i64, span: Option<Span>) -> Result<Vec<(i64, i64)>> {
    let Some(span) = span else {
        return Ok(vec![(from, to.max(from + 1))]);
    };
    let ts = |ms: i64| {
        Timestamp::from_millisecond(ms)
            .map_err(|e| NgsiError::bad_data(format!("a time is out of range: {e}")))
    };
    let mut cur: Zoned = ts(from)?.to_zoned(jiff::tz::TimeZone::UTC);
    let mut out = Vec::new();
    loop {
        let next = cur
            .checked_add(span)
            .map_err(|e| NgsiError::bad_data(format!("aggrPeriodDuration: {e}")))?;
        let (a, b) = (
            cur.timestamp().as_millisecond(),
            next.timestamp().as_millisecond(),
        );
        if b <= a {
            // A span that does not advance (e.g. under a millisecond) would never end.
            return Err(NgsiError::bad_data(
                "aggrPeriodDuration must be at least 1 millisecond",
            ));
        }
        out.push((a, b));
        if b >= to.max(from + 1) {
            return Ok(out);
        }
        if out.len() >= MAX_BUCKETS {
            return Err(NgsiError::bad_data(format!(
                "aggrPeriodDuration splits the range into more than {MAX_BUCKETS} periods"
            )));
        }
        cur = next;
    }
}

/// One millisecond, for ranges that end just after their last instance.
pub fn one_ms() -> Span {
    1.millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_buckets() {
        let h = 3_600_000;
        let b = buckets(0, 3 * h, Some(period("PT1H").unwrap())).unwrap();
        assert_eq!(b, vec![(0, h), (h, 2 * h), (2 * h, 3 * h)]);
        assert_eq!(buckets(0, 10, None).unwrap(), vec![(0, 10)]);
        assert!(period("1h").is_err());
        assert!(period("PT0S").is_err());
        assert!(period("P1M").is_ok());
        assert!(buckets(0, i64::from(i32::MAX) * 1000, Some(period("PT1S").unwrap())).is_err());
    }

    #[test]
    fn methods_over_a_bucket() {
        let b = Bucket {
            count: 3,
            distinct: 2,
            numeric: 2,
            sum: 6.0,
            sumsq: 20.0,
            min: Some(2.0),
            max: Some(4.0),
        };
        assert_eq!(Method::Avg.of(&b), Some(Value::from(3.0)));
        assert_eq!(Method::Stddev.of(&b), Some(Value::from(1.0)));
        assert_eq!(Method::TotalCount.of(&b), Some(Value::from(3)));
        assert!(Method::parse("median").is_err());
        assert_eq!(Method::Avg.of(&Bucket::default()), None);
    }
}
