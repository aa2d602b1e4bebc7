//! The monitor: follows the broker's change feed and turns observations into indices, statuses and alerts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use misto_broker::{Broker, EntityChange, EntityQueryParams};
use misto_ngsild::validate::{format_datetime, parse_datetime};
use misto_ngsild::{Context, Entity, ErrorKind};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::alerts::{self, Breach};
use crate::aqi::{self, AqiResult};
use crate::bands::{BandTable, PollutantScale, EEA_EAQI, US_EPA_AQI};
use crate::norms::{NormTable, Rule, Transition, WATER_DSANPIN};
use crate::units::{self, Unit};
use crate::{window_ms, Config, Error, ALERT_CONTEXT, ENVIRONMENT_CONTEXT, WATER_CONTEXT};

/// The radiation extension's type and dose-rate attribute (µSv/h).
pub const RADIATION_TYPE: &str = "RadiationObserved";
pub const DOSE_RATE: &str = "doseRate";

/// (tenant, station, rule) → the open alert's id.
type OpenKey = (String, String, String);

#[derive(Default)]
struct Breaches {
    /// Tenants whose open alerts were read from the broker.
    loaded: HashSet<String>,
    open: HashMap<OpenKey, String>,
}

pub struct Monitor {
    broker: Broker,
    config: Config,
    eea: BandTable,
    epa: BandTable,
    water: NormTable,
    radiation: Rule,
    /// The European index category (number) from which a pollutant raises an alert.
    air_alert: usize,
    pub(crate) env: Context,
    pub(crate) water_ctx: Context,
    alert_ctx: Context,
    breaches: Mutex<Breaches>,
}

/// The default instance of an attribute in the stored form.
pub(crate) fn instance<'a>(e: &'a Entity, iri: &str) -> Option<&'a Map<String, Value>> {
    let list = e.get(iri)?.as_array()?;
    list.iter()
        .filter_map(Value::as_object)
        .find(|i| !i.contains_key("datasetId"))
        .or_else(|| list.first().and_then(Value::as_object))
}

pub(crate) fn number(e: &Entity, iri: &str) -> Option<f64> {
    instance(e, iri)?.get("value")?.as_f64()
}

fn observed_ms(e: &Entity, iri: &str) -> Option<i64> {
    let s = instance(e, iri)?.get("observedAt")?.as_str()?;
    Some(parse_datetime(s)?.as_millisecond())
}

/// Did the change write this attribute (a new observation, even of the same value)?
fn written(c: &EntityChange, iri: &str) -> bool {
    let after = c.after.as_ref().and_then(|e| e.get(iri));
    after.is_some() && after != c.before.as_ref().and_then(|e| e.get(iri))
}

/// Index values are whole numbers (levels, rounded EPA indices): written as integers.
fn whole(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn at_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(format_datetime)
        .unwrap_or_else(|_| misto_ngsild::validate::now())
}

/// The concentration unit of a pollutant reading when its `unitCode` does not say (the Smart Data Model's
/// examples give carbon monoxide in mg/m³, the rest in µg/m³).
fn default_unit(pollutant: &str) -> Unit {
    if pollutant == "co" {
        Unit::MilligramPerCubicMetre
    } else {
        Unit::MicrogramPerCubicMetre
    }
}

