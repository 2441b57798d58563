//! Over-provisioning and reaction time: Tidewatch's default policy (1 s evaluation, 1 s
//! metrics) against an HPA-default policy (15 s sync, metrics-server's 15–60 s old values),
//! both through the same simulator and the same real algorithm.
//!
//! `cargo run -p tidewatch-autoscaler --example overprovision [-- --seed N]`
//! (the figures are simulated time: the build profile does not change them).

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewatch_autoscaler::{MetricPipeline, Policy, Report, SimConfig, Simulation};
use tidewatch_model::Duration;

/// Target utilisation of the CPU limit.
const TARGET: f64 = 60.0;
/// A compressed day: 24 h of traffic shape in 4 h.
const DAY_S: u64 = 4 * 3600;
/// Two compressed days.
const RUN_S: u64 = 2 * DAY_S;
const MIN: u32 = 2;
const MAX: u32 = 30;
/// Container start until its health check passes, the same for both (`--start-delay N`).
static START_DELAY_S: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(5);

fn start_delay_s() -> u64 {
    START_DELAY_S.load(std::sync::atomic::Ordering::Relaxed)
}

fn arg(name: &str) -> Option<u64> {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|s| s.parse().ok())
}

/// A recorded-style pattern: a daily cycle from 2 to 10 replicas' worth, bursts of 1.5–3× for
/// 2–8 minutes about every 20 minutes, and ±5 % second-to-second jitter; all seeded.
fn load_pattern(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut spikes = Vec::new();
    let mut t = 0.0;
    loop {
        // Exponential gaps with a 20 minute mean.
        t += -1200.0 * (1.0 - rng.random::<f64>()).ln();
        if t >= RUN_S as f64 {
            break;
        }
        let factor = rng.random_range(1.5..3.0);
        let length = rng.random_range(120.0..480.0);
        spikes.push((t, length, factor));
    }
    (0..=RUN_S)
        .map(|s| {
            let s = s as f64;
            let phase = (s % DAY_S as f64) / DAY_S as f64;
            let daily = 2.0 + 8.0 * (1.0 - (2.0 * PI * phase).cos()) / 2.0;
            let mut factor: f64 = 1.0;
            for &(start, length, f) in &spikes {
                if s >= start && s < start + length {
                    // 10 s ramp up, 30 s ramp down.
                    let up = ((s - start) / 10.0).min(1.0);
                    let down = ((start + length - s) / 30.0).min(1.0);
                    factor = factor.max(1.0 + (f - 1.0) * up.min(down));
                }
            }
            let jitter = 1.0 + 0.05 * rng.random_range(-1.0..=1.0);
            TARGET * daily * factor * jitter
        })
        .collect()
}

fn tidewatch() -> (Policy, MetricPipeline) {
    (Policy::cpu(MIN, MAX, TARGET), MetricPipeline::tidewatch())
}

fn hpa() -> (Policy, MetricPipeline) {
    let mut p = Policy::cpu(MIN, MAX, TARGET);
    p.interval = Duration::from_secs(15);
    // HPA ignores a new pod's CPU until one full metric window after it became ready.
    p.warm_up = Duration::from_secs(30);
    (p, MetricPipeline::metrics_server())
}

/// Tidewatch's default policy with a 60 s scale-down window instead of HPA's 300 s.
fn tidewatch_short_window() -> (Policy, MetricPipeline) {
    let (mut p, m) = tidewatch();
    if let Some(b) = p.behavior.as_mut() {
        b.scale_down.stabilization_window = Duration::from_secs(60);
    }
    (p, m)
}

fn config((policy, pipeline): (Policy, MetricPipeline), initial: u32, seed: u64) -> SimConfig {
    SimConfig {
        service: "web".into(),
        policy,
        initial_replicas: initial,
        start_delay_s: start_delay_s(),
        pipeline,
        noise: 0.05,
        saturation: Some(100.0),
        seed,
    }
}

fn pattern_run(setup: (Policy, MetricPipeline), seed: u64) -> Report {
    let load = load_pattern(seed);
    let mut sim = Simulation::new(config(setup, MIN, seed), move |t| {
        load[(t as usize).min(load.len() - 1)]
    });
    sim.run_for(RUN_S);
    sim.report()
}

