//! Live reload: on file change, on SIGHUP and on POST /-/reload; a broken file keeps the running
//! configuration.

use std::path::Path;

use tidewatch_testkit::TestServer;

use crate::{READY_WITHIN, eventually};

const RELOAD_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

fn running_yaml(server: &TestServer) -> String {
    let (status, body) = server.get("/api/v1/status/config");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["yaml"].as_str().unwrap().to_string()
}

fn reload_metric(server: &TestServer) -> Option<String> {
    let metrics = server.get("/metrics").1;
    metrics.lines().find_map(|l| {
        l.strip_prefix("tidewatch_config_last_reload_successful ")
            .map(str::to_string)
    })
}

/// Replaces the file the way editors do: write a new file, rename it over the old one.
fn replace(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_broken_file_is_refused_and_the_running_configuration_stays() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tidewatch.yaml");
    std::fs::write(&config, "log:\n  level: info\nagent:\n  node: first\n").unwrap();
    let server = TestServer::start_in(dir.path(), &["--config", config.to_str().unwrap(), "up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    assert!(running_yaml(&server).contains("node: first"));

    // A change on disk with an unknown key: refused, reported, old configuration kept.
    replace(&config, "log:\n  level: info\nagent:\n  node: second\n  nod: typo\n");
    assert!(
        eventually(RELOAD_WITHIN, || reload_metric(&server).as_deref() == Some("0")),
        "the watcher did not report a failed reload; logs:\n{}",
        server.logs()
    );
    assert!(running_yaml(&server).contains("node: first"));
    assert!(server.logs().contains("agent.nod: unknown key"), "{}", server.logs());
    let (status, body) = server.post("/-/reload", "", "text/plain");
    assert_eq!(status, 500);
    assert!(body.contains("tidewatch.yaml:5:3: agent.nod: unknown key"), "{body}");
    assert_eq!(server.get("/-/ready").0, 200, "still serving");

    // A valid file by SIGHUP (the watcher may also see it; either applies it).
    std::fs::write(&config, "log:\n  level: debug\nagent:\n  node: third\n").unwrap();
    server.signal("HUP");
    assert!(
        eventually(RELOAD_WITHIN, || running_yaml(&server).contains("node: third")),
        "the valid file was not applied; logs:\n{}",
        server.logs()
    );
    assert!(running_yaml(&server).contains("level: debug"));
    assert!(eventually(RELOAD_WITHIN, || reload_metric(&server).as_deref() == Some("1")));
}

#[test]
fn post_reload_applies_a_valid_file_and_command_line_overrides_survive() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tw.yaml");
    std::fs::write(&config, "agent:\n  node: a\n").unwrap();
    let server = TestServer::start_in(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--log-level", "warn", "server"],
    );
    server.wait_ready(READY_WITHIN).unwrap();
    std::fs::write(&config, "agent:\n  node: b\nlog:\n  level: trace\n").unwrap();
    let (status, body) = server.post("/-/reload", "", "text/plain");
    assert_eq!(status, 200, "{body}");
    let yaml = running_yaml(&server);
    assert!(yaml.contains("node: b"), "{yaml}");
    assert!(yaml.contains("level: warn"), "--log-level wins over the file: {yaml}");
}
