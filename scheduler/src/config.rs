//! The scheduler's section of the main configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tidewatch_model::Duration;

use crate::spec::ServiceSpec;

/// `scheduler:` in the main config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The name of this scheduler, put on everything it creates (`tidewatch.scheduler`): it only
    /// adopts and removes containers of its own instance, so two schedulers (or a test) can share
    /// an engine.
    pub instance: String,
    /// The Docker hosts replicas run on (default: the local engine). Swarm services go to the
    /// first one, which must be a swarm manager.
    pub hosts: Vec<HostConfig>,
    /// A folder of service specs (`*.yaml`, one service or a list per file).
    pub services_dir: Option<PathBuf>,
    /// Services given inline.
    pub services: Vec<ServiceSpec>,
    /// How often `services_dir` is read again; a change is applied (a live reload), an invalid
    /// file is reported as an event and the specs in force stay.
    pub reload_interval: Duration,
    /// Time between two passes of the reconciler (it also runs at once after a scale or a reload).
    pub reconcile_interval: Duration,
    /// The range endpoint ports are taken from when a spec names none (inclusive).
    pub endpoint_ports: PortRange,
    /// The delay before replacing a replica that crashed a second time in a row; it doubles with
    /// each further crash up to `backoff_max`. The first crash is replaced at once.
    pub backoff_initial: Duration,
    /// The longest back-off.
    pub backoff_max: Duration,
    /// Events kept in memory for `/api/v1/events`.
    pub events_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            instance: "default".into(),
            hosts: vec![HostConfig::default()],
            services_dir: None,
            services: Vec::new(),
            reload_interval: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(1),
            endpoint_ports: PortRange {
                first: 20000,
                last: 20999,
            },
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            events_capacity: 1000,
        }
    }
}

/// One Docker engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The name used by `placement.hosts` and as `node` of its replicas.
    pub name: String,
    /// `unix:///var/run/docker.sock` or `tcp://10.0.0.2:2375`.
    pub address: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            name: "local".into(),
            address: "unix:///var/run/docker.sock".into(),
        }
    }
}

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}
