//! The scheduler: the specs, the persisted desired counts, what the reconciler observed, and the
//! `Replicas` interface the autoscaler drives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use tidewatch_model::{Appender, Replica, ReplicaSet, Replicas, ReplicasError};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::backend::docker::{Container, ContainerState, DockerError, DockerHost};
use crate::backend::swarm::SwarmStatus;
use crate::config::SchedulerConfig;
use crate::endpoint::Endpoint;
use crate::events::{EventKind, Events};
use crate::health::Health;
use crate::spec::{BackendKind, MAX_REPLICAS, ServiceSpec, SpecError, load_services};
use crate::state::{DesiredEntry, State, StateError, StateFile};

/// The scheduler could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A Docker host failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A host name appears twice.
    #[error("scheduler.hosts: host {0:?} is listed twice")]
    DuplicateHost(String),
    /// A spec's placement names no configured host.
    #[error("service {service:?}: placement.hosts: {host:?} is not one of scheduler.hosts")]
    UnknownHost {
        /// The service.
        service: String,
        /// The unknown name.
        host: String,
    },
    /// No service of that name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// More replicas than allowed.
    #[error("replicas: {0} is above the limit of {MAX_REPLICAS}")]
    TooMany(u32),
}

/// A replica the reconciler knows about.
pub(crate) struct Tracked {
    pub container: Container,
    pub health: Arc<Health>,
    pub check: Option<JoinHandle<()>>,
    pub started_at_ms: i64,
    pub exit_code: Option<i64>,
    /// Exit handled (event emitted, crash counted).
    pub exit_seen: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(check) = &self.check {
            check.abort();
        }
    }
}

/// A container being created: counted as present until the reconciler's next listing shows it.
pub(crate) struct Pending {
    pub id: u64,
    pub service: String,
    pub replica: u32,
    pub spec_hash: String,
    pub host: String,
    pub done: bool,
}

/// Crash back-off of one replica index.
pub(crate) struct Backoff {
    pub crashes: u32,
    pub not_before: Instant,
}

/// Everything the reconciler and the API share. A std mutex: no await happens while it is held.
pub(crate) struct Inner {
    pub specs: BTreeMap<String, Arc<ServiceSpec>>,
    pub hashes: BTreeMap<String, String>,
    pub state: State,
    pub tracked: HashMap<String, Tracked>,
    pub pending: Vec<Pending>,
    /// Containers being drained or removed, and whether that finished.
    pub removing: HashMap<String, bool>,
    pub endpoints: HashMap<(String, u16), Arc<Endpoint>>,
    pub backoff: HashMap<(String, u32), Backoff>,
    pub rolling: HashSet<String>,
    pub swarm: HashMap<String, SwarmStatus>,
    /// Endpoints that could not listen (reported once).
    pub endpoint_errors: HashSet<(String, u16)>,
    /// The listing succeeded at least once: until then `replicas()` would answer from nothing.
    pub observed: bool,
}

impl Inner {
    /// The count a service converges to: the last `scale` unless the spec changed since.
    pub fn desired(&self, spec: &ServiceSpec) -> u32 {
        match self.state.services.get(&spec.name) {
            Some(entry) if entry.spec_replicas == spec.replicas => entry.desired,
            _ => spec.replicas,
        }
    }
}

/// The bundled scheduler. Create it with [`Scheduler::open`], run [`Scheduler::run`] in a task.
pub struct Scheduler {
    pub(crate) config: SchedulerConfig,
    pub(crate) hosts: Vec<DockerHost>,
    state_file: StateFile,
    pub(crate) inner: Mutex<Inner>,
    /// Serializes state writes so two `set_desired` calls cannot persist out of order.
    persist: tokio::sync::Mutex<()>,
    pub(crate) wake: Notify,
    pub(crate) events: Events,
    /// Background tasks (creates, drains) to abort when the scheduler stops.
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One service as `/api/v1/services` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    /// Its name.
    pub name: String,
    /// docker or swarm.
    pub backend: String,
    /// Its image.
    pub image: String,
    /// The current spec's hash.
    pub spec_hash: String,
    /// The count it converges to.
    pub desired: u32,
    /// Replicas running (any spec).
    pub running: usize,
    /// Replicas ready.
    pub ready: usize,
    /// Whether replicas of an older spec remain.
    pub rolling: bool,
    /// Endpoint ports on 127.0.0.1, with the container port each forwards to.
    pub endpoints: Vec<EndpointStatus>,
    /// The replicas.
    pub replicas: Vec<ReplicaStatus>,
}

