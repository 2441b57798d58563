//! The log path's throughput figure (ignored in normal runs; `bench/collector/logs.sh` runs it
//! in release): a file of 200-byte lines is tailed, buffered on disk and shipped to a real
//! `tidewatch server`, and the agent's CPU time (this process: `/proc/self/stat` utime+stime)
//! is divided into the bytes. The file is written before the clock starts, and the server runs
//! on another core (`taskset`), so neither is counted.

use std::io::Write;
use std::time::{Duration, Instant};

use tidewatch_collector::agent::{Agent, AgentConfig};
use tidewatch_testkit::TestServer;
use tokio_util::sync::CancellationToken;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz = rustix::param::clock_ticks_per_second() as f64;
    ticks / hz
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by bench/collector/logs.sh in release"]
async fn log_path_throughput() {
    let mib: usize = std::env::var("TW_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let server = TestServer::start(&["server"]);
    server.wait_ready(Duration::from_secs(60)).unwrap();
    if let Ok(core) = std::env::var("TW_SERVER_CPU") {
        let ok = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &core, &server.pid().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "taskset failed");
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bench.log");
    let lines = mib * 1024 * 1024 / 200;
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..lines {
            // 199 bytes of text plus the newline.
            writeln!(f, "{i:012} {}", "abcdefghij".repeat(19).get(..186).unwrap()).unwrap();
        }
    }
    let yaml = format!(
        "shipper: {{urls: [\"{}\"]}}\ndocker: {{enabled: false}}\nbuffer: {{max_size: 256MiB}}\nfiles: [{{paths: [\"{}\"], labels: {{job: bench}}}}]\n",
        server.url(""),
        path.display()
    );
    let config: AgentConfig = yaml_serde::from_str(&yaml).unwrap();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let agent = Agent::start(
        config,
        &tmp.path().join("agent"),
        "bench".into(),
        Vec::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let metrics = agent.metrics();
    let labels = vec![
        ("stream".to_string(), "logs".to_string()),
        ("url".to_string(), server.url("")),
    ];
    loop {
        let sent = metrics.records_sent.get_or_create(&labels).get();
        if sent >= lines as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_seconds() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let total_mib = (lines * 200) as f64 / (1024.0 * 1024.0);
    println!(
        "log path: {lines} lines of 200 B = {total_mib:.1} MiB; agent CPU {cpu:.2} s; wall {wall:.2} s; \
         {:.1} MiB per agent CPU-second; {:.1} MiB/s wall",
        total_mib / cpu,
        total_mib / wall
    );
    agent.abort().await;
}
