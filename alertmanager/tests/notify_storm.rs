//! The alert-storm figure (bench/alerts/): 10,000 alerts in 100 groups, POSTed over HTTP in
//! Prometheus-sized batches, delivered to a webhook receiver. Run against this Alertmanager
//! in process, and against Debian's Alertmanager (`/usr/bin/prometheus-alertmanager`) when
//! installed. Ignored by default (it is a measurement, not a test); bench/alerts/storm.sh runs
//! it in release mode and prints the figures.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tidewatch_alertmanager::notify::{Alertmanager, AlertmanagerConfigFile, router};

const ALERTS: usize = 10_000;
const GROUPS: usize = 100;
const BATCH: usize = 64;
const SENDERS: usize = 4;

#[derive(Default)]
struct Sink {
    notifications: Mutex<usize>,
    fingerprints: Mutex<HashSet<String>>,
    last: Mutex<Option<Instant>>,
}

async fn hook(State(s): State<Arc<Sink>>, body: axum::body::Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut fps = s.fingerprints.lock().unwrap();
    for a in v["alerts"].as_array().into_iter().flatten() {
        // Alertmanager's own fingerprint when present; else the labels (same identity).
        fps.insert(a["labels"].to_string());
    }
    *s.notifications.lock().unwrap() += 1;
    *s.last.lock().unwrap() = Some(Instant::now());
    StatusCode::OK
}

async fn start_sink() -> (Arc<Sink>, SocketAddr) {
    let sink = Arc::new(Sink::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(sink.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (sink, addr)
}

fn config(sink: SocketAddr) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: [group]\n  group_wait: 5s\n  group_interval: 5m\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{sink}/hook\n"
    )
}

