//! Container metrics: cgroup v2 against fixture trees (this machine is a v1 hybrid whose v2
//! tree has no controllers), and v1 live against real containers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tidewatch_collector::sources::cgroup::{CgroupConfig, CgroupLayout, CgroupSource};
use tidewatch_collector::{ContainerInfo, MetricSource};
use tidewatch_model::Series;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn value(series: &[Series], name: &str, container: &str, extra: &[(&str, &str)]) -> Option<f64> {
    series
        .iter()
        .find(|s| {
            s.labels.metric_name() == Some(name)
                && s.labels.get("name") == Some(container)
                && extra.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| s.samples[0].value)
}

fn info(id: &str, name: &str) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        name: name.into(),
        image: "example/app:1".into(),
        service: "app".into(),
        ..ContainerInfo::default()
    }
}

/// THE ONE ALLOWED FAKE: a copied cgroup v2 tree. No v2 host with controllers can run here,
/// so `tests/fixtures/cgroup/v2` holds real v2 file formats (cpu.stat, cpu.max, memory.current,
/// memory.max, memory.stat, memory.events, io.stat, pids.*) for one container in Docker's
/// cgroupfs layout (`docker/<id>`) and one in its systemd layout
/// (`system.slice/docker-<id>.scope`). The pids are 0, so paths come from the layout fallbacks.
#[test]
fn v2_fixture_trees_give_cadvisor_metrics_in_both_layouts() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup/v2");
    let mut source = CgroupSource::with_layout(&CgroupConfig::default(), CgroupLayout::unified(&root));
    let containers = vec![info(A, "cgroupfs-app"), info(B, "systemd-app")];
    let out = source.collect_now("node-1", 1_000, &containers);

    let a = |name: &str| value(&out, name, "cgroupfs-app", &[]);
    assert_eq!(
        value(
            &out,
            "container_cpu_usage_seconds_total",
            "cgroupfs-app",
            &[("cpu", "total")]
        ),
        Some(2.5)
    );
    assert_eq!(a("container_cpu_user_seconds_total"), Some(2.0));
    assert_eq!(a("container_cpu_system_seconds_total"), Some(0.5));
    assert_eq!(a("container_cpu_cfs_periods_total"), Some(120.0));
    assert_eq!(a("container_cpu_cfs_throttled_periods_total"), Some(7.0));
    assert_eq!(a("container_cpu_cfs_throttled_seconds_total"), Some(0.35));
    assert_eq!(a("container_spec_cpu_quota"), Some(50_000.0));
    assert_eq!(a("container_spec_cpu_period"), Some(100_000.0));
    assert_eq!(a("container_spec_cpu_shares"), Some(2597.0));
    assert_eq!(a("container_memory_usage_bytes"), Some(104_857_600.0));
    // working set = usage − inactive_file = 100 MiB − 20 MiB
    assert_eq!(a("container_memory_working_set_bytes"), Some(83_886_080.0));
    assert_eq!(a("container_memory_rss"), Some(73_400_320.0));
    assert_eq!(a("container_memory_cache"), Some(29_360_128.0));
    assert_eq!(a("container_memory_mapped_file"), Some(4_194_304.0));
    assert_eq!(a("container_memory_max_usage_bytes"), Some(110_100_480.0));
    assert_eq!(a("container_spec_memory_limit_bytes"), Some(268_435_456.0));
    assert_eq!(a("container_memory_failcnt"), Some(4.0));
    assert_eq!(a("container_oom_events_total"), Some(1.0));
    assert_eq!(a("container_threads"), Some(3.0));
    assert_eq!(a("container_threads_max"), Some(0.0));
    assert_eq!(a("container_processes"), Some(2.0));
    // The device label is the /dev name when sysfs knows the device, else major:minor.
    let reads = out
        .iter()
        .find(|s| {
            s.labels.metric_name() == Some("container_fs_reads_bytes_total")
                && s.labels.get("name") == Some("cgroupfs-app")
        })
        .expect("io.stat gives container_fs_reads_bytes_total");
    assert_eq!(reads.samples[0].value, 1_048_576.0);
    assert!(reads.labels.get("device").is_some());
    assert_eq!(
        out.iter()
            .find(|s| s.labels.metric_name() == Some("container_fs_writes_bytes_total")
                && s.labels.get("name") == Some("cgroupfs-app"))
            .map(|s| s.samples[0].value),
        Some(2_097_152.0)
    );

    let b = |name: &str| value(&out, name, "systemd-app", &[]);
    assert_eq!(
        value(
            &out,
            "container_cpu_usage_seconds_total",
            "systemd-app",
            &[("cpu", "total")]
        ),
        Some(0.001)
    );
    // Unlimited: no quota series, limit 0 as cAdvisor reports it.
    assert_eq!(b("container_spec_cpu_quota"), None);
    assert_eq!(b("container_spec_memory_limit_bytes"), Some(0.0));
    // inactive_file above usage: floored at 0.
    assert_eq!(b("container_memory_working_set_bytes"), Some(0.0));
    assert_eq!(b("container_threads_max"), Some(100.0));

    // Labels per ../shared/DESIGN.md.
    let s = out
        .iter()
        .find(|s| s.labels.get("name") == Some("systemd-app"))
        .unwrap();
    assert_eq!(s.labels.get("id"), Some(format!("/docker/{B}").as_str()));
    assert_eq!(s.labels.get("image"), Some("example/app:1"));
    assert_eq!(s.labels.get("container"), Some("systemd-app"));
    assert_eq!(s.labels.get("service"), Some("app"));
    assert_eq!(s.labels.get("node"), Some("node-1"));
    assert!(
        out.iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp_ms == 1_000)
    );

    // The next round takes the limits from what the first read (they are read again every
    // 10 s, not every round) and still reports them.
    let again = source.collect_now("node-1", 1_500, &containers);
    for name in [
        "container_spec_memory_limit_bytes",
        "container_spec_cpu_shares",
        "container_spec_cpu_quota",
        "container_threads_max",
    ] {
        assert!(a(name).is_some(), "{name} in the first round");
        assert_eq!(value(&again, name, "cgroupfs-app", &[]), a(name), "{name}");
    }

    // A container whose cgroup does not exist yields nothing rather than the host's numbers.
    let missing = source.collect_now("node-1", 2_000, &[info(&"c".repeat(64), "ghost")]);
    assert!(missing.is_empty(), "{missing:?}");
}

