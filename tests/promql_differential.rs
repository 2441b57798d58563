//! Differential test of the PromQL engine: the same data is written by remote_write into a real
//! Prometheus 2.42 (Debian's `/usr/bin/prometheus`) and into `tidewatch server`, then every query
//! of the corpus `tests/promql_corpus/queries.promql` is asked of both, as instant queries at
//! several times and as range queries over several windows, and the answers must agree: the same
//! series (labels exact), the same timestamps, values within 1e-6 relative as Prometheus' own test
//! harness compares (`tidewatch_testkit::promqltest::diff`), the same order for `sort` and
//! `sort_desc`, and the same `errorType` when both fail.
//!
//! Data (fixed seed, 4 h at 15 s ending 2026-11-23 11:35 UTC, see [`synthetic`]): request
//! counters of six instances in three jobs with process restarts (counter resets), an outage
//! written as Prometheus writes one (staleness markers, `up` 0), a gap without markers, scrape
//! offsets and jitter; classic histograms (`le` buckets, `_sum`, `_count`) and deliberately broken
//! ones; gauges (temperatures below zero, memory in the 1e9s, integer queue depths); an info
//! metric whose version changes; NaN, ±Inf, -0, round-half values; timestamps as values for the
//! date functions; sparse and short-lived series. Plus the last 30 min of real node_exporter and
//! Prometheus metrics at 1 s (`../shared/data/node-metrics/node-1s-30m.om.gz`, a few families;
//! skipped with a note when the file is missing).
//!
//! Without `/usr/bin/prometheus` (or `$PROMETHEUS_BIN`) the test prints why and passes, unless
//! `TIDEWATCH_REQUIRE_PROMETHEUS=1`. `TIDEWATCH_PROMQL_DIFF_FILTER=text` runs only the queries
//! containing `text`; `TIDEWATCH_PROMQL_DIFF_HOLD=<seconds>` keeps both servers up that long after
//! the queries (their URLs are printed), to look into a difference by hand.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tidewatch_store::metrics::openmetrics::{Format, Parser};
use tidewatch_testkit::promqltest::diff::{ReferencePrometheus, diff_responses, diff_responses_ties};
use tidewatch_testkit::promqltest::{
    HttpTarget, Labels, PromClient, PrometheusTarget, QueryResponse, QueryValue, STALE_NAN_BITS, WriteSeries,
};

/// End of the data: 2026-11-23 11:35:00 UTC, the end of the node_exporter recording.
const T_END: i64 = 1_795_433_700_000;
/// Start of the synthetic data: 4 h earlier.
const T_START: i64 = T_END - 4 * HOUR;
const SCRAPE: i64 = 15_000;
const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// Instant queries are evaluated at these times.
const INSTANT_TIMES: &[(&str, i64)] = &[
    ("start+2m", T_START + 2 * MIN),
    ("start+1h10m7s (batch gap)", T_START + HOUR + 10 * MIN + 7 * SEC),
    ("start+2h14m30s (api-2 down)", T_START + 2 * HOUR + 14 * MIN + 30 * SEC),
    ("end-12m+0.25s (node data)", T_END - 12 * MIN + 250),
    ("end", T_END),
    ("end+4m59s (lookback edge)", T_END + 4 * MIN + 59 * SEC),
    ("end+5m (lookback boundary)", T_END + 5 * MIN),
    ("end+20m (all gone)", T_END + 20 * MIN),
];

/// Range queries: (name, start, end, step).
const RANGES: &[(&str, i64, i64, i64)] = &[
    ("whole span, 5m step", T_START, T_END + 10 * MIN, 5 * MIN),
    ("last 40m, 15s step", T_END - 40 * MIN, T_END, 15 * SEC),
    (
        "1h..2h40m, 47s step",
        T_START + 55 * MIN + 3 * SEC,
        T_START + 2 * HOUR + 40 * MIN,
        47 * SEC,
    ),
];

/// Worker threads asking queries (each asks both servers).
const WORKERS: usize = 3;
/// Mismatches printed in full.
const MAX_PRINTED: usize = 40;