/// An endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointStatus {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The container port.
    pub container_port: u16,
}

/// One replica as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    /// Container id (docker) or task id (swarm).
    pub id: String,
    /// Replica index (docker) or task slot (swarm).
    pub replica: Option<u32>,
    /// Host name or Swarm node id.
    pub node: String,
    /// created, running, exited, removing, draining.
    pub state: String,
    /// Whether it passes its check.
    pub ready: bool,
    /// Its spec hash.
    pub spec_hash: String,
    /// Start time, ms since the epoch.
    pub started_at_ms: i64,
    /// Ready since, ms since the epoch.
    pub ready_since_ms: Option<i64>,
}

impl Scheduler {
    /// Connects to the configured Docker hosts, loads the specs (config and `services_dir`) and
    /// the persisted desired counts from `<data_dir>/scheduler/`. Nothing changes on the hosts
    /// until [`run`](Self::run) is started. Events go to `appender` when one is given.
    pub async fn open(
        data_dir: &Path,
        config: SchedulerConfig,
        appender: Option<Arc<dyn Appender>>,
    ) -> Result<Arc<Scheduler>, SchedulerError> {
        let mut hosts = Vec::new();
        for host in &config.hosts {
            if hosts.iter().any(|h: &DockerHost| h.name == host.name) {
                return Err(SchedulerError::DuplicateHost(host.name.clone()));
            }
            hosts.push(DockerHost::connect(&host.name, &host.address, &config.instance).await?);
        }
        let specs = load_services(config.services_dir.as_deref(), &config.services)?;
        let state_file = StateFile::open(data_dir)?;
        let state = state_file.load()?;
        let scheduler = Scheduler {
            events: Events::new(config.events_capacity, appender),
            config,
            hosts,
            state_file,
            inner: Mutex::new(Inner {
                specs: BTreeMap::new(),
                hashes: BTreeMap::new(),
                state,
                tracked: HashMap::new(),
                pending: Vec::new(),
                removing: HashMap::new(),
                endpoints: HashMap::new(),
                backoff: HashMap::new(),
                rolling: HashSet::new(),
                swarm: HashMap::new(),
                endpoint_errors: HashSet::new(),
                observed: false,
            }),
            persist: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        };
        scheduler.set_specs(specs).await?;
        Ok(Arc::new(scheduler))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the set of services (a live reload). Services no longer listed are removed by the
    /// next reconciler pass; changed ones are rolled out. A persisted `scale` of a service whose
    /// spec `replicas` changed is dropped: the file wins.
    pub async fn set_specs(&self, specs: Vec<ServiceSpec>) -> Result<(), SchedulerError> {
        let mut seen = HashSet::new();
        for spec in &specs {
            spec.validate("reload")?;
            if !seen.insert(spec.name.clone()) {
                return Err(SpecError::Duplicate {
                    name: spec.name.clone(),
                    first: "reload".into(),
                    second: "reload".into(),
                }
                .into());
            }
            for host in &spec.placement.hosts {
                if !self.hosts.iter().any(|h| &h.name == host) {
                    return Err(SchedulerError::UnknownHost {
                        service: spec.name.clone(),
                        host: host.clone(),
                    });
                }
            }
        }
        let _persist = self.persist.lock().await;
        let pruned = {
            let mut inner = self.lock();
            inner.hashes = specs.iter().map(|s| (s.name.clone(), s.spec_hash())).collect();
            inner.specs = specs.into_iter().map(|s| (s.name.clone(), Arc::new(s))).collect();
            let before = inner.state.clone();
            let specs = inner.specs.clone();
            inner
                .state
                .services
                .retain(|name, entry| specs.get(name).is_some_and(|s| s.replicas == entry.spec_replicas));
            (inner.state != before).then(|| inner.state.clone())
        };
        if let Some(state) = pruned {
            self.save(state).await?;
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Reloads the specs from the configured folder and the given inline list.
    pub async fn reload(&self, inline: &[ServiceSpec]) -> Result<(), SchedulerError> {
        let specs = load_services(self.config.services_dir.as_deref(), inline)?;
        self.set_specs(specs).await
    }

    async fn save(&self, state: State) -> Result<(), StateError> {
        let file = self.state_file.clone();
        tokio::task::spawn_blocking(move || file.save(&state))
            .await
            .unwrap_or_else(|e| {
                Err(StateError {
                    path: "state.json".into(),
                    what: "write",
                    message: e.to_string(),
                })
            })
    }

    /// Sets a service's desired count; returns once it is on disk.
    pub async fn scale(&self, service: &str, desired: u32) -> Result<(), SchedulerError> {
        if desired > MAX_REPLICAS {
            return Err(SchedulerError::TooMany(desired));
        }
        let _persist = self.persist.lock().await;
        let (state, before) = {
            let inner = self.lock();
            let spec = inner
                .specs
                .get(service)
                .ok_or_else(|| SchedulerError::UnknownService(service.to_string()))?;
            let before = inner.desired(spec);
            let mut state = inner.state.clone();
            state.services.insert(
                service.to_string(),
                DesiredEntry {
                    desired,
                    spec_replicas: spec.replicas,
                },
            );
            (state, before)
        };
        self.save(state.clone()).await?;
        self.lock().state = state;
        if before != desired {
            self.events.emit(
                service,
                EventKind::Scaled,
                None,
                None,
                format!("desired {before} -> {desired}"),
            );
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The current specs (for the autoscaler's `autoscale` sections).
    pub fn specs(&self) -> Vec<ServiceSpec> {
        self.lock().specs.values().map(|s| ServiceSpec::clone(s)).collect()
    }

    /// The services and their replicas now.
    pub fn services(&self) -> Vec<ServiceStatus> {
        let inner = self.lock();
        inner
            .specs
            .values()
            .map(|spec| Self::status_of(&inner, spec, &self.hosts))
            .collect()
    }

    /// One service.
    pub fn service(&self, name: &str) -> Option<ServiceStatus> {
        let inner = self.lock();
        let spec = inner.specs.get(name)?;
        Some(Self::status_of(&inner, spec, &self.hosts))
    }

    /// The scheduler's recent events, oldest first.
    pub fn events(&self, service: Option<&str>, limit: usize) -> Vec<crate::events::Event> {
        self.events.recent(service, limit)
    }

    fn status_of(inner: &Inner, spec: &ServiceSpec, _hosts: &[DockerHost]) -> ServiceStatus {
        let mut replicas: Vec<ReplicaStatus> = match spec.backend {
            BackendKind::Docker => inner
                .tracked
                .values()
                .filter(|t| t.container.service == spec.name)
                .map(|t| ReplicaStatus {
                    id: t.container.id.clone(),
                    replica: t.container.replica,
                    node: t.container.host.clone(),
                    state: if inner.removing.contains_key(&t.container.id) {
                        "draining".into()
                    } else {
                        match t.container.state {
                            ContainerState::Created => "created",
                            ContainerState::Running => "running",
                            ContainerState::Exited => "exited",
                            ContainerState::Removing => "removing",
                        }
                        .into()
                    },
                    ready: t.health.is_ready(),
                    spec_hash: t.container.spec_hash.clone(),
                    started_at_ms: t.started_at_ms,
                    ready_since_ms: t.health.ready_since_ms(),
                })
                .collect(),
            BackendKind::Swarm => inner
                .swarm
                .get(&spec.name)
                .map(|s| s.replicas.clone())
                .unwrap_or_default(),
        };
        replicas.sort_by(|a, b| a.replica.cmp(&b.replica).then(a.started_at_ms.cmp(&b.started_at_ms)));
        let mut endpoints: Vec<EndpointStatus> = inner
            .endpoints
            .iter()
            .filter(|((s, _), _)| s == &spec.name)
            .map(|(_, e)| EndpointStatus {
                port: e.port(),
                container_port: e.container_port(),
            })
            .collect();
        endpoints.sort_by_key(|e| e.container_port);
        ServiceStatus {
            name: spec.name.clone(),
            backend: spec.backend.to_string(),
            image: spec.image.clone(),
            spec_hash: inner.hashes.get(&spec.name).cloned().unwrap_or_default(),
            desired: inner.desired(spec),
            running: replicas.iter().filter(|r| r.state == "running").count(),
            ready: replicas.iter().filter(|r| r.ready && r.state == "running").count(),
            rolling: inner.rolling.contains(&spec.name),
            endpoints,
            replicas,
        }
    }

    /// Runs the reconciler until `shutdown` resolves: a pass every `reconcile_interval` and at
    /// once after a scale or a reload. On shutdown the containers are left running (a restarted
    /// scheduler adopts them); endpoints and health checks stop.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let interval = self
            .config
            .reconcile_interval
            .0
            .max(std::time::Duration::from_millis(50));
        let reload_every = self.config.reload_interval.0.max(std::time::Duration::from_millis(100));
        let mut next_reload = Instant::now() + reload_every;
        let mut last_reload_error = String::new();
        loop {
            if self.config.services_dir.is_some() && Instant::now() >= next_reload {
                next_reload = Instant::now() + reload_every;
                self.reload_if_changed(&mut last_reload_error).await;
            }
            self.reconcile().await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
        self.stop();
    }

    /// Reads `services_dir` (and the inline specs) again and applies them when they differ.
    async fn reload_if_changed(&self, last_error: &mut String) {
        let dir = self.config.services_dir.clone();
        let inline = self.config.services.clone();
        let loaded = tokio::task::spawn_blocking(move || load_services(dir.as_deref(), &inline)).await;
        let result = match loaded {
            Ok(Ok(specs)) => {
                let changed = {
                    let inner = self.lock();
                    specs.len() != inner.specs.len()
                        || specs
                            .iter()
                            .any(|s| inner.specs.get(&s.name).is_none_or(|cur| **cur != *s))
                };
                if changed {
                    self.set_specs(specs).await.map_err(|e| e.to_string())
                } else {
                    Ok(())
                }
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => last_error.clear(),
            Err(e) if e != *last_error => {
                self.events.emit(
                    "-",
                    EventKind::Error,
                    None,
                    None,
                    format!("reload kept the specs in force: {e}"),
                );
                *last_error = e;
            }
            Err(_) => {}
        }
    }

    /// Stops the background work: health checks, endpoints, creates and drains in flight.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
        let mut inner = self.lock();
        inner.tracked.clear();
        inner.endpoints.clear();
    }

    /// The endpoint port of a service's container port, once it listens.
    pub fn endpoint_port(&self, service: &str, container_port: u16) -> Option<u16> {
        let inner = self.lock();
        inner
            .endpoints
            .get(&(service.to_string(), container_port))
            .map(|e| e.port())
    }
}

#[async_trait]
impl Replicas for Scheduler {
    async fn replicas(&self, service: &str) -> Result<ReplicaSet, ReplicasError> {
        let inner = self.lock();
        let spec = inner
            .specs
            .get(service)
            .ok_or_else(|| ReplicasError::UnknownService(service.to_string()))?;
        if !inner.observed {
            return Err(ReplicasError::Backend(
                "the scheduler has not listed its containers yet".into(),
            ));
        }
        let status = Self::status_of(&inner, spec, &self.hosts);
        let res = &spec.resources;
        Ok(ReplicaSet {
            service: service.to_string(),
            desired: status.desired,
            replicas: status
                .replicas
                .into_iter()
                .filter(|r| r.state == "running" || r.state == "created")
                .map(|r| Replica {
                    id: r.id,
                    node: r.node,
                    ready: r.ready,
                    started_at_ms: r.started_at_ms,
                    ready_since_ms: r.ready_since_ms,
                })
                .collect(),
            cpu_reservation_cores: res.reservations.cpus,
            cpu_limit_cores: res.limits.cpus,
            memory_reservation_bytes: res.reservations.memory.map(|m| m.0),
            memory_limit_bytes: res.limits.memory.map(|m| m.0),
        })
    }

    async fn set_desired(&self, service: &str, desired: u32) -> Result<(), ReplicasError> {
        self.scale(service, desired).await.map_err(|e| match e {
            SchedulerError::UnknownService(s) => ReplicasError::UnknownService(s),
            other => ReplicasError::Backend(other.to_string()),
        })
    }
}
