//! Kubernetes' HPA v2 algorithm, as `pkg/controller/podautoscaler/{replica_calculator.go,
//! horizontal.go}` computes it, plus KEDA's scale to zero and fallback.
//!
//! Pure: no I/O and no clock. The caller passes the time, the replicas and the metric readings,
//! and keeps a [`ScalingState`] per service between calls (HPA keeps the same in its
//! controller: recommendations and scale events).

use std::collections::VecDeque;
use std::fmt::Write as _;

use serde::Serialize;
use tidewatch_model::ReplicaSet;

use crate::metrics::{Basis, MetricError, Reading};
use crate::policy::{Behavior, ExpressionGoal, MetricSpec, Policy, PolicyKind, ScalingRules, SelectPolicy};

/// HPA's `--horizontal-pod-autoscaler-downscale-stabilization` default, used without a
/// `behavior` block.
pub const LEGACY_DOWNSCALE_WINDOW_MS: i64 = 300_000;

/// History never holds more entries than this per service, whatever the windows and interval.
const MAX_HISTORY: usize = 50_000;

/// What the algorithm remembers about one service between evaluations.
#[derive(Clone, Debug, Default)]
pub struct ScalingState {
    /// (time, unstabilised recommendation), oldest first.
    recommendations: VecDeque<(i64, u32)>,
    /// (time, replicas added), oldest first.
    scale_up_events: VecDeque<(i64, u32)>,
    /// (time, replicas removed), oldest first.
    scale_down_events: VecDeque<(i64, u32)>,
    /// Consecutive failed readings per metric (index-aligned with the policy's metrics).
    failures: Vec<u32>,
    /// When a metric was last above its activation threshold (scale to zero).
    last_active_ms: Option<i64>,
}

/// A condition as `kubectl describe hpa` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `AbleToScale`, `ScalingActive` or `ScalingLimited`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// A CamelCase reason, HPA's where HPA has one.
    pub reason: &'static str,
    /// A sentence.
    pub message: String,
}

fn condition(kind: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Condition {
    Condition {
        kind,
        status: if status { "True" } else { "False" },
        reason,
        message: message.into(),
    }
}

/// One metric's part in a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricStatus {
    /// The display name (`cpu`, `memory`, a PromQL metric's `name`).
    pub name: String,
    /// `cpu`, `memory`, `promql` or `logql`.
    pub kind: &'static str,
    /// `Utilization`, `AverageValue` or `Value` (HPA's target types).
    pub target_type: &'static str,
    /// The current value: average utilisation in percent, value per replica, or total.
    pub current: Option<f64>,
    /// The target in the same unit.
    pub target: f64,
    /// What a utilisation is of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
    /// current ÷ target.
    pub ratio: Option<f64>,
    /// The replica count this metric asks for.
    pub proposal: Option<u32>,
    /// Why the metric could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Consecutive failed readings.
    pub consecutive_failures: u32,
    /// Whether the proposal is the fallback's.
    pub fallback: bool,
    /// Why the proposal keeps the count although the ratio is outside the tolerance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// One evaluation's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// The service.
    pub service: String,
    /// The replica count asked for before.
    pub from: u32,
    /// The replica count decided.
    pub to: u32,
    /// Each metric's current value, target and proposal.
    pub metrics: Vec<MetricStatus>,
    /// A sentence saying why, e.g. `web 2→4: cpu 91% of limit > target 60%; limited by scaleUp
    /// policy Pods 4/15s`.
    pub reason: String,
    /// What held the count back, if anything (`scaleUp policy Pods 4/15s`, `max_replicas 4`,
    /// `scaleDown stabilization window 5m`).
    pub limited_by: Option<String>,
    /// AbleToScale, ScalingActive, ScalingLimited.
    pub conditions: Vec<Condition>,
    /// Decided under `dry_run`: recorded, not acted on.
    pub dry_run: bool,
    /// Whether the new count was handed to the scheduler (set by the control loop).
    pub applied: bool,
    /// Why acting failed (set by the control loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decision {
    /// Whether the count changes.
    pub fn scales(&self) -> bool {
        self.from != self.to
    }
}

