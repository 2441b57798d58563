//! The Alertmanager: the alert store, the dispatcher (aggregation groups and their timers), the
//! notification pipeline (inhibit → time intervals → silences → dedup → retry → log) and the
//! state it persists. Timers use tokio time, so tests can run it under `tokio::time::pause()`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::AlertmanagerConfigFile;
use super::inhibit::Inhibitor;
use super::matchers::{LabelSet, fingerprint, labelset_string, valid_label_name};
use super::metrics::{IntegrationLabel, Metrics, StatusLabel};
use super::receivers::{Integration, Notification, NotifyAlert};
use super::route::{RouteOpts, group_labels};
use super::runtime::Runtime;
use super::state::journal::JournalError;
use super::state::nflog::{NflogEntry, NotificationLog, needs_update};
use super::state::silences::Silences;
use crate::{AlertSink, PostableAlert};

/// Wall-clock time that follows tokio's clock, so paused-time tests move both together.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: DateTime<Utc>,
    at: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            base: Utc::now(),
            at: Instant::now(),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(Instant::now() - self.at).unwrap_or_default()
    }
}

/// An alert as the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAlert {
    /// Identity.
    pub labels: LabelSet,
    /// Text.
    pub annotations: LabelSet,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End (now + resolve_timeout when the sender gave none).
    pub ends_at: DateTime<Utc>,
    /// Link to the rule.
    pub generator_url: String,
    /// Last time it was received.
    pub updated_at: DateTime<Utc>,
    /// `ends_at` came from resolve_timeout.
    pub timeout: bool,
}

impl StoredAlert {
    /// Whether it is resolved at `now`.
    pub fn resolved_at(&self, now: DateTime<Utc>) -> bool {
        self.ends_at <= now
    }

    /// Alertmanager's `Alert.Merge`: `newer` is the later update.
    fn merge(&self, newer: &StoredAlert) -> StoredAlert {
        let (older, newer) = if newer.updated_at < self.updated_at {
            (newer, self)
        } else {
            (self, newer)
        };
        let mut res = newer.clone();
        if older.starts_at < newer.starts_at {
            res.starts_at = older.starts_at;
        }
        if newer.ends_at <= newer.updated_at {
            if older.ends_at <= older.updated_at && older.ends_at > newer.ends_at {
                res.ends_at = older.ends_at;
            }
        } else if older.ends_at > newer.ends_at && !older.timeout {
            res.ends_at = older.ends_at;
        }
        res
    }
}

/// What the dispatcher did, for observers (tests, benches, debugging). Sent on a bounded
/// broadcast channel: a slow observer loses events, the dispatcher never waits.
#[derive(Clone, Debug)]
pub enum DispatchEvent {
    /// A group was flushed; `alerts` survived inhibition, time intervals and silences.
    Flush {
        /// Receiver name.
        receiver: String,
        /// Group key.
        group_key: String,
        /// `(fingerprint, resolved)` of each alert passed on.
        alerts: Vec<(u64, bool)>,
    },
    /// One integration delivered a notification.
    Delivered {
        /// Receiver name.
        receiver: String,
        /// `webhook`, `email`, ...
        integration: String,
        /// Group key.
        group_key: String,
        /// Alerts sent.
        alerts: usize,
    },
    /// One integration finally failed.
    Failed {
        /// Receiver name.
        receiver: String,
        /// Integration type.
        integration: String,
        /// Group key.
        group_key: String,
        /// Last error.
        error: String,
    },
}

/// Limits that keep memory bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Alerts held at once (new alerts beyond are rejected).
    pub max_alerts: usize,
    /// Silences held at once (expired ones included until retention).
    pub max_silences: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_alerts: 200_000,
            max_silences: 10_000,
        }
    }
}

/// Notification log retention (Alertmanager's `--data.retention` default).
const RETENTION: Duration = Duration::from_secs(120 * 3600);
/// Resolved alerts leave the store after this long (Alertmanager's GC interval).
const ALERT_GC_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Compact the journals after this many appends.
const COMPACT_AFTER: usize = 10_000;

struct GroupState {
    alerts: HashMap<u64, StoredAlert>,
    has_flushed: bool,
    flush_now: bool,
}

