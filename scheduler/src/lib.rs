//! The scheduler: service specs, reconciliation on Docker hosts and Swarm, service endpoints.
//!
//! [`Scheduler::open`] connects to the hosts and loads the specs and the persisted desired
//! counts; [`Scheduler::run`] reconciles until shutdown; [`router`] serves `/api/v1/services*`
//! and `/api/v1/events`; the [`Replicas`](tidewatch_model::Replicas) implementation is what the
//! autoscaler drives; [`cli`] holds the `tidewatch services|scale|events` commands.
#![deny(missing_docs)]

mod api;
mod backend;
pub mod cli;
mod config;
mod endpoint;
mod events;
mod health;
mod reconciler;
mod scheduler;
mod spec;
mod state;

pub use crate::api::router;
pub use crate::backend::docker::labels;
pub use crate::config::{HostConfig, PortRange, SchedulerConfig};
pub use crate::events::{Event, EventKind};
pub use crate::scheduler::{EndpointStatus, ReplicaStatus, Scheduler, SchedulerError, ServiceStatus};
pub use crate::spec::{
    BackendKind, HealthCheck, Placement, PortSpec, ResourceAmounts, Resources, RestartPolicy, SecretSpec, ServiceSpec,
    SpecError, Spread, UpdatePolicy, load_services, parse_services,
};
