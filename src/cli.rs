//! The command line: every subcommand, its options and its help text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

/// Tidewatch watches the containers of a fleet and keeps it the right size: metrics and logs
/// from every node, PromQL and LogQL, alerts by email and webhook, and a scheduler with an
/// autoscaler, in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "tidewatch",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("TIDEWATCH_REVISION"), ")"),
    propagate_version = true,
    after_help = "Examples:\n  tidewatch up                          # everything on this machine, data in ./data, http://127.0.0.1:9700\n  tidewatch --config /etc/tidewatch.yaml server\n  tidewatch config check tidewatch.yaml\n\nConfiguration: --config FILE, else ./tidewatch.yaml when present, else built-in defaults.\nSee tidewatch.example.yaml for every key."
)]
pub struct Cli {
    /// The configuration file (YAML). Default: ./tidewatch.yaml when it exists, else the
    /// built-in defaults.
    #[arg(long, global = true, value_name = "FILE", env = "TIDEWATCH_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log level or filter, overriding `log.level` (error, warn, info, debug, trace, or e.g.
    /// `info,tidewatch_store=debug`).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format, overriding `log.format`.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every part in one process: server and agent, with one data folder.
    ///
    /// What a newcomer starts first. The HTTP API, the UI and /metrics listen on
    /// server.listen (default 127.0.0.1:9700). Stop with Ctrl-C or SIGTERM: buffers are
    /// flushed before exit.
    #[command(
        after_help = "Examples:\n  tidewatch up\n  tidewatch up --demo        # plus a demo service that autoscales, and alert rules\n  tidewatch up --data-dir /var/lib/tidewatch --listen 127.0.0.1:9800"
    )]
    Up(ServeArgs),

    /// Run the server parts: storage, queries, alerts, scheduler, autoscaler and the UI.
    ///
    /// Agents on other nodes ship to it. Reloads its configuration on file change, on SIGHUP
    /// and on POST /-/reload.
    #[command(after_help = "Example:\n  tidewatch --config /etc/tidewatch/tidewatch.yaml server")]
    Server(ServeArgs),

    /// Run the collector on this node and ship to a server.
    ///
    /// Serves its own /metrics, /-/healthy and /-/ready on agent.listen (default
    /// 127.0.0.1:9701). Its disk buffer lives in <data_dir>/collector.
    #[command(after_help = "Example:\n  tidewatch --config /etc/tidewatch/agent.yaml agent")]
    Agent(AgentArgs),

    /// Check or show configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Backfill samples from a Prometheus text or OpenMetrics file with timestamps.
    ///
    /// Writes blocks straight into <data_dir>/metrics/blocks (stop the server first), one per
    /// block range (metrics.block_range), reading the file once per block so memory holds one
    /// block range of samples at a time. A .gz file is decompressed on the fly. Every error
    /// names its line; nothing is written unless the whole file parses.
    #[command(
        after_help = "Examples:\n  promtool tsdb dump --format=openmetrics ... > dump.om && tidewatch import dump.om\n  tidewatch import --data-dir /var/lib/tidewatch node-1s-30m.om.gz"
    )]
    Import {
        /// The file (.om, .prom, .txt; .gz for gzip).
        file: PathBuf,
        /// The data folder, overriding data_dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The format: detect (OpenMetrics when timestamps have a fraction or `# EOF` is
        /// present, else Prometheus text with millisecond timestamps), prometheus or
        /// openmetrics.
        #[arg(long, value_enum, default_value = "detect")]
        format: ImportFormat,
    },

    /// Run a PromQL query against a server and print the answer.
    ///
    /// An instant query at --time (default now), or with --range a range query ending now.
    /// Talks to the server's Prometheus API, so it also works against a Prometheus.
    #[command(
        after_help = "Examples:\n  tidewatch query 'up'\n  tidewatch query 'sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\"}[5m]))' --range 1h --output chart\n  tidewatch query 'topk(5, container_memory_working_set_bytes)' --output json\n  tidewatch query --server http://10.0.0.5:9700 'count(up == 0)'"
    )]
    Query {
        /// The PromQL expression.
        expr: String,
        #[command(flatten)]
        client: ClientArgs,
        /// Evaluation time of an instant query (RFC 3339 or Unix seconds; default now).
        #[arg(long, value_name = "TIME", conflicts_with = "range")]
        time: Option<String>,
        /// Run a range query over the last RANGE (e.g. 1h, 30m).
        #[arg(long, value_name = "RANGE")]
        range: Option<tidewatch_model::Duration>,
        /// Step of a range query (default: range ÷ 200, at least 1s).
        #[arg(long, value_name = "STEP", requires = "range")]
        step: Option<tidewatch_model::Duration>,
        /// How to print the answer: table, json, or chart (a terminal chart of a range query).
        #[arg(long, short, value_enum, default_value = "table")]
        output: crate::client::Output,
    },

    /// Print log lines that match a LogQL query, oldest first, one colour per stream.
    ///
    /// Talks to the server's Loki API, so it also works against a Loki.
    #[command(
        after_help = "Examples:\n  tidewatch logs '{service=\"web\"}'\n  tidewatch logs '{container=\"api-1\"} |= \"error\"' --since 15m\n  tidewatch logs '{node=\"n1\", stream=\"stderr\"}' --follow"
    )]
    Logs {
        /// The LogQL log query (a stream selector, optionally with filters and parsers).
        query: String,
        #[command(flatten)]
        client: ClientArgs,
        /// How far back to start.
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        since: tidewatch_model::Duration,
        /// The most lines to print at first (the server may cap it).
        #[arg(long, value_name = "N", default_value_t = 1000)]
        limit: usize,
        /// Keep printing new lines as they arrive (polls every second) until interrupted.
        #[arg(long, short)]
        follow: bool,
    },

    /// List the scheduler's services: desired, running and ready replicas, endpoints.
    #[command(after_help = "Example:\n  tidewatch services")]
    Services {
        #[command(flatten)]
        client: ClientArgs,
    },

    /// Set a service's replica count (the autoscaler, when the service has a policy, may change
    /// it again at its next decision).
    #[command(after_help = "Examples:\n  tidewatch scale web 5\n  tidewatch scale web 0")]
    Scale {
        /// The service.
        service: String,
        /// The replica count.
        replicas: u32,
        #[command(flatten)]
        client: ClientArgs,
    },

    /// Print the scheduler's recent events (created, started, unhealthy, replaced, scaled, ...).
    #[command(after_help = "Examples:\n  tidewatch events\n  tidewatch events --service web")]
    Events {
        /// Only this service's events.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },

    /// Check or unit-test Prometheus rule files, as promtool does.
    #[command(subcommand)]
    Rules(RulesCommand),

    /// Alerts and silences of the server's Alertmanager (API v2).
    #[command(subcommand)]
    Alerts(AlertsCommand),

    /// Ask the autoscaler about a service.
    #[command(subcommand)]
    Autoscaler(AutoscalerCommand),

    /// Print the version, git revision and compiler.
    #[command(after_help = "Example:\n  tidewatch version")]
    Version,

    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  tidewatch completions bash > /etc/bash_completion.d/tidewatch\n  tidewatch completions zsh > \"${fpath[1]}/_tidewatch\"\n  tidewatch completions fish > ~/.config/fish/completions/tidewatch.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options of `up` and `server`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// (`up` only) Also run a demo: a small service with an autoscaling policy and alert rules
    /// (needs Docker and /bin/busybox; nothing is pulled).
    #[arg(long)]
    pub demo: bool,

    /// The address to listen on, overriding server.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The data folder, overriding data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// How the client subcommands reach a server.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's base URL (default: http:// and server.listen of the configuration).
    #[arg(long, value_name = "URL", env = "TIDEWATCH_SERVER")]
    pub server: Option<String>,
    /// Give up on a request after this long.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub timeout: tidewatch_model::Duration,
}

