//! Container metrics from cgroup files (v1, hybrid and v2) and each container's network
//! namespace, under cAdvisor's names and semantics so cAdvisor dashboards and rules work.
//!
//! Labels: cAdvisor's `name` (container name), `id` (`/docker/<id>`) and `image`, plus
//! `container`, `service` and `node` (../shared/DESIGN.md).
//!
//! Cost: a container's cgroup directories are found once (while its pid stays the same) and
//! every file is read into one reused buffer, so a round costs about twenty small reads per
//! container and one allocation per emitted series.

mod layout;
mod stats;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tidewatch_model::{Duration, Labels, Series, names};

use self::layout::ContainerDirs;
pub use self::layout::{CgroupLayout, CgroupMount};
use self::stats::{OpenFiles, Spec, Stats};
use crate::sources::host::{Emitter, parse_net_dev, read_into};
use crate::{CollectContext, ContainerInfo, MetricSource};

/// The `cgroup` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// Whether container metrics are collected (default true).
    pub enabled: bool,
    /// How often (default 10s; 1s is supported, and is what autoscaled services use).
    pub interval: Duration,
    /// Where procfs is mounted (default `/proc`): mountinfo, `<pid>/cgroup`, `<pid>/net/dev`.
    pub procfs: PathBuf,
    /// Where sysfs is mounted (default `/sys`): block device names for the `device` label.
    pub sysfs: PathBuf,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            procfs: PathBuf::from("/proc"),
            sysfs: PathBuf::from("/sys"),
        }
    }
}

/// cAdvisor treats memory limits above 2^62 as "no limit" and reports 0 (v1 writes
/// 9223372036854771712 for unlimited).
const MAX_MEMORY_LIMIT: u64 = 1 << 62;

/// How often a container's limits and weights are read again by default (see [`Spec`]):
/// `docker update` shows within this long.
pub const SPEC_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

struct Known {
    pid: u32,
    dirs: ContainerDirs,
    labels: Labels,
    files: OpenFiles,
    /// The spec files' values and when they were read.
    spec: Option<(std::time::Instant, Spec)>,
}

/// Reads every known container's cgroup counters once per round. Source id `cgroup`.
pub struct CgroupSource {
    layout: CgroupLayout,
    procfs: PathBuf,
    sysfs: PathBuf,
    clock_ticks: u64,
    known: HashMap<String, Known>,
    /// `major:minor` → `/dev/<name>`, found once per device.
    devices: HashMap<String, String>,
    buf: String,
    /// The last round's series, given back after they were buffered.
    last: Vec<Series>,
    spec_refresh: std::time::Duration,
}

impl CgroupSource {
    /// Builds the source, finding the cgroup mounts in `<procfs>/self/mountinfo`.
    pub fn new(config: &CgroupConfig) -> std::io::Result<CgroupSource> {
        let layout = CgroupLayout::detect(&config.procfs)?;
        Ok(CgroupSource::with_layout(config, layout))
    }

    /// Builds the source on a given layout (tests point it at a fixture tree).
    pub fn with_layout(config: &CgroupConfig, layout: CgroupLayout) -> CgroupSource {
        CgroupSource {
            layout,
            procfs: config.procfs.clone(),
            sysfs: config.sysfs.clone(),
            clock_ticks: rustix::param::clock_ticks_per_second(),
            known: HashMap::new(),
            devices: HashMap::new(),
            buf: String::with_capacity(8 * 1024),
            last: Vec::new(),
            spec_refresh: SPEC_REFRESH,
        }
    }

    /// Reads limits and weights again after `every` instead of [`SPEC_REFRESH`] (tests that
    /// change them between rounds).
    pub fn with_spec_refresh(mut self, every: std::time::Duration) -> Self {
        self.spec_refresh = every;
        self
    }

    /// The layout in use.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// One round over `containers`, synchronously (every read is of a kernel pseudo-file).
    pub fn collect_now(&mut self, node: &str, now_ms: i64, containers: &[ContainerInfo]) -> Vec<Series> {
        self.known.retain(|id, _| containers.iter().any(|c| &c.id == id));
        let mut out = Emitter::reusing(&Labels::new(), now_ms, std::mem::take(&mut self.last));
        let mut buf = std::mem::take(&mut self.buf);
        for c in containers {
            if c.id.is_empty() {
                continue;
            }
            let stale = self
                .known
                .get(&c.id)
                .is_none_or(|k| k.pid != c.pid || k.dirs.dirs.iter().all(Option::is_none));
            if stale {
                let dirs = layout::resolve(&self.layout, &self.procfs, &c.id, c.pid);
                self.known.insert(
                    c.id.clone(),
                    Known {
                        pid: c.pid,
                        dirs,
                        labels: base_labels(c, node),
                        files: OpenFiles::default(),
                        spec: None,
                    },
                );
            }
            let known = self.known.get_mut(&c.id).expect("inserted above");
            let read_spec = known.spec.is_none_or(|(at, _)| at.elapsed() >= self.spec_refresh);
            let mut stats = if self.layout.is_v1() {
                stats::read_v1(&known.dirs, &mut known.files, &mut buf, self.clock_ticks, read_spec)
            } else {
                stats::read_v2(&known.dirs, &mut known.files, &mut buf, read_spec)
            };
            match known.spec {
                Some((_, spec)) if !read_spec => stats.set_spec(spec),
                _ => known.spec = Some((std::time::Instant::now(), stats.spec())),
            }
            out.set_base(&known.labels);
            emit_stats(&stats, &mut self.devices, &self.sysfs, &mut buf, &mut out);
            if c.pid > 0
                && known
                    .files
                    .read(&self.procfs.join(c.pid.to_string()).join("net/dev"), &mut buf)
            {
                emit_network(&buf, &mut out);
            }
        }
        self.buf = buf;
        out.into_series()
    }
}

