//! Service specs: what a service is (image, command, env, ports, resources, health check, update
//! and placement policy), read from YAML, validated, and hashed so a change can be rolled out.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tidewatch_model::{ByteSize, Duration};

/// One service: a set of identical replicas of one container image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service's name: a DNS label (`[a-z0-9][a-z0-9-]*`), used in container names, as the
    /// Docker network alias and as the `tidewatch.service` label.
    pub name: String,
    /// The image to run; it must already be on the host (the scheduler never pulls).
    pub image: String,
    /// The command (replaces the image's CMD); empty keeps the image's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The entrypoint (replaces the image's ENTRYPOINT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables; `${NAME}` in a value is replaced by the scheduler's own environment
    /// variable NAME when the container is created (an unset variable is an error).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Files of `NAME=value` lines (as `docker run --env-file`), read when a container is created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_files: Vec<PathBuf>,
    /// Secrets read from files: injected as an environment variable (`env: NAME`) or mounted
    /// read-only at `/run/secrets/<name>`. Their values are never logged nor shown by the API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretSpec>,
    /// Container ports; each gets a service endpoint on 127.0.0.1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Volumes in Docker's `source:target[:ro]` form (a host path or a named volume).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Extra Docker networks to join (they must exist) besides the service's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Labels put on every container (and on the service's network).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// CPU and memory reservations and limits per replica.
    #[serde(default)]
    pub resources: Resources,
    /// The signal that asks a replica to stop (default: the image's, usually SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// How long a replica may take to stop (and a draining replica to finish its connections)
    /// before it is killed.
    #[serde(default = "default_stop_grace_period")]
    pub stop_grace_period: Duration,
    /// The check that decides readiness; without one a running replica is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheck>,
    /// How many replicas to run (until `scale` or the autoscaler changes it).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// How a changed spec is rolled out.
    #[serde(default)]
    pub update: UpdatePolicy,
    /// Where replicas may run.
    #[serde(default)]
    pub placement: Placement,
    /// What happens when a replica exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Who runs the service.
    #[serde(default)]
    pub backend: BackendKind,
    /// The autoscaler's policy, kept as written: the autoscaler crate parses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<yaml_serde::Value>,
}

fn default_stop_grace_period() -> Duration {
    Duration::from_secs(10)
}

const fn default_replicas() -> u32 {
    1
}

/// A secret read from a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// The secret's name (the file name under `/run/secrets/` when mounted).
    pub name: String,
    /// The file holding the value, on the scheduler's host.
    pub file: PathBuf,
    /// Inject as this environment variable instead of mounting a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// A container port and its endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// The port the container listens on (TCP).
    pub container: u16,
    /// The endpoint's port on 127.0.0.1; without one a free port of the configured range is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<u16>,
}

/// Reservations (what the replica is guaranteed, what placement counts) and limits (what it may
/// use at most), as Compose's `deploy.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Reserved per replica.
    #[serde(default)]
    pub reservations: ResourceAmounts,
    /// Limits per replica.
    #[serde(default)]
    pub limits: ResourceAmounts,
}

/// CPU (in cores, e.g. 0.5) and memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceAmounts {
    /// Cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Bytes (`64MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
}

/// How readiness is checked, from the scheduler (not Docker's HEALTHCHECK): exactly one of `http`,
/// `tcp` or `exec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP GET of this path on the replica's published port; a 2xx or 3xx answer passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A TCP connect to the replica's published port passes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// A command run in the container (Docker exec); exit status 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// The container port for `http` and `tcp` (default: the first of `ports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Time between checks.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// How long one check may take.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Consecutive failures after which a replica that was ready, or is past its start period, is
    /// unhealthy and replaced.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Failures during this time after start do not count.
    #[serde(default)]
    pub start_period: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
const fn default_retries() -> u32 {
    3
}

