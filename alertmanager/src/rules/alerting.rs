//! An alerting rule and its alerts: Prometheus' state machine (rules/alerting.go), step for
//! step, with times in milliseconds since the epoch.
//!
//! inactive → pending (the expression returns the alert's series) → firing (it kept returning
//! it for `for`) → inactive again (it stopped, and `keep_firing_for` ran out): the alert is then
//! *resolved*, kept for 15 minutes and sent again with its end time so that every Alertmanager
//! learns it, then forgotten. A pending alert that stops is forgotten at once.

use std::collections::{BTreeMap, HashMap};

use tidewatch_model::{Labels, Sample, Series};

use super::eval::{EvalEnv, Row};
use super::template::{self, AlertData};
use crate::PostableAlert;

/// How long a resolved alert is kept (and re-sent) after it resolved (Prometheus: 15m).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// The state of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept for re-sending), or never active.
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Active for `for` or longer.
    Firing,
}

impl AlertState {
    /// Prometheus' name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one label set the expression returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Identity: the result's labels without `__name__`, the rule's labels, `alertname`.
    pub labels: BTreeMap<String, String>,
    /// Expanded annotations (refreshed at every evaluation).
    pub annotations: BTreeMap<String, String>,
    /// The state.
    pub state: AlertState,
    /// The expression's latest value for this series.
    pub value: f64,
    /// When it became pending.
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// When it was last sent.
    pub last_sent_at_ms: Option<i64>,
    /// The end time sent with a firing alert.
    pub valid_until_ms: i64,
    /// Since when it has been kept firing by `keep_firing_for`.
    pub keep_firing_since_ms: Option<i64>,
}

impl Alert {
    /// Prometheus' `needsSending`.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        let last = self.last_sent_at_ms.unwrap_or(i64::MIN);
        if self.resolved_at_ms.is_some_and(|r| r > last) {
            return true;
        }
        self.last_sent_at_ms.is_none_or(|l| l + resend_delay_ms < ts)
    }
}

/// One result row after templating: alert labels, annotations, value.
type Expanded = (BTreeMap<String, String>, BTreeMap<String, String>, f64);

/// An alerting rule with its live alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    /// `alert:`.
    pub name: String,
    /// `expr:`.
    pub expr: String,
    /// PromQL or LogQL.
    pub lang: super::expr::Lang,
    /// `for:` in ms.
    pub hold_ms: i64,
    /// `keep_firing_for:` in ms.
    pub keep_firing_for_ms: i64,
    /// `labels:` (templates).
    pub labels: BTreeMap<String, String>,
    /// `annotations:` (templates).
    pub annotations: BTreeMap<String, String>,
    /// Live alerts by identity.
    pub active: HashMap<BTreeMap<String, String>, Alert>,
    /// Whether `for` state has been restored (or needs none); until then no `ALERTS` series are
    /// written, as in Prometheus, so a restart does not write a misleading `ALERTS_FOR_STATE`.
    pub restored: bool,
}

fn to_labels(m: &BTreeMap<String, String>) -> Labels {
    Labels::from(m.clone())
}

