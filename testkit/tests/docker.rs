//! The Docker helper against a real engine; every test here skips cleanly without one.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tidewatch_testkit::require_docker;

#[test]
fn busybox_container_is_labelled_and_removed() {
    let Some(docker) = require_docker("busybox_container_is_labelled_and_removed") else {
        return;
    };
    let label = docker.label();
    assert_eq!(label, "tidewatch.test=busybox_container_is_labelled_and_removed");

    let id = docker.run_busybox("echo", &[], "echo hello from busybox");
    docker.docker_ok(&["wait", &id]);
    assert!(docker.docker_ok(&["logs", &id]).contains("hello from busybox"));
    let labelled = docker.docker_ok(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"tidewatch.test\"}}",
        &id,
    ]);
    assert_eq!(labelled, "busybox_container_is_labelled_and_removed");
    // Networks and volumes carrying the label are cleaned up too.
    docker.docker_ok(&["network", "create", "--label", &label, "tw-test-busybox-net"]);
    docker.docker_ok(&["volume", "create", "--label", &label, "tw-test-busybox-vol"]);

    drop(docker);
    let filter = format!("label={label}");
    for args in [
        vec!["ps", "-aq", "--filter", &filter],
        vec!["network", "ls", "-q", "--filter", &filter],
        vec!["volume", "ls", "-q", "--filter", &filter],
    ] {
        let out = Command::new("docker").args(&args).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "left behind by `docker {}`",
            args.join(" ")
        );
    }
}

#[test]
fn cleanup_runs_when_a_test_panics() {
    let label = "tidewatch.test=cleanup_runs_when_a_test_panics";
    let started = AtomicBool::new(false);
    let result = thread::scope(|s| {
        s.spawn(|| {
            let Some(docker) = require_docker("cleanup_runs_when_a_test_panics") else {
                return;
            };
            docker.run_busybox("sleeper", &[], "sleep 600");
            started.store(true, Ordering::SeqCst);
            panic!("deliberate panic with a container running");
        })
        .join()
    });
    if !started.load(Ordering::SeqCst) {
        // Skipped (no engine), or failed before the deliberate panic: pass that failure on.
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
        return;
    }
    assert!(result.is_err());
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "the container outlived the panicking test"
    );
}

#[test]
fn docker_tests_run_one_at_a_time() {
    let inside = AtomicBool::new(false);
    let hold = |name: &str| {
        let Some(docker) = require_docker(name) else {
            return false;
        };
        assert!(
            !inside.swap(true, Ordering::SeqCst),
            "{name} got the lock while another test held it"
        );
        thread::sleep(Duration::from_millis(300));
        inside.store(false, Ordering::SeqCst);
        drop(docker);
        true
    };
    let start = Instant::now();
    let ran = thread::scope(|s| {
        let a = s.spawn(|| hold("lock_holder_a"));
        let b = s.spawn(|| hold("lock_holder_b"));
        [a.join().unwrap(), b.join().unwrap()]
    });
    if ran == [true, true] {
        assert!(
            start.elapsed() >= Duration::from_millis(600),
            "the two holders overlapped"
        );
    }
}

/// Does nothing but ask for Docker; `skips_or_fails_without_engine` runs it in a child process with
/// an unreachable engine.
#[test]
fn skip_probe() {
    let Some(_docker) = require_docker("skip_probe") else {
        return;
    };
}

#[test]
fn skips_or_fails_without_engine() {
    let probe = |require: bool| {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["skip_probe", "--exact", "--nocapture", "--test-threads=1"])
            .env("DOCKER_HOST", "unix:///nonexistent")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("TIDEWATCH_REQUIRE_DOCKER");
        if require {
            cmd.env("TIDEWATCH_REQUIRE_DOCKER", "1");
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (ok, output) = probe(false);
    assert!(
        ok,
        "without TIDEWATCH_REQUIRE_DOCKER the test passes (skips):\n{output}"
    );
    assert!(
        output.contains("skipping skip_probe: no Docker engine answers ("),
        "{output}"
    );
    assert!(
        output.contains("set TIDEWATCH_REQUIRE_DOCKER=1 to fail instead"),
        "{output}"
    );

    let (ok, output) = probe(true);
    assert!(!ok, "with TIDEWATCH_REQUIRE_DOCKER=1 the test fails:\n{output}");
    assert!(
        output.contains("skip_probe needs a Docker engine and TIDEWATCH_REQUIRE_DOCKER is set, but none answers ("),
        "{output}"
    );
}