#[test]
fn tidewatch_answers_the_corpus_as_prometheus_does() {
    let Some(bin) = PrometheusTarget::find_binary() else {
        let msg = "promql_differential: no Prometheus binary (/usr/bin/prometheus or $PROMETHEUS_BIN): skipped";
        if std::env::var("TIDEWATCH_REQUIRE_PROMETHEUS").as_deref() == Ok("1") {
            panic!("{msg}, but TIDEWATCH_REQUIRE_PROMETHEUS=1");
        }
        eprintln!("{msg}");
        return;
    };
    let started = Instant::now();
    let corpus = load_corpus(&corpus_dir().join("queries.promql"));
    let filter = std::env::var("TIDEWATCH_PROMQL_DIFF_FILTER").ok();
    let queries: Vec<&CorpusQuery> = corpus
        .iter()
        .filter(|q| filter.as_deref().is_none_or(|f| q.expr.contains(f)))
        .collect();
    if filter.is_none() {
        assert!(
            corpus.len() >= 300,
            "the corpus has {} queries, fewer than 300",
            corpus.len()
        );
        check_coverage(&corpus);
    }

    // Both servers start while the data is generated.
    let prometheus = std::thread::spawn(move || {
        // Prometheus' defaults (5m lookback, 50M samples), not the test engine's 10,000 samples.
        ReferencePrometheus::start(&bin, &["--query.lookback-delta=5m"]).expect("start prometheus")
    });
    let tidewatch = HttpTarget::tidewatch(&[]).expect("start tidewatch");
    let mut data = synthetic(0x7469_6465_7761_7463);
    let node = node_slice();
    let node_note = match &node {
        Ok(series) => format!("{} node series", series.len()),
        Err(e) => format!("no node data ({e})"),
    };
    data.extend(node.unwrap_or_default());
    let samples: usize = data.iter().map(|s| s.samples.len()).sum();
    let generated = started.elapsed();
    let prometheus = prometheus.join().expect("prometheus thread");
    if !prometheus.version().starts_with("2.42") {
        eprintln!(
            "promql_differential: WARNING: the corpus is checked against Prometheus 2.42; this is {}",
            prometheus.version()
        );
    }
    let want = PromClient::new(prometheus.url());
    let got = PromClient::new(tidewatch.base_url());

    // Both load at once (each write is in time order across series: Prometheus' head refuses
    // samples older than its newest minus 1 h).
    let load_started = Instant::now();
    std::thread::scope(|s| {
        let a = s.spawn(|| want.remote_write(&data));
        let b = s.spawn(|| got.remote_write(&data));
        a.join().unwrap().expect("write to prometheus");
        b.join().unwrap().expect("write to tidewatch");
    });
    let loaded = load_started.elapsed();
    // Both servers cut the oldest two 2 h ranges into blocks (the head keeps up to 3 h): queries
    // then read blocks and the head, as on a server that has been up for a while. Tidewatch cuts
    // on its 30 s maintenance tick, Prometheus right after the write that made the head too long.
    let blocks_started = Instant::now();
    let blocks = std::thread::scope(|s| {
        let a = s.spawn(|| wait_for_metric(want.base_url(), "prometheus_tsdb_blocks_loaded", 2.0));
        let b = s.spawn(|| wait_for_metric(got.base_url(), "tidewatch_metrics_blocks", 2.0));
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!(
        "promql_differential: blocks on disk after {:.1?}: prometheus {}, tidewatch {}",
        blocks_started.elapsed(),
        blocks.0,
        blocks.1
    );
    eprintln!(
        "promql_differential: {} series, {samples} samples ({node_note}); generated in {:.1?}, loaded in {:.1?}; \
         tidewatch at {} against prometheus {} at {}",
        data.len(),
        generated,
        loaded,
        tidewatch.base_url(),
        prometheus.version(),
        prometheus.url()
    );

    // Every query in every mode, on both servers.
    let query_started = Instant::now();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<QueryOutcome>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                let want = PromClient::new(want.base_url());
                let got = PromClient::new(got.base_url());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(q) = queries.get(i) else { break };
                    let outcome = run_query(&want, &got, q);
                    outcomes.lock().unwrap().push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|o| o.index);
    let queried = query_started.elapsed();

    // Report.
    let evaluations: usize = outcomes.iter().map(|o| o.evaluations).sum();
    let (with_data, empty, errors) = outcomes
        .iter()
        .fold((0, 0, 0), |a, o| (a.0 + o.kinds.0, a.1 + o.kinds.1, a.2 + o.kinds.2));
    let failing: Vec<&QueryOutcome> = outcomes.iter().filter(|o| !o.mismatches.is_empty()).collect();
    let mismatches: usize = failing.iter().map(|o| o.mismatches.len()).sum();
    let mut report = String::new();
    for (n, o) in failing.iter().enumerate() {
        if n >= MAX_PRINTED {
            report.push_str(&format!("... and {} more failing queries\n", failing.len() - n));
            break;
        }
        report.push_str(&format!(
            "MISMATCH line {}: {}   ({} of {} evaluations differ)\n",
            o.line,
            o.expr,
            o.mismatches.len(),
            o.evaluations
        ));
        for m in o.mismatches.iter().take(2) {
            report.push_str(&format!("  [{}] {}\n", m.0, m.1.replace('\n', "\n  ")));
        }
    }
    let vacuous: Vec<&QueryOutcome> = outcomes.iter().filter(|o| o.vacuous.is_some()).collect();
    for o in &vacuous {
        report.push_str(&format!(
            "CORPUS line {}: {}: {}\n",
            o.line,
            o.expr,
            o.vacuous.as_deref().unwrap_or("")
        ));
    }
    eprintln!(
        "{report}promql_differential: {} queries x ({} instant times + {} ranges) = {evaluations} evaluations in {:.1?} \
         ({} workers; Prometheus answered {with_data} with data, {empty} empty, {errors} errors); {} queries \
         differ ({mismatches} evaluations); total {:.1?}",
        queries.len(),
        INSTANT_TIMES.len(),
        RANGES.len(),
        queried,
        WORKERS,
        failing.len(),
        started.elapsed()
    );
    if let Some(secs) = std::env::var("TIDEWATCH_PROMQL_DIFF_HOLD")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        eprintln!(
            "promql_differential: holding both servers for {secs} s: prometheus {}, tidewatch {}",
            prometheus.url(),
            tidewatch.base_url()
        );
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    assert!(
        vacuous.is_empty(),
        "{} corpus queries are not what their marker says (see CORPUS lines above)",
        vacuous.len()
    );
    assert!(
        failing.is_empty(),
        "{} of {} queries answer differently from Prometheus (see MISMATCH lines above)",
        failing.len(),
        queries.len()
    );
}

// --- the corpus ----------------------------------------------------------------------------------

/// What a query is expected to give on Prometheus, so that the corpus stays meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// At least one evaluation gives a non-empty result (the default); some may fail.
    Data,
    /// Every evaluation is empty (`#! empty`): functions of native histograms on float data.
    Empty,
    /// At least one evaluation fails, none gives data (`#! error`): where there is nothing to
    /// compute, Prometheus may answer an empty result instead.
    Error,
    /// Instant evaluations give data, range evaluations fail (`#! instant`): range vectors and
    /// strings, which a range query refuses.
    InstantOnly,
}

