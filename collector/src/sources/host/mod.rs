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
    /// The last round's series, given back after they were buffered.
    last: Vec<Series>,
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
            last: Vec::new(),
        })
    }

    /// One round, synchronously (every read is of an in-memory file; statvfs runs on a thread
    /// with a timeout).
    pub fn collect_now(&mut self, node: &str, now_ms: i64) -> Vec<Series> {
        let instance = self.instance.as_deref().unwrap_or(node);
        let base = Labels::from_pairs([(names::JOB, "node"), (names::INSTANCE, instance), (names::NODE, node)]);
        let mut out = Emitter::reusing(&base, now_ms, std::mem::take(&mut self.last));
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

    fn reuse(&mut self, series: Vec<Series>) {
        self.last = series;
    }
}

/// Builds a round's series: the base labels plus a name and a few more labels each. Given the
/// last round's series, in the order they were emitted, it takes each one whose labels are the
/// same as the next series' and only overwrites its sample: a round of fifty containers and the
/// host is some 2,500 series, and building their label sets anew each second was the largest
/// part of the agent's own CPU after reading the files.
pub(crate) struct Emitter {
    base: Labels,
    now_ms: i64,
    series: Vec<Series>,
    last: std::iter::Peekable<std::vec::IntoIter<Series>>,
}

impl Emitter {
    #[cfg(test)]
    pub(crate) fn new(base: &Labels, now_ms: i64) -> Self {
        Self::reusing(base, now_ms, Vec::new())
    }

    /// An emitter that reuses `last` (the series of the round before) where it can.
    pub(crate) fn reusing(base: &Labels, now_ms: i64, last: Vec<Series>) -> Self {
        Emitter {
            base: base.clone(),
            now_ms,
            series: Vec::with_capacity(last.len().max(256)),
            last: last.into_iter().peekable(),
        }
    }

    /// The labels of the series pushed from now on (the next container's).
    pub(crate) fn set_base(&mut self, base: &Labels) {
        self.base.clone_from(base);
    }

    pub(crate) fn push(&mut self, name: &str, extra: &[(&str, &str)], value: f64) {
        let sample = Sample {
            timestamp_ms: self.now_ms,
            value,
        };
        let base = &self.base;
        // After a series that appeared, the next ones still line up; after one that went
        // away, the rest of this round is built anew and the next round lines up again.
        if let Some(mut series) = self.last.next_if(|s| same_labels(&s.labels, base, name, extra)) {
            series.samples.clear();
            series.samples.push(sample);
            self.series.push(series);
            return;
        }
        let mut labels = self.base.clone();
        labels.set(names::METRIC_NAME, name);
        for (n, v) in extra {
            labels.set(*n, *v);
        }
        self.series.push(Series {
            labels,
            samples: vec![sample],
        });
    }

    pub(crate) fn into_series(self) -> Vec<Series> {
        self.series
    }
}

/// Whether `labels` is `base` with `__name__` and `extra` set, in one pass over the sorted
/// labels (lookups by name cost as much as the allocations this saves). Only the plain case
/// matches (extra names distinct from each other and from the base's, no empty value); a
/// series of any other shape is built each round.
fn same_labels(labels: &Labels, base: &Labels, name: &str, extra: &[(&str, &str)]) -> bool {
    if labels.len() != base.len() + 1 + extra.len() {
        return false;
    }
    let mut base = base.iter();
    labels.iter().all(|l| {
        if l.name == names::METRIC_NAME {
            return l.value == name;
        }
        if let Some((_, v)) = extra.iter().find(|(n, _)| *n == l.name) {
            return l.value == *v;
        }
        base.next().is_some_and(|b| b.name == l.name && b.value == l.value)
    })
}

/// `path` relative to `root`, as node_exporter's `--path.rootfs` reports mount points.
fn strip_rootfs<'p>(root: &Path, path: &'p str) -> Option<std::borrow::Cow<'p, str>> {
    if root == Path::new("/") {
        return Some(path.into());
    }
    let rest = Path::new(path).strip_prefix(root).ok()?;
    Some(format!("/{}", rest.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Round<'a> = Vec<(&'a str, Vec<(&'a str, &'a str)>, f64)>;

    fn emit(base: &Labels, now_ms: i64, last: Vec<Series>, round: &Round<'_>) -> Vec<Series> {
        let mut out = Emitter::reusing(base, now_ms, last);
        for (name, extra, value) in round {
            out.push(name, extra, *value);
        }
        out.into_series()
    }

    #[test]
    fn reused_series_are_the_series_a_fresh_round_builds() {
        let base = Labels::from_pairs([("job", "node"), ("node", "n1")]);
        let first: Round<'_> = vec![
            ("a", vec![], 1.0),
            ("b", vec![("device", "eth0")], 2.0),
            ("b", vec![("device", "eth1")], 3.0),
            ("c", vec![("mode", "")], 4.0),
            ("d", vec![("job", "other")], 5.0),
            ("f", vec![("x", "1"), ("x", "2")], 6.0),
        ];
        // eth2 appears, eth0 goes away, values change; then the same round once more.
        let second: Round<'_> = vec![
            ("a", vec![], 10.0),
            ("b", vec![("device", "eth1")], 30.0),
            ("b", vec![("device", "eth2")], 40.0),
            ("c", vec![("mode", "")], 50.0),
            ("d", vec![("job", "other")], 60.0),
            ("f", vec![("x", "1"), ("x", "2")], 65.0),
            ("e", vec![], 70.0),
        ];
        let last = emit(&base, 1, Vec::new(), &first);
        let reused = emit(&base, 2, last, &second);
        assert_eq!(reused, emit(&base, 2, Vec::new(), &second));
        let again = emit(&base, 3, reused, &second);
        assert_eq!(again, emit(&base, 3, Vec::new(), &second));
        // Another base (the next container) never takes a series of the one before.
        let other = Labels::from_pairs([("job", "node"), ("node", "n2")]);
        assert_eq!(emit(&other, 4, again, &second), emit(&other, 4, Vec::new(), &second));
    }
}
