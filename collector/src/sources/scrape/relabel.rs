//! Prometheus' `relabel_configs` / `metric_relabel_configs`, with its actions, defaults and
//! validation rules.

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tidewatch_model::Labels;

/// What a relabel step does (Prometheus' `action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelabelAction {
    /// Sets `target_label` to `replacement` expanded with the regex's groups, if the regex matches.
    #[default]
    Replace,
    /// Drops the target or series unless the regex matches the joined source values.
    Keep,
    /// Drops the target or series if the regex matches.
    Drop,
    /// Drops it unless the joined source values equal `target_label`'s value.
    KeepEqual,
    /// Drops it if the joined source values equal `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to the md5 of the joined values modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches to the name `replacement` gives.
    LabelMap,
    /// Removes labels whose name matches.
    LabelDrop,
    /// Removes labels whose name does not match.
    LabelKeep,
    /// Sets `target_label` to the joined values in lower case.
    Lowercase,
    /// Sets `target_label` to the joined values in upper case.
    Uppercase,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// One relabel step as written in YAML (Prometheus' `relabel_config`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched against `regex`.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Default `;`.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Anchored at both ends, as in Prometheus. Default `(.*)`.
    #[serde(default = "default_regex")]
    pub regex: String,
    /// For `hashmod`.
    #[serde(default)]
    pub modulus: u64,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: Option<String>,
    /// Default `$1`; `$1`, `${1}` and `$name` refer to the regex's groups.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Default `replace`.
    #[serde(default)]
    pub action: RelabelAction,
}

/// A relabel step that cannot work, as Prometheus would refuse it at load time.
#[derive(Debug, thiserror::Error)]
pub enum RelabelError {
    /// The regex does not compile.
    #[error("relabel step {index}: invalid regex {regex:?}: {source}")]
    Regex {
        /// The step's position in its list.
        index: usize,
        /// The regex as written.
        regex: String,
        /// What the regex crate said.
        source: Box<regex::Error>,
    },
    /// A field the action needs is missing, or one it forbids is set.
    #[error("relabel step {index} ({action:?}): {message}")]
    Invalid {
        /// The step's position in its list.
        index: usize,
        /// The step's action.
        action: RelabelAction,
        /// What is wrong.
        message: String,
    },
}

/// A compiled relabel step.
#[derive(Clone, Debug)]
pub struct Relabeler {
    config: RelabelConfig,
    regex: Regex,
}

impl Relabeler {
    /// Compiles and checks a list of steps.
    pub fn compile_all(configs: &[RelabelConfig]) -> Result<Vec<Relabeler>, RelabelError> {
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| Relabeler::compile(i, c))
            .collect()
    }

    fn compile(index: usize, config: &RelabelConfig) -> Result<Relabeler, RelabelError> {
        let invalid = |message: &str| RelabelError::Invalid {
            index,
            action: config.action,
            message: message.into(),
        };
        let regex = Regex::new(&format!("^(?:{})$", config.regex)).map_err(|source| RelabelError::Regex {
            index,
            regex: config.regex.clone(),
            source: Box::new(source),
        })?;
        use RelabelAction::*;
        let needs_target = matches!(
            config.action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && config.target_label.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("target_label is required"));
        }
        if config.action == HashMod && config.modulus == 0 {
            return Err(invalid("modulus must be set and non-zero"));
        }
        if matches!(config.action, KeepEqual | DropEqual) && config.regex != default_regex() {
            return Err(invalid("regex must not be set"));
        }
        if matches!(config.action, LabelDrop | LabelKeep)
            && (!config.source_labels.is_empty()
                || config.target_label.is_some()
                || config.modulus != 0
                || config.separator != default_separator()
                || config.replacement != default_replacement())
        {
            return Err(invalid("only regex may be set"));
        }
        if let Some(t) = &config.target_label
            && matches!(config.action, Replace)
            && !t.contains('$')
            && tidewatch_model::validate_label_name(t).is_err()
        {
            return Err(invalid(&format!("{t:?} is not a valid label name")));
        }
        Ok(Relabeler {
            config: config.clone(),
            regex,
        })
    }
}

/// Applies `steps` in order; `None` when a step dropped the label set.
pub fn relabel(labels: Labels, steps: &[Relabeler]) -> Option<Labels> {
    let mut labels = labels;
    for step in steps {
        if !apply(&mut labels, step) {
            return None;
        }
    }
    Some(labels)
}

fn apply(labels: &mut Labels, step: &Relabeler) -> bool {
    let cfg = &step.config;
    let value = cfg
        .source_labels
        .iter()
        .map(|n| labels.get(n).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&cfg.separator);
    let target = cfg.target_label.as_deref().unwrap_or("");
    match cfg.action {
        RelabelAction::Drop => !step.regex.is_match(&value),
        RelabelAction::Keep => step.regex.is_match(&value),
        RelabelAction::DropEqual => labels.get(target).unwrap_or("") != value,
        RelabelAction::KeepEqual => labels.get(target).unwrap_or("") == value,
        RelabelAction::Replace => {
            let Some(caps) = step.regex.captures(&value) else {
                return true;
            };
            let mut name = String::new();
            caps.expand(target, &mut name);
            if tidewatch_model::validate_label_name(&name).is_err() {
                return true;
            }
            let mut res = String::new();
            caps.expand(&cfg.replacement, &mut res);
            if res.is_empty() {
                labels.remove(&name);
            } else {
                labels.set(name, res);
            }
            true
        }
        RelabelAction::Lowercase => {
            labels.set(target, value.to_lowercase());
            true
        }
        RelabelAction::Uppercase => {
            labels.set(target, value.to_uppercase());
            true
        }
        RelabelAction::HashMod => {
            let hash = Md5::digest(value.as_bytes());
            // Prometheus uses the last 8 bytes, big-endian.
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&hash[8..16]);
            labels.set(target, (u64::from_be_bytes(tail) % cfg.modulus).to_string());
            true
        }
        RelabelAction::LabelMap => {
            let mapped: Vec<(String, String)> = labels
                .iter()
                .filter_map(|l| {
                    let caps = step.regex.captures(&l.name)?;
                    let mut name = String::new();
                    caps.expand(&cfg.replacement, &mut name);
                    Some((name, l.value.clone()))
                })
                .collect();
            for (n, v) in mapped {
                labels.set(n, v);
            }
            true
        }
        RelabelAction::LabelDrop | RelabelAction::LabelKeep => {
            let drop = cfg.action == RelabelAction::LabelDrop;
            let doomed: Vec<String> = labels
                .iter()
                .filter(|l| step.regex.is_match(&l.name) == drop)
                .map(|l| l.name.clone())
                .collect();
            for n in doomed {
                labels.remove(&n);
            }
            true
        }
    }
}
