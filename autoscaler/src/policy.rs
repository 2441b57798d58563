//! The `autoscale` section of a service spec.
//!
//! Field names follow Kubernetes' HPA v2 (`min_replicas`, `behavior.scale_up.policies`, …) in
//! snake case, and every default is Kubernetes' own, so an HPA manifest translates key by key.
//! What HPA lacks comes from KEDA (scale to zero, activation, cooldown, fallback).

use serde::{Deserialize, Serialize};
use tidewatch_model::Duration;

/// Why a policy was refused: the field, written as a path inside the `autoscale` section
/// (`metrics[1].promql.value`), and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The path of the field inside the `autoscale` section.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.into(),
        message: message.into(),
    }
}

/// A YAML error as a [`PolicyError`]: the library puts the path first (`metrics[0].cpu: …`).
fn parse_error(text: &str) -> PolicyError {
    if let Some((path, rest)) = text.split_once(": ")
        && !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'))
    {
        return invalid(path, rest);
    }
    invalid("autoscale", text)
}

/// The largest replica count a policy may name; keeps every computation far from overflow.
pub const MAX_REPLICAS_LIMIT: u32 = 100_000;

/// An autoscaling policy for one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The fewest replicas (default 1). 0 enables scaling to zero with KEDA's semantics: the
    /// service goes to 0 once no metric is above its `activation` for `cooldown`, and back to
    /// at least 1 as soon as one is.
    #[serde(default = "default_min_replicas", alias = "min")]
    pub min_replicas: u32,
    /// The most replicas (required).
    #[serde(alias = "max")]
    pub max_replicas: u32,
    /// What to scale on; the largest proposal wins (HPA's rule).
    pub metrics: Vec<MetricSpec>,
    /// Ratios within `1 ± tolerance` of the target change nothing (default 0.1, HPA's).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Per direction: stabilisation window, rate policies and select policy. Left out, HPA v2's
    /// defaults apply (as `behavior: {}` in an HPA). `behavior: null` selects HPA's behaviour
    /// for an HPA without a `behavior` block: one step may go at most to `max(2 × current, 4)`
    /// and scale-down is stabilised over 300 s.
    #[serde(default = "default_behavior")]
    pub behavior: Option<Behavior>,
    /// With `min_replicas: 0`, how long no metric must be above its activation threshold
    /// before the service goes to zero (KEDA's `cooldownPeriod`, default 300s).
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    /// After this many consecutive failed readings of a metric, that metric proposes a fixed
    /// count instead of holding the service where it is (KEDA's `fallback`).
    #[serde(default)]
    pub fallback: Option<Fallback>,
    /// Decide and record, but never change the replica count.
    #[serde(default)]
    pub dry_run: bool,
    /// How often the policy is evaluated (default 1s; HPA: 15s).
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// CPU and memory of a replica that became ready less than this long ago are treated as a
    /// not-ready replica's (HPA ignores a new pod's CPU until one full metric window after it
    /// became ready): its start-up burst would otherwise look like load. Longer is more
    /// conservative but slows a scale-up that needs several steps. 0s turns it off. Default 5s.
    #[serde(default = "default_warm_up")]
    pub warm_up: Duration,
    /// The range of `rate()` over the collector's CPU counters (default 3s: three samples at
    /// 1 s collection). It must hold at least two collections, so at least twice the collection
    /// interval; longer smooths more and reacts later.
    #[serde(default = "default_rate_window")]
    pub rate_window: Duration,
}

fn default_min_replicas() -> u32 {
    1
}
fn default_tolerance() -> f64 {
    0.1
}
fn default_behavior() -> Option<Behavior> {
    Some(Behavior::default())
}
const fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}
const fn default_interval() -> Duration {
    Duration::from_secs(1)
}
const fn default_warm_up() -> Duration {
    Duration::from_secs(5)
}
const fn default_rate_window() -> Duration {
    Duration::from_secs(3)
}