/// Seconds from a step of 2 → 4 replicas' worth of load until the autoscaler asks for 4, and
/// until 4 replicas are ready, for the step at each of 15 offsets (HPA's sync phase matters)
/// and 4 seeds.
fn reaction_times(setup: fn() -> (Policy, MetricPipeline)) -> (Vec<u64>, Vec<u64>) {
    let (mut decided, mut ready) = (Vec::new(), Vec::new());
    for seed in 0..4 {
        for offset in 0..15 {
            let step_at = 600 + offset;
            let mut sim = Simulation::new(config(setup(), 2, seed), move |t| {
                if t < step_at { 2.0 * TARGET } else { 4.0 * TARGET }
            });
            sim.run_for(step_at - 1);
            let Some(d) = sim.run_until(900, |s| s.desired() >= 4) else {
                continue;
            };
            let Some(r) = sim.run_until(900, |s| s.ready() >= 4) else {
                continue;
            };
            decided.push(d);
            ready.push(d + r);
        }
    }
    decided.sort_unstable();
    ready.sort_unstable();
    (decided, ready)
}

fn summary(times: &[u64]) -> (f64, f64, u64, u64) {
    let mean = times.iter().sum::<u64>() as f64 / times.len().max(1) as f64;
    let median = times.get(times.len() / 2).copied().unwrap_or(0) as f64;
    let min = times.first().copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(0);
    (median, mean, min, max)
}

fn main() {
    let seed = arg("--seed").unwrap_or(7);
    if let Some(delay) = arg("--start-delay") {
        START_DELAY_S.store(delay, std::sync::atomic::Ordering::Relaxed);
    }
    println!(
        "Load pattern: seed {seed}, {RUN_S} s (two 4 h compressed days: cycle 2→10 replicas' worth, bursts 1.5–3× for 2–8 min about every 20 min, ±5 % jitter), metric noise ±5 %, start delay {} s, target {TARGET}% of the CPU limit, min {MIN}, max {MAX}.",
        start_delay_s()
    );
    println!();
    let tw = pattern_run(tidewatch(), seed);
    let hp = pattern_run(hpa(), seed);
    let short = pattern_run(tidewatch_short_window(), seed);
    println!(
        "| policy | replica-s used | ideal replica-s | used ÷ ideal | s below target | s saturated | scale events | reversals |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, r) in [
        ("Tidewatch default (1 s eval, 1 s metrics)", &tw),
        ("HPA default (15 s sync, metrics-server)", &hp),
        ("Tidewatch, scale-down window 60 s", &short),
    ] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} |",
            r.replica_seconds,
            r.ideal_replica_seconds,
            r.overprovision_ratio,
            r.underprovisioned_seconds,
            r.saturated_seconds,
            r.scale_events,
            r.reversals
        );
    }
    println!();
    println!(
        "Ratios Tidewatch default ÷ HPA default: used ÷ ideal {:.3}, seconds below target {:.3}, seconds saturated {:.3}",
        tw.overprovision_ratio / hp.overprovision_ratio,
        tw.underprovisioned_seconds as f64 / hp.underprovisioned_seconds.max(1) as f64,
        tw.saturated_seconds as f64 / hp.saturated_seconds.max(1) as f64
    );
    println!();
    println!(
        "Reaction to a load step from 2 to 4 replicas' worth (60 runs: 15 step phases × 4 seeds; start delay {} s):",
        start_delay_s()
    );
    println!();
    println!("| policy | measure | median s | mean s | min s | max s |");
    println!("|---|---|---|---|---|---|");
    let (td, tr) = reaction_times(tidewatch);
    let (hd, hr) = reaction_times(hpa);
    for (name, what, times) in [
        ("Tidewatch default", "step → asks for 4", &td),
        ("Tidewatch default", "step → 4 ready", &tr),
        ("HPA default", "step → asks for 4", &hd),
        ("HPA default", "step → 4 ready", &hr),
    ] {
        let (m, mean, min, max) = summary(times);
        println!("| {name} | {what} | {m} | {mean:.1} | {min} | {max} |");
    }
    println!();
    println!(
        "Ratio HPA ÷ Tidewatch (median, step → 4 ready): {:.1}×",
        summary(&hr).0 / summary(&tr).0.max(1.0)
    );
}
