//! The interface between the autoscaler and the scheduler.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One running (or starting) replica of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    /// The backend's id for it (a container id or a Swarm task id).
    pub id: String,
    /// The node it runs on.
    pub node: String,
    /// Whether its health check passes now.
    pub ready: bool,
    /// When it was started, in milliseconds since the epoch.
    pub started_at_ms: i64,
    /// When it last became ready, if it is ready (the autoscaler's warm-up is counted from here,
    /// as HPA counts from the pod's Ready transition).
    pub ready_since_ms: Option<i64>,
}

/// What a service should have and what it has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSet {
    /// The service name.
    pub service: String,
    /// The number of replicas the scheduler is asked to run.
    pub desired: u32,
    /// The replicas that exist now, ready or not.
    pub replicas: Vec<Replica>,
    /// CPU reserved per replica, in cores (HPA's "request").
    pub cpu_reservation_cores: Option<f64>,
    /// CPU limit per replica, in cores.
    pub cpu_limit_cores: Option<f64>,
    /// Memory reserved per replica, in bytes.
    pub memory_reservation_bytes: Option<u64>,
    /// Memory limit per replica, in bytes.
    pub memory_limit_bytes: Option<u64>,
}

/// Why the scheduler could not answer or act.
#[derive(Debug, thiserror::Error)]
pub enum ReplicasError {
    /// No service of that name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// The backend (Docker, Swarm) failed; worth retrying.
    #[error("backend error: {0}")]
    Backend(String),
}

/// Reads a service's replicas and sets how many it should have.
#[async_trait]
pub trait Replicas: Send + Sync {
    /// The service's desired count and its replicas now.
    async fn replicas(&self, service: &str) -> Result<ReplicaSet, ReplicasError>;

    /// Asks for `desired` replicas. Returns once the new count is persisted, not once the
    /// replicas are running: the scheduler converges in the background.
    async fn set_desired(&self, service: &str, desired: u32) -> Result<(), ReplicasError>;
}