/// Rolling updates: how many replicas above desired may exist and how many below desired may be
/// unavailable while a changed spec is rolled out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdatePolicy {
    /// Extra replicas started ahead of the ones they replace.
    pub max_surge: u32,
    /// Replicas that may be missing (stopped before their replacement is ready).
    pub max_unavailable: u32,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            max_surge: 1,
            max_unavailable: 0,
        }
    }
}

/// Where replicas run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Placement {
    /// Names of the configured hosts allowed (empty: all of them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// How a new replica's host is chosen.
    pub spread: Spread,
}

/// The rule for choosing a host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spread {
    /// The host with the fewest replicas of this service, then the most free capacity.
    #[default]
    Count,
    /// The host with the most free memory (total minus reservations of managed containers), then
    /// the fewest replicas.
    Capacity,
}

/// What happens when a replica's process exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always replaced (with back-off when it keeps crashing).
    #[default]
    Always,
    /// Replaced only when it exited with a non-zero status.
    OnFailure,
    /// Left exited.
    Never,
}

/// Who runs a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Containers on the configured Docker hosts, reconciled by the scheduler.
    #[default]
    Docker,
    /// A Docker Swarm service on the first configured host (a swarm manager).
    Swarm,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Docker => "docker",
            BackendKind::Swarm => "swarm",
        })
    }
}

/// A spec that could not be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse or does not match the schema; the message has the line, column
    /// and field.
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or "config").
        origin: String,
        /// What yaml_serde says, with its location.
        message: String,
    },
    /// A field has a value the scheduler cannot use.
    #[error("{origin}: service {service:?}: {field}: {reason}")]
    Invalid {
        /// The file (or "config").
        origin: String,
        /// The service's name.
        service: String,
        /// The field, as a path (`healthcheck.http`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Two specs share a name.
    #[error("service {name:?} is defined twice: in {first} and in {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// Where it was first defined.
        first: String,
        /// Where it was defined again.
        second: String,
    },
}

/// The shapes a file of the `services/` folder may take.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesFile {
    services: Vec<ServiceSpec>,
}