impl Monitor {
    pub async fn new(broker: Broker, config: Config) -> Result<Monitor, Error> {
        let eea = BandTable::parse(EEA_EAQI)?;
        let epa = BandTable::parse(US_EPA_AQI)?;
        let water = NormTable::parse(WATER_DSANPIN)?.with_overrides(&config.water_rules)?;
        let air_alert = eea
            .categories
            .iter()
            .position(|c| *c == config.air_alert_category)
            .filter(|i| *i > 0)
            .ok_or_else(|| {
                Error::Config(format!(
                    "air_alert_category '{}' must be one of {} after the first",
                    config.air_alert_category,
                    eea.categories.join(", ")
                ))
            })?;
        if !matches!(config.primary_index.as_str(), "eea" | "us-epa") {
            return Err(Error::Config(format!(
                "primary_index '{}' must be eea or us-epa",
                config.primary_index
            )));
        }
        if !(config.radiation_control_level.is_finite() && config.radiation_control_level > 0.0) {
            return Err(Error::Config(
                "radiation_control_level must be a positive number of µSv/h".into(),
            ));
        }
        let radiation = Rule {
            attribute: DOSE_RATE.into(),
            label: "dose rate".into(),
            unit: "µSv/h".into(),
            min: None,
            max: Some(config.radiation_control_level),
            clear_margin: None,
        };
        let ctx = |u: &str| json!([u]);
        let env = broker
            .contexts
            .resolve(Some(&ctx(ENVIRONMENT_CONTEXT)))
            .await?;
        let water_ctx = broker.contexts.resolve(Some(&ctx(WATER_CONTEXT))).await?;
        let alert_ctx = broker.contexts.resolve(Some(&ctx(ALERT_CONTEXT))).await?;
        Ok(Monitor {
            broker,
            config,
            eea,
            epa,
            water,
            radiation,
            air_alert,
            env,
            water_ctx,
            alert_ctx,
            breaches: Mutex::new(Breaches::default()),
        })
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The radiation control level in µSv/h.
    pub fn control_level(&self) -> f64 {
        self.config.radiation_control_level
    }

    /// The water rules in force (shipped table with the city's overrides).
    pub fn water_rules(&self) -> &[Rule] {
        &self.water.rules
    }

    /// Follow the change feed until the broker goes away. Subscribes before returning, so no change committed
    /// after this call is missed.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut rx = self.broker.subscribe_changes();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(change) => {
                        if let Err(e) = self.handle(&change).await {
                            metrics::counter!("misto_environment_errors_total").increment(1);
                            tracing::warn!(entity = change.id, error = %e, "environment monitor");
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        metrics::counter!("misto_environment_skipped_changes_total").increment(n);
                        tracing::warn!(
                            skipped = n,
                            "environment monitor fell behind the change feed"
                        );
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        })
    }

    /// React to one committed change.
    pub async fn handle(&self, c: &EntityChange) -> Result<(), Error> {
        let Some(after) = &c.after else {
            return Ok(());
        };
        let types = misto_ngsild::entity::types(after);
        let is = |ctx: &Context, t: &str| types.contains(&ctx.expand(t).as_str());
        if is(&self.env, "AirQualityObserved") {
            self.air(c, after).await
        } else if is(&self.env, RADIATION_TYPE) {
            self.radiation(c, after).await
        } else if is(&self.water_ctx, "WaterQualityObserved") {
            self.water(c, after).await
        } else {
            Ok(())
        }
    }

    fn location(&self, e: &Entity) -> Option<Value> {
        instance(e, &self.env.expand("location")).and_then(|i| i.get("value").cloned())
    }

    async fn air(&self, c: &EntityChange, after: &Entity) -> Result<(), Error> {
        let mut pollutants = self.eea.pollutant_names();
        for p in self.epa.pollutant_names() {
            if !pollutants.contains(&p) {
                pollutants.push(p);
            }
        }
        let changed: Vec<&str> = pollutants
            .iter()
            .copied()
            .filter(|p| written(c, &self.env.expand(p)))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let at_ms = changed
            .iter()
            .filter_map(|p| observed_ms(after, &self.env.expand(p)))
            .max()
            .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
        let at = at_text(at_ms);
        // Every (attribute, window) either table averages over, read once.
        let mut windows: Vec<(String, i64)> = Vec::new();
        for s in self.eea.pollutants.iter().chain(&self.epa.pollutants) {
            let w = window_ms(&s.averaging).map_err(Error::Table)?;
            let key = (self.env.expand(&s.pollutant), w);
            if !windows.contains(&key) {
                windows.push(key);
            }
        }
        let means = self
            .broker
            .attribute_means(&c.tenant, &c.id, &windows, at_ms)
            .await?;
        let conc = |s: &PollutantScale| -> Option<f64> {
            let iri = self.env.expand(&s.pollutant);
            let w = window_ms(&s.averaging).ok()?;
            let i = windows.iter().position(|(a, x)| *a == iri && *x == w)?;
            let mean = means.get(i).copied().flatten()?.mean;
            let from = instance(after, &iri)
                .and_then(|i| i.get("unitCode"))
                .and_then(Value::as_str)
                .and_then(Unit::from_code)
                .unwrap_or_else(|| default_unit(&s.pollutant));
            units::convert(&s.pollutant, mean, from, s.unit)
        };
        let eea = aqi::compute(&self.eea, conc);
        let epa = aqi::compute(&self.epa, conc);
        let mut body = Map::new();
        let index = |r: &AqiResult| {
            json!({"type": "Property", "value": whole(r.value), "observedAt": at,
                "category": {"type": "Property", "value": r.category_name},
                "dominantPollutant": {"type": "Property", "value": r.dominant},
                "indexTable": {"type": "Property", "value": r.table}})
        };
        if let Some(r) = &eea {
            body.insert("europeanAqi".into(), index(r));
        }
        if let Some(r) = &epa {
            body.insert("usAqi".into(), index(r));
        }
        let primary = if self.config.primary_index == "us-epa" {
            &epa
        } else {
            &eea
        };
        if let Some(r) = primary {
            body.insert(
                "airQualityIndex".into(),
                json!({"type": "Property", "value": whole(r.value), "observedAt": at}),
            );
            body.insert(
                "airQualityLevel".into(),
                json!({"type": "Property", "value": r.category_name, "observedAt": at}),
            );
        }
        if !body.is_empty() {
            self.broker
                .merge_entity(&c.tenant, &self.env, &c.id, &Value::Object(body))
                .await?;
            metrics::counter!("misto_environment_indices_total").increment(1);
        }
        // Alerts: a pollutant whose European-index concentration reaches the alert category.
        let location = self.location(after);
        for s in &self.eea.pollutants {
            if !changed.contains(&s.pollutant.as_str()) {
                continue;
            }
            let Some(v) = conc(s) else { continue };
            let rule = Rule {
                attribute: s.pollutant.clone(),
                label: s.pollutant.clone(),
                unit: "µg/m³".into(),
                min: None,
                max: Some(s.bounds[self.air_alert - 1]),
                clear_margin: None,
            };
            let cat = crate::aqi::scale_value(&self.eea, s, v).map_or(0, |(_, c)| c);
            let severity = match cat.saturating_sub(self.air_alert) {
                0 => "medium",
                1 => "high",
                _ => "critical",
            };
            let breach = Breach {
                station: c.id.clone(),
                rule: format!("air:{}", s.pollutant),
                sub_category: Some("airPollution"),
                severity,
                description: format!(
                    "{} {} mean {:.1} µg/m³ above {} µg/m³ (European AQI: {})",
                    s.pollutant,
                    s.averaging,
                    v,
                    s.bounds[self.air_alert - 1],
                    self.eea.categories[cat]
                ),
                value: v,
                limit: s.bounds[self.air_alert - 1],
                unit: "ug/m3".into(),
                at: at.clone(),
                location: location.clone(),
            };
            self.step(&c.tenant, &rule, breach).await?;
        }
        Ok(())
    }

    async fn radiation(&self, c: &EntityChange, after: &Entity) -> Result<(), Error> {
        let iri = self.env.expand(DOSE_RATE);
        if !written(c, &iri) {
            return Ok(());
        }
        let Some(v) = number(after, &iri) else {
            return Ok(());
        };
        let at = at_text(
            observed_ms(after, &iri).unwrap_or_else(|| jiff::Timestamp::now().as_millisecond()),
        );
        let limit = self.config.radiation_control_level;
        let status = if self.radiation.breached(v) {
            "aboveControlLevel"
        } else {
            "normal"
        };
        // The change's snapshot may predate this monitor's own last status write: ask for the entity as it is.
        let now = self.broker.get_entity(&c.tenant, &c.id).await?;
        let current = instance(&now, &self.env.expand("radiationStatus"))
            .and_then(|i| i.get("value"))
            .and_then(Value::as_str);
        if current != Some(status) {
            let body =
                json!({"radiationStatus": {"type": "Property", "value": status, "observedAt": at}});
            self.broker
                .merge_entity(&c.tenant, &self.env, &c.id, &body)
                .await?;
        }
        let breach = Breach {
            station: c.id.clone(),
            rule: "radiation:doseRate".into(),
            sub_category: None,
            severity: "high",
            description: format!("dose rate {v:.3} µSv/h above the control level {limit} µSv/h"),
            value: v,
            limit,
            unit: "uSv/h".into(),
            at,
            location: self.location(after),
        };
        let rule = self.radiation.clone();
        self.step(&c.tenant, &rule, breach).await
    }

    async fn water(&self, c: &EntityChange, after: &Entity) -> Result<(), Error> {
        let rules: Vec<&Rule> = self
            .water
            .rules
            .iter()
            .filter(|r| written(c, &self.water_ctx.expand(&r.attribute)))
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let location = self.location(after);
        let mut at_ms = None;
        for r in &rules {
            let iri = self.water_ctx.expand(&r.attribute);
            let Some(v) = number(after, &iri) else {
                continue;
            };
            let ms =
                observed_ms(after, &iri).unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
            at_ms = Some(at_ms.map_or(ms, |m: i64| m.max(ms)));
            let at = at_text(ms);
            let (side, limit) = r
                .broken_limit(v)
                .unwrap_or(("outside", r.max.or(r.min).unwrap_or(0.0)));
            let breach = Breach {
                station: c.id.clone(),
                rule: format!("water:{}", r.attribute),
                sub_category: Some("waterPollution"),
                severity: "high",
                description: format!(
                    "{} {v} {} {side} the norm {limit} ({})",
                    r.label, r.unit, self.water.name
                ),
                value: v,
                limit,
                unit: r.unit.clone(),
                at,
                location: location.clone(),
            };
            self.step(&c.tenant, r, breach).await?;
        }
        // The sample's compliance: every rule judged on the latest value of its parameter.
        let failing: Vec<&str> = self
            .water
            .rules
            .iter()
            .filter(|r| {
                number(after, &self.water_ctx.expand(&r.attribute)).is_some_and(|v| r.breached(v))
            })
            .map(|r| r.label.as_str())
            .collect();
        let at = at_text(at_ms.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond()));
        let status = if failing.is_empty() {
            "compliant"
        } else {
            "nonCompliant"
        };
        let body = json!({
            "complianceStatus": {"type": "Property", "value": status, "observedAt": at,
                "normTable": {"type": "Property", "value": self.water.id}},
            "nonCompliantParameters": {"type": "Property", "value": failing, "observedAt": at},
        });
        self.broker
            .merge_entity(&c.tenant, &self.water_ctx, &c.id, &body)
            .await?;
        Ok(())
    }

    /// Open or close the alert of one (station, rule) for a new value.
    async fn step(&self, tenant: &str, rule: &Rule, b: Breach) -> Result<(), Error> {
        let mut st = self.breaches.lock().await;
        if !st.loaded.contains(tenant) {
            let found = self.open_alerts(tenant).await?;
            for (station, r, id) in found {
                st.open.insert((tenant.to_string(), station, r), id);
            }
            st.loaded.insert(tenant.to_string());
        }
        let key = (tenant.to_string(), b.station.clone(), b.rule.clone());
        let open = st.open.get(&key).cloned();
        match rule.step(open.is_some(), b.value) {
            Transition::Open => {
                let body = alerts::open_body(&b);
                let id = alerts::alert_id(&b);
                match self
                    .broker
                    .create_entity(tenant, &self.alert_ctx, &body)
                    .await
                {
                    Ok(_) => {}
                    // The same breach at the same instant was already recorded (a replayed observation).
                    Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
                metrics::counter!("misto_environment_alerts_opened_total").increment(1);
                tracing::info!(
                    alert = id,
                    station = b.station,
                    rule = b.rule,
                    value = b.value,
                    "alert opened"
                );
                st.open.insert(key, id);
            }
            Transition::Close => {
                if let Some(id) = open {
                    let body = alerts::close_body(&b.at, b.value);
                    match self
                        .broker
                        .merge_entity(tenant, &self.alert_ctx, &id, &body)
                        .await
                    {
                        Ok(()) => {}
                        // Someone removed the alert; nothing left to close.
                        Err(e) if e.kind == ErrorKind::ResourceNotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                    metrics::counter!("misto_environment_alerts_closed_total").increment(1);
                    tracing::info!(
                        alert = id,
                        station = b.station,
                        rule = b.rule,
                        value = b.value,
                        "alert closed"
                    );
                }
                st.open.remove(&key);
            }
            Transition::Stay => {}
        }
        Ok(())
    }

    /// The alerts this module opened in a tenant and has not closed: (station, rule, alert id).
    async fn open_alerts(&self, tenant: &str) -> Result<Vec<(String, String, String)>, Error> {
        let data = self.alert_ctx.expand("data");
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let p = EntityQueryParams {
                types: Some("Alert".into()),
                q: Some("!validTo;category==\"environment\"".into()),
                limit: Some(self.broker.config.max_limit.min(1000)),
                offset,
                ..Default::default()
            };
            let page = match self
                .broker
                .query_entities(tenant, &self.alert_ctx, &p)
                .await
            {
                Ok(p) => p,
                Err(e) if e.kind == ErrorKind::NonexistentTenant => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            offset += page.entities.len();
            for e in &page.entities {
                let Some(v) = instance(e, &data).and_then(|i| i.get("value")) else {
                    continue;
                };
                let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                if field("raisedBy").as_deref() != Some(alerts::RAISED_BY) {
                    continue;
                }
                if let (Some(s), Some(r), Some(id)) = (
                    field("station"),
                    field("rule"),
                    e.get("id").and_then(Value::as_str),
                ) {
                    out.push((s, r, id.to_string()));
                }
            }
            if !page.more || page.entities.is_empty() {
                return Ok(out);
            }
        }
    }
}
