//! Figures for the scheduler (run by `bench/scheduler/run.sh`, which builds the image first):
//!
//! 1. time from `set_desired(n+1)` to the new replica ready (HTTP check passing), p50/p95, next
//!    to `docker service scale` on a single-node Swarm in the same run (the CLI's own wall time,
//!    which waits for convergence, and the time until Swarm reports the new task running);
//! 2. endpoint overhead: wrk through the endpoint vs. straight to the replica's published port,
//!    with a persistent-connection HTTP server as the replica.
//!
//! Usage: `bench_scheduler [SAMPLES] [WRK_SECONDS]` (defaults 20 and 10).

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::TaskState;
use bollard::query_parameters::ListTasksOptionsBuilder;
use tidewatch_model::Replicas;
use tidewatch_scheduler::{Scheduler, SchedulerConfig, parse_services};

const IMAGE: &str = "tidewatch-bench/keepalive";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    if !out.status.success() {
        panic!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// (requests/s, p99 latency in ms) from wrk's output.
fn wrk(url: &str, seconds: u64) -> (f64, f64, String) {
    let out = Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{seconds}s"), "--latency", url])
        .output()
        .expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rps = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|v| {
            let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
            let n: f64 = num.parse().unwrap_or(f64::NAN);
            match unit {
                "us" => n / 1000.0,
                "ms" => n,
                "s" => n * 1000.0,
                _ => f64::NAN,
            }
        })
        .unwrap_or(f64::NAN);
    (rps, p99, text)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let samples: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let wrk_seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let yaml = format!(
        "name: bench-ka\nimage: {IMAGE}\ncommand: ['8080']\nports: [{{container: 8080, endpoint: {port}}}]\n\
         stop_signal: SIGKILL\nstop_grace_period: 1s\n\
         healthcheck: {{http: /, interval: 1s, timeout: 1s, retries: 3}}\nreplicas: 1\n\
         labels: {{tidewatch.bench: scheduler}}\n"
    );
    let spec = parse_services(&yaml, "bench").unwrap();
    let config = SchedulerConfig {
        instance: "bench".into(),
        services: spec,
        reconcile_interval: tidewatch_model::Duration::from_millis(250),
        ..SchedulerConfig::default()
    };
    let sched = Scheduler::open(dir.path(), config, None).await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(sched.clone().run(async move {
        let _ = rx.await;
    }));
    let ready = |s: Arc<Scheduler>, n: usize| async move {
        s.replicas("bench-ka")
            .await
            .map(|r| r.replicas.iter().filter(|r| r.ready).count() == n && r.replicas.len() == n)
            .unwrap_or(false)
    };
    let containers = || {
        docker(&["ps", "-aq", "--filter", "label=tidewatch.service=bench-ka"])
            .lines()
            .count()
    };
    wait("1 replica", async || ready(sched.clone(), 1).await).await;

    // 1a. Scheduler: scale 1 -> 2, time to the new replica ready; back to 1.
    let mut ours = Vec::new();
    for _ in 0..samples {
        let t0 = Instant::now();
        sched.set_desired("bench-ka", 2).await.unwrap();
        wait("2 ready", async || ready(sched.clone(), 2).await).await;
        ours.push(t0.elapsed().as_secs_f64() * 1000.0);
        sched.set_desired("bench-ka", 1).await.unwrap();
        wait("back to 1", async || ready(sched.clone(), 1).await && containers() == 1).await;
    }

    // 2. Endpoint overhead, one replica.
    let id = docker(&["ps", "-q", "--filter", "label=tidewatch.service=bench-ka"]);
    let direct = docker(&["port", &id, "8080/tcp"]);
    let direct_port = direct.lines().next().unwrap().rsplit(':').next().unwrap().to_string();
    let (d_rps, d_p99, d_text) = wrk(&format!("http://127.0.0.1:{direct_port}/"), wrk_seconds);
    let (e_rps, e_p99, e_text) = wrk(&format!("http://127.0.0.1:{port}/"), wrk_seconds);
    eprintln!("--- wrk direct ---\n{d_text}\n--- wrk endpoint ---\n{e_text}");

    sched.set_desired("bench-ka", 0).await.unwrap();
    wait("0 replicas", async || containers() == 0).await;
    let _ = stop.send(());
    runner.await.unwrap();
    drop(sched);
    let _ = Command::new("docker").args(["network", "rm", "tw-bench-ka"]).output();

    // 1b. Swarm: `docker service scale` 1 -> 2 on a single-node swarm.
    let joined_here = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) != "active";
    if joined_here {
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
    }
    let client = bollard::Docker::connect_with_local_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let running = |n: usize| {
        let client = client.clone();
        async move {
            let filters = HashMap::from([
                ("service", vec!["bench-swarm".to_string()]),
                ("desired-state", vec!["running".into()]),
            ]);
            let options = ListTasksOptionsBuilder::new().filters(&filters).build();
            let tasks = client.list_tasks(Some(options)).await.unwrap_or_default();
            tasks.len() == n
                && tasks
                    .iter()
                    .all(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
        }
    };
    docker(&[
        "service",
        "create",
        "-d",
        "--name",
        "bench-swarm",
        "--label",
        "tidewatch.bench=scheduler",
        "--stop-signal",
        "SIGKILL",
        "--replicas",
        "1",
        IMAGE,
        "8080",
    ]);
    wait("swarm 1", async || running(1).await).await;
    let mut swarm_cli = Vec::new();
    let mut swarm_running = Vec::new();
    for _ in 0..samples {
        let t0 = Instant::now();
        let cli = std::thread::spawn(move || {
            docker(&["service", "scale", "bench-swarm=2"]);
            t0.elapsed().as_secs_f64() * 1000.0
        });
        wait("swarm 2", async || running(2).await).await;
        swarm_running.push(t0.elapsed().as_secs_f64() * 1000.0);
        swarm_cli.push(cli.join().unwrap());
        docker(&["service", "scale", "-d", "bench-swarm=1"]);
        wait("swarm back to 1", async || {
            running(1).await
                && docker(&[
                    "ps",
                    "-aq",
                    "--filter",
                    "label=com.docker.swarm.service.name=bench-swarm",
                ])
                .lines()
                .count()
                    == 1
        })
        .await;
    }
    docker(&["service", "rm", "bench-swarm"]);
    if joined_here {
        docker(&["swarm", "leave", "--force"]);
        let _ = Command::new("docker")
            .args(["network", "rm", "docker_gwbridge"])
            .output();
    }

    println!("## Scale to ready ({samples} samples each, 1 -> 2 replicas, same image)\n");
    println!("| what | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!(
        "| tidewatch scheduler: set_desired -> new replica passes its HTTP check | {:.0} | {:.0} |",
        percentile(&ours, 50.0),
        percentile(&ours, 95.0)
    );
    println!(
        "| swarm: `docker service scale` -> task running (API poll) | {:.0} | {:.0} |",
        percentile(&swarm_running, 50.0),
        percentile(&swarm_running, 95.0)
    );
    println!(
        "| swarm: `docker service scale` CLI wall time (waits for convergence) | {:.0} | {:.0} |",
        percentile(&swarm_cli, 50.0),
        percentile(&swarm_cli, 95.0)
    );
    println!(
        "\nratio p50 tidewatch / swarm task running: {:.2}",
        percentile(&ours, 50.0) / percentile(&swarm_running, 50.0)
    );
    println!("\n## Endpoint overhead (wrk -t2 -c16 -d{wrk_seconds}s --latency, keep-alive server, 1 replica)\n");
    println!("| path | requests/s | p99 ms |");
    println!("|---|---|---|");
    println!("| straight to the replica's published port | {d_rps:.0} | {d_p99:.2} |");
    println!("| through the endpoint | {e_rps:.0} | {e_p99:.2} |");
    println!(
        "\nthroughput ratio endpoint/direct: {:.2}; added p99: {:.2} ms",
        e_rps / d_rps,
        e_p99 - d_p99
    );
}