impl ServiceSpec {
    /// The stable hash of everything that needs new containers when it changes: the canonical
    /// JSON (sorted keys) of the spec without `replicas` and `autoscale`, which change the count,
    /// not the replicas. Hex SHA-256, truncated to 16 characters (a Docker label value).
    pub fn spec_hash(&self) -> String {
        let mut spec = self.clone();
        spec.replicas = 0;
        spec.autoscale = None;
        // serde_json's Value keeps object keys sorted (BTreeMap), which makes the text canonical.
        let value = serde_json::to_value(&spec).unwrap_or(serde_json::Value::Null);
        let digest = Sha256::digest(value.to_string().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The container port the health check (http/tcp) targets.
    pub fn health_port(&self) -> Option<u16> {
        let check = self.healthcheck.as_ref()?;
        check.port.or_else(|| self.ports.first().map(|p| p.container))
    }

    /// Checks what serde cannot: names, exactly one kind of health check, sane numbers.
    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| SpecError::Invalid {
            origin: origin.to_string(),
            service: self.name.clone(),
            field: field.to_string(),
            reason,
        };
        if !valid_name(&self.name) {
            return Err(invalid(
                "name",
                "must be 1-48 characters of a-z, 0-9 and '-', starting with a letter or digit".into(),
            ));
        }
        if self.image.trim().is_empty() {
            return Err(invalid("image", "must not be empty".into()));
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(invalid(&format!("env.{key}"), "invalid variable name".into()));
            }
        }
        for (i, secret) in self.secrets.iter().enumerate() {
            if !valid_name(&secret.name.replace('_', "-").to_ascii_lowercase()) {
                return Err(invalid(&format!("secrets[{i}].name"), "invalid secret name".into()));
            }
        }
        let mut seen = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            if port.container == 0 {
                return Err(invalid(&format!("ports[{i}].container"), "must be 1-65535".into()));
            }
            if seen.contains(&port.container) {
                return Err(invalid(&format!("ports[{i}].container"), "listed twice".into()));
            }
            seen.push(port.container);
        }
        for (i, volume) in self.volumes.iter().enumerate() {
            let parts: Vec<&str> = volume.split(':').collect();
            if !(2..=3).contains(&parts.len()) || parts[0].is_empty() || !parts[1].starts_with('/') {
                return Err(invalid(
                    &format!("volumes[{i}]"),
                    format!("{volume:?} is not source:/target[:ro]"),
                ));
            }
        }
        for (field, amounts) in [
            ("resources.reservations", &self.resources.reservations),
            ("resources.limits", &self.resources.limits),
        ] {
            if let Some(cpus) = amounts.cpus
                && !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0)
            {
                return Err(invalid(&format!("{field}.cpus"), format!("{cpus} is not in (0, 1024]")));
            }
        }
        if let (Some(r), Some(l)) = (self.resources.reservations.memory, self.resources.limits.memory)
            && r.0 > l.0
        {
            return Err(invalid("resources.reservations.memory", "is above the limit".into()));
        }
        if let Some(check) = &self.healthcheck {
            let kinds = usize::from(check.http.is_some()) + usize::from(check.tcp) + usize::from(check.exec.is_some());
            if kinds != 1 {
                return Err(invalid("healthcheck", "needs exactly one of http, tcp, exec".into()));
            }
            if let Some(path) = &check.http
                && (!path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(invalid("healthcheck.http", "must be a path starting with '/'".into()));
            }
            if check.exec.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid("healthcheck.exec", "must not be empty".into()));
            }
            if (check.http.is_some() || check.tcp) && self.health_port().is_none() {
                return Err(invalid(
                    "healthcheck.port",
                    "needed when the service has no ports".into(),
                ));
            }
            if check.interval.0.is_zero() || check.timeout.0.is_zero() {
                return Err(invalid("healthcheck", "interval and timeout must be above zero".into()));
            }
            if check.retries == 0 {
                return Err(invalid("healthcheck.retries", "must be at least 1".into()));
            }
        }
        if self.update.max_surge == 0 && self.update.max_unavailable == 0 {
            return Err(invalid(
                "update",
                "max_surge and max_unavailable cannot both be 0 (the update could never progress)".into(),
            ));
        }
        if self.replicas > MAX_REPLICAS {
            return Err(invalid("replicas", format!("at most {MAX_REPLICAS}")));
        }
        Ok(())
    }
}

/// An upper bound that keeps a typo (`replicas: 10000`) from flooding a host.
pub const MAX_REPLICAS: u32 = 1000;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

/// Reads the specs in one YAML text. The text is one service (a mapping with `name`), a list of
/// services, or a mapping `services: [...]`.
pub fn parse_services(text: &str, origin: &str) -> Result<Vec<ServiceSpec>, SpecError> {
    let parse_err = |e: yaml_serde::Error| SpecError::Parse {
        origin: origin.to_string(),
        message: e.to_string(),
    };
    // Decide the shape from a Value, then deserialize the text itself so errors keep their lines.
    let shape: yaml_serde::Value = yaml_serde::from_str(text).map_err(parse_err)?;
    let specs = match &shape {
        yaml_serde::Value::Null => Vec::new(),
        yaml_serde::Value::Sequence(_) => yaml_serde::from_str::<Vec<ServiceSpec>>(text).map_err(parse_err)?,
        yaml_serde::Value::Mapping(m) if m.contains_key("services") && !m.contains_key("name") => {
            yaml_serde::from_str::<ServicesFile>(text).map_err(parse_err)?.services
        }
        yaml_serde::Value::Mapping(_) => vec![yaml_serde::from_str::<ServiceSpec>(text).map_err(parse_err)?],
        _ => {
            return Err(SpecError::Parse {
                origin: origin.to_string(),
                message: "expected a service, a list of services or `services: [...]`".into(),
            });
        }
    };
    for spec in &specs {
        spec.validate(origin)?;
    }
    Ok(specs)
}

