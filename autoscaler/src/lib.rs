//! The autoscaler: policies attached to services, Kubernetes HPA v2's algorithm with KEDA's
//! scale to zero, one control loop per service, a decision log, and a simulator that drives the
//! real algorithm on simulated time.
//!
//! It reads through [`tidewatch_model::Query`] and acts through [`tidewatch_model::Replicas`];
//! nothing here knows the store or the scheduler.
#![deny(missing_docs)]

mod algorithm;
mod controller;
mod metrics;
mod policy;
mod routes;
mod simulator;

pub use crate::algorithm::{
    Condition, Decision, Inputs, MetricStatus, Proposal, Sample, ScalingState, average_proposal, decide,
    per_replica_proposal, record_scale, total_proposal,
};
pub use crate::controller::{Autoscaler, AutoscalerError, DECISION_LOG_CAPACITY, ServiceStatus};
pub use crate::metrics::{Basis, MetricError, MetricSource, QueryMetrics, Reading, cpu_expr, memory_expr};
pub use crate::policy::{
    Behavior, ExpressionGoal, ExpressionTarget, Fallback, MetricSpec, Policy, PolicyError, PolicyKind, ResourceTarget,
    ScalingPolicy, ScalingRules, SelectPolicy,
};
pub use crate::simulator::{MetricPipeline, Report, SimConfig, Simulation, Tick};