fn vm_hwm_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// Posts the storm; returns how long accepting it took.
async fn storm(api: &str) -> Duration {
    let ends = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let alerts: Vec<Value> = (0..ALERTS)
        .map(|i| {
            json!({
                "labels": {"alertname": "Storm", "group": format!("g{}", i % GROUPS), "instance": format!("host-{i}")},
                "annotations": {"summary": format!("alert {i} of the storm")},
                "endsAt": ends,
                "generatorURL": "http://prometheus.local/graph?g0.expr=up",
            })
        })
        .collect();
    let batches: Vec<Vec<Value>> = alerts.chunks(BATCH).map(|c| c.to_vec()).collect();
    let batches = Arc::new(Mutex::new(batches));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let batches = batches.clone();
        let url = format!("{api}/api/v2/alerts");
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let Some(batch) = batches.lock().unwrap().pop() else {
                    break;
                };
                let r = client.post(&url).json(&batch).send().await.expect("post");
                assert!(r.status().is_success(), "{}", r.status());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn wait_drained(sink: &Sink, start: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if sink.fingerprints.lock().unwrap().len() >= ALERTS {
            return sink.last.lock().unwrap().map(|l| l - start).unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "storm not drained: {} alerts notified",
            sink.fingerprints.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn report(side: &str, post: Duration, drain: Duration, sink: &Sink, rss_kib: u64, extra: &str) {
    println!(
        "\nSTORM side={side} alerts={ALERTS} groups={GROUPS} accept_s={:.3} drain_s={:.3} notifications={} alerts_notified={} peak_rss_mib={:.1} {extra}",
        post.as_secs_f64(),
        drain.as_secs_f64(),
        *sink.notifications.lock().unwrap(),
        sink.fingerprints.lock().unwrap().len(),
        rss_kib as f64 / 1024.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run by bench/alerts/storm.sh"]
async fn storm_tidewatch() {
    let base_rss = vm_hwm_kib("self");
    let (sink, addr) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::open(
        dir.path(),
        AlertmanagerConfigFile::parse("<storm>", &config(addr)).unwrap(),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", l.local_addr().unwrap());
    let app = router(am.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    let start = Instant::now();
    let post = storm(&api).await;
    let drain = wait_drained(&sink, start).await;
    let rss = vm_hwm_kib("self");
    report(
        "tidewatch",
        post,
        drain,
        &sink,
        rss,
        &format!(
            "(process = alertmanager + sender + receiver; before start {:.1} MiB)",
            base_rss as f64 / 1024.0
        ),
    );
    assert_eq!(*sink.notifications.lock().unwrap(), GROUPS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run by bench/alerts/storm.sh"]
async fn storm_debian_alertmanager() {
    const BIN: &str = "/usr/bin/prometheus-alertmanager";
    if !std::path::Path::new(BIN).exists() {
        println!("SKIP storm_debian_alertmanager: {BIN} not installed");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (sink, addr) = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("am.yml"), config(addr)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            format!("--config.file={}", dir.path().join("am.yml").display()),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{port}");
    let ready = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{api}/-/ready"))
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < ready, "alertmanager did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let start = Instant::now();
    let post = storm(&api).await;
    let drain = wait_drained(&sink, start).await;
    let rss = vm_hwm_kib(&pid);
    report(
        "alertmanager-0.25",
        post,
        drain,
        &sink,
        rss,
        "(process = alertmanager only)",
    );
    child.kill().await.ok();
}

// ---------- latency: sample acknowledged → webhook delivered ----------

/// Records when each `trial` label first arrives.
#[derive(Default)]
struct Arrivals {
    first: Mutex<std::collections::HashMap<String, Instant>>,
}

async fn arrival(State(s): State<Arc<Arrivals>>, body: axum::body::Bytes) -> StatusCode {
    let now = Instant::now();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut first = s.first.lock().unwrap();
    for a in v["alerts"].as_array().into_iter().flatten() {
        if let Some(t) = a["labels"]["trial"].as_str() {
            first.entry(t.to_string()).or_insert(now);
        }
    }
    StatusCode::OK
}

async fn start_arrivals() -> (Arc<Arrivals>, SocketAddr) {
    let s = Arc::new(Arrivals::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(arrival))
        .with_state(s.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (s, addr)
}

fn latency_config(sink: SocketAddr) -> String {
    format!(
        "route:\n  receiver: hook\n  group_by: [trial]\n  group_wait: 0s\n  group_interval: 1m\n  repeat_interval: 4h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{sink}/hook\n"
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn remote_write(client: &reqwest::Client, url: &str, trial: &str) {
    use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "lat_trigger".into(),
                },
                Label {
                    name: "trial".into(),
                    value: trial.into(),
                },
            ],
            samples: vec![Sample {
                value: 1.0,
                timestamp: chrono::Utc::now().timestamp_millis(),
            }],
        }],
        metadata: Vec::new(),
    };
    let r = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(req.to_snappy())
        .send()
        .await
        .expect("remote write");
    assert!(r.status().is_success(), "remote write: {}", r.status());
}

/// Debian's Prometheus (1 s evaluation, rule `lat_trigger > 0`, for: 0) sends to both
/// Alertmanagers at once (Debian's 0.25 and this one, each with group_wait 0); a sample is
/// remote-written, and the time from its acknowledgement to each webhook delivery is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run by bench/alerts/latency.sh"]
async fn latency_prometheus_to_webhook() {
    const PROM: &str = "/usr/bin/prometheus";
    const AM: &str = "/usr/bin/prometheus-alertmanager";
    if !std::path::Path::new(PROM).exists() || !std::path::Path::new(AM).exists() {
        println!("SKIP latency_prometheus_to_webhook: needs {PROM} and {AM}");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let trials: usize = std::env::var("TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let dir = tempfile::tempdir().unwrap();

    let (ours_sink, ours_sink_addr) = start_arrivals().await;
    let am = Alertmanager::open(
        &dir.path().join("ours"),
        AlertmanagerConfigFile::parse("<latency>", &latency_config(ours_sink_addr)).unwrap(),
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours_addr = l.local_addr().unwrap();
    let app = router(am.clone());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let (theirs_sink, theirs_sink_addr) = start_arrivals().await;
    std::fs::write(dir.path().join("am.yml"), latency_config(theirs_sink_addr)).unwrap();
    let theirs_port = free();
    let mut theirs = tokio::process::Command::new(AM)
        .args([
            format!("--config.file={}", dir.path().join("am.yml").display()),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{theirs_port}"),
            "--cluster.listen-address=".to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: lat\n    interval: 1s\n    rules:\n      - alert: Lat\n        expr: lat_trigger > 0\n        for: 0s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - api_version: v2\n      static_configs:\n        - targets: ['{ours_addr}', '127.0.0.1:{theirs_port}']\n"
        ),
    )
    .unwrap();
    let prom_port = free();
    let mut prom = tokio::process::Command::new(PROM)
        .current_dir(dir.path())
        .args([
            "--config.file=prometheus.yml".to_string(),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--web.enable-remote-write-receiver".to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let write_url = format!("http://127.0.0.1:{prom_port}/api/v1/write");
    let client = reqwest::Client::new();
    let ready = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("http://127.0.0.1:{prom_port}/-/ready"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < ready, "prometheus not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm-up: Prometheus drops alerts fired before its Alertmanager discovery ran and re-sends
    // after the resend delay (1m); wait until both sides have seen the warm-up alert.
    remote_write(&client, &write_url, "warmup").await;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !(ours_sink.first.lock().unwrap().contains_key("warmup")
        && theirs_sink.first.lock().unwrap().contains_key("warmup"))
    {
        assert!(Instant::now() < deadline, "warm-up alert did not arrive on both sides");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ours, mut theirs_lat) = (Vec::new(), Vec::new());
    for i in 0..trials {
        let trial = format!("t{i}");
        remote_write(&client, &write_url, &trial).await;
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(30);
        loop {
            let a = ours_sink.first.lock().unwrap().get(&trial).copied();
            let b = theirs_sink.first.lock().unwrap().get(&trial).copied();
            if let (Some(a), Some(b)) = (a, b) {
                ours.push((a - acked).as_secs_f64());
                theirs_lat.push((b - acked).as_secs_f64());
                break;
            }
            assert!(Instant::now() < deadline, "trial {trial} not delivered");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Desynchronise from the 1 s evaluation tick.
        tokio::time::sleep(Duration::from_millis(137 + (i as u64 * 211) % 600)).await;
    }
    prom.kill().await.ok();
    theirs.kill().await.ok();
    for (side, mut v) in [("tidewatch", ours), ("alertmanager-0.25", theirs_lat)] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "\nLATENCY side={side} trials={} p50_s={:.3} p95_s={:.3} min_s={:.3} max_s={:.3}",
            v.len(),
            percentile(&v, 0.5),
            percentile(&v, 0.95),
            v[0],
            v[v.len() - 1]
        );
    }
}
