//! The rule manager: owns the groups, evaluates each on its own period, writes back through the
//! Appender, hands alerts to the sink, restores `for` state after a start, and reloads files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, SystemTime};

use serde::{Deserialize, Serialize};
use tidewatch_model::{Appender, Duration, Query, QueryOptions};
use tokio::sync::{Mutex, Notify, RwLock};
use tokio_util::sync::CancellationToken;

use super::eval::EvalEnv;
use super::file::{RuleFileError, load_file};
use super::group::Group;
use crate::AlertSink;

/// The `rules:` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule files; each entry may be a glob (`rules/*.yml`), relative to the config file.
    pub files: Vec<String>,
    /// Period of groups that name no `interval` (Prometheus' `evaluation_interval`, default 1m).
    pub evaluation_interval: Duration,
    /// Labels templates see as `$externalLabels` (Prometheus' `external_labels`).
    pub external_labels: BTreeMap<String, String>,
    /// The URL templates see as `$externalURL` and alerts link to (default: empty).
    pub external_url: String,
    /// Least time between two sends of the same alert (Prometheus: 1m).
    pub resend_delay: Duration,
    /// How long Tidewatch may have been down for `for` state to be restored (Prometheus: 1h).
    pub outage_tolerance: Duration,
    /// Least time an alert still waits after a restart before firing (Prometheus: 10m).
    pub for_grace_period: Duration,
    /// Evaluate alerting rules without `for`/`keep_firing_for` as soon as samples arrive
    /// (at most every `eager_debounce`), not only on their group's tick.
    pub eager: bool,
    /// Least time between two eager evaluations (default 100ms).
    pub eager_debounce: Duration,
    /// Per-query limits of rule expressions.
    pub query_timeout: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            files: Vec::new(),
            evaluation_interval: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay: Duration::from_secs(60),
            outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(600),
            eager: true,
            eager_debounce: Duration::from_millis(100),
            query_timeout: Duration::from_secs(120),
        }
    }
}

fn ms(d: Duration) -> i64 {
    d.as_std().as_millis() as i64
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) struct Inner {
    pub(crate) metrics: Arc<dyn Query>,
    pub(crate) logs: Option<Arc<dyn Query>>,
    appender: Arc<dyn Appender>,
    sink: Arc<dyn AlertSink>,
    pub(crate) config: RulesConfig,
    pub(crate) groups: RwLock<Vec<Arc<Mutex<Group>>>>,
    reloaded: Notify,
    ingested: Notify,
    ingest_pending: AtomicBool,
}

/// Evaluates rule groups and keeps their alerts. Cheap to clone (shared state).
#[derive(Clone)]
pub struct RuleManager {
    pub(crate) inner: Arc<Inner>,
}

impl RuleManager {
    /// A manager with no groups yet: `metrics` answers PromQL, `logs` LogQL (rules in LogQL fail
    /// without it), `appender` takes recording results and `ALERTS`, `sink` the alerts.
    pub fn new(
        metrics: Arc<dyn Query>,
        logs: Option<Arc<dyn Query>>,
        appender: Arc<dyn Appender>,
        sink: Arc<dyn AlertSink>,
        config: RulesConfig,
    ) -> RuleManager {
        RuleManager {
            inner: Arc::new(Inner {
                metrics,
                logs,
                appender,
                sink,
                config,
                groups: RwLock::new(Vec::new()),
                reloaded: Notify::new(),
                ingested: Notify::new(),
                ingest_pending: AtomicBool::new(false),
            }),
        }
    }

    /// Expands the configured `files` globs relative to `base` (the config file's folder).
    pub fn resolve_files(&self, base: &Path) -> Result<Vec<PathBuf>, String> {
        let mut out = Vec::new();
        for pattern in &self.inner.config.files {
            let full = if Path::new(pattern).is_absolute() {
                pattern.clone()
            } else {
                base.join(pattern).to_string_lossy().into_owned()
            };
            let paths = glob::glob(&full).map_err(|e| format!("rules.files: {pattern:?}: {e}"))?;
            let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            found.sort();
            out.extend(found);
        }
        Ok(out)
    }