#[derive(Debug, Clone)]
struct CorpusQuery {
    index: usize,
    line: usize,
    expr: String,
    expect: Expect,
    /// The result is ordered (`sort`, `sort_desc` at the top).
    ordered: bool,
    /// `topk` or `bottomk` somewhere: series with equal values may be chosen differently.
    ties: bool,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql_corpus")
}

/// One query per line; `#` lines are comments (`## section` headers), blank lines are skipped, and
/// a line may end in a marker `  #! empty`, `  #! error` or `  #! instant` (see [`Expect`]).
fn load_corpus(path: &Path) -> Vec<CorpusQuery> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (expr, expect) = match line.rsplit_once("#!") {
            Some((expr, marker)) => {
                let expect = match marker.trim() {
                    "empty" => Expect::Empty,
                    "error" => Expect::Error,
                    "instant" => Expect::InstantOnly,
                    other => panic!("{}:{}: unknown marker {other:?}", path.display(), n + 1),
                };
                (expr.trim(), expect)
            }
            None => (line, Expect::Data),
        };
        if let Some(first) = seen.insert(expr.to_string(), n + 1) {
            panic!("{}:{}: duplicate of line {first}: {expr}", path.display(), n + 1);
        }
        let ordered = expr.starts_with("sort(") || expr.starts_with("sort_desc(");
        let ties = expr.contains("topk") || expr.contains("bottomk");
        out.push(CorpusQuery {
            index: out.len(),
            line: n + 1,
            expr: expr.to_string(),
            expect,
            ordered,
            ties,
        });
    }
    out
}

/// Every function, aggregation, operator and modifier of PromQL 2.42 appears in the corpus.
fn check_coverage(corpus: &[CorpusQuery]) {
    const FUNCTIONS: &[&str] = &[
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
    ];
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    const WORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
        "offset",
        "start",
        "end",
    ];
    const SYMBOLS: &[&str] = &[
        " + ", " - ", " * ", " / ", " % ", " ^ ", " == ", " != ", " > ", " < ", " >= ", " <= ", "=~", "!~", "@ ",
        "offset -", ":]", "[1h:5m]",
    ];
    let words: std::collections::HashSet<&str> = corpus
        .iter()
        .flat_map(|q| q.expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .collect();
    let mut missing: Vec<String> = FUNCTIONS
        .iter()
        .chain(AGGREGATIONS)
        .chain(WORDS)
        .filter(|w| !words.contains(**w))
        .map(|w| w.to_string())
        .collect();
    missing.extend(
        SYMBOLS
            .iter()
            .filter(|s| !corpus.iter().any(|q| q.expr.contains(**s)))
            .map(|s| format!("{s:?}")),
    );
    assert!(missing.is_empty(), "the corpus does not use: {}", missing.join(", "));
}

// --- running -------------------------------------------------------------------------------------

struct QueryOutcome {
    index: usize,
    line: usize,
    expr: String,
    evaluations: usize,
    /// (mode, description) of each evaluation that differs.
    mismatches: Vec<(String, String)>,
    /// Set when Prometheus' answers contradict the corpus marker.
    vacuous: Option<String>,
    /// Prometheus' answers: (with data, empty, errors).
    kinds: (usize, usize, usize),
}