/// Options of `agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The address of the agent's own endpoints, overriding agent.listen.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// The data folder, overriding data_dir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `tidewatch rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule files: YAML, PromQL/LogQL expressions, templates. Exit 1 on the first bad
    /// file, naming file, line and rule.
    #[command(after_help = "Example:\n  tidewatch rules check rules/*.yml")]
    Check {
        /// The rule files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run unit tests written in promtool's format (`rule_files`, `tests` with `input_series`,
    /// `alert_rule_test`, `promql_expr_test`). Exit 1 when one fails.
    #[command(after_help = "Example:\n  tidewatch rules test tests/alerts_test.yml")]
    Test {
        /// The test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `tidewatch alerts ...`.
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// List the alerts the Alertmanager holds: state, labels, since when.
    #[command(after_help = "Example:\n  tidewatch alerts list")]
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create, list and expire silences.
    #[command(subcommand)]
    Silence(SilenceCommand),
}

/// `tidewatch alerts silence ...`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence the alerts that match every matcher, for a while; prints the silence's id.
    #[command(
        after_help = "Examples:\n  tidewatch alerts silence add alertname=HighLatency --duration 2h --comment 'deploying'\n  tidewatch alerts silence add 'instance=~\"web-.*\"' severity!=critical"
    )]
    Add {
        /// Matchers: name=value, name!=value, name=~regex, name!~regex.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long from now.
        #[arg(long, default_value = "1h")]
        duration: tidewatch_model::Duration,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List silences (active, pending and expired).
    #[command(after_help = "Example:\n  tidewatch alerts silence list")]
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Expire a silence now.
    #[command(after_help = "Example:\n  tidewatch alerts silence expire 6f7c2d1e-...")]
    Expire {
        /// The silence's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `tidewatch autoscaler ...`.
#[derive(Debug, Subcommand)]
pub enum AutoscalerCommand {
    /// Explain a service's scaling as `kubectl describe hpa` does: current and desired
    /// replicas, each metric against its target, the conditions and the recent decisions
    /// with their reasons.
    #[command(after_help = "Example:\n  tidewatch autoscaler explain web")]
    Explain {
        /// The service.
        service: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `tidewatch config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check configuration files; exit 1 with FILE:LINE:COLUMN: KEY: message for the first
    /// error of each bad file.
    #[command(after_help = "Example:\n  tidewatch config check tidewatch.yaml && systemctl reload tidewatch")]
    Check {
        /// The files (default: the file --config or ./tidewatch.yaml names).
        files: Vec<PathBuf>,
    },
    /// Print the configuration in force, defaults filled in, as YAML.
    #[command(after_help = "Example:\n  tidewatch --config tidewatch.yaml config show")]
    Show,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_consistent_and_every_subcommand_has_help_with_an_example() {
        Cli::command().debug_assert();
        let mut cmd = Cli::command();
        fn walk(cmd: &mut clap::Command, path: &str) {
            for sub in cmd.get_subcommands_mut() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_name() == "help" {
                    continue;
                }
                assert!(sub.get_about().is_some(), "{name} has no help text");
                if sub.has_subcommands() {
                    walk(sub, &name);
                } else {
                    let help = sub.render_long_help().to_string();
                    assert!(help.contains("Example"), "{name} --help has no example:\n{help}");
                }
            }
        }
        walk(&mut cmd, "tidewatch");
    }
}

/// The text formats `import` reads.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ImportFormat {
    /// Decide from the file.
    Detect,
    /// Prometheus text exposition, timestamps in milliseconds.
    Prometheus,
    /// OpenMetrics, timestamps in seconds.
    Openmetrics,
}
