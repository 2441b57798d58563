//! The control loop: one task per service evaluates its policy every `interval`, acts through
//! [`Replicas`], and keeps a bounded decision log, metrics and a status like
//! `kubectl describe hpa`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tidewatch_model::{Appender, Labels, LogRecord, Query, Replicas};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::algorithm::{Condition, Decision, Inputs, MetricStatus, ScalingState, decide, record_scale};
use crate::metrics::{MetricError, MetricSource, QueryMetrics};
use crate::policy::{Policy, PolicyError};

/// The longest the loop waits for the scheduler or one metric before counting a failure.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Decisions kept per service; older ones are dropped (they remain in the log store).
pub const DECISION_LOG_CAPACITY: usize = 256;

/// What the API and `explain` show of one service.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    /// The service.
    pub service: String,
    /// The policy in force.
    pub policy: Policy,
    /// The replica count asked of the scheduler at the last evaluation.
    pub current_replicas: Option<u32>,
    /// The replica count the last evaluation decided.
    pub desired_replicas: Option<u32>,
    /// Replicas passing their health check at the last evaluation.
    pub ready_replicas: Option<u32>,
    /// Each metric's current value and target at the last evaluation.
    pub metrics: Vec<MetricStatus>,
    /// AbleToScale, ScalingActive, ScalingLimited.
    pub conditions: Vec<Condition>,
    /// The last evaluation's reason.
    pub reason: Option<String>,
    /// When the policy was last evaluated (ms since the epoch).
    pub last_evaluation_ms: Option<i64>,
    /// When the count was last changed by the autoscaler (ms since the epoch).
    pub last_scale_ms: Option<i64>,
}

struct ServiceEntry {
    policy: Policy,
    state: ScalingState,
    decisions: VecDeque<Decision>,
    last: Option<Decision>,
    ready: Option<u32>,
    last_scale_ms: Option<i64>,
    /// What the last logged decision looked like, to log changes rather than every second.
    last_logged: Option<String>,
}

impl ServiceEntry {
    fn new(policy: Policy) -> Self {
        ServiceEntry {
            policy,
            state: ScalingState::default(),
            decisions: VecDeque::new(),
            last: None,
            ready: None,
            last_scale_ms: None,
            last_logged: None,
        }
    }
}

type LabelSet = Vec<(String, String)>;

#[derive(Clone, Default)]
struct AutoscalerMetrics {
    desired: Family<LabelSet, Gauge>,
    current: Family<LabelSet, Gauge>,
    metric_value: Family<LabelSet, Gauge<f64, AtomicU64>>,
    metric_target: Family<LabelSet, Gauge<f64, AtomicU64>>,
    decisions: Family<LabelSet, Counter>,
}

/// Wall-clock milliseconds read through tokio's clock, so tests with paused time see time move
/// and the algorithm's windows expire.
struct Clock {
    base_ms: i64,
    base: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Clock {
            base_ms,
            base: tokio::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }
}

/// The autoscaler: policies per service, their control loops, the decision log.
pub struct Autoscaler {
    replicas: Arc<dyn Replicas>,
    source: Arc<dyn MetricSource>,
    appender: Option<Arc<dyn Appender>>,
    /// A std mutex: nothing awaits while holding it (reads and actions happen outside).
    services: Mutex<BTreeMap<String, ServiceEntry>>,
    changed: Notify,
    metrics: AutoscalerMetrics,
    clock: Clock,
}

/// Why a service cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum AutoscalerError {
    /// No policy for that service.
    #[error("no autoscaling policy for service {0:?}")]
    UnknownService(String),
}

impl Autoscaler {
    /// Reads metrics through `query`, acts through `replicas`, and writes each decision as a
    /// log record through `appender` when given.
    pub fn new(query: Arc<dyn Query>, replicas: Arc<dyn Replicas>, appender: Option<Arc<dyn Appender>>) -> Self {
        Self::with_source(Arc::new(QueryMetrics::new(query)), replicas, appender)
    }

