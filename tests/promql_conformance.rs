//! Prometheus' own PromQL engine test scripts (../shared/conformance/promql/v2.42.0, the
//! release Debian ships) replayed against Tidewatch through its HTTP API: data in by
//! remote_write, every `eval` through `/api/v1/query`, with Prometheus' hidden checks (each
//! instant eval also as a range query, and with `@` on every selector). Every case must pass.
//! The v3.5.0 pass count is a benchmark figure (bench/RESULTS.md), not asserted here.

use tidewatch_testkit::promqltest::{HttpTarget, Options, run_dir, scripts_root};

#[test]
fn every_v2_42_engine_test_passes() {
    let mut target = HttpTarget::tidewatch(&[]).expect("start tidewatch");
    let options = Options {
        extra_checks: true,
        ..Options::default()
    };
    let report = run_dir(&mut target, &scripts_root().join("v2.42.0"), &options).expect("run the scripts");
    eprintln!("{}", report.text(3));
    assert_eq!(report.file_errors(), 0);
    assert_eq!(
        report.skipped(),
        0,
        "v2.42.0 has no native histograms: nothing should be skipped"
    );
    assert!(report.passed() >= 566, "{} passed", report.passed());
    assert_eq!(report.failed(), 0, "{}", report.text(10));
}