/// The inputs of one evaluation.
pub struct Inputs<'a> {
    /// Now, in milliseconds since the epoch (the same clock as the replicas' timestamps).
    pub now_ms: i64,
    /// The scheduler's view: `desired` is HPA's "current replicas" (the scale's spec).
    pub set: &'a ReplicaSet,
    /// One reading per policy metric, in the policy's order.
    pub readings: &'a [Result<Reading, MetricError>],
}

/// Whether a ratio is close enough to 1 to change nothing (HPA's `isWithin`).
fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance
}

fn ceil_count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x.ceil().min(10.0 * crate::policy::MAX_REPLICAS_LIMIT as f64) as u32
    }
}

/// How a replica counts in a per-replica metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sample {
    /// Ready, with a value.
    Ready(f64),
    /// Ready, without a value.
    Missing,
    /// Not ready (or warming up): 0 when scaling up, left out when scaling down.
    Unready,
}

/// A metric's proposal.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The replica count asked for.
    pub replicas: u32,
    /// The current value shown (average over ready replicas with a value, per replica, or
    /// total).
    pub current: f64,
    /// `current ÷ target`.
    pub ratio: f64,
    /// Why the count stays although the ratio is outside the tolerance (HPA's conservative
    /// second pass over missing and not-ready replicas).
    pub held: Option<String>,
}

/// HPA's per-replica calculation (`GetResourceReplicas` / `calcPlainMetricReplicas`): the
/// ratio over ready replicas; missing replicas count as the target on a scale-down and 0 on a
/// scale-up; not-ready ones as 0 on a scale-up and not at all on a scale-down; if that changes
/// the direction or lands within tolerance, nothing changes.
pub fn per_replica_proposal(current: u32, samples: &[Sample], target: f64, tolerance: f64) -> Result<Proposal, String> {
    let ready: Vec<f64> = samples
        .iter()
        .filter_map(|s| if let Sample::Ready(v) = s { Some(*v) } else { None })
        .collect();
    if samples.is_empty() {
        return Err("no replicas to measure".into());
    }
    if ready.is_empty() {
        return Err("no ready replica has a value (replicas might be unready or warming up)".into());
    }
    let missing = samples.iter().filter(|s| **s == Sample::Missing).count();
    let unready = samples.iter().filter(|s| **s == Sample::Unready).count();
    let sum: f64 = ready.iter().sum();
    let usage = sum / ready.len() as f64;
    let ratio = usage / target;
    let proposal = |replicas| Proposal {
        replicas,
        current: usage,
        ratio,
        held: None,
    };
    let scale_up_with_unready = unready > 0 && ratio > 1.0;
    if !scale_up_with_unready && missing == 0 {
        if within(ratio, tolerance) {
            return Ok(proposal(current));
        }
        return Ok(proposal(ceil_count(ratio * ready.len() as f64)));
    }
    let mut new_sum = sum;
    let mut counted = ready.len();
    if missing > 0 {
        if ratio < 1.0 {
            new_sum += target * missing as f64;
            counted += missing;
        } else if ratio > 1.0 {
            counted += missing;
        }
    }
    if scale_up_with_unready {
        counted += unready;
    }
    let new_ratio = new_sum / counted as f64 / target;
    let held = || {
        let mut parts = Vec::new();
        if scale_up_with_unready {
            parts.push(format!("{unready} not ready counted as 0"));
        }
        if missing > 0 {
            let as_what = if ratio < 1.0 { "the target" } else { "0" };
            parts.push(format!("{missing} without a value counted as {as_what}"));
        }
        Proposal {
            replicas: current,
            current: usage,
            ratio,
            held: Some(format!("held: {} gives ratio {new_ratio:.2}", parts.join(", "))),
        }
    };
    if within(new_ratio, tolerance) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0) {
        return Ok(held());
    }
    let replicas = ceil_count(new_ratio * counted as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(held());
    }
    Ok(proposal(replicas))
}

