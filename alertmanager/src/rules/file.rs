//! Prometheus rule files: parsing (yaml_serde) and the checks `promtool check rules` makes,
//! with every error naming the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tidewatch_model::{Duration, validate_label_name};

use super::expr::{self, Lang};
use super::template;

/// A rule file that could not be loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{}{message}", line.map(|l| format!("{l}: ")).unwrap_or_else(|| " ".into()))]
pub struct RuleFileError {
    /// The file.
    pub file: PathBuf,
    /// The line of the offending rule or field, when known.
    pub line: Option<usize>,
    /// What is wrong, naming the group, rule and field.
    pub message: String,
}

/// One rule file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFileSpec {
    /// The groups, evaluated independently.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

/// A group of rules evaluated together, in order, every `interval`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Unique within the file.
    pub name: String,
    /// How often the group runs; absent: the global evaluation interval.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Evaluate at `now - query_offset` (data that arrives late).
    #[serde(default)]
    pub query_offset: Option<Duration>,
    /// Most alerts (alerting rule) or series (recording rule) one rule may produce; 0: no limit.
    #[serde(default)]
    pub limit: usize,
    /// The rules, in evaluation order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A recording or an alerting rule as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The name of the series a recording rule writes.
    #[serde(default)]
    pub record: Option<String>,
    /// The name of the alert an alerting rule fires.
    #[serde(default)]
    pub alert: Option<String>,
    /// The PromQL or LogQL expression.
    #[serde(default, deserialize_with = "scalar_string")]
    pub expr: String,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for")]
    pub for_: Option<Duration>,
    /// How long the alert keeps firing after the condition stops holding.
    #[serde(default)]
    pub keep_firing_for: Option<Duration>,
    /// Labels added to (or replacing those of) the result; templates for alerting rules.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Templates describing the alert.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `expr: 1` and `expr: true` are YAML numbers and booleans; Prometheus takes them as text.
fn scalar_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    })
}

/// A rule that passed the checks.
#[derive(Debug, Clone)]
pub struct CheckedRule {
    /// The rule as written.
    pub spec: RuleSpec,
    /// PromQL or LogQL.
    pub lang: Lang,
    /// The line of `- alert:`/`- record:`, when found.
    pub line: Option<usize>,
}

/// A group that passed the checks.
#[derive(Debug, Clone)]
pub struct CheckedGroup {
    /// The file it came from.
    pub file: PathBuf,
    /// The group as written (its `rules` moved into `rules`).
    pub spec: GroupSpec,
    /// Its rules.
    pub rules: Vec<CheckedRule>,
}

impl CheckedRule {
    /// The rule's name: the alert or the recorded series.
    pub fn name(&self) -> &str {
        self.spec.alert.as_deref().or(self.spec.record.as_deref()).unwrap_or("")
    }
}

/// The mapping key a line starts with (`- "alert": x` → `alert`), quotes removed.
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = t.split_once(':')?;
    Some(key.trim().trim_matches(|c| c == '"' || c == '\''))
}

fn starts_rule(line: &str) -> bool {
    matches!(line_key(line), Some("alert" | "record"))
}

/// Where each rule starts: the lines of `alert:` / `record:` keys, in document order.
fn rule_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| starts_rule(l).then_some(i + 1))
        .collect()
}

/// The line of `field:` at or after `from`, before the next rule.
fn field_line(text: &str, from: Option<usize>, field: &str) -> Option<usize> {
    let from = from?;
    for (i, l) in text.lines().enumerate().skip(from - 1) {
        if i + 1 > from && starts_rule(l) {
            break;
        }
        if line_key(l) == Some(field) {
            return Some(i + 1);
        }
    }
    from.into()
}

/// Reads and checks one rule file.
pub fn load_file(path: &Path) -> Result<Vec<CheckedGroup>, Vec<RuleFileError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleFileError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse_text(path, &text)
}

