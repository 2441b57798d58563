//! One Docker host: create, start, stop and remove the scheduler's containers, list them by label,
//! and run exec health checks. Containers carry `tidewatch.managed=1`, `tidewatch.service`,
//! `tidewatch.replica` and `tidewatch.spec-hash`, which is all the reconciler needs to adopt them
//! after a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, ExecConfig, HostConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy as DockerRestart, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};

use crate::spec::{ServiceSpec, resolve_env};

/// Label keys the scheduler puts on what it creates.
pub mod labels {
    /// Marks everything the scheduler owns.
    pub const MANAGED: &str = "tidewatch.managed";
    /// The service name.
    pub const SERVICE: &str = "tidewatch.service";
    /// The replica index (0-based).
    pub const REPLICA: &str = "tidewatch.replica";
    /// The spec hash the container was created from.
    pub const SPEC_HASH: &str = "tidewatch.spec-hash";
    /// The scheduler instance that owns it (`scheduler.instance`): two schedulers on one engine
    /// never touch each other's containers.
    pub const INSTANCE: &str = "tidewatch.scheduler";
}

/// A Docker call failed.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine answered with an error or could not be reached.
    #[error("docker host {host}: {what}: {source}")]
    Api {
        /// The host's name.
        host: String,
        /// What was being done.
        what: String,
        /// bollard's error.
        source: bollard::errors::Error,
    },
    /// The replica's environment could not be built.
    #[error(transparent)]
    Env(#[from] crate::spec::EnvError),
    /// The host address is not `unix://` or `tcp://`.
    #[error("docker host {host}: address {address:?} is not unix:///path or tcp://host:port")]
    Address {
        /// The host's name.
        host: String,
        /// What was configured.
        address: String,
    },
}

/// The state of a container as the reconciler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started (a create interrupted before its start).
    Created,
    /// Running (or paused, restarting: Docker still has it).
    Running,
    /// Exited or dead.
    Exited,
    /// Being removed.
    Removing,
}

/// A managed container found on a host.
#[derive(Clone, Debug)]
pub struct Container {
    /// The full container id.
    pub id: String,
    /// The host's name.
    pub host: String,
    /// `tidewatch.service`.
    pub service: String,
    /// `tidewatch.replica`, or `None` when the label is missing or not a number.
    pub replica: Option<u32>,
    /// `tidewatch.spec-hash`.
    pub spec_hash: String,
    /// Its state.
    pub state: ContainerState,
    /// Published host ports on 127.0.0.1 by container port.
    pub ports: HashMap<u16, u16>,
    /// Creation time, seconds since the epoch.
    pub created_s: i64,
}

/// A connection to one Docker engine.
#[derive(Clone)]
pub struct DockerHost {
    /// The host's name (placement and `node` in replicas).
    pub name: String,
    /// The client.
    pub docker: Docker,
    /// Total memory of the host, for placement by capacity.
    pub mem_total: u64,
    /// The owning scheduler instance.
    pub instance: String,
    /// Serializes network creation (see `ensure_network`).
    network_lock: Arc<tokio::sync::Mutex<()>>,
}

const CLIENT_TIMEOUT_S: u64 = 120;

