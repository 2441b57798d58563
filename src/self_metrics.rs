//! The process' own metrics at `/metrics`, in Prometheus' text format.
//!
//! Parts register their metrics in one [`prometheus_client`] registry; the process collector
//! below adds `process_*` as Prometheus' Go client names them, read from `/proc/self` at scrape
//! time so they cost nothing between scrapes.

use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The content type of Prometheus' text format 0.0.4, which every scraper accepts.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Builds the registry every part of this process registers into.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register(
        "tidewatch_build",
        "Tidewatch's version, git revision and compiler",
        Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", env!("TIDEWATCH_REVISION")),
            ("rustc", env!("TIDEWATCH_RUSTC")),
        ]),
    );
    registry.register_collector(Box::new(ProcessCollector {
        start: SystemTime::now(),
    }));
    registry
}

/// Renders registries in the text format. The OpenMetrics encoder's `# EOF` and `# UNIT`
/// lines are left out: the rest is valid 0.0.4 text, which promtool and older scrapers expect.
/// Parts that open late (the store, after replaying its WAL) bring their own registry, so
/// `/metrics` answers from the first second.
pub fn render(registries: &[std::sync::Arc<Registry>]) -> String {
    let mut out = String::new();
    for registry in registries {
        if prometheus_client::encoding::text::encode_registry(&mut out, registry).is_err() {
            return "# error encoding metrics\n".to_string();
        }
    }
    out.lines()
        .filter(|l| !l.starts_with("# UNIT ") && *l != "# EOF")
        .flat_map(|l| [l, "\n"])
        .collect()
}

/// `tidewatch_config_*`: the outcome of the last configuration load, as Prometheus'
/// `prometheus_config_last_reload_*` metrics.
#[derive(Clone, Default)]
pub struct ReloadMetrics {
    /// 1 when the last reload succeeded.
    pub last_successful: Gauge,
    /// Unix time of the last successful load.
    pub last_success_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Registers the metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ReloadMetrics::default();
        registry.register(
            "tidewatch_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            m.last_successful.clone(),
        );
        registry.register(
            "tidewatch_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload",
            m.last_success_timestamp.clone(),
        );
        m
    }

    /// Records an attempt.
    pub fn record(&self, ok: bool) {
        self.last_successful.set(i64::from(ok));
        if ok {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.last_success_timestamp.set(now as i64);
        }
    }
}

#[derive(Debug)]
struct ProcessCollector {
    start: SystemTime,
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    threads: f64,
    open_fds: f64,
    max_fds: f64,
}

/// Linux reports CPU time in clock ticks; USER_HZ is 100 on every architecture Linux runs
/// containers on, and reading it would need libc's sysconf.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted from
    // the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime 15, num_threads 20, vsize 23.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<f64>().ok());
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / CLOCK_TICKS_PER_SECOND,
        resident_bytes: rss_kib.unwrap_or(0.0) * 1024.0,
        virtual_bytes: field(23)?,
        threads: field(20)?,
        open_fds: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as f64)
            .unwrap_or(0.0),
        max_fds: max_fds.unwrap_or(0.0),
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let start = self
            .start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
        };
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            start,
        )?;
        let Some(s) = read_process_stats() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            s.resident_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            s.virtual_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_threads",
            "Number of OS threads in the process",
            s.threads,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            s.open_fds,
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Maximum number of open file descriptors",
            s.max_fds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read_from_proc() {
        let s = read_process_stats().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 1_000_000.0, "{s:?}");
        assert!(
            s.threads >= 1.0 && s.open_fds >= 3.0 && s.max_fds >= s.open_fds,
            "{s:?}"
        );
    }

    #[test]
    fn rendering_is_prometheus_text_with_process_and_build_metrics() {
        let mut registry = registry();
        let reload = ReloadMetrics::register(&mut registry);
        reload.record(true);
        let text = render(&[std::sync::Arc::new(registry)]);
        assert!(!text.contains("# EOF"), "{text}");
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_start_time_seconds ",
            "tidewatch_config_last_reload_successful 1",
            "tidewatch_build_info{version=\"",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
