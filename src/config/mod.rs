//! The configuration file: one YAML document, typed with serde, unknown keys refused.
//!
//! Loading goes: read the file → expand `${VAR}` ([`env`]) → deserialize → check the values
//! that serde cannot ([`Config::validate`]) → apply command-line overrides. Every failure is a
//! [`ConfigError`] naming the file, line, column and key, so `tidewatch config check` and a
//! refused reload print the same message.

mod env;
mod error;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration};

pub use self::error::ConfigError;

/// The whole configuration. Every section has defaults, so an empty file (or none) runs a
/// single-machine stack with data in `./data` and HTTP on `127.0.0.1:9700`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where everything is kept: metrics, logs, alert state, the agent's buffer (default
    /// `./data`). A relative path is taken from the working directory.
    pub data_dir: PathBuf,
    /// The server: the store, the query APIs, alerts, the scheduler and the UI.
    pub server: ServerConfig,
    /// The agent (collector) on this node: its own endpoint and node name.
    pub agent: AgentConfig,
    /// What the collector reads (Docker logs, files, cgroups, the host, scrape targets), its
    /// disk buffer and where it ships.
    pub collector: tidewatch_collector::agent::AgentConfig,
    /// How metrics are stored: retention, block range, WAL, limits.
    pub metrics: tidewatch_store::metrics::MetricsConfig,
    /// How logs are stored: partitions, retention, WAL, limits.
    pub logs: tidewatch_store::logs::LogsConfig,
    /// The process' own log output.
    pub log: LogConfig,
    /// The browser UI's dashboards: a folder of YAML dashboards beside the built-in ones.
    pub dashboards: tidewatch_dashboards::DashboardsConfig,
    /// Alerting and recording rules: Prometheus rule files, evaluated on the stored data.
    pub rules: tidewatch_alertmanager::rules::RulesConfig,
    /// Notifications: the alertmanager.yml that routes alerts to email and webhooks.
    pub alertmanager: tidewatch_alertmanager::notify::NotifySettings,
    /// Services run as containers, and the Docker hosts they run on. Each service's
    /// `autoscale:` section is its autoscaling policy.
    pub scheduler: tidewatch_scheduler::SchedulerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            agent: AgentConfig::default(),
            collector: tidewatch_collector::agent::AgentConfig::default(),
            metrics: tidewatch_store::metrics::MetricsConfig::default(),
            logs: tidewatch_store::logs::LogsConfig::default(),
            log: LogConfig::default(),
            dashboards: tidewatch_dashboards::DashboardsConfig::default(),
            rules: tidewatch_alertmanager::rules::RulesConfig::default(),
            alertmanager: tidewatch_alertmanager::notify::NotifySettings::default(),
            scheduler: tidewatch_scheduler::SchedulerConfig::default(),
        }
    }
}

/// `server:` — the HTTP side of the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The address the API, the UI and `/metrics` listen on (default `127.0.0.1:9700`).
    /// Binding to anything but loopback exposes unauthenticated write and admin APIs.
    pub listen: SocketAddr,
    /// The largest request body accepted, compressed size (default `64MiB`); larger requests
    /// get 413.
    pub max_request_body: ByteSize,
    /// How long a graceful shutdown waits for requests in flight before it closes them
    /// (default `30s`).
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9700)),
            max_request_body: ByteSize::mib(64),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// `agent:` — the collector's own endpoint and identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// The address of the agent's own `/metrics` and health endpoints when it runs alone
    /// (`tidewatch agent`; default `127.0.0.1:9701`). Under `tidewatch up` they are served on
    /// the server's port.
    pub listen: SocketAddr,
    /// The node name put in the `node` label (default: the host name).
    pub node: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9701)),
            node: None,
        }
    }
}

/// `log:` — the process' own log output (on stderr).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`) or a tracing filter such as
    /// `info,tidewatch_store=debug` (default `info`). Applied live on reload.
    pub level: String,
    /// `text` or `json` (default `text`). Takes effect at the next start.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Values given on the command line; they win over the file, also after a reload.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` of `up` and `server`.
    pub listen: Option<SocketAddr>,
    /// `--listen` of `agent`.
    pub agent_listen: Option<SocketAddr>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