/// Reads every `*.yaml` / `*.yml` file of a folder (in name order) and the specs given inline
/// (from the main config), and checks that names are unique across all of them.
pub fn load_services(dir: Option<&Path>, inline: &[ServiceSpec]) -> Result<Vec<ServiceSpec>, SpecError> {
    let mut found: Vec<(ServiceSpec, String)> = Vec::new();
    for spec in inline {
        spec.validate("config")?;
        found.push((spec.clone(), "config".to_string()));
    }
    if let Some(dir) = dir {
        let io = |source| SpecError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| SpecError::Io {
                path: file.clone(),
                source,
            })?;
            let origin = file.display().to_string();
            for spec in parse_services(&text, &origin)? {
                found.push((spec, origin.clone()));
            }
        }
    }
    let mut specs: Vec<ServiceSpec> = Vec::new();
    for (i, (spec, origin)) in found.iter().enumerate() {
        if let Some((_, first)) = found[..i].iter().find(|(s, _)| s.name == spec.name) {
            return Err(SpecError::Duplicate {
                name: spec.name.clone(),
                first: first.clone(),
                second: origin.clone(),
            });
        }
        specs.push(spec.clone());
    }
    Ok(specs)
}

/// Why a replica's environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` names a variable the scheduler does not have.
    #[error("service {service:?}: env.{key}: ${{{var}}} is not set in the scheduler's environment")]
    Unset {
        /// The service.
        service: String,
        /// The variable being built.
        key: String,
        /// The missing one.
        var: String,
    },
    /// An env file or secret file could not be read (its content is never shown).
    #[error("service {service:?}: cannot read {path}: {source}")]
    File {
        /// The service.
        service: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of an env file is not `NAME=value`.
    #[error("service {service:?}: {path} line {line}: expected NAME=value")]
    Line {
        /// The service.
        service: String,
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
    },
}

