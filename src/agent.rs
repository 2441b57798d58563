//! Starts the collector (`tidewatch agent`, and inside `tidewatch up`) from the configuration:
//! its metric sources, the scrape targets that follow the containers, and the agent itself.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use tidewatch_collector::agent::{Agent, AgentHandle};
use tidewatch_collector::sources::cgroup::CgroupSource;
use tidewatch_collector::sources::host::HostSource;
use tidewatch_collector::sources::scrape::ScrapeTargets;
use tidewatch_collector::{CollectContext, MetricSource};
use tidewatch_model::Series;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;

/// Containers the scheduler runs are the ones autoscaling reads, so their cgroups are read
/// every second whatever `collector.cgroup.interval` says (issue: "1 s for containers of
/// autoscaled services").
const MANAGED_LABEL: &str = "tidewatch.managed";
const MANAGED_INTERVAL: Duration = Duration::from_secs(1);

/// A running collector.
pub struct RunningAgent {
    handle: Arc<Mutex<Option<AgentHandle>>>,
    stop: CancellationToken,
    follow: JoinHandle<()>,
    /// The agent's metrics.
    pub registry: Registry,
}

impl RunningAgent {
    /// Stops reading and shipping. Everything read is in the disk buffer already, so nothing is
    /// lost: the next start ships what was not acknowledged.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.follow.await;
        if let Some(handle) = self.handle.lock().await.take() {
            handle.join().await;
        }
    }
}

/// The node name: `agent.node`, else the host name.
pub fn node_name(config: &Config) -> String {
    config.agent.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// Starts the collector. Under `up`, `ship_to` is the server's own address, used when the
/// configuration keeps the default shipper URL.
pub async fn start(
    config: &Config,
    ship_to: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningAgent> {
    let mut agent_config = config.collector.clone();
    if let Some(url) = ship_to
        && agent_config.shipper.urls == tidewatch_collector::shipper::ShipperConfig::default().urls
    {
        agent_config.shipper.urls = vec![url];
    }
    let node = node_name(config);
    let mut sources: Vec<(Box<dyn MetricSource>, Duration)> = Vec::new();
    let cgroup = &agent_config.cgroup;
    if cgroup.enabled {
        let interval = cgroup.interval.as_std();
        let regular = CgroupSource::new(cgroup).map_err(|e| anyhow::anyhow!("collector.cgroup: {e}"))?;
        if interval > MANAGED_INTERVAL {
            let fast = CgroupSource::new(cgroup).map_err(|e| anyhow::anyhow!("collector.cgroup: {e}"))?;
            sources.push((Box::new(Filtered::new(regular, "cgroup", false)), interval));
            sources.push((Box::new(Filtered::new(fast, "cgroup-managed", true)), MANAGED_INTERVAL));
        } else {
            sources.push((Box::new(regular), interval));
        }
    }
    if agent_config.host.enabled {
        let host = HostSource::new(&agent_config.host).map_err(|e| anyhow::anyhow!("collector.host: {e}"))?;
        sources.push((Box::new(host), agent_config.host.interval.as_std()));
    }
    let mut targets = ScrapeTargets::new(&agent_config.scrape).map_err(|e| anyhow::anyhow!("collector.scrape: {e}"))?;

    let stop = shutdown.child_token();
    let handle = Agent::start(agent_config, &config.data_dir, node.clone(), sources, stop.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the collector: {e}"))?;
    let mut registry = Registry::default();
    handle.register(&mut registry);
    let mut containers = handle.containers();
    let handle = Arc::new(Mutex::new(Some(handle)));

    // Scrape targets follow the containers (and start with the static ones).
    let shared = handle.clone();
    let follow_stop = stop.clone();
    let follow = tokio::spawn(async move {
        loop {
            let now = containers.borrow_and_update().clone();
            let changes = targets.sync(&now);
            if let Some(h) = shared.lock().await.as_mut() {
                for target in changes.added {
                    let interval = target.spec().interval;
                    h.add_metric_source(Box::new(target), interval);
                }
                for id in changes.removed {
                    // Its loop ends with the target's staleness markers, as Prometheus writes them.
                    h.remove_metric_source(&id);
                }
            }
            tokio::select! {
                _ = follow_stop.cancelled() => return,
                changed = containers.changed() => if changed.is_err() { return },
            }
        }
    });
    info!(%node, "collector started");
    Ok(RunningAgent {
        handle,
        stop,
        follow,
        registry,
    })
}

/// A cgroup source restricted to the scheduler's containers (`managed`) or to the others,
/// under its own delivery source id.
struct Filtered {
    inner: CgroupSource,
    id: &'static str,
    managed: bool,
}

impl Filtered {
    fn new(inner: CgroupSource, id: &'static str, managed: bool) -> Filtered {
        Filtered { inner, id, managed }
    }
}

#[async_trait]
impl MetricSource for Filtered {
    fn id(&self) -> &str {
        self.id
    }

    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series> {
        let containers: Vec<_> = ctx
            .containers
            .iter()
            .filter(|c| c.labels.contains_key(MANAGED_LABEL) == self.managed)
            .cloned()
            .collect();
        self.inner.collect_now(&ctx.node, ctx.now_ms, &containers)
    }
}
