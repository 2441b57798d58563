//! Host metrics against the real peer: Debian's prometheus-node-exporter on this machine, with
//! the same filters. For every family the host source emits, node_exporter must have the same
//! name and label names, and the same values (equal for static ones, close for moving ones).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidewatch_collector::sources::host::{
    DEFAULT_DISK_DEVICE_EXCLUDE, DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE, HostConfig, HostSource,
};
use tidewatch_collector::sources::scrape::{Format, parse};
use tidewatch_model::Labels;

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

/// Labels without the ones Tidewatch adds (`job`, `instance`, `node`), which a bare
/// node_exporter scrape does not carry.
fn key(labels: &Labels) -> String {
    let mut l = labels.clone();
    for n in ["job", "instance", "node"] {
        l.remove(n);
    }
    l.to_string()
}

fn label_names(labels: &Labels) -> BTreeSet<String> {
    labels
        .iter()
        .map(|l| l.name.clone())
        .filter(|n| !["job", "instance", "node", "__name__"].contains(&n.as_str()))
        .collect()
}

/// Families whose values must be equal (they do not move while the machine runs).
const STATIC: [&str; 7] = [
    "node_memory_MemTotal_bytes",
    "node_memory_SwapTotal_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_files",
    "node_filesystem_readonly",
    "node_boot_time_seconds",
    "node_uname_info",
];

#[test]
fn host_metrics_match_node_exporter() {
    if !std::path::Path::new(NODE_EXPORTER).exists() {
        eprintln!(
            "skipping host_metrics_match_node_exporter: {NODE_EXPORTER} is absent (apt-get install prometheus-node-exporter)"
        );
        return;
    }
    let port = tidewatch_testkit::free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--collector.filesystem.mount-points-exclude={DEFAULT_MOUNT_POINTS_EXCLUDE}"
        ))
        .arg(format!(
            "--collector.filesystem.fs-types-exclude={DEFAULT_FS_TYPES_EXCLUDE}"
        ))
        .arg(format!(
            "--collector.diskstats.device-exclude={DEFAULT_DISK_DEVICE_EXCLUDE}"
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let _guard = Killed(child);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = None;
    while body.is_none() && Instant::now() < deadline {
        body = get(&url);
        if body.is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let body = body.expect("node_exporter answers");
    let mut source = HostSource::new(&HostConfig::default()).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ours = source.collect_now("test-node", now_ms);
    let theirs = parse(&body, Format::Text).expect("node_exporter's output parses");

    let mut their_values: BTreeMap<String, f64> = BTreeMap::new();
    let mut their_names: BTreeMap<String, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
    for s in &theirs {
        let name = s.labels.metric_name().unwrap().to_string();
        their_names.entry(name).or_default().insert(label_names(&s.labels));
        their_values.insert(key(&s.labels), s.value);
    }

    let mut families = BTreeSet::new();
    let mut compared = 0;
    for s in &ours {
        assert_eq!(s.labels.get("job"), Some("node"));
        assert_eq!(s.labels.get("instance"), Some("test-node"));
        assert_eq!(s.labels.get("node"), Some("test-node"));
        let name = s.labels.metric_name().unwrap();
        families.insert(name.to_string());
        if name == "up" {
            // Prometheus adds `up` when it scrapes; node_exporter's own page has none.
            assert_eq!(s.samples[0].value, 1.0);
            continue;
        }
        let shapes = their_names
            .get(name)
            .unwrap_or_else(|| panic!("node_exporter has no family {name}"));
        assert!(
            shapes.contains(&label_names(&s.labels)),
            "{name}: label names {:?} vs node_exporter's {shapes:?}",
            label_names(&s.labels)
        );
        let ours_v = s.samples[0].value;
        let Some(&theirs_v) = their_values.get(&key(&s.labels)) else {
            // Interfaces of containers that other tests start and stop come and go between the two reads.
            let device = s.labels.get("device").unwrap_or_default();
            assert!(
                device.starts_with("veth"),
                "node_exporter has no series {}",
                key(&s.labels)
            );
            continue;
        };
        compared += 1;
        if STATIC.contains(&name) {
            assert_eq!(ours_v, theirs_v, "{} differs", key(&s.labels));
        } else if name == "node_time_seconds" {
            assert!((ours_v - theirs_v).abs() < 60.0, "clock: {ours_v} vs {theirs_v}");
        } else if name.ends_with("_total") && !name.starts_with("node_network") {
            // Counters move between the two reads: within 5 %, or a small absolute slack for
            // counters near zero.
            let slack = (ours_v.abs().max(theirs_v.abs()) * 0.05).max(100.0);
            assert!(
                (ours_v - theirs_v).abs() <= slack,
                "{}: {ours_v} vs {theirs_v}",
                key(&s.labels)
            );
            assert!(
                ours_v >= theirs_v - 1e-9 || name.contains("time"),
                "{} went back: {ours_v} < {theirs_v}",
                key(&s.labels)
            );
        }
    }
    // The filters are the same, so the filesystems and disks are the same set.
    let set = |prefix: &str, from_ours: bool| -> BTreeSet<String> {
        if from_ours {
            ours.iter()
                .filter(|s| s.labels.metric_name() == Some(prefix))
                .map(|s| key(&s.labels))
                .collect()
        } else {
            theirs
                .iter()
                .filter(|s| s.labels.metric_name() == Some(prefix))
                .map(|s| key(&s.labels))
                .collect()
        }
    };
    assert_eq!(
        set("node_filesystem_size_bytes", true),
        set("node_filesystem_size_bytes", false)
    );
    assert_eq!(
        set("node_disk_read_bytes_total", true),
        set("node_disk_read_bytes_total", false)
    );
    for f in [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_filesystem_avail_bytes",
        "node_network_receive_bytes_total",
        "node_disk_read_bytes_total",
        "node_boot_time_seconds",
        "node_context_switches_total",
        "node_intr_total",
        "node_forks_total",
        "node_procs_running",
        "node_procs_blocked",
        "node_uname_info",
        "node_time_seconds",
        "up",
    ] {
        assert!(families.contains(f), "the host source emits no {f}");
    }
    assert!(compared > 100, "only {compared} series compared");
}
