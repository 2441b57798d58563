//! The scheduler against the real Docker engine: scaling, crash replacement, rolling updates
//! under load through the endpoint, restart mid-rollout, and the same scaling on Swarm.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tidewatch_model::Replicas;
use tidewatch_scheduler::{Scheduler, SchedulerConfig, ServiceSpec, parse_services};
use tidewatch_testkit::DockerTest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous: a bound on a hung test, not a performance goal.
const CONVERGE: Duration = Duration::from_secs(90);

/// A busybox httpd replica whose page says `version`.
fn web_spec(docker: &DockerTest, name: &str, version: &str, replicas: u32, endpoint: Option<u16>) -> ServiceSpec {
    let endpoint = endpoint.map_or(String::new(), |p| format!(", endpoint: {p}"));
    let yaml = format!(
        r#"name: {name}
image: {image}
command: [/busybox, sh, -c, "/busybox mkdir -p /www && echo page-$VERSION > /www/index.html && exec /busybox httpd -f -p 8080 -h /www"]
env: {{VERSION: "{version}"}}
labels: {{"{label_key}": "{label_value}"}}
ports: [{{container: 8080{endpoint}}}]
resources:
  reservations: {{cpus: 0.1, memory: 8MiB}}
  limits: {{cpus: 0.5, memory: 32MiB}}
stop_grace_period: 2s
healthcheck: {{http: /, interval: 500ms, timeout: 500ms, retries: 2}}
replicas: {replicas}
update: {{max_surge: 1, max_unavailable: 0}}
"#,
        image = docker.busybox_image(),
        label_key = "tidewatch.test",
        label_value = docker.test_name(),
    );
    parse_services(&yaml, "test").unwrap().remove(0)
}

/// The test's own scheduler instance: it never touches containers of another scheduler.
fn config(docker: &DockerTest, specs: Vec<ServiceSpec>) -> SchedulerConfig {
    SchedulerConfig {
        instance: docker.test_name().to_string(),
        services: specs,
        reconcile_interval: tidewatch_model::Duration::from_millis(250),
        backoff_initial: tidewatch_model::Duration::from_millis(500),
        backoff_max: tidewatch_model::Duration::from_secs(4),
        ..SchedulerConfig::default()
    }
}

