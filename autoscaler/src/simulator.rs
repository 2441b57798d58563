//! A simulator that drives the real algorithm on simulated time: a load pattern, replicas that
//! become ready a while after they start, and a metric pipeline with its sampling interval,
//! averaging window and delay, so Tidewatch's 1 s pipeline and HPA's metrics-server can be
//! compared on the same load.
//!
//! The metric is the load shared by the ready replicas (`load ÷ ready`, in the policy's unit,
//! capped at `saturation`), with seeded noise per replica and sample. Time advances in whole
//! seconds.

use std::collections::{HashMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tidewatch_model::{Replica, ReplicaSet};

use crate::algorithm::{Decision, Inputs, ScalingState, decide, record_scale};
use crate::metrics::{Basis, MetricError, Reading};
use crate::policy::{ExpressionGoal, MetricSpec, Policy};

/// The simulated clock starts here (ms since the epoch), so timestamps look real.
const EPOCH_MS: i64 = 1_767_225_600_000;

/// How metric values reach the autoscaler.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPipeline {
    /// Seconds between samples (collection interval; HPA: kubelet and metrics-server resolution).
    pub scrape_interval_s: u64,
    /// Seconds a sample averages over (the rate window).
    pub window_s: u64,
    /// Seconds from sampling until the autoscaler can read the sample.
    pub delay_s: u64,
}

impl MetricPipeline {
    /// Tidewatch with 1 s collection: 1 s samples averaged over the default 3 s rate window,
    /// readable 1 s later (shipping batches no older than 1 s).
    pub fn tidewatch() -> Self {
        MetricPipeline {
            scrape_interval_s: 1,
            window_s: 3,
            delay_s: 1,
        }
    }

    /// Kubernetes' pipeline: metrics-server samples every 15 s a CPU rate over cAdvisor's
    /// ~30 s of counters, and the HPA reads it up to 15 s later — values 15–60 s old.
    pub fn metrics_server() -> Self {
        MetricPipeline {
            scrape_interval_s: 15,
            window_s: 30,
            delay_s: 15,
        }
    }
}

/// A simulated service.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The service name in decisions.
    pub service: String,
    /// The policy; its first metric is the one simulated (cpu and memory per replica, promql
    /// and logql as a total).
    pub policy: Policy,
    /// Replicas running and ready at time 0.
    pub initial_replicas: u32,
    /// Seconds from a replica's start until its health check passes.
    pub start_delay_s: u64,
    /// How the metric reaches the autoscaler.
    pub pipeline: MetricPipeline,
    /// Each replica's sample is multiplied by `1 + noise × U(-1, 1)`.
    pub noise: f64,
    /// The most a replica can show (100 for a utilisation of the CPU limit: it is throttled).
    pub saturation: Option<f64>,
    /// The random seed.
    pub seed: u64,
}

/// The state at the end of one simulated second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tick {
    /// Seconds since the start.
    pub t: u64,
    /// The load (in the metric's unit × replicas).
    pub load: f64,
    /// The count the autoscaler asks for.
    pub desired: u32,
    /// Replicas started, ready or not (what costs).
    pub running: u32,
    /// Replicas passing their health check.
    pub ready: u32,
    /// The fewest replicas that keep the load at or below the target (within min/max).
    pub ideal: u32,
}

/// What a run cost and how well it served.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Simulated seconds.
    pub seconds: u64,
    /// Σ running replicas × 1 s.
    pub replica_seconds: f64,
    /// Σ ideal replicas × 1 s.
    pub ideal_replica_seconds: f64,
    /// `replica_seconds ÷ ideal_replica_seconds`.
    pub overprovision_ratio: f64,
    /// Seconds with fewer ready replicas than the ideal (utilisation above the target).
    pub underprovisioned_seconds: u64,
    /// Seconds when the load exceeded what the ready replicas can serve at `saturation`
    /// (throttled: requests queue).
    pub saturated_seconds: u64,
    /// Changes of the replica count.
    pub scale_events: u32,
    /// Changes whose direction differs from the previous change's.
    pub reversals: u32,
}

struct SimReplica {
    id: u64,
    started_s: u64,
    ready_at_s: u64,
}

/// A running simulation.
pub struct Simulation {
    config: SimConfig,
    load: Box<dyn Fn(u64) -> f64>,
    rng: ChaCha8Rng,
    state: ScalingState,
    t: u64,
    next_eval_ms: i64,
    desired: u32,
    replicas: Vec<SimReplica>,
    next_id: u64,
    /// Per second: the value each ready replica showed (before noise), newest last.
    history: VecDeque<(u64, f64)>,
    /// Samples not yet superseded: (sample time, replica id → value).
    samples: VecDeque<(u64, HashMap<String, f64>, f64)>,
    ticks: Vec<Tick>,
    decisions: Vec<Decision>,
    last_direction: i8,
    reversals: u32,
}

