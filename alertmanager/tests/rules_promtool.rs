//! `promtool test rules` conformance: every unit-test file in ../shared/conformance/promtool/
//! gives the verdict Debian's promtool 2.42 gives (run live when /usr/bin/promtool exists,
//! otherwise the verdicts recorded from it), on the store's real PromQL engine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tidewatch_alertmanager::rules::{MemSeries, TestEngine, test_rules};
use tidewatch_model::{Matcher, Query, Series};
use tidewatch_store::promql::{Engine, EngineOptions, EvalError, SeriesSource};

struct Source(Arc<MemSeries>);

impl SeriesSource for Source {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<Series>, EvalError> {
        Ok(self.0.select(matchers, mint, maxt))
    }
}

struct StoreEngine;

impl TestEngine for StoreEngine {
    fn engine(&self, series: Arc<MemSeries>) -> Arc<dyn Query> {
        Arc::new(Engine::new(Arc::new(Source(series)), EngineOptions::default()))
    }
}

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/promtool")
}

/// Verdicts of Debian's promtool 2.42.0 (`promtool test rules FILE`, exit code 0 = pass),
/// recorded on 2026-11-23; used when promtool is not installed.
const RECORDED: &[(&str, bool)] = &[
    ("prometheus-cmd-promtool/v2.42.0/at-modifier-test.yml", true),
    ("prometheus-cmd-promtool/v2.42.0/bad-input-series.yml", false),
    ("prometheus-cmd-promtool/v2.42.0/bad-promql.yml", false),
    ("prometheus-cmd-promtool/v2.42.0/bad-rules-error-test.yml", false),
    ("prometheus-cmd-promtool/v2.42.0/bad-rules-syntax-test.yml", false),
    ("prometheus-cmd-promtool/v2.42.0/failing.yml", false),
    ("prometheus-cmd-promtool/v2.42.0/long-period.yml", true),
    ("prometheus-cmd-promtool/v2.42.0/negative-offset-test.yml", true),
    ("prometheus-cmd-promtool/v2.42.0/unittest.yml", true),
    ("prometheus-cmd-promtool/main-d15adb9ad7/at-modifier-test.yml", true),
    ("prometheus-cmd-promtool/main-d15adb9ad7/bad-input-series.yml", false),
    ("prometheus-cmd-promtool/main-d15adb9ad7/bad-promql.yml", false),
    (
        "prometheus-cmd-promtool/main-d15adb9ad7/bad-rules-error-test.yml",
        false,
    ),
    (
        "prometheus-cmd-promtool/main-d15adb9ad7/bad-rules-syntax-test.yml",
        false,
    ),
    ("prometheus-cmd-promtool/main-d15adb9ad7/failing.yml", false),
    ("prometheus-cmd-promtool/main-d15adb9ad7/long-period.yml", true),
    ("prometheus-cmd-promtool/main-d15adb9ad7/negative-offset-test.yml", true),
    (
        "prometheus-cmd-promtool/main-d15adb9ad7/no-test-group-interval.yml",
        false,
    ),
    ("prometheus-cmd-promtool/main-d15adb9ad7/rules_run.yml", false),
    (
        "prometheus-cmd-promtool/main-d15adb9ad7/rules_run_extrafields.yml",
        false,
    ),
    ("prometheus-cmd-promtool/main-d15adb9ad7/rules_run_fuzzy.yml", false),
    ("prometheus-cmd-promtool/main-d15adb9ad7/rules_run_no_fuzzy.yml", false),
    ("prometheus-cmd-promtool/main-d15adb9ad7/start-time-test.yml", false),
    ("prometheus-cmd-promtool/main-d15adb9ad7/unittest.yml", false),
    ("kubernetes-mixin-main-aa38e2bf/tests/absent_alert-test.yaml", false),
    (
        "kubernetes-mixin-main-aa38e2bf/tests/apiserver-availability-test.yaml",
        true,
    ),
    ("kubernetes-mixin-main-aa38e2bf/tests/apps_alerts-test.yaml", true),
    ("kubernetes-mixin-main-aa38e2bf/tests/kube_scheduler-test.yaml", true),
    ("kubernetes-mixin-main-aa38e2bf/tests/kubelet-test.yaml", true),
    ("kubernetes-mixin-main-aa38e2bf/tests/resource_alerts-test.yaml", true),
    ("kubernetes-mixin-main-aa38e2bf/tests/rules-pod-owner-test.yaml", true),
    ("kubernetes-mixin-main-aa38e2bf/tests/tests.yaml", false),
    ("kubernetes-mixin-version-0.13.0/tests.yaml", true),
];

