//! `promtool test rules`: promtool's unit-test files (Prometheus 2.42's format and semantics).
//!
//! For each test group: the input series are loaded into a [`MemSeries`], the rule files' groups
//! are evaluated every `evaluation_interval` from time 0 to the latest `eval_time` (each group
//! at every step, in `group_eval_order` or file order, input samples visible up to the step),
//! firing alerts are compared at each `alert_rule_test`'s time, and `promql_expr_test`s are
//! queried at the end. The PromQL engine comes from a [`TestEngine`], because this crate does
//! not depend on the store.

mod mem;
mod series;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tidewatch_model::{Labels, Query, QueryOptions, QueryValue, Series};

pub use self::mem::MemSeries;
use self::series::{parse_metric, parse_values};
use super::alerting::AlertState;
use super::eval::EvalEnv;
use super::file::load_file;
use super::gofmt::format_float;
use super::group::{Group, RuleKind};

/// Builds a PromQL engine over a test group's series (the root crate uses the store's engine).
pub trait TestEngine: Send + Sync {
    /// An engine reading `series` (through [`MemSeries::select`]).
    fn engine(&self, series: Arc<MemSeries>) -> Arc<dyn Query>;
}

/// A Prometheus duration (`1d`, `5m1s`, `2m59s999ms`, or the number 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct PromDuration(i64);

fn parse_prom_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(0);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration string".into());
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if n_end == 0 {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: i64 = rest[..n_end]
            .parse()
            .map_err(|_| format!("not a valid duration string: {s:?}"))?;
        rest = &rest[n_end..];
        let u_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(format!("not a valid duration string: {s:?}")),
        };
        rest = &rest[u_end..];
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Prometheus' `model.Duration.String()`.
fn duration_string(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, name) in [
        (365 * 86_400_000, "y"),
        (7 * 86_400_000, "w"),
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
        (1, "ms"),
    ] {
        if rest >= unit {
            let _ = write!(out, "{}{name}", rest / unit);
            rest %= unit;
        }
    }
    out
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => parse_prom_duration(&s)
                .map(PromDuration)
                .map_err(serde::de::Error::custom),
            Raw::I(0) => Ok(PromDuration(0)),
            Raw::I(i) => Err(serde::de::Error::custom(format!(
                "not a valid duration string: \"{i}\""
            ))),
        }
    }
}

fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::F(f) => f.to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitTestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<PromDuration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<PromDuration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTestCase>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTestCase>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default, rename = "name")]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(deserialize_with = "scalar_string")]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestCase {
    eval_time: PromDuration,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestCase {
    expr: String,
    eval_time: PromDuration,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// The outcome of one test file.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    /// The file.
    pub file: PathBuf,
    /// The failures (empty: it passed), in promtool's words.
    pub errors: Vec<String>,
}

/// The outcome of [`test_rules`].
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// One per file, in order.
    pub files: Vec<FileOutcome>,
}

impl TestReport {
    /// Whether every file passed.
    pub fn success(&self) -> bool {
        self.files.iter().all(|f| f.errors.is_empty())
    }
}

