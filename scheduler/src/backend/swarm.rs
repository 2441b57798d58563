//! `backend: swarm`: the same spec run as a Docker Swarm service on the first configured host (a
//! swarm manager). Swarm does the placing, restarting and rolling; the scheduler creates the
//! service, updates it when the spec hash or the desired count changes (with the service's
//! current version, retried when another writer got there first) and reads its tasks.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::{
    HealthConfig, Limit, Mount, MountType, ResourceObject, ServiceSpec as SwarmSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateServiceOptionsBuilder};

use crate::backend::docker::{DockerHost, labels};
use crate::events::EventKind;
use crate::scheduler::{ReplicaStatus, Scheduler};
use crate::spec::{BackendKind, RestartPolicy, ServiceSpec, resolve_env};

/// What the scheduler last saw of a Swarm service.
#[derive(Clone, Debug, Default)]
pub struct SwarmStatus {
    /// Its running (or starting) tasks.
    pub replicas: Vec<ReplicaStatus>,
}

/// How often an update is retried when the service's version moved under it.
const UPDATE_ATTEMPTS: usize = 5;

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }
    )
}

/// The Swarm service spec of `spec` with `replicas` replicas.
fn to_swarm(spec: &ServiceSpec, hash: &str, replicas: u32, instance: &str) -> Result<SwarmSpec, crate::spec::EnvError> {
    let mut service_labels: HashMap<String, String> = spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Task containers carry the service label (for the collector) but not `managed`: they belong
    // to Swarm, and the docker reconciler must not adopt or remove them.
    let mut container_labels = service_labels.clone();
    container_labels.insert(labels::SERVICE.into(), spec.name.clone());
    service_labels.insert(labels::MANAGED.into(), "1".into());
    service_labels.insert(labels::SERVICE.into(), spec.name.clone());
    service_labels.insert(labels::SPEC_HASH.into(), hash.to_string());
    service_labels.insert(labels::INSTANCE.into(), instance.to_string());

    let mut mounts: Vec<Mount> = spec
        .volumes
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            Mount {
                source: parts.first().map(|s| s.to_string()),
                target: parts.get(1).map(|s| s.to_string()),
                typ: Some(if parts[0].starts_with('/') {
                    MountType::BIND
                } else {
                    MountType::VOLUME
                }),
                read_only: Some(parts.get(2) == Some(&"ro")),
                ..Default::default()
            }
        })
        .collect();
    for secret in spec.secrets.iter().filter(|s| s.env.is_none()) {
        let file = std::fs::canonicalize(&secret.file).map_err(|source| crate::spec::EnvError::File {
            service: spec.name.clone(),
            path: secret.file.clone(),
            source,
        })?;
        mounts.push(Mount {
            source: Some(file.display().to_string()),
            target: Some(format!("/run/secrets/{}", secret.name)),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let res = &spec.resources;
    let nanos = |c: Option<f64>| c.map(|c| (c * 1e9) as i64);
    let health_check = spec.healthcheck.as_ref().and_then(|h| {
        let cmd = h.exec.as_ref()?;
        let mut test = vec!["CMD".to_string()];
        test.extend(cmd.iter().cloned());
        Some(HealthConfig {
            test: Some(test),
            interval: Some(h.interval.0.as_nanos() as i64),
            timeout: Some(h.timeout.0.as_nanos() as i64),
            retries: Some(i64::from(h.retries)),
            start_period: Some(h.start_period.0.as_nanos() as i64),
            ..Default::default()
        })
    });
    Ok(SwarmSpec {
        name: Some(spec.name.clone()),
        labels: Some(service_labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(spec.image.clone()),
                labels: Some(container_labels),
                command: spec.entrypoint.clone(),
                args: (!spec.command.is_empty()).then(|| spec.command.clone()),
                env: Some(resolve_env(spec)?),
                mounts: (!mounts.is_empty()).then_some(mounts),
                stop_signal: spec.stop_signal.clone(),
                stop_grace_period: Some(spec.stop_grace_period.0.as_nanos() as i64),
                health_check,
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    nano_cpus: nanos(res.limits.cpus),
                    memory_bytes: res.limits.memory.map(|m| m.0 as i64),
                    pids: None,
                }),
                reservations: Some(ResourceObject {
                    nano_cpus: nanos(res.reservations.cpus),
                    memory_bytes: res.reservations.memory.map(|m| m.0 as i64),
                    generic_resources: None,
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(match spec.restart {
                    RestartPolicy::Always => TaskSpecRestartPolicyConditionEnum::ANY,
                    RestartPolicy::OnFailure => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                    RestartPolicy::Never => TaskSpecRestartPolicyConditionEnum::NONE,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(replicas)),
            }),
            ..Default::default()
        }),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(i64::from(spec.update.max_surge.max(spec.update.max_unavailable).max(1))),
            order: Some(if spec.update.max_surge > 0 {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Creates or updates one Swarm service so it runs `spec` with `desired` replicas; returns
/// whether it changed something, and what.
async fn converge(host: &DockerHost, spec: &ServiceSpec, hash: &str, desired: u32) -> Result<Option<String>, String> {
    let docker = &host.docker;
    for _ in 0..UPDATE_ATTEMPTS {
        let current = match docker.inspect_service(&spec.name, None).await {
            Ok(s) => s,
            Err(e) if is_not_found(&e) => {
                let swarm = to_swarm(spec, hash, desired, &host.instance).map_err(|e| e.to_string())?;
                return match docker.create_service(swarm, None).await {
                    Ok(_) => Ok(Some(format!("created swarm service with {desired} replicas"))),
                    Err(e) => Err(format!("create swarm service: {e}")),
                };
            }
            Err(e) => return Err(format!("inspect swarm service: {e}")),
        };
        let current_spec = current.spec.clone().unwrap_or_default();
        let current_hash = current_spec
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::SPEC_HASH))
            .cloned()
            .unwrap_or_default();
        let current_replicas = current_spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .unwrap_or(-1);
        if current_hash == hash && current_replicas == i64::from(desired) {
            return Ok(None);
        }
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let next = if current_hash == hash {
            // Only the count changes: keep the rest of the service as Swarm has it.
            let mut next = current_spec;
            next.mode = Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(i64::from(desired)),
                }),
                ..Default::default()
            });
            next
        } else {
            to_swarm(spec, hash, desired, &host.instance).map_err(|e| e.to_string())?
        };
        let options = UpdateServiceOptionsBuilder::new()
            .version(version.min(i32::MAX as u64) as i32)
            .build();
        match docker.update_service(&spec.name, next, options, None).await {
            Ok(_) if current_hash == hash => {
                return Ok(Some(format!("scaled swarm service {current_replicas} -> {desired}")));
            }
            Ok(_) => return Ok(Some(format!("updated swarm service to spec {hash}"))),
            // "update out of sequence": someone else updated it since our inspect; read again.
            Err(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.contains("out of sequence") =>
            {
                continue;
            }
            Err(e) => return Err(format!("update swarm service: {e}")),
        }
    }
    Err(format!(
        "update swarm service: version conflict {UPDATE_ATTEMPTS} times in a row"
    ))
}

