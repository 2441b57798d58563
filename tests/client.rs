//! The client subcommands `tidewatch query` and `tidewatch logs` against a running server.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use tidewatch_testkit::TestServer;

use crate::{READY_WITHIN, eventually};

fn client(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidewatch"))
        .args(args)
        .args(["--server", &server.url("")])
        .env_remove("TIDEWATCH_CONFIG")
        .output()
        .expect("run tidewatch");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn query_prints_tables_json_and_charts_and_names_the_error_of_a_bad_query() {
    let server = TestServer::start(&["up"]);
    server.wait_ready(READY_WITHIN).unwrap();

    let (ok, out, err) = client(&server, &["query", r#"label_replace(vector(42), "job", "a", "", "")"#]);
    assert!(ok, "{err}");
    assert!(out.contains(r#"{job="a"}  42"#), "{out}");

    let (ok, out, err) = client(&server, &["query", "vector(7)", "--output", "json"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("--output json prints JSON");
    assert_eq!(json["resultType"], "vector");
    assert_eq!(json["result"][0]["value"][1], "7");

    let (ok, out, err) = client(
        &server,
        &[
            "query",
            "vector(time())",
            "--range",
            "10m",
            "--step",
            "1m",
            "-o",
            "chart",
        ],
    );
    assert!(ok, "{err}");
    // A rising line: the top row has dots at its right end, the bottom row at its left end.
    let rows: Vec<&str> = out.lines().filter(|l| l.contains('┤')).collect();
    assert_eq!(rows.len(), 16, "{out}");
    let plot = |row: &str| row.split('┤').nth(1).unwrap().trim_end().to_string();
    assert!(
        plot(rows[0]).chars().count() > plot(rows[15]).trim_start().chars().count(),
        "{out}"
    );
    assert!(plot(rows[15]).starts_with(|c: char| c != ' '), "{out}");

    let (ok, _, err) = client(&server, &["query", "sum(("]);
    assert!(!ok);
    assert!(err.contains("bad_data") && err.contains("/api/v1/query"), "{err}");
}

#[test]
fn logs_prints_lines_of_every_matching_stream_oldest_first() {
    let server = TestServer::start(&["up"]);
    server.wait_ready(READY_WITHIN).unwrap();
    let ns = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64 - 60_000_000_000;
    let body = serde_json::json!({"streams": [
        {"stream": {"job": "cli-a"}, "values": [[ns.to_string(), "first a"], [(ns + 2).to_string(), "third a"]]},
        {"stream": {"job": "cli-b"}, "values": [[(ns + 1).to_string(), "second b"]]},
        {"stream": {"job": "other"}, "values": [[(ns + 1).to_string(), "not me"]]},
    ]});
    let (status, answer) = server.post("/loki/api/v1/push", &body.to_string(), "application/json");
    assert_eq!(status, 204, "{answer}");

    let mut out = String::new();
    assert!(
        eventually(READY_WITHIN, || {
            let (ok, o, err) = client(&server, &["logs", r#"{job=~"cli-.*"}"#, "--since", "5m"]);
            assert!(ok, "{err}");
            out = o;
            out.lines().count() == 3
        }),
        "three lines expected:\n{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(r#"{job="cli-a"} first a"#), "{out}");
    assert!(lines[1].ends_with(r#"{job="cli-b"} second b"#), "{out}");
    assert!(lines[2].ends_with(r#"{job="cli-a"} third a"#), "{out}");

    let (ok, _, err) = client(&server, &["logs", r#"count_over_time({job="cli-a"}[1m])"#]);
    assert!(!ok);
    assert!(err.contains("metric query"), "{err}");
}

#[test]
fn rules_check_and_test_follow_promtool_and_silences_go_through_the_alertmanager_api() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "groups:\n  - name: g\n    rules:\n      - alert: Up\n        expr: up == 0\n        for: 1m\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(up\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidewatch"))
            .args(args)
            .env_remove("TIDEWATCH_CONFIG")
            .output()
            .expect("run tidewatch")
    };
    assert!(run(&["rules", "check", good.to_str().unwrap()]).status.success());
    let out = run(&["rules", "check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("bad.yml") && text.contains("Broken"), "{text}");

    // A promtool unit test: a passing one exits 0, a wrong expectation exits 1.
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 1m\n",
    )
    .unwrap();
    let test = |expected: &str| {
        let t = dir.path().join("test.yml");
        std::fs::write(
            &t,
            format!(
                "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{{job=\"a\"}}'\n        values: '0x5'\n    alert_rule_test:\n      - eval_time: 3m\n        alertname: Down\n        exp_alerts:\n          - exp_labels: {{job: {expected}}}\n"
            ),
        )
        .unwrap();
        run(&["rules", "test", t.to_str().unwrap()])
    };
    assert!(
        test("a").status.success(),
        "{}",
        String::from_utf8_lossy(&test("a").stdout)
    );
    assert!(!test("b").status.success());

    let server = TestServer::start(&["server"]);
    server.wait_ready(READY_WITHIN).unwrap();
    let (ok, id, err) = client(
        &server,
        &[
            "alerts",
            "silence",
            "add",
            "alertname=Down",
            r#"job=~"a|b""#,
            "--duration",
            "2h",
            "--comment",
            "test",
        ],
    );
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    assert!(!id.is_empty());
    let (ok, list, err) = client(&server, &["alerts", "silence", "list"]);
    assert!(ok, "{err}");
    assert!(
        list.contains(&id) && list.contains("active") && list.contains(r#"job=~"a|b""#),
        "{list}"
    );
    let (ok, _, err) = client(&server, &["alerts", "silence", "expire", &id]);
    assert!(ok, "{err}");
    let (_, list, _) = client(&server, &["alerts", "silence", "list"]);
    assert!(list.contains("expired"), "{list}");
    let (ok, _, err) = client(&server, &["alerts", "silence", "add", "not a matcher"]);
    assert!(!ok && err.contains("matcher"), "{err}");
}