/// Where the configuration comes from.
#[derive(Clone, Debug)]
pub struct Source {
    /// The file, or `None` for the built-in defaults.
    pub path: Option<PathBuf>,
    /// Command-line values applied over the file.
    pub overrides: Overrides,
}

impl Source {
    /// `--config FILE` when given; else `./tidewatch.yaml` when it exists; else the defaults.
    pub fn resolve(explicit: Option<PathBuf>, overrides: Overrides) -> Self {
        let path = explicit.or_else(|| {
            let default = PathBuf::from("tidewatch.yaml");
            default.is_file().then_some(default)
        });
        Source { path, overrides }
    }

    /// Reads, checks and overrides the configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut config = match &self.path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        let o = &self.overrides;
        if let Some(d) = &o.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(l) = o.listen {
            config.server.listen = l;
        }
        if let Some(l) = o.agent_listen {
            config.agent.listen = l;
        }
        if let Some(l) = &o.log_level {
            config.log.level = l.clone();
        }
        if let Some(f) = o.log_format {
            config.log.format = f;
        }
        config.validate(self.path.as_deref().unwrap_or(Path::new("<command line>")))?;
        Ok(config)
    }
}

impl Config {
    /// Reads and parses `path` (without command-line overrides).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        Config::from_text(path, &text)
    }

    /// Parses a configuration text; `path` is only used in messages.
    pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let expanded = env::expand(text, |name| std::env::var(name).ok()).map_err(|e| ConfigError::env(path, e))?;
        // An empty file (or one holding only comments) is the defaults, as for a missing file.
        if expanded
            .text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Config::default());
        }
        let config: Config =
            yaml_serde::from_str(&expanded.text).map_err(|e| ConfigError::yaml(path, &e, &expanded))?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what the types cannot say.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if let Err(why) = check_log_filter(&self.log.level) {
            return Err(ConfigError::value(
                path,
                "log.level",
                format!(
                    "{:?} is not a level or filter: {why} (expected error, warn, info, debug, trace, or e.g. info,tidewatch_store=debug)",
                    self.log.level
                ),
            ));
        }
        if self.server.max_request_body.bytes() < 1024 {
            return Err(ConfigError::value(
                path,
                "server.max_request_body",
                "must be at least 1KiB".to_string(),
            ));
        }
        let m = &self.metrics;
        if m.block_range.as_std() < std::time::Duration::from_secs(60) {
            return Err(ConfigError::value(
                path,
                "metrics.block_range",
                "must be at least 1m".to_string(),
            ));
        }
        if m.block_range.as_std().as_millis() % 60_000 != 0 {
            return Err(ConfigError::value(
                path,
                "metrics.block_range",
                "must be a whole number of minutes".to_string(),
            ));
        }
        if m.wal.segment_size.bytes() < 1 << 20 {
            return Err(ConfigError::value(
                path,
                "metrics.wal.segment_size",
                "must be at least 1MiB".to_string(),
            ));
        }
        if m.limits.max_active_series == 0 || m.limits.max_series_per_request == 0 {
            return Err(ConfigError::value(
                path,
                "metrics.limits",
                "series limits must be at least 1".to_string(),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::value(path, "data_dir", "must not be empty".to_string()));
        }
        Ok(())
    }

    /// The configuration as YAML, for `/api/v1/status/config` and `tidewatch config show`.
    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// Whether going from `self` to `new` needs a restart to take full effect, and why.
    pub fn restart_needed_for(&self, new: &Config) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.data_dir != new.data_dir {
            why.push("data_dir");
        }
        if self.server.listen != new.server.listen {
            why.push("server.listen");
        }
        if self.agent.listen != new.agent.listen {
            why.push("agent.listen");
        }
        if self.log.format != new.log.format {
            why.push("log.format");
        }
        if self.metrics != new.metrics {
            why.push("metrics");
        }
        if self.logs != new.logs {
            why.push("logs");
        }
        why
    }
}

/// Checks a `log.level` value. tracing's filter syntax takes any bare word as a target name,
/// so a misspelt level (`debg`) would silently log nothing; here a bare word must be a level.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains('[') => continue,
            None => directive,
        };
        if !is_level(level) {
            return Err(format!("{level:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
