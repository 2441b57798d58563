//! End to end against a real Docker engine and a real `tidewatch server`: container logs reach
//! the server exactly once, in order per stream, with the right labels, across an agent crash,
//! a server outage, and json-file rotation.
//!
//! The agent runs in process; a crash is simulated by aborting its tasks (nothing is written on
//! the way out, as with kill -9) and opening a new agent on the same data folder.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidewatch_collector::agent::{Agent, AgentConfig, AgentHandle};
use tidewatch_testkit::{DockerTest, TestServer};
use tokio_util::sync::CancellationToken;

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every line of the streams matching `selector`, oldest first, paging through the server's
/// per-query limit: `(labels, timestamp ns, line)`.
fn fetch(base: &str, selector: &str) -> Vec<(serde_json::Value, i64, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let mut out = Vec::new();
    let mut start: i64 = 0;
    let end = i64::MAX / 2;
    loop {
        let url = format!(
            "{base}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=5000&direction=forward",
            encode(selector)
        );
        let mut resp = agent.get(&url).call().expect("query_range answers");
        let body = resp.body_mut().read_to_string().unwrap();
        assert_eq!(resp.status(), 200, "{url}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut page = Vec::new();
        for s in v["data"]["result"].as_array().unwrap() {
            for e in s["values"].as_array().unwrap() {
                let ts: i64 = e[0].as_str().unwrap().parse().unwrap();
                page.push((s["stream"].clone(), ts, e[1].as_str().unwrap().to_string()));
            }
        }
        page.sort_by_key(|p| p.1);
        let n = page.len();
        let last = page.last().map(|p| p.1);
        out.extend(page);
        match last {
            Some(ts) if n >= 5000 => start = ts + 1,
            _ => break,
        }
    }
    out
}

fn config(test: &DockerTest, url: &str) -> AgentConfig {
    let yaml = format!(
        r#"
shipper:
  urls: ["{url}"]
  batch_max_age: 200ms
  retry_min: 50ms
  retry_max: 1s
docker:
  include:
    labels: ["{}"]
  exclude:
    labels: ["tidewatch.skip=yes"]
  multiline_timeout: 300ms
"#,
        test.label()
    );
    yaml_serde::from_str(&yaml).expect("the example configuration parses")
}

async fn start_agent(test: &DockerTest, url: &str, data: &Path) -> (AgentHandle, CancellationToken) {
    let cancel = CancellationToken::new();
    let handle = Agent::start(config(test, url), data, "node-1".into(), Vec::new(), cancel.clone())
        .await
        .expect("agent starts");
    (handle, cancel)
}

/// A `tidewatch server` on a fixed address (TestServer always picks a new port, and the agent
/// must find the restarted server where the first one was).
struct FixedServer(Child);

impl FixedServer {
    fn start(addr: &str, data_dir: &Path, log: &Path) -> FixedServer {
        let child = Command::new(tidewatch_testkit::tidewatch_bin())
            .args(["--log-format", "json", "server", "--listen", addr, "--data-dir"])
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("tidewatch starts");
        let url = format!("http://{addr}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&url).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "restarted server never ready: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        FixedServer(child)
    }
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls until the server holds `want` lines for `selector` or `within` passes, then returns them.
async fn wait_for(base: &str, selector: &str, want: usize, within: Duration) -> Vec<(serde_json::Value, i64, String)> {
    let deadline = Instant::now() + within;
    loop {
        let base2 = base.to_string();
        let sel = selector.to_string();
        let got = tokio::task::spawn_blocking(move || fetch(&base2, &sel)).await.unwrap();
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn check_stream(lines: &[(serde_json::Value, i64, String)], prefix: &str, n: usize, long_every: usize) {
    let mut want = Vec::new();
    for i in 1..=n {
        want.push(format!("{prefix} {i}"));
        if long_every > 0 && i % long_every == 0 {
            want.push(format!("long {i} {}", "x".repeat(40_000)));
        }
    }
    let got: Vec<&str> = lines.iter().map(|l| l.2.as_str()).collect();
    if got.len() != want.len() || got.iter().zip(&want).any(|(a, b)| a != b) {
        let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{prefix}: got {} lines, want {}; first difference at {:?}: got {:?}",
            got.len(),
            want.len(),
            first_bad,
            first_bad.map(|i| &got[i][..got[i].len().min(80)])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lines_arrive_once_across_agent_crash_and_server_outage() {
    let Some(docker) = tidewatch_testkit::require_docker("delivery_crash_outage") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let first = TestServer::start_in(&server_dir, &["server"]);
    first.wait_ready(Duration::from_secs(60)).unwrap();
    let base = first.url("");
    let addr = first.addr().to_string();
    let agent_data = tmp.path().join("agent");

    // 600 numbered lines per stream, every 50th followed by a 40,000-byte line on stdout
    // (json-file stores it as three partial messages).
    let n = 600;
    let script = format!(
        r#"L=$(/busybox head -c 40000 /dev/zero | /busybox tr "\0" x)
i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo "out $i"; echo "err $i" >&2
if [ $((i % 50)) -eq 0 ]; then echo "long $i $L"; fi; /busybox usleep 5000; done"#
    );
    let (mut agent, _c) = start_agent(&docker, &base, &agent_data).await;
    let id = docker.run_busybox("writer", &[], &script);
    let name = docker.container_name("writer");
    let out_sel = format!(r#"{{container="{name}", stream="stdout"}}"#);
    let err_sel = format!(r#"{{container="{name}", stream="stderr"}}"#);

    // Crash the agent mid-stream and start it again on the same data folder.
    let some = wait_for(&base, &err_sel, 100, Duration::from_secs(60)).await;
    assert!(some.len() >= 100 && some.len() < n, "mid-stream: {} lines", some.len());
    agent.abort().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a2, _c2) = start_agent(&docker, &base, &agent_data).await;
    agent = a2;

    // Take the server down for 20 s (the issue's outage) while the container keeps writing,
    // then bring it back on the same address and data; the agent holds everything in its disk
    // buffer meanwhile.
    let some = wait_for(&base, &err_sel, 300, Duration::from_secs(60)).await;
    assert!(
        some.len() < n,
        "the server must go down mid-stream ({} lines already)",
        some.len()
    );
    drop(first);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let _second = FixedServer::start(&addr, &server_dir.join("data"), &tmp.path().join("server2.log"));

    docker.docker_ok(&["wait", &id]);
    let total_out = n + n / 50;
    let out = wait_for(&base, &out_sel, total_out, Duration::from_secs(90)).await;
    let err = wait_for(&base, &err_sel, n, Duration::from_secs(30)).await;
    check_stream(&out, "out", n, 50);
    check_stream(&err, "err", n, 0);
    let labels = &out[0].0;
    assert_eq!(labels["container"], name.as_str());
    assert_eq!(labels["container_id"], id.as_str());
    assert_eq!(labels["image"], "tidewatch-test/busybox");
    assert_eq!(labels["service"], name.as_str());
    assert_eq!(labels["node"], "node-1");
    assert_eq!(err[0].0["stream"], "stderr");
    let sent = agent.metrics();
    drop(sent);
    agent.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_file_rotation_loses_nothing() {
    let Some(docker) = tidewatch_testkit::require_docker("delivery_rotation") else {
        return;
    };
    let server = TestServer::start(&["server"]);
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let base = server.url("");
    let agent_data = tempfile::tempdir().unwrap();
    let (agent, _c) = start_agent(&docker, &base, agent_data.path()).await;
    // About 3.5 MB through json-file files of 1 MB (max 3 kept) at ~1,500 lines/s: rotated
    // several times, but the agent reads far faster than Docker drops files.
    let n = 14_000;
    let script = format!(
        r#"P=$(/busybox head -c 200 /dev/zero | /busybox tr "\0" p)
i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo "line $i $P"; if [ $((i % 100)) -eq 0 ]; then /busybox usleep 60000; fi; done"#
    );
    let id = docker.run_busybox(
        "rotating",
        &[
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=3",
        ],
        &script,
    );
    let name = docker.container_name("rotating");
    docker.docker_ok(&["wait", &id]);
    let sel = format!(r#"{{container="{name}", stream="stdout"}}"#);
    let got = wait_for(&base, &sel, n, Duration::from_secs(90)).await;
    let pad = "p".repeat(200);
    let want: Vec<String> = (1..=n).map(|i| format!("line {i} {pad}")).collect();
    let lines: Vec<&str> = got.iter().map(|l| l.2.as_str()).collect();
    if lines.len() != want.len() {
        let mut seen = std::collections::HashMap::new();
        for (i, l) in got.iter().enumerate() {
            if let Some(j) = seen.insert(l.2.clone(), i) {
                eprintln!(
                    "duplicate {:?} at {} (ts {}) and {} (ts {})",
                    &l.2[..12],
                    j,
                    got[j].1,
                    i,
                    l.1
                );
            }
        }
    }
    assert_eq!(lines.len(), want.len(), "every line exactly once");
    assert!(lines.iter().zip(&want).all(|(a, b)| a == b), "in order");
    agent.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_multiline_label_and_filters() {
    let Some(docker) = tidewatch_testkit::require_docker("delivery_tty_multiline") else {
        return;
    };
    let server = TestServer::start(&["server"]);
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let base = server.url("");
    let agent_data = tempfile::tempdir().unwrap();
    let (agent, _c) = start_agent(&docker, &base, agent_data.path()).await;
    let skipped = docker.run_busybox(
        "skipped",
        &["--label", "tidewatch.skip=yes"],
        "echo never shipped; sleep 30",
    );
    // A TTY container whose stack-trace-like lines are joined by its label's start pattern,
    // with one line longer than json-file's 16 KiB pieces.
    let script = r#"sleep 1; L=$(/busybox head -c 20000 /dev/zero | /busybox tr "\0" z)
echo "start 1"; echo "  at a"; echo "  at b"; echo "start 2 $L"; echo "start 3"; sleep 3"#;
    let id = docker.run_busybox("tty", &["-t", "--label", "tidewatch.multiline.start=^start"], script);
    let name = docker.container_name("tty");
    let mut containers = agent.containers();
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        containers.wait_for(|c| c.iter().any(|c| c.id == id)),
    )
    .await
    .expect("discovery publishes the container")
    .unwrap()
    .clone();
    let info = seen.iter().find(|c| c.id == id).unwrap();
    assert!(info.tty);
    assert_eq!(info.name, name);
    assert!(info.pid > 0);
    assert!(!seen.iter().any(|c| c.id == skipped), "excluded by label");

    let sel = format!(r#"{{container="{name}"}}"#);
    let got = wait_for(&base, &sel, 3, Duration::from_secs(60)).await;
    let lines: Vec<&str> = got.iter().map(|l| l.2.as_str()).collect();
    let long = format!("start 2 {}", "z".repeat(20_000));
    assert_eq!(lines, ["start 1\n  at a\n  at b", long.as_str(), "start 3"]);
    assert_eq!(got[0].0["stream"], "stdout");
    let skipped_name = docker.container_name("skipped");
    let none = fetch(&base, &format!(r#"{{container="{skipped_name}"}}"#));
    assert!(none.is_empty(), "an excluded container's logs are not shipped");
    agent.abort().await;
}