fn promtool_verdict(file: &Path) -> Option<bool> {
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        return None;
    }
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(file.file_name()?)
        .current_dir(file.parent()?)
        .output()
        .ok()?;
    Some(out.status.success())
}

fn check(rel: &str, recorded: bool) -> Result<(), String> {
    let file = conformance().join(rel);
    let expected = promtool_verdict(&file).unwrap_or(recorded);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let report = rt.block_on(test_rules(std::slice::from_ref(&file), &StoreEngine));
    if report.success() == expected {
        Ok(())
    } else {
        Err(format!(
            "{rel}: promtool says pass={expected}, tidewatch says:\n{report}"
        ))
    }
}

#[test]
fn prometheus_testdata_matches_promtool_2_42() {
    let failures: Vec<String> = RECORDED
        .iter()
        .filter(|(rel, _)| rel.starts_with("prometheus-cmd-promtool"))
        .filter_map(|(rel, pass)| check(rel, *pass).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn kubernetes_mixin_main_matches_promtool_2_42() {
    let failures: Vec<String> = RECORDED
        .iter()
        .filter(|(rel, _)| rel.starts_with("kubernetes-mixin-main") && !is_big(rel))
        .filter_map(|(rel, pass)| check(rel, *pass).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The kubernetes-mixin files whose evaluation takes longest in a debug build: each step
/// evaluates all ~180 rules of the mixin, and these have the most test groups and steps.
fn is_big(rel: &str) -> bool {
    rel.ends_with("/tests.yaml")
        || rel.ends_with("absent_alert-test.yaml")
        || rel.ends_with("resource_alerts-test.yaml")
}

/// The big kubernetes-mixin files (tests.yaml of 0.13.0 and of main have ~50 test groups each).
/// promtool 2.42 takes 51 s on 0.13.0's tests.yaml; a debug build takes many minutes, so they
/// run on request:
/// `cargo test -p tidewatch-alertmanager --test rules_promtool -- --ignored big_kubernetes_mixin`.
#[test]
#[ignore = "minutes in a debug build; run on request (see above)"]
fn big_kubernetes_mixin_files_match_promtool_2_42() {
    let failures: Vec<String> = RECORDED
        .iter()
        .filter(|(rel, _)| rel.starts_with("kubernetes-mixin") && is_big(rel))
        .filter_map(|(rel, pass)| check(rel, *pass).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `RULES_TEST_FILE=<path relative to conformance/promtool> cargo test ... -- --ignored one_file`
/// runs one file and prints the report and its time (for investigating a verdict).
/// A file with a recorded promtool verdict must reach the same verdict.
#[test]
#[ignore = "a tool for investigating one file: needs RULES_TEST_FILE"]
fn one_file() {
    let rel = std::env::var("RULES_TEST_FILE").expect("RULES_TEST_FILE");
    if let Some((_, pass)) = RECORDED.iter().find(|(r, _)| *r == rel) {
        check(&rel, *pass).unwrap_or_else(|e| panic!("{e}"));
    }
    let file = conformance().join(&rel);
    let started = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let report = rt.block_on(test_rules(std::slice::from_ref(&file), &StoreEngine));
    eprintln!("{report}\n{:?}", started.elapsed());
}