struct Group {
    id: (String, u64),
    key: String,
    labels: LabelSet,
    opts: RouteOpts,
    state: Mutex<GroupState>,
    wake: Notify,
}

struct AlertState {
    alerts: HashMap<u64, StoredAlert>,
    inhibitor: Inhibitor,
}

/// An aggregation group as the API shows it: group labels, receiver, alerts.
pub type GroupView = (LabelSet, String, Vec<(u64, StoredAlert)>);

/// The running Alertmanager.
pub struct Alertmanager {
    me: Weak<Alertmanager>,
    dir: PathBuf,
    clock: Clock,
    started: DateTime<Utc>,
    config: RwLock<(Arc<AlertmanagerConfigFile>, Arc<Runtime>)>,
    alerts: Mutex<AlertState>,
    silences: Mutex<Silences>,
    nflog: Mutex<NotificationLog>,
    groups: Mutex<HashMap<(String, u64), Arc<Group>>>,
    groups_cancel: Mutex<CancellationToken>,
    events: broadcast::Sender<DispatchEvent>,
    metrics: Metrics,
    limits: Limits,
}

/// Why [`Alertmanager::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The config does not compile.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// A state file cannot be read or written.
    #[error(transparent)]
    State(#[from] JournalError),
    /// The data folder cannot be created.
    #[error("{0}")]
    Io(String),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a lock must not take the whole notifier down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_time(field: &str, s: &Option<String>) -> Result<Option<DateTime<Utc>>, String> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        // Go's zero time, however it is spelled ("0001-01-01T00:00:00.000Z" from go-openapi).
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| Some(t.with_timezone(&Utc)).filter(|t| chrono::Datelike::year(t) > 1))
            .map_err(|e| format!("{field} {t:?}: {e}")),
    }
}

impl Alertmanager {
    /// Opens the state under `data_dir` (created if missing: `nflog.jsonl`, `silences.jsonl`)
    /// and compiles the config. Alerts themselves are not persisted (as in Alertmanager:
    /// senders re-send them); what was notified and what is silenced is.
    pub fn open(data_dir: &Path, config: AlertmanagerConfigFile) -> Result<Arc<Self>, OpenError> {
        Self::open_with_limits(data_dir, config, Limits::default())
    }

