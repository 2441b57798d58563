//! Start, readiness, the data folder lock, `/metrics`, limits, and graceful shutdown.

use tidewatch_testkit::TestServer;

use crate::{EXIT_WITHIN, READY_WITHIN};

#[test]
fn up_on_an_empty_data_folder_becomes_ready_and_serves_its_metrics() {
    let server = TestServer::start(&["up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    assert_eq!(server.get("/-/healthy").0, 200);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "tidewatch_build_info{",
    ] {
        assert!(metrics.contains(name), "no {name} in /metrics:\n{metrics}");
    }
    assert!(server.data_dir().join("LOCK").is_file());
    assert!(server.data_dir().join("collector").is_dir());
}

#[test]
fn sigterm_exits_zero_after_flushing_its_log_and_releasing_the_data_folder() {
    let mut server = TestServer::start(&["up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    server.signal("TERM");
    let status = server.wait_exit(EXIT_WITHIN).expect("exits after SIGTERM");
    assert!(status.success(), "{status}; logs:\n{}", server.logs());
    // The log writer is asynchronous: the last line only appears if it was flushed at exit.
    let logs = server.logs();
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.contains("\"message\":\"shutdown complete\""),
        "last log line: {last}\n{logs}"
    );
    // The lock is released: a new server opens the same data folder.
    let again = TestServer::start_in(server.dir(), &["up"]);
    again.wait_ready(READY_WITHIN).unwrap();
}

#[test]
fn a_second_process_on_the_same_data_folder_is_refused() {
    let first = TestServer::start(&["server"]);
    first.wait_ready(READY_WITHIN).unwrap();
    let mut second = TestServer::start_in(first.dir(), &["server"]);
    let status = second.wait_exit(EXIT_WITHIN).expect("the second server gives up");
    assert_eq!(status.code(), Some(1));
    let logs = second.logs();
    assert!(logs.contains("is in use by another Tidewatch server (pid"), "{logs}");
    assert!(logs.contains(&first.pid().to_string()), "names the owner: {logs}");
    assert_eq!(first.get("/-/ready").0, 200, "the first server is unharmed");
}

#[test]
fn after_kill_9_the_lock_does_not_block_a_restart() {
    let mut server = TestServer::start(&["up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    server.signal("KILL");
    server.wait_exit(EXIT_WITHIN).expect("killed");
    let again = TestServer::start_in(server.dir(), &["up"]);
    again.wait_ready(READY_WITHIN).unwrap();
}

#[test]
fn request_bodies_over_the_limit_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tw.yaml");
    std::fs::write(&config, "server:\n  max_request_body: 1KiB\n").unwrap();
    let server = TestServer::start_in(dir.path(), &["--config", config.to_str().unwrap(), "up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    let (status, _) = server.post("/-/reload", &"x".repeat(4096), "text/plain");
    assert_eq!(status, 413);
    let (status, _) = server.post("/-/reload", "", "text/plain");
    assert_eq!(status, 200);
}

#[test]
fn the_agent_alone_serves_health_and_metrics() {
    let server = TestServer::start(&["agent"]);
    server.wait_ready(READY_WITHIN).unwrap();
    assert!(server.get("/metrics").1.contains("process_resident_memory_bytes"));
    assert!(server.data_dir().join("collector/LOCK").is_file());
    assert!(
        !server.data_dir().join("LOCK").exists(),
        "the agent does not take the server's lock"
    );
}