/// The time format of the Alertmanager API (RFC 3339 with milliseconds, UTC).
pub fn rfc3339(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

impl AlertingRule {
    fn expand_all(&self, rows: &[Row], env: &EvalEnv<'_>, ts: i64) -> Vec<Expanded> {
        let uses_query = self
            .labels
            .values()
            .chain(self.annotations.values())
            .any(|t| t.contains("query"));
        let run = |q_fn: Option<&template::TemplateQuery<'_>>| {
            rows.iter()
                .map(|row| {
                    let data_labels: BTreeMap<String, String> = row.labels.clone().into();
                    let data = AlertData {
                        labels: &data_labels,
                        external_labels: env.external_labels,
                        external_url: env.external_url,
                        value: row.value,
                    };
                    let mut lb = data_labels.clone();
                    lb.remove("__name__");
                    for (k, v) in &self.labels {
                        let x = template::expand_alert(&self.name, v, &data, q_fn);
                        if x.is_empty() {
                            lb.remove(k);
                        } else {
                            lb.insert(k.clone(), x);
                        }
                    }
                    lb.insert("alertname".into(), self.name.clone());
                    let ann = self
                        .annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), template::expand_alert(&self.name, v, &data, q_fn)))
                        .collect();
                    (lb, ann, row.value)
                })
                .collect()
        };
        if uses_query {
            let q = |expr: &str| env.query_blocking(expr, ts);
            run(Some(&q))
        } else {
            run(None)
        }
    }

    /// One evaluation at `ts`: runs the query, moves every alert through the state machine and
    /// returns the `ALERTS` / `ALERTS_FOR_STATE` samples to write. `limit` > 0 caps the alerts
    /// (all are dropped when exceeded, as Prometheus does).
    pub async fn eval(&mut self, ts: i64, env: &EvalEnv<'_>, limit: usize) -> Result<Vec<Series>, String> {
        let rows = env.query(&self.expr, self.lang, ts).await?;
        self.apply(rows, ts, env, limit)
    }

    /// The state machine on a query result (split from [`eval`](Self::eval) for the tests).
    pub fn apply(&mut self, rows: Vec<Row>, ts: i64, env: &EvalEnv<'_>, limit: usize) -> Result<Vec<Series>, String> {
        let expanded = self.expand_all(&rows, env, ts);
        let mut fresh: HashMap<BTreeMap<String, String>, Alert> = HashMap::with_capacity(expanded.len());
        for (labels, annotations, value) in expanded {
            if fresh.contains_key(&labels) {
                return Err("vector contains metrics with the same labelset after applying alert labels".into());
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: 0,
                    keep_firing_since_ms: None,
                },
            );
        }
        let returned: std::collections::HashSet<BTreeMap<String, String>> = fresh.keys().cloned().collect();
        for (k, a) in fresh {
            match self.active.get_mut(&k) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut active_count = 0usize;
        let mut remove = Vec::new();
        for (k, a) in self.active.iter_mut() {
            if !returned.contains(k) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    if ts - since < self.keep_firing_for_ms {
                        keep_firing = true;
                    }
                }
                if a.state == AlertState::Pending || a.resolved_at_ms.is_some_and(|r| ts - r > RESOLVED_RETENTION_MS) {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at_ms >= self.hold_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
            }
            if self.restored {
                let mut alerts = a.labels.clone();
                alerts.insert("__name__".into(), "ALERTS".into());
                alerts.insert("alertstate".into(), a.state.as_str().into());
                out.push(Series {
                    labels: to_labels(&alerts),
                    samples: vec![Sample {
                        timestamp_ms: ts,
                        value: 1.0,
                    }],
                });
                let mut for_state = a.labels.clone();
                for_state.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                out.push(Series {
                    labels: to_labels(&for_state),
                    samples: vec![Sample {
                        timestamp_ms: ts,
                        value: (a.active_at_ms / 1000) as f64,
                    }],
                });
            }
        }
        for k in remove {
            self.active.remove(&k);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {active_count} alerts"));
        }
        Ok(out)
    }

    /// Prometheus' `sendAlerts`: the alerts due for (re)sending at `ts`, marked as sent.
    pub fn alerts_to_send(
        &mut self,
        ts: i64,
        resend_delay_ms: i64,
        interval_ms: i64,
        generator_url: &str,
    ) -> Vec<PostableAlert> {
        let delta = resend_delay_ms.max(interval_ms);
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if !a.needs_sending(ts, resend_delay_ms) {
                continue;
            }
            a.last_sent_at_ms = Some(ts);
            a.valid_until_ms = ts + 4 * delta;
            let ends = a.resolved_at_ms.unwrap_or(a.valid_until_ms);
            out.push(PostableAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: Some(rfc3339(a.fired_at_ms.unwrap_or(a.active_at_ms))),
                ends_at: Some(rfc3339(ends)),
                generator_url: generator_url.to_string(),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The rule's state: the highest of its alerts'.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Prometheus' `restoreForState` for this rule: moves each active alert's `active_at` by
    /// what the last `ALERTS_FOR_STATE` sample (at or after `ts - outage_tolerance`) says.
    pub async fn restore_for_state(&mut self, ts: i64, env: &EvalEnv<'_>, outage_tolerance_ms: i64, grace_ms: i64) {
        if self.hold_ms < grace_ms {
            self.restored = true;
            return;
        }
        for a in self.active.values_mut() {
            let selector = a
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect::<Vec<_>>()
                .join(",");
            let q = format!("ALERTS_FOR_STATE{{{selector}}}[{}ms]", outage_tolerance_ms.max(1));
            let Ok(Some((t, v))) = env.last_sample(&q, ts).await else {
                continue;
            };
            let down_at = (t / 1000) * 1000;
            let mut restored_active_at = (v as i64) * 1000;
            let time_spent_pending = down_at - restored_active_at;
            let remaining = self.hold_ms - time_spent_pending;
            if remaining <= 0 {
            } else if remaining < grace_ms {
                restored_active_at = ts + grace_ms - self.hold_ms;
            } else {
                restored_active_at += ts - down_at;
            }
            a.active_at_ms = restored_active_at;
        }
        self.restored = true;
    }
}

/// A PromQL string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
