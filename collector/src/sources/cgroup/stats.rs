//! Reading one container's counters from its cgroup files, v1 or v2, into one shape.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::layout::ContainerDirs;

/// A container's counters in cAdvisor's units (ns for CPU time, bytes for memory).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Stats {
    pub cpu_usage_ns: Option<u64>,
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_ns: Option<u64>,
    /// 0 when unlimited (cAdvisor reads `-1` / `max` as no quota).
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub memory_usage: Option<u64>,
    pub memory_max_usage: Option<u64>,
    pub memory_limit: Option<u64>,
    pub memory_rss: Option<u64>,
    pub memory_cache: Option<u64>,
    pub memory_mapped_file: Option<u64>,
    pub memory_swap: Option<u64>,
    pub memory_inactive_file: Option<u64>,
    pub memory_failcnt: Option<u64>,
    pub oom_events: Option<u64>,
    /// Per device `major:minor`: (read bytes, write bytes, reads, writes).
    pub io: Vec<(String, [u64; 4])>,
    pub threads: Option<u64>,
    /// 0 when unlimited.
    pub threads_max: Option<u64>,
    pub processes: Option<u64>,
}

/// The limits and weights a container was given (`--memory`, `--cpus`, `--cpu-shares`,
/// `--pids-limit`). They change only with `docker update`, so they are read again every
/// `SPEC_REFRESH` rather than every round: five of a round's seventeen files.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Spec {
    cpu_quota_us: Option<u64>,
    cpu_period_us: Option<u64>,
    cpu_shares: Option<u64>,
    memory_limit: Option<u64>,
    threads_max: Option<u64>,
}

impl Stats {
    pub(super) fn spec(&self) -> Spec {
        Spec {
            cpu_quota_us: self.cpu_quota_us,
            cpu_period_us: self.cpu_period_us,
            cpu_shares: self.cpu_shares,
            memory_limit: self.memory_limit,
            threads_max: self.threads_max,
        }
    }

    pub(super) fn set_spec(&mut self, spec: Spec) {
        self.cpu_quota_us = spec.cpu_quota_us;
        self.cpu_period_us = spec.cpu_period_us;
        self.cpu_shares = spec.cpu_shares;
        self.memory_limit = spec.memory_limit;
        self.threads_max = spec.threads_max;
    }
}

/// The value of `key` in a `key value` per line file (cpu.stat, memory.stat, memory.events…).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key { v.trim().parse().ok() } else { None }
    })
}

/// A single-number file; `max` and negative numbers (v1's `-1`) read as `Some(0)`, "unlimited".
fn number(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" || t.starts_with('-') {
        return Some(0);
    }
    t.parse().ok()
}

/// A container's cgroup files, kept open between rounds. Opening and closing took more than
/// half of a round (kernfs path lookups); a kept handle is read again from offset 0, which
/// makes the kernel produce fresh contents. Dropped with the container.
#[derive(Default)]
pub(super) struct OpenFiles {
    files: HashMap<PathBuf, File>,
    /// The bytes of the last read, reused.
    bytes: Vec<u8>,
}

impl OpenFiles {
    /// The contents of `path` into `buf`; false when it cannot be read (not there in this
    /// kernel or version, or the cgroup is gone) or is not UTF-8.
    pub(super) fn read(&mut self, path: &Path, buf: &mut String) -> bool {
        buf.clear();
        let kept = self
            .files
            .get(path)
            .is_some_and(|f| read_at_start(f, &mut self.bytes).is_ok());
        if !kept {
            self.files.remove(path);
            let Ok(file) = File::open(path) else { return false };
            if read_at_start(&file, &mut self.bytes).is_err() {
                return false;
            }
            self.files.insert(path.to_path_buf(), file);
        }
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => {
                buf.push_str(text);
                true
            }
            Err(_) => false,
        }
    }
}

