//! The worked cases of `shared/conformance/autoscaler/hpa-cases.md`, one test each, plus the
//! rules around them.

use std::collections::HashMap;

use tidewatch_model::{Duration, Replica};

use super::*;
use crate::policy::{ExpressionTarget, Fallback, ScalingPolicy};

const T: f64 = 50.0;
const TOL: f64 = 0.1;

fn r(v: f64) -> Sample {
    Sample::Ready(v)
}

fn per(current: u32, samples: &[Sample]) -> u32 {
    per_replica_proposal(current, samples, T, TOL).unwrap().replicas
}

#[test]
fn case_basic_up() {
    assert_eq!(per(3, &[r(90.0), r(90.0), r(90.0)]), 6);
    let p = per_replica_proposal(3, &[r(90.0), r(90.0), r(90.0)], T, TOL).unwrap();
    assert!((p.ratio - 1.8).abs() < 1e-9);
}

#[test]
fn case_within_tolerance() {
    assert_eq!(per(3, &[r(54.0), r(54.0), r(54.0)]), 3);
}

#[test]
fn case_just_outside_tolerance() {
    assert_eq!(per(3, &[r(56.0), r(56.0), r(56.0)]), 4);
}

#[test]
fn case_down() {
    assert_eq!(per(5, &[r(20.0); 5]), 2);
}

#[test]
fn case_missing_on_up_counts_as_zero() {
    assert_eq!(per(4, &[r(100.0), r(100.0), r(100.0), Sample::Missing]), 6);
}

#[test]
fn case_missing_on_down_counts_as_target() {
    assert_eq!(per(4, &[r(10.0), r(10.0), r(10.0), Sample::Missing]), 2);
}

#[test]
fn case_unready_on_up_counts_as_zero() {
    assert_eq!(per(4, &[r(100.0), r(100.0), r(100.0), Sample::Unready]), 6);
}

#[test]
fn case_unready_on_down_is_dropped() {
    assert_eq!(per(4, &[r(10.0), r(10.0), r(10.0), Sample::Unready]), 1);
}

#[test]
fn case_direction_flip_keeps_the_count() {
    assert_eq!(per(4, &[r(60.0), Sample::Missing, Sample::Missing, Sample::Missing]), 4);
    let p = per_replica_proposal(4, &[r(60.0), Sample::Missing, Sample::Missing, Sample::Missing], T, TOL).unwrap();
    assert_eq!(
        p.held.as_deref(),
        Some("held: 3 without a value counted as 0 gives ratio 0.30")
    );
}

#[test]
fn no_ready_value_is_an_error() {
    assert!(per_replica_proposal(2, &[Sample::Missing, Sample::Unready], T, TOL).is_err());
    assert!(per_replica_proposal(2, &[], T, TOL).is_err());
}

#[test]
fn total_target_uses_ready_count_and_from_zero_the_ratio() {
    // ceil(value / target × ready)
    assert_eq!(total_proposal(3, 3, 200.0, 50.0, TOL).replicas, 12);
    assert_eq!(total_proposal(3, 2, 100.0, 50.0, TOL).replicas, 4);
    assert_eq!(total_proposal(3, 3, 52.0, 50.0, TOL).replicas, 3, "within tolerance");
    assert_eq!(
        total_proposal(0, 0, 120.0, 50.0, TOL).replicas,
        3,
        "from zero: ceil(value/target)"
    );
}

#[test]
fn average_value_target_is_value_over_target() {
    assert_eq!(average_proposal(2, 2, 500.0, 100.0, TOL).replicas, 5);
    assert_eq!(
        average_proposal(5, 5, 520.0, 100.0, TOL).replicas,
        5,
        "within tolerance"
    );
    assert_eq!(average_proposal(5, 5, 100.0, 100.0, TOL).replicas, 1);
}

// ---- whole decisions ----

const NOW: i64 = 1_700_000_000_000;