/// HPA's total-target calculation (`getUsageRatioReplicaCount`, an External `Value` target).
pub fn total_proposal(current: u32, ready: u32, value: f64, target: f64, tolerance: f64) -> Proposal {
    let ratio = value / target;
    let replicas = if current == 0 {
        ceil_count(ratio)
    } else if within(ratio, tolerance) {
        current
    } else {
        ceil_count(ratio * ready as f64)
    };
    Proposal {
        replicas,
        current: value,
        ratio,
        held: None,
    }
}

/// HPA's per-replica target on one number (`GetExternalPerPodMetricReplicas`, an External
/// `AverageValue` target): ⌈value ÷ target⌉ unless within tolerance of the replicas there are.
pub fn average_proposal(current: u32, replicas_now: u32, value: f64, target: f64, tolerance: f64) -> Proposal {
    if replicas_now == 0 {
        return Proposal {
            replicas: ceil_count(value / target),
            current: value,
            ratio: if value > 0.0 { f64::INFINITY } else { 0.0 },
            held: None,
        };
    }
    let ratio = value / (target * replicas_now as f64);
    let replicas = if within(ratio, tolerance) {
        current
    } else {
        ceil_count(value / target)
    };
    Proposal {
        replicas,
        current: value / replicas_now as f64,
        ratio,
        held: None,
    }
}

fn secs_text(ms: i64) -> String {
    tidewatch_model::Duration::from_millis(ms.max(0) as u64).to_string()
}

fn policy_text(direction: &str, kind: PolicyKind, value: u32, period_ms: i64) -> String {
    let kind = match kind {
        PolicyKind::Pods => "Pods",
        PolicyKind::Percent => "Percent",
    };
    format!("{direction} policy {kind} {value}/{}", secs_text(period_ms))
}

fn changes_in(events: &VecDeque<(i64, u32)>, now: i64, period_ms: i64) -> i64 {
    events
        .iter()
        .filter(|(t, _)| *t > now - period_ms)
        .map(|(_, n)| *n as i64)
        .sum()
}

/// The most replicas the scale-up rules allow now, and the policy that sets it.
fn scale_up_limit(state: &ScalingState, now: i64, current: u32, rules: &ScalingRules) -> (i64, String) {
    if rules.select_policy == SelectPolicy::Disabled {
        return (current as i64, "scaleUp select_policy Disabled".into());
    }
    let mut best: Option<(i64, String)> = None;
    for p in &rules.policies {
        let period = p.period.as_std().as_millis() as i64;
        let start = current as i64 - changes_in(&state.scale_up_events, now, period)
            + changes_in(&state.scale_down_events, now, period);
        let proposed = match p.kind {
            PolicyKind::Pods => start + p.value as i64,
            PolicyKind::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
        };
        let better = match (&best, rules.select_policy) {
            (None, _) => true,
            (Some((b, _)), SelectPolicy::Min) => proposed < *b,
            (Some((b, _)), _) => proposed > *b,
        };
        if better {
            best = Some((proposed, policy_text("scaleUp", p.kind, p.value, period)));
        }
    }
    best.unwrap_or((current as i64, "scaleUp has no policy".into()))
}

/// The fewest replicas the scale-down rules allow now, and the policy that sets it.
fn scale_down_limit(state: &ScalingState, now: i64, current: u32, rules: &ScalingRules) -> (i64, String) {
    if rules.select_policy == SelectPolicy::Disabled {
        return (current as i64, "scaleDown select_policy Disabled".into());
    }
    let mut best: Option<(i64, String)> = None;
    for p in &rules.policies {
        let period = p.period.as_std().as_millis() as i64;
        let start = current as i64 - changes_in(&state.scale_up_events, now, period)
            + changes_in(&state.scale_down_events, now, period);
        let proposed = match p.kind {
            PolicyKind::Pods => start - p.value as i64,
            // HPA converts with int32(), which truncates toward zero.
            PolicyKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)).trunc() as i64,
        };
        let better = match (&best, rules.select_policy) {
            (None, _) => true,
            (Some((b, _)), SelectPolicy::Min) => proposed > *b,
            (Some((b, _)), _) => proposed < *b,
        };
        if better {
            best = Some((proposed, policy_text("scaleDown", p.kind, p.value, period)));
        }
    }
    best.unwrap_or((current as i64, "scaleDown has no policy".into()))
}

