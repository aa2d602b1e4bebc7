//! Devices gone silent: a device whose last report is older than three of its profile's report intervals is
//! offline — an `Alert` entity (Smart Data Model) is opened for it, and closed (`validTo`) once it reports again.
//! The open alerts are the state: after a restart they are read back from the broker, so a device is flagged
//! once per silence, not once per check or per start.

use std::collections::HashMap;
use std::time::Duration;

use misto_broker::EntityQueryParams;
use misto_ngsild::validate::format_datetime;
use misto_ngsild::{Context, ErrorKind};
use serde_json::{json, Value};

use crate::{DeviceError, Devices};

/// Silence longer than this many report intervals is offline.
pub const SILENT_INTERVALS: i64 = 3;
/// Who raises these alerts (in the alert's `data`).
pub const RAISED_BY: &str = "misto-devices";
const ALERT_CONTEXT: &str =
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld";

fn at(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(format_datetime)
        .unwrap_or_else(|_| misto_ngsild::validate::now())
}

impl Devices {
    /// Check every device of every tenant against its report interval at `now_ms`: open an offline alert for
    /// each newly silent device, close the alert of each device that reported again. Returns (opened, closed).
    pub async fn check_offline(&self, now_ms: i64) -> Result<(usize, usize), DeviceError> {
        let ctx = self
            .broker
            .contexts
            .resolve(Some(&json!([ALERT_CONTEXT])))
            .await?;
        let (mut opened, mut closed) = (0, 0);
        for (tenant, _) in self.broker.store.tenants().await? {
            let mut open = self.open_offline_alerts(&tenant, &ctx).await?;
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .broker
                    .store
                    .list_devices(&tenant, after.as_deref(), 500)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                for d in &page {
                    let (Some(seen), Some(profile)) = (d.health.last_seen_ms, &d.profile_id) else {
                        continue;
                    };
                    let Ok(p) = self.profile(&tenant, profile).await? else {
                        continue;
                    };
                    let Some(interval) = p.report_interval.filter(|i| *i > 0) else {
                        continue;
                    };
                    let silent = now_ms - seen > SILENT_INTERVALS * interval as i64 * 1000;
                    match (silent, open.remove(&d.id)) {
                        (true, None) => {
                            self.open_offline(&tenant, &ctx, d, seen, interval, now_ms)
                                .await?;
                            opened += 1;
                        }
                        (false, Some(alert)) => {
                            let body = json!({"validTo": {"type": "Property",
                                "value": {"@type": "DateTime", "@value": at(now_ms)}}});
                            match self.broker.merge_entity(&tenant, &ctx, &alert, &body).await {
                                Ok(()) => {}
                                Err(e) if e.kind == ErrorKind::ResourceNotFound => {}
                                Err(e) => return Err(e.into()),
                            }
                            metrics::counter!("misto_devices_offline_total", "change" => "back")
                                .increment(1);
                            tracing::info!(tenant, device = d.id, "device reports again");
                            closed += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok((opened, closed))
    }

    async fn open_offline(
        &self,
        tenant: &str,
        ctx: &Context,
        d: &misto_store::devices::DeviceRecord,
        seen: i64,
        interval: u64,
        now_ms: i64,
    ) -> Result<(), DeviceError> {
        let since = at(seen);
        let stamp: String = at(now_ms).chars().filter(char::is_ascii_digit).collect();
        let mut body = json!({
            "id": format!("urn:ngsi-ld:Alert:device-offline:{}:{stamp}", d.id),
            "type": "Alert",
            "severity": {"type": "Property", "value": "medium"},
            "description": {"type": "Property", "value": format!(
                "device {} silent since {since} (expected a report every {interval} s)", d.id)},
            "alertSource": {"type": "Property", "value": crate::model::device_entity_id(&d.id)},
            "dateIssued": {"type": "Property", "value": {"@type": "DateTime", "@value": at(now_ms)}},
            "validFrom": {"type": "Property", "value": {"@type": "DateTime", "@value": at(now_ms)}},
            "data": {"type": "Property", "value": {"raisedBy": RAISED_BY, "device": d.id,
                "lastSeen": since, "reportInterval": interval}},
        });
        if let Some(loc) = d.doc.get("location").filter(|l| l.is_object()) {
            body["location"] = json!({"type": "GeoProperty", "value": loc});
        }
        match self.broker.create_entity(tenant, ctx, &body).await {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        metrics::counter!("misto_devices_offline_total", "change" => "offline").increment(1);
        tracing::info!(tenant, device = d.id, last_seen = since, "device offline");
        Ok(())
    }

    /// Device id → the id of its open offline alert.
    async fn open_offline_alerts(
        &self,
        tenant: &str,
        ctx: &Context,
    ) -> Result<HashMap<String, String>, DeviceError> {
        let data = ctx.expand("data");
        let mut out = HashMap::new();
        let mut offset = 0;
        loop {
            let p = EntityQueryParams {
                types: Some("Alert".into()),
                q: Some("!validTo".into()),
                limit: Some(self.broker.config.max_limit.min(1000)),
                offset,
                ..Default::default()
            };
            let page = match self.broker.query_entities(tenant, ctx, &p).await {
                Ok(p) => p,
                Err(e) if e.kind == ErrorKind::NonexistentTenant => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            offset += page.entities.len();
            for e in &page.entities {
                let v = e
                    .get(&data)
                    .and_then(|a| a.get(0))
                    .and_then(|i| i.get("value"));
                let Some(v) = v.filter(|v| v["raisedBy"] == RAISED_BY) else {
                    continue;
                };
                if let (Some(dev), Some(id)) =
                    (v["device"].as_str(), e.get("id").and_then(Value::as_str))
                {
                    out.insert(dev.to_string(), id.to_string());
                }
            }
            if !page.more || page.entities.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Check for silent devices every `every` until the task is dropped.
    pub fn spawn_offline_check(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let d = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = d
                    .check_offline(jiff::Timestamp::now().as_millisecond())
                    .await
                {
                    tracing::warn!(error = %e, "offline check failed");
                }
            }
        })
    }
}
