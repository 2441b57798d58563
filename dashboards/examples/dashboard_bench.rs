//! Dashboard draw time: how long until all 8 panels of a dashboard are drawn in headless
//! Chromium, each an aggregation over 6 h of 1,000 source series at 15 s, with step = range ÷
//! 1,000. Measured in the browser: `performance.now()` (milliseconds since the navigation
//! started) when the last panel is drawn, as the page records it in `window.__tidewatch`.
//!
//! The same page, dashboard and browser run against Prometheus (the peer) with the same data,
//! so the ratio compares the query backends behind an identical front end.
//!
//! Run through `bench/dashboards/run.sh` (release `tidewatch` through `TIDEWATCH_BIN`).

#[path = "../tests/support/stack.rs"]
mod stack;
#[path = "../tests/support/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use stack::{UiServer, agent, remote_write};
use tidewatch_testkit::TestServer;
use webdriver::{Browser, missing_browser};

const SERIES: usize = 1000;
const HOURS: i64 = 6;
const INTERVAL_MS: i64 = 15_000;
const RUNS: usize = 7;

const DASHBOARD: &str = r#"title: Bench
description: 8 aggregations over 1,000 source series
range: 6h
panels:
  - {title: requests by service, type: timeseries, query: 'sum by (service) (rate(bench_requests_total[5m]))'}
  - {title: requests by node, type: timeseries, query: 'sum by (node) (rate(bench_requests_total[5m]))'}
  - {title: requests, type: timeseries, query: 'sum(rate(bench_requests_total[5m]))'}
  - {title: busiest instance by service, type: timeseries, query: 'max by (service) (rate(bench_requests_total[5m]))'}
  - {title: memory by service, type: timeseries, query: 'sum by (service) (bench_memory_bytes)', unit: bytes}
  - {title: memory by node, type: timeseries, query: 'avg by (node) (bench_memory_bytes)', unit: bytes}
  - {title: largest by service, type: timeseries, query: 'max by (service) (bench_memory_bytes)', unit: bytes}
  - {title: p90 requests by node, type: timeseries, query: 'quantile by (node) (0.9, rate(bench_requests_total[5m]))'}
"#;

/// 1,000 counters and 1,000 gauges over 6 h at 15 s, sent in time order, 30 minutes at a time.
fn load(url: &str, now_ms: i64) {
    let agent = agent();
    let start = now_ms - HOURS * 3_600_000;
    let points = (HOURS * 3_600_000 / INTERVAL_MS) as usize;
    let chunk = 120;
    for first in (0..points).step_by(chunk) {
        let ts: Vec<i64> = (first..(first + chunk).min(points))
            .map(|i| start + i as i64 * INTERVAL_MS)
            .collect();
        let mut series = Vec::with_capacity(2 * SERIES);
        for s in 0..SERIES {
            let labels = |name: &str| {
                vec![
                    ("__name__".to_string(), name.to_string()),
                    ("instance".to_string(), format!("i-{s:04}")),
                    ("node".to_string(), format!("node-{}", s % 10)),
                    ("service".to_string(), format!("svc-{}", s % 20)),
                ]
            };
            let rate = 1.0 + (s % 7) as f64;
            series.push((
                labels("bench_requests_total"),
                ts.iter().map(|&t| (t, rate * ((t - start) / 1000) as f64)).collect(),
            ));
            series.push((
                labels("bench_memory_bytes"),
                ts.iter()
                    .map(|&t| {
                        (
                            t,
                            1e8 + 1e6 * (s % 13) as f64 + 1e6 * (((t - start) / 60_000) % 30) as f64,
                        )
                    })
                    .collect(),
            ));
        }
        remote_write(&agent, url, series);
    }
}

