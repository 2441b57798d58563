//! The agent: opens the disk buffers, starts discovery, the log sources, one loop per metric
//! source and one shipper per (buffer, URL), and owns their tasks.
//!
//! ```text
//! docker logs ─┐                                   ┌─► shipper(logs, url 1) ─► POST /loki/api/v1/push
//! files ───────┴─► buffer <data>/collector/logs ───┼─► shipper(logs, url 2) ...
//! metric loops ──► buffer <data>/collector/metrics ┴─► shipper(metrics, url n) ─► POST /api/v1/write
//! docker events ─► watch<Arc<Vec<ContainerInfo>>> ─► CollectContext of every metric round
//! ```
//! Sources wait when a buffer is full (backpressure); nothing between them is in memory only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Buffer, BufferConfig, BufferError, Payload};
use crate::shipper::{self, ShipperConfig, StreamKind};
use crate::sources::docker::{self, DockerConfig};
use crate::sources::files::{self, FileConfig};
use crate::{CollectContext, ContainerInfo, MetricSource};
use tidewatch_model::Series;

/// The collector's part of the configuration (`agent:` in the main file, next to `listen`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The disk buffer.
    pub buffer: BufferConfig,
    /// Where and how to ship.
    pub shipper: ShipperConfig,
    /// Docker discovery and container logs.
    pub docker: DockerConfig,
    /// Files to tail.
    pub files: Vec<FileConfig>,
    /// Container metrics from cgroups, under cAdvisor's names.
    pub cgroup: crate::sources::cgroup::CgroupConfig,
    /// Host metrics from /proc, under node_exporter's names.
    pub host: crate::sources::host::HostConfig,
    /// Prometheus scrape targets: static ones and labelled containers.
    pub scrape: crate::sources::scrape::ScrapeSection,
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is not usable.
    #[error("agent configuration: {0}")]
    Config(String),
    /// A disk buffer cannot be opened.
    #[error(transparent)]
    Buffer(#[from] BufferError),
}

type LabelSet = Vec<(String, String)>;

/// The agent's own metrics (registered with [`AgentHandle::register`]).
#[derive(Default)]
pub struct AgentMetrics {
    /// Records read, by source kind (`docker`, `file`, `metrics`).
    pub records_read: Family<LabelSet, Counter>,
    /// Records the server acknowledged, by stream and URL.
    pub records_sent: Family<LabelSet, Counter>,
    /// Records in batches the server rejected with a 4xx other than 429.
    pub records_rejected: Family<LabelSet, Counter>,
    /// Failed attempts (network, 5xx, 429) that will be retried.
    pub send_failures: Family<LabelSet, Counter>,
    /// Bytes held by each disk buffer.
    pub buffer_bytes: Family<LabelSet, Gauge>,
    /// Age of the oldest record waiting to be acknowledged, per stream and URL (0 when none).
    pub lag_seconds: Family<LabelSet, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl AgentMetrics {
    pub(crate) fn read(&self, kind: &str, n: u64) {
        self.records_read
            .get_or_create(&vec![("source".to_string(), kind.to_string())])
            .inc_by(n);
    }
}

/// A running agent.
pub struct AgentHandle {
    tasks: Vec<JoinHandle<()>>,
    containers: watch::Receiver<Arc<Vec<ContainerInfo>>>,
    metrics: Arc<AgentMetrics>,
    metrics_buffer: Buffer,
    node: String,
    shutdown: CancellationToken,
    /// Metric loops by source id, each with its own stop token (scrape targets come and go).
    metric_loops: HashMap<String, (JoinHandle<()>, CancellationToken)>,
}

impl AgentHandle {
    /// Starts a loop for one more metric source (a scrape target that appeared), replacing a
    /// running one with the same id.
    pub fn add_metric_source(&mut self, source: Box<dyn MetricSource>, interval: StdDuration) {
        let id = source.id().to_string();
        self.remove_metric_source(&id);
        let stop = self.shutdown.child_token();
        let task = tokio::spawn(metric_loop(
            source,
            interval,
            self.node.clone(),
            self.metrics_buffer.clone(),
            self.containers.clone(),
            self.metrics.clone(),
            stop.clone(),
            self.shutdown.clone(),
        ));
        self.metric_loops.insert(id, (task, stop));
    }