/// Copies the v2 fixture tree (the one allowed fake, see above) so a test can change its files.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Usage is read every round, limits and weights only every refresh: on a copy of the v2
/// fixture whose files are rewritten in place between rounds (as the kernel does: the agent
/// keeps them open), the next round shows the new usage with the cached limit, and a source
/// that refreshes at every round shows the new limit. Rounds give their series back as the
/// agent does (`MetricSource::reuse`), so the reused series must carry the new values.
#[test]
fn usage_is_read_every_round_and_limits_at_each_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v2");
    copy_tree(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup/v2"),
        &root,
    );
    let containers = vec![info(A, "cgroupfs-app")];
    let dir = root.join("docker").join(A);
    let mut cached = CgroupSource::with_layout(&CgroupConfig::default(), CgroupLayout::unified(&root));
    let mut fresh = CgroupSource::with_layout(&CgroupConfig::default(), CgroupLayout::unified(&root))
        .with_spec_refresh(Duration::ZERO);
    let first = cached.collect_now("node-1", 1_000, &containers);
    cached.reuse(first);
    let first = fresh.collect_now("node-1", 1_000, &containers);
    let limit = |out: &[Series]| value(out, "container_spec_memory_limit_bytes", "cgroupfs-app", &[]);
    let usage = |out: &[Series]| value(out, "container_memory_usage_bytes", "cgroupfs-app", &[]);
    assert_eq!(limit(&first), Some(268_435_456.0));
    assert_eq!(usage(&first), Some(104_857_600.0));
    fresh.reuse(first);

    std::fs::write(dir.join("memory.max"), "536870912\n").unwrap();
    std::fs::write(dir.join("memory.current"), "209715200\n").unwrap();
    let cached_out = cached.collect_now("node-1", 2_000, &containers);
    assert_eq!(usage(&cached_out), Some(209_715_200.0), "usage is read every round");
    assert_eq!(
        limit(&cached_out),
        Some(268_435_456.0),
        "the limit waits for the refresh"
    );
    assert!(
        cached_out
            .iter()
            .all(|s| s.samples.len() == 1 && s.samples[0].timestamp_ms == 2_000),
        "reused series carry one sample of this round"
    );
    let fresh_out = fresh.collect_now("node-1", 2_000, &containers);
    assert_eq!(usage(&fresh_out), Some(209_715_200.0));
    assert_eq!(limit(&fresh_out), Some(536_870_912.0), "a refresh reads the new limit");
}