    /// As [`Autoscaler::new`], with metric values from any [`MetricSource`].
    pub fn with_source(
        source: Arc<dyn MetricSource>,
        replicas: Arc<dyn Replicas>,
        appender: Option<Arc<dyn Appender>>,
    ) -> Self {
        Autoscaler {
            replicas,
            source,
            appender,
            services: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
            metrics: AutoscalerMetrics::default(),
            clock: Clock::new(),
        }
    }

    /// Registers `tidewatch_autoscaler_*` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "tidewatch_autoscaler_desired_replicas",
            "Replicas the autoscaler decided at its last evaluation",
            m.desired.clone(),
        );
        registry.register(
            "tidewatch_autoscaler_current_replicas",
            "Replicas asked of the scheduler when the autoscaler last evaluated",
            m.current.clone(),
        );
        registry.register(
            "tidewatch_autoscaler_metric_value",
            "Current value of each policy metric (percent for cpu and memory)",
            m.metric_value.clone(),
        );
        registry.register(
            "tidewatch_autoscaler_metric_target",
            "Target of each policy metric (percent for cpu and memory)",
            m.metric_target.clone(),
        );
        registry.register(
            "tidewatch_autoscaler_decisions",
            "Decisions recorded in the decision log, by outcome (scale_up, scale_down, hold)",
            m.decisions.clone(),
        );
    }

    /// Replaces the policies (live reload). All are validated first; if one is invalid none is
    /// applied and the error names the service and field. Unchanged services keep their
    /// history; removed ones stop.
    pub fn set_policies(&self, policies: HashMap<String, Policy>) -> Result<(), PolicyError> {
        for (service, policy) in &policies {
            policy.validate().map_err(|e| PolicyError {
                field: format!("{service}.autoscale.{}", e.field),
                message: e.message,
            })?;
        }
        {
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<String> = services
                .keys()
                .filter(|s| !policies.contains_key(*s))
                .cloned()
                .collect();
            for service in gone {
                if let Some(entry) = services.remove(&service) {
                    self.forget_metrics(&service, &entry.policy);
                }
            }
            for (service, policy) in policies {
                match services.get_mut(&service) {
                    Some(entry) if entry.policy == policy => {}
                    Some(entry) => {
                        if entry.policy.metrics != policy.metrics {
                            entry.state.policy_changed();
                            self.forget_metrics(&service, &entry.policy);
                        }
                        entry.policy = policy;
                    }
                    None => {
                        services.insert(service, ServiceEntry::new(policy));
                    }
                }
            }
        }
        self.changed.notify_one();
        Ok(())
    }

    fn forget_metrics(&self, service: &str, policy: &Policy) {
        let svc = vec![("service".to_string(), service.to_string())];
        self.metrics.desired.remove(&svc);
        self.metrics.current.remove(&svc);
        for i in 0..policy.metrics.len() {
            let labels = metric_labels(service, &policy.metric_name(i));
            self.metrics.metric_value.remove(&labels);
            self.metrics.metric_target.remove(&labels);
        }
    }

    /// Runs one control loop per service until `shutdown`; policies set later start and stop
    /// their loops as they come and go.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tasks: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
        loop {
            let names: HashSet<String> = self
                .services
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect();
            tasks.retain(|name, (token, _)| {
                let keep = names.contains(name);
                if !keep {
                    token.cancel();
                }
                keep
            });
            for name in names {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(name) {
                    let token = shutdown.child_token();
                    let this = self.clone();
                    let task_name = slot.key().clone();
                    let task_token = token.clone();
                    let handle = tokio::spawn(async move { this.service_loop(task_name, task_token).await });
                    slot.insert((token, handle));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.changed.notified() => {}
            }
        }
        for (_, (token, handle)) in tasks {
            token.cancel();
            let _ = handle.await;
        }
    }

    async fn service_loop(self: Arc<Self>, service: String, token: CancellationToken) {
        let mut last_start = tokio::time::Instant::now();
        loop {
            let interval = {
                let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
                match services.get(&service) {
                    Some(entry) => entry.policy.interval.as_std(),
                    None => return,
                }
            };
            // Evaluations start every `interval`, however long one takes (a slow one delays
            // the next rather than piling up).
            let next = (last_start + interval).max(tokio::time::Instant::now());
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            last_start = tokio::time::Instant::now();
            tokio::select! {
                _ = token.cancelled() => return,
                _ = self.evaluate(&service) => {}
            }
        }
    }

    /// Evaluates `service`'s policy once now, acts on it (unless `dry_run`) and records it.
    pub async fn evaluate(&self, service: &str) -> Result<Decision, AutoscalerError> {
        let policy = {
            let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            services
                .get(service)
                .map(|e| e.policy.clone())
                .ok_or_else(|| AutoscalerError::UnknownService(service.to_string()))?
        };
        let now = self.clock.now_ms();
        let set = match tokio::time::timeout(CALL_TIMEOUT, self.replicas.replicas(service)).await {
            Ok(Ok(set)) => Ok(set),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CALL_TIMEOUT.as_secs())),
        };
        let set = match set {
            Ok(set) => set,
            Err(e) => {
                let (from, to) = {
                    let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
                    services
                        .get(service)
                        .and_then(|entry| entry.last.as_ref())
                        .map_or((0, 0), |d| (d.from, d.to))
                };
                let decision = Decision {
                    time_ms: now,
                    service: service.to_string(),
                    from,
                    to,
                    metrics: Vec::new(),
                    reason: format!("{service}: the scheduler could not tell the replicas: {e}"),
                    limited_by: None,
                    conditions: vec![Condition {
                        kind: "AbleToScale",
                        status: "False",
                        reason: "FailedGetScale",
                        message: format!("the autoscaler was unable to get the service's replicas: {e}"),
                    }],
                    dry_run: policy.dry_run,
                    applied: false,
                    error: Some(e),
                };
                self.record(service, decision.clone(), None).await;
                return Ok(decision);
            }
        };
        let mut readings = Vec::with_capacity(policy.metrics.len());
        for metric in &policy.metrics {
            let read = self.source.read(metric, &set, policy.rate_window, now);
            readings.push(match tokio::time::timeout(CALL_TIMEOUT, read).await {
                Ok(reading) => reading,
                Err(_) => Err(MetricError::Other(format!(
                    "no value within {}s",
                    CALL_TIMEOUT.as_secs()
                ))),
            });
        }
        let mut decision = {
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = services.get_mut(service) else {
                return Err(AutoscalerError::UnknownService(service.to_string()));
            };
            decide(
                &policy,
                &mut entry.state,
                &Inputs {
                    now_ms: now,
                    set: &set,
                    readings: &readings,
                },
            )
        };
        if decision.scales() {
            if policy.dry_run {
                decision.reason.push_str(" (dry run: not applied)");
            } else {
                let set_desired = tokio::time::timeout(CALL_TIMEOUT, self.replicas.set_desired(service, decision.to));
                let outcome = match set_desired.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!(
                        "the scheduler did not answer within {}s",
                        CALL_TIMEOUT.as_secs()
                    )),
                };
                match outcome {
                    Ok(()) => {
                        decision.applied = true;
                        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(entry) = services.get_mut(service) {
                            record_scale(&policy, &mut entry.state, now, decision.from, decision.to);
                            entry.last_scale_ms = Some(now);
                        }
                    }
                    Err(e) => {
                        decision.error = Some(e.clone());
                        let _ = write!(decision.reason, " (not applied: {e})");
                        if let Some(c) = decision.conditions.iter_mut().find(|c| c.kind == "AbleToScale") {
                            c.status = "False";
                            c.reason = "FailedUpdateScale";
                            c.message = format!("the autoscaler was unable to update the replica count: {e}");
                        }
                    }
                }
            }
        }
        let ready = set.replicas.iter().filter(|r| r.ready).count() as u32;
        self.record(service, decision.clone(), Some(ready)).await;
        Ok(decision)
    }

    async fn record(&self, service: &str, decision: Decision, ready: Option<u32>) {
        let svc = vec![("service".to_string(), service.to_string())];
        if decision.error.is_none() || decision.applied || !decision.metrics.is_empty() {
            self.metrics.desired.get_or_create(&svc).set(decision.to as i64);
            self.metrics.current.get_or_create(&svc).set(decision.from as i64);
        }
        for m in &decision.metrics {
            let labels = metric_labels(service, &m.name);
            self.metrics.metric_target.get_or_create(&labels).set(m.target);
            match m.current {
                Some(v) => {
                    self.metrics.metric_value.get_or_create(&labels).set(v);
                }
                // No value is absent, not the last value seen.
                None => {
                    self.metrics.metric_value.remove(&labels);
                }
            }
        }
        let signature = signature(&decision);
        let log_it = {
            let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = services.get_mut(service) else { return };
            entry.ready = ready.or(entry.ready);
            entry.last = Some(decision.clone());
            let log_it = entry.last_logged.as_deref() != Some(signature.as_str());
            if log_it {
                entry.last_logged = Some(signature);
                if entry.decisions.len() >= DECISION_LOG_CAPACITY {
                    entry.decisions.pop_front();
                }
                entry.decisions.push_back(decision.clone());
            }
            log_it
        };
        if !log_it {
            return;
        }
        let outcome = match decision.to.cmp(&decision.from) {
            std::cmp::Ordering::Greater => "scale_up",
            std::cmp::Ordering::Less => "scale_down",
            std::cmp::Ordering::Equal => "hold",
        };
        self.metrics
            .decisions
            .get_or_create(&vec![
                ("service".to_string(), service.to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ])
            .inc();
        tracing::info!(service, from = decision.from, to = decision.to, "{}", decision.reason);
        if let Some(appender) = &self.appender {
            let line = serde_json::to_string(&decision).unwrap_or_else(|_| decision.reason.clone());
            let record = LogRecord {
                timestamp_ns: decision.time_ms.saturating_mul(1_000_000),
                labels: Labels::from_pairs([("source", "autoscaler"), ("service", service)]),
                line,
            };
            if let Err(e) = appender.append_logs(vec![record], None).await {
                tracing::warn!(service, error = %e, "could not write an autoscaler decision to the log store");
            }
        }
    }

    /// Every service's status, by name.
    pub fn statuses(&self) -> Vec<ServiceStatus> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.iter().map(|(name, e)| status_of(name, e)).collect()
    }

    /// One service's status.
    pub fn status(&self, service: &str) -> Result<ServiceStatus, AutoscalerError> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services
            .get(service)
            .map(|e| status_of(service, e))
            .ok_or_else(|| AutoscalerError::UnknownService(service.to_string()))
    }

    /// The recorded decisions of `service`, oldest first, at most `limit`.
    pub fn decisions(&self, service: &str, limit: usize) -> Result<Vec<Decision>, AutoscalerError> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let entry = services
            .get(service)
            .ok_or_else(|| AutoscalerError::UnknownService(service.to_string()))?;
        let skip = entry.decisions.len().saturating_sub(limit);
        Ok(entry.decisions.iter().skip(skip).cloned().collect())
    }

    /// `tidewatch autoscaler explain SERVICE`: the status as `kubectl describe hpa` prints it,
    /// then the recent decisions.
    pub fn explain(&self, service: &str) -> String {
        let status = match self.status(service) {
            Ok(s) => s,
            Err(e) => return format!("{e}\n"),
        };
        let decisions = self.decisions(service, 20).unwrap_or_default();
        render_explain(&status, &decisions)
    }
}