fn replica(id: usize, ready: bool) -> Replica {
    Replica {
        id: format!("r{id}"),
        node: "local".into(),
        ready,
        started_at_ms: 0,
        ready_since_ms: if ready { Some(0) } else { None },
    }
}

fn set(current: u32, replicas: Vec<Replica>) -> ReplicaSet {
    ReplicaSet {
        service: "web".into(),
        desired: current,
        replicas,
        cpu_reservation_cores: None,
        cpu_limit_cores: Some(1.0),
        memory_reservation_bytes: None,
        memory_limit_bytes: None,
    }
}

/// `current` ready replicas, each at `value`.
fn uniform(current: u32, value: f64) -> (ReplicaSet, Vec<Result<Reading, MetricError>>) {
    let s = set(current, (0..current as usize).map(|i| replica(i, true)).collect());
    let values: HashMap<String, f64> = s.replicas.iter().map(|r| (r.id.clone(), value)).collect();
    (
        s,
        vec![Ok(Reading::PerReplica {
            values,
            basis: Basis::Limit,
        })],
    )
}

fn cpu_policy(min: u32, max: u32, target: f64) -> Policy {
    Policy::cpu(min, max, target)
}

fn run(
    policy: &Policy,
    state: &mut ScalingState,
    now: i64,
    s: &ReplicaSet,
    readings: &[Result<Reading, MetricError>],
) -> Decision {
    let d = decide(
        policy,
        state,
        &Inputs {
            now_ms: now,
            set: s,
            readings,
        },
    );
    record_scale(policy, state, now, d.from, d.to);
    d
}

#[test]
fn worked_cases_hold_as_whole_decisions() {
    // Fresh state: no history, so no stabilisation from the past.
    for (current, value, want) in [(3, 90.0, 6), (3, 54.0, 3), (3, 56.0, 4), (5, 20.0, 2)] {
        let (s, readings) = uniform(current, value);
        let d = run(&cpu_policy(1, 100, T), &mut ScalingState::default(), NOW, &s, &readings);
        assert_eq!(d.to, want, "{current} replicas at {value}: {}", d.reason);
    }
}

#[test]
fn case_default_up_limit() {
    for (current, want) in [(3, 7), (10, 20), (1, 5)] {
        let (s, readings) = uniform(current, 5000.0);
        let d = run(
            &cpu_policy(1, 1000, T),
            &mut ScalingState::default(),
            NOW,
            &s,
            &readings,
        );
        assert_eq!(d.to, want, "from {current}: {}", d.reason);
        assert!(
            d.limited_by.as_deref().unwrap().starts_with("scaleUp policy"),
            "{:?}",
            d.limited_by
        );
        let limited = d.conditions.iter().find(|c| c.kind == "ScalingLimited").unwrap();
        assert_eq!((limited.status, limited.reason), ("True", "ScaleUpLimit"));
    }
    // Within the same 15 s period nothing more is allowed; after it, the next step.
    let policy = cpu_policy(1, 1000, T);
    let mut state = ScalingState::default();
    let (s, readings) = uniform(3, 5000.0);
    assert_eq!(run(&policy, &mut state, NOW, &s, &readings).to, 7);
    let (s, readings) = uniform(7, 5000.0);
    assert_eq!(run(&policy, &mut state, NOW + 10_000, &s, &readings).to, 7);
    assert_eq!(run(&policy, &mut state, NOW + 15_000, &s, &readings).to, 14);
}