/// What `docker inspect` says about a container, as discovery would report it.
fn inspect(id: &str) -> ContainerInfo {
    let out = std::process::Command::new("docker")
        .args(["inspect", id])
        .output()
        .expect("run docker inspect");
    assert!(
        out.status.success(),
        "docker inspect {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("docker inspect prints JSON");
    let c = &v[0];
    let labels: BTreeMap<String, String> = c["Config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let name = c["Name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    ContainerInfo {
        id: c["Id"].as_str().unwrap().to_string(),
        service: ContainerInfo::service_of(&name, &labels),
        name,
        image: c["Config"]["Image"].as_str().unwrap_or_default().to_string(),
        labels,
        pid: c["State"]["Pid"].as_u64().unwrap_or(0) as u32,
        ..ContainerInfo::default()
    }
}

/// cgroup v1 live: 64 MiB written to a tmpfs inside a container shows in the working set
/// (tmpfs pages are shmem: charged to the container, on the anon LRU, so not in
/// inactive_file), and a busy loop makes container_cpu_usage_seconds_total rise.
#[test]
fn live_containers_show_memory_and_cpu() {
    let Some(docker) = tidewatch_testkit::require_docker("metrics_cgroup_live") else {
        return;
    };
    let holder = docker.run_busybox("mem", &["--tmpfs", "/m:size=100m"], "/busybox sleep 600");
    let burner = docker.run_busybox("cpu", &[], "while :; do :; done");
    let containers = vec![inspect(&holder), inspect(&burner)];
    let mem_name = containers[0].name.clone();
    let cpu_name = containers[1].name.clone();

    let mut source = CgroupSource::new(&CgroupConfig::default()).expect("mountinfo is readable");
    let before = source.collect_now("n", 1, &containers);
    let base = value(&before, "container_memory_working_set_bytes", &mem_name, &[]).expect("working set of the holder");

    docker.docker_ok(&[
        "exec",
        &holder,
        "/busybox",
        "dd",
        "if=/dev/zero",
        "of=/m/x",
        "bs=1048576",
        "count=64",
    ]);
    let after = source.collect_now("n", 2, &containers);
    let ws = value(&after, "container_memory_working_set_bytes", &mem_name, &[]).unwrap();
    let grown = ws - base;
    let expected: f64 = 64.0 * 1024.0 * 1024.0;
    let tolerance = (expected * 0.05).max(1024.0 * 1024.0);
    assert!(
        (grown - expected).abs() <= tolerance,
        "working set grew by {grown} bytes, expected {expected} ± {tolerance} (base {base}, now {ws})"
    );
    assert!(value(&after, "container_memory_usage_bytes", &mem_name, &[]).unwrap() >= ws);
    assert_eq!(
        value(&after, "container_spec_memory_limit_bytes", &mem_name, &[]),
        Some(0.0)
    );
    assert!(value(&after, "container_threads", &mem_name, &[]).unwrap() >= 1.0);
    // Network counters come from the container's own namespace: eth0, never lo.
    assert!(
        value(
            &after,
            "container_network_receive_bytes_total",
            &mem_name,
            &[("interface", "eth0")]
        )
        .is_some()
    );
    assert!(!after.iter().any(|s| s.labels.get("interface") == Some("lo")));

    // Without a pid (no /proc/<pid>/cgroup), the v1 paths come from Docker's `<mount>/docker/<id>`.
    let no_pid = ContainerInfo {
        pid: 0,
        ..containers[0].clone()
    };
    let by_fallback = CgroupSource::new(&CgroupConfig::default())
        .unwrap()
        .collect_now("n", 2, &[no_pid]);
    let fallback_ws = value(&by_fallback, "container_memory_working_set_bytes", &mem_name, &[]).expect("fallback path");
    assert!((fallback_ws - ws).abs() <= tolerance, "{fallback_ws} vs {ws}");

    let cpu = |series: &[Series]| {
        value(
            series,
            "container_cpu_usage_seconds_total",
            &cpu_name,
            &[("cpu", "total")],
        )
        .expect("cpu usage of the burner")
    };
    let first = cpu(&after);
    // Wait for the counter to move (the loop burns a whole core); the deadline only guards a hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = first;
    while last <= first + 0.2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        last = cpu(&source.collect_now("n", 3, &containers));
    }
    assert!(
        last > first + 0.2,
        "container_cpu_usage_seconds_total did not rise: {first} -> {last}"
    );
    let user = value(
        &source.collect_now("n", 4, &containers),
        "container_cpu_user_seconds_total",
        &cpu_name,
        &[],
    );
    assert!(user.unwrap() > 0.0);
}

/// CPU seconds this process has used (utime + stime from /proc/self/stat).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The harness of bench/collector/metrics.sh (not a test): rounds of cgroup + host collection
/// for the containers in TIDEWATCH_BENCH_CONTAINERS, printing CPU time per round.
#[test]
#[ignore = "benchmark: run by bench/collector/metrics.sh"]
fn bench_metric_rounds() {
    let ids = std::env::var("TIDEWATCH_BENCH_CONTAINERS").expect("TIDEWATCH_BENCH_CONTAINERS=id,id,...");
    let rounds: usize = std::env::var("TIDEWATCH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let containers: Vec<ContainerInfo> = ids.split(',').filter(|s| !s.is_empty()).map(inspect).collect();
    let mut cgroup = CgroupSource::new(&CgroupConfig::default()).unwrap();
    let mut host = tidewatch_collector::sources::host::HostSource::new(&Default::default()).unwrap();
    // Warm-up: path discovery and device names happen once per container.
    let mut series = cgroup.collect_now("n", 0, &containers).len() + host.collect_now("n", 0).len();
    // The same rounds twice: each round's series dropped, then given back to be reused as the
    // agent does (`MetricSource::reuse`).
    for reuse in [false, true] {
        let (cpu0, wall0) = (own_cpu_seconds(), Instant::now());
        for r in 0..rounds {
            let c = cgroup.collect_now("n", r as i64, &containers);
            let h = host.collect_now("n", r as i64);
            series = c.len() + h.len();
            if reuse {
                cgroup.reuse(c);
                host.reuse(h);
            }
        }
        let cpu = own_cpu_seconds() - cpu0;
        let wall = wall0.elapsed().as_secs_f64();
        println!(
            "BENCH containers={} rounds={rounds} reuse={reuse} series_per_round={series} cpu_ms_per_round={:.3} wall_ms_per_round={:.3} cpu_percent_at_1s={:.2}",
            containers.len(),
            cpu * 1000.0 / rounds as f64,
            wall * 1000.0 / rounds as f64,
            cpu * 100.0 / rounds as f64
        );
    }
}
