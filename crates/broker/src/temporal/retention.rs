//! Retention of attribute instances per entity type: a background task removes instances older than the
//! type's retention period, in small batches (each its own short write), so that writes are never held up.

use std::time::Duration;

use jiff::Span;
use misto_ngsild::{Context, NgsiError, Result};

use crate::Broker;

/// Instances removed per store call.
pub const BATCH: usize = 1000;

/// Retention periods per (expanded) entity type.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    rules: Vec<(String, Span)>,
}

impl Retention {
    /// Rules from (type name, ISO 8601 duration) pairs; short type names expand with the core context.
    pub fn parse(rules: &[(String, String)]) -> Result<Retention> {
        let ctx = Context::core();
        let mut out = Vec::new();
        for (t, d) in rules {
            let span = super::aggregate::period(d).map_err(|_| {
                NgsiError::bad_data(format!(
                    "retention of {t}: '{d}' is not a positive ISO 8601 duration"
                ))
            })?;
            out.push((ctx.expand(t), span));
        }
        Ok(Retention { rules: out })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Broker {
    /// Remove instances past their type's retention; returns how many went.
    pub async fn retain_temporal(&self, retention: &Retention) -> Result<u64> {
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        let mut total = 0;
        for (ty, span) in &retention.rules {
            let before = now
                .checked_sub(*span)
                .map_err(|e| NgsiError::bad_data(format!("retention of {ty}: {e}")))?
                .timestamp()
                .as_millisecond();
            loop {
                let n = self.store.temporal_retain(ty, before, BATCH).await?;
                total += n;
                if (n as usize) < BATCH {
                    break;
                }
                // Let other writers in between batches.
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }

    /// Run [`Broker::retain_temporal`] every `every` until the process stops.
    pub fn spawn_retention(
        &self,
        retention: Retention,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let b = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match b.retain_temporal(&retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "temporal retention"),
                    Err(e) => tracing::warn!(error = %e, "temporal retention failed"),
                }
            }
        })
    }
}
