//! Inhibition: a firing source alert mutes target alerts that agree on the `equal` labels
//! (a missing label equals the empty value), except that an alert matching both sides is not
//! muted by a source that also matches both sides (Alertmanager's `hasEqual` exclusion).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::config::{AlertmanagerConfigFile, ConfigError};
use super::matchers::{LabelSet, Matchers};
use super::route::matchers_of;

/// A compiled inhibition rule.
#[derive(Clone, Debug)]
pub struct InhibitRule {
    /// What inhibits.
    pub source: Matchers,
    /// What is inhibited.
    pub target: Matchers,
    /// Labels that must be equal on both.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Compiles every `inhibit_rules` entry of a config.
    pub fn compile_all(file: &AlertmanagerConfigFile) -> Result<Vec<InhibitRule>, ConfigError> {
        let mut out = Vec::new();
        for (i, r) in file.config.inhibit_rules.iter().enumerate() {
            let field = format!("inhibit_rules[{i}]");
            let source = matchers_of(
                file,
                &format!("{field}.source"),
                r.source_match.as_ref(),
                r.source_match_re.as_ref(),
                r.source_matchers.as_ref(),
            )?;
            let target = matchers_of(
                file,
                &format!("{field}.target"),
                r.target_match.as_ref(),
                r.target_match_re.as_ref(),
                r.target_matchers.as_ref(),
            )?;
            out.push(InhibitRule {
                source,
                target,
                equal: r.equal.clone(),
            });
        }
        Ok(out)
    }
}

/// The rules plus, per rule, the alerts that match its source side.
#[derive(Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    sources: Vec<HashMap<u64, (LabelSet, DateTime<Utc>)>>,
}

impl Inhibitor {
    /// An inhibitor with no source alerts yet.
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = rules.iter().map(|_| HashMap::new()).collect();
        Inhibitor { rules, sources }
    }

    /// Records an alert (new or updated) as a potential source.
    pub fn observe(&mut self, fp: u64, labels: &LabelSet, ends_at: DateTime<Utc>) {
        for (rule, cache) in self.rules.iter().zip(self.sources.iter_mut()) {
            if rule.source.matches(labels) {
                cache.insert(fp, (labels.clone(), ends_at));
            }
        }
    }

    /// Forgets an alert that left the store.
    pub fn forget(&mut self, fp: u64) {
        for cache in &mut self.sources {
            cache.remove(&fp);
        }
    }

    /// The fingerprint of an alert that mutes `labels` at `now`, if any.
    pub fn muted_by(&self, labels: &LabelSet, now: DateTime<Utc>) -> Option<u64> {
        for (rule, cache) in self.rules.iter().zip(&self.sources) {
            if !rule.target.matches(labels) {
                continue;
            }
            let exclude_two_sided = rule.source.matches(labels);
            for (fp, (src, ends_at)) in cache {
                if *ends_at <= now {
                    continue;
                }
                let equal = rule.equal.iter().all(|n| {
                    src.get(n).map(String::as_str).unwrap_or("") == labels.get(n).map(String::as_str).unwrap_or("")
                });
                if !equal || (exclude_two_sided && rule.target.matches(src)) {
                    continue;
                }
                return Some(*fp);
            }
        }
        None
    }
}
