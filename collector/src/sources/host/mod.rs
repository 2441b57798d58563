//! Host metrics from /proc and /sys under node_exporter's names and label sets, so node_exporter
//! dashboards and rules work unchanged.
//!
//! What is read, and node_exporter's collector it stands in for:
//! - `/proc/stat`: `cpu` (`node_cpu_seconds_total`, `node_cpu_guest_seconds_total`) and `stat`
//!   (`node_boot_time_seconds`, `node_context_switches_total`, `node_intr_total`,
//!   `node_forks_total`, `node_procs_running`, `node_procs_blocked`);
//! - `/proc/meminfo`: `meminfo` (`node_memory_<Field>[_bytes]`);
//! - `/proc/loadavg`: `loadavg` (`node_load1`, `node_load5`, `node_load15`);
//! - `/proc/1/mounts` + statvfs: `filesystem` (`node_filesystem_*`);
//! - `/proc/net/dev`: `netdev` (`node_network_{receive,transmit}_*_total`);
//! - `/proc/diskstats`: `diskstats` (`node_disk_*`);
//! - uname and the clock: `uname` (`node_uname_info`) and `time` (`node_time_seconds`).

mod filesystem;
mod proc;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};
use tidewatch_model::{Duration, Labels, Sample, Series, names};

use crate::{CollectContext, MetricSource};

pub(crate) use proc::{parse_net_dev, read_into};

