//! A rule group: its rules evaluated in order at one timestamp, recording results and `ALERTS`
//! written back, series that disappeared marked stale (rules/group.go).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use tidewatch_model::{Appender, Labels, Sample, Series, stale_nan};

use super::alerting::{AlertState, AlertingRule};
use super::eval::EvalEnv;
use super::expr::Lang;
use super::file::CheckedGroup;
use crate::PostableAlert;

/// Whether the last evaluation of a rule worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// Worked.
    Ok,
    /// Failed; see `last_error`.
    Err,
}

impl Health {
    /// Prometheus' name.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingRule {
    /// `record:`.
    pub name: String,
    /// `expr:`.
    pub expr: String,
    /// PromQL or LogQL.
    pub lang: Lang,
    /// `labels:` (not templated).
    pub labels: BTreeMap<String, String>,
}

/// Either kind of rule.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Writes a series.
    Recording(RecordingRule),
    /// Fires alerts.
    Alerting(AlertingRule),
}

/// A rule with its evaluation record.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule.
    pub kind: RuleKind,
    /// The last outcome.
    pub health: Health,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was last evaluated (ms), if ever.
    pub last_eval_ms: Option<i64>,
    /// How long that took, in seconds.
    pub eval_seconds: f64,
    /// Series written by the last evaluation (to mark those that disappear as stale).
    pub previous_series: HashSet<Labels>,
}

impl Rule {
    /// `alert:` or `record:`.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording(r) => &r.name,
            RuleKind::Alerting(r) => &r.name,
        }
    }

    /// Whether the eager trigger may evaluate it: an alerting rule with neither `for` nor
    /// `keep_firing_for`, so evaluating it early changes nothing but the moment it fires.
    pub fn is_eager(&self) -> bool {
        matches!(&self.kind, RuleKind::Alerting(a) if a.hold_ms == 0 && a.keep_firing_for_ms == 0)
    }
}

/// A group of rules.
#[derive(Debug, Clone)]
pub struct Group {
    /// `name:`.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Evaluation period in ms.
    pub interval_ms: i64,
    /// `query_offset:` in ms.
    pub query_offset_ms: i64,
    /// `limit:`.
    pub limit: usize,
    /// The rules in order.
    pub rules: Vec<Rule>,
    /// When the group was last evaluated (ms).
    pub last_eval_ms: Option<i64>,
    /// How long that took, in seconds.
    pub eval_seconds: f64,
    /// `for` state still to be restored after the first evaluation.
    pub should_restore: bool,
}

/// What one evaluation produced.
#[derive(Debug, Default)]
pub struct EvalOutcome {
    /// Series written (recording results, `ALERTS`, stale markers).
    pub samples: usize,
    /// Writes the Appender refused.
    pub write_errors: usize,
    /// Alerts to hand to the sink.
    pub alerts: Vec<PostableAlert>,
}

/// `expr` as the `g0.expr` of a Prometheus graph link.
fn table_link(external_url: &str, expr: &str) -> String {
    let mut q = String::new();
    for b in expr.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => q.push(b as char),
            b' ' => q.push('+'),
            _ => q.push_str(&format!("%{b:02X}")),
        }
    }
    format!("{}/graph?g0.expr={q}&g0.tab=1", external_url.trim_end_matches('/'))
}