/// One metric of a policy. Written as a one-key map: `- cpu: {target_utilization: 60}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "MetricSpecMap", into = "MetricSpecMap")]
pub enum MetricSpec {
    /// CPU used per replica, in percent of its reservation (else of its limit), from the
    /// collector's `container_cpu_usage_seconds_total`.
    Cpu(ResourceTarget),
    /// Memory working set per replica, in percent of its reservation (else of its limit),
    /// from `container_memory_working_set_bytes`.
    Memory(ResourceTarget),
    /// Any PromQL expression; its result is summed into one number.
    Promql(ExpressionTarget),
    /// Any LogQL metric expression (for example error lines per second).
    Logql(ExpressionTarget),
}

/// The written form of a metric: a map with exactly one of its keys. (YAML libraries write
/// externally tagged enums as `!tags`; a one-key map is what people write.)
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpecMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu: Option<ResourceTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<ResourceTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    promql: Option<ExpressionTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    logql: Option<ExpressionTarget>,
}

impl TryFrom<MetricSpecMap> for MetricSpec {
    type Error = String;

    fn try_from(m: MetricSpecMap) -> Result<Self, String> {
        let mut found = Vec::new();
        if let Some(t) = m.cpu {
            found.push(MetricSpec::Cpu(t));
        }
        if let Some(t) = m.memory {
            found.push(MetricSpec::Memory(t));
        }
        if let Some(t) = m.promql {
            found.push(MetricSpec::Promql(t));
        }
        if let Some(t) = m.logql {
            found.push(MetricSpec::Logql(t));
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("a metric needs one of the keys cpu, memory, promql, logql".into()),
            _ => Err("one metric per list entry: give each of cpu, memory, promql, logql its own `- ` entry".into()),
        }
    }
}

impl From<MetricSpec> for MetricSpecMap {
    fn from(m: MetricSpec) -> Self {
        match m {
            MetricSpec::Cpu(t) => MetricSpecMap {
                cpu: Some(t),
                ..Default::default()
            },
            MetricSpec::Memory(t) => MetricSpecMap {
                memory: Some(t),
                ..Default::default()
            },
            MetricSpec::Promql(t) => MetricSpecMap {
                promql: Some(t),
                ..Default::default()
            },
            MetricSpec::Logql(t) => MetricSpecMap {
                logql: Some(t),
                ..Default::default()
            },
        }
    }
}

/// A utilisation target for CPU or memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceTarget {
    /// The wanted average utilisation, in percent of the reservation (else the limit).
    pub target_utilization: f64,
}

/// A target for a PromQL or LogQL expression: exactly one of `average_value` and `value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpressionTarget {
    /// Shown in reasons, metrics and the API (default `promql`/`logql`, numbered when there are
    /// several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The expression, evaluated as an instant query.
    pub expr: String,
    /// The wanted value per replica (HPA's `AverageValue`): replicas = ⌈value ÷ target⌉.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<f64>,
    /// The wanted total (HPA's `Value`): replicas = ⌈value ÷ target × ready replicas⌉.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// With `min_replicas: 0`: the service is active while the value is strictly above this
    /// (KEDA's `activationThreshold`, default 0).
    #[serde(default)]
    pub activation: f64,
}

/// How an expression's target is meant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpressionGoal {
    /// Per replica.
    AverageValue(f64),
    /// In total.
    Value(f64),
}

impl ExpressionTarget {
    /// The target, once validated (exactly one of the two is set).
    pub fn goal(&self) -> ExpressionGoal {
        match (self.average_value, self.value) {
            (Some(v), _) => ExpressionGoal::AverageValue(v),
            (None, Some(v)) => ExpressionGoal::Value(v),
            // Validation refuses this; a neutral target keeps the function total.
            (None, None) => ExpressionGoal::Value(f64::INFINITY),
        }
    }
}

/// KEDA's fallback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    /// Consecutive failed readings of one metric before it proposes `replicas`.
    pub failure_threshold: u32,
    /// What a failing metric proposes (still clamped to min/max and rate-limited).
    pub replicas: u32,
}

