//! Runs parsed scripts against a [`Target`] and compares the answers as Prometheus' `test.go`
//! does (`compareResult`, `checkAnnotations`, `checkExpectedFailure`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::json;

use super::atmod::at_modifier_cases;
use super::parse::{
    Command, Eval, EvalTime, ExpectedSeries, Labels, STALE_NAN_BITS, Script, SeqValue, TextMatch, format_labels,
    parse_script,
};
use super::target::{MatrixSeries, QueryResponse, QueryValue, Target, VectorSample, WriteSeries};

/// Relative tolerance of float comparisons (`defaultEpsilon`).
pub const EPSILON: f64 = 1e-6;

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// `file` (`functions` or `functions.test`): run only that file; `file:line`: run only the
    /// eval at that line (its file's loads and clears still run).
    pub filter: Option<String>,
    /// Also do Prometheus' hidden checks: re-run every instant eval as a range query around the
    /// eval time and compare the middle step; re-run it with `@ <t>` on every selector at the
    /// five eval times of `atModifierTestCases`; fail on warnings or info annotations that the
    /// eval did not declare (the stricter rule of 3.0-3.4). Off by default.
    pub extra_checks: bool,
    /// Failures listed per file in the text report.
    pub max_diffs: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            filter: None,
            extra_checks: false,
            max_diffs: 5,
        }
    }
}

/// Why a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// The query answered an error; none was expected.
    UnexpectedError,
    /// An error was expected (`eval_fail`); the query succeeded.
    MissingError,
    /// The query failed as expected, with the wrong message.
    WrongError,
    /// Wrong result: series, values, type or order.
    Result,
    /// Right result; expected warnings or info annotations missing (or unexpected ones present).
    Annotation,
    /// The harness could not load the data or talk to the server.
    Harness,
}

impl FailKind {
    /// Name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailKind::UnexpectedError => "unexpected-error",
            FailKind::MissingError => "missing-error",
            FailKind::WrongError => "wrong-error",
            FailKind::Result => "result",
            FailKind::Annotation => "annotation",
            FailKind::Harness => "harness",
        }
    }
}

/// A failed case: what kind, which query (the eval's own, or a re-run), and the diff.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Kind.
    pub kind: FailKind,
    /// Which check: `instant`, `range`, `range-mode`, `@-rerun t=...`.
    pub check: String,
    /// The query as sent (differs from the eval's for `@` re-runs).
    pub query: String,
    /// Prometheus-style message, with the expected and actual values.
    pub message: String,
}

/// The outcome of one eval.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// All checks passed.
    Passed,
    /// A check failed.
    Failed(Failure),
    /// Not run; the reason.
    Skipped(String),
}

/// One eval of a file.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// 1-based line of the eval.
    pub line: usize,
    /// The eval's command line, e.g. `eval instant at 50m rate(x[5m])`.
    pub command: String,
    /// Outcome.
    pub outcome: Outcome,
}

/// The results of one file.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// File name.
    pub file: String,
    /// One entry per eval that ran or was skipped (evals filtered out are not listed).
    pub cases: Vec<CaseResult>,
    /// The file could not be read or parsed: no case ran.
    pub error: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
    /// Storage resets (after `clear`, and for replays).
    pub resets: usize,
    /// Resets done to replay all data because a `load` went back in time.
    pub replays: usize,
    /// Instant evals whose `@` re-runs were not done because the scanner could not follow the
    /// expression (extra checks only).
    pub at_rerun_unparsed: usize,
}

impl FileReport {
    /// Passed cases.
    pub fn passed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Passed))
            .count()
    }

    /// Failed cases.
    pub fn failed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .count()
    }

    /// Skipped cases.
    pub fn skipped(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
            .count()
    }

    /// Skip reasons with their counts.
    pub fn skip_reasons(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.cases {
            if let Outcome::Skipped(r) = &c.outcome {
                *out.entry(skip_category(r)).or_insert(0) += 1;
            }
        }
        out
    }

    /// Failure kinds with their counts.
    pub fn failure_kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for c in &self.cases {
            if let Outcome::Failed(f) = &c.outcome {
                *out.entry(f.kind.as_str()).or_insert(0) += 1;
            }
        }
        out
    }
}

/// Skip reasons are "<category>: <detail>"; reports group by category.
fn skip_category(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).to_string()
}

