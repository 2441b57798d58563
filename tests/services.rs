//! The scheduler and the autoscaler inside `tidewatch up`, on a real Docker engine: a service
//! whose policy follows a PromQL expression scales out and back in as samples arrive through
//! remote_write, and the CLI (`services`, `scale`, `events`, `autoscaler explain`) tells what
//! happened.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidewatch_testkit::{DockerTest, TestServer, require_docker};

use crate::{READY_WITHIN, eventually, push_now};

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
    push_now(server, &[("__name__", "e2e_queue_depth")], value);
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
    let Some(docker) = require_docker("up_services_autoscale") else {
        return;
    };
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
    assert!(
        explain.contains("1→3") || explain.contains("1->3"),
        "the decision is explained:\n{explain}"
    );

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

/// Issue 9's end-to-end scenario: a service whose HTTP endpoint burns CPU per request (each
/// replica limited to 0.25 core, at most 4) runs behind the scheduler's endpoint; a bounded
/// load generator drives it from 2 to 4 replicas on the collector's 1 s cgroup metrics; when
/// the load stops it returns to 2 after its short scale-down window, and the decision log
/// explains both steps.
#[test]
fn cpu_load_through_the_endpoint_scales_a_service_out_and_back_in() {
    let Some(docker) = require_docker("up_cpu_autoscale") else {
        return;
    };
    let service = "tw-e2e-burn";
    let endpoint = tidewatch_testkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidewatch.yaml");
    // A CGI script of busybox httpd burns ~0.1 s of CPU per request.
    let script = r#"mkdir -p /www/cgi-bin && echo ok > /www/index.html && printf '#!/busybox sh\ni=0\nwhile [ $i -lt 30000 ]; do i=$((i+1)); done\necho Content-Type: text/plain\necho\necho burnt\n' > /www/cgi-bin/burn && chmod +x /www/cgi-bin/burn && exec /busybox httpd -f -p 8080 -h /www"#;
    std::fs::write(
        &config,
        format!(
            r#"
collector:
  docker: {{include: {{labels: ["tidewatch.test={instance}"]}}}}
  host: {{enabled: false}}
scheduler:
  instance: {instance}
  reconcile_interval: 250ms
  services:
    - name: {service}
      image: {image}
      command: ["/busybox", "sh", "-c", {script:?}]
      labels: {{tidewatch.test: {instance}}}
      ports: [{{container: 8080, endpoint: {endpoint}}}]
      resources: {{limits: {{cpus: 0.25, memory: 32MiB}}}}
      healthcheck: {{http: /, interval: 500ms, timeout: 1s, retries: 2}}
      stop_grace_period: 2s
      replicas: 2
      autoscale:
        min_replicas: 2
        max_replicas: 4
        metrics: [{{cpu: {{target_utilization: 50}}}}]
        behavior:
          scale_down: {{stabilization_window: 5s, policies: [{{type: Percent, value: 100, period: 1s}}]}}
"#,
            instance = docker.test_name(),
            image = docker.busybox_image(),
        ),
    )
    .unwrap();
    let server = TestServer::start_in(dir.path(), &["--config", config.to_str().unwrap(), "up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    assert!(
        eventually(CONVERGE, || running(&docker, service) == 2),
        "the two replicas never ran; logs:\n{}",
        server.logs()
    );
    let url = format!("http://127.0.0.1:{endpoint}/cgi-bin/burn");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .proxy(None)
        .build()
        .into();
    assert!(
        eventually(CONVERGE, || agent.get(&url).call().is_ok_and(|r| r.status() == 200)),
        "the endpoint never answered"
    );

    // Bounded load: four clients in a loop until the service has 4 replicas or time runs out.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (agent, url, stop) = (agent.clone(), url.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut ok = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let scaled_out = eventually(CONVERGE, || running(&docker, service) == 4);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let explain = cli(&server, &["autoscaler", "explain", service]);
    assert!(
        scaled_out,
        "never scaled out to 4 under load ({served} requests served):\n{explain}"
    );
    assert!(served > 0);
    assert!(explain.contains("cpu"), "{explain}");
    assert!(
        explain.contains("2→4") || explain.contains("2→3") || explain.contains("3→4"),
        "{explain}"
    );

    // No load: back to the minimum of 2 after the 5 s window.
    assert!(
        eventually(CONVERGE, || running(&docker, service) == 2),
        "never scaled back in:\n{}",
        cli(&server, &["autoscaler", "explain", service])
    );
    let explain = cli(&server, &["autoscaler", "explain", service]);
    assert!(explain.contains("→2"), "the scale-in is explained:\n{explain}");
}
