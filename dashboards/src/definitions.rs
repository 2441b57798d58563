//! Dashboards defined in YAML: the types, their checks, and the built-in set.
//!
//! A dashboard file is `<name>.yaml`; its name is the file stem. The format:
//!
//! ```yaml
//! title: Hosts
//! range: 1h                       # the default time range shown
//! variables:
//!   - name: node                  # used as $node in queries
//!     label: node                 # label whose values fill the drop-down
//!     match: node_uname_info      # optional series selector narrowing the values
//!     all: true                   # offers "All" (the regex .*)
//! panels:
//!   - title: CPU busy
//!     type: timeseries            # timeseries | stat | table | logs
//!     query: sum by (node) (rate(node_cpu_seconds_total{mode!="idle",node=~"$node"}[$__rate_interval]))
//!     legend: "{{node}}"
//!     unit: percentunit           # short | percent | percentunit | bytes | bytes/s | seconds | ops/s
//!     width: 6                    # of 12 columns
//! ```
//!
//! `logs` panels hold a LogQL query; the others PromQL. Besides the dashboard's own variables, a
//! query may use `$__interval` (the step), `$__rate_interval` (four times the step, at least 1m)
//! and `$__range`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Largest dashboard file read from the user folder.
pub(crate) const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most files read from the user folder; the rest are listed as an error.
pub(crate) const MAX_FILES: usize = 256;

/// Units the front end knows how to format.
const UNITS: &[&str] = &[
    "short",
    "percent",
    "percentunit",
    "bytes",
    "bytes/s",
    "seconds",
    "ops/s",
];
/// Variables the front end fills itself.
const BUILTIN_VARIABLES: &[&str] = &["__interval", "__rate_interval", "__range"];

/// A dashboard: variables and panels on a 12-column grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    /// Shown as the page title.
    pub title: String,
    /// One line under the title.
    #[serde(default)]
    pub description: String,
    /// The time range shown when the URL names none, e.g. "1h".
    #[serde(default = "default_range")]
    pub range: String,
    /// Drop-downs whose values are substituted as `$name` into the queries.
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// Panels in reading order.
    pub panels: Vec<Panel>,
}

fn default_range() -> String {
    "1h".to_string()
}

/// A variable whose values are a label's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Referenced as `$name`.
    pub name: String,
    /// The label whose values are offered.
    pub label: String,
    /// A series selector narrowing the values (Prometheus' `match[]`).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    /// Offers "All", substituted as `.*` (so queries use `=~"$name"`).
    #[serde(default)]
    pub all: bool,
    /// Where the values come from: `metrics` (default) or `logs`.
    #[serde(default)]
    pub source: Source,
}

/// Which API answers a variable's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `/api/v1/label/<label>/values`.
    #[default]
    Metrics,
    /// `/loki/api/v1/label/<label>/values`.
    Logs,
}

/// One panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Shown above the panel.
    pub title: String,
    /// How the answer is drawn.
    #[serde(rename = "type")]
    pub kind: PanelKind,
    /// PromQL, or LogQL for `logs` panels.
    pub query: String,
    /// Series name template, `{{label}}` replaced by the label's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legend: Option<String>,
    /// How values are formatted (see the module docs).
    #[serde(default = "default_unit")]
    pub unit: String,
    /// Width in columns of 12.
    #[serde(default = "default_width")]
    pub width: u8,
}

fn default_unit() -> String {
    "short".to_string()
}

fn default_width() -> u8 {
    6
}

/// Panel kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// Lines over the time range (a range query).
    Timeseries,
    /// One big number: the last value of the first series.
    Stat,
    /// An instant query as a table of labels and values.
    Table,
    /// Log lines (a LogQL range query).
    Logs,
}

/// A dashboard file that cannot be used, with the place and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DefinitionError {
    /// The file (or `builtin:<name>`).
    pub file: String,
    /// What is wrong, naming the field (and line and column for YAML errors).
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