#[test]
fn case_scale_down_policies_pods_and_percent_select_max() {
    let mut policy = cpu_policy(1, 100, T);
    let b = policy.behavior.as_mut().unwrap();
    b.scale_down.policies = vec![
        ScalingPolicy {
            kind: PolicyKind::Pods,
            value: 4,
            period: Duration::from_secs(60),
        },
        ScalingPolicy {
            kind: PolicyKind::Percent,
            value: 10,
            period: Duration::from_secs(60),
        },
    ];
    b.scale_down.select_policy = SelectPolicy::Max;
    let mut state = ScalingState::default();
    let (s, readings) = uniform(80, 1.0);
    let d = run(&policy, &mut state, NOW, &s, &readings);
    assert_eq!(d.to, 72, "{}", d.reason);
    assert_eq!(d.limited_by.as_deref(), Some("scaleDown policy Percent 10/1m"));
    let (s, readings) = uniform(72, 1.0);
    assert_eq!(
        run(&policy, &mut state, NOW + 30_000, &s, &readings).to,
        72,
        "same period"
    );
    assert_eq!(
        run(&policy, &mut state, NOW + 60_000, &s, &readings).to,
        64,
        "next period"
    );
    // At 30, 4 pods is the larger change.
    let mut state = ScalingState::default();
    let (s, readings) = uniform(30, 1.0);
    let d = run(&policy, &mut state, NOW, &s, &readings);
    assert_eq!(d.to, 26);
    assert_eq!(d.limited_by.as_deref(), Some("scaleDown policy Pods 4/1m"));
}

#[test]
fn select_min_and_disabled() {
    let mut policy = cpu_policy(1, 1000, T);
    policy.behavior.as_mut().unwrap().scale_up.select_policy = SelectPolicy::Min;
    let (s, readings) = uniform(10, 5000.0);
    // Min of (10 + 4, 20) = 14.
    assert_eq!(run(&policy, &mut ScalingState::default(), NOW, &s, &readings).to, 14);
    policy.behavior.as_mut().unwrap().scale_up.select_policy = SelectPolicy::Disabled;
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 10);
    assert_eq!(d.limited_by.as_deref(), Some("scaleUp select_policy Disabled"));
    policy.behavior.as_mut().unwrap().scale_down.select_policy = SelectPolicy::Disabled;
    let (s, readings) = uniform(10, 1.0);
    let mut policy_no_window = policy.clone();
    policy_no_window
        .behavior
        .as_mut()
        .unwrap()
        .scale_down
        .stabilization_window = Duration::from_secs(0);
    assert_eq!(
        run(&policy_no_window, &mut ScalingState::default(), NOW, &s, &readings).to,
        10
    );
}

#[test]
fn without_behavior_one_step_goes_at_most_to_twice_or_four() {
    let mut policy = cpu_policy(1, 1000, T);
    policy.behavior = None;
    for (current, want) in [(3, 6), (1, 4), (10, 20)] {
        let (s, readings) = uniform(current, 5000.0);
        let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
        assert_eq!(d.to, want, "from {current}");
    }
    // And scale-down keeps the highest recommendation of the last 300 s.
    let mut state = ScalingState::default();
    let (s, readings) = uniform(4, 50.0);
    assert_eq!(run(&policy, &mut state, NOW, &s, &readings).to, 4);
    let (s, readings) = uniform(4, 10.0);
    let d = run(&policy, &mut state, NOW + 60_000, &s, &readings);
    assert_eq!(d.to, 4, "{}", d.reason);
    assert!(d.reason.contains("stabilization"), "{}", d.reason);
    assert_eq!(run(&policy, &mut state, NOW + 301_000, &s, &readings).to, 1);
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let policy = cpu_policy(1, 100, T);
    let mut state = ScalingState::default();
    let (s, readings) = uniform(5, 50.0);
    assert_eq!(run(&policy, &mut state, NOW, &s, &readings).to, 5);
    let (s, readings) = uniform(5, 20.0);
    let d = run(&policy, &mut state, NOW + 1_000, &s, &readings);
    assert_eq!(d.to, 5);
    assert_eq!(d.conditions[0].reason, "ScaleDownStabilized");
    assert!(
        d.reason
            .contains("held by scaleDown stabilization window 5m (highest recent recommendation 5)"),
        "{}",
        d.reason
    );
    assert_eq!(run(&policy, &mut state, NOW + 299_000, &s, &readings).to, 5);
    assert_eq!(
        run(&policy, &mut state, NOW + 300_000, &s, &readings).to,
        2,
        "t=0 left the window"
    );
}

