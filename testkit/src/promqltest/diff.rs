//! Differential comparison: the answer of a reference server (Prometheus) against the answer of
//! the server under test, for the same query, with the float rule of Prometheus' test harness
//! ([`almost_equal`] with [`EPSILON`]).
//!
//! - Vectors and matrices are compared as sets keyed by the full label set; an instant vector's
//!   timestamps must match too, a matrix series' points must match one for one (timestamp exact,
//!   value within the epsilon, stale markers only equal to themselves).
//! - `ordered` (results of `sort`, `sort_desc`): additionally, the values must come in the same
//!   order. Only the values: series with equal values may come in any order, as Go's `sort.Sort`
//!   is not stable.
//! - Two error answers agree when their `errorType` is the same (messages differ between
//!   implementations); an error against a value is a difference.
//! - Warnings are not compared.
//! - [`diff_responses_ties`] (for `topk` and `bottomk`): which of several series with equal values
//!   is selected depends on Prometheus' storage order (series creation order in the head, label
//!   order in blocks), so series present on one side only are accepted when they pair up with
//!   series of the other side by equal values, timestamp by timestamp.
//!
//! A difference is described by the first differing series, with both sides' points.
//!
//! [`ReferencePrometheus`] starts the reference server with the flags of the caller's choice
//! ([`PrometheusTarget`](super::PrometheusTarget) fixes `--query.max-samples=10000`, which
//! Prometheus' flag parser refuses to see twice).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::parse::{Labels, STALE_NAN_BITS, format_labels};
use super::run::{EPSILON, almost_equal};
use super::target::{ApiError, MatrixSeries, QueryResponse, QueryValue, VectorSample};

/// Compares two answers; `Err` describes the first difference (`want` is the reference).
pub fn diff_responses(want: &QueryResponse, got: &QueryResponse, ordered: bool) -> Result<(), String> {
    match (&want.result, &got.result) {
        (Ok(w), Ok(g)) => diff_values(w, g, ordered),
        (Err(w), Err(g)) if w.error_type == g.error_type => Ok(()),
        (Err(w), Err(g)) => Err(format!(
            "both failed, with different errorType: want {}, got {}",
            describe_error(w),
            describe_error(g)
        )),
        (Err(w), Ok(g)) => Err(format!(
            "want error {}, got a {} result: {}",
            describe_error(w),
            value_kind(g),
            summarize_value(g, 3)
        )),
        (Ok(w), Err(g)) => Err(format!(
            "want a {} result ({}), got error {}",
            value_kind(w),
            summarize_value(w, 3),
            describe_error(g)
        )),
    }
}