    /// [`Alertmanager::open`] with explicit limits.
    pub fn open_with_limits(
        data_dir: &Path,
        config: AlertmanagerConfigFile,
        limits: Limits,
    ) -> Result<Arc<Self>, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|e| OpenError::Io(format!("{}: {e}", data_dir.display())))?;
        let runtime = Runtime::compile(&config)?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        let clock = Clock::new();
        let now = clock.now();
        let nflog = NotificationLog::open(data_dir, now)?;
        let silences = Silences::open(data_dir, now, limits.max_silences)?;
        let inhibitor = Inhibitor::new(runtime.inhibit_rules.clone());
        let (events, _) = broadcast::channel(4096);
        Ok(Arc::new_cyclic(|me| Alertmanager {
            me: me.clone(),
            dir: data_dir.to_path_buf(),
            clock,
            started: now,
            config: RwLock::new((Arc::new(config), Arc::new(runtime))),
            alerts: Mutex::new(AlertState {
                alerts: HashMap::new(),
                inhibitor,
            }),
            silences: Mutex::new(silences),
            nflog: Mutex::new(nflog),
            groups: Mutex::new(HashMap::new()),
            groups_cancel: Mutex::new(CancellationToken::new()),
            events,
            metrics: Metrics::default(),
            limits,
        }))
    }

    /// The clock the Alertmanager uses (follows tokio time).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// When it started.
    pub fn started(&self) -> DateTime<Utc> {
        self.started
    }

    /// The current config file and its compiled form.
    pub fn config(&self) -> (Arc<AlertmanagerConfigFile>, Arc<Runtime>) {
        let c = self.config.read().unwrap_or_else(|e| e.into_inner());
        (c.0.clone(), c.1.clone())
    }

    /// The metrics (shared counters).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Registers the notifier's metrics.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Observes what the dispatcher does.
    pub fn subscribe(&self) -> broadcast::Receiver<DispatchEvent> {
        self.events.subscribe()
    }

    /// Swaps in a new config: the dispatcher restarts its groups from the stored alerts; the
    /// notification log keeps them from re-notifying. A bad config changes nothing.
    pub fn reload(&self, config: AlertmanagerConfigFile) -> Result<(), super::config::ConfigError> {
        let runtime = Arc::new(Runtime::compile(&config)?);
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        {
            let mut c = self.config.write().unwrap_or_else(|e| e.into_inner());
            *c = (Arc::new(config), runtime.clone());
        }
        let old = std::mem::take(&mut *lock(&self.groups_cancel));
        old.cancel();
        lock(&self.groups).clear();
        self.metrics.aggregation_groups.set(0);
        let alerts: Vec<(u64, StoredAlert)> = {
            let mut st = lock(&self.alerts);
            st.inhibitor = Inhibitor::new(runtime.inhibit_rules.clone());
            let all: Vec<(u64, StoredAlert)> = st.alerts.iter().map(|(k, v)| (*k, v.clone())).collect();
            for (fp, a) in &all {
                st.inhibitor.observe(*fp, &a.labels, a.ends_at);
            }
            all
        };
        let now = self.now();
        for (fp, a) in alerts {
            self.dispatch(&runtime, fp, &a, now);
        }
        Ok(())
    }

    /// Background upkeep until `shutdown`: drops resolved alerts and expired log entries and
    /// silences, compacts the journals. Then stops every group.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_gc = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = self.now();
            let due = last_gc.elapsed() >= ALERT_GC_INTERVAL;
            if due {
                last_gc = Instant::now();
                let mut st = lock(&self.alerts);
                let gone: Vec<u64> = st
                    .alerts
                    .iter()
                    .filter(|(_, a)| a.resolved_at(now))
                    .map(|(k, _)| *k)
                    .collect();
                for fp in gone {
                    st.alerts.remove(&fp);
                    st.inhibitor.forget(fp);
                }
            }
            {
                let mut log = lock(&self.nflog);
                if (due || log.appended() > COMPACT_AFTER)
                    && let Err(e) = log.gc(now)
                {
                    tracing::error!(error = %e, "notification log compaction failed");
                }
            }
            let mut sil = lock(&self.silences);
            if (due || sil.appended() > COMPACT_AFTER)
                && let Err(e) = sil.gc(now)
            {
                tracing::error!(error = %e, "silence compaction failed");
            }
        }
        lock(&self.groups_cancel).cancel();
    }

    /// Accepts alerts as `POST /api/v2/alerts` does: valid ones are stored and dispatched even
    /// when others are rejected; the error lists the rejected ones.
    pub fn put_alerts(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        let now = self.now();
        let (_, runtime) = self.config();
        let mut errors = Vec::new();
        let mut accepted = Vec::new();
        for (i, a) in alerts.into_iter().enumerate() {
            match self.normalize(a, now, runtime.resolve_timeout) {
                Ok(s) => accepted.push(s),
                Err(e) => {
                    self.metrics.alerts_invalid.inc();
                    errors.push(format!("alert {i}: {e}"));
                }
            }
        }
        for alert in accepted {
            let fp = fingerprint(&alert.labels);
            let status = if alert.resolved_at(now) { "resolved" } else { "firing" };
            let stored = {
                let mut st = lock(&self.alerts);
                let merged = match st.alerts.get(&fp) {
                    Some(old)
                        if (alert.ends_at > old.starts_at && alert.ends_at < old.ends_at)
                            || (alert.starts_at > old.starts_at && alert.starts_at < old.ends_at) =>
                    {
                        old.merge(&alert)
                    }
                    Some(_) => alert,
                    None if st.alerts.len() >= self.limits.max_alerts => {
                        errors.push(format!(
                            "alert {}: alert limit {} reached",
                            labelset_string(&alert.labels),
                            self.limits.max_alerts
                        ));
                        continue;
                    }
                    None => alert,
                };
                st.alerts.insert(fp, merged.clone());
                st.inhibitor.observe(fp, &merged.labels, merged.ends_at);
                merged
            };
            self.metrics
                .alerts_received
                .get_or_create(&StatusLabel { status: status.into() })
                .inc();
            self.dispatch(&runtime, fp, &stored, now);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn normalize(
        &self,
        a: PostableAlert,
        now: DateTime<Utc>,
        resolve_timeout: Duration,
    ) -> Result<StoredAlert, String> {
        if a.labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        for (k, v) in &a.labels {
            if !valid_label_name(k) {
                return Err(format!("invalid label name {k:?}"));
            }
            if v.is_empty() {
                return Err(format!("empty value for label {k:?}"));
            }
        }
        for k in a.annotations.keys() {
            if !valid_label_name(k) {
                return Err(format!("invalid annotation name {k:?}"));
            }
        }
        let starts = parse_time("startsAt", &a.starts_at)?;
        let ends = parse_time("endsAt", &a.ends_at)?;
        let starts_at = match (starts, ends) {
            (Some(s), _) => s,
            (None, Some(e)) if e < now => e,
            _ => now,
        };
        let (ends_at, timeout) = match ends {
            Some(e) => (e, false),
            None => (
                chrono::Duration::from_std(resolve_timeout)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
                true,
            ),
        };
        if ends_at < starts_at {
            return Err("start time must be before end time".into());
        }
        Ok(StoredAlert {
            labels: a.labels,
            annotations: a.annotations,
            starts_at,
            ends_at,
            generator_url: a.generator_url,
            updated_at: now,
            timeout,
        })
    }

    fn dispatch(&self, runtime: &Runtime, fp: u64, alert: &StoredAlert, now: DateTime<Utc>) {
        let cancel = lock(&self.groups_cancel).clone();
        let mut groups = lock(&self.groups);
        for route in runtime.route.match_labels(&alert.labels) {
            let labels = group_labels(&alert.labels, &route.opts);
            let id = (route.id.clone(), fingerprint(&labels));
            let group = match groups.get(&id) {
                Some(g) => g.clone(),
                None => {
                    let g = Arc::new(Group {
                        id: id.clone(),
                        key: format!("{}:{}", route.key, labelset_string(&labels)),
                        labels,
                        opts: route.opts.clone(),
                        state: Mutex::new(GroupState {
                            alerts: HashMap::new(),
                            has_flushed: false,
                            flush_now: false,
                        }),
                        wake: Notify::new(),
                    });
                    groups.insert(id, g.clone());
                    self.metrics.aggregation_groups.set(groups.len() as i64);
                    tokio::spawn(run_group(self.me.clone(), g.clone(), cancel.clone()));
                    g
                }
            };
            let mut st = lock(&group.state);
            st.alerts.insert(fp, alert.clone());
            let wait = chrono::Duration::from_std(group.opts.group_wait).unwrap_or_default();
            // Checked: a start time near the end of representable time must not panic.
            if !st.has_flushed && alert.starts_at.checked_add_signed(wait).is_some_and(|t| t < now) {
                st.flush_now = true;
                drop(st);
                group.wake.notify_one();
            }
        }
    }

    /// Flushes one group; true when every integration succeeded (or nothing was due).
    async fn flush(&self, group: &Group) -> bool {
        let now = self.now();
        let (_, runtime) = self.config();
        let snapshot: Vec<(u64, StoredAlert)> = {
            let st = lock(&group.state);
            st.alerts.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
        if snapshot.is_empty() {
            return true;
        }
        let mut alerts: Vec<NotifyAlert> = snapshot
            .iter()
            .map(|(fp, a)| NotifyAlert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at,
                ends_at: a.resolved_at(now).then_some(a.ends_at),
                generator_url: a.generator_url.clone(),
                fingerprint: *fp,
            })
            .collect();
        alerts.sort_by(|a, b| {
            let key = |x: &NotifyAlert| {
                (
                    x.labels.get("job").cloned(),
                    x.labels.get("instance").cloned(),
                    x.labels.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        let ok = self.pipeline(&runtime, group, alerts, now).await;
        if ok {
            let mut st = lock(&group.state);
            for (fp, sent) in &snapshot {
                if sent.resolved_at(now) && st.alerts.get(fp).is_some_and(|cur| cur.updated_at == sent.updated_at) {
                    st.alerts.remove(fp);
                }
            }
        }
        ok
    }

    async fn pipeline(&self, runtime: &Runtime, group: &Group, alerts: Vec<NotifyAlert>, now: DateTime<Utc>) -> bool {
        let alerts: Vec<NotifyAlert> = {
            let st = lock(&self.alerts);
            alerts
                .into_iter()
                .filter(|a| st.inhibitor.muted_by(&a.labels, now).is_none())
                .collect()
        };
        if alerts.is_empty() || runtime.route_muted(&group.opts, now) {
            return true;
        }
        let alerts: Vec<NotifyAlert> = {
            let sil = lock(&self.silences);
            alerts
                .into_iter()
                .filter(|a| sil.silenced_by(&a.labels, now).is_empty())
                .collect()
        };
        if alerts.is_empty() {
            return true;
        }
        let _ = self.events.send(DispatchEvent::Flush {
            receiver: group.opts.receiver.clone(),
            group_key: group.key.clone(),
            alerts: alerts.iter().map(|a| (a.fingerprint, a.ends_at.is_some())).collect(),
        });
        let Some(receiver) = runtime.receivers.get(&group.opts.receiver).cloned() else {
            return true;
        };
        let notification = Notification {
            group_key: group.key.clone(),
            receiver: receiver.name.clone(),
            group_labels: group.labels.clone(),
            alerts,
            external_url: runtime.external_url.clone(),
        };
        let deadline = Instant::now() + group.opts.group_interval;
        let results = futures_util::future::join_all(
            receiver
                .integrations
                .iter()
                .map(|i| self.notify_integration(i, &notification, group, now, deadline)),
        )
        .await;
        results.into_iter().all(|ok| ok)
    }

    async fn notify_integration(
        &self,
        integration: &Integration,
        n: &Notification,
        group: &Group,
        now: DateTime<Utc>,
        deadline: Instant,
    ) -> bool {
        let firing: HashSet<u64> = n
            .alerts
            .iter()
            .filter(|a| a.ends_at.is_none())
            .map(|a| a.fingerprint)
            .collect();
        let resolved: HashSet<u64> = n
            .alerts
            .iter()
            .filter(|a| a.ends_at.is_some())
            .map(|a| a.fingerprint)
            .collect();
        let log_key = format!("{}/{}/{}", n.receiver, integration.name, integration.index);
        let entry = lock(&self.nflog).get(&n.group_key, &log_key).cloned();
        if !needs_update(
            entry.as_ref(),
            &firing,
            &resolved,
            integration.send_resolved,
            group.opts.repeat_interval,
            now,
        ) {
            return true;
        }
        let label = IntegrationLabel {
            integration: integration.name.to_string(),
        };
        let result = if !integration.send_resolved && firing.is_empty() {
            // Nothing to send, but the log must learn that everything resolved.
            Ok(0)
        } else {
            self.metrics.notifications.get_or_create(&label).inc();
            let mut sent = n.clone();
            if !integration.send_resolved {
                sent.alerts.retain(|a| a.ends_at.is_none());
            }
            self.retry(integration, &sent, &label, deadline)
                .await
                .map(|_| sent.alerts.len())
        };
        match result {
            Ok(count) => {
                let mut firing: Vec<u64> = firing.into_iter().collect();
                let mut resolved: Vec<u64> = resolved.into_iter().collect();
                firing.sort_unstable();
                resolved.sort_unstable();
                let entry = NflogEntry {
                    group_key: n.group_key.clone(),
                    receiver: log_key,
                    firing,
                    resolved,
                    ts: now,
                    expires_at: now + chrono::Duration::from_std(RETENTION).unwrap_or_default(),
                };
                if let Err(e) = lock(&self.nflog).log(entry) {
                    // Delivered but not recorded: report failure so the group retries, rather
                    // than risk forgetting after a restart.
                    tracing::error!(error = %e, group = %n.group_key, "writing the notification log failed");
                    return false;
                }
                if count > 0 {
                    let _ = self.events.send(DispatchEvent::Delivered {
                        receiver: n.receiver.clone(),
                        integration: integration.name.to_string(),
                        group_key: n.group_key.clone(),
                        alerts: count,
                    });
                }
                true
            }
            Err(error) => {
                self.metrics.notifications_failed.get_or_create(&label).inc();
                tracing::error!(
                    receiver = %n.receiver,
                    integration = integration.name,
                    group = %n.group_key,
                    alerts = n.alerts.len(),
                    %error,
                    "notification failed after retries"
                );
                let _ = self.events.send(DispatchEvent::Failed {
                    receiver: n.receiver.clone(),
                    integration: integration.name.to_string(),
                    group_key: n.group_key.clone(),
                    error,
                });
                false
            }
        }
    }

    /// Exponential backoff with jitter (0.5 s start, ×1.5, 50 % jitter, 60 s cap) until the
    /// deadline (the group interval) or a non-retryable error.
    async fn retry(
        &self,
        integration: &Integration,
        n: &Notification,
        label: &IntegrationLabel,
        deadline: Instant,
    ) -> Result<(), String> {
        use rand::Rng;
        let mut interval = Duration::from_millis(500);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.metrics.requests.get_or_create(label).inc();
            let remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            match integration.notify(n, remaining).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.metrics.requests_failed.get_or_create(label).inc();
                    if !e.retry {
                        return Err(format!("{} (not retryable, attempt {attempt})", e.message));
                    }
                    let jitter = rand::rng().random_range(0.5..1.5);
                    let wait = interval.mul_f64(jitter);
                    if Instant::now() + wait >= deadline {
                        return Err(format!("{} (gave up after {attempt} attempts)", e.message));
                    }
                    tracing::debug!(integration = integration.name, attempt, error = %e.message, "notify attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    interval = (interval.mul_f64(1.5)).min(Duration::from_secs(60));
                }
            }
        }
    }

    fn remove_group_if_empty(&self, group: &Group) -> bool {
        let mut groups = lock(&self.groups);
        if !lock(&group.state).alerts.is_empty() {
            return false;
        }
        if groups.get(&group.id).is_some_and(|g| std::ptr::eq(g.as_ref(), group)) {
            groups.remove(&group.id);
            self.metrics.aggregation_groups.set(groups.len() as i64);
        }
        true
    }

    /// Every stored alert with its fingerprint.
    pub fn alerts(&self) -> Vec<(u64, StoredAlert)> {
        lock(&self.alerts).alerts.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    /// Ids of silences muting these labels now, and the fingerprint of an inhibiting alert.
    pub fn alert_status(&self, labels: &LabelSet, now: DateTime<Utc>) -> (Vec<String>, Vec<String>) {
        let silenced = lock(&self.silences).silenced_by(labels, now);
        let inhibited = lock(&self.alerts)
            .inhibitor
            .muted_by(labels, now)
            .map(|fp| vec![format!("{fp:016x}")])
            .unwrap_or_default();
        (silenced, inhibited)
    }

    /// The groups: `(labels, receiver, alerts)`.
    pub fn groups(&self) -> Vec<GroupView> {
        let groups: Vec<Arc<Group>> = lock(&self.groups).values().cloned().collect();
        groups
            .iter()
            .map(|g| {
                let alerts = lock(&g.state).alerts.iter().map(|(k, v)| (*k, v.clone())).collect();
                (g.labels.clone(), g.opts.receiver.clone(), alerts)
            })
            .collect()
    }

    /// Runs `f` on the silences.
    pub fn with_silences<R>(&self, f: impl FnOnce(&mut Silences) -> R) -> R {
        f(&mut lock(&self.silences))
    }
}

async fn run_group(am: Weak<Alertmanager>, group: Arc<Group>, cancel: CancellationToken) {
    let mut next = Instant::now() + group.opts.group_wait;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = group.wake.notified() => {
                let now_due = std::mem::take(&mut lock(&group.state).flush_now);
                if !now_due && Instant::now() < next {
                    continue;
                }
            }
        }
        next = Instant::now() + group.opts.group_interval;
        {
            let mut st = lock(&group.state);
            st.has_flushed = true;
            st.flush_now = false;
        }
        let Some(am) = am.upgrade() else { return };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = am.flush(&group) => {}
        }
        if am.remove_group_if_empty(&group) {
            return;
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        lock(&self.groups_cancel).cancel();
    }
}

#[async_trait::async_trait]
impl AlertSink for Alertmanager {
    async fn send(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        self.put_alerts(alerts)
    }
}