/// The results of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's description.
    pub target: String,
    /// The scripts folder or file.
    pub scripts: String,
    /// Whether the extra checks ran.
    pub extra_checks: bool,
    /// Per file, in name order.
    pub files: Vec<FileReport>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// Passed cases, all files.
    pub fn passed(&self) -> usize {
        self.files.iter().map(FileReport::passed).sum()
    }

    /// Failed cases, all files (cases of unparsable files are not counted: see [`Report::file_errors`]).
    pub fn failed(&self) -> usize {
        self.files.iter().map(FileReport::failed).sum()
    }

    /// Skipped cases, all files.
    pub fn skipped(&self) -> usize {
        self.files.iter().map(FileReport::skipped).sum()
    }

    /// Files that could not be read or parsed.
    pub fn file_errors(&self) -> usize {
        self.files.iter().filter(|f| f.error.is_some()).count()
    }

    /// The human report: a table per file, then the first `max_diffs` failures of each file.
    pub fn text(&self, max_diffs: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "promqltest: {} against {}", self.scripts, self.target);
        if self.extra_checks {
            let _ = writeln!(out, "extra checks: range-mode re-run, @ re-runs, strict annotations");
        }
        let _ = writeln!(
            out,
            "{:<28} {:>5} {:>5} {:>5} {:>8} {:>7}",
            "file", "pass", "fail", "skip", "time", "resets"
        );
        for f in &self.files {
            let _ = writeln!(
                out,
                "{:<28} {:>5} {:>5} {:>5} {:>7.1}s {:>7}{}",
                f.file,
                f.passed(),
                f.failed(),
                f.skipped(),
                f.elapsed.as_secs_f64(),
                f.resets,
                f.error.as_ref().map(|e| format!("  ERROR: {e}")).unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "{:<28} {:>5} {:>5} {:>5} {:>7.1}s",
            "total",
            self.passed(),
            self.failed(),
            self.skipped(),
            self.elapsed.as_secs_f64()
        );
        let mut skips: BTreeMap<String, usize> = BTreeMap::new();
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.files {
            for (r, n) in f.skip_reasons() {
                *skips.entry(r).or_insert(0) += n;
            }
            for (k, n) in f.failure_kinds() {
                *kinds.entry(k).or_insert(0) += n;
            }
        }
        for (r, n) in &skips {
            let _ = writeln!(out, "skipped {n}: {r}");
        }
        for (k, n) in &kinds {
            let _ = writeln!(out, "failed {n}: {k}");
        }
        for f in &self.files {
            let failures: Vec<&CaseResult> = f
                .cases
                .iter()
                .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
                .collect();
            for c in failures.iter().take(max_diffs) {
                if let Outcome::Failed(fail) = &c.outcome {
                    let _ = writeln!(
                        out,
                        "\nFAIL {}:{} [{}] {}",
                        f.file,
                        c.line,
                        fail.kind.as_str(),
                        c.command
                    );
                    if fail.check != "instant" && fail.check != "range" {
                        let _ = write!(out, "  check: {}", fail.check);
                        if !fail.query.is_empty() {
                            let _ = write!(out, ", query: {}", fail.query);
                        }
                        out.push('\n');
                    }
                    for l in fail.message.lines() {
                        let _ = writeln!(out, "  {l}");
                    }
                }
            }
            if failures.len() > max_diffs {
                let _ = writeln!(
                    out,
                    "\n... and {} more failures in {}",
                    failures.len() - max_diffs,
                    f.file
                );
            }
        }
        out
    }

    /// The JSON summary: totals, and per file the counts, skip reasons, failure kinds and every
    /// failure with its message.
    pub fn to_json(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                let failures: Vec<serde_json::Value> = f
                    .cases
                    .iter()
                    .filter_map(|c| match &c.outcome {
                        Outcome::Failed(fail) => Some(json!({
                            "line": c.line,
                            "command": c.command,
                            "kind": fail.kind.as_str(),
                            "check": fail.check,
                            "query": fail.query,
                            "message": fail.message,
                        })),
                        _ => None,
                    })
                    .collect();
                let skips: Vec<serde_json::Value> = f
                    .cases
                    .iter()
                    .filter_map(|c| match &c.outcome {
                        Outcome::Skipped(reason) => Some(json!({"line": c.line, "reason": reason})),
                        _ => None,
                    })
                    .collect();
                json!({
                    "file": f.file,
                    "passed": f.passed(),
                    "failed": f.failed(),
                    "skipped": f.skipped(),
                    "error": f.error,
                    "elapsed_ms": f.elapsed.as_millis() as u64,
                    "resets": f.resets,
                    "replays": f.replays,
                    "at_rerun_unparsed": f.at_rerun_unparsed,
                    "skip_reasons": f.skip_reasons(),
                    "failure_kinds": f.failure_kinds(),
                    "failures": failures,
                    "skips": skips,
                })
            })
            .collect();
        json!({
            "target": self.target,
            "scripts": self.scripts,
            "extra_checks": self.extra_checks,
            "passed": self.passed(),
            "failed": self.failed(),
            "skipped": self.skipped(),
            "file_errors": self.file_errors(),
            "elapsed_ms": self.elapsed.as_millis() as u64,
            "files": files,
        })
    }
}