impl Group {
    /// Builds a group from a checked file group; `default_interval_ms` applies when it names none.
    pub fn from_checked(g: &CheckedGroup, default_interval_ms: i64) -> Group {
        let ms = |d: Option<tidewatch_model::Duration>| d.map(|d| d.as_std().as_millis() as i64).unwrap_or(0);
        let rules = g
            .rules
            .iter()
            .map(|r| {
                let kind = match (&r.spec.alert, &r.spec.record) {
                    (Some(alert), _) => RuleKind::Alerting(AlertingRule {
                        name: alert.clone(),
                        expr: r.spec.expr.trim().to_string(),
                        lang: r.lang,
                        hold_ms: ms(r.spec.for_),
                        keep_firing_for_ms: ms(r.spec.keep_firing_for),
                        labels: r.spec.labels.clone(),
                        annotations: r.spec.annotations.clone(),
                        active: Default::default(),
                        restored: false,
                    }),
                    (None, record) => RuleKind::Recording(RecordingRule {
                        name: record.clone().unwrap_or_default(),
                        expr: r.spec.expr.trim().to_string(),
                        lang: r.lang,
                        labels: r.spec.labels.clone(),
                    }),
                };
                Rule {
                    kind,
                    health: Health::Unknown,
                    last_error: None,
                    last_eval_ms: None,
                    eval_seconds: 0.0,
                    previous_series: HashSet::new(),
                }
            })
            .collect();
        let interval = ms(g.spec.interval);
        Group {
            name: g.spec.name.clone(),
            file: g.file.clone(),
            interval_ms: if interval > 0 {
                interval
            } else {
                default_interval_ms.max(1)
            },
            query_offset_ms: ms(g.spec.query_offset),
            limit: g.spec.limit,
            rules,
            last_eval_ms: None,
            eval_seconds: 0.0,
            should_restore: true,
        }
    }

    /// Takes over the live state of the same-named rules of `old` (a reload must not forget
    /// firing alerts nor restore `for` state again).
    pub fn copy_state_from(&mut self, old: &mut Group) {
        self.should_restore = old.should_restore;
        self.last_eval_ms = old.last_eval_ms;
        for rule in &mut self.rules {
            let Some(i) = old
                .rules
                .iter()
                .position(|o| o.name() == rule.name() && same_kind(&o.kind, &rule.kind))
            else {
                continue;
            };
            let o = old.rules.remove(i);
            rule.health = o.health;
            rule.last_error = o.last_error;
            rule.last_eval_ms = o.last_eval_ms;
            rule.eval_seconds = o.eval_seconds;
            rule.previous_series = o.previous_series;
            if let (RuleKind::Alerting(new), RuleKind::Alerting(old)) = (&mut rule.kind, o.kind) {
                new.active = old.active;
                new.restored = old.restored;
            }
        }
    }