/// The environment of a replica, with `${VAR}` expanded, env files and injected secrets added.
/// The result holds secret values: callers must not log it.
pub fn resolve_env(spec: &ServiceSpec) -> Result<Vec<String>, EnvError> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for path in &spec.env_files {
        let text = std::fs::read_to_string(path).map_err(|source| EnvError::File {
            service: spec.name.clone(),
            path: path.clone(),
            source,
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(EnvError::Line {
                    service: spec.name.clone(),
                    path: path.clone(),
                    line: i + 1,
                });
            };
            vars.insert(k.trim().to_string(), v.to_string());
        }
    }
    for (key, value) in &spec.env {
        vars.insert(key.clone(), expand(value, &spec.name, key)?);
    }
    for secret in &spec.secrets {
        if let Some(var) = &secret.env {
            let value = std::fs::read_to_string(&secret.file).map_err(|source| EnvError::File {
                service: spec.name.clone(),
                path: secret.file.clone(),
                source,
            })?;
            vars.insert(var.clone(), value.trim_end_matches(['\n', '\r']).to_string());
        }
    }
    Ok(vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// Replaces `${NAME}` with the scheduler's environment variable; `$$` is a literal `$`.
fn expand(value: &str, service: &str, key: &str) -> Result<String, EnvError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let var = &body[..end];
            let v = std::env::var(var).map_err(|_| EnvError::Unset {
                service: service.to_string(),
                key: key.to_string(),
                var: var.to_string(),
            })?;
            out.push_str(&v);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "name: web
image: tidewatch-test/busybox
command: [/busybox, httpd, -f, -p, '8080']
env: {MODE: prod}
ports: [{container: 8080, endpoint: 20500}]
resources:
  reservations: {cpus: 0.25, memory: 32MiB}
  limits: {cpus: 1, memory: 64MiB}
healthcheck: {http: /, interval: 1s, timeout: 500ms, retries: 2}
replicas: 2
update: {max_surge: 1, max_unavailable: 0}
autoscale: {min: 1, max: 5, metric: cpu}
";

    #[test]
    fn parses_one_service_with_defaults() {
        let specs = parse_services(WEB, "web.yaml").unwrap();
        assert_eq!(specs.len(), 1);
        let web = &specs[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.replicas, 2);
        assert_eq!(web.health_port(), Some(8080));
        assert_eq!(web.resources.limits.memory, Some(ByteSize(64 << 20)));
        assert_eq!(web.stop_grace_period, Duration::from_secs(10));
        assert_eq!(web.backend, BackendKind::Docker);
        assert!(web.autoscale.is_some());
    }

    #[test]
    fn accepts_lists_and_services_key() {
        let list = format!("- {}\n- name: b\n  image: x\n", WEB.replace('\n', "\n  ").trim_end());
        assert_eq!(parse_services(&list, "l.yaml").unwrap().len(), 2);
        let keyed = "services:\n  - {name: a, image: x}\n  - {name: b, image: y}\n";
        assert_eq!(parse_services(keyed, "k.yaml").unwrap().len(), 2);
    }

    #[test]
    fn unknown_field_error_names_file_line_and_field() {
        let err = parse_services("name: a\nimage: x\nhealthcheck:\n  htp: /\n", "svc/a.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("svc/a.yaml"), "{msg}");
        assert!(msg.contains("htp"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let err = parse_services(
            "name: a\nimage: x\nhealthcheck: {http: /, tcp: true, port: 80}\n",
            "a.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("healthcheck") && err.contains("exactly one"), "{err}");
        let err = parse_services("name: Bad_Name\nimage: x\n", "a.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("name"), "{err}");
        let err = parse_services("name: a\nimage: x\nhealthcheck: {tcp: true}\n", "a.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("healthcheck.port"), "{err}");
    }

    #[test]
    fn hash_ignores_replicas_and_autoscale_but_not_image() {
        let a = parse_services(WEB, "a").unwrap().remove(0);
        let mut b = a.clone();
        b.replicas = 7;
        b.autoscale = None;
        assert_eq!(a.spec_hash(), b.spec_hash());
        b.env.insert("MODE".into(), "dev".into());
        assert_ne!(a.spec_hash(), b.spec_hash());
        assert_eq!(a.spec_hash().len(), 16);
    }

    #[test]
    fn duplicates_across_folder_and_config_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "name: a\nimage: x\n").unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "- {name: b, image: x}\n- {name: c, image: x}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let specs = load_services(Some(dir.path()), &[]).unwrap();
        assert_eq!(
            specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let inline = parse_services("name: b\nimage: y\n", "config").unwrap();
        let err = load_services(Some(dir.path()), &inline).unwrap_err().to_string();
        assert!(err.contains("\"b\"") && err.contains("b.yml"), "{err}");
    }

    #[test]
    fn env_expands_variables_files_and_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("app.env");
        std::fs::write(&env_file, "# comment\nA=1\nB=two=2\n").unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let mut spec = parse_services("name: a\nimage: x\n", "t").unwrap().remove(0);
        spec.env_files.push(env_file);
        spec.env.insert("HOME_COPY".into(), "${PATH}-$$x".into());
        spec.secrets.push(SecretSpec {
            name: "token".into(),
            file: secret,
            env: Some("TOKEN".into()),
        });
        let env = resolve_env(&spec).unwrap();
        assert!(env.contains(&"A=1".to_string()));
        assert!(env.contains(&"B=two=2".to_string()));
        assert!(env.contains(&"TOKEN=s3cret".to_string()));
        let path = std::env::var("PATH").unwrap();
        assert!(env.contains(&format!("HOME_COPY={path}-$x")));
        spec.env.insert("X".into(), "${TIDEWATCH_SURELY_UNSET_VAR}".into());
        let err = resolve_env(&spec).unwrap_err().to_string();
        assert!(
            err.contains("env.X") && err.contains("TIDEWATCH_SURELY_UNSET_VAR"),
            "{err}"
        );
    }
}
