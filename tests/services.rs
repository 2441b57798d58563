//! The scheduler and the autoscaler inside `tidewatch up`, on a real Docker engine: a service
//! whose policy follows a PromQL expression scales out and back in as samples arrive through
//! remote_write, and the CLI (`services`, `scale`, `events`, `autoscaler explain`) tells what
//! happened.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tidewatch_testkit::{DockerTest, TestServer, require_docker};

use crate::{READY_WITHIN, eventually};

/// Scheduling and autoscaling take a few reconcile passes each; generous, as everywhere here.
const CONVERGE: Duration = Duration::from_secs(90);

fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .args(args)
        .args(["--server", &server.url("")])
        .env_remove("TIDEWATCH_CONFIG")
        .output()
        .expect("run tidewatch");
    assert!(
        out.status.success(),
        "tidewatch {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets `e2e_queue_depth` to `value` now (a gauge the policy reads).
fn push_depth(server: &TestServer, value: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let body = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: "e2e_queue_depth".into(),
            }],
            samples: vec![Sample { value, timestamp: now }],
        }],
        metadata: Vec::new(),
    }
    .to_snappy();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let res = agent
        .post(server.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .send(&body[..])
        .unwrap();
    assert_eq!(res.status(), 204);
}

/// Running containers of the service, from the docker CLI (not from Tidewatch).
fn running(docker: &DockerTest, service: &str) -> usize {
    docker
        .docker_ok(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=tidewatch.service={service}"),
            "--filter",
            &format!("label=tidewatch.scheduler={}", docker.test_name()),
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn up_runs_services_that_the_autoscaler_scales_and_the_cli_explains() {
    let Some(docker) = require_docker("up_services_autoscale") else { return };
    let service = "tw-e2e-queue";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidewatch.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
scheduler:
  instance: {instance}
  reconcile_interval: 250ms
  services:
    - name: {service}
      image: {image}
      command: ["/busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
      labels: {{tidewatch.test: {instance}}}
      stop_grace_period: 2s
      replicas: 1
      autoscale:
        min_replicas: 1
        max_replicas: 3
        metrics:
          - promql: {{name: backlog, expr: 'sum(e2e_queue_depth)', average_value: 10}}
        behavior:
          scale_down: {{stabilization_window: 3s, policies: [{{type: Percent, value: 100, period: 1s}}]}}
"#,
            instance = docker.test_name(),
            image = docker.busybox_image(),
        ),
    )
    .unwrap();
    let server = TestServer::start_in(dir.path(), &["--config", config.to_str().unwrap(), "up"]);
    server.wait_ready(READY_WITHIN).unwrap();

    assert!(
        eventually(CONVERGE, || running(&docker, service) == 1),
        "the service's one replica never ran; logs:\n{}",
        server.logs()
    );

    // A backlog of 25 at 10 per replica needs 3 replicas.
    let mut last_push = std::time::Instant::now() - Duration::from_secs(10);
    let mut keep_pushing = |v: f64| {
        if last_push.elapsed() >= Duration::from_secs(1) {
            push_depth(&server, v);
            last_push = std::time::Instant::now();
        }
    };
    assert!(
        eventually(CONVERGE, || {
            keep_pushing(25.0);
            running(&docker, service) == 3
        }),
        "never scaled out to 3; explain:\n{}\nlogs:\n{}",
        cli(&server, &["autoscaler", "explain", service]),
        server.logs()
    );
    let explain = cli(&server, &["autoscaler", "explain", service]);
    assert!(explain.contains("backlog"), "{explain}");
    assert!(explain.contains("1→3") || explain.contains("1->3"), "the decision is explained:\n{explain}");

    // The backlog is gone: back to the minimum after the 3 s window.
    assert!(
        eventually(CONVERGE, || {
            keep_pushing(0.0);
            running(&docker, service) == 1
        }),
        "never scaled back in; explain:\n{}",
        cli(&server, &["autoscaler", "explain", service])
    );

    let services = cli(&server, &["services"]);
    assert!(services.contains(service), "{services}");
    let events = cli(&server, &["events", "--service", service]);
    assert!(events.contains("scaled"), "{events}");

    // Decisions and scheduler events are also log records in the log store.
    let (status, body) = server.get(&format!(
        "/loki/api/v1/query_range?query={}&limit=1000&start={}",
        "%7Bsource%3D~%22autoscaler%7Cscheduler%22%7D",
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() - 3_600_000_000_000
    ));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""source":"autoscaler""#), "{body}");
    assert!(body.contains(r#""source":"scheduler""#), "{body}");
}