/// `file` or `file:line`.
fn parse_filter(filter: &str) -> (String, Option<usize>) {
    if let Some((file, line)) = filter.rsplit_once(':')
        && let Ok(n) = line.parse::<usize>()
    {
        return (file.to_string(), Some(n));
    }
    (filter.to_string(), None)
}

fn file_matches(file: &str, wanted: &str) -> bool {
    file == wanted || file.strip_suffix(".test") == Some(wanted)
}

/// Runs every `*.test` file of `dir` (name order), or the one `opts.filter` names.
pub fn run_dir(target: &mut dyn Target, dir: &Path, opts: &Options) -> Result<Report, String> {
    let mut runner = Runner::new(target, opts.clone());
    runner.run_dir(dir)
}

/// Runs scripts against one target; remembers whether the target holds data between files.
pub struct Runner<'t> {
    target: &'t mut dyn Target,
    opts: Options,
    /// The target holds data written by an earlier file or segment.
    target_has_data: bool,
}

/// Data of the current segment (since the file start or the last `clear`).
#[derive(Default)]
struct Segment {
    /// Everything loaded, written or not: replayed after a reset.
    all: BTreeMap<Labels, BTreeMap<i64, f64>>,
    /// Loaded, not yet written.
    pending: BTreeMap<Labels, BTreeMap<i64, f64>>,
    /// Newest timestamp written, per series and overall.
    written_last: HashMap<Labels, i64>,
    written_max: Option<i64>,
    /// Metric names whose series hold native histograms (not loaded).
    histogram_names: BTreeSet<String>,
    /// The target holds data that is not part of this segment.
    stale_target: bool,
    /// Writing failed: every later eval of the segment fails with this.
    load_error: Option<String>,
}

static RE_QUERY_CONTEXT_FUNCS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(start|end|range|step)\(\)").unwrap());