/// What normalisation did to a recommendation.
struct Normalized {
    desired: u32,
    able: Condition,
    limited: Condition,
    /// Stabilisation that held the recommendation back, as text.
    stabilized_by: Option<String>,
    /// The rule that clamped the count, as text.
    limited_by: Option<String>,
}

fn push_history(history: &mut VecDeque<(i64, u32)>, entry: (i64, u32), keep_after: i64) {
    while history.front().is_some_and(|(t, _)| *t <= keep_after) || history.len() >= MAX_HISTORY {
        history.pop_front();
    }
    history.push_back(entry);
}

/// `normalizeDesiredReplicasWithBehaviors`: stabilise over the windows, then rate-limit and
/// clamp to min/max.
fn normalize_with_behavior(
    state: &mut ScalingState,
    now: i64,
    current: u32,
    prenormalized: u32,
    min: u32,
    max: u32,
    behavior: &Behavior,
) -> Normalized {
    let up_window = behavior.scale_up.stabilization_window.as_std().as_millis() as i64;
    let down_window = behavior.scale_down.stabilization_window.as_std().as_millis() as i64;
    let mut up_rec = prenormalized;
    let mut down_rec = prenormalized;
    for &(t, r) in &state.recommendations {
        if t > now - up_window {
            up_rec = up_rec.min(r);
        }
        if t > now - down_window {
            down_rec = down_rec.max(r);
        }
    }
    let mut stabilized = current;
    if stabilized < up_rec {
        stabilized = up_rec;
    }
    if stabilized > down_rec {
        stabilized = down_rec;
    }
    push_history(
        &mut state.recommendations,
        (now, prenormalized),
        now - up_window.max(down_window),
    );
    let (able, stabilized_by) = if stabilized != prenormalized {
        if prenormalized >= current {
            (
                condition(
                    "AbleToScale",
                    true,
                    "ScaleUpStabilized",
                    "recent recommendations were lower than current one, applying the lowest recent recommendation",
                ),
                Some(format!(
                    "scaleUp stabilization window {} (lowest recent recommendation {stabilized})",
                    secs_text(up_window)
                )),
            )
        } else {
            (
                condition(
                    "AbleToScale",
                    true,
                    "ScaleDownStabilized",
                    "recent recommendations were higher than current one, applying the highest recent recommendation",
                ),
                Some(format!(
                    "scaleDown stabilization window {} (highest recent recommendation {stabilized})",
                    secs_text(down_window)
                )),
            )
        }
    } else {
        (
            condition(
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size",
            ),
            None,
        )
    };

    let within_range = || {
        condition(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        )
    };
    if stabilized > current {
        let (mut limit, policy) = scale_up_limit(state, now, current, &behavior.scale_up);
        if limit < current as i64 {
            limit = current as i64;
        }
        let (allowed, reason, message, by) = if (max as i64) > limit {
            (
                limit as u32,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
                policy,
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
                format!("max_replicas {max}"),
            )
        };
        if stabilized > allowed {
            return Normalized {
                desired: allowed,
                able,
                limited: condition("ScalingLimited", true, reason, message),
                stabilized_by,
                limited_by: Some(by),
            };
        }
    } else if stabilized < current {
        let (mut limit, policy) = scale_down_limit(state, now, current, &behavior.scale_down);
        if limit > current as i64 {
            limit = current as i64;
        }
        let (allowed, reason, message, by) = if (min as i64) < limit {
            (
                limit as u32,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
                policy,
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
                format!("min_replicas {min}"),
            )
        };
        if stabilized < allowed {
            return Normalized {
                desired: allowed,
                able,
                limited: condition("ScalingLimited", true, reason, message),
                stabilized_by,
                limited_by: Some(by),
            };
        }
    }
    Normalized {
        desired: stabilized,
        able,
        limited: within_range(),
        stabilized_by,
        limited_by: None,
    }
}