/// Reads a whole pseudo-file from offset 0 into `bytes` (no size hint: these files report
/// size 0 or 4096).
fn read_at_start(file: &File, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    bytes.clear();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read_at(&mut chunk, bytes.len() as u64) {
            Ok(0) => return Ok(()),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads files relative to one directory, reusing one buffer.
struct Reader<'a> {
    buf: &'a mut String,
    files: &'a mut OpenFiles,
    path: PathBuf,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a mut String, files: &'a mut OpenFiles) -> Self {
        Reader {
            buf,
            files,
            path: PathBuf::with_capacity(160),
        }
    }

    /// The file's text, or `None` when it cannot be read (not there in this kernel or version).
    fn read(&mut self, dir: &Path, file: &str) -> Option<&str> {
        self.path.clear();
        self.path.push(dir);
        self.path.push(file);
        self.files.read(&self.path, self.buf).then_some(self.buf.as_str())
    }
}

/// cAdvisor's conversion of a v2 `cpu.weight` back to v1 shares (the inverse of runc's).
fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        0
    } else {
        2 + ((weight - 1) * 262_142) / 9_999
    }
}

/// One round of a v1 container; the [`Spec`] files only with `read_spec`.
pub(super) fn read_v1(
    dirs: &ContainerDirs,
    files: &mut OpenFiles,
    buf: &mut String,
    clock_ticks: u64,
    read_spec: bool,
) -> Stats {
    let mut s = Stats::default();
    let mut r = Reader::new(buf, files);
    let [cpu, cpuacct, memory, blkio, pids] = &dirs.dirs;
    let tick_ns = 1_000_000_000 / clock_ticks.max(1);
    if let Some(d) = cpuacct {
        s.cpu_usage_ns = r.read(d, "cpuacct.usage").and_then(number);
        if let Some(t) = r.read(d, "cpuacct.stat") {
            s.cpu_user_ns = field(t, "user").map(|v| v * tick_ns);
            s.cpu_system_ns = field(t, "system").map(|v| v * tick_ns);
        }
    }
    if let Some(d) = cpu {
        if let Some(t) = r.read(d, "cpu.stat") {
            s.cfs_periods = field(t, "nr_periods");
            s.cfs_throttled_periods = field(t, "nr_throttled");
            s.cfs_throttled_ns = field(t, "throttled_time");
        }
        if read_spec {
            s.cpu_quota_us = r.read(d, "cpu.cfs_quota_us").and_then(number);
            s.cpu_period_us = r.read(d, "cpu.cfs_period_us").and_then(number);
            s.cpu_shares = r.read(d, "cpu.shares").and_then(number);
        }
    }
    if let Some(d) = memory {
        s.memory_usage = r.read(d, "memory.usage_in_bytes").and_then(number);
        s.memory_max_usage = r.read(d, "memory.max_usage_in_bytes").and_then(number);
        if read_spec {
            s.memory_limit = r.read(d, "memory.limit_in_bytes").and_then(number);
        }
        s.memory_failcnt = r.read(d, "memory.failcnt").and_then(number);
        if let Some(t) = r.read(d, "memory.stat") {
            // The total_* fields include descendant cgroups, which is what cAdvisor reports.
            let get = |total: &str, own: &str| field(t, total).or_else(|| field(t, own));
            s.memory_rss = get("total_rss", "rss");
            s.memory_cache = get("total_cache", "cache");
            s.memory_mapped_file = get("total_mapped_file", "mapped_file");
            s.memory_swap = get("total_swap", "swap");
            s.memory_inactive_file = get("total_inactive_file", "inactive_file");
        }
        s.oom_events = r.read(d, "memory.oom_control").and_then(|t| field(t, "oom_kill"));
    }
    if let Some(d) = blkio {
        let mut io: HashMap<String, [u64; 4]> = HashMap::new();
        for (file, offset) in [
            ("blkio.throttle.io_service_bytes", 0),
            ("blkio.throttle.io_serviced", 2),
        ] {
            let Some(t) = r.read(d, file) else { continue };
            for line in t.lines() {
                let mut parts = line.split_ascii_whitespace();
                let (Some(dev), Some(op), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(v) = v.parse::<u64>() else { continue };
                let slot = match op {
                    "Read" => offset,
                    "Write" => offset + 1,
                    _ => continue,
                };
                io.entry(dev.to_string()).or_default()[slot] = v;
            }
        }
        s.io = io.into_iter().collect();
        s.io.sort();
    }
    if let Some(d) = pids {
        s.threads = r.read(d, "pids.current").and_then(number);
        if read_spec {
            s.threads_max = r.read(d, "pids.max").and_then(number);
        }
        s.processes = r.read(d, "cgroup.procs").map(|t| t.lines().count() as u64);
    }
    s
}

/// One round of a v2 container; the [`Spec`] files only with `read_spec`.
pub(super) fn read_v2(dirs: &ContainerDirs, files: &mut OpenFiles, buf: &mut String, read_spec: bool) -> Stats {
    let mut s = Stats::default();
    let Some(d) = &dirs.dirs[0] else { return s };
    let mut r = Reader::new(buf, files);
    if let Some(t) = r.read(d, "cpu.stat") {
        s.cpu_usage_ns = field(t, "usage_usec").map(|v| v * 1000);
        s.cpu_user_ns = field(t, "user_usec").map(|v| v * 1000);
        s.cpu_system_ns = field(t, "system_usec").map(|v| v * 1000);
        s.cfs_periods = field(t, "nr_periods");
        s.cfs_throttled_periods = field(t, "nr_throttled");
        s.cfs_throttled_ns = field(t, "throttled_usec").map(|v| v * 1000);
    }
    if read_spec {
        if let Some(t) = r.read(d, "cpu.max") {
            let mut parts = t.split_ascii_whitespace();
            s.cpu_quota_us = parts.next().and_then(number);
            s.cpu_period_us = parts.next().and_then(number);
        }
        s.cpu_shares = r.read(d, "cpu.weight").and_then(number).map(weight_to_shares);
        s.memory_limit = r.read(d, "memory.max").and_then(number);
        s.threads_max = r.read(d, "pids.max").and_then(number);
    }
    s.memory_usage = r.read(d, "memory.current").and_then(number);
    s.memory_max_usage = r.read(d, "memory.peak").and_then(number);
    s.memory_swap = r.read(d, "memory.swap.current").and_then(number);
    if let Some(t) = r.read(d, "memory.stat") {
        s.memory_rss = field(t, "anon");
        s.memory_cache = field(t, "file");
        s.memory_mapped_file = field(t, "file_mapped");
        s.memory_inactive_file = field(t, "inactive_file");
    }
    if let Some(t) = r.read(d, "memory.events") {
        // v2 has no failcnt; `max` counts the times usage hit the limit, which is what failcnt meant.
        s.memory_failcnt = field(t, "max");
        s.oom_events = field(t, "oom_kill");
    }
    if let Some(t) = r.read(d, "io.stat") {
        for line in t.lines() {
            let mut parts = line.split_ascii_whitespace();
            let Some(dev) = parts.next() else { continue };
            let mut v = [0u64; 4];
            for kv in parts {
                let Some((k, n)) = kv.split_once('=') else { continue };
                let slot = match k {
                    "rbytes" => 0,
                    "wbytes" => 1,
                    "rios" => 2,
                    "wios" => 3,
                    _ => continue,
                };
                v[slot] = n.parse().unwrap_or(0);
            }
            s.io.push((dev.to_string(), v));
        }
        s.io.sort();
    }
    s.threads = r.read(d, "pids.current").and_then(number);
    s.processes = r.read(d, "cgroup.procs").map(|t| t.lines().count() as u64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_values_read_as_zero() {
        assert_eq!(number("max\n"), Some(0));
        assert_eq!(number("-1\n"), Some(0));
        assert_eq!(number("50000\n"), Some(50000));
        assert_eq!(number("garbage"), None);
    }

    #[test]
    fn weight_converts_as_cadvisor() {
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10000), 262_144);
    }

    #[test]
    fn stat_fields_match_whole_keys() {
        let t = "total_rss 5\nrss 3\ninactive_file 7\n";
        assert_eq!(field(t, "rss"), Some(3));
        assert_eq!(field(t, "total_rss"), Some(5));
        assert_eq!(field(t, "file"), None);
    }
}