/// Scaling behaviour per direction (HPA v2's `behavior`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "BehaviorSpec")]
pub struct Behavior {
    /// Rules for adding replicas.
    pub scale_up: ScalingRules,
    /// Rules for removing replicas.
    pub scale_down: ScalingRules,
}

impl Default for Behavior {
    /// HPA v2's defaults (`pkg/apis/autoscaling/v2/defaults.go`).
    fn default() -> Self {
        Behavior {
            scale_up: ScalingRules::default_up(),
            scale_down: ScalingRules::default_down(),
        }
    }
}

/// Rules for one direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScalingRules {
    /// Only move as far as every recommendation of this window allows (up: the lowest, down:
    /// the highest).
    pub stabilization_window: Duration,
    /// Rate limits; which one applies is chosen by `select_policy`.
    pub policies: Vec<ScalingPolicy>,
    /// `Max` takes the policy allowing the largest change, `Min` the smallest, `Disabled`
    /// forbids this direction.
    pub select_policy: SelectPolicy,
}

impl ScalingRules {
    /// HPA's scale-up default: no window, 100 % or 4 pods per 15 s, whichever is more.
    pub fn default_up() -> Self {
        ScalingRules {
            stabilization_window: Duration::from_secs(0),
            policies: vec![
                ScalingPolicy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: Duration::from_secs(15),
                },
                ScalingPolicy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: Duration::from_secs(15),
                },
            ],
            select_policy: SelectPolicy::Max,
        }
    }

    /// HPA's scale-down default: a 300 s window, 100 % per 15 s.
    pub fn default_down() -> Self {
        ScalingRules {
            stabilization_window: Duration::from_secs(300),
            policies: vec![ScalingPolicy {
                kind: PolicyKind::Percent,
                value: 100,
                period: Duration::from_secs(15),
            }],
            select_policy: SelectPolicy::Max,
        }
    }
}

/// One rate limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    /// Replicas (Pods) or percent of the count at the start of the period (Percent).
    pub value: u32,
    /// The sliding period the change is counted over.
    pub period: Duration,
}

/// The unit of a rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyKind {
    /// A number of replicas.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// How several rate limits combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SelectPolicy {
    /// The most permissive.
    Max,
    /// The least permissive.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// What is written; missing parts take the defaults of their direction.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BehaviorSpec {
    #[serde(default)]
    scale_up: Option<RulesSpec>,
    #[serde(default)]
    scale_down: Option<RulesSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSpec {
    #[serde(default)]
    stabilization_window: Option<Duration>,
    #[serde(default)]
    policies: Option<Vec<ScalingPolicy>>,
    #[serde(default)]
    select_policy: Option<SelectPolicy>,
}

impl RulesSpec {
    fn resolve(self, defaults: ScalingRules) -> ScalingRules {
        ScalingRules {
            stabilization_window: self.stabilization_window.unwrap_or(defaults.stabilization_window),
            policies: self.policies.unwrap_or(defaults.policies),
            select_policy: self.select_policy.unwrap_or(defaults.select_policy),
        }
    }
}

impl From<BehaviorSpec> for Behavior {
    fn from(spec: BehaviorSpec) -> Self {
        Behavior {
            scale_up: spec
                .scale_up
                .map_or_else(ScalingRules::default_up, |r| r.resolve(ScalingRules::default_up())),
            scale_down: spec
                .scale_down
                .map_or_else(ScalingRules::default_down, |r| r.resolve(ScalingRules::default_down())),
        }
    }
}

impl MetricSpec {
    /// The kind as written (`cpu`, `memory`, `promql`, `logql`).
    pub fn kind(&self) -> &'static str {
        match self {
            MetricSpec::Cpu(_) => "cpu",
            MetricSpec::Memory(_) => "memory",
            MetricSpec::Promql(_) => "promql",
            MetricSpec::Logql(_) => "logql",
        }
    }

    /// The activation threshold, for the metrics that can wake a service at zero.
    pub fn activation(&self) -> Option<f64> {
        match self {
            MetricSpec::Promql(t) | MetricSpec::Logql(t) => Some(t.activation),
            MetricSpec::Cpu(_) | MetricSpec::Memory(_) => None,
        }
    }
}

