//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus' semantics: regular expressions are
//! anchored at both ends, and a missing label matches as the empty string.

use std::fmt;

/// The four matcher kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// One `name op "value"` condition on a label set.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The value or the regular expression as written.
    pub value: String,
    regex: Option<regex::Regex>,
}

/// A regular expression that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name}: {reason}")]
pub struct MatcherError {
    /// The label name.
    pub name: String,
    /// The expression.
    pub pattern: String,
    /// What the regex engine said.
    pub reason: String,
}

impl Matcher {
    /// Builds a matcher; regular expressions are anchored (`^(?:...)$`) as in Prometheus.
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self, MatcherError> {
        let (name, value) = (name.into(), value.into());
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?s:{value})$")).map_err(|e| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    reason: e.to_string(),
                })?)
            }
            _ => None,
        };
        Ok(Matcher { name, op, value, regex })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(r)) => r.is_match(value),
            (MatchOp::NotRegex, Some(r)) => !r.is_match(value),
            (_, None) => false,
        }
    }

    /// Whether the matcher accepts a series that lacks the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether every label set matches all of `matchers`.
    pub fn all_match(matchers: &[Matcher], labels: &crate::Labels) -> bool {
        matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Labels;

    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        let m = Matcher::new("job", MatchOp::Regex, "no.e").unwrap();
        assert!(m.matches("node"));
        assert!(!m.matches("nodes"));
        assert!(!m.matches("a node"));
        let labels = Labels::from_pairs([("job", "node")]);
        assert!(Matcher::all_match(
            &[Matcher::new("env", MatchOp::Regex, "|prod").unwrap()],
            &labels
        ));
        assert!(!Matcher::all_match(
            &[Matcher::new("env", MatchOp::NotEqual, "").unwrap()],
            &labels
        ));
        assert!(Matcher::new("x", MatchOp::Regex, "(").is_err());
    }
}