#[test]
fn scale_up_stabilization_takes_the_lowest_recent_recommendation() {
    let mut policy = cpu_policy(1, 100, T);
    policy.behavior.as_mut().unwrap().scale_up.stabilization_window = Duration::from_secs(60);
    let mut state = ScalingState::default();
    let (s, readings) = uniform(3, 50.0);
    assert_eq!(run(&policy, &mut state, NOW, &s, &readings).to, 3);
    let (s, readings) = uniform(3, 90.0);
    let d = run(&policy, &mut state, NOW + 1_000, &s, &readings);
    assert_eq!(d.to, 3);
    assert_eq!(d.conditions[0].reason, "ScaleUpStabilized");
    assert_eq!(run(&policy, &mut state, NOW + 61_000, &s, &readings).to, 6);
}

#[test]
fn max_over_metrics_and_no_scale_down_while_a_metric_fails() {
    let mut policy = cpu_policy(1, 100, T);
    policy.metrics.push(MetricSpec::Promql(ExpressionTarget {
        name: Some("rps".into()),
        expr: "sum(rate(x[1m]))".into(),
        average_value: Some(100.0),
        value: None,
        activation: 0.0,
    }));
    // cpu says 6, rps says 8 → 8.
    let (s, mut readings) = uniform(3, 90.0);
    readings.push(Ok(Reading::Total(800.0)));
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 7, "8 limited to 3+4 by the Pods policy: {}", d.reason);
    assert!(
        d.reason
            .starts_with("web 3→7: rps 266.7 per replica > target 100, cpu 90% of limit > target 50%"),
        "{}",
        d.reason
    );
    // rps fails and cpu says down: stay.
    let (s, mut readings) = uniform(5, 20.0);
    readings.push(Err(MetricError::Other("store unavailable".into())));
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 5, "{}", d.reason);
    assert!(d.reason.contains("no scale-down while a metric fails"), "{}", d.reason);
    let active = d.conditions.iter().find(|c| c.kind == "ScalingActive").unwrap();
    assert_eq!((active.status, active.reason), ("False", "FailedGetExternalMetric"));
    // rps fails and cpu says up: go up.
    let (s, mut readings) = uniform(3, 90.0);
    readings.push(Err(MetricError::Other("store unavailable".into())));
    assert_eq!(run(&policy, &mut ScalingState::default(), NOW, &s, &readings).to, 6);
    // Everything fails: stay.
    let s = set(3, (0..3).map(|i| replica(i, true)).collect());
    let readings = vec![Err(MetricError::Other("a".into())), Err(MetricError::Other("b".into()))];
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 3);
    assert_eq!(d.conditions[1].reason, "FailedGetResourceMetric");
}

#[test]
fn reason_reads_like_the_issue_example() {
    let mut policy = cpu_policy(1, 10, 60.0);
    policy.behavior.as_mut().unwrap().scale_up.policies = vec![ScalingPolicy {
        kind: PolicyKind::Pods,
        value: 2,
        period: Duration::from_secs(15),
    }];
    let (s, readings) = uniform(2, 91.0);
    let mut st = ScalingState::default();
    // 2 × 1.52 → 4 without limit; add a third replica's worth to hit the limit.
    let (s3, r3) = uniform(2, 200.0);
    let d = run(&policy, &mut st, NOW, &s3, &r3);
    assert_eq!(
        d.reason,
        "web 2→4: cpu 200% of limit > target 60%; limited by scaleUp policy Pods 2/15s"
    );
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.reason, "web 2→4: cpu 91% of limit > target 60%");
    assert_eq!(d.limited_by, None);
}