impl Simulation {
    /// A simulation of `config` under `load(t)` (t in seconds).
    pub fn new(config: SimConfig, load: impl Fn(u64) -> f64 + 'static) -> Self {
        let replicas = (0..config.initial_replicas as u64)
            .map(|id| SimReplica {
                id,
                started_s: 0,
                ready_at_s: 0,
            })
            .collect();
        Simulation {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            desired: config.initial_replicas,
            next_id: config.initial_replicas as u64,
            replicas,
            config,
            load: Box::new(load),
            state: ScalingState::default(),
            t: 0,
            next_eval_ms: 0,
            history: VecDeque::new(),
            samples: VecDeque::new(),
            ticks: Vec::new(),
            decisions: Vec::new(),
            last_direction: 0,
            reversals: 0,
        }
    }

    /// Seconds simulated so far.
    pub fn now_s(&self) -> u64 {
        self.t
    }

    /// The count the autoscaler asks for now.
    pub fn desired(&self) -> u32 {
        self.desired
    }

    /// Replicas passing their health check now.
    pub fn ready(&self) -> u32 {
        self.replicas.iter().filter(|r| r.ready_at_s <= self.t).count() as u32
    }

    /// Replicas started now.
    pub fn running(&self) -> u32 {
        self.replicas.len() as u32
    }

    /// Every decision that changed the count, oldest first.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// One entry per simulated second.
    pub fn ticks(&self) -> &[Tick] {
        &self.ticks
    }

    /// Runs `seconds` more seconds.
    pub fn run_for(&mut self, seconds: u64) {
        for _ in 0..seconds {
            self.step();
        }
    }

    /// Runs until `done` holds (checked after each second) or `limit` seconds pass; returns
    /// the seconds it took, or `None`.
    pub fn run_until(&mut self, limit: u64, mut done: impl FnMut(&Simulation) -> bool) -> Option<u64> {
        let start = self.t;
        while self.t - start < limit {
            self.step();
            if done(self) {
                return Some(self.t - start);
            }
        }
        None
    }

    fn target_per_replica(&self) -> f64 {
        match self.config.policy.metrics.first() {
            Some(MetricSpec::Cpu(t) | MetricSpec::Memory(t)) => t.target_utilization,
            Some(MetricSpec::Promql(t) | MetricSpec::Logql(t)) => match t.goal() {
                ExpressionGoal::AverageValue(v) => v,
                // A total target has no per-replica ideal; one replica per target's worth.
                ExpressionGoal::Value(v) => v,
            },
            None => 1.0,
        }
    }

    /// Advances one second: readiness, load, sampling, evaluation, accounting.
    pub fn step(&mut self) {
        self.t += 1;
        let t = self.t;
        let load = (self.load)(t).max(0.0);
        let ready = self.ready();
        let mut per_replica = if ready > 0 { load / ready as f64 } else { 0.0 };
        if let Some(cap) = self.config.saturation {
            per_replica = per_replica.min(cap);
        }
        self.history.push_back((t, per_replica));
        let keep = self.config.pipeline.window_s.max(1);
        while self.history.front().is_some_and(|(s, _)| *s + keep <= t) {
            self.history.pop_front();
        }

        let pipeline = self.config.pipeline.clone();
        if t.is_multiple_of(pipeline.scrape_interval_s.max(1)) {
            self.sample(t, load);
        }
        let now_ms = EPOCH_MS + t as i64 * 1000;
        if now_ms - EPOCH_MS >= self.next_eval_ms {
            self.next_eval_ms += self.config.policy.interval.as_std().as_millis().max(1) as i64;
            self.evaluate(now_ms);
        }
        let policy = &self.config.policy;
        let target = self.target_per_replica();
        let ideal = ((load / target).ceil() as u32).clamp(policy.min_replicas.max(1), policy.max_replicas);
        self.ticks.push(Tick {
            t,
            load,
            desired: self.desired,
            running: self.running(),
            ready: self.ready(),
            ideal,
        });
    }