impl DockerHost {
    /// Connects to `address` (`unix:///var/run/docker.sock` or `tcp://host:port`) and negotiates
    /// the API version (the engine here speaks 1.41).
    pub async fn connect(name: &str, address: &str, instance: &str) -> Result<DockerHost, DockerError> {
        let api = |what: &str| {
            let host = name.to_string();
            let what = what.to_string();
            move |source| DockerError::Api { host, what, source }
        };
        let docker = if address.starts_with("unix://") {
            Docker::connect_with_unix(address, CLIENT_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        } else if address.starts_with("tcp://") {
            Docker::connect_with_http(address, CLIENT_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
        } else {
            return Err(DockerError::Address {
                host: name.to_string(),
                address: address.to_string(),
            });
        }
        .map_err(api("connect"))?;
        let docker = docker.negotiate_version().await.map_err(api("negotiate version"))?;
        let info = docker.info().await.map_err(api("info"))?;
        Ok(DockerHost {
            name: name.to_string(),
            docker,
            mem_total: info.mem_total.unwrap_or(0).max(0) as u64,
            instance: instance.to_string(),
            network_lock: Arc::default(),
        })
    }

    fn err(&self, what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
        let host = self.name.clone();
        let what = what.into();
        move |source| DockerError::Api { host, what, source }
    }

    /// Every container of this instance carrying `tidewatch.managed=1`, running or not.
    pub async fn list(&self) -> Result<Vec<Container>, DockerError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}=1", labels::MANAGED),
                format!("{}={}", labels::INSTANCE, self.instance),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let found = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(self.err("list containers"))?;
        Ok(found
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let state = match c.state {
                    Some(ContainerSummaryStateEnum::CREATED) => ContainerState::Created,
                    Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => ContainerState::Exited,
                    Some(ContainerSummaryStateEnum::REMOVING) => ContainerState::Removing,
                    _ => ContainerState::Running,
                };
                let ports = c
                    .ports
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| p.ip.as_deref().is_none_or(|ip| ip == "127.0.0.1"))
                    .filter_map(|p| Some((p.private_port, p.public_port?)))
                    .collect();
                Some(Container {
                    id: c.id?,
                    host: self.name.clone(),
                    service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
                    replica: labels.get(labels::REPLICA).and_then(|r| r.parse().ok()),
                    spec_hash: labels.get(labels::SPEC_HASH).cloned().unwrap_or_default(),
                    state,
                    ports,
                    created_s: c.created.unwrap_or(0),
                })
            })
            .collect())
    }

    /// The service's own network (`tw-<service>`), created on first use: replicas join it with the
    /// service name as alias, so Docker's embedded DNS resolves the name to them. Returns its id.
    ///
    /// Docker allows several networks of one name, so concurrent creates would make duplicates
    /// (and an ambiguous name): creates are serialized per host, and the oldest of duplicates
    /// made by someone else is used.
    async fn ensure_network(&self, spec: &ServiceSpec) -> Result<String, DockerError> {
        let _one_at_a_time = self.network_lock.lock().await;
        let name = network_name(&spec.name);
        let filters = HashMap::from([("name", vec![name.clone()])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut existing: Vec<(String, String)> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(self.err(format!("list networks named {name}")))?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name.as_str()))
            .filter_map(|n| Some((n.created.unwrap_or_default(), n.id?)))
            .collect();
        existing.sort();
        if let Some((_, id)) = existing.into_iter().next() {
            return Ok(id);
        }
        let mut net_labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        net_labels.insert(labels::MANAGED.into(), "1".into());
        net_labels.insert(labels::SERVICE.into(), spec.name.clone());
        net_labels.insert(labels::INSTANCE.into(), self.instance.clone());
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(net_labels),
            ..Default::default()
        };
        let created = self
            .docker
            .create_network(request)
            .await
            .map_err(self.err(format!("create network {name}")))?;
        Ok(created.id)
    }

    /// Creates and starts replica `replica` of `spec`; returns the container id. A container that
    /// was created but failed to start is removed again, so no half-made replica is left behind.
    pub async fn run_replica(&self, spec: &ServiceSpec, replica: u32, spec_hash: &str) -> Result<String, DockerError> {
        let network = self.ensure_network(spec).await?;
        let env = resolve_env(spec)?;
        let mut container_labels: HashMap<String, String> =
            spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        container_labels.insert(labels::MANAGED.into(), "1".into());
        container_labels.insert(labels::SERVICE.into(), spec.name.clone());
        container_labels.insert(labels::REPLICA.into(), replica.to_string());
        container_labels.insert(labels::SPEC_HASH.into(), spec_hash.to_string());
        container_labels.insert(labels::INSTANCE.into(), self.instance.clone());

        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
            .ports
            .iter()
            .map(|p| {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                };
                (format!("{}/tcp", p.container), Some(vec![binding]))
            })
            .collect();
        let mut binds = spec.volumes.clone();
        for secret in spec.secrets.iter().filter(|s| s.env.is_none()) {
            let file = std::fs::canonicalize(&secret.file).map_err(|source| crate::spec::EnvError::File {
                service: spec.name.clone(),
                path: secret.file.clone(),
                source,
            })?;
            binds.push(format!("{}:/run/secrets/{}:ro", file.display(), secret.name));
        }
        let res = &spec.resources;
        let host_config = HostConfig {
            nano_cpus: res.limits.cpus.map(|c| (c * 1e9) as i64),
            cpu_shares: res.reservations.cpus.map(|c| ((c * 1024.0) as i64).max(2)),
            memory: res.limits.memory.map(|m| m.0 as i64),
            memory_reservation: res.reservations.memory.map(|m| m.0 as i64),
            port_bindings: Some(port_bindings),
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: Some(network.clone()),
            // The reconciler replaces exited replicas itself (with back-off and events).
            restart_policy: Some(DockerRestart {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
            entrypoint: spec.entrypoint.clone(),
            env: Some(env),
            labels: Some(container_labels),
            exposed_ports: Some(spec.ports.iter().map(|p| format!("{}/tcp", p.container)).collect()),
            stop_signal: spec.stop_signal.clone(),
            stop_timeout: Some(spec.stop_grace_period.0.as_secs() as i64),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![spec.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let name = format!("tw-{}-{}-{}", spec.name, replica, unique_suffix());
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(self.err(format!("create container {name}")))?;
        let id = created.id;
        let started = async {
            for extra in &spec.networks {
                let request = NetworkConnectRequest {
                    container: id.clone(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec![spec.name.clone()]),
                        ..Default::default()
                    }),
                };
                self.docker
                    .connect_network(extra, request)
                    .await
                    .map_err(self.err(format!("connect {name} to network {extra}")))?;
            }
            self.docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(self.err(format!("start container {name}")))
        };
        if let Err(e) = started.await {
            let _ = self.remove(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Starts a container that exists but was never started.
    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(self.err(format!("start container {id}")))
    }

    /// Stops (signal, then kill after `grace`) and removes a container. A container already gone
    /// counts as removed.
    pub async fn stop_and_remove(&self, id: &str, grace: StdDuration) -> Result<(), DockerError> {
        let options = StopContainerOptionsBuilder::new()
            .t(grace.as_secs().min(i32::MAX as u64) as i32)
            .build();
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404, ..
            }) => {}
            Err(e) => return Err(self.err(format!("stop container {id}"))(e)),
        }
        self.remove(id).await
    }

    /// Removes a container (forcefully, with its anonymous volumes).
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("remove container {id}"))(e)),
        }
    }

    /// When the container was started (ms since the epoch) and its exit code if it exited.
    pub async fn started_and_exit(&self, id: &str) -> Result<(Option<i64>, Option<i64>), DockerError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(self.err(format!("inspect container {id}")))?;
        let state = info.state.unwrap_or_default();
        let started = state
            .started_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .filter(|&ms| ms > 0);
        Ok((started, state.exit_code))
    }

    /// Runs `cmd` in the container and reports whether it exited 0 within `timeout`.
    pub async fn exec_check(&self, id: &str, cmd: &[String], timeout: StdDuration) -> bool {
        let run = async {
            let config = ExecConfig {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                ..Default::default()
            };
            let exec = self.docker.create_exec(id, config).await.ok()?;
            let options = bollard::exec::StartExecOptions {
                detach: true,
                ..Default::default()
            };
            self.docker.start_exec(&exec.id, Some(options)).await.ok()?;
            loop {
                let inspect = self.docker.inspect_exec(&exec.id).await.ok()?;
                if inspect.running != Some(true) {
                    return inspect.exit_code;
                }
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
        };
        matches!(tokio::time::timeout(timeout, run).await, Ok(Some(0)))
    }

    /// Removes this instance's service networks whose service is not in `keep` (a network still
    /// in use stays: Docker refuses, and the next pass tries again).
    pub async fn remove_networks_except(&self, keep: &std::collections::HashSet<String>) {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}=1", labels::MANAGED),
                format!("{}={}", labels::INSTANCE, self.instance),
            ],
        )]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let Ok(networks) = self.docker.list_networks(Some(options)).await else {
            return;
        };
        for network in networks {
            let service = network.labels.as_ref().and_then(|l| l.get(labels::SERVICE));
            if let (Some(service), Some(id)) = (service, network.id.as_deref())
                && !keep.contains(service)
            {
                let _ = self.docker.remove_network(id).await;
            }
        }
    }

    /// Removes the service's network when no container uses it any more (errors are ignored:
    /// a network still in use stays).
    pub async fn remove_network(&self, service: &str) {
        let _ = self.docker.remove_network(&network_name(service)).await;
    }
}

/// The name of a service's own network.
pub fn network_name(service: &str) -> String {
    format!("tw-{service}")
}

/// A short suffix that keeps container names unique when a replica index is reused (a surge
/// replica next to the one it replaces, a replacement after a crash).
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}", nanos ^ n.wrapping_mul(0x9e37_79b9))
}
