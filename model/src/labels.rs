//! Label sets and the label names Tidewatch gives its data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The label names of ../shared/DESIGN.md, in one place so that every crate spells them alike.
pub mod names {
    /// The metric name, as Prometheus stores it.
    pub const METRIC_NAME: &str = "__name__";
    /// A container's name (log records and container metrics).
    pub const CONTAINER: &str = "container";
    /// A container's full id (log records).
    pub const CONTAINER_ID: &str = "container_id";
    /// A container's image.
    pub const IMAGE: &str = "image";
    /// The service a container belongs to (see [`SERVICE_SOURCES`](super::names::SERVICE_SOURCES)).
    pub const SERVICE: &str = "service";
    /// The node (host) the data comes from.
    pub const NODE: &str = "node";
    /// `stdout` or `stderr` for container logs.
    pub const STREAM: &str = "stream";
    /// cAdvisor's container name label on container metrics.
    pub const CADVISOR_NAME: &str = "name";
    /// cAdvisor's cgroup id label on container metrics (`/docker/<id>`).
    pub const CADVISOR_ID: &str = "id";
    /// Prometheus' job label.
    pub const JOB: &str = "job";
    /// Prometheus' instance label.
    pub const INSTANCE: &str = "instance";

    /// Docker labels the scheduler puts on the containers it runs.
    pub const DOCKER_SERVICE: &str = "tidewatch.service";
    /// The replica number of a scheduled container.
    pub const DOCKER_REPLICA: &str = "tidewatch.replica";
    /// The hash of the spec a scheduled container was created from.
    pub const DOCKER_SPEC_HASH: &str = "tidewatch.spec-hash";

    /// Where a container's `service` label comes from, first match wins; the container's name
    /// is the last resort.
    pub const SERVICE_SOURCES: [&str; 3] = [
        DOCKER_SERVICE,
        "com.docker.swarm.service.name",
        "com.docker.compose.service",
    ];
}

/// One name/value pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Label {
    /// The label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
    pub name: String,
    /// The value: any UTF-8 text; an empty value means the label is absent.
    pub value: String,
}

/// A set of labels, kept sorted by name with no duplicate names and no empty values, which is
/// the identity of a series or log stream as Prometheus and Loki define it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(
    into = "std::collections::BTreeMap<String, String>",
    from = "std::collections::BTreeMap<String, String>"
)]
pub struct Labels(Vec<Label>);

/// Why a label name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The name is empty or has characters outside `[a-zA-Z0-9_]`, or starts with a digit.
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidName(String),
}

/// Checks a label name against Prometheus' rule, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn validate_label_name(name: &str) -> Result<(), LabelError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(LabelError::InvalidName(name.to_string()))
    }
}

impl Labels {
    /// An empty set.
    pub const fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a set from pairs; later pairs replace earlier ones of the same name and empty
    /// values are dropped, as Prometheus does.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        let mut labels = Labels::new();
        for (n, v) in pairs {
            labels.set(n, v);
        }
        labels
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.0.binary_search_by(|l| l.name.cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label { name, value }),
        }
    }

    /// Removes `name` and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok()?;
        Some(self.0.remove(i).value)
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(names::METRIC_NAME)
    }

    /// The labels in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<std::collections::BTreeMap<String, String>> for Labels {
    fn from(map: std::collections::BTreeMap<String, String>) -> Self {
        Labels(
            map.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, value)| Label { name, value })
                .collect(),
        )
    }
}

impl From<Labels> for std::collections::BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.0.into_iter().map(|l| (l.name, l.value)).collect()
    }
}

impl fmt::Display for Labels {
    /// Prometheus' series notation: `name{a="1", b="2"}`, with values escaped as Go's `%q` does
    /// for the characters that matter in the text format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != names::METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_unique_and_non_empty() {
        let mut l = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(l.get("b"), Some("3"));
        l.set("a", "");
        assert_eq!(l.get("a"), None);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn display_is_prometheus_series_notation() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node"), ("path", "C:\\x \"y\"")]);
        assert_eq!(l.to_string(), r#"up{job="node", path="C:\\x \"y\""}"#);
    }

    #[test]
    fn label_names_follow_prometheus() {
        assert!(validate_label_name("_ok9").is_ok());
        for bad in ["", "9a", "a-b", "é"] {
            assert!(validate_label_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_serialize_as_a_json_object() {
        let l = Labels::from_pairs([("job", "x"), ("a", "y")]);
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(json, r#"{"a":"y","job":"x"}"#);
        assert_eq!(serde_json::from_str::<Labels>(&json).unwrap(), l);
    }
}