/// node_exporter's default for `--collector.filesystem.mount-points-exclude` (1.8+).
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default for `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$";
/// node_exporter's default for `--collector.diskstats.device-exclude`.
pub const DEFAULT_DISK_DEVICE_EXCLUDE: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// node_exporter's default for `--collector.netdev.device-exclude`.
pub const DEFAULT_NETDEV_DEVICE_EXCLUDE: &str = "^lo$";

/// The `host` section: which host metrics to read and where from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Whether host metrics are collected (default true).
    pub enabled: bool,
    /// How often (default 10s).
    pub interval: Duration,
    /// The `instance` label (default: the node's name).
    pub instance: Option<String>,
    /// Where procfs is mounted (default `/proc`; `/host/proc` when the agent runs in a container).
    pub procfs: PathBuf,
    /// The host's root as the agent sees it (default `/`): mount points are reported relative to
    /// it and filesystems outside it are skipped, as node_exporter's `--path.rootfs`.
    pub rootfs: PathBuf,
    /// Mount points to leave out (node_exporter's default).
    pub filesystem_mount_points_exclude: String,
    /// Filesystem types to leave out (node_exporter's default).
    pub filesystem_fs_types_exclude: String,
    /// Block devices to leave out of `node_disk_*` (node_exporter's default).
    pub diskstats_device_exclude: String,
    /// Network devices to leave out of `node_network_*` (node_exporter's default).
    pub netdev_device_exclude: String,
    /// How long statvfs of one mount may take before the mount is skipped as stuck (default
    /// 5s, node_exporter's `--collector.filesystem.mount-timeout`).
    pub filesystem_mount_timeout: Duration,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            enabled: true,
            interval: Duration::from_secs(10),
            instance: None,
            procfs: PathBuf::from("/proc"),
            rootfs: PathBuf::from("/"),
            filesystem_mount_points_exclude: DEFAULT_MOUNT_POINTS_EXCLUDE.to_string(),
            filesystem_fs_types_exclude: DEFAULT_FS_TYPES_EXCLUDE.to_string(),
            diskstats_device_exclude: DEFAULT_DISK_DEVICE_EXCLUDE.to_string(),
            netdev_device_exclude: DEFAULT_NETDEV_DEVICE_EXCLUDE.to_string(),
            filesystem_mount_timeout: Duration::from_secs(5),
        }
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostConfigError {
    /// One of the `*_exclude` fields is not a valid regular expression.
    #[error("host.{field}: invalid regular expression: {source}")]
    Regex {
        /// The field's name.
        field: &'static str,
        /// What the regex crate said.
        source: regex::Error,
    },
}

/// Reads the host's metrics once per round. Source id `host`.
pub struct HostSource {
    instance: Option<String>,
    procfs: PathBuf,
    rootfs: PathBuf,
    mount_points_exclude: Regex,
    fs_types_exclude: Regex,
    disk_exclude: Regex,
    netdev_exclude: Regex,
    mount_timeout: std::time::Duration,
    statvfs: filesystem::Statvfs,
    clock_ticks: f64,
    /// Reused between rounds so a round does not allocate a buffer per file.
    buf: String,
}

impl HostSource {
    /// Builds the source; fails only on an invalid exclude regex.
    pub fn new(config: &HostConfig) -> Result<HostSource, HostConfigError> {
        let re = |field: &'static str, text: &str| {
            Regex::new(text).map_err(|source| HostConfigError::Regex { field, source })
        };
        Ok(HostSource {
            instance: config.instance.clone(),
            procfs: config.procfs.clone(),
            rootfs: config.rootfs.clone(),
            mount_points_exclude: re(
                "filesystem_mount_points_exclude",
                &config.filesystem_mount_points_exclude,
            )?,
            fs_types_exclude: re("filesystem_fs_types_exclude", &config.filesystem_fs_types_exclude)?,
            disk_exclude: re("diskstats_device_exclude", &config.diskstats_device_exclude)?,
            netdev_exclude: re("netdev_device_exclude", &config.netdev_device_exclude)?,
            mount_timeout: config.filesystem_mount_timeout.as_std(),
            statvfs: Default::default(),
            clock_ticks: rustix::param::clock_ticks_per_second() as f64,
            buf: String::with_capacity(16 * 1024),
        })
    }

    /// One round, synchronously (every read is of an in-memory file; statvfs runs on a thread
    /// with a timeout).
    pub fn collect_now(&mut self, node: &str, now_ms: i64) -> Vec<Series> {
        let instance = self.instance.as_deref().unwrap_or(node);
        let base = Labels::from_pairs([(names::JOB, "node"), (names::INSTANCE, instance), (names::NODE, node)]);
        let mut out = Emitter::new(&base, now_ms);
        let procfs = self.procfs.clone();
        let mut buf = std::mem::take(&mut self.buf);
        if read_into(&procfs.join("stat"), &mut buf).is_ok() {
            proc::emit_stat(&buf, self.clock_ticks, &mut out);
        }
        if read_into(&procfs.join("meminfo"), &mut buf).is_ok() {
            proc::emit_meminfo(&buf, &mut out);
        }
        if read_into(&procfs.join("loadavg"), &mut buf).is_ok() {
            proc::emit_loadavg(&buf, &mut out);
        }
        if read_into(&procfs.join("net/dev"), &mut buf).is_ok() {
            proc::emit_net_dev(&buf, &self.netdev_exclude, &mut out);
        }
        if read_into(&procfs.join("diskstats"), &mut buf).is_ok() {
            proc::emit_diskstats(&buf, &self.disk_exclude, &mut out);
        }
        if read_into(&procfs.join("1/mounts"), &mut buf).is_ok()
            || read_into(&procfs.join("self/mounts"), &mut buf).is_ok()
        {
            let filter = filesystem::Filter {
                rootfs: &self.rootfs,
                mount_points_exclude: &self.mount_points_exclude,
                fs_types_exclude: &self.fs_types_exclude,
                mount_timeout: self.mount_timeout,
                statvfs: &self.statvfs,
            };
            filesystem::emit(&buf, &filter, &mut out);
        }
        self.buf = buf;
        proc::emit_uname(&mut out);
        out.push("node_time_seconds", &[], now_ms as f64 / 1000.0);
        // What Prometheus records for each node_exporter scrape, so dashboards and rules written
        // for `up{job="node"}` work on the agent's host metrics.
        out.push("up", &[], 1.0);
        out.into_series()
    }
}

#[async_trait]
impl MetricSource for HostSource {
    fn id(&self) -> &str {
        "host"
    }

    async fn collect(&mut self, ctx: &CollectContext) -> Vec<Series> {
        self.collect_now(&ctx.node, ctx.now_ms)
    }
}

/// Builds one round's series: the base labels plus a name and a few more labels each.
pub(crate) struct Emitter<'a> {
    base: &'a Labels,
    now_ms: i64,
    series: Vec<Series>,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(base: &'a Labels, now_ms: i64) -> Self {
        Emitter {
            base,
            now_ms,
            series: Vec::with_capacity(256),
        }
    }

    pub(crate) fn push(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        let mut labels = self.base.clone();
        labels.set(names::METRIC_NAME, name);
        for (n, v) in extra {
            labels.set(*n, *v);
        }
        self.series.push(Series {
            labels,
            samples: vec![Sample {
                timestamp_ms: self.now_ms,
                value,
            }],
        });
    }

    pub(crate) fn into_series(self) -> Vec<Series> {
        self.series
    }
}

/// `path` relative to `root`, as node_exporter's `--path.rootfs` reports mount points.
fn strip_rootfs<'p>(root: &Path, path: &'p str) -> Option<std::borrow::Cow<'p, str>> {
    if root == Path::new("/") {
        return Some(path.into());
    }
    let rest = Path::new(path).strip_prefix(root).ok()?;
    Some(format!("/{}", rest.display()).into())
}