    fn sample(&mut self, t: u64, load: f64) {
        let window = self.config.pipeline.window_s.max(1);
        let mut values = HashMap::new();
        for r in &self.replicas {
            let seen: Vec<f64> = self
                .history
                .iter()
                .filter(|(s, _)| *s + window > t && *s >= r.ready_at_s)
                .map(|(_, v)| *v)
                .collect();
            if r.ready_at_s > t || seen.is_empty() {
                continue;
            }
            let mean = seen.iter().sum::<f64>() / seen.len() as f64;
            let noise = if self.config.noise > 0.0 {
                1.0 + self.config.noise * self.rng.random_range(-1.0..=1.0)
            } else {
                1.0
            };
            values.insert(format!("r{}", r.id), mean * noise);
        }
        self.samples.push_back((t, values, load));
        // Keep only what may still become visible, plus the newest visible one.
        let delay = self.config.pipeline.delay_s;
        while self.samples.len() > 1 && self.samples.get(1).is_some_and(|(s, _, _)| s + delay <= t) {
            self.samples.pop_front();
        }
    }

    fn evaluate(&mut self, now_ms: i64) {
        let t = self.t;
        let delay = self.config.pipeline.delay_s;
        let visible = self.samples.iter().rev().find(|(s, _, _)| s + delay <= t);
        let set = ReplicaSet {
            service: self.config.service.clone(),
            desired: self.desired,
            replicas: self
                .replicas
                .iter()
                .map(|r| Replica {
                    id: format!("r{}", r.id),
                    node: "sim".into(),
                    ready: r.ready_at_s <= t,
                    started_at_ms: EPOCH_MS + r.started_s as i64 * 1000,
                    ready_since_ms: (r.ready_at_s <= t).then_some(EPOCH_MS + r.ready_at_s as i64 * 1000),
                })
                .collect(),
            cpu_reservation_cores: None,
            cpu_limit_cores: Some(1.0),
            memory_reservation_bytes: None,
            memory_limit_bytes: None,
        };
        let readings: Vec<Result<Reading, MetricError>> = self
            .config
            .policy
            .metrics
            .iter()
            .map(|m| match (m, visible) {
                (_, None) => Err(MetricError::Other("no sample yet".into())),
                (MetricSpec::Cpu(_) | MetricSpec::Memory(_), Some((_, values, _))) => Ok(Reading::PerReplica {
                    values: values.clone(),
                    basis: Basis::Limit,
                }),
                (MetricSpec::Promql(_) | MetricSpec::Logql(_), Some((_, _, load))) => Ok(Reading::Total(*load)),
            })
            .collect();
        let decision = decide(
            &self.config.policy,
            &mut self.state,
            &Inputs {
                now_ms,
                set: &set,
                readings: &readings,
            },
        );
        if decision.scales() && !self.config.policy.dry_run {
            record_scale(&self.config.policy, &mut self.state, now_ms, decision.from, decision.to);
            self.apply(decision.to);
            let direction = if decision.to > decision.from { 1 } else { -1 };
            if self.last_direction != 0 && direction != self.last_direction {
                self.reversals += 1;
            }
            self.last_direction = direction;
            self.decisions.push(decision);
        }
    }

    /// The scheduler's part: start replicas (ready after the start delay) or stop them, the
    /// not-ready and newest first.
    fn apply(&mut self, to: u32) {
        self.desired = to;
        let t = self.t;
        while (self.replicas.len() as u32) < to {
            self.replicas.push(SimReplica {
                id: self.next_id,
                started_s: t,
                ready_at_s: t + self.config.start_delay_s,
            });
            self.next_id += 1;
        }
        if (self.replicas.len() as u32) > to {
            self.replicas.sort_by_key(|r| {
                (
                    r.ready_at_s <= t,
                    std::cmp::Reverse(r.started_s),
                    std::cmp::Reverse(r.id),
                )
            });
            let remove = self.replicas.len() - to as usize;
            self.replicas.drain(..remove);
            self.replicas.sort_by_key(|r| r.id);
        }
    }

    /// The figures of the run so far.
    pub fn report(&self) -> Report {
        let replica_seconds: f64 = self.ticks.iter().map(|t| t.running as f64).sum();
        let ideal_replica_seconds: f64 = self.ticks.iter().map(|t| t.ideal as f64).sum();
        Report {
            seconds: self.ticks.len() as u64,
            replica_seconds,
            ideal_replica_seconds,
            overprovision_ratio: if ideal_replica_seconds > 0.0 {
                replica_seconds / ideal_replica_seconds
            } else {
                0.0
            },
            underprovisioned_seconds: self.ticks.iter().filter(|t| t.ready < t.ideal).count() as u64,
            saturated_seconds: match self.config.saturation {
                Some(cap) => self.ticks.iter().filter(|t| t.load > t.ready as f64 * cap).count() as u64,
                None => 0,
            },
            scale_events: self.decisions.len() as u32,
            reversals: self.reversals,
        }
    }
}

#[cfg(test)]
mod tests;