/// `normalizeDesiredReplicas`: HPA without a `behavior` block.
fn normalize_legacy(
    state: &mut ScalingState,
    now: i64,
    current: u32,
    prenormalized: u32,
    min: u32,
    max: u32,
) -> Normalized {
    let cutoff = now - LEGACY_DOWNSCALE_WINDOW_MS;
    let stabilized = state
        .recommendations
        .iter()
        .filter(|(t, _)| *t >= cutoff)
        .map(|(_, r)| *r)
        .fold(prenormalized, u32::max);
    push_history(&mut state.recommendations, (now, prenormalized), cutoff - 1);
    let (able, stabilized_by) = if stabilized != prenormalized {
        (
            condition(
                "AbleToScale",
                true,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            ),
            Some(format!(
                "downscale stabilization window {} (highest recent recommendation {stabilized})",
                secs_text(LEGACY_DOWNSCALE_WINDOW_MS)
            )),
        )
    } else {
        (
            condition(
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size",
            ),
            None,
        )
    };
    let up_limit = (2 * current).max(4);
    let (max_allowed, reason, message, by) = if max > up_limit {
        (
            up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
            format!("scale-up limit max(2×{current}, 4) = {up_limit} (no behavior block)"),
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
            format!("max_replicas {max}"),
        )
    };
    let (desired, limited, limited_by) = if stabilized < min {
        (
            min,
            condition(
                "ScalingLimited",
                true,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            ),
            Some(format!("min_replicas {min}")),
        )
    } else if stabilized > max_allowed {
        (
            max_allowed,
            condition("ScalingLimited", true, reason, message),
            Some(by),
        )
    } else {
        (
            stabilized,
            condition(
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            ),
            None,
        )
    };
    Normalized {
        desired,
        able,
        limited,
        stabilized_by,
        limited_by,
    }
}

fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if (v - v.round()).abs() < 1e-9 && v.abs() < 1e15 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// `cpu 91% of limit > target 60%`.
fn metric_phrase(m: &MetricStatus, tolerance: f64) -> String {
    if let Some(err) = &m.error {
        if m.consecutive_failures == 0 {
            return format!("{}: {err}", m.name);
        }
        return format!("{} failed ({}× in a row): {err}", m.name, m.consecutive_failures);
    }
    let Some(current) = m.current else {
        return format!("{} has no value", m.name);
    };
    let ratio = m.ratio.unwrap_or(1.0);
    let cmp = if within(ratio, tolerance) {
        "≈"
    } else if ratio > 1.0 {
        ">"
    } else {
        "<"
    };
    let mut s = match (m.target_type, m.basis) {
        ("Utilization", Some(basis)) => format!(
            "{} {}% of {} {cmp} target {}%",
            m.name,
            current.round() as i64,
            basis.as_str(),
            fmt_num(m.target)
        ),
        ("AverageValue", _) => format!(
            "{} {} per replica {cmp} target {}",
            m.name,
            fmt_num(current),
            fmt_num(m.target)
        ),
        _ => format!("{} {} {cmp} target {}", m.name, fmt_num(current), fmt_num(m.target)),
    };
    if m.fallback {
        s.push_str(" (fallback)");
    }
    if let Some(held) = &m.held {
        let _ = write!(s, " ({held})");
    }
    s
}

fn target_of(spec: &MetricSpec) -> (&'static str, f64) {
    match spec {
        MetricSpec::Cpu(t) | MetricSpec::Memory(t) => ("Utilization", t.target_utilization),
        MetricSpec::Promql(t) | MetricSpec::Logql(t) => match t.goal() {
            ExpressionGoal::AverageValue(v) => ("AverageValue", v),
            ExpressionGoal::Value(v) => ("Value", v),
        },
    }
}