impl std::fmt::Display for TestReport {
    /// promtool's output: `Unit Testing:  FILE`, then `  SUCCESS` or `  FAILED:` and the errors.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for file in &self.files {
            writeln!(f, "Unit Testing:  {}", file.file.display())?;
            if file.errors.is_empty() {
                writeln!(f, "  SUCCESS")?;
            } else {
                writeln!(f, "  FAILED:")?;
                for e in &file.errors {
                    writeln!(f, "{e}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Runs promtool's unit tests in every file.
pub async fn test_rules(paths: &[PathBuf], engine: &dyn TestEngine) -> TestReport {
    let mut report = TestReport::default();
    for p in paths {
        let errors = match run_file(p, engine).await {
            Ok(errs) => errs,
            Err(e) => vec![e],
        };
        report.files.push(FileOutcome {
            file: p.clone(),
            errors,
        });
    }
    report
}

async fn run_file(path: &Path, engine: &dyn TestEngine) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec: UnitTestFile = yaml_serde::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let eval_interval = spec
        .evaluation_interval
        .map(|d| d.0)
        .filter(|&d| d > 0)
        .unwrap_or(60_000);
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_paths = Vec::new();
    for rf in &spec.rule_files {
        let full = base.join(rf);
        let pattern = full.to_string_lossy();
        let mut found: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| format!("rule_files: {rf:?}: {e}"))?
            .filter_map(Result::ok)
            .collect();
        if found.is_empty() && !pattern.contains(['*', '?', '[']) {
            found.push(full);
        }
        found.sort();
        rule_paths.extend(found);
    }
    // Load once to report errors as promtool does, before running anything.
    let mut checked = Vec::new();
    for p in &rule_paths {
        match load_file(p) {
            Ok(g) => checked.extend(g),
            Err(errs) => {
                return Err(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
            }
        }
    }
    let mut errors = Vec::new();
    for tg in &spec.tests {
        let mut groups: Vec<Group> = checked.iter().map(|c| Group::from_checked(c, eval_interval)).collect();
        if !spec.group_eval_order.is_empty() {
            let order: BTreeMap<&str, usize> = spec
                .group_eval_order
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect();
            for g in &groups {
                if !order.contains_key(g.name.as_str()) {
                    return Err(format!("    group {:?} is not in group_eval_order", g.name));
                }
            }
            groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(usize::MAX));
        }
        errors.extend(run_group(tg, groups, eval_interval, engine).await);
    }
    Ok(errors)
}

type LabelsAndAnnotations = Vec<(BTreeMap<String, String>, BTreeMap<String, String>)>;

fn format_la(list: &LabelsAndAnnotations, indent: &str) -> String {
    if list.is_empty() {
        return "[]".into();
    }
    let fmt_map = |m: &BTreeMap<String, String>| {
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", parts.join(", "))
    };
    let mut s = String::from("[\n");
    for (i, (l, a)) in list.iter().enumerate() {
        let _ = writeln!(s, "{indent}{i}:");
        let _ = writeln!(s, "{indent}  Labels:{}", fmt_map(l));
        let _ = writeln!(s, "{indent}  Annotations:{}", fmt_map(a));
    }
    s.push_str(&indent[..indent.len().saturating_sub(4)]);
    s.push(']');
    s
}

fn format_samples(list: &[(Labels, f64)]) -> String {
    list.iter()
        .map(|(l, v)| format!("{} {}", l, format_float(*v, 'E', None)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run_group(tg: &TestGroup, mut groups: Vec<Group>, eval_interval: i64, engine: &dyn TestEngine) -> Vec<String> {
    let name_prefix = if tg.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", tg.name)
    };
    // Prometheus 2.42 loads series with `load <interval>` and no default: without `interval`
    // every value lands at time 0 and the first one wins (fixed in later releases, which
    // default to evaluation_interval; no-test-group-interval.yml tells the two apart).
    let interval = tg.interval.map(|d| d.0).unwrap_or(0);
    let mut input = Vec::new();
    for s in &tg.input_series {
        let labels = match parse_metric(&s.series) {
            Ok(l) => l,
            Err(e) => return vec![e],
        };
        let values = match parse_values(&s.values) {
            Ok(v) => v,
            Err(e) => return vec![format!("{}: {e}", s.series)],
        };
        let mut samples = series::to_samples(&values, interval);
        samples.dedup_by(|later, first| later.timestamp_ms == first.timestamp_ms);
        input.push(Series { labels, samples });
    }
    let mem = Arc::new(MemSeries::new(input));
    let query = engine.engine(mem.clone());
    let env = EvalEnv {
        metrics: query.as_ref(),
        logs: None,
        external_labels: &tg.external_labels,
        external_url: &tg.external_url,
        options: QueryOptions::default(),
    };
    for g in &mut groups {
        g.set_restored();
    }

    let mut alert_times: Vec<i64> = tg.alert_rule_test.iter().map(|t| t.eval_time.0).collect();
    alert_times.sort();
    alert_times.dedup();
    let max_eval = tg
        .alert_rule_test
        .iter()
        .map(|t| t.eval_time.0)
        .chain(tg.promql_expr_test.iter().map(|t| t.eval_time.0))
        .max()
        .unwrap_or(0);
    let mut errors = Vec::new();
    for t in &tg.alert_rule_test {
        if t.alertname.is_empty() {
            return vec!["alertname can't be empty".into()];
        }
    }
    let mut curr = 0usize;
    let mut ts = 0i64;
    while ts <= max_eval {
        mem.set_visible_until(ts);
        let mut eval_errors = Vec::new();
        for g in &mut groups {
            g.eval(ts, &env, mem.as_ref(), 60_000, false).await;
            for r in &g.rules {
                if let Some(e) = &r.last_error {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        r.name(),
                        duration_string(ts)
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return errors;
        }
        while curr < alert_times.len() && ts <= alert_times[curr] && alert_times[curr] < ts + eval_interval {
            let t = alert_times[curr];
            for case in tg.alert_rule_test.iter().filter(|c| c.eval_time.0 == t) {
                let mut got: LabelsAndAnnotations = Vec::new();
                for g in &groups {
                    for r in &g.rules {
                        if let RuleKind::Alerting(a) = &r.kind
                            && a.name == case.alertname
                        {
                            got.extend(
                                a.active
                                    .values()
                                    .filter(|x| x.state == AlertState::Firing)
                                    .map(|x| (x.labels.clone(), x.annotations.clone())),
                            );
                        }
                    }
                }
                let mut exp: LabelsAndAnnotations = case
                    .exp_alerts
                    .iter()
                    .map(|e| {
                        let mut l = e.exp_labels.clone();
                        l.insert("alertname".into(), case.alertname.clone());
                        l.retain(|_, v| !v.is_empty());
                        let mut a = e.exp_annotations.clone();
                        a.retain(|_, v| !v.is_empty());
                        (l, a)
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    errors.push(format!(
                        "{name_prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        duration_string(t),
                        format_la(&exp, "            "),
                        format_la(&got, "            ")
                    ));
                }
            }
            curr += 1;
        }
        ts += eval_interval;
    }

    for case in &tg.promql_expr_test {
        let t = case.eval_time.0;
        let got = match query.instant(&case.expr, t, &QueryOptions::default()).await {
            Ok(QueryValue::Vector(v)) => v.into_iter().map(|s| (s.labels, s.sample.value)).collect::<Vec<_>>(),
            Ok(QueryValue::Scalar(s)) => vec![(Labels::new(), s.value)],
            Ok(_) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: rule result is not a vector or scalar",
                    case.expr,
                    duration_string(t)
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {}",
                    case.expr,
                    duration_string(t),
                    e.message
                ));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &case.exp_samples {
            match parse_metric(&s.labels) {
                Ok(l) => exp.push((l, s.value)),
                Err(e) => {
                    bad = Some(format!(
                        "    expr: {:?}, time: {}, err: labels {:?}: {e}",
                        case.expr,
                        duration_string(t),
                        s.labels
                    ));
                    break;
                }
            }
        }
        if let Some(b) = bad {
            errors.push(b);
            continue;
        }
        let key = |a: &(Labels, f64), b: &(Labels, f64)| a.0.cmp(&b.0);
        let mut got = got;
        got.sort_by(key);
        exp.sort_by(key);
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && (g.1 == e.1 || (g.1.is_nan() && e.1.is_nan())));
        if !same {
            errors.push(format!(
                "{name_prefix}    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                case.expr,
                duration_string(t),
                format_samples(&exp),
                format_samples(&got)
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations() {
        assert_eq!(parse_prom_duration("2m59s999ms"), Ok(179_999));
        assert_eq!(parse_prom_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_prom_duration("0"), Ok(0));
        assert!(parse_prom_duration("5 m").is_err());
        assert!(parse_prom_duration("m").is_err());
        assert_eq!(duration_string(179_999), "2m59s999ms");
        assert_eq!(duration_string(0), "0s");
    }
}