impl Dashboard {
    /// Parses and checks one YAML document; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Dashboard, DefinitionError> {
        let err = |message: String| DefinitionError {
            file: file.to_string(),
            message,
        };
        let dashboard: Dashboard = yaml_serde::from_str(text).map_err(|e| err(e.to_string()))?;
        dashboard.check().map_err(err)?;
        Ok(dashboard)
    }

    fn check(&self) -> Result<(), String> {
        if self.title.trim().is_empty() {
            return Err("title: must not be empty".into());
        }
        if self.panels.is_empty() {
            return Err("panels: a dashboard needs at least one panel".into());
        }
        parse_range(&self.range)
            .ok_or_else(|| format!("range: {:?} is not a duration like 15m, 6h or 7d", self.range))?;
        let mut names: Vec<&str> = Vec::new();
        for (i, v) in self.variables.iter().enumerate() {
            if !is_identifier(&v.name) || v.name.starts_with("__") {
                return Err(format!(
                    "variables[{i}].name: {:?} must be letters, digits and _ and not start with __",
                    v.name
                ));
            }
            if names.contains(&v.name.as_str()) {
                return Err(format!("variables[{i}].name: {:?} is defined twice", v.name));
            }
            if !is_identifier(&v.label) {
                return Err(format!("variables[{i}].label: {:?} is not a label name", v.label));
            }
            names.push(&v.name);
        }
        for (i, p) in self.panels.iter().enumerate() {
            if p.title.trim().is_empty() {
                return Err(format!("panels[{i}].title: must not be empty"));
            }
            if p.query.trim().is_empty() {
                return Err(format!("panels[{i}].query: must not be empty"));
            }
            if !(1..=12).contains(&p.width) {
                return Err(format!("panels[{i}].width: {} is not within 1..=12", p.width));
            }
            if !UNITS.contains(&p.unit.as_str()) {
                return Err(format!(
                    "panels[{i}].unit: {:?} is not one of {}",
                    p.unit,
                    UNITS.join(", ")
                ));
            }
            for used in variables_in(&p.query) {
                if !names.contains(&used) && !BUILTIN_VARIABLES.contains(&used) {
                    return Err(format!("panels[{i}].query: uses ${used}, which no variable defines"));
                }
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The `$name` references in a query (`$` followed by an identifier).
fn variables_in(query: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end] == b'_' || bytes[end].is_ascii_alphanumeric()) {
                end += 1;
            }
            if end > start {
                out.push(&query[start..end]);
            }
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Seconds in a duration like `90s`, `15m`, `6h`, `7d`; `None` if malformed or zero.
fn parse_range(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let secs = n.checked_mul(match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 604800,
        _ => return None,
    })?;
    (secs > 0).then_some(secs)
}

macro_rules! builtin {
    ($($name:literal),*) => {
        &[$(($name, include_str!(concat!("../builtin/", $name, ".yaml")))),*]
    };
}

/// The dashboards built into the binary, as (name, YAML).
const BUILTIN: &[(&str, &str)] = builtin!("hosts", "containers", "services");

/// The built-in dashboards, parsed: (name, dashboard). They are checked by a unit test, so this
/// never fails in a released binary; a broken one is skipped with an error log all the same.
pub fn builtin_dashboards() -> Vec<(String, Dashboard)> {
    BUILTIN
        .iter()
        .filter_map(
            |(name, text)| match Dashboard::from_yaml(&format!("builtin:{name}"), text) {
                Ok(d) => Some((name.to_string(), d)),
                Err(e) => {
                    tracing::error!(error = %e, "a built-in dashboard is broken");
                    None
                }
            },
        )
        .collect()
}

/// What a user folder holds: dashboards by name, and files that could not be used.
pub(crate) struct Loaded {
    pub dashboards: Vec<(String, Dashboard)>,
    pub errors: Vec<(String, DefinitionError)>,
}

/// Reads every `*.yaml`/`*.yml` file of `dir` (not recursively), in name order. A missing folder
/// holds nothing; an unreadable, oversized or invalid file is reported under its name.
pub(crate) fn load_dir(dir: &Path) -> Loaded {
    let mut loaded = Loaded {
        dashboards: Vec::new(),
        errors: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(e) => {
            loaded.errors.push((
                String::new(),
                DefinitionError {
                    file: dir.display().to_string(),
                    message: format!("cannot read the dashboards folder: {e}"),
                },
            ));
            return loaded;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for (n, path) in files.into_iter().enumerate() {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        let file = path.display().to_string();
        let err = |message: String| DefinitionError {
            file: file.clone(),
            message,
        };
        if n >= MAX_FILES {
            loaded
                .errors
                .push((name, err(format!("skipped: more than {MAX_FILES} dashboard files"))));
            continue;
        }
        let read = std::fs::metadata(&path).and_then(|m| {
            if m.len() > MAX_FILE_BYTES {
                Err(std::io::Error::other(format!(
                    "{} bytes is over the limit of {MAX_FILE_BYTES}",
                    m.len()
                )))
            } else {
                std::fs::read_to_string(&path)
            }
        });
        match read.map_err(|e| err(format!("cannot read: {e}"))) {
            Ok(text) => match Dashboard::from_yaml(&file, &text) {
                Ok(d) => loaded.dashboards.push((name, d)),
                Err(e) => loaded.errors.push((name, e)),
            },
            Err(e) => loaded.errors.push((name, e)),
        }
    }
    loaded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_dashboards_parse() {
        for (name, text) in BUILTIN {
            let d = Dashboard::from_yaml(name, text).unwrap_or_else(|e| panic!("{e}"));
            assert!(d.panels.len() >= 4, "{name} has {} panels", d.panels.len());
        }
        assert_eq!(builtin_dashboards().len(), BUILTIN.len());
    }

    #[test]
    fn errors_name_file_field_and_line() {
        let e = Dashboard::from_yaml(
            "d.yaml",
            "title: x\npanels:\n  - title: a\n    type: pie\n    query: up\n",
        )
        .unwrap_err();
        assert_eq!(e.file, "d.yaml");
        assert!(e.message.contains("pie") && e.message.contains("line 4"), "{e}");

        let e = Dashboard::from_yaml("d.yaml", "title: x\ncolour: red\npanels: []\n").unwrap_err();
        assert!(e.message.contains("colour"), "{e}");

        let e = Dashboard::from_yaml(
            "d.yaml",
            "title: x\npanels:\n  - {title: a, type: stat, query: 'up{node=\"$node\"}'}\n",
        )
        .unwrap_err();
        assert_eq!(e.message, "panels[0].query: uses $node, which no variable defines");

        let e = Dashboard::from_yaml(
            "d.yaml",
            "title: x\npanels:\n  - {title: a, type: stat, query: up, width: 13}\n",
        )
        .unwrap_err();
        assert_eq!(e.message, "panels[0].width: 13 is not within 1..=12");

        let e = Dashboard::from_yaml(
            "d.yaml",
            "title: x\nrange: 5x\npanels:\n  - {title: a, type: stat, query: up}\n",
        )
        .unwrap_err();
        assert!(e.message.starts_with("range:"), "{e}");
    }

    /// The Grafana copies in `grafana/` must show the same panels with the same queries, through
    /// the templated Prometheus and Loki datasources.
    #[test]
    fn grafana_dashboards_match_the_builtin_ones() {
        let grafana = [
            ("hosts", include_str!("../grafana/hosts.json")),
            ("containers", include_str!("../grafana/containers.json")),
            ("services", include_str!("../grafana/services.json")),
        ];
        for (name, json) in grafana {
            let g: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("grafana/{name}.json: {e}"));
            let ours = builtin_dashboards().into_iter().find(|(n, _)| n == name).unwrap().1;
            let vars = g["templating"]["list"].as_array().unwrap();
            for (ds, plugin) in [("DS_PROMETHEUS", "prometheus"), ("DS_LOKI", "loki")] {
                assert!(
                    vars.iter()
                        .any(|v| v["name"] == ds && v["type"] == "datasource" && v["query"] == plugin),
                    "grafana/{name}.json lacks the {ds} datasource variable"
                );
            }
            for v in &ours.variables {
                assert!(
                    vars.iter().any(|g| g["name"] == v.name.as_str()),
                    "grafana/{name}.json lacks ${}",
                    v.name
                );
            }
            let panels = g["panels"].as_array().unwrap();
            assert_eq!(panels.len(), ours.panels.len(), "grafana/{name}.json");
            for (gp, p) in panels.iter().zip(&ours.panels) {
                assert_eq!(gp["title"], p.title.as_str(), "grafana/{name}.json");
                assert_eq!(
                    gp["targets"][0]["expr"],
                    p.query.as_str(),
                    "grafana/{name}.json: {}",
                    p.title
                );
                let uid = if p.kind == PanelKind::Logs {
                    "${DS_LOKI}"
                } else {
                    "${DS_PROMETHEUS}"
                };
                assert_eq!(
                    gp["targets"][0]["datasource"]["uid"], uid,
                    "grafana/{name}.json: {}",
                    p.title
                );
            }
        }
    }

    #[test]
    fn variables_are_found_in_queries() {
        assert_eq!(
            variables_in("rate(x{a=~\"$node\"}[$__rate_interval]) $ $1"),
            vec!["node", "__rate_interval", "1"]
        );
        assert_eq!(parse_range("6h"), Some(21600));
        assert_eq!(parse_range("0m"), None);
        assert_eq!(parse_range("h"), None);
        assert_eq!(parse_range("99999999999999999999d"), None);
    }

    #[test]
    fn folder_loading_reports_bad_files_and_skips_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.yaml"),
            "title: Good\npanels:\n  - {title: a, type: stat, query: up}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.yml"), "title: [\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let big = format!("title: x\ndescription: {}\n", "y".repeat(MAX_FILE_BYTES as usize));
        std::fs::write(dir.path().join("big.yaml"), big).unwrap();
        let loaded = load_dir(dir.path());
        assert_eq!(loaded.dashboards.len(), 1);
        assert_eq!(loaded.dashboards[0].0, "good");
        let names: Vec<_> = loaded.errors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["bad", "big"]);
        assert!(loaded.errors[1].1.message.contains("over the limit"));
        assert!(load_dir(&dir.path().join("missing")).dashboards.is_empty());
    }
}