/// The tasks Swarm wants running.
async fn tasks(host: &DockerHost, service: &str) -> Result<Vec<ReplicaStatus>, String> {
    let filters = HashMap::from([
        ("service", vec![service.to_string()]),
        ("desired-state", vec!["running".into()]),
    ]);
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    let tasks = host
        .docker
        .list_tasks(Some(options))
        .await
        .map_err(|e| format!("list swarm tasks: {e}"))?;
    Ok(tasks
        .into_iter()
        .map(|t| {
            let status = t.status.unwrap_or_default();
            let running = status.state == Some(TaskState::RUNNING);
            let since = status
                .timestamp
                .as_deref()
                .and_then(|ts| humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok())
                .and_then(|ts| ts.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let state = status
                .state
                .map(|s| format!("{s:?}").to_ascii_lowercase())
                .unwrap_or_default();
            ReplicaStatus {
                id: t.id.unwrap_or_default(),
                replica: t.slot.and_then(|s| u32::try_from(s).ok()),
                node: t.node_id.unwrap_or_default(),
                state: if running { "running".into() } else { state },
                ready: running,
                spec_hash: String::new(),
                started_at_ms: since,
                ready_since_ms: running.then_some(since),
            }
        })
        .collect())
}

impl Scheduler {
    /// Converges every `backend: swarm` service and removes Swarm services the scheduler made
    /// that no spec names any more.
    pub(crate) async fn reconcile_swarm(self: &Arc<Self>) {
        let Some(host) = self.hosts.first() else { return };
        let (specs, had_any) = {
            let inner = self.lock();
            let specs: Vec<(Arc<ServiceSpec>, String, u32)> = inner
                .specs
                .values()
                .filter(|s| s.backend == BackendKind::Swarm)
                .map(|s| {
                    (
                        s.clone(),
                        inner.hashes.get(&s.name).cloned().unwrap_or_default(),
                        inner.desired(s),
                    )
                })
                .collect();
            (specs, !inner.swarm.is_empty())
        };
        if specs.is_empty() && !had_any {
            return;
        }
        for (spec, hash, desired) in &specs {
            match converge(host, spec, hash, *desired).await {
                Ok(Some(what)) => {
                    let kind = if what.starts_with("scaled") {
                        EventKind::Scaled
                    } else if what.starts_with("created") {
                        EventKind::Created
                    } else {
                        EventKind::RolloutStarted
                    };
                    self.events.emit(&spec.name, kind, None, None, what);
                }
                Ok(None) => {}
                Err(e) => self.events.emit(&spec.name, EventKind::Error, None, None, e),
            }
            match tasks(host, &spec.name).await {
                Ok(replicas) => {
                    self.lock()
                        .swarm
                        .insert(spec.name.clone(), super::swarm::SwarmStatus { replicas });
                }
                Err(e) => tracing::warn!(service = %spec.name, error = %e, "swarm tasks not listed"),
            }
        }
        // Orphans: managed Swarm services without a swarm spec.
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{}=1", labels::MANAGED),
                format!("{}={}", labels::INSTANCE, host.instance),
            ],
        )]);
        let options = ListServicesOptionsBuilder::new().filters(&filters).build();
        if let Ok(services) = host.docker.list_services(Some(options)).await {
            for service in services {
                let name = service.spec.and_then(|s| s.name).unwrap_or_default();
                if name.is_empty() || specs.iter().any(|(s, _, _)| s.name == name) {
                    continue;
                }
                match host.docker.delete_service(&name).await {
                    Ok(()) => self.events.emit(
                        &name,
                        EventKind::Removed,
                        None,
                        None,
                        "swarm service removed: no such service",
                    ),
                    Err(e) => self.events.emit(&name, EventKind::Error, None, None, e.to_string()),
                }
            }
        }
        let mut inner = self.lock();
        let names: Vec<String> = specs.iter().map(|(s, _, _)| s.name.clone()).collect();
        inner.swarm.retain(|name, _| names.contains(name));
    }
}