impl<'t> Runner<'t> {
    /// A runner; the target is assumed empty (freshly started).
    pub fn new(target: &'t mut dyn Target, opts: Options) -> Runner<'t> {
        Runner {
            target,
            opts,
            target_has_data: false,
        }
    }

    /// Runs every `*.test` file of `dir` in name order (or `dir` itself if it is a file).
    pub fn run_dir(&mut self, dir: &Path) -> Result<Report, String> {
        let started = Instant::now();
        let mut paths: Vec<std::path::PathBuf> = if dir.is_file() {
            vec![dir.to_path_buf()]
        } else {
            std::fs::read_dir(dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect()
        };
        paths.sort();
        let (wanted, _) = self.opts.filter.as_deref().map(parse_filter).unzip();
        let mut files = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(w) = &wanted
                && !file_matches(&name, w)
            {
                continue;
            }
            files.push(self.run_file(&path));
        }
        if let Some(w) = wanted
            && files.is_empty()
        {
            return Err(format!("--filter {w}: no such .test file in {}", dir.display()));
        }
        Ok(Report {
            target: self.target.describe(),
            scripts: dir.display().to_string(),
            extra_checks: self.opts.extra_checks,
            files,
            elapsed: started.elapsed(),
        })
    }

    /// Reads, parses and runs one file (honouring a `file:line` filter).
    pub fn run_file(&mut self, path: &Path) -> FileReport {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                return FileReport {
                    file: name,
                    error: Some(format!("cannot read {}: {e}", path.display())),
                    ..FileReport::default()
                };
            }
        };
        let mut report = match parse_script(&name, &text) {
            Ok(script) => {
                let only_line = self.opts.filter.as_deref().map(parse_filter).and_then(|(_, l)| l);
                self.run_script(&script, only_line)
            }
            Err(e) => FileReport {
                file: name,
                error: Some(e.to_string()),
                ..FileReport::default()
            },
        };
        report.elapsed = started.elapsed();
        report
    }

    /// Runs a parsed script; with `only_line`, only the eval at that line is run and reported.
    pub fn run_script(&mut self, script: &Script, only_line: Option<usize>) -> FileReport {
        let started = Instant::now();
        let mut report = FileReport {
            file: script.file.clone(),
            ..FileReport::default()
        };
        let mut seg = Segment {
            stale_target: self.target_has_data,
            ..Segment::default()
        };
        for command in &script.commands {
            match command {
                Command::Clear { .. } => {
                    seg = Segment {
                        stale_target: self.target_has_data,
                        ..Segment::default()
                    };
                }
                Command::Load(load) => {
                    // Within one load a later line for the same labels replaces an earlier one.
                    let mut defs: BTreeMap<&Labels, Vec<(i64, f64)>> = BTreeMap::new();
                    for def in &load.series {
                        let name = def.labels.get("__name__").cloned().unwrap_or_default();
                        if def.has_histogram() {
                            seg.histogram_names.insert(name.clone());
                            defs.remove(&def.labels);
                            continue;
                        }
                        if load.with_nhcb
                            && let Some(base) = nhcb_base_name(&def.labels)
                        {
                            seg.histogram_names.insert(base);
                        }
                        defs.insert(&def.labels, def.float_samples(load.interval_ms));
                    }
                    for (labels, samples) in defs {
                        if samples.is_empty() {
                            continue;
                        }
                        let all = seg.all.entry(labels.clone()).or_default();
                        let pending = seg.pending.entry(labels.clone()).or_default();
                        for (t, v) in samples {
                            all.insert(t, v);
                            pending.insert(t, v);
                        }
                    }
                }
                Command::Eval(eval) => {
                    if only_line.is_some_and(|l| l != eval.line) {
                        continue;
                    }
                    let command = script_line(eval);
                    let outcome = if let Some(reason) = histogram_skip(eval, &seg.histogram_names) {
                        Outcome::Skipped(reason)
                    } else if let Err(e) = self.flush(&mut seg, &mut report) {
                        Outcome::Failed(Failure {
                            kind: FailKind::Harness,
                            check: "load".to_string(),
                            query: String::new(),
                            message: e,
                        })
                    } else {
                        self.exec_eval(eval, &mut report)
                    };
                    report.cases.push(CaseResult {
                        line: eval.line,
                        command,
                        outcome,
                    });
                }
            }
        }
        report.elapsed = started.elapsed();
        report
    }

    fn reset(&mut self, report: &mut FileReport) -> Result<(), String> {
        self.target
            .reset()
            .map_err(|e| format!("resetting the target failed: {e}"))?;
        self.target_has_data = false;
        report.resets += 1;
        Ok(())
    }

    /// Makes the target hold exactly the segment's data before a query.
    fn flush(&mut self, seg: &mut Segment, report: &mut FileReport) -> Result<(), String> {
        if let Some(e) = &seg.load_error {
            return Err(e.clone());
        }
        let result = self.flush_inner(seg, report);
        if let Err(e) = &result {
            seg.load_error = Some(format!("loading data failed: {e}"));
            return Err(seg.load_error.clone().unwrap_or_default());
        }
        result
    }

    fn flush_inner(&mut self, seg: &mut Segment, report: &mut FileReport) -> Result<(), String> {
        if seg.stale_target {
            self.reset(report)?;
            seg.stale_target = false;
        }
        if seg.pending.is_empty() {
            return Ok(());
        }
        let back_in_time = seg.pending.iter().any(|(labels, points)| {
            let first = points.keys().next().copied().unwrap_or(i64::MAX);
            seg.written_max.is_some_and(|m| first < m) || seg.written_last.get(labels).is_some_and(|&l| first <= l)
        });
        let source = if back_in_time {
            // Servers refuse samples older than what they hold: start afresh and write everything.
            self.reset(report)?;
            report.replays += 1;
            seg.written_last.clear();
            seg.written_max = None;
            &seg.all
        } else {
            &seg.pending
        };
        let series: Vec<WriteSeries> = source
            .iter()
            .filter(|(_, points)| !points.is_empty())
            .map(|(labels, points)| WriteSeries {
                labels: labels.clone(),
                samples: points.iter().map(|(&t, &v)| (t, v)).collect(),
            })
            .collect();
        self.target_has_data = true;
        self.target.write(&series)?;
        for s in &series {
            let last = s.samples.last().map_or(i64::MIN, |p| p.0);
            seg.written_last.insert(s.labels.clone(), last);
            seg.written_max = Some(seg.written_max.map_or(last, |m| m.max(last)));
        }
        seg.pending.clear();
        Ok(())
    }

    fn exec_eval(&mut self, eval: &Eval, report: &mut FileReport) -> Outcome {
        match self.exec_eval_inner(eval, report) {
            Ok(()) => Outcome::Passed,
            Err(f) => Outcome::Failed(f),
        }
    }

    fn exec_eval_inner(&mut self, eval: &Eval, report: &mut FileReport) -> Result<(), Failure> {
        let harness = |check: &str, query: &str, e: String| Failure {
            kind: FailKind::Harness,
            check: check.to_string(),
            query: query.to_string(),
            message: e,
        };
        match eval.time {
            EvalTime::Range {
                start_ms,
                end_ms,
                step_ms,
            } => {
                let resp = self
                    .target
                    .query_range(&eval.expr, start_ms, end_ms, step_ms)
                    .map_err(|e| harness("range", &eval.expr, e))?;
                self.check_answer(eval, &resp, &eval.expr, "range", (start_ms, end_ms, step_ms))?;
            }
            EvalTime::Instant { at_ms } => {
                let mut queries = vec![(eval.expr.clone(), at_ms, "instant".to_string())];
                if self.opts.extra_checks {
                    match at_modifier_cases(&eval.expr, at_ms) {
                        Ok(Some((expr, times))) => {
                            for t in times {
                                queries.push((expr.clone(), t, format!("@-rerun t={t}ms")));
                            }
                        }
                        Ok(None) => {}
                        Err(_) => report.at_rerun_unparsed += 1,
                    }
                }
                for (query, t, check) in queries {
                    let resp = self
                        .target
                        .query_instant(&query, t)
                        .map_err(|e| harness(&check, &query, e))?;
                    // An instant query answering a matrix: points expected at `expect range vector`
                    // times, or (as in Prometheus, whose eval end is then the zero time) none.
                    let times = eval.range_vector.unwrap_or((t, i64::MIN, 0));
                    self.check_answer(eval, &resp, &query, &check, times)?;
                    let Ok(value) = &resp.result else { continue };
                    if !self.opts.extra_checks
                        || eval.exclude_from_range_query
                        || RE_QUERY_CONTEXT_FUNCS.is_match(&query)
                    {
                        continue;
                    }
                    self.range_mode_check(eval, value, &query, t, &check)?;
                }
            }
        }
        Ok(())
    }

    /// Prometheus' range-mode re-run: the same query as a range query over [t-1m, t+1m] step 1m,
    /// whose middle step must equal the expectation.
    fn range_mode_check(
        &mut self,
        eval: &Eval,
        instant: &QueryValue,
        query: &str,
        t: i64,
        check: &str,
    ) -> Result<(), Failure> {
        let check = format!("{check} range-mode");
        let fail = |kind, message: String| Failure {
            kind,
            check: check.clone(),
            query: query.to_string(),
            message,
        };
        let resp = self
            .target
            .query_range(query, t - 60_000, t + 60_000, 60_000)
            .map_err(|e| fail(FailKind::Harness, e))?;
        let value = match resp.result {
            Ok(v) => v,
            Err(e) => {
                return Err(fail(
                    FailKind::UnexpectedError,
                    format!(
                        "error evaluating query {query:?} in range mode: {}: {}",
                        e.error_type, e.message
                    ),
                ));
            }
        };
        if eval.ordered {
            return Ok(());
        }
        let QueryValue::Matrix(matrix) = value else {
            return Err(fail(
                FailKind::Result,
                format!("range query answered {}", describe_value(&value)),
            ));
        };
        assert_matrix_sorted(&matrix).map_err(|m| fail(FailKind::Result, m))?;
        let vector: Vec<VectorSample> = matrix
            .iter()
            .filter_map(|s| {
                s.floats.iter().find(|p| p.0 == t).map(|p| VectorSample {
                    labels: s.labels.clone(),
                    t_ms: p.0,
                    value: p.1,
                    histogram: false,
                })
            })
            .collect();
        let as_value = if matches!(instant, QueryValue::Scalar { .. }) {
            match vector.first() {
                Some(s) => QueryValue::Scalar {
                    t_ms: t,
                    value: s.value,
                },
                None => {
                    return Err(fail(
                        FailKind::Result,
                        "range query returned no point at the eval time".into(),
                    ));
                }
            }
        } else {
            QueryValue::Vector(vector)
        };
        compare_result(eval, &as_value, (t, i64::MIN, 0))
            .map_err(|m| fail(FailKind::Result, with_diff(m, eval, &as_value)))
    }

    fn check_answer(
        &self,
        eval: &Eval,
        resp: &QueryResponse,
        query: &str,
        check: &str,
        times: (i64, i64, i64),
    ) -> Result<(), Failure> {
        let fail = |kind, message: String| Failure {
            kind,
            check: check.to_string(),
            query: query.to_string(),
            message,
        };
        match &resp.result {
            Err(e) => {
                if !eval.fail {
                    return Err(fail(
                        FailKind::UnexpectedError,
                        format!(
                            "error evaluating query {query:?} (line {}): HTTP {} {}: {}",
                            eval.line, e.http_status, e.error_type, e.message
                        ),
                    ));
                }
                for m in &eval.fail_matches {
                    if !error_matches(m, &e.message) {
                        return Err(fail(
                            FailKind::WrongError,
                            format!(
                                "expected error matching {m} evaluating query {query:?}, but got: {}",
                                e.message
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Ok(value) => {
                if eval.fail {
                    return Err(fail(
                        FailKind::MissingError,
                        format!(
                            "expected error evaluating query {query:?} (line {}) but got none; got {}",
                            eval.line,
                            describe_value(value)
                        ),
                    ));
                }
                compare_result(eval, value, times).map_err(|m| fail(FailKind::Result, with_diff(m, eval, value)))?;
                check_annotations(eval, resp, self.opts.extra_checks).map_err(|m| fail(FailKind::Annotation, m))
            }
        }
    }
}

/// The line as written in the script, rebuilt.
fn script_line(eval: &Eval) -> String {
    let modifier = if eval.fail {
        "_fail"
    } else if eval.ordered {
        "_ordered"
    } else if eval.warn {
        "_warn"
    } else if eval.info {
        "_info"
    } else {
        ""
    };
    match eval.time {
        EvalTime::Instant { at_ms } => format!("eval{modifier} instant at {} {}", fmt_dur(at_ms), eval.expr),
        EvalTime::Range {
            start_ms,
            end_ms,
            step_ms,
        } => format!(
            "eval{modifier} range from {} to {} step {} {}",
            fmt_dur(start_ms),
            fmt_dur(end_ms),
            fmt_dur(step_ms),
            eval.expr
        ),
    }
}

fn fmt_dur(ms: i64) -> String {
    if ms == 0 {
        return "0".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// `foo_bucket{le=...}`, `foo_count`, `foo_sum` → `foo`: the name `load_with_nhcb` gives the
/// native histogram with custom buckets built from them.
fn nhcb_base_name(labels: &Labels) -> Option<String> {
    let name = labels.get("__name__")?;
    if let Some(base) = name.strip_suffix("_bucket") {
        return labels.contains_key("le").then(|| base.to_string());
    }
    name.strip_suffix("_count")
        .or_else(|| name.strip_suffix("_sum"))
        .map(str::to_string)
}

/// Why an eval is skipped for native histograms, if it is: its expectation holds one, or its
/// expression may select a series that holds one (named in the expression, or selected without a
/// literal name while such series exist).
fn histogram_skip(eval: &Eval, histogram_names: &BTreeSet<String>) -> Option<String> {
    if eval.expects_histogram {
        return Some("native histogram: expected result holds native histograms".to_string());
    }
    if histogram_names.is_empty() {
        return None;
    }
    let words: HashSet<&str> = eval
        .expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(name) = histogram_names.iter().find(|n| words.contains(n.as_str())) {
        return Some(format!(
            "native histogram: query selects native-histogram series {name}"
        ));
    }
    if words.contains("__name__") || has_nameless_selector(&eval.expr) {
        return Some("native histogram: name-less selector while native-histogram series are loaded".to_string());
    }
    None
}

fn has_nameless_selector(expr: &str) -> bool {
    let b = expr.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'{' && {
            let before = b[..i].iter().rev().find(|c| !c.is_ascii_whitespace());
            !before.is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        }
    })
}

/// `util/almost.Equal`: NaN equals NaN, the stale marker only itself, values near zero compared
/// absolutely, others relatively.
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    let stale = |x: f64| x.to_bits() == STALE_NAN_BITS;
    if stale(a) || stale(b) {
        return stale(a) && stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Go's `%v` of a float64 for messages.
fn fmt_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

fn fmt_seq(values: &[SeqValue]) -> String {
    values
        .iter()
        .map(|v| match v {
            SeqValue::Omitted => "_".to_string(),
            SeqValue::Float(f) => fmt_f(*f),
            SeqValue::Histogram => "{{histogram}}".to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn seq_float(v: &SeqValue) -> f64 {
    match v {
        SeqValue::Float(f) => *f,
        _ => 0.0,
    }
}

/// Labels compared as `labels.Compare`: pairwise by name then value, shorter first.
fn compare_labels(a: &Labels, b: &Labels) -> std::cmp::Ordering {
    a.iter().cmp(b.iter())
}

fn assert_matrix_sorted(m: &[MatrixSeries]) -> Result<(), String> {
    for (i, w) in m.windows(2).enumerate() {
        if compare_labels(&w[0].labels, &w[1].labels) == std::cmp::Ordering::Greater {
            return Err(format!(
                "matrix results should always be sorted by labels, but matrix is not sorted: series at index {} with \
                 labels {} sorts before series at index {i} with labels {}",
                i + 1,
                format_labels(&w[1].labels),
                format_labels(&w[0].labels)
            ));
        }
    }
    Ok(())
}

/// `compareResult`. `times` = (start, end, step) for matrix expectations.
pub fn compare_result(eval: &Eval, value: &QueryValue, times: (i64, i64, i64)) -> Result<(), String> {
    let expected: HashMap<&Labels, &ExpectedSeries> = eval.expected.iter().map(|e| (&e.labels, e)).collect();
    match value {
        QueryValue::Matrix(series) => {
            if eval.ordered {
                return Err("expected ordered result, but query returned a matrix".to_string());
            }
            if eval.expect_scalar.is_some() {
                return Err("expected scalar result, but got matrix".to_string());
            }
            assert_matrix_sorted(series)?;
            let mut seen = HashSet::new();
            let (start, end, step) = times;
            for s in series {
                let Some(exp) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has {} float points",
                        format_labels(&s.labels),
                        s.floats.len()
                    ));
                };
                seen.insert(&s.labels);
                let mut floats = Vec::new();
                for (i, v) in exp.values.iter().enumerate() {
                    let ts = start + i as i64 * step;
                    if ts > end {
                        return Err(format!(
                            "expected {} points for {}, but query time range cannot return this many points",
                            exp.values.len(),
                            format_labels(&s.labels)
                        ));
                    }
                    if let SeqValue::Float(f) = v {
                        floats.push((ts, *f));
                    }
                }
                if floats.len() != s.floats.len() || s.histograms != 0 {
                    return Err(format!(
                        "expected {} float points and 0 histogram points for {}, but got {} float points {} and {} \
                         histogram points",
                        floats.len(),
                        format_labels(&s.labels),
                        s.floats.len(),
                        fmt_points(&s.floats),
                        s.histograms
                    ));
                }
                for (i, (want, got)) in floats.iter().zip(&s.floats).enumerate() {
                    if want.0 != got.0 {
                        return Err(format!(
                            "expected float value at index {i} for {} to have timestamp {}, but it had timestamp {} \
                             (result has {})",
                            format_labels(&s.labels),
                            want.0,
                            got.0,
                            fmt_points(&s.floats)
                        ));
                    }
                    if !almost_equal(got.1, want.1, EPSILON) {
                        return Err(format!(
                            "expected float value at index {i} (t={}) for {} to be {}, but got {} (result has {})",
                            got.0,
                            format_labels(&s.labels),
                            fmt_f(want.1),
                            fmt_f(got.1),
                            fmt_points(&s.floats)
                        ));
                    }
                }
            }
            for e in &eval.expected {
                if !seen.contains(&e.labels) {
                    return Err(format!("expected metric {} not found", format_labels(&e.labels)));
                }
            }
            Ok(())
        }
        QueryValue::Vector(samples) => {
            if eval.expect_scalar.is_some() {
                return Err("expected scalar result, but got vector".to_string());
            }
            let mut seen = HashSet::new();
            for (pos, s) in samples.iter().enumerate() {
                let Some(exp) = expected.get(&s.labels) else {
                    return Err(format!(
                        "unexpected metric {} in result, has value {}",
                        format_labels(&s.labels),
                        if s.histogram {
                            "{{histogram}}".to_string()
                        } else {
                            fmt_f(s.value)
                        }
                    ));
                };
                if eval.ordered && exp.pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} with [{}] at position {} but was at {}",
                        format_labels(&s.labels),
                        fmt_seq(&exp.values),
                        exp.pos,
                        pos + 1
                    ));
                }
                if s.histogram {
                    return Err(format!(
                        "expected float value for {} but got histogram",
                        format_labels(&s.labels)
                    ));
                }
                let want = exp.values.first().map_or(0.0, seq_float);
                if !almost_equal(want, s.value, EPSILON) {
                    return Err(format!(
                        "expected {} for {} but got {}",
                        fmt_f(want),
                        format_labels(&s.labels),
                        fmt_f(s.value)
                    ));
                }
                seen.insert(&s.labels);
            }
            for e in &eval.expected {
                if !seen.contains(&e.labels) {
                    return Err(format!(
                        "expected metric {} with [{}] not found",
                        format_labels(&e.labels),
                        fmt_seq(&e.values)
                    ));
                }
            }
            Ok(())
        }
        QueryValue::Scalar { value, .. } => {
            let Some(want) = eval.expect_scalar else {
                return Err(format!(
                    "expected vector or matrix result, but got scalar {}",
                    fmt_f(*value)
                ));
            };
            if !almost_equal(want, *value, EPSILON) {
                return Err(format!("expected scalar {} but got {}", fmt_f(want), fmt_f(*value)));
            }
            Ok(())
        }
        QueryValue::String { value, .. } => {
            let want = eval.expect_string.as_deref().unwrap_or("");
            if want != value {
                return Err(format!("expected string \"{want}\" but got \"{value}\""));
            }
            Ok(())
        }
    }
}

fn fmt_points(points: &[(i64, f64)]) -> String {
    let shown: Vec<String> = points
        .iter()
        .take(12)
        .map(|(t, v)| format!("{} @[{t}]", fmt_f(*v)))
        .collect();
    let more = if points.len() > 12 {
        format!(" ... ({} points)", points.len())
    } else {
        String::new()
    };
    format!("[{}{more}]", shown.join(" "))
}

/// A short rendering of a result value.
pub fn describe_value(value: &QueryValue) -> String {
    match value {
        QueryValue::Scalar { value, .. } => format!("scalar {}", fmt_f(*value)),
        QueryValue::String { value, .. } => format!("string {value:?}"),
        QueryValue::Vector(v) => format!("vector of {} samples", v.len()),
        QueryValue::Matrix(m) => format!("matrix of {} series", m.len()),
    }
}

const DIFF_LINES: usize = 10;

/// Appends the expected and actual values to a comparison message.
fn with_diff(message: String, eval: &Eval, value: &QueryValue) -> String {
    let mut out = message;
    out.push_str("\nexpected:");
    if let Some(s) = eval.expect_scalar {
        let _ = write!(out, " scalar {}", fmt_f(s));
    } else if let Some(s) = &eval.expect_string {
        let _ = write!(out, " string {s:?}");
    } else if eval.expected.is_empty() {
        out.push_str(" (empty)");
    }
    for e in eval.expected.iter().take(DIFF_LINES) {
        let _ = write!(out, "\n  {} {}", format_labels(&e.labels), fmt_seq(&e.values));
    }
    if eval.expected.len() > DIFF_LINES {
        let _ = write!(out, "\n  ... ({} series)", eval.expected.len());
    }
    out.push_str("\ngot:");
    match value {
        QueryValue::Scalar { value, .. } => {
            let _ = write!(out, " scalar {}", fmt_f(*value));
        }
        QueryValue::String { value, .. } => {
            let _ = write!(out, " string {value:?}");
        }
        QueryValue::Vector(v) => {
            if v.is_empty() {
                out.push_str(" (empty vector)");
            }
            for s in v.iter().take(DIFF_LINES) {
                let value = if s.histogram {
                    "{{histogram}}".to_string()
                } else {
                    fmt_f(s.value)
                };
                let _ = write!(out, "\n  {} {value}", format_labels(&s.labels));
            }
            if v.len() > DIFF_LINES {
                let _ = write!(out, "\n  ... ({} samples)", v.len());
            }
        }
        QueryValue::Matrix(m) => {
            if m.is_empty() {
                out.push_str(" (empty matrix)");
            }
            for s in m.iter().take(DIFF_LINES) {
                let _ = write!(out, "\n  {} {}", format_labels(&s.labels), fmt_points(&s.floats));
            }
            if m.len() > DIFF_LINES {
                let _ = write!(out, "\n  ... ({} series)", m.len());
            }
        }
    }
    out
}

/// An expected error message matches the API's `error`: exactly, or as its end (the API prefixes
/// parse errors with `invalid parameter "query": `).
fn error_matches(m: &TextMatch, actual: &str) -> bool {
    match m {
        TextMatch::Any => true,
        TextMatch::Message(msg) => actual == msg || actual.ends_with(msg.as_str()),
        TextMatch::Regex(re) => re.is_match(actual),
    }
}

static RE_POSITION_SUFFIX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r" \(\d+:\d+\)$").unwrap());