fn metric_labels(service: &str, metric: &str) -> LabelSet {
    vec![
        ("service".to_string(), service.to_string()),
        ("metric".to_string(), metric.to_string()),
    ]
}

/// What makes a decision worth a new log entry: a change of count, of conditions, of what
/// limits it, or of which metrics fail.
fn signature(d: &Decision) -> String {
    let mut s = format!(
        "{}>{}|{:?}|{}|{}",
        d.from,
        d.to,
        d.limited_by,
        d.dry_run,
        d.error.is_some()
    );
    for c in &d.conditions {
        let _ = write!(s, "|{}={}:{}", c.kind, c.status, c.reason);
    }
    for m in &d.metrics {
        let _ = write!(s, "|{}:{}:{}", m.name, m.error.is_some(), m.fallback);
    }
    s
}

fn status_of(name: &str, e: &ServiceEntry) -> ServiceStatus {
    ServiceStatus {
        service: name.to_string(),
        policy: e.policy.clone(),
        current_replicas: e.last.as_ref().map(|d| d.from),
        desired_replicas: e.last.as_ref().map(|d| d.to),
        ready_replicas: e.ready,
        metrics: e.last.as_ref().map(|d| d.metrics.clone()).unwrap_or_default(),
        conditions: e.last.as_ref().map(|d| d.conditions.clone()).unwrap_or_default(),
        reason: e.last.as_ref().map(|d| d.reason.clone()),
        last_evaluation_ms: e.last.as_ref().map(|d| d.time_ms),
        last_scale_ms: e.last_scale_ms,
    }
}

fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn fmt_value(v: Option<f64>, unit: &str) -> String {
    match v {
        Some(v) if (v - v.round()).abs() < 1e-9 => format!("{}{unit}", v.round() as i64),
        Some(v) => format!("{v:.2}{unit}"),
        None => "<unknown>".to_string(),
    }
}

fn render_explain(s: &ServiceStatus, decisions: &[Decision]) -> String {
    let mut out = String::new();
    let p = &s.policy;
    let opt = |v: Option<u32>| v.map_or("<unknown>".to_string(), |v| v.to_string());
    let _ = writeln!(out, "Name:                 {}", s.service);
    let _ = writeln!(
        out,
        "Policy:               interval {}, tolerance {}, warm_up {}{}",
        p.interval,
        p.tolerance,
        p.warm_up,
        if p.dry_run { ", dry_run" } else { "" }
    );
    let _ = writeln!(out, "Metrics:              ( current / target )");
    for m in &s.metrics {
        let (label, unit) = match (m.target_type, m.basis) {
            ("Utilization", Some(b)) => (format!("{} utilization (percentage of {})", m.kind, b.as_str()), "%"),
            ("AverageValue", _) => (format!("{} (average value per replica)", m.name), ""),
            _ => (format!("{} (total value)", m.name), ""),
        };
        let current = match &m.error {
            Some(e) => format!("<error: {e}>"),
            None => fmt_value(m.current, unit),
        };
        let _ = writeln!(out, "  {label}:  {current} / {}", fmt_value(Some(m.target), unit));
    }
    if s.metrics.is_empty() {
        let _ = writeln!(out, "  <not evaluated yet>");
    }
    let _ = writeln!(out, "Min replicas:         {}", p.min_replicas);
    let _ = writeln!(out, "Max replicas:         {}", p.max_replicas);
    let _ = writeln!(
        out,
        "Replicas:             {} current / {} desired ({} ready)",
        opt(s.current_replicas),
        opt(s.desired_replicas),
        opt(s.ready_replicas)
    );
    if let Some(t) = s.last_scale_ms {
        let _ = writeln!(out, "Last scale time:      {}", rfc3339(t));
    }
    let _ = writeln!(out, "Conditions:");
    let width = s.conditions.iter().map(|c| c.reason.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(out, "  Type            Status  {:width$}  Message", "Reason");
    let _ = writeln!(out, "  ----            ------  {:width$}  -------", "------");
    for c in &s.conditions {
        let _ = writeln!(
            out,
            "  {:14}  {:6}  {:width$}  {}",
            c.kind, c.status, c.reason, c.message
        );
    }
    let _ = writeln!(out, "Decisions (oldest first):");
    if decisions.is_empty() {
        let _ = writeln!(out, "  <none>");
    }
    for d in decisions {
        let _ = writeln!(out, "  {}  {}", rfc3339(d.time_ms), d.reason);
    }
    out
}

#[cfg(test)]
mod tests;