impl Policy {
    /// A policy with HPA's defaults and one CPU metric (HPA's default metric is CPU at 80 %).
    pub fn cpu(min_replicas: u32, max_replicas: u32, target_utilization: f64) -> Self {
        Policy {
            min_replicas,
            max_replicas,
            metrics: vec![MetricSpec::Cpu(ResourceTarget { target_utilization })],
            tolerance: default_tolerance(),
            behavior: default_behavior(),
            cooldown: default_cooldown(),
            fallback: None,
            dry_run: false,
            interval: default_interval(),
            warm_up: default_warm_up(),
            rate_window: default_rate_window(),
        }
    }

    /// Parses and validates the `autoscale` section as the scheduler keeps it.
    pub fn from_yaml_value(value: yaml_serde::Value) -> Result<Self, PolicyError> {
        let policy: Policy = yaml_serde::from_value(value).map_err(|e| parse_error(&e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses and validates YAML text of the `autoscale` section.
    pub fn from_yaml_str(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = yaml_serde::from_str(text).map_err(|e| parse_error(&e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// The display name of metric `index`: its `name`, else its kind; unnamed PromQL and LogQL
    /// metrics are numbered when there are several (`promql0`, `promql1`).
    pub fn metric_name(&self, index: usize) -> String {
        let Some(metric) = self.metrics.get(index) else {
            return format!("metric{index}");
        };
        if let MetricSpec::Promql(t) | MetricSpec::Logql(t) = metric
            && let Some(name) = &t.name
        {
            return name.clone();
        }
        let kind = metric.kind();
        let same_kind = self.metrics.iter().filter(|m| m.kind() == kind).count();
        // cpu and memory are not numbered: a second one is a mistake that validation reports.
        if same_kind > 1 && metric.activation().is_some() {
            let nth = self.metrics[..index].iter().filter(|m| m.kind() == kind).count();
            format!("{kind}{nth}")
        } else {
            kind.to_string()
        }
    }

    /// Checks what serde cannot: ranges, exclusive fields, consistency. The error names the
    /// field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_replicas == 0 {
            return Err(invalid("max_replicas", "must be at least 1"));
        }
        if self.max_replicas > MAX_REPLICAS_LIMIT {
            return Err(invalid("max_replicas", format!("must be at most {MAX_REPLICAS_LIMIT}")));
        }
        if self.min_replicas > self.max_replicas {
            return Err(invalid(
                "min_replicas",
                format!("{} is above max_replicas ({})", self.min_replicas, self.max_replicas),
            ));
        }
        if self.metrics.is_empty() {
            return Err(invalid("metrics", "at least one metric is required"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, metric) in self.metrics.iter().enumerate() {
            let base = format!("metrics[{i}].{}", metric.kind());
            match metric {
                MetricSpec::Cpu(t) | MetricSpec::Memory(t) => {
                    if !(t.target_utilization.is_finite() && t.target_utilization > 0.0) {
                        return Err(invalid(
                            format!("{base}.target_utilization"),
                            "must be a percentage above 0 (e.g. 60)",
                        ));
                    }
                }
                MetricSpec::Promql(t) | MetricSpec::Logql(t) => {
                    if t.expr.trim().is_empty() {
                        return Err(invalid(format!("{base}.expr"), "must not be empty"));
                    }
                    let target = match (t.average_value, t.value) {
                        (Some(_), Some(_)) => {
                            return Err(invalid(
                                format!("{base}.value"),
                                "give either average_value (per replica) or value (in total), not both",
                            ));
                        }
                        (None, None) => {
                            return Err(invalid(
                                format!("{base}.average_value"),
                                "one of average_value (per replica) or value (in total) is required",
                            ));
                        }
                        (Some(v), None) => ("average_value", v),
                        (None, Some(v)) => ("value", v),
                    };
                    if !(target.1.is_finite() && target.1 > 0.0) {
                        return Err(invalid(format!("{base}.{}", target.0), "must be a number above 0"));
                    }
                    if !(t.activation.is_finite() && t.activation >= 0.0) {
                        return Err(invalid(format!("{base}.activation"), "must be a number ≥ 0"));
                    }
                    if let Some(name) = &t.name
                        && name.trim().is_empty()
                    {
                        return Err(invalid(format!("{base}.name"), "must not be empty"));
                    }
                }
            }
            if !names.insert(self.metric_name(i)) {
                return Err(invalid(
                    format!("metrics[{i}]"),
                    format!(
                        "two metrics are named {:?}; give each a distinct name",
                        self.metric_name(i)
                    ),
                ));
            }
        }
        if !(self.tolerance.is_finite() && (0.0..1.0).contains(&self.tolerance)) {
            return Err(invalid("tolerance", "must be at least 0 and below 1 (e.g. 0.1)"));
        }
        if let Some(behavior) = &self.behavior {
            for (dir, rules) in [("scale_up", &behavior.scale_up), ("scale_down", &behavior.scale_down)] {
                if rules.stabilization_window.as_std() > std::time::Duration::from_secs(3600) {
                    return Err(invalid(
                        format!("behavior.{dir}.stabilization_window"),
                        "must be at most 1h (HPA's limit)",
                    ));
                }
                if rules.policies.is_empty() && rules.select_policy != SelectPolicy::Disabled {
                    return Err(invalid(
                        format!("behavior.{dir}.policies"),
                        "at least one policy is required unless select_policy is Disabled",
                    ));
                }
                for (j, p) in rules.policies.iter().enumerate() {
                    if p.value == 0 {
                        return Err(invalid(
                            format!("behavior.{dir}.policies[{j}].value"),
                            "must be at least 1",
                        ));
                    }
                    if p.kind == PolicyKind::Pods && p.value > MAX_REPLICAS_LIMIT {
                        return Err(invalid(
                            format!("behavior.{dir}.policies[{j}].value"),
                            format!("must be at most {MAX_REPLICAS_LIMIT}"),
                        ));
                    }
                    if p.kind == PolicyKind::Percent && p.value > 100_000 {
                        return Err(invalid(
                            format!("behavior.{dir}.policies[{j}].value"),
                            "must be at most 100000 (percent)",
                        ));
                    }
                    let period = p.period.as_std();
                    if period.is_zero() || period > std::time::Duration::from_secs(1800) {
                        return Err(invalid(
                            format!("behavior.{dir}.policies[{j}].period"),
                            "must be above 0s and at most 30m (HPA's limit)",
                        ));
                    }
                }
            }
        }
        if self.min_replicas == 0 && !self.metrics.iter().any(|m| m.activation().is_some()) {
            return Err(invalid(
                "min_replicas",
                "scaling to zero needs a promql or logql metric: cpu and memory cannot be read without replicas",
            ));
        }
        if let Some(fallback) = &self.fallback {
            if fallback.failure_threshold == 0 {
                return Err(invalid("fallback.failure_threshold", "must be at least 1"));
            }
            if fallback.replicas > self.max_replicas {
                return Err(invalid(
                    "fallback.replicas",
                    format!("{} is above max_replicas ({})", fallback.replicas, self.max_replicas),
                ));
            }
        }
        let hour = std::time::Duration::from_secs(3600);
        if self.interval.as_std() < std::time::Duration::from_millis(100) || self.interval.as_std() > hour {
            return Err(invalid("interval", "must be at least 100ms and at most 1h"));
        }
        if self.rate_window.as_std() < std::time::Duration::from_secs(1) || self.rate_window.as_std() > hour {
            return Err(invalid("rate_window", "must be at least 1s and at most 1h"));
        }
        if self.warm_up.as_std() > hour {
            return Err(invalid("warm_up", "must be at most 1h"));
        }
        if self.cooldown.as_std() > 24 * hour {
            return Err(invalid("cooldown", "must be at most 24h"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_hpa_v2_defaults() {
        let p = Policy::from_yaml_str("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}]").unwrap();
        assert_eq!(p.min_replicas, 1);
        assert_eq!(p.tolerance, 0.1);
        assert_eq!(p.interval, Duration::from_secs(1));
        let b = p.behavior.unwrap();
        assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(300));
        assert_eq!(b.scale_down.policies.len(), 1);
        assert_eq!(b.scale_down.policies[0].kind, PolicyKind::Percent);
        assert_eq!(b.scale_down.policies[0].value, 100);
        assert_eq!(b.scale_up.stabilization_window, Duration::from_secs(0));
        assert_eq!(b.scale_up.select_policy, SelectPolicy::Max);
        let up: Vec<_> = b
            .scale_up
            .policies
            .iter()
            .map(|p| (p.kind, p.value, p.period))
            .collect();
        assert!(up.contains(&(PolicyKind::Pods, 4, Duration::from_secs(15))));
        assert!(up.contains(&(PolicyKind::Percent, 100, Duration::from_secs(15))));
        assert_eq!(p.cooldown, Duration::from_secs(300));
    }

    #[test]
    fn partial_behavior_takes_the_direction_defaults() {
        let p = Policy::from_yaml_str(
            "max_replicas: 10\nmetrics: [{cpu: {target_utilization: 60}}]\nbehavior:\n  scale_down:\n    stabilization_window: 30s\n",
        )
        .unwrap();
        let b = p.behavior.unwrap();
        assert_eq!(b.scale_down.stabilization_window, Duration::from_secs(30));
        assert_eq!(b.scale_down.policies, ScalingRules::default_down().policies);
        assert_eq!(b.scale_up, ScalingRules::default_up());
    }

    #[test]
    fn null_behavior_selects_hpa_without_behavior_block() {
        let p = Policy::from_yaml_str("max_replicas: 10\nmetrics: [{cpu: {target_utilization: 60}}]\nbehavior: null")
            .unwrap();
        assert!(p.behavior.is_none());
    }

    #[test]
    fn full_policy_parses() {
        let p = Policy::from_yaml_str(
            r#"
min: 0
max: 8
metrics:
  - cpu: {target_utilization: 60}
  - memory: {target_utilization: 80}
  - promql: {name: rps, expr: 'sum(rate(http_requests_total{service="web"}[30s]))', average_value: 100, activation: 1}
  - logql: {expr: 'sum(rate({service="web"} |= "error" [1m]))', value: 5}
tolerance: 0.05
cooldown: 2m
fallback: {failure_threshold: 3, replicas: 4}
dry_run: true
interval: 2s
warm_up: 0s
behavior:
  scale_up:
    select_policy: Min
    policies: [{type: Pods, value: 2, period: 30s}]
  scale_down:
    select_policy: Disabled
"#,
        )
        .unwrap();
        assert_eq!(p.min_replicas, 0);
        assert_eq!(p.metrics.len(), 4);
        assert_eq!(p.metric_name(2), "rps");
        assert_eq!(p.metric_name(3), "logql");
        assert!(p.dry_run);
        assert_eq!(p.fallback.as_ref().unwrap().replicas, 4);
        assert_eq!(
            p.behavior.as_ref().unwrap().scale_down.select_policy,
            SelectPolicy::Disabled
        );
    }

    fn err(text: &str) -> PolicyError {
        Policy::from_yaml_str(text).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let cpu = "metrics: [{cpu: {target_utilization: 60}}]";
        assert_eq!(err(&format!("max_replicas: 0\n{cpu}")).field, "max_replicas");
        assert_eq!(
            err(&format!("min_replicas: 5\nmax_replicas: 4\n{cpu}")).field,
            "min_replicas"
        );
        assert_eq!(err("max_replicas: 4\nmetrics: []").field, "metrics");
        assert_eq!(
            err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 0}}]").field,
            "metrics[0].cpu.target_utilization"
        );
        assert_eq!(
            err("max_replicas: 4\nmetrics: [{promql: {expr: up, value: 1, average_value: 2}}]").field,
            "metrics[0].promql.value"
        );
        assert_eq!(
            err("max_replicas: 4\nmetrics: [{logql: {expr: x}}]").field,
            "metrics[0].logql.average_value"
        );
        assert_eq!(
            err(&format!("max_replicas: 4\n{cpu}\ntolerance: 1.5")).field,
            "tolerance"
        );
        assert_eq!(
            err(&format!(
                "max_replicas: 4\n{cpu}\nbehavior: {{scale_up: {{policies: [{{type: Pods, value: 0, period: 15s}}]}}}}"
            ))
            .field,
            "behavior.scale_up.policies[0].value"
        );
        assert_eq!(
            err(&format!("max_replicas: 4\n{cpu}\nmin_replicas: 0")).field,
            "min_replicas",
            "scale to zero without an activation metric"
        );
        assert_eq!(
            err(&format!(
                "max_replicas: 4\n{cpu}\nfallback: {{failure_threshold: 0, replicas: 2}}"
            ))
            .field,
            "fallback.failure_threshold"
        );
        assert_eq!(err(&format!("max_replicas: 4\n{cpu}\ninterval: 1ms")).field, "interval");
        assert_eq!(
            err(&format!("max_replicas: 4\n{cpu}\ncooldown: 100000w")).field,
            "cooldown"
        );
        assert_eq!(
            err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}, {cpu: {target_utilization: 70}}]").field,
            "metrics[1]"
        );
    }

    #[test]
    fn type_errors_name_the_field_path() {
        let e = err("max_replicas: four\nmetrics: [{cpu: {target_utilization: 60}}]");
        assert_eq!(e.field, "max_replicas", "{e}");
        let e = err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}]\ninterval: soon");
        assert_eq!(e.field, "interval", "{e}");
        assert!(e.message.contains("soon"), "{e}");
        let e = err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}, memory: {target_utilization: 60}}]");
        assert!(e.field.starts_with("metrics"), "{e}");
        assert!(e.message.contains("one metric per list entry"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}]\nmax_replica: 3");
        assert!(e.message.contains("max_replica"), "{e}");
        let e = err("max_replicas: 4\nmetrics: [{cpu: {target: 60}}]");
        assert!(e.message.contains("target"), "{e}");
        let e = err("max_replicas: 4\nmetrics: [{gpu: {target_utilization: 60}}]");
        assert!(e.message.contains("gpu"), "{e}");
        let e = err("max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}]\nbehavior: {scale_up: {window: 3s}}");
        assert!(e.message.contains("window"), "{e}");
        let e = err(
            "max_replicas: 4\nmetrics: [{cpu: {target_utilization: 60}}]\nbehavior: {scale_up: {policies: [{type: Bananas, value: 1, period: 1s}]}}",
        );
        assert!(e.message.contains("Bananas"), "{e}");
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```yaml\nautoscale:\n").expect("example in README") + "```yaml\nautoscale:\n".len();
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let text: String = block
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
            .collect();
        let p = Policy::from_yaml_str(&text).unwrap();
        assert_eq!(p.metrics.len(), 4);
        assert_eq!(p.metric_name(3), "errors");
        assert_eq!(
            p.behavior,
            Some(Behavior::default()),
            "the example spells out the defaults"
        );
    }

    #[test]
    fn serializes_back_to_an_equal_policy() {
        let p = Policy::from_yaml_str(
            "max_replicas: 4\nmetrics: [{promql: {expr: up, average_value: 3}}]\nbehavior: {scale_down: {stabilization_window: 1m}}",
        )
        .unwrap();
        let text = yaml_serde::to_string(&p).unwrap();
        assert_eq!(Policy::from_yaml_str(&text).unwrap(), p);
    }
}