/// The samples of a per-replica metric, one per replica that exists. CPU and memory of
/// replicas inside their warm-up count as not ready.
fn samples_of(
    policy: &Policy,
    spec: &MetricSpec,
    set: &ReplicaSet,
    values: &std::collections::HashMap<String, f64>,
    now: i64,
) -> Vec<Sample> {
    let warm_up = policy.warm_up.as_std().as_millis() as i64;
    let applies_warm_up = matches!(spec, MetricSpec::Cpu(_) | MetricSpec::Memory(_));
    set.replicas
        .iter()
        .map(|r| {
            // A ready replica without `ready_since_ms` is taken as warm: its age is unknown.
            let warming = applies_warm_up && warm_up > 0 && r.ready_since_ms.is_some_and(|t| t + warm_up > now);
            if !r.ready || warming {
                Sample::Unready
            } else {
                match values.get(&r.id) {
                    Some(v) if v.is_finite() => Sample::Ready(*v),
                    _ => Sample::Missing,
                }
            }
        })
        .collect()
}

/// Evaluates `policy` once: HPA's `reconcileAutoscaler` with KEDA's scale to zero and
/// fallback. Updates `state` (recommendations, failure counts); the caller reports a change it
/// made with [`record_scale`].
pub fn decide(policy: &Policy, state: &mut ScalingState, inputs: &Inputs<'_>) -> Decision {
    let now = inputs.now_ms;
    let set = inputs.set;
    let current = set.desired;
    let n = policy.metrics.len();
    if state.failures.len() != n {
        state.failures = vec![0; n];
    }

    // Per metric: a proposal or an error.
    let ready_count = set.replicas.iter().filter(|r| r.ready).count() as u32;
    let existing = set.replicas.len() as u32;
    let mut statuses = Vec::with_capacity(n);
    let mut proposals: Vec<Option<u32>> = Vec::with_capacity(n);
    let mut active = false;
    let mut failed = 0usize;
    for (i, spec) in policy.metrics.iter().enumerate() {
        let (target_type, target) = target_of(spec);
        let reading = inputs.readings.get(i);
        let mut basis = None;
        let outcome: Result<Proposal, String> = match reading {
            None => Err("no reading".into()),
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(Reading::PerReplica { values, basis: b })) => {
                basis = Some(*b);
                let samples = samples_of(policy, spec, set, values, now);
                per_replica_proposal(current, &samples, target, policy.tolerance)
            }
            Some(Ok(Reading::Total(v))) => {
                if let Some(activation) = spec.activation()
                    && *v > activation
                {
                    active = true;
                }
                match spec {
                    MetricSpec::Promql(t) | MetricSpec::Logql(t) => Ok(match t.goal() {
                        ExpressionGoal::AverageValue(g) => average_proposal(current, existing, *v, g, policy.tolerance),
                        ExpressionGoal::Value(g) => total_proposal(current, ready_count, *v, g, policy.tolerance),
                    }),
                    MetricSpec::Cpu(_) | MetricSpec::Memory(_) => {
                        Err("a utilisation needs one value per replica, not a total".into())
                    }
                }
            }
        };
        let name = policy.metric_name(i);
        let mut status = MetricStatus {
            name,
            kind: spec.kind(),
            target_type,
            current: None,
            target,
            basis,
            ratio: None,
            proposal: None,
            error: None,
            consecutive_failures: 0,
            fallback: false,
            held: None,
        };
        match outcome {
            Ok(p) => {
                state.failures[i] = 0;
                status.current = Some(p.current);
                status.ratio = Some(p.ratio);
                status.proposal = Some(p.replicas);
                status.held = p.held;
                proposals.push(Some(p.replicas));
            }
            // At zero replicas there is nothing to measure per replica: not a failure.
            Err(e) if current == 0 && set.replicas.is_empty() && spec.activation().is_none() => {
                status.error = Some(e);
                proposals.push(None);
            }
            Err(e) => {
                state.failures[i] = state.failures[i].saturating_add(1);
                status.consecutive_failures = state.failures[i];
                status.error = Some(e);
                match &policy.fallback {
                    Some(fb) if state.failures[i] >= fb.failure_threshold => {
                        status.fallback = true;
                        status.proposal = Some(fb.replicas);
                        proposals.push(Some(fb.replicas));
                    }
                    _ => {
                        failed += 1;
                        proposals.push(None);
                    }
                }
            }
        }
        statuses.push(status);
    }

    let mut decision = Decision {
        time_ms: now,
        service: set.service.clone(),
        from: current,
        to: current,
        metrics: statuses,
        reason: String::new(),
        limited_by: None,
        conditions: Vec::new(),
        dry_run: policy.dry_run,
        applied: false,
        error: None,
    };
    let phrases = |d: &Decision, first: Option<usize>| -> String {
        let mut order: Vec<usize> = (0..d.metrics.len()).collect();
        if let Some(f) = first {
            order.retain(|i| *i != f);
            order.insert(0, f);
        }
        order
            .iter()
            .map(|i| metric_phrase(&d.metrics[*i], policy.tolerance))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let head = |from: u32, to: u32| {
        if from == to {
            format!("{} stays at {from}: ", set.service)
        } else {
            format!("{} {from}→{to}: ", set.service)
        }
    };

    // KEDA: 0 ↔ 1 is decided by the activation thresholds, going to zero only after the cooldown.
    let scale_to_zero = policy.min_replicas == 0;
    if scale_to_zero {
        if active || state.last_active_ms.is_none() {
            state.last_active_ms = Some(now);
        }
        let cooldown = policy.cooldown.as_std().as_millis() as i64;
        let idle_for = now - state.last_active_ms.unwrap_or(now);
        if current == 0 && !active {
            decision.reason = format!(
                "{}no metric above its activation threshold ({})",
                head(0, 0),
                phrases(&decision, None)
            );
            decision.conditions = vec![
                condition(
                    "AbleToScale",
                    true,
                    "ReadyForNewScale",
                    "recommended size matches current size",
                ),
                condition(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaled to zero: waiting for a metric above its activation threshold",
                ),
                condition(
                    "ScalingLimited",
                    false,
                    "DesiredWithinRange",
                    "the desired count is within the acceptable range",
                ),
            ];
            return decision;
        }
        if current > 0 && !active && failed == 0 && idle_for >= cooldown {
            decision.to = 0;
            decision.reason = format!(
                "{}no metric above its activation threshold for {} (cooldown {}): {}",
                head(current, 0),
                secs_text(idle_for),
                secs_text(cooldown),
                phrases(&decision, None)
            );
            decision.conditions = vec![
                condition(
                    "AbleToScale",
                    true,
                    "ReadyForNewScale",
                    "recommended size matches current size",
                ),
                condition(
                    "ScalingActive",
                    true,
                    "ScaleToZero",
                    "no metric is above its activation threshold",
                ),
                condition(
                    "ScalingLimited",
                    false,
                    "DesiredWithinRange",
                    "the desired count is within the acceptable range",
                ),
            ];
            return decision;
        }
    }
    let min = policy.min_replicas.max(1);
    let max = policy.max_replicas;

    if current == 0 && !scale_to_zero {
        decision.reason = format!("{}scaling is disabled while the service has 0 replicas", head(0, 0));
        decision.conditions = vec![
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the autoscaler was able to get the service's replica count",
            ),
            condition(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            ),
        ];
        return decision;
    }
    if current > max || (current < min && current > 0) {
        let to = if current > max { max } else { min };
        decision.to = to;
        let (why, by) = if current > max {
            (
                "current number of replicas above max_replicas",
                format!("max_replicas {max}"),
            )
        } else {
            (
                "current number of replicas below min_replicas",
                format!("min_replicas {min}"),
            )
        };
        decision.reason = format!("{}{why}", head(current, to));
        decision.limited_by = Some(by);
        decision.conditions = vec![
            condition(
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the autoscaler was able to update the target scale to {to}"),
            ),
            condition(
                "ScalingActive",
                true,
                "ValidMetricFound",
                "the replica count is outside min_replicas..max_replicas",
            ),
            condition(
                "ScalingLimited",
                true,
                if current > max {
                    "TooManyReplicas"
                } else {
                    "TooFewReplicas"
                },
                why,
            ),
        ];
        return decision;
    }

    // The largest proposal; HPA takes the first valid one, then any larger.
    let mut best: Option<(u32, usize)> = None;
    for (i, p) in proposals.iter().enumerate() {
        if let Some(p) = p
            && best.is_none_or(|(b, _)| *p > b)
        {
            best = Some((*p, i));
        }
    }
    let all_failed = best.is_none();
    if all_failed || (failed > 0 && best.is_some_and(|(b, _)| b < current)) {
        let first_failed = decision.metrics.iter().position(|m| m.error.is_some() && !m.fallback);
        let (kind, message) = match first_failed.map(|i| &decision.metrics[i]) {
            Some(m) => (
                match m.kind {
                    "cpu" | "memory" => "FailedGetResourceMetric",
                    _ => "FailedGetExternalMetric",
                },
                format!(
                    "the autoscaler was unable to compute the replica count: {}",
                    m.error.clone().unwrap_or_default()
                ),
            ),
            None => ("FailedGetMetric", "no metric could be read".to_string()),
        };
        decision.reason = format!(
            "{}{}; no scale-down while a metric fails",
            head(current, current),
            phrases(&decision, first_failed)
        );
        decision.conditions = vec![
            condition(
                "AbleToScale",
                true,
                "SucceededGetScale",
                "the autoscaler was able to get the service's replica count",
            ),
            condition("ScalingActive", false, kind, message),
        ];
        return decision;
    }
    let (mut prenormalized, winner) = best.unwrap_or((current, 0));
    if current == 0 {
        // Activation from zero: at least one replica whatever the rate limits say (KEDA does
        // 0 → 1 itself, then HPA takes over).
        prenormalized = prenormalized.max(1);
    }
    let active_condition = condition(
        "ScalingActive",
        true,
        "ValidMetricFound",
        format!(
            "the autoscaler was able to successfully calculate a replica count from {}",
            decision.metrics[winner].name
        ),
    );
    let normalized = match &policy.behavior {
        Some(b) => normalize_with_behavior(state, now, current, prenormalized, min, max, b),
        None => normalize_legacy(state, now, current, prenormalized, min, max),
    };
    let mut to = normalized.desired;
    if current == 0 && to == 0 {
        to = 1;
    }
    decision.to = to;
    let mut reason = head(current, to);
    let first = if to >= current { Some(winner) } else { None };
    reason.push_str(&phrases(&decision, first));
    if let Some(s) = &normalized.stabilized_by {
        let _ = write!(reason, "; held by {s}");
    }
    if let Some(by) = &normalized.limited_by {
        let _ = write!(reason, "; limited by {by}");
    }
    decision.reason = reason;
    decision.limited_by = normalized.limited_by.or(normalized.stabilized_by);
    decision.conditions = vec![normalized.able, active_condition, normalized.limited];
    decision
}

/// Records that the count went from `from` to `to` at `now_ms`, for the rate-limiting
/// policies. Call it only once the change was made (HPA's `storeScaleEvent`).
pub fn record_scale(policy: &Policy, state: &mut ScalingState, now_ms: i64, from: u32, to: u32) {
    let Some(behavior) = &policy.behavior else { return };
    let longest = |rules: &ScalingRules| {
        rules
            .policies
            .iter()
            .map(|p| p.period.as_std().as_millis() as i64)
            .max()
            .unwrap_or(0)
    };
    if to > from {
        let keep_after = now_ms - longest(&behavior.scale_up);
        push_history(&mut state.scale_up_events, (now_ms, to - from), keep_after);
    } else if to < from {
        let keep_after = now_ms - longest(&behavior.scale_down);
        push_history(&mut state.scale_down_events, (now_ms, from - to), keep_after);
    }
}

impl ScalingState {
    /// Forgets failure counts when the policy's metrics change (live reload); the
    /// recommendation and event history stays, so a reload does not reset the windows.
    pub fn policy_changed(&mut self) {
        self.failures.clear();
    }
}

#[cfg(test)]
mod tests;
