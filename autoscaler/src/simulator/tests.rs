//! The real algorithm on simulated time: noisy steady load does not flap, and HPA's worked
//! cases hold as time goes on.

use tidewatch_model::Duration;

use super::*;
use crate::policy::{PolicyKind, ScalingPolicy};

fn config(policy: Policy, initial: u32) -> SimConfig {
    SimConfig {
        service: "web".into(),
        policy,
        initial_replicas: initial,
        start_delay_s: 5,
        pipeline: MetricPipeline::tidewatch(),
        noise: 0.0,
        saturation: None,
        seed: 42,
    }
}

#[test]
fn steady_noisy_load_never_reverses_direction_in_ten_minutes() {
    // Load exactly at the target for 4 replicas; every replica's sample is ±20 % off.
    let mut c = config(Policy::cpu(1, 20, 60.0), 4);
    c.noise = 0.2;
    let mut sim = Simulation::new(c.clone(), |_| 4.0 * 60.0);
    sim.run_for(600);
    let report = sim.report();
    assert_eq!(report.reversals, 0, "{:#?}", sim.decisions());
    assert!(sim.ticks().iter().all(|t| t.ready >= 4), "never below the need");

    // The same noise without a scale-down window does flap: the guard above can fail.
    c.policy.behavior.as_mut().unwrap().scale_down.stabilization_window = Duration::from_secs(0);
    let mut sim = Simulation::new(c, |_| 4.0 * 60.0);
    sim.run_for(600);
    assert!(sim.report().reversals > 0);
}

/// Runs a worked case for ten minutes and returns the simulation.
fn hold(initial: u32, per_replica: f64, policy: Policy) -> Simulation {
    let load = initial as f64 * per_replica;
    let mut sim = Simulation::new(config(policy, initial), move |_| load);
    sim.run_for(600);
    sim
}

#[test]
fn basic_up_reaches_six_and_stays() {
    let sim = hold(3, 90.0, Policy::cpu(1, 100, 50.0));
    let steps: Vec<(u32, u32)> = sim.decisions().iter().map(|d| (d.from, d.to)).collect();
    assert_eq!(steps, vec![(3, 6)]);
    assert_eq!(sim.ready(), 6);
}

#[test]
fn within_tolerance_never_moves() {
    let sim = hold(3, 54.0, Policy::cpu(1, 100, 50.0));
    assert!(sim.decisions().is_empty(), "{:#?}", sim.decisions());
    let sim = hold(3, 56.0, Policy::cpu(1, 100, 50.0));
    let steps: Vec<(u32, u32)> = sim.decisions().iter().map(|d| (d.from, d.to)).collect();
    assert_eq!(
        steps,
        vec![(3, 4)],
        "just outside: one step, then 42 each is within tolerance"
    );
}

#[test]
fn down_goes_to_two_and_stays() {
    let sim = hold(5, 20.0, Policy::cpu(1, 100, 50.0));
    let steps: Vec<(u32, u32)> = sim.decisions().iter().map(|d| (d.from, d.to)).collect();
    assert_eq!(steps, vec![(5, 2)]);
}

#[test]
fn down_after_a_busy_period_waits_for_the_window() {
    // Busy (5 × 50) for a minute, then 5 × 20: the scale-down comes 300 s after the last
    // recommendation of 5.
    let mut sim = Simulation::new(config(Policy::cpu(1, 100, 50.0), 5), |t| {
        if t <= 60 { 250.0 } else { 100.0 }
    });
    sim.run_for(600);
    let d = sim.decisions();
    assert!(d.iter().all(|d| d.to < d.from), "only down: {d:#?}");
    let at_s = (d[0].time_ms - EPOCH_MS) / 1000;
    assert!((355..=370).contains(&at_s), "first scale-down at {at_s} s");
    assert_eq!(sim.desired(), 2);
}

#[test]
fn default_up_limit_holds_every_fifteen_seconds() {
    let mut sim = Simulation::new(config(Policy::cpu(1, 1000, 50.0), 3), |_| 100_000.0);
    sim.run_for(120);
    let d = sim.decisions();
    assert_eq!((d[0].from, d[0].to), (3, 7));
    for pair in d.windows(2) {
        assert!(pair[1].time_ms - pair[0].time_ms >= 15_000, "{pair:#?}");
    }
    // In any 15 s the count at most doubles or grows by 4 from where the period began.
    for (i, a) in d.iter().enumerate() {
        let later = d[i..].iter().rfind(|b| b.time_ms < a.time_ms + 15_000).unwrap();
        assert!(later.to <= (a.from * 2).max(a.from + 4), "{a:#?} → {later:#?}");
    }
    assert!(sim.desired() >= 100, "keeps climbing: {}", sim.desired());
}

#[test]
fn scale_down_policies_step_each_minute() {
    let mut policy = Policy::cpu(1, 100, 50.0);
    let down = &mut policy.behavior.as_mut().unwrap().scale_down;
    down.stabilization_window = Duration::from_secs(0);
    down.policies = vec![
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
    let mut sim = Simulation::new(config(policy, 80), |_| 40.0);
    sim.run_for(200);
    let steps: Vec<(u32, u32)> = sim.decisions().iter().map(|d| (d.from, d.to)).collect();
    assert_eq!(&steps[..3], &[(80, 72), (72, 64), (64, 57)]);
    let times: Vec<i64> = sim.decisions().iter().map(|d| d.time_ms).collect();
    assert_eq!(times[1] - times[0], 60_000);
}

#[test]
fn a_load_step_is_served_within_seconds_with_one_second_metrics() {
    // 2 replicas on target, then twice the load: 4 needed. Tidewatch's pipeline and a 5 s
    // start: the added replicas are ready well before HPA's first 15 s sync would even look.
    let mut c = config(Policy::cpu(2, 10, 60.0), 2);
    c.saturation = Some(100.0);
    let mut sim = Simulation::new(c, |t| if t < 300 { 120.0 } else { 240.0 });
    sim.run_for(299);
    let took = sim.run_until(300, |s| s.ready() >= 4).expect("scaled");
    assert!(took <= 15, "took {took} s");
    // The same through metrics-server and a 15 s sync takes longer.
    let mut c = config(Policy::cpu(2, 10, 60.0), 2);
    c.saturation = Some(100.0);
    c.pipeline = MetricPipeline::metrics_server();
    c.policy.interval = Duration::from_secs(15);
    let mut sim = Simulation::new(c, |t| if t < 300 { 120.0 } else { 240.0 });
    sim.run_for(299);
    let hpa = sim.run_until(600, |s| s.ready() >= 4).expect("scaled");
    assert!(hpa > took, "hpa {hpa} s vs {took} s");
}