    /// Stops the loop of the metric source `id`; false if there is none. A round in progress is
    /// abandoned before it reaches the buffer or after, never halfway.
    pub fn remove_metric_source(&mut self, id: &str) -> bool {
        match self.metric_loops.remove(id) {
            Some((_, stop)) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Buffers samples under the metric source `id` outside its loop, e.g. the staleness
    /// markers of a scrape target that went away (they continue its sequence numbers).
    pub async fn push_metrics(&self, id: &str, series: Vec<Series>) -> Result<(), BufferError> {
        let payload = Payload::Metrics(series);
        self.metrics.read("metrics", payload.count());
        self.metrics_buffer
            .push(&format!("{}/{id}", self.node), String::new(), payload)
            .await
            .map(drop)
    }

    /// The containers discovery sees now (empty when Docker is disabled or absent).
    pub fn containers(&self) -> watch::Receiver<Arc<Vec<ContainerInfo>>> {
        self.containers.clone()
    }

    /// Registers the agent's metrics (prefix `tidewatch_agent_`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tidewatch_agent");
        let m = &self.metrics;
        r.register("records_read", "Records read, by source kind", m.records_read.clone());
        r.register(
            "records_sent",
            "Records acknowledged by the server",
            m.records_sent.clone(),
        );
        r.register(
            "records_rejected",
            "Records in batches the server rejected (4xx other than 429); not retried",
            m.records_rejected.clone(),
        );
        r.register(
            "send_failures",
            "Failed sends that are retried (network errors, 5xx, 429)",
            m.send_failures.clone(),
        );
        r.register("buffer_bytes", "Bytes held by the disk buffer", m.buffer_bytes.clone());
        r.register(
            "lag_seconds",
            "Age of the oldest record waiting to be acknowledged",
            m.lag_seconds.clone(),
        );
    }

    /// The metrics, for tests and embedding.
    pub fn metrics(&self) -> Arc<AgentMetrics> {
        self.metrics.clone()
    }

    /// Waits for every task to end (after the shutdown token fired). Nothing needs flushing:
    /// everything read is already in the disk buffer.
    pub async fn join(self) {
        for t in self
            .tasks
            .into_iter()
            .chain(self.metric_loops.into_values().map(|(t, _)| t))
        {
            let _ = t.await;
        }
    }

    /// Stops every task at once, the way a crash would: no state is written on the way out.
    /// Returns once no task runs any more: a task in the middle of a poll when the abort comes
    /// finishes that poll first, and could otherwise still buffer what appears meanwhile.
    pub async fn abort(self) {
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .into_iter()
            .chain(self.metric_loops.into_values().map(|(t, _)| t))
            .collect();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The collector on one node.
pub struct Agent;

impl Agent {
    /// Starts the agent: buffers under `<data_dir>/collector/{logs,metrics}`, Docker discovery
    /// and logs, file tailing, a loop per metric source (each with its interval) and the
    /// shippers. `node` is the `node` label and prefixes every delivery source id. Returns once
    /// everything is started; the tasks run until `shutdown` fires.
    pub async fn start(
        config: AgentConfig,
        data_dir: &Path,
        node: String,
        metric_sources: Vec<(Box<dyn MetricSource>, StdDuration)>,
        shutdown: CancellationToken,
    ) -> Result<AgentHandle, AgentError> {
        config.shipper.validate().map_err(AgentError::Config)?;
        for (i, f) in config.files.iter().enumerate() {
            f.validate()
                .map_err(|e| AgentError::Config(format!("files[{i}]: {e}")))?;
        }
        config
            .docker
            .validate()
            .map_err(|e| AgentError::Config(format!("docker: {e}")))?;
        raise_open_file_limit();
        let root = data_dir.join("collector");
        let max = config.buffer.max_size.bytes();
        let logs = Buffer::open(&root.join("logs"), max, &config.shipper.urls)?;
        let metrics_buffer = Buffer::open(&root.join("metrics"), (max / 4).max(1 << 20), &config.shipper.urls)?;
        let metrics = Arc::new(AgentMetrics::default());
        let (containers_tx, containers) = watch::channel(Arc::new(Vec::new()));
        let mut tasks = Vec::new();

        if config.docker.enabled {
            tasks.push(tokio::spawn(docker::run(
                config.docker.clone(),
                node.clone(),
                logs.clone(),
                containers_tx,
                metrics.clone(),
                shutdown.clone(),
            )));
        }
        if !config.files.is_empty() {
            tasks.push(tokio::spawn(files::run(
                config.files.clone(),
                node.clone(),
                logs.clone(),
                metrics.clone(),
                shutdown.clone(),
            )));
        }
        for url in &config.shipper.urls {
            for (kind, buffer) in [(StreamKind::Logs, &logs), (StreamKind::Metrics, &metrics_buffer)] {
                tasks.push(tokio::spawn(shipper::run(
                    kind,
                    buffer.clone(),
                    url.clone(),
                    config.shipper.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                )));
            }
        }
        let mut handle = AgentHandle {
            tasks,
            containers,
            metrics,
            metrics_buffer,
            node,
            shutdown,
            metric_loops: HashMap::new(),
        };
        for (source, interval) in metric_sources {
            handle.add_metric_source(source, interval);
        }
        Ok(handle)
    }
}

/// The agent keeps a container's cgroup files and log stream open: about twenty descriptors a
/// container, past the usual soft limit of 1024 at fifty containers. Raise the soft limit to
/// the hard one, as Go programs (the Docker engine, node_exporter) do at start.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "agent: cannot raise the open file limit");
        }
    }
}

async fn metric_loop(
    mut source: Box<dyn MetricSource>,
    interval: StdDuration,
    node: String,
    buffer: Buffer,
    containers: watch::Receiver<Arc<Vec<ContainerInfo>>>,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
    shutdown: CancellationToken,
) {
    let id = format!("{node}/{}", source.id());
    let mut tick = tokio::time::interval(interval.max(StdDuration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let ctx = CollectContext {
            now_ms: now_ms(),
            node: node.clone(),
            containers: containers.borrow().clone(),
        };
        let series = tokio::select! {
            _ = cancel.cancelled() => break,
            s = source.collect(&ctx) => s,
        };
        let payload = Payload::Metrics(series);
        metrics.read("metrics", payload.count());
        let pushed = tokio::select! {
            _ = cancel.cancelled() => break,
            r = buffer.push(&id, String::new(), &payload) => r,
        };
        if let Err(e) = pushed {
            tracing::error!(source = %id, error = %e, "agent: cannot buffer a metric round; it is lost");
        }
        if let Payload::Metrics(series) = payload {
            source.reuse(series);
        }
    }
    if shutdown.is_cancelled() {
        return;
    }
    // Removed while the agent runs (a scrape target whose container went away): its last
    // samples are the staleness markers of what it reported.
    let markers = source.finish(now_ms());
    if !markers.is_empty() {
        let payload = Payload::Metrics(markers);
        metrics.read("metrics", payload.count());
        if let Err(e) = buffer.push(&id, String::new(), payload).await {
            tracing::warn!(source = %id, error = %e, "agent: staleness markers of a removed source not buffered");
        }
    }
}