/// [`diff_responses`] for results of `topk` and `bottomk`, where ties make the choice of series
/// implementation-defined: at every timestamp, the series on one side only must pair up with the
/// series on the other side only by equal values (within the epsilon); series on both sides must
/// have equal values.
pub fn diff_responses_ties(want: &QueryResponse, got: &QueryResponse) -> Result<(), String> {
    let strict = diff_responses(want, got, false);
    let Err(strict_diff) = strict else { return Ok(()) };
    let (Ok(w), Ok(g)) = (&want.result, &got.result) else {
        return Err(strict_diff);
    };
    let by_time = |v: &QueryValue| -> Option<BTreeMap<i64, BTreeMap<Labels, f64>>> {
        let mut out: BTreeMap<i64, BTreeMap<Labels, f64>> = BTreeMap::new();
        match v {
            QueryValue::Vector(samples) => {
                for s in samples {
                    out.entry(s.t_ms).or_default().insert(s.labels.clone(), s.value);
                }
            }
            QueryValue::Matrix(series) => {
                for s in series {
                    for &(t, x) in &s.floats {
                        out.entry(t).or_default().insert(s.labels.clone(), x);
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    };
    let (Some(w), Some(g)) = (by_time(w), by_time(g)) else {
        return Err(strict_diff);
    };
    let empty = BTreeMap::new();
    for t in w.keys().chain(g.keys()) {
        let (ws, gs) = (w.get(t).unwrap_or(&empty), g.get(t).unwrap_or(&empty));
        let mut only_w = Vec::new();
        for (labels, &x) in ws {
            match gs.get(labels) {
                Some(&y) if !same_float(x, y) => {
                    return Err(format!(
                        "{strict_diff}\n    at {t}: {}: want {}, got {}",
                        format_labels(labels),
                        fmt_f(x),
                        fmt_f(y)
                    ));
                }
                Some(_) => {}
                None => only_w.push(x),
            }
        }
        let mut only_g: Vec<f64> = gs
            .iter()
            .filter(|(l, _)| !ws.contains_key(*l))
            .map(|(_, &y)| y)
            .collect();
        only_w.sort_by(f64::total_cmp);
        only_g.sort_by(f64::total_cmp);
        if only_w.len() != only_g.len() || only_w.iter().zip(&only_g).any(|(x, y)| !same_float(*x, *y)) {
            return Err(format!(
                "{strict_diff}\n    at {t}, not a tie: values of series on one side only: want {:?}, got {:?}",
                only_w, only_g
            ));
        }
    }
    Ok(())
}

/// Compares two values; `Err` describes the first difference (`want` is the reference).
pub fn diff_values(want: &QueryValue, got: &QueryValue, ordered: bool) -> Result<(), String> {
    match (want, got) {
        (QueryValue::Vector(w), QueryValue::Vector(g)) => diff_vectors(w, g, ordered),
        (QueryValue::Matrix(w), QueryValue::Matrix(g)) => diff_matrices(w, g),
        (QueryValue::Scalar { t_ms: wt, value: wv }, QueryValue::Scalar { t_ms: gt, value: gv }) => {
            if wt != gt {
                return Err(format!("scalar timestamp: want {wt}, got {gt}"));
            }
            if !almost_equal(*wv, *gv, EPSILON) {
                return Err(format!("scalar: want {}, got {}", fmt_f(*wv), fmt_f(*gv)));
            }
            Ok(())
        }
        (QueryValue::String { t_ms: wt, value: wv }, QueryValue::String { t_ms: gt, value: gv }) => {
            if wt != gt || wv != gv {
                return Err(format!("string: want {wv:?} at {wt}, got {gv:?} at {gt}"));
            }
            Ok(())
        }
        (w, g) => Err(format!(
            "result type: want {} ({}), got {} ({})",
            value_kind(w),
            summarize_value(w, 3),
            value_kind(g),
            summarize_value(g, 3)
        )),
    }
}

fn diff_vectors(want: &[VectorSample], got: &[VectorSample], ordered: bool) -> Result<(), String> {
    let w = index(want.iter().map(|s| (&s.labels, s)))?;
    let g = index(got.iter().map(|s| (&s.labels, s))).map_err(|e| format!("answer under test: {e}"))?;
    for (labels, ws) in &w {
        let Some(gs) = g.get(labels) else {
            return Err(format!(
                "series missing: {} = {} ({} series wanted, {} got; got: {})",
                format_labels(labels),
                fmt_f(ws.value),
                want.len(),
                got.len(),
                summarize_vector(got, 3)
            ));
        };
        if ws.histogram || gs.histogram {
            if ws.histogram != gs.histogram {
                return Err(format!("{}: histogram on one side only", format_labels(labels)));
            }
            continue;
        }
        if ws.t_ms != gs.t_ms {
            return Err(format!(
                "{}: timestamp: want {}, got {}",
                format_labels(labels),
                ws.t_ms,
                gs.t_ms
            ));
        }
        if !same_float(ws.value, gs.value) {
            return Err(format!(
                "{}: want {}, got {}",
                format_labels(labels),
                fmt_f(ws.value),
                fmt_f(gs.value)
            ));
        }
    }
    if let Some((labels, gs)) = g.iter().find(|(l, _)| !w.contains_key(*l)) {
        return Err(format!(
            "unexpected series: {} = {} ({} series wanted, {} got; wanted: {})",
            format_labels(labels),
            fmt_f(gs.value),
            want.len(),
            got.len(),
            summarize_vector(want, 3)
        ));
    }
    if ordered {
        for (i, (ws, gs)) in want.iter().zip(got).enumerate() {
            if !same_float(ws.value, gs.value) {
                return Err(format!(
                    "order: position {i}: want {} = {}, got {} = {}",
                    format_labels(&ws.labels),
                    fmt_f(ws.value),
                    format_labels(&gs.labels),
                    fmt_f(gs.value)
                ));
            }
        }
    }
    Ok(())
}

fn diff_matrices(want: &[MatrixSeries], got: &[MatrixSeries]) -> Result<(), String> {
    let w = index(want.iter().map(|s| (&s.labels, s)))?;
    let g = index(got.iter().map(|s| (&s.labels, s))).map_err(|e| format!("answer under test: {e}"))?;
    for (labels, ws) in &w {
        let Some(gs) = g.get(labels) else {
            return Err(format!(
                "series missing: {} with {} points {} ({} series wanted, {} got)",
                format_labels(labels),
                ws.floats.len(),
                fmt_points(&ws.floats, 0, 4),
                want.len(),
                got.len()
            ));
        };
        if ws.histograms != gs.histograms {
            return Err(format!(
                "{}: histogram points: want {}, got {}",
                format_labels(labels),
                ws.histograms,
                gs.histograms
            ));
        }
        let n = ws.floats.len().max(gs.floats.len());
        for i in 0..n {
            let (wp, gp) = (ws.floats.get(i), gs.floats.get(i));
            let same = match (wp, gp) {
                (Some(a), Some(b)) => a.0 == b.0 && same_float(a.1, b.1),
                _ => false,
            };
            if !same {
                let at = |p: Option<&(i64, f64)>| p.map_or("none".to_string(), |p| format!("{} @{}", fmt_f(p.1), p.0));
                return Err(format!(
                    "{}: first difference at point {i}: want {}, got {} ({} points wanted, {} got)\n    want: {}\n    \
                     got:  {}",
                    format_labels(labels),
                    at(wp),
                    at(gp),
                    ws.floats.len(),
                    gs.floats.len(),
                    fmt_points(&ws.floats, i, 4),
                    fmt_points(&gs.floats, i, 4)
                ));
            }
        }
    }
    if let Some((labels, gs)) = g.iter().find(|(l, _)| !w.contains_key(*l)) {
        return Err(format!(
            "unexpected series: {} with {} points {} ({} series wanted, {} got)",
            format_labels(labels),
            gs.floats.len(),
            fmt_points(&gs.floats, 0, 4),
            want.len(),
            got.len()
        ));
    }
    Ok(())
}

/// `almost_equal` with Prometheus' epsilon; stale markers only equal themselves.
fn same_float(want: f64, got: f64) -> bool {
    almost_equal(want, got, EPSILON)
}

fn index<'a, T>(items: impl Iterator<Item = (&'a Labels, &'a T)>) -> Result<BTreeMap<&'a Labels, &'a T>, String> {
    let mut map = BTreeMap::new();
    for (labels, item) in items {
        if map.insert(labels, item).is_some() {
            return Err(format!("duplicate series {}", format_labels(labels)));
        }
    }
    Ok(map)
}

/// `vector`, `matrix`, `scalar` or `string`.
pub fn value_kind(v: &QueryValue) -> &'static str {
    match v {
        QueryValue::Vector(_) => "vector",
        QueryValue::Matrix(_) => "matrix",
        QueryValue::Scalar { .. } => "scalar",
        QueryValue::String { .. } => "string",
    }
}

/// A short text of a value: its size and its first `max` series.
pub fn summarize_value(v: &QueryValue, max: usize) -> String {
    match v {
        QueryValue::Vector(s) => summarize_vector(s, max),
        QueryValue::Matrix(m) => {
            let mut out = format!("{} series", m.len());
            for s in m.iter().take(max) {
                let _ = write!(
                    out,
                    "; {} ({} points) {}",
                    format_labels(&s.labels),
                    s.floats.len(),
                    fmt_points(&s.floats, 0, 3)
                );
            }
            out
        }
        QueryValue::Scalar { t_ms, value } => format!("scalar {} @{t_ms}", fmt_f(*value)),
        QueryValue::String { t_ms, value } => format!("string {value:?} @{t_ms}"),
    }
}

fn summarize_vector(s: &[VectorSample], max: usize) -> String {
    let mut out = format!("{} series", s.len());
    for x in s.iter().take(max) {
        let _ = write!(out, "; {} = {}", format_labels(&x.labels), fmt_f(x.value));
    }
    if s.len() > max {
        out.push_str("; ...");
    }
    out
}

fn describe_error(e: &ApiError) -> String {
    format!("{} (HTTP {}): {}", e.error_type, e.http_status, e.message)
}

/// Points around index `from` (a few before it for context), as `value@t`.
fn fmt_points(points: &[(i64, f64)], from: usize, max: usize) -> String {
    let start = from.saturating_sub(1);
    let mut out = String::from("[");
    for (i, p) in points.iter().enumerate().skip(start).take(max) {
        if i > start {
            out.push_str(", ");
        }
        let _ = write!(out, "{}@{}", fmt_f(p.1), p.0);
    }
    if start + max < points.len() {
        out.push_str(", ...");
    }
    out.push(']');
    if start > 0 {
        out.insert_str(0, &format!("[{start} before] "));
    }
    out
}

/// Go's `%v` of a float64, the stale marker spelled out.
pub fn fmt_f(v: f64) -> String {
    if v.to_bits() == STALE_NAN_BITS {
        "StaleNaN".to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// A Prometheus server on a loopback port and a temporary data folder (deleted, with the process
/// killed, on drop), with remote_write receiving on: `--config.file` (empty: nothing scraped, so
/// the default evaluation interval 1m is the default subquery step), `--storage.tsdb.path`,
/// `--web.listen-address`, `--web.enable-remote-write-receiver`,
/// `--storage.tsdb.retention.time=100y`, `--log.level=warn`, then `flags`. Everything else keeps
/// Prometheus' defaults (lookback 5m, `--query.max-samples=50000000`, timeout 2m).
pub struct ReferencePrometheus {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    version: String,
}

impl ReferencePrometheus {
    /// Starts `bin` and waits until `/-/ready` answers 200 (at most 60 s).
    pub fn start(bin: &Path, flags: &[&str]) -> Result<ReferencePrometheus, String> {
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
            .map_err(|e| format!("cannot run {} --version: {e}", bin.display()))?;
        let version = version
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("unknown")
            .to_string();
        let dir = tempfile::Builder::new()
            .prefix("promql-reference-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, "# empty: nothing is scraped\n").map_err(|e| format!("{}: {e}", config.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, crate::free_port()));
        let log = File::create(dir.path().join("prometheus.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--log.level=warn")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = ReferencePrometheus {
            child,
            dir,
            url: format!("http://{addr}"),
            version,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(1)))
            .proxy(None)
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "prometheus exited ({status}) before it was ready; log:\n{}",
                    server.logs()
                ));
            }
            if let Ok(response) = agent.get(format!("{}/-/ready", server.url)).call()
                && response.status() == 200
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("prometheus was not ready within 60 s; log:\n{}", server.logs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The version `--version` printed, e.g. `2.42.0+ds`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far (the last 30 lines).
    pub fn logs(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for ReferencePrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn vector(items: &[(&str, f64)]) -> QueryResponse {
        QueryResponse {
            result: Ok(QueryValue::Vector(
                items
                    .iter()
                    .map(|(i, v)| VectorSample {
                        labels: labels(&[("instance", i)]),
                        t_ms: 1000,
                        value: *v,
                        histogram: false,
                    })
                    .collect(),
            )),
            warnings: Vec::new(),
            infos: Vec::new(),
        }
    }

    #[test]
    fn vectors_are_sets_with_prometheus_epsilon() {
        let a = vector(&[("a", 1.0), ("b", f64::NAN)]);
        let b = vector(&[("b", f64::NAN), ("a", 1.0 + 1e-9)]);
        assert_eq!(diff_responses(&a, &b, false), Ok(()));
        let c = vector(&[("a", 1.001), ("b", f64::NAN)]);
        let e = diff_responses(&a, &c, false).unwrap_err();
        assert!(e.contains("want 1, got 1.001"), "{e}");
        let d = vector(&[("a", 1.0)]);
        assert!(diff_responses(&a, &d, false).unwrap_err().contains("series missing"));
        assert!(diff_responses(&d, &a, false).unwrap_err().contains("unexpected series"));
    }

    #[test]
    fn ordered_vectors_compare_values_by_position() {
        let a = vector(&[("a", 2.0), ("b", 1.0), ("c", 1.0)]);
        let b = vector(&[("a", 2.0), ("c", 1.0), ("b", 1.0)]);
        assert_eq!(diff_responses(&a, &b, true), Ok(()), "ties may come in any order");
        let c = vector(&[("b", 1.0), ("a", 2.0), ("c", 1.0)]);
        assert!(diff_responses(&a, &c, true).unwrap_err().contains("order"));
        assert_eq!(diff_responses(&a, &c, false), Ok(()));
    }

    #[test]
    fn ties_may_select_other_series() {
        let a = vector(&[("a", 2.0), ("b", 1.0)]);
        let b = vector(&[("a", 2.0), ("c", 1.0 + 1e-12)]);
        assert!(diff_responses(&a, &b, false).is_err());
        assert_eq!(diff_responses_ties(&a, &b), Ok(()));
        let c = vector(&[("a", 2.0), ("c", 1.5)]);
        assert!(diff_responses_ties(&a, &c).unwrap_err().contains("not a tie"));
        let d = vector(&[("a", 2.5), ("b", 1.0)]);
        assert!(diff_responses_ties(&a, &d).is_err());
    }

    #[test]
    fn matrices_compare_point_by_point() {
        let m = |points: Vec<(i64, f64)>| QueryResponse {
            result: Ok(QueryValue::Matrix(vec![MatrixSeries {
                labels: labels(&[("job", "x")]),
                floats: points,
                histograms: 0,
            }])),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        let a = m(vec![(0, 1.0), (15, 2.0)]);
        assert_eq!(diff_responses(&a, &m(vec![(0, 1.0), (15, 2.0)]), false), Ok(()));
        let e = diff_responses(&a, &m(vec![(0, 1.0), (30, 2.0)]), false).unwrap_err();
        assert!(e.contains("point 1"), "{e}");
        let e = diff_responses(&a, &m(vec![(0, 1.0)]), false).unwrap_err();
        assert!(e.contains("want 2 @15, got none"), "{e}");
    }

    #[test]
    fn errors_agree_on_their_type() {
        let err = |t: &str| QueryResponse {
            result: Err(ApiError {
                http_status: 422,
                error_type: t.to_string(),
                message: "m".to_string(),
            }),
            warnings: Vec::new(),
            infos: Vec::new(),
        };
        assert_eq!(diff_responses(&err("execution"), &err("execution"), false), Ok(()));
        assert!(diff_responses(&err("execution"), &err("bad_data"), false).is_err());
        assert!(diff_responses(&err("execution"), &vector(&[]), false).is_err());
    }
}