/// Parses and checks rule-file text (`path` names it in errors).
pub fn parse_text(path: &Path, text: &str) -> Result<Vec<CheckedGroup>, Vec<RuleFileError>> {
    let err = |line: Option<usize>, message: String| RuleFileError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let spec: RuleFileSpec = if text.trim().is_empty() {
        RuleFileSpec::default()
    } else {
        match yaml_serde::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                return Err(vec![err(line, e.to_string())]);
            }
        }
    };
    let lines = rule_lines(text);
    let mut next_rule = 0usize;
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (gi, mut g) in spec.groups.into_iter().enumerate() {
        if g.name.is_empty() {
            errors.push(err(None, format!("group {}: groupname must not be empty", gi + 1)));
        } else if !seen.insert(g.name.clone()) {
            errors.push(err(
                None,
                format!("{:?}: groupname is repeated in the same file", g.name),
            ));
        }
        if g.interval.is_some_and(|d| d.as_std().is_zero()) {
            errors.push(err(
                None,
                format!("group {:?}: field 'interval' must be greater than 0", g.name),
            ));
        }
        let mut rules = Vec::new();
        for (ri, r) in std::mem::take(&mut g.rules).into_iter().enumerate() {
            let line = lines.get(next_rule).copied();
            if r.alert.is_some() || r.record.is_some() {
                next_rule += 1;
            }
            let at = |field: &str| field_line(text, line, field);
            let name = r.alert.clone().or(r.record.clone()).unwrap_or_default();
            let ctx = format!("group {:?}, rule {}, {:?}", g.name, ri + 1, name);
            match check_rule(&r) {
                Ok(lang) => rules.push(CheckedRule { spec: r, lang, line }),
                Err(problems) => {
                    for (field, message) in problems {
                        errors.push(err(at(field), format!("{ctx}: {message}")));
                    }
                }
            }
        }
        groups.push(CheckedGroup {
            file: path.to_path_buf(),
            spec: g,
            rules,
        });
    }
    if errors.is_empty() { Ok(groups) } else { Err(errors) }
}

/// Prometheus' `rulefmt.Rule.Validate` plus template parsing; returns (field, message) pairs.
fn check_rule(r: &RuleSpec) -> Result<Lang, Vec<(&'static str, String)>> {
    let mut p: Vec<(&'static str, String)> = Vec::new();
    match (&r.record, &r.alert) {
        (Some(_), Some(_)) => p.push(("record", "only one of 'record' and 'alert' must be set".into())),
        (None, None) => p.push(("expr", "one of 'record' or 'alert' must be set".into())),
        _ => {}
    }
    let mut lang = Lang::PromQl;
    if r.expr.trim().is_empty() {
        p.push(("expr", "field 'expr' must be set in rule".into()));
    } else {
        match expr::check(&r.expr) {
            Ok(l) => lang = l,
            Err(e) => p.push(("expr", format!("could not parse expression: {e}"))),
        }
    }
    if let Some(record) = &r.record {
        if !r.annotations.is_empty() {
            p.push(("annotations", "invalid field 'annotations' in recording rule".into()));
        }
        if r.for_.is_some_and(|d| !d.as_std().is_zero()) {
            p.push(("for", "invalid field 'for' in recording rule".into()));
        }
        if r.keep_firing_for.is_some_and(|d| !d.as_std().is_zero()) {
            p.push((
                "keep_firing_for",
                "invalid field 'keep_firing_for' in recording rule".into(),
            ));
        }
        if !is_metric_name(record) {
            p.push(("record", format!("invalid recording rule name: {record}")));
        }
    }
    if let Some(alert) = &r.alert
        && alert.trim().is_empty()
    {
        p.push(("alert", "field 'alert' must not be empty".into()));
    }
    for (k, v) in &r.labels {
        if validate_label_name(k).is_err() || k == "__name__" {
            p.push(("labels", format!("invalid label name: {k}")));
        }
        if r.alert.is_some()
            && let Err(e) = template::check(v)
        {
            p.push(("labels", format!("label {k:?}: {e}")));
        }
    }
    for (k, v) in &r.annotations {
        if validate_label_name(k).is_err() {
            p.push(("annotations", format!("invalid annotation name: {k}")));
        }
        if let Err(e) = template::check(v) {
            p.push(("annotations", format!("annotation {k:?}: {e}")));
        }
    }
    if p.is_empty() { Ok(lang) } else { Err(p) }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// What `check_rules` found in one file.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The file.
    pub file: PathBuf,
    /// How many rules it has (when it loaded).
    pub rules: usize,
    /// Its errors (empty: it is good).
    pub errors: Vec<RuleFileError>,
}

/// The outcome of [`check_rules`].
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// One entry per file, in the order given.
    pub files: Vec<FileReport>,
}

impl CheckReport {
    /// Whether every file is good.
    pub fn success(&self) -> bool {
        self.files.iter().all(|f| f.errors.is_empty())
    }
}

impl fmt::Display for CheckReport {
    /// promtool's output: `Checking FILE`, then `  SUCCESS: N rules found` or `  FAILED:` and
    /// the errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "Checking {}", file.file.display())?;
            if file.errors.is_empty() {
                writeln!(f, "  SUCCESS: {} rules found", file.rules)?;
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

/// `promtool check rules`: loads and checks every file.
pub fn check_rules(paths: &[PathBuf]) -> CheckReport {
    let mut report = CheckReport::default();
    for p in paths {
        report.files.push(match load_file(p) {
            Ok(groups) => FileReport {
                file: p.clone(),
                rules: groups.iter().map(|g| g.rules.len()).sum(),
                errors: Vec::new(),
            },
            Err(errors) => FileReport {
                file: p.clone(),
                rules: 0,
                errors,
            },
        });
    }
    report
}
