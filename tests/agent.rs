//! `tidewatch agent` as its own process, shipping to a `tidewatch server`: a container's numbered
//! lines reach the server exactly once, in order, also when the agent is killed with SIGKILL
//! mid-stream and restarted on the same data folder.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidewatch_testkit::{TestServer, require_docker};

use crate::{EXIT_WITHIN, READY_WITHIN, eventually};

const LINES: u64 = 400;

/// The numbers of the container's stdout lines the server holds, in the order it returns them.
fn stored(server: &TestServer, container: &str) -> Vec<u64> {
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() - 3_600_000_000_000;
    let (status, body) = server.get(&format!(
        "/loki/api/v1/query_range?query=%7Bcontainer%3D%22{container}%22%2Cstream%3D%22stdout%22%7D&limit=5000&direction=forward&start={start}"
    ));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        for e in s["values"].as_array().into_iter().flatten() {
            let line = e[1].as_str().unwrap_or("");
            if let Some(n) = line.strip_prefix("line ").and_then(|n| n.parse().ok()) {
                out.push(n);
            }
        }
    }
    out
}

#[test]
fn the_agent_process_killed_mid_stream_loses_and_doubles_no_line() {
    let Some(docker) = require_docker("agent_process_kill_9") else {
        return;
    };
    let server = TestServer::start(&["server"]);
    server.wait_ready(READY_WITHIN).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.yaml");
    let agent_port = tidewatch_testkit::free_port();
    std::fs::write(
        &config,
        format!(
            "agent:\n  listen: 127.0.0.1:{agent_port}\ncollector:\n  shipper: {{urls: [\"{}\"]}}\n  docker: {{include: {{labels: [\"{}\"]}}}}\n  cgroup: {{enabled: false}}\n  host: {{enabled: false}}\n",
            server.url(""),
            docker.label(),
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "agent"];
    let agent = TestServer::start_in(dir.path(), &args);
    agent.wait_ready(READY_WITHIN).unwrap();

    let name = docker.container_name("numbers");
    docker.run_busybox(
        "numbers",
        &[],
        &format!(
            "i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo \"line $i\"; /busybox usleep 20000; done; sleep 3600"
        ),
    );
    // Kill the agent while the container is still writing.
    assert!(
        eventually(READY_WITHIN, || !stored(&server, &name).is_empty()),
        "no line arrived; agent logs:\n{}",
        agent.logs()
    );
    agent.signal("KILL");
    let mut agent = agent;
    assert!(agent.wait_exit(EXIT_WITHIN).is_some(), "SIGKILL did not stop the agent");
    let before = stored(&server, &name).len();
    assert!(
        (before as u64) < LINES,
        "the container finished before the kill; make it slower"
    );

    let agent2 = TestServer::start_in(dir.path(), &args);
    agent2.wait_ready(READY_WITHIN).unwrap();
    let mut got = Vec::new();
    let complete = eventually(Duration::from_secs(90), || {
        got = stored(&server, &name);
        got.len() as u64 >= LINES
    });
    // Wait a little more so that a late duplicate would show.
    std::thread::sleep(Duration::from_secs(2));
    got = stored(&server, &name);
    assert!(
        complete,
        "{} of {LINES} lines after the restart; agent logs:\n{}",
        got.len(),
        agent2.logs()
    );
    let expected: Vec<u64> = (1..=LINES).collect();
    assert_eq!(
        got, expected,
        "every line exactly once, in order ({before} stored before the kill)"
    );
}