struct Running {
    sched: Arc<Scheduler>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn start(dir: &std::path::Path, config: SchedulerConfig) -> Running {
        let sched = Scheduler::open(dir, config, None).await.unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(sched.clone().run(async move {
            let _ = rx.await;
        }));
        Running {
            sched,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

async fn wait_for<F, Fut>(sched: &Scheduler, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let services = serde_json::to_string_pretty(&sched.services()).unwrap();
            let events = serde_json::to_string_pretty(&sched.events(None, 60)).unwrap();
            panic!("timed out waiting for {what}\nservices: {services}\nevents: {events}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (id, replica, spec hash, state) of the service's containers, from the docker CLI.
fn containers(docker: &DockerTest, service: &str) -> Vec<(String, String, String, String)> {
    let out = docker.docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=tidewatch.service={service}"),
        "--format",
        "{{.ID}} {{.Label \"tidewatch.replica\"}} {{.Label \"tidewatch.spec-hash\"}} {{.State}}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].into(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect()
}

/// Converged: `n` ready replicas through the Replicas interface, exactly `n` containers on the
/// engine, all running the current spec with replica indices 0..n.
async fn converged(sched: &Scheduler, docker: &DockerTest, service: &str, n: u32) -> bool {
    let Ok(set) = sched.replicas(service).await else {
        return false;
    };
    let ready = set.replicas.iter().filter(|r| r.ready).count();
    let status = sched.service(service).unwrap();
    let found = containers(docker, service);
    let indices: BTreeSet<String> = found.iter().map(|c| c.1.clone()).collect();
    let wanted: BTreeSet<String> = (0..n).map(|i| i.to_string()).collect();
    set.desired == n
        && ready == n as usize
        && found.len() == n as usize
        && indices == wanted
        && found.iter().all(|c| c.2 == status.spec_hash && c.3 == "running")
}

/// Replicas not being drained (in-range indices only), and whether two of them run `hash` at
/// one index: what max_surge bounds and what "never a duplicate" forbids.
fn active(sched: &Scheduler, service: &str, hash: &str) -> (usize, bool) {
    let status = sched.service(service).unwrap();
    let live: Vec<_> = status
        .replicas
        .iter()
        .filter(|r| r.state != "draining" && r.state != "exited" && r.replica.is_some_and(|i| i < status.desired))
        .collect();
    let mut current = HashSet::new();
    let dup = live
        .iter()
        .filter(|r| r.spec_hash == hash)
        .any(|r| !current.insert(r.replica));
    (live.len(), dup)
}

/// One HTTP/1.0 GET through the endpoint; the body, or None when it failed.
async fn get(port: u16) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.starts_with("HTTP/1.")
        .then(|| text.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sequence_crash_replacement_and_dns() {
    let Some(docker) = tidewatch_testkit::require_docker("scheduler_scale") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = "twt-scale";
    let run = Running::start(
        dir.path(),
        config(&docker, vec![web_spec(&docker, service, "1", 1, None)]),
    )
    .await;
    let sched = run.sched.clone();
    let sched_for_api = sched.clone();

    for n in [1u32, 5, 2, 0, 3] {
        sched.set_desired(service, n).await.unwrap();
        wait_for(&sched, &format!("{n} replicas"), || {
            converged(&sched, &docker, service, n)
        })
        .await;
    }
    // Persisted before set_desired returned.
    let state = std::fs::read_to_string(dir.path().join("scheduler/state.json")).unwrap();
    assert!(state.contains("\"desired\": 3"), "{state}");

    // The API and the CLI, over real HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, tidewatch_scheduler::router(sched_for_api))
            .await
            .unwrap();
    });
    let cli_base = base.clone();
    let (table, scaled, events, unknown, bad_body) = tokio::task::spawn_blocking(move || {
        let mut table = Vec::new();
        tidewatch_scheduler::cli::services(&cli_base, &mut table).unwrap();
        let mut scaled = Vec::new();
        tidewatch_scheduler::cli::scale(&cli_base, service, 3, &mut scaled).unwrap();
        let mut events = Vec::new();
        tidewatch_scheduler::cli::events(&cli_base, Some(service), &mut events).unwrap();
        let unknown = tidewatch_scheduler::cli::scale(&cli_base, "nope", 1, &mut Vec::new()).unwrap_err();
        let bad_body = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .post(&format!("{cli_base}/api/v1/services/{service}/scale"))
            .header("content-type", "application/json")
            .send("{\"replicas\": -1}")
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        (
            String::from_utf8(table).unwrap(),
            String::from_utf8(scaled).unwrap(),
            String::from_utf8(events).unwrap(),
            unknown.to_string(),
            bad_body,
        )
    })
    .await
    .unwrap();
    let row = table.lines().find(|l| l.starts_with(service)).expect(&table);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[1..5], ["docker", "3", "3", "3"], "{table}");
    assert!(scaled.contains("scaled to 3"), "{scaled}");
    assert!(
        events.contains("scaled") && events.contains("desired 2 -> 0"),
        "{events}"
    );
    assert!(unknown.contains("404") && unknown.contains("nope"), "{unknown}");
    assert!(bad_body.contains("replicas"), "{bad_body}");
    server.abort();

    // The endpoint answers from the replicas.
    let port = sched.endpoint_port(service, 8080).expect("endpoint");
    assert_eq!(get(port).await.as_deref(), Some("page-1"));

    // Resources and labels reached the containers.
    let first = containers(&docker, service)[0].0.clone();
    let inspect = docker.docker_ok(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}} {{index .Config.Labels \"tidewatch.managed\"}}",
        &first,
    ]);
    assert_eq!(inspect, format!("500000000 {} {} 1", 32 << 20, 8 << 20));

    // The service name resolves on its network (Docker's embedded DNS, network alias).
    let answer = docker.docker_ok(&[
        "run",
        "--rm",
        "--label",
        &docker.label(),
        "--network",
        &format!("tw-{service}"),
        &docker.busybox_image(),
        "/busybox",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{service}:8080/"),
    ]);
    assert_eq!(answer.trim(), "page-1");

    // kill -9 of a replica's process: it is replaced by a new container at the same index.
    let (victim, index, _, _) = containers(&docker, service)[1].clone();
    docker.docker_ok(&["kill", "-s", "KILL", &victim]);
    wait_for(&sched, "the killed replica to be replaced", || {
        let victim = victim.clone();
        let sched = sched.clone();
        let docker = &docker;
        async move {
            converged(&sched, docker, service, 3).await && containers(docker, service).iter().all(|c| c.0 != victim)
        }
    })
    .await;
    let events = sched.events(Some(service), 1000);
    assert!(
        events
            .iter()
            .any(|e| format!("{:?}", e.kind) == "Exited" && e.replica.map(|r| r.to_string()) == Some(index.clone()))
    );
    assert!(events.iter().any(|e| format!("{:?}", e.kind) == "Replaced"));

    // Repeated crashes back off: kill the same index again twice, the third replacement waits.
    for round in 0..2 {
        let current = containers(&docker, service)
            .into_iter()
            .find(|c| c.1 == index)
            .unwrap()
            .0;
        docker.docker_ok(&["kill", "-s", "KILL", &current]);
        wait_for(&sched, &format!("replacement {round}"), || {
            let current = current.clone();
            let sched = sched.clone();
            let docker = &docker;
            async move {
                converged(&sched, docker, service, 3).await
                    && containers(docker, service).iter().all(|c| c.0 != current)
            }
        })
        .await;
    }
    let replaced: Vec<String> = sched
        .events(Some(service), 1000)
        .iter()
        .filter(|e| format!("{:?}", e.kind) == "Replaced")
        .map(|e| e.message.clone())
        .collect();
    assert!(replaced.iter().any(|m| m.contains("3 times in a row")), "{replaced:?}");

    sched.set_desired(service, 0).await.unwrap();
    wait_for(&sched, "scale to 0", || converged(&sched, &docker, service, 0)).await;
    // A service removed from the specs loses its network too.
    sched.set_specs(Vec::new()).await.unwrap();
    wait_for(&sched, "the service's network to be removed", || {
        let left = docker.docker_ok(&["network", "ls", "-q", "--filter", &format!("name=tw-{service}")]);
        async move { left.is_empty() }
    })
    .await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_loses_no_request_and_restart_mid_rollout_resumes() {
    let Some(docker) = tidewatch_testkit::require_docker("scheduler_rollout") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let service = "twt-roll";
    let port = tidewatch_testkit::free_port();
    let run = Running::start(
        dir.path(),
        config(&docker, vec![web_spec(&docker, service, "1", 3, Some(port))]),
    )
    .await;
    let sched = run.sched.clone();
    wait_for(&sched, "3 replicas", || converged(&sched, &docker, service, 3)).await;

    // Constant load through the endpoint during the rollout.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let seen_v2 = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, seen_v2) = (stop.clone(), ok.clone(), failed.clone(), seen_v2.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match get(port).await {
                    Some(body) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if body == "page-2" {
                            seen_v2.store(true, Ordering::Relaxed);
                        }
                    }
                    None => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let old_hash = sched.service(service).unwrap().spec_hash;
    sched
        .set_specs(vec![web_spec(&docker, service, "2", 3, Some(port))])
        .await
        .unwrap();
    let new_hash = sched.service(service).unwrap().spec_hash;
    assert_ne!(old_hash, new_hash);
    // Replica by replica: never more than desired + max_surge containers.
    let mut most = 0;
    wait_for(&sched, "the rollout", || {
        most = most.max(active(&sched, service, &new_hash).0);
        converged(&sched, &docker, service, 3)
    })
    .await;
    // Let the load run on the new replicas for a moment, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} requests failed, {ok} succeeded during the rollout");
    assert!(ok > 20, "only {ok} requests went through");
    assert!(seen_v2.load(Ordering::Relaxed));
    assert!(most <= 4, "{most} containers at once with max_surge 1");
    let kinds: Vec<String> = sched
        .events(Some(service), 1000)
        .iter()
        .map(|e| format!("{:?}", e.kind))
        .collect();
    assert!(kinds.contains(&"RolloutStarted".to_string()) && kinds.contains(&"RolloutFinished".to_string()));

    // A third version; stop the scheduler once the rollout is under way.
    sched
        .set_specs(vec![web_spec(&docker, service, "3", 3, Some(port))])
        .await
        .unwrap();
    let v3 = sched.service(service).unwrap().spec_hash;
    wait_for(&sched, "the third rollout to start", || {
        let found = containers(&docker, service);
        let new = found.iter().filter(|c| c.2 == v3).count();
        let old = found.iter().filter(|c| c.2 != v3).count();
        async move { new >= 1 && old >= 2 }
    })
    .await;
    run.shutdown().await;
    drop(sched);
    let mid = containers(&docker, service);
    assert!(
        mid.iter().any(|c| c.2 != v3),
        "the rollout finished before the restart: {mid:?}"
    );

    // Strays a restarted scheduler must remove: a container of an unknown service, and one at a
    // replica index above desired.
    let image = docker.busybox_image();
    for (name, svc, replica) in [("ghost", "twt-ghost", "0"), ("extra", service, "7")] {
        docker.docker_ok(&[
            "run",
            "-d",
            "--name",
            &docker.container_name(name),
            "--label",
            &docker.label(),
            "--label",
            "tidewatch.managed=1",
            "--label",
            &format!("tidewatch.scheduler={}", docker.test_name()),
            "--label",
            &format!("tidewatch.service={svc}"),
            "--label",
            &format!("tidewatch.replica={replica}"),
            "--label",
            &format!("tidewatch.spec-hash={v3}"),
            &image,
            "/busybox",
            "sleep",
            "600",
        ]);
    }

    let run = Running::start(
        dir.path(),
        config(&docker, vec![web_spec(&docker, service, "3", 3, Some(port))]),
    )
    .await;
    let sched = run.sched.clone();
    let mut most = 0;
    let mut dups = false;
    wait_for(&sched, "the rollout to resume and finish", || {
        let (count, duplicates) = active(&sched, service, &v3);
        most = most.max(count);
        dups |= duplicates;
        converged(&sched, &docker, service, 3)
    })
    .await;
    assert!(most <= 4, "{most} replicas at once after the restart");
    assert!(!dups, "two replicas of the current spec at one index after the restart");
    wait_for(&sched, "the orphan of an unknown service to be removed", || {
        let gone = containers(&docker, "twt-ghost").is_empty();
        async move { gone }
    })
    .await;
    assert_eq!(get(port).await.as_deref(), Some("page-3"));

    sched.set_desired(service, 0).await.unwrap();
    wait_for(&sched, "scale to 0", || converged(&sched, &docker, service, 0)).await;
    run.shutdown().await;
}

/// Leaves the swarm when dropped, also when the test fails.
struct SwarmGuard<'a>(&'a DockerTest, bool);

impl Drop for SwarmGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            let _ = self.0.docker(&["swarm", "leave", "--force"]);
            // Swarm leaves its gateway bridge behind, holding an address pool.
            let _ = self.0.docker(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_scale_sequence() {
    let Some(docker) = tidewatch_testkit::require_docker("scheduler_swarm") else {
        return;
    };
    let state = docker.docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    let joined_here = state != "active";
    if joined_here {
        docker.docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
    let _guard = SwarmGuard(&docker, joined_here);
    let dir = tempfile::tempdir().unwrap();
    let service = "twt-swarm";
    let yaml = format!(
        r#"name: {service}
image: {image}
command: [/busybox, sh, -c, "trap 'exit 0' TERM; while :; do /busybox sleep 1; done"]
labels: {{"tidewatch.test": "{test}"}}
resources: {{limits: {{memory: 16MiB}}}}
stop_grace_period: 1s
replicas: 1
backend: swarm
"#,
        image = docker.busybox_image(),
        test = docker.test_name()
    );
    let spec = parse_services(&yaml, "test").unwrap().remove(0);
    let run = Running::start(dir.path(), config(&docker, vec![spec])).await;
    let sched = run.sched.clone();
    for n in [1u32, 5, 2, 0, 3] {
        sched.set_desired(service, n).await.unwrap();
        wait_for(&sched, &format!("{n} swarm tasks"), || {
            let sched = sched.clone();
            let docker = &docker;
            async move {
                let Ok(set) = sched.replicas(service).await else {
                    return false;
                };
                let running = set.replicas.iter().filter(|r| r.ready).count();
                let spec_replicas = docker.docker_ok(&[
                    "service",
                    "inspect",
                    "--format",
                    "{{.Spec.Mode.Replicated.Replicas}}",
                    service,
                ]);
                let containers = docker
                    .docker_ok(&[
                        "ps",
                        "-q",
                        "--filter",
                        &format!("label=com.docker.swarm.service.name={service}"),
                    ])
                    .lines()
                    .count();
                set.desired == n && running == n as usize && spec_replicas == n.to_string() && containers == n as usize
            }
        })
        .await;
    }
    let labels = docker.docker_ok(&[
        "service",
        "inspect",
        "--format",
        "{{index .Spec.Labels \"tidewatch.managed\"}} {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}}",
        service,
    ]);
    assert_eq!(labels, format!("1 {}", 16 << 20));
    run.shutdown().await;
    docker.docker_ok(&["service", "rm", service]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_health_secrets_and_unhealthy_replacement() {
    let Some(docker) = tidewatch_testkit::require_docker("scheduler_exec") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let secret_env = dir.path().join("token");
    let secret_file = dir.path().join("db-password");
    std::fs::write(&secret_env, "tok-123\n").unwrap();
    std::fs::write(&secret_file, "pw-456").unwrap();
    let service = "twt-exec";
    let yaml = format!(
        r#"name: {service}
image: {image}
command: [/busybox, sh, -c, "/busybox sleep 1; echo > /ready; exec /busybox sleep 600"]
labels: {{"tidewatch.test": "{test}"}}
secrets:
  - {{name: token, file: {token}, env: TOKEN}}
  - {{name: db-password, file: {password}}}
stop_signal: SIGKILL
healthcheck: {{exec: [/busybox, test, -f, /ready], interval: 500ms, timeout: 2s, retries: 2, start_period: 10s}}
replicas: 1
"#,
        image = docker.busybox_image(),
        test = docker.test_name(),
        token = secret_env.display(),
        password = secret_file.display(),
    );
    let spec = parse_services(&yaml, "test").unwrap().remove(0);
    let run = Running::start(&dir.path().join("data"), config(&docker, vec![spec])).await;
    let sched = run.sched.clone();
    wait_for(&sched, "the exec check to pass", || {
        converged(&sched, &docker, service, 1)
    })
    .await;
    let id = containers(&docker, service)[0].0.clone();
    // The injected secret is in the environment, the other one is mounted read-only.
    assert_eq!(
        docker.docker_ok(&["exec", &id, "/busybox", "sh", "-c", "echo $TOKEN"]),
        "tok-123"
    );
    assert_eq!(
        docker.docker_ok(&["exec", &id, "/busybox", "cat", "/run/secrets/db-password"]),
        "pw-456"
    );
    // The API never shows a secret value.
    let shown = serde_json::to_string(&sched.services()).unwrap();
    assert!(!shown.contains("tok-123") && !shown.contains("pw-456"));

    // The check starts failing: the replica is unhealthy and replaced.
    docker.docker_ok(&["exec", &id, "/busybox", "rm", "/ready"]);
    wait_for(&sched, "the unhealthy replica to be replaced", || {
        let id = id.clone();
        let sched = sched.clone();
        let docker = &docker;
        async move { converged(&sched, docker, service, 1).await && containers(docker, service)[0].0 != id }
    })
    .await;
    let kinds: Vec<String> = sched
        .events(Some(service), 1000)
        .iter()
        .map(|e| format!("{:?}", e.kind))
        .collect();
    assert!(kinds.contains(&"Unhealthy".to_string()), "{kinds:?}");
    sched.set_desired(service, 0).await.unwrap();
    wait_for(&sched, "scale to 0", || converged(&sched, &docker, service, 0)).await;
    run.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_dir_is_reloaded_live_and_bad_files_keep_the_specs() {
    let Some(docker) = tidewatch_testkit::require_docker("scheduler_reload") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services");
    std::fs::create_dir(&services).unwrap();
    let image = docker.busybox_image();
    std::fs::write(
        services.join("a.yaml"),
        format!("name: twt-a\nimage: {image}\nreplicas: 0\n"),
    )
    .unwrap();
    let mut config = config(&docker, Vec::new());
    config.services_dir = Some(services.clone());
    config.reload_interval = tidewatch_model::Duration::from_millis(200);
    let run = Running::start(&dir.path().join("data"), config).await;
    let sched = run.sched.clone();
    let names = |s: &Scheduler| s.services().into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(&sched), ["twt-a"]);

    // An invalid file: an event names the file and field, the specs in force stay.
    std::fs::write(services.join("b.yaml"), "name: twt-b\nimage: x\nreplica: 2\n").unwrap();
    wait_for(&sched, "the reload error event", || {
        let found = sched
            .events(None, 100)
            .iter()
            .any(|e| e.message.contains("b.yaml") && e.message.contains("replica"));
        async move { found }
    })
    .await;
    assert_eq!(names(&sched), ["twt-a"]);

    // Fixed: the new service appears; a changed spec is applied.
    std::fs::write(
        services.join("b.yaml"),
        format!("name: twt-b\nimage: {image}\nreplicas: 0\n"),
    )
    .unwrap();
    wait_for(&sched, "twt-b to be loaded", || {
        let ok = names(&sched) == ["twt-a", "twt-b"];
        async move { ok }
    })
    .await;
    run.shutdown().await;
}