fn run_query(want: &PromClient, got: &PromClient, q: &CorpusQuery) -> QueryOutcome {
    let mut mismatches = Vec::new();
    let mut evaluations = 0;
    let (mut instant_data, mut instant_errors, mut range_data, mut range_errors) = (0, 0, 0, 0);
    let mut check = |mode: String, w: Result<QueryResponse, String>, g: Result<QueryResponse, String>| {
        evaluations += 1;
        let w = w.unwrap_or_else(|e| panic!("prometheus did not answer {:?} ({mode}): {e}", q.expr));
        let instant = !mode.starts_with("range");
        match &w.result {
            Err(_) if instant => instant_errors += 1,
            Err(_) => range_errors += 1,
            Ok(v) if has_data(v) && instant => instant_data += 1,
            Ok(v) if has_data(v) => range_data += 1,
            Ok(_) => {}
        }
        match g {
            Err(e) => mismatches.push((mode, format!("tidewatch did not answer: {e}"))),
            Ok(g) => {
                let diff = if q.ties {
                    diff_responses_ties(&w, &g)
                } else {
                    diff_responses(&w, &g, q.ordered)
                };
                if let Err(diff) = diff {
                    mismatches.push((mode, diff));
                }
            }
        }
    };
    for &(name, t) in INSTANT_TIMES {
        check(
            format!("instant at {name} = {}", secs(t)),
            want.query_instant(&q.expr, t),
            got.query_instant(&q.expr, t),
        );
    }
    for &(name, start, end, step) in RANGES {
        check(
            format!(
                "range {name}: start={} end={} step={}",
                secs(start),
                secs(end),
                secs(step)
            ),
            want.query_range(&q.expr, start, end, step),
            got.query_range(&q.expr, start, end, step),
        );
    }
    let nr = RANGES.len();
    let (data, errors) = (instant_data + range_data, instant_errors + range_errors);
    let vacuous = match q.expect {
        Expect::Data if data == 0 => Some(format!(
            "no data on Prometheus in any evaluation ({errors} errors): mark it `#! empty` or `#! error`, or change it"
        )),
        Expect::Empty if data + errors > 0 => {
            Some(format!("{data} evaluations with data, {errors} errors on Prometheus"))
        }
        Expect::Error if data > 0 || errors == 0 => {
            Some(format!("{data} evaluations with data, {errors} errors on Prometheus"))
        }
        Expect::InstantOnly if instant_data == 0 || instant_errors > 0 || range_errors < nr => {
            Some("not data-as-instant, error-as-range on Prometheus".to_string())
        }
        _ => None,
    };
    QueryOutcome {
        index: q.index,
        line: q.line,
        expr: q.expr.clone(),
        evaluations,
        mismatches,
        vacuous,
        kinds: (data, evaluations - data - errors, errors),
    }
}

