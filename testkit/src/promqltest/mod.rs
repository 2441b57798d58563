//! A harness that replays Prometheus' own PromQL engine test scripts (`promqltest`) against any
//! server that speaks Prometheus' HTTP API: data in by remote_write, queries by
//! `/api/v1/query` and `/api/v1/query_range`.
//!
//! The scripts live in `../shared/conformance/promql/` (`v2.42.0/`, `v3.5.0/`, ...; the format is
//! summarised in `SOURCE.txt` there). Each file starts on empty storage; `clear` empties it again
//! (the target is reset lazily, just before the next query). Loads are buffered and written just
//! before the next eval, in time order across series; when a load goes back in time (a sample
//! older than one already written) the target is reset and everything since the last `clear` is
//! written again, so servers that refuse out-of-order samples work.
//!
//! Comparison follows Prometheus' `test.go`: set comparison keyed by the full label set
//! (`__name__` included), position checks for `eval_ordered`, relative epsilon 1e-6
//! ([`almost_equal`]), scalar and string results, `eval_fail` expecting an error answer (with
//! `expected_fail_message` matched exactly or as the end of the API's message), `eval_warn` /
//! `eval_info` / `expect warn|info|no_warn|no_info` against the `warnings` / `infos` arrays.
//! [`Options::extra_checks`] adds Prometheus' hidden re-runs (range mode, `@`).
//!
//! Native histograms are not loaded: an eval whose expectation holds one, or whose expression may
//! select a series holding one, is skipped with a reason starting `native histogram`.
//!
//! Pointing it at Tidewatch (the built `tidewatch server`, restarted on a fresh folder for every
//! reset), from a test:
//!
//! ```no_run
//! use tidewatch_testkit::promqltest::{HttpTarget, Options, run_dir, scripts_root};
//!
//! let mut target = HttpTarget::tidewatch(&[]).expect("tidewatch server starts");
//! let report = run_dir(&mut target, &scripts_root().join("v2.42.0"), &Options::default()).unwrap();
//! println!("{}", report.text(10)); // per-file table, then the first diffs of each file
//! assert_eq!(report.failed(), 0, "{}", report.text(10));
//! let _summary: serde_json::Value = report.to_json();
//! ```
//!
//! Any other server: `HttpTarget::new("name", move || { /* start on empty storage */ Ok(base_url) })`.
//! One file or one case: `Options { filter: Some("functions.test:123".into()), ..Options::default() }`.

mod atmod;
pub mod diff;
mod parse;
mod run;
mod target;

#[cfg(test)]
mod tests;

pub use atmod::{AT_MODIFIER_UNSAFE_FUNCTIONS, at_modifier_cases, inject_at};
pub use parse::{
    Command, Eval, EvalTime, ExpectedSeries, Labels, Load, ParseError, STALE_NAN_BITS, Script, SeqValue, SeriesDef,
    TextMatch, expand_item, expand_values, format_labels, parse_duration, parse_number, parse_script,
    parse_series_desc,
};
pub use run::{
    CaseResult, EPSILON, FailKind, Failure, FileReport, Options, Outcome, Report, Runner, almost_equal, compare_result,
    describe_value, run_dir,
};
pub use target::{
    ApiError, DEFAULT_SAMPLES_PER_WRITE, HttpTarget, MatrixSeries, PROMETHEUS_BIN, PromClient, PrometheusTarget,
    QueryResponse, QueryValue, Target, VectorSample, WriteSeries, format_seconds, parse_query_response, write_requests,
};

/// The conformance scripts shipped with the project: `<workspace>/../shared/conformance/promql`
/// (override with `TIDEWATCH_PROMQL_SCRIPTS`, the folder holding `v2.42.0/` and `v3.5.0/`).
pub fn scripts_root() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("TIDEWATCH_PROMQL_SCRIPTS") {
        return dir.into();
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/promql");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}
