//! Means of an entity's numeric attributes over windows that end at an instant: what domain modules (air-quality
//! indices, for one) need from the history, without building a temporal representation.

use misto_ngsild::Result;
use misto_store::temporal::TimeProperty;

use crate::Broker;

/// The mean of an attribute's numeric instances in a window, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMean {
    pub mean: f64,
    pub count: u64,
}

impl Broker {
    /// For each (expanded attribute, window length in ms), the mean of the default instance's numeric history
    /// with `observedAt` in `(at_ms - window, at_ms]`; None when the window holds no number.
    pub async fn attribute_means(
        &self,
        tenant: &str,
        id: &str,
        windows: &[(String, i64)],
        at_ms: i64,
    ) -> Result<Vec<Option<WindowMean>>> {
        let attrs: Vec<String> = windows.iter().map(|(a, _)| a.clone()).collect();
        let series = self.store.temporal_series(tenant, id, Some(&attrs)).await?;
        let mut out = Vec::with_capacity(windows.len());
        for (attr, window) in windows {
            let Some(s) = series
                .iter()
                .find(|s| &s.attr == attr && s.dataset.is_empty())
            else {
                out.push(None);
                continue;
            };
            let bucket = (
                at_ms.saturating_sub(*window).saturating_add(1),
                at_ms.saturating_add(1),
            );
            let b = self
                .store
                .temporal_aggregate(tenant, &[s.sid], TimeProperty::ObservedAt, &[bucket], false)
                .await?;
            let mean = b
                .first()
                .and_then(|v| v.first())
                .filter(|b| b.numeric > 0)
                .map(|b| WindowMean {
                    mean: b.sum / b.numeric as f64,
                    count: b.numeric,
                });
            out.push(mean);
        }
        Ok(out)
    }
}