/// Polls `<url>/metrics` until the gauge `name` is at least `min` (at most 60 s); its last value.
fn wait_for_metric(url: &str, name: &str, min: f64) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(5)))
        .proxy(None)
        .build()
        .into();
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let mut value = f64::NAN;
    while Instant::now() < deadline {
        let text = agent
            .get(format!("{url}/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        value = text
            .lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .next()
            .unwrap_or(f64::NAN);
        if value >= min {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    value
}

fn has_data(v: &QueryValue) -> bool {
    match v {
        QueryValue::Vector(s) => !s.is_empty(),
        QueryValue::Matrix(m) => m.iter().any(|s| !s.floats.is_empty() || s.histograms > 0),
        QueryValue::Scalar { .. } | QueryValue::String { .. } => true,
    }
}

fn secs(ms: i64) -> String {
    tidewatch_testkit::promqltest::format_seconds(ms)
}

// --- the data --------------------------------------------------------------------------------------

/// splitmix64: a small, fixed, portable generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// A Poisson-like count with mean `mean`.
    fn count(&mut self, mean: f64) -> f64 {
        (mean + mean.sqrt() * self.normal()).round().max(0.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Series under construction, by label set.
#[derive(Default)]
struct Data {
    series: Vec<WriteSeries>,
    by_labels: HashMap<Labels, usize>,
}

impl Data {
    fn push(&mut self, labels: &[(&str, &str)], t: i64, v: f64) {
        let labels: Labels = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let i = match self.by_labels.get(&labels) {
            Some(&i) => i,
            None => {
                self.series.push(WriteSeries {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                self.by_labels.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let series = &mut self.series[i];
        assert!(
            series.samples.last().is_none_or(|&(last, _)| last < t),
            "{:?}: samples out of order at {t}",
            series.labels
        );
        series.samples.push((t, v));
    }
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A scraped target of the synthetic data.
struct Scraped {
    job: &'static str,
    instance: &'static str,
    /// Scrape offset within the 15 s interval.
    offset: i64,
    /// Timestamps vary by up to ± this many ms.
    jitter: i64,
    /// Process restarts (counters start again from zero), as offsets from `T_START`.
    restarts: &'static [i64],
    /// Down (`up` 0, every other series marked stale once), as offsets from `T_START`.
    down: Option<(i64, i64)>,
    /// Not scraped at all, no staleness markers (a lost network), as offsets from `T_START`.
    gap: Option<(i64, i64)>,
    /// Median request latency, s.
    latency: f64,
}

const TARGETS: &[Scraped] = &[
    Scraped {
        job: "api",
        instance: "api-0:8080",
        offset: 0,
        jitter: 0,
        restarts: &[],
        down: None,
        gap: None,
        latency: 0.04,
    },
    Scraped {
        job: "api",
        instance: "api-1:8080",
        offset: 3000,
        jitter: 0,
        restarts: &[HOUR + 23 * MIN],
        down: None,
        gap: None,
        latency: 0.06,
    },
    Scraped {
        job: "api",
        instance: "api-2:8080",
        offset: 7500,
        jitter: 0,
        restarts: &[],
        down: Some((2 * HOUR, 2 * HOUR + 30 * MIN)),
        gap: None,
        latency: 0.05,
    },
    Scraped {
        job: "web",
        instance: "web-0:8080",
        offset: 11_000,
        jitter: 400,
        restarts: &[2 * HOUR + 41 * MIN, 3 * HOUR + 5 * MIN],
        down: None,
        gap: None,
        latency: 0.2,
    },
    Scraped {
        job: "web",
        instance: "web-1:8080",
        offset: 1000,
        jitter: 400,
        restarts: &[],
        down: None,
        gap: None,
        latency: 0.25,
    },
    Scraped {
        job: "batch",
        instance: "batch-0:9000",
        offset: 5000,
        jitter: 0,
        restarts: &[3 * HOUR + 30 * MIN],
        down: None,
        gap: Some((HOUR, HOUR + 20 * MIN)),
        latency: 1.5,
    },
];

const BUCKETS: &[(&str, f64)] = &[
    ("0.005", 0.005),
    ("0.01", 0.01),
    ("0.025", 0.025),
    ("0.05", 0.05),
    ("0.1", 0.1),
    ("0.25", 0.25),
    ("0.5", 0.5),
    ("1", 1.0),
    ("2.5", 2.5),
    ("5", 5.0),
    ("10", 10.0),
    ("+Inf", f64::INFINITY),
];

/// The synthetic data set (see the module documentation).
fn synthetic(seed: u64) -> Vec<WriteSeries> {
    let mut rng = Rng(seed);
    let mut d = Data::default();
    let steps = ((T_END - T_START) / SCRAPE) as usize;
    let grid = |i: usize| T_START + i as i64 * SCRAPE;

    // Scraped targets: up, request counters, latency histograms, memory, build info.
    let requests: &[(&str, &str, f64, f64)] = &[
        ("GET", "200", 5.0, 20.0),
        ("POST", "200", 1.0, 5.0),
        ("GET", "500", 0.05, 0.5),
        ("POST", "500", 0.0, 0.2),
    ];
    for target in TARGETS {
        let rates: Vec<f64> = requests.iter().map(|r| rng.range(r.2, r.3)).collect();
        let phase = rng.range(0.0, std::f64::consts::TAU);
        let mut counters = vec![0.0; requests.len()];
        let mut buckets = vec![0.0; BUCKETS.len()];
        let (mut sum, mut count) = (0.0, 0.0);
        let mut memory = 1.2e9 + rng.range(0.0, 2e9);
        let mut marked_down = false;
        let mut restarts = target.restarts.iter().peekable();
        let (job, instance) = (target.job, target.instance);
        for i in 0..=steps {
            let jitter = if target.jitter > 0 {
                rng.range(-(target.jitter as f64), target.jitter as f64).round() as i64
            } else {
                0
            };
            let t = grid(i) + target.offset + jitter;
            let since = t - T_START;
            if target.gap.is_some_and(|(a, b)| since >= a && since < b) {
                continue;
            }
            let down = target.down.is_some_and(|(a, b)| since >= a && since < b);
            if down {
                d.push(&[("__name__", "up"), ("job", job), ("instance", instance)], t, 0.0);
                if !marked_down {
                    marked_down = true;
                    for (method, code, ..) in requests {
                        d.push(&request_labels(job, instance, method, code), t, stale());
                    }
                    for (le, _) in BUCKETS {
                        d.push(&bucket_labels(job, instance, le), t, stale());
                    }
                    for name in ["request_duration_seconds_sum", "request_duration_seconds_count"] {
                        d.push(&[("__name__", name), ("job", job), ("instance", instance)], t, stale());
                    }
                    d.push(
                        &[("__name__", "memory_usage_bytes"), ("job", job), ("instance", instance)],
                        t,
                        stale(),
                    );
                    d.push(&build_labels(job, instance, "v1.4.2"), t, stale());
                }
                continue;
            }
            let restarted = if marked_down {
                marked_down = false;
                true
            } else if restarts.peek().is_some_and(|&&r| since >= r) {
                restarts.next();
                true
            } else {
                false
            };
            if restarted {
                counters.iter_mut().for_each(|c| *c = 0.0);
                buckets.iter_mut().for_each(|c| *c = 0.0);
                (sum, count) = (0.0, 0.0);
                memory = 0.8e9;
            }
            d.push(&[("__name__", "up"), ("job", job), ("instance", instance)], t, 1.0);
            let wave = 1.0 + 0.5 * (2.0 * std::f64::consts::PI * since as f64 / HOUR as f64 + phase).sin();
            let mut ok = 0.0;
            for (j, (method, code, ..)) in requests.iter().enumerate() {
                let n = if i == 0 { 0.0 } else { rng.count(rates[j] * 15.0 * wave) };
                counters[j] += n;
                if *code == "200" {
                    ok += n;
                }
                d.push(&request_labels(job, instance, method, code), t, counters[j]);
            }
            if job != "batch" {
                // web-1 is slow for 20 minutes.
                let slow = instance == "web-1:8080" && (3 * HOUR..3 * HOUR + 20 * MIN).contains(&since);
                let median = if slow { 2.0 } else { target.latency };
                for _ in 0..ok as usize {
                    let latency = (median.ln() + 0.9 * rng.normal()).exp();
                    sum += latency;
                    count += 1.0;
                    for (k, (_, bound)) in BUCKETS.iter().enumerate() {
                        if latency <= *bound {
                            buckets[k] += 1.0;
                        }
                    }
                }
                for (k, (le, _)) in BUCKETS.iter().enumerate() {
                    d.push(&bucket_labels(job, instance, le), t, buckets[k]);
                }
                let sum_labels = [
                    ("__name__", "request_duration_seconds_sum"),
                    ("job", job),
                    ("instance", instance),
                ];
                d.push(&sum_labels, t, sum);
                let count_labels = [
                    ("__name__", "request_duration_seconds_count"),
                    ("job", job),
                    ("instance", instance),
                ];
                d.push(&count_labels, t, count);
            }
            memory = (memory + 6e6 * rng.normal()).max(1e8);
            if rng.f64() < 0.01 {
                memory *= 0.6; // a big collection
            }
            let memory_labels = [("__name__", "memory_usage_bytes"), ("job", job), ("instance", instance)];
            d.push(&memory_labels, t, memory.round());
            // web-1 is deployed anew at 2h: a new build_info series, the old one marked stale.
            let deployed = instance == "web-1:8080" && since >= 2 * HOUR;
            if deployed
                && d.by_labels
                    .contains_key(&to_labels(&build_labels(job, instance, "v1.4.2")))
            {
                let old = build_labels(job, instance, "v1.4.2");
                let last = d.series[d.by_labels[&to_labels(&old)]].samples.last().map(|s| s.1);
                if last.is_some_and(|v| v.to_bits() != STALE_NAN_BITS) {
                    d.push(&old, t, stale());
                }
            }
            let version = if deployed { "v2.0.0-rc.1" } else { "v1.4.2" };
            d.push(&build_labels(job, instance, version), t, 1.0);
        }
    }

    // Queue depths of the batch job: integer gauges that often stay put.
    for q in ["q0", "q1", "q2", "q3"] {
        let mut depth = rng.below(10) as f64;
        for i in 0..=steps {
            let t = grid(i) + 5000;
            if (t - T_START) >= HOUR && (t - T_START) < HOUR + 20 * MIN {
                continue;
            }
            if rng.f64() < 0.3 {
                depth = (depth + rng.below(5) as f64 - 2.0).clamp(0.0, 20.0);
            }
            let labels = [
                ("__name__", "queue_depth"),
                ("job", "batch"),
                ("instance", "batch-0:9000"),
                ("queue", q),
            ];
            d.push(&labels, t, depth);
        }
    }

    // Temperatures: sines with noise, below zero in Oslo and Reykjavik.
    for (location, base, amplitude, period_h) in [
        ("oslo", -8.0, 5.0, 3.0),
        ("lagos", 30.0, 3.0, 5.0),
        ("lima", 18.0, 2.0, 2.0),
        ("reykjavik", 2.0, 4.0, 4.0),
    ] {
        for i in 0..=steps {
            let t = grid(i) + 2000;
            let x = 2.0 * std::f64::consts::PI * (t - T_START) as f64 / (period_h * HOUR as f64);
            let v = base + amplitude * x.sin() + 0.3 * rng.normal();
            let labels = [
                ("__name__", "temperature_celsius"),
                ("job", "weather"),
                ("instance", "station:9100"),
                ("location", location),
            ];
            d.push(&labels, t, (v * 10.0).round() / 10.0);
        }
    }

    // Special values: NaN, ±Inf, -0, huge and tiny numbers, halves for round().
    let mixed = [
        1.5,
        -2.5,
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e300,
        -1e-300,
        2.5,
        0.5,
        -0.5,
    ];
    for i in 0..=steps {
        let t = grid(i);
        let n = i as f64;
        let mut put = |kind: &str, v: f64| {
            d.push(
                &[("__name__", "special_values"), ("job", "special"), ("kind", kind)],
                t,
                v,
            )
        };
        put("nan", if i % 10 == 3 { f64::NAN } else { (n * 0.5) % 7.0 - 3.0 });
        put(
            "inf",
            if i % 20 == 5 {
                f64::INFINITY
            } else {
                100.0 + (i % 13) as f64
            },
        );
        put(
            "neg_inf",
            if i % 17 == 0 {
                f64::NEG_INFINITY
            } else {
                -((i % 11) as f64)
            },
        );
        put("mixed", mixed[rng.below(mixed.len() as u64) as usize]);
        put("zero", 0.0);
        put("neg", -(rng.range(0.01, 5.0) * 100.0).round() / 100.0);
        put("big", 1e15 + n);
        put("half", [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5][i % 6]);
    }

    // Timestamps as values, for the date functions.
    for i in 0..=steps {
        let t = grid(i);
        for (event, v) in [
            ("leap_day", 1_709_208_000.0),      // 2024-02-29 12:00:00
            ("new_years_eve", 1_704_067_199.0), // 2023-12-31 23:59:59
            ("epoch", 0.0),                     // 1970-01-01 00:00:00
            ("before_epoch", -34_560_000.5),    // 1968-11-26
            ("far_future", 4_102_444_800.0),    // 2100-01-01 00:00:00
            ("fractional", 1_700_000_000.75),   // 2023-11-14 22:13:20.75
            ("now", t as f64 / 1000.0),         // the sample's own time
            ("end_of_feb", 1_740_787_199.0),    // 2025-02-28 23:59:59
        ] {
            let labels = [
                ("__name__", "event_timestamp_seconds"),
                ("job", "special"),
                ("event", event),
            ];
            d.push(&labels, t, v);
        }
    }

    // Sparse series: every 4 min, and every 7 min (longer than the lookback).
    for (instance, every) in [("every4m", 4 * MIN), ("every7m", 7 * MIN)] {
        let mut t = T_START + 30 * SEC;
        let mut n = 0.0;
        while t <= T_END {
            n += 1.0;
            d.push(
                &[("__name__", "sparse_gauge"), ("job", "sparse"), ("instance", instance)],
                t,
                n * 1.5,
            );
            t += every;
        }
    }

    // Short-lived series: a few minutes of a counter, then a staleness marker.
    for (instance, from, to) in [
        ("e1", T_START + 30 * MIN, T_START + 40 * MIN),
        ("e2", T_START + 2 * HOUR + 5 * MIN, T_START + 2 * HOUR + 12 * MIN),
        ("e3", T_END - 20 * MIN, T_END - 8 * MIN),
    ] {
        let labels = [
            ("__name__", "short_lived"),
            ("job", "ephemeral"),
            ("instance", instance),
        ];
        let mut t = from;
        let mut v = 0.0;
        while t < to {
            v += rng.below(4) as f64;
            d.push(&labels, t, v);
            t += SCRAPE;
        }
        d.push(&labels, to, stale());
    }

    // Label values that need escaping, and a recording-rule style name.
    for i in 0..=steps {
        let t = grid(i) + 4000;
        let labels = [
            ("__name__", "weird_labels"),
            ("job", "special"),
            ("path", "/a\"b\\c"),
            ("unicode", "ünïcödé 🚀"),
            ("newline", "line1\nline2"),
            ("space", " "),
        ];
        d.push(&labels, t, 1.0);
        for (job, v) in [("api", 42.5), ("web", 17.25), ("batch", 0.5)] {
            let v = v * (1.0 + 0.1 * (i as f64 / 40.0).sin());
            d.push(&[("__name__", "job:http_requests:rate5m"), ("job", job)], t, v);
        }
    }

    // One sample only.
    d.push(
        &[("__name__", "single_sample"), ("job", "special")],
        T_START + 2 * HOUR,
        42.0,
    );

    // Broken classic histograms, for histogram_quantile's corner cases.
    let broken: &[(&str, &[(&str, f64)])] = &[
        ("no_inf", &[("0.1", 3.0), ("0.5", 5.0), ("1", 6.0)]),
        (
            "non_monotonic",
            &[("0.1", 10.0), ("0.5", 8.0), ("1", 20.0), ("+Inf", 20.0)],
        ),
        ("dup_le", &[("0.5", 5.0), ("0.50", 5.0), ("1", 9.0), ("+Inf", 10.0)]),
        ("only_inf", &[("+Inf", 10.0)]),
        ("nan_bucket", &[("0.1", f64::NAN), ("1", 5.0), ("+Inf", 10.0)]),
        ("zero", &[("0.1", 0.0), ("1", 0.0), ("+Inf", 0.0)]),
        ("bad_le", &[("abc", 4.0), ("1", 5.0), ("+Inf", 10.0)]),
        ("neg_le", &[("-1", 1.0), ("0", 4.0), ("1", 8.0), ("+Inf", 10.0)]),
    ];
    for (instance, buckets) in broken {
        for i in 0..=steps {
            let t = grid(i) + 9000;
            for (le, per_step) in buckets.iter() {
                let labels = [
                    ("__name__", "broken_duration_seconds_bucket"),
                    ("job", "broken"),
                    ("instance", instance),
                    ("le", le),
                ];
                d.push(&labels, t, per_step * i as f64);
            }
        }
    }

    d.series
}

fn request_labels<'a>(job: &'a str, instance: &'a str, method: &'a str, code: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("__name__", "http_requests_total"),
        ("job", job),
        ("instance", instance),
        ("method", method),
        ("code", code),
    ]
}

fn bucket_labels<'a>(job: &'a str, instance: &'a str, le: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("__name__", "request_duration_seconds_bucket"),
        ("job", job),
        ("instance", instance),
        ("le", le),
    ]
}

fn build_labels<'a>(job: &'a str, instance: &'a str, version: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("__name__", "build_info"),
        ("job", job),
        ("instance", instance),
        ("version", version),
        ("goversion", "go1.19.8"),
    ]
}

fn to_labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Families of the real recording used here (node_exporter and Prometheus itself, 1 s).
const NODE_FAMILIES: &[&str] = &[
    "node_cpu_seconds_total",
    "node_network_receive_bytes_total",
    "node_memory_MemAvailable_bytes",
    "node_load1",
    "node_filesystem_avail_bytes",
    "prometheus_http_request_duration_seconds_bucket",
    "prometheus_http_request_duration_seconds_count",
    "prometheus_http_request_duration_seconds_sum",
    "go_gc_duration_seconds",
    "go_gc_duration_seconds_count",
    "go_gc_duration_seconds_sum",
    "process_cpu_seconds_total",
    "scrape_duration_seconds",
];

/// The families above from `../shared/data/node-metrics/node-1s-30m.om.gz`, parsed with the
/// store's OpenMetrics parser (decompressed by `gzip -dc`, much faster than a debug build).
fn node_slice() -> Result<Vec<WriteSeries>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/node-metrics/node-1s-30m.om.gz");
    if !path.is_file() {
        return Err(format!("{} not found", path.display()));
    }
    let mut child = Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gzip -dc: {e}"))?;
    let mut kept = Vec::new();
    let mut reader = BufReader::with_capacity(1 << 20, child.stdout.take().expect("stdout"));
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let name_end = line.iter().position(|&b| b == b'{' || b == b' ').unwrap_or(line.len());
        let name = &line[..name_end];
        if line.first() == Some(&b'#') || NODE_FAMILIES.iter().any(|f| f.as_bytes() == name) {
            kept.extend_from_slice(&line);
        }
    }
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("gzip -dc {} failed: {status}", path.display()));
    }
    let mut by_labels: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for item in Parser::new(&kept[..], Format::Detect, 0) {
        let (labels, sample) = item.map_err(|e| format!("{}: {e}", path.display()))?;
        let labels: Labels = labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
        by_labels
            .entry(labels)
            .or_default()
            .push((sample.timestamp_ms, sample.value));
    }
    Ok(by_labels
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by_key(|s| s.0);
            samples.dedup_by_key(|s| s.0);
            WriteSeries { labels, samples }
        })
        .collect())
}

#[test]
fn synthetic_data_is_deterministic_and_plausible() {
    let a = synthetic(1);
    let b = synthetic(1);
    assert_eq!(a.len(), b.len());
    assert!(a.iter().zip(&b).all(|(x, y)| {
        x.labels == y.labels
            && x.samples.len() == y.samples.len()
            && x.samples
                .iter()
                .zip(&y.samples)
                .all(|(p, q)| p.0 == q.0 && p.1.to_bits() == q.1.to_bits())
    }));
    let samples: usize = a.iter().map(|s| s.samples.len()).sum();
    assert!(
        a.len() > 150 && samples > 150_000,
        "{} series, {samples} samples",
        a.len()
    );
    let stale_markers = a
        .iter()
        .flat_map(|s| &s.samples)
        .filter(|p| p.1.to_bits() == STALE_NAN_BITS)
        .count();
    assert!(stale_markers > 20, "{stale_markers} staleness markers");
    let corpus = load_corpus(&corpus_dir().join("queries.promql"));
    assert!(corpus.len() >= 300, "{} queries", corpus.len());
    check_coverage(&corpus);
}