/// An expected annotation matches one of the API's: exactly or by regex, with or without the
/// ` (line:col)` position the API appends.
fn annotation_matches(m: &TextMatch, actual: &str) -> bool {
    let bare = RE_POSITION_SUFFIX.replace(actual, "");
    match m {
        TextMatch::Any => true,
        TextMatch::Message(msg) => actual == msg || bare == msg.as_str(),
        TextMatch::Regex(re) => re.is_match(actual) || re.is_match(&bare),
    }
}

fn validate_annotations(expected: &[TextMatch], actual: &[String], kind: &str) -> Result<(), String> {
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for e in expected {
        if !actual.iter().any(|a| annotation_matches(e, a)) {
            return Err(format!(
                "expected {kind} annotation matching {e} but no matching annotation was found, found: {actual:?}"
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| annotation_matches(e, a)) {
            return Err(format!("unexpected {kind} annotation {a:?} found"));
        }
    }
    Ok(())
}

/// `checkAnnotations` (3.x with `expect` lines), plus, when `strict`, the 3.0-3.4 rule that
/// undeclared warnings or infos fail the eval.
fn check_annotations(eval: &Eval, resp: &QueryResponse, strict: bool) -> Result<(), String> {
    if eval.warn && resp.warnings.is_empty() {
        return Err(format!(
            "expected warnings evaluating query {:?} but got none",
            eval.expr
        ));
    }
    if eval.info && resp.infos.is_empty() {
        return Err(format!(
            "expected info annotations evaluating query {:?} but got none",
            eval.expr
        ));
    }
    validate_annotations(&eval.expect_warn, &resp.warnings, "warn")?;
    validate_annotations(&eval.expect_info, &resp.infos, "info")?;
    if eval.expect_no_warn && !resp.warnings.is_empty() {
        return Err(format!("unexpected warning annotations: {:?}", resp.warnings));
    }
    if eval.expect_no_info && !resp.infos.is_empty() {
        return Err(format!("unexpected info annotations: {:?}", resp.infos));
    }
    if strict && !eval.ordered {
        if !eval.warn && eval.expect_warn.is_empty() && !resp.warnings.is_empty() {
            return Err(format!("unexpected warnings: {:?}", resp.warnings));
        }
        if !eval.info && eval.expect_info.is_empty() && !resp.infos.is_empty() {
            return Err(format!("unexpected info annotations: {:?}", resp.infos));
        }
    }
    Ok(())
}