    /// Loads (or reloads) the rule files: all or nothing, so a broken file leaves the running
    /// groups as they were. State of rules that survive (same group, same name) is kept.
    /// Returns the number of rules loaded.
    pub async fn load_files(&self, paths: &[PathBuf]) -> Result<usize, Vec<RuleFileError>> {
        let mut checked = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match load_file(p) {
                Ok(g) => checked.extend(g),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let default_interval = ms(self.inner.config.evaluation_interval);
        let mut groups = self.inner.groups.write().await;
        let mut old: Vec<Group> = Vec::new();
        for g in groups.drain(..) {
            old.push(g.lock().await.clone());
        }
        let mut count = 0;
        for c in &checked {
            let mut g = Group::from_checked(c, default_interval);
            count += g.rules.len();
            if let Some(o) = old.iter_mut().find(|o| o.name == g.name && o.file == g.file) {
                g.copy_state_from(o);
            }
            groups.push(Arc::new(Mutex::new(g)));
        }
        drop(groups);
        self.inner.reloaded.notify_one();
        Ok(count)
    }

    /// Says that samples were ingested: alerting rules without `for` are evaluated soon (at
    /// most once per `eager_debounce`) instead of waiting for their group's tick. Cheap; call
    /// it after every acknowledged write.
    pub fn notify_ingested(&self) {
        if self.inner.config.eager && !self.inner.ingest_pending.swap(true, Ordering::AcqRel) {
            self.inner.ingested.notify_one();
        }
    }

    fn env(&self) -> EvalEnv<'_> {
        EvalEnv {
            metrics: self.inner.metrics.as_ref(),
            logs: self.inner.logs.as_deref(),
            external_labels: &self.inner.config.external_labels,
            external_url: &self.inner.config.external_url,
            options: QueryOptions {
                timeout: Some(self.inner.config.query_timeout),
                ..QueryOptions::default()
            },
        }
    }

    /// Evaluates one group at `ts_ms`, writes its samples and sends its alerts; restores `for`
    /// state after the first evaluation since start. Public for tests, which drive time.
    pub async fn eval_group_at(&self, group: &Arc<Mutex<Group>>, ts_ms: i64, eager_only: bool) {
        let env = self.env();
        let cfg = &self.inner.config;
        let mut g = group.lock().await;
        let outcome = g
            .eval(
                ts_ms,
                &env,
                self.inner.appender.as_ref(),
                ms(cfg.resend_delay),
                eager_only,
            )
            .await;
        if !eager_only && g.should_restore {
            g.restore_for_state(ts_ms, &env, ms(cfg.outage_tolerance), ms(cfg.for_grace_period))
                .await;
        }
        let name = g.name.clone();
        drop(g);
        if !outcome.alerts.is_empty() {
            let n = outcome.alerts.len();
            if let Err(e) = self.inner.sink.send(outcome.alerts).await {
                tracing::warn!(group = %name, alerts = n, error = %e, "cannot hand alerts to the alertmanager; they are sent again at the next resend");
            }
        }
    }

    /// Evaluates every group at `ts_ms` (tests and tools; `run` keeps each group's period).
    pub async fn eval_all_at(&self, ts_ms: i64) {
        let groups = self.inner.groups.read().await.clone();
        for g in &groups {
            self.eval_group_at(g, ts_ms, false).await;
        }
    }

    /// Runs until `shutdown`: every group on its own aligned period, plus eager evaluations
    /// after [`notify_ingested`](Self::notify_ingested). Groups are evaluated concurrently; one
    /// group never overlaps itself.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next: Vec<(Arc<Mutex<Group>>, i64)> = Vec::new();
        let mut last_eager = tokio::time::Instant::now() - StdDuration::from_secs(1);
        loop {
            // (Re)compute the schedule after a reload.
            let groups = self.inner.groups.read().await.clone();
            if groups.len() != next.len() || groups.iter().zip(&next).any(|(a, (b, _))| !Arc::ptr_eq(a, b)) {
                let now = now_ms();
                next.clear();
                for g in groups {
                    let t = g.lock().await.next_eval_at(now);
                    next.push((g, t));
                }
            }
            let now = now_ms();
            let due_in = next.iter().map(|(_, t)| t - now).min().unwrap_or(3_600_000).max(0);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.reloaded.notified() => continue,
                _ = self.inner.ingested.notified() => {
                    let debounce = self.inner.config.eager_debounce.as_std();
                    let earliest = last_eager + debounce;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep_until(earliest) => {}
                    }
                    self.inner.ingest_pending.store(false, Ordering::Release);
                    last_eager = tokio::time::Instant::now();
                    let t = now_ms();
                    let mut set = tokio::task::JoinSet::new();
                    for (g, _) in &next {
                        let (m, g) = (self.clone(), g.clone());
                        set.spawn(async move { m.eval_group_at(&g, t, true).await });
                    }
                    while set.join_next().await.is_some() {}
                }
                _ = tokio::time::sleep(StdDuration::from_millis(due_in as u64)) => {
                    let now = now_ms();
                    let mut set = tokio::task::JoinSet::new();
                    for (g, t) in next.iter_mut() {
                        if *t <= now {
                            let interval = g.lock().await.interval_ms;
                            let (m, g2, ts) = (self.clone(), g.clone(), *t);
                            set.spawn(async move { m.eval_group_at(&g2, ts, false).await });
                            // Skip ticks missed while busy, as Prometheus does.
                            while *t <= now {
                                *t += interval;
                            }
                        }
                    }
                    while set.join_next().await.is_some() {}
                }
            }
        }
    }

    /// The groups, for the API and tests.
    pub async fn groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.inner.groups.read().await.clone()
    }
}