fn measure(browser: &Browser, ui: &str) -> Vec<f64> {
    let mut times = Vec::new();
    for run in 0..RUNS {
        browser.goto("about:blank").unwrap();
        browser.goto(&format!("{ui}/#/dashboards/bench?range=6h")).unwrap();
        let timing = browser
            .wait_for(
                "all panels drawn",
                "const t = window.__tidewatch && window.__tidewatch.dashboard; return t && t.done !== null ? t : null",
                Duration::from_secs(120),
            )
            .unwrap();
        if timing["errors"] != 0 {
            for (level, message) in browser.console().unwrap_or_default() {
                eprintln!("dashboard_bench: console {level}: {message}");
            }
        }
        assert_eq!(timing["errors"], 0, "panels failed: {timing}");
        assert_eq!(timing["drawn"], 8, "{timing}");
        let ms = timing["done"].as_f64().unwrap();
        eprintln!(
            "dashboard_bench: run {run}: {ms:.0} ms (scripts and definition loaded at {:.0} ms, queries answered at {})",
            timing["defined"].as_f64().unwrap_or(f64::NAN),
            timing["queried"]
                .as_array()
                .map(|a| a
                    .iter()
                    .map(|v| format!("{:.0}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect::<Vec<_>>()
                    .join(" "))
                .unwrap_or_default()
        );
        // The first load fills caches on both sides (page scripts, server pages): not counted.
        if run > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if let Some(reason) = missing_browser() {
        eprintln!("dashboard_bench: {reason}");
        std::process::exit(2);
    }
    let work = tempfile::tempdir().unwrap();
    let boards = work.path().join("dashboards");
    std::fs::create_dir_all(&boards).unwrap();
    std::fs::write(boards.join("bench.yaml"), DASHBOARD).unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    // Tidewatch: the binary named by TIDEWATCH_BIN (release), WAL fsync off like Prometheus.
    let config = work.path().join("tidewatch.yaml");
    std::fs::write(&config, "metrics:\n  wal:\n    fsync: false\n").unwrap();
    let tidewatch = TestServer::start(&["--config", config.to_str().unwrap(), "server"]);
    tidewatch.wait_ready(Duration::from_secs(120)).unwrap();

    // Prometheus: an empty configuration and the remote_write receiver.
    let prom_dir = work.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(prom_dir.join("prometheus.yml"), "# nothing is scraped\n").unwrap();
    let prom_port = tidewatch_testkit::free_port();
    let _prometheus = Prometheus(
        Command::new(std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into()))
            .arg(format!("--config.file={}", prom_dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus (apt-get install prometheus)"),
    );
    let prom_url = format!("http://127.0.0.1:{prom_port}");
    let http = agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("{prom_url}/-/ready"))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    for (name, url) in [
        ("tidewatch", tidewatch.url("/api/v1/write")),
        ("prometheus", format!("{prom_url}/api/v1/write")),
    ] {
        let t = Instant::now();
        load(&url, now_ms);
        eprintln!("dashboard_bench: loaded {name} in {:.1?}", t.elapsed());
    }

    let browser = Browser::start(1400, 1000).unwrap();
    let mut results = Vec::new();
    for (name, upstream) in [
        ("tidewatch", format!("http://{}", tidewatch.addr())),
        ("prometheus", prom_url.clone()),
    ] {
        let ui = UiServer::start(Some(boards.clone()), upstream);
        let times = measure(&browser, &format!("http://{}", ui.addr));
        browser
            .screenshot(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../target/ui-screenshots/bench-{name}.png")),
            )
            .unwrap();
        results.push((name, times));
    }
    let median = |t: &[f64]| t[t.len() / 2];
    let (tw, pm) = (median(&results[0].1), median(&results[1].1));
    for (name, t) in &results {
        println!(
            "{name}: median {:.0} ms, min {:.0} ms, max {:.0} ms ({} runs: {})",
            median(t),
            t[0],
            t[t.len() - 1],
            t.len(),
            t.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
        );
    }
    println!("ratio tidewatch/prometheus (median): {:.2}", tw / pm);
    println!("goal <= 1000 ms: {}", if tw <= 1000.0 { "met" } else { "NOT met" });
    println!(
        "{}",
        json!({"tidewatch_ms": results[0].1, "prometheus_ms": results[1].1, "ratio": tw / pm})
    );
}