    /// The first evaluation time at or after `now_ms`, aligned as Prometheus aligns a group
    /// (multiples of the interval, shifted by a hash of the group so groups spread out).
    pub fn next_eval_at(&self, now_ms: i64) -> i64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.file.as_os_str(), &self.name).hash(&mut h);
        let offset = (h.finish() % self.interval_ms as u64) as i64;
        let adj = now_ms - offset;
        let base = adj - adj.rem_euclid(self.interval_ms);
        let t = base + offset;
        if t < now_ms { t + self.interval_ms } else { t }
    }

    /// Evaluates every rule (or, when `eager_only`, only the rules [`Rule::is_eager`] allows)
    /// at `ts` (before `query_offset`), in order.
    ///
    /// Each rule's samples are appended before the next rule runs, so later rules of the group
    /// see what earlier ones recorded (as in Prometheus). A failed write is logged and counted
    /// in `EvalOutcome::write_errors`; the rule still counts as evaluated.
    pub async fn eval(
        &mut self,
        ts: i64,
        env: &EvalEnv<'_>,
        appender: &dyn Appender,
        resend_delay_ms: i64,
        eager_only: bool,
    ) -> EvalOutcome {
        let started = std::time::Instant::now();
        let ts = ts - self.query_offset_ms;
        let mut outcome = EvalOutcome::default();
        for rule in &mut self.rules {
            if eager_only && !rule.is_eager() {
                continue;
            }
            // Never go back in time: an eager evaluation may have run just after this tick.
            let t = rule.last_eval_ms.map_or(ts, |l| l.max(ts));
            let rule_started = std::time::Instant::now();
            let result = match &mut rule.kind {
                RuleKind::Recording(r) => eval_recording(r, t, env, self.limit).await,
                RuleKind::Alerting(a) => {
                    let r = a.eval(t, env, self.limit).await;
                    let link = table_link(env.external_url, &a.expr);
                    for mut alert in a.alerts_to_send(t, resend_delay_ms, self.interval_ms, &link) {
                        // Prometheus' notifier adds the external labels an alert does not have.
                        for (k, v) in env.external_labels {
                            alert.labels.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                        outcome.alerts.push(alert);
                    }
                    r
                }
            };
            rule.last_eval_ms = Some(t);
            rule.eval_seconds = rule_started.elapsed().as_secs_f64();
            let series = match result {
                Ok(s) => {
                    rule.health = Health::Ok;
                    rule.last_error = None;
                    s
                }
                Err(e) => {
                    rule.health = Health::Err;
                    rule.last_error = Some(e);
                    Vec::new()
                }
            };
            if eager_only {
                // Eager evaluations change state and notify; the samples are the ticks' job, so
                // every series keeps one sample per interval in time order.
                continue;
            }
            let now: HashSet<Labels> = series.iter().map(|s| s.labels.clone()).collect();
            let mut write = Vec::with_capacity(series.len());
            for gone in rule.previous_series.difference(&now) {
                write.push(Series {
                    labels: gone.clone(),
                    samples: vec![Sample {
                        timestamp_ms: t,
                        value: stale_nan(),
                    }],
                });
            }
            rule.previous_series = now;
            write.extend(series);
            if !write.is_empty() {
                outcome.samples += write.len();
                if let Err(e) = appender.append_series(write, None).await {
                    tracing::warn!(group = %self.name, rule = %rule.name(), error = %e, "cannot write rule results");
                    outcome.write_errors += 1;
                }
            }
        }
        if !eager_only {
            self.last_eval_ms = Some(ts);
            self.eval_seconds = started.elapsed().as_secs_f64();
        }
        outcome
    }

    /// Restores `for` state of every alerting rule (after the first evaluation since start).
    pub async fn restore_for_state(&mut self, ts: i64, env: &EvalEnv<'_>, outage_tolerance_ms: i64, grace_ms: i64) {
        for rule in &mut self.rules {
            if let RuleKind::Alerting(a) = &mut rule.kind {
                a.restore_for_state(ts, env, outage_tolerance_ms, grace_ms).await;
            }
        }
        self.should_restore = false;
    }

    /// Marks every alerting rule as restored (promtool's unit tests do this).
    pub fn set_restored(&mut self) {
        for rule in &mut self.rules {
            if let RuleKind::Alerting(a) = &mut rule.kind {
                a.restored = true;
            }
        }
        self.should_restore = false;
    }

    /// Whether any alert is pending or firing.
    pub fn has_active(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(&r.kind, RuleKind::Alerting(a) if a.state() != AlertState::Inactive))
    }
}

fn same_kind(a: &RuleKind, b: &RuleKind) -> bool {
    matches!(
        (a, b),
        (RuleKind::Recording(_), RuleKind::Recording(_)) | (RuleKind::Alerting(_), RuleKind::Alerting(_))
    )
}

async fn eval_recording(r: &RecordingRule, ts: i64, env: &EvalEnv<'_>, limit: usize) -> Result<Vec<Series>, String> {
    let rows = env.query(&r.expr, r.lang, ts).await?;
    let mut seen = HashSet::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut labels = row.labels;
        labels.set("__name__", r.name.clone());
        for (k, v) in &r.labels {
            labels.set(k.clone(), v.clone());
        }
        if !seen.insert(labels.clone()) {
            return Err("vector contains metrics with the same labelset after applying rule labels".into());
        }
        out.push(Series {
            labels,
            samples: vec![Sample {
                timestamp_ms: ts,
                value: row.value,
            }],
        });
    }
    if limit > 0 && out.len() > limit {
        return Err(format!("exceeded limit of {limit} with {} series", out.len()));
    }
    Ok(out)
}