#[async_trait]
impl MetricSource for CgroupSource {
    fn id(&self) -> &str {
        "cgroup"
    }

    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series> {
        self.collect_now(&ctx.node, ctx.now_ms, &ctx.containers)
    }

    fn reuse(&mut self, series: Vec<Series>) {
        self.last = series;
    }
}

fn base_labels(c: &ContainerInfo, node: &str) -> Labels {
    let service = if c.service.is_empty() {
        ContainerInfo::service_of(&c.name, &c.labels)
    } else {
        c.service.clone()
    };
    Labels::from_pairs([
        (names::CADVISOR_NAME, c.name.clone()),
        (names::CADVISOR_ID, format!("/docker/{}", c.id)),
        (names::IMAGE, c.image.clone()),
        (names::CONTAINER, c.name.clone()),
        (names::SERVICE, service),
        (names::NODE, node.to_string()),
    ])
}

/// `major:minor` → `/dev/<DEVNAME>` from sysfs' uevent, as cAdvisor names devices.
fn device_name(cache: &mut HashMap<String, String>, sysfs: &std::path::Path, dev: &str, buf: &mut String) -> String {
    if let Some(name) = cache.get(dev) {
        return name.clone();
    }
    let path = sysfs.join("dev/block").join(dev).join("uevent");
    let name = read_into(&path, buf)
        .ok()
        .and_then(|_| {
            buf.lines()
                .find_map(|l| l.strip_prefix("DEVNAME="))
                .map(|n| format!("/dev/{n}"))
        })
        .unwrap_or_else(|| dev.to_string());
    cache.insert(dev.to_string(), name.clone());
    name
}

fn emit_stats(
    s: &Stats,
    devices: &mut HashMap<String, String>,
    sysfs: &std::path::Path,
    buf: &mut String,
    out: &mut Emitter,
) {
    let secs = |ns: u64| ns as f64 / 1e9;
    if let Some(v) = s.cpu_usage_ns {
        // cAdvisor without per-CPU metrics (its default) reports one series, cpu="total".
        out.push("container_cpu_usage_seconds_total", &[("cpu", "total")], secs(v));
    }
    let mut opt = |name: &str, v: Option<u64>, divisor: f64| {
        if let Some(v) = v {
            out.push(name, &[], v as f64 / divisor);
        }
    };
    opt("container_cpu_user_seconds_total", s.cpu_user_ns, 1e9);
    opt("container_cpu_system_seconds_total", s.cpu_system_ns, 1e9);
    opt("container_cpu_cfs_periods_total", s.cfs_periods, 1.0);
    opt(
        "container_cpu_cfs_throttled_periods_total",
        s.cfs_throttled_periods,
        1.0,
    );
    opt("container_cpu_cfs_throttled_seconds_total", s.cfs_throttled_ns, 1e9);
    // cAdvisor leaves out quota and period when they are not set.
    opt("container_spec_cpu_quota", s.cpu_quota_us.filter(|v| *v != 0), 1.0);
    opt("container_spec_cpu_period", s.cpu_period_us.filter(|v| *v != 0), 1.0);
    opt("container_spec_cpu_shares", s.cpu_shares, 1.0);
    opt("container_memory_usage_bytes", s.memory_usage, 1.0);
    opt("container_memory_max_usage_bytes", s.memory_max_usage, 1.0);
    opt(
        "container_spec_memory_limit_bytes",
        s.memory_limit.map(|v| if v > MAX_MEMORY_LIMIT { 0 } else { v }),
        1.0,
    );
    if let Some(usage) = s.memory_usage {
        let working_set = usage.saturating_sub(s.memory_inactive_file.unwrap_or(0));
        opt("container_memory_working_set_bytes", Some(working_set), 1.0);
    }
    opt("container_memory_rss", s.memory_rss, 1.0);
    opt("container_memory_cache", s.memory_cache, 1.0);
    opt("container_memory_mapped_file", s.memory_mapped_file, 1.0);
    opt("container_memory_swap", s.memory_swap, 1.0);
    opt("container_memory_failcnt", s.memory_failcnt, 1.0);
    opt("container_oom_events_total", s.oom_events, 1.0);
    opt("container_threads", s.threads, 1.0);
    opt("container_threads_max", s.threads_max, 1.0);
    opt("container_processes", s.processes, 1.0);
    for (dev, [rbytes, wbytes, rios, wios]) in &s.io {
        let device = device_name(devices, sysfs, dev, buf);
        let l = [("device", device.as_str())];
        out.push("container_fs_reads_bytes_total", &l, *rbytes as f64);
        out.push("container_fs_writes_bytes_total", &l, *wbytes as f64);
        out.push("container_fs_reads_total", &l, *rios as f64);
        out.push("container_fs_writes_total", &l, *wios as f64);
    }
}

/// cAdvisor's names for the `/proc/net/dev` columns it exports: (column, metric).
const NET_COLUMNS: [(usize, &str); 8] = [
    (0, "container_network_receive_bytes_total"),
    (1, "container_network_receive_packets_total"),
    (2, "container_network_receive_errors_total"),
    (3, "container_network_receive_packets_dropped_total"),
    (8, "container_network_transmit_bytes_total"),
    (9, "container_network_transmit_packets_total"),
    (10, "container_network_transmit_errors_total"),
    (11, "container_network_transmit_packets_dropped_total"),
];

fn emit_network(text: &str, out: &mut Emitter) {
    parse_net_dev(text, |iface, counters| {
        if iface == "lo" {
            return;
        }
        for (col, name) in NET_COLUMNS {
            out.push(name, &[("interface", iface)], counters[col] as f64);
        }
    });
}