#[test]
fn min_and_max_clamp_with_conditions() {
    let policy = cpu_policy(2, 4, T);
    let (s, readings) = uniform(3, 500.0);
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 4);
    assert_eq!(d.limited_by.as_deref(), Some("max_replicas 4"));
    assert_eq!(d.conditions[2].reason, "TooManyReplicas");
    let mut p = policy.clone();
    p.behavior.as_mut().unwrap().scale_down.stabilization_window = Duration::from_secs(0);
    let (s, readings) = uniform(3, 1.0);
    let d = run(&p, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 2);
    assert_eq!(d.conditions[2].reason, "TooFewReplicas");
    // Outside the range already: straight back in, no metric needed.
    let (s, readings) = uniform(6, 50.0);
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 4);
    assert!(d.reason.contains("above max_replicas"), "{}", d.reason);
}

#[test]
fn zero_replicas_without_scale_to_zero_disables_scaling() {
    let policy = cpu_policy(1, 4, T);
    let s = set(0, vec![]);
    let readings = vec![Err(MetricError::Other("no replicas".into()))];
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(d.to, 0);
    assert_eq!(d.conditions[1].reason, "ScalingDisabled");
}

#[test]
fn warm_up_counts_new_replicas_as_not_ready() {
    let mut policy = cpu_policy(1, 100, T);
    policy.warm_up = Duration::from_secs(30);
    policy.behavior.as_mut().unwrap().scale_down.stabilization_window = Duration::from_secs(0);
    // Three warm replicas at 10 and one that became ready 5 s ago with a start-up burst.
    let mut s = set(4, (0..4).map(|i| replica(i, true)).collect());
    s.replicas[3].ready_since_ms = Some(NOW - 5_000);
    let mut values: HashMap<String, f64> = (0..3).map(|i| (format!("r{i}"), 10.0)).collect();
    values.insert("r3".into(), 400.0);
    let readings = vec![Ok(Reading::PerReplica {
        values,
        basis: Basis::Limit,
    })];
    let d = run(&policy, &mut ScalingState::default(), NOW, &s, &readings);
    assert_eq!(
        d.to, 1,
        "the burst is ignored and the warming replica dropped: {}",
        d.reason
    );
    // After the warm-up, the replica's value counts.
    let d = run(&policy, &mut ScalingState::default(), NOW + 30_000, &s, &readings);
    assert_eq!(d.metrics[0].current, Some(107.5));
    assert_eq!(d.to, 8, "ceil(2.15 × 4) = 9, limited to 4 + 4: {}", d.reason);
}

fn keda_policy() -> Policy {
    let mut p = cpu_policy(0, 10, T);
    p.metrics = vec![MetricSpec::Promql(ExpressionTarget {
        name: Some("queue".into()),
        expr: "sum(queue_length)".into(),
        average_value: Some(10.0),
        value: None,
        activation: 5.0,
    })];
    p.cooldown = Duration::from_secs(60);
    p
}

#[test]
fn scale_to_zero_with_activation_and_cooldown() {
    let policy = keda_policy();
    policy.validate().unwrap();
    let mut state = ScalingState::default();
    let zero = set(0, vec![]);
    // At zero, 5 is not above the threshold 5 (strict).
    let d = run(&policy, &mut state, NOW, &zero, &[Ok(Reading::Total(5.0))]);
    assert_eq!(d.to, 0, "{}", d.reason);
    // 6 activates: from zero, ceil(6 / 10) = 1.
    let d = run(&policy, &mut state, NOW + 1_000, &zero, &[Ok(Reading::Total(6.0))]);
    assert_eq!(d.to, 1, "{}", d.reason);
    // 35 with one replica: ceil(35 / 10) = 4.
    let one = set(1, vec![replica(0, true)]);
    assert_eq!(
        run(&policy, &mut state, NOW + 2_000, &one, &[Ok(Reading::Total(35.0))]).to,
        4
    );
    // Idle: stays at min 1 through the stabilisation, goes to zero only after the cooldown.
    let four = set(4, (0..4).map(|i| replica(i, true)).collect());
    let d = run(&policy, &mut state, NOW + 30_000, &four, &[Ok(Reading::Total(0.0))]);
    assert_eq!(d.to, 4, "stabilised: {}", d.reason);
    let d = run(&policy, &mut state, NOW + 62_000, &four, &[Ok(Reading::Total(0.0))]);
    assert_eq!(d.to, 0, "{}", d.reason);
    assert!(d.reason.contains("cooldown 1m"), "{}", d.reason);
    // A failing metric never scales to zero.
    let mut state = ScalingState::default();
    let _ = run(&policy, &mut state, NOW, &four, &[Ok(Reading::Total(0.0))]);
    let d = run(
        &policy,
        &mut state,
        NOW + 120_000,
        &four,
        &[Err(MetricError::Other("down".into()))],
    );
    assert_eq!(d.to, 4, "{}", d.reason);
}

