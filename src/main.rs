//! `tidewatch`: the one binary. Parses the command line, loads the configuration and hands
//! over to [`run`] for the long-running roles.

mod agent;
mod cli;
mod client;
mod config;
mod data_dir;
mod demo;
mod http;
mod import;
mod logging;
mod parts;
mod reload;
mod rules_cli;
mod run;
mod self_metrics;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command, ConfigCommand};
use crate::config::{Config, Overrides, Source};
use crate::logging::Logging;
use crate::run::Role;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
        ..Default::default()
    };
    let role = match cli.command {
        Command::Up(ref args) => {
            overrides.listen = args.listen;
            overrides.data_dir = args.data_dir.clone();
            Role::Up
        }
        Command::Server(ref args) if args.demo => {
            eprintln!(
                "error: --demo runs with `tidewatch up` (it needs the collector and the scheduler in one process)"
            );
            return ExitCode::FAILURE;
        }
        Command::Server(ref args) => {
            overrides.listen = args.listen;
            overrides.data_dir = args.data_dir.clone();
            Role::Server
        }
        Command::Agent(ref args) => {
            overrides.data_dir = args.data_dir.clone();
            overrides.agent_listen = args.listen;
            Role::Agent
        }
        Command::Config(ConfigCommand::Check { files }) => return config_check(cli.config, files),
        Command::Config(ConfigCommand::Show) => {
            return match Source::resolve(cli.config, overrides).load() {
                Ok(c) => {
                    print!("{}", c.to_yaml());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        Command::Import { file, data_dir, format } => {
            overrides.data_dir = data_dir;
            let config = match Source::resolve(cli.config, overrides).load() {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            let format = match format {
                cli::ImportFormat::Detect => tidewatch_store::metrics::openmetrics::Format::Detect,
                cli::ImportFormat::Prometheus => tidewatch_store::metrics::openmetrics::Format::Prometheus,
                cli::ImportFormat::Openmetrics => tidewatch_store::metrics::openmetrics::Format::OpenMetrics,
            };
            let range = config.metrics.block_range.as_std().as_millis() as i64;
            return match import::import(&file, &config.data_dir, format, range) {
                Ok((blocks, samples)) => {
                    println!(
                        "imported {samples} samples into {blocks} blocks in {}",
                        config.data_dir.join("metrics/blocks").display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        Command::Query {
            expr,
            client,
            time,
            range,
            step,
            output,
        } => {
            let args = match server_url(cli.config, client.server) {
                Ok(server) => client::QueryArgs {
                    server,
                    expr,
                    time,
                    range: range.map(|r| r.as_std()),
                    step: step.map(|s| s.as_std()),
                    output,
                    timeout: client.timeout.as_std(),
                },
                Err(e) => return fail(&e),
            };
            return client::query(args).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS);
        }
        Command::Logs {
            query,
            client,
            since,
            limit,
            follow,
        } => {
            let args = match server_url(cli.config, client.server) {
                Ok(server) => client::LogsArgs {
                    server,
                    query,
                    since: since.as_std(),
                    limit,
                    follow,
                    timeout: client.timeout.as_std(),
                },
                Err(e) => return fail(&e),
            };
            return client::logs(args).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS);
        }
        Command::Services { client } => {
            return scheduler_cli(cli.config, client.server, |url, out| {
                tidewatch_scheduler::cli::services(url, out)
            });
        }
        Command::Scale {
            service,
            replicas,
            client,
        } => {
            return scheduler_cli(cli.config, client.server, |url, out| {
                tidewatch_scheduler::cli::scale(url, &service, replicas, out)
            });
        }
        Command::Events { service, client } => {
            return scheduler_cli(cli.config, client.server, |url, out| {
                tidewatch_scheduler::cli::events(url, service.as_deref(), out)
            });
        }
        Command::Rules(cli::RulesCommand::Check { files }) => {
            return rules_cli::check(&files).map_or_else(|e| fail(&e), exit_for);
        }
        Command::Rules(cli::RulesCommand::Test { files }) => {
            return rules_cli::test(&files).map_or_else(|e| fail(&e), exit_for);
        }
        Command::Alerts(command) => {
            use cli::{AlertsCommand, SilenceCommand};
            let (server, timeout) = match &command {
                AlertsCommand::List { client }
                | AlertsCommand::Silence(SilenceCommand::Add { client, .. })
                | AlertsCommand::Silence(SilenceCommand::List { client })
                | AlertsCommand::Silence(SilenceCommand::Expire { client, .. }) => {
                    (client.server.clone(), client.timeout.as_std())
                }
            };
            let server = match server_url(cli.config, server) {
                Ok(server) => server,
                Err(e) => return fail(&e),
            };
            let result = match command {
                AlertsCommand::List { .. } => client::alerts_list(&server, timeout),
                AlertsCommand::Silence(SilenceCommand::Add {
                    matchers,
                    duration,
                    comment,
                    author,
                    ..
                }) => client::silence_add(&server, timeout, &matchers, duration.as_std(), &comment, author),
                AlertsCommand::Silence(SilenceCommand::List { .. }) => client::silence_list(&server, timeout),
                AlertsCommand::Silence(SilenceCommand::Expire { id, .. }) => {
                    client::silence_expire(&server, timeout, &path_segment(&id))
                }
            };
            return result.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS);
        }
        Command::Autoscaler(cli::AutoscalerCommand::Explain { service, client }) => {
            let server = match server_url(cli.config, client.server) {
                Ok(server) => server,
                Err(e) => return fail(&e),
            };
            let path = format!("/api/v1/autoscaler/{}/explain", path_segment(&service));
            return client::print_text(&server, &path, client.timeout.as_std())
                .map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS);
        }
        Command::Version => {
            println!(
                "tidewatch {} (revision {}, {})",
                env!("CARGO_PKG_VERSION"),
                env!("TIDEWATCH_REVISION"),
                env!("TIDEWATCH_RUSTC")
            );
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tidewatch", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
    };
    let demo = matches!(cli.command, Command::Up(ref args) if args.demo);
    serve(role, Source::resolve(cli.config, overrides), demo)
}

/// Loads the configuration, starts logging and runs a long-lived role.
fn serve(role: Role, source: Source, demo: bool) -> ExitCode {
    let mut config = match source.load() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    if demo {
        if let Err(e) = demo::prepare(&mut config) {
            return fail(&e);
        }
        eprintln!("{}", demo::banner(&config));
    }
    let (logging, log_guard) = match Logging::init(&config.log.level, config.log.format) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let result = run::run(role, source, config, logging);
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "stopped");
    }
    // Flushes every queued log line; nothing may log after this.
    drop(log_guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Also on stderr as plain text, for a person reading a terminal or a unit's status.
        Err(e) => fail(&e),
    }
}

fn config_check(explicit: Option<std::path::PathBuf>, files: Vec<std::path::PathBuf>) -> ExitCode {
    let files = if files.is_empty() {
        match Source::resolve(explicit, Overrides::default()).path {
            Some(p) => vec![p],
            None => {
                eprintln!("error: no file to check: name one, pass --config, or create ./tidewatch.yaml");
                return ExitCode::FAILURE;
            }
        }
    } else {
        files
    };
    let mut ok = true;
    for file in files {
        match Config::from_file(&file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The server a client subcommand talks to: `--server`, else the configured listen address.
fn server_url(config: Option<std::path::PathBuf>, explicit: Option<String>) -> Result<String, config::ConfigError> {
    if let Some(url) = explicit {
        return Ok(if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        });
    }
    let config = Source::resolve(config, Overrides::default()).load()?;
    Ok(format!("http://{}", config.server.listen))
}

/// Runs one of the scheduler's client commands against the server.
fn scheduler_cli(
    config: Option<std::path::PathBuf>,
    server: Option<String>,
    command: impl FnOnce(&str, &mut dyn std::io::Write) -> Result<(), tidewatch_scheduler::cli::CliError>,
) -> ExitCode {
    let url = match server_url(config, server) {
        Ok(url) => url,
        Err(e) => return fail(&e),
    };
    match command(&url, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Exit status of a check: 0 when everything passed, 1 otherwise.
fn exit_for(passed: bool) -> ExitCode {
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Percent-encodes a name for use as one URL path segment.
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}
