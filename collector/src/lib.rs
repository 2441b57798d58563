//! The collector: container, cgroup, file, scrape and host sources, the disk buffer and the shipper.
//!
//! The pieces meet at two small interfaces defined here:
//! - [`ContainerInfo`]: what discovery (the Docker source) knows about a running container; the
//!   cgroup reader and container scrape targets read it.
//! - [`MetricSource`]: anything that produces one round of samples when asked (cgroups, host,
//!   one scrape target). The agent loop calls it on its interval and hands the result to the
//!   disk buffer under the source's id.
//!
//! Log sources (Docker logs, files) push [`tidewatch_model::LogRecord`]s into the buffer
//! themselves, because they are driven by their input, not by a clock.

pub mod agent;
pub mod buffer;
pub mod shipper;
pub mod sources;

use std::collections::BTreeMap;

use async_trait::async_trait;
use tidewatch_model::Series;

/// A running container as discovery sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInfo {
    /// The full 64-hex container id.
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created from (`Config.Image`).
    pub image: String,
    /// The container's Docker labels.
    pub labels: BTreeMap<String, String>,
    /// The container's main process on the host (0 when unknown), for its network namespace.
    pub pid: u32,
    /// The `service` label value as ../shared/DESIGN.md defines it.
    pub service: String,
    /// Published TCP ports: container port → host port on 127.0.0.1 (or 0.0.0.0).
    pub published_ports: BTreeMap<u16, u16>,
    /// The container's IP addresses on its networks (for scraping without published ports).
    pub ip_addresses: Vec<String>,
    /// Whether the container runs with a TTY (its logs then come as one raw stream).
    pub tty: bool,
}

impl ContainerInfo {
    /// The `service` label: `tidewatch.service`, else `com.docker.swarm.service.name`, else
    /// `com.docker.compose.service`, else the container's name.
    pub fn service_of(name: &str, labels: &BTreeMap<String, String>) -> String {
        [
            "tidewatch.service",
            "com.docker.swarm.service.name",
            "com.docker.compose.service",
        ]
        .iter()
        .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()))
        .cloned()
        .unwrap_or_else(|| name.to_string())
    }
}

/// What a metric source needs to know at each round.
#[derive(Clone, Debug)]
pub struct CollectContext {
    /// The round's timestamp, milliseconds since the epoch (every sample of the round gets it).
    pub now_ms: i64,
    /// The node's name (the `node` label).
    pub node: String,
    /// The containers running now.
    pub containers: std::sync::Arc<Vec<ContainerInfo>>,
}

/// A source of samples, asked once per interval.
#[async_trait]
pub trait MetricSource: Send {
    /// The delivery-contract source id (stable across restarts, unique per agent).
    fn id(&self) -> &str;

    /// One round of samples. Errors are the source's own business: it records them in its
    /// output (as `up` does for scrapes) or logs them, and returns what it could read.
    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series>;

    /// The last samples of a source that is removed while the agent runs (a scrape target
    /// whose container went away): staleness markers for the series it reported, so queries
    /// stop seeing them at once, as in Prometheus. Not called at shutdown.
    fn finish(&mut self, _now_ms: i64) -> Vec<Series> {
        Vec::new()
    }

    /// Takes back a round's series once they are buffered, for a source that reuses them in
    /// its next round instead of building the same label sets again.
    fn reuse(&mut self, _series: Vec<Series>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_label_follows_the_design_order() {
        let mut labels = BTreeMap::new();
        assert_eq!(ContainerInfo::service_of("web-1", &labels), "web-1");
        labels.insert("com.docker.compose.service".into(), "compose".into());
        assert_eq!(ContainerInfo::service_of("web-1", &labels), "compose");
        labels.insert("com.docker.swarm.service.name".into(), "swarm".into());
        assert_eq!(ContainerInfo::service_of("web-1", &labels), "swarm");
        labels.insert("tidewatch.service".into(), "tw".into());
        assert_eq!(ContainerInfo::service_of("web-1", &labels), "tw");
    }
}