#[test]
fn fallback_after_consecutive_failures() {
    let mut policy = keda_policy();
    policy.min_replicas = 1;
    policy.fallback = Some(Fallback {
        failure_threshold: 3,
        replicas: 6,
    });
    let mut state = ScalingState::default();
    let two = set(2, vec![replica(0, true), replica(1, true)]);
    let fail = [Err(MetricError::Other("timeout".into()))];
    assert_eq!(run(&policy, &mut state, NOW, &two, &fail).to, 2);
    assert_eq!(run(&policy, &mut state, NOW + 1_000, &two, &fail).to, 2);
    let d = run(&policy, &mut state, NOW + 2_000, &two, &fail);
    assert_eq!(d.to, 6, "{}", d.reason);
    assert!(d.metrics[0].fallback);
    assert_eq!(d.metrics[0].consecutive_failures, 3);
    // One good reading resets the count.
    let six = set(6, (0..6).map(|i| replica(i, true)).collect());
    let d = run(&policy, &mut state, NOW + 3_000, &six, &[Ok(Reading::Total(60.0))]);
    assert_eq!(d.metrics[0].consecutive_failures, 0);
    assert_eq!(d.to, 6);
}

#[test]
fn history_is_bounded() {
    let mut policy = cpu_policy(1, 100, T);
    policy.behavior.as_mut().unwrap().scale_down.stabilization_window = Duration::from_secs(10);
    let mut state = ScalingState::default();
    let (s, readings) = uniform(3, 50.0);
    for i in 0..1000 {
        run(&policy, &mut state, NOW + i * 1000, &s, &readings);
    }
    assert!(state.recommendations.len() <= 11, "{}", state.recommendations.len());
}

#[test]
fn cpu_at_zero_replicas_is_no_failure_and_activation_wakes_the_service() {
    let mut policy = keda_policy();
    policy.metrics.insert(
        0,
        MetricSpec::Cpu(crate::policy::ResourceTarget {
            target_utilization: 60.0,
        }),
    );
    policy.fallback = Some(Fallback {
        failure_threshold: 1,
        replicas: 5,
    });
    policy.validate().unwrap();
    let mut state = ScalingState::default();
    let zero = set(0, vec![]);
    let empty = || {
        Ok(Reading::PerReplica {
            values: HashMap::new(),
            basis: Basis::Limit,
        })
    };
    for i in 0..3 {
        let d = run(
            &policy,
            &mut state,
            NOW + i * 1000,
            &zero,
            &[empty(), Ok(Reading::Total(0.0))],
        );
        assert_eq!(d.to, 0, "no fallback: cpu at zero is not failing: {}", d.reason);
        assert_eq!(d.metrics[0].consecutive_failures, 0);
    }
    let d = run(
        &policy,
        &mut state,
        NOW + 5_000,
        &zero,
        &[empty(), Ok(Reading::Total(25.0))],
    );
    assert_eq!(d.to, 3, "ceil(25 / 10): {}", d.reason);
}
