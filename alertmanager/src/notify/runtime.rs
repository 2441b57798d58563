//! A config compiled for running: the route tree, inhibition rules, receivers with their
//! integrations, time intervals and templates. Compiling is also the config's validation.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::config::{AlertmanagerConfigFile, ConfigError};
use super::inhibit::InhibitRule;
use super::receivers::{Integration, IntegrationKind, Receiver, email::Email, webhook::Webhook};
use super::route::Route;
use super::template::Templates;
use super::time_interval::TimeInterval;

/// The compiled config.
pub struct Runtime {
    /// Root of the routing tree.
    pub route: Route,
    /// Inhibition rules.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Receivers by name.
    pub receivers: HashMap<String, Arc<Receiver>>,
    /// Time intervals by name.
    pub time_intervals: HashMap<String, Vec<TimeInterval>>,
    /// How long an alert without `endsAt` stays firing.
    pub resolve_timeout: Duration,
    /// This Alertmanager's URL.
    pub external_url: String,
}

/// Installs ring as rustls' provider (reqwest is built with `rustls-no-provider`).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Runtime {
    /// Compiles a parsed file; every error names file, line and field.
    pub fn compile(file: &AlertmanagerConfigFile) -> Result<Runtime, ConfigError> {
        install_crypto_provider();
        let cfg = &file.config;
        let mut names = std::collections::HashSet::new();
        for (i, r) in cfg.receivers.iter().enumerate() {
            if r.name.is_empty() {
                return Err(file.error(format!("receivers[{i}].name"), "receivers:", "missing name in receiver"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(file.error(
                    format!("receivers[{i}].name"),
                    &r.name,
                    format!("notification config name {:?} is not unique", r.name),
                ));
            }
        }
        let route = Route::compile_root(file)?;
        let inhibit_rules = InhibitRule::compile_all(file)?;

        let mut time_intervals = HashMap::new();
        for (list, section) in [
            (&cfg.time_intervals, "time_intervals"),
            (&cfg.mute_time_intervals, "mute_time_intervals"),
        ] {
            for (i, ti) in list.iter().enumerate() {
                let field = format!("{section}[{i}]");
                if time_intervals.contains_key(&ti.name) {
                    return Err(file.error(
                        format!("{field}.name"),
                        &ti.name,
                        format!("time interval {:?} is not unique", ti.name),
                    ));
                }
                let compiled = ti
                    .time_intervals
                    .iter()
                    .enumerate()
                    .map(|(j, s)| TimeInterval::compile(s, &format!("{field}.time_intervals[{j}]"), file))
                    .collect::<Result<Vec<_>, _>>()?;
                time_intervals.insert(ti.name.clone(), compiled);
            }
        }
        let mut nodes = Vec::new();
        route.walk(&mut nodes);
        for node in nodes {
            for name in node
                .opts
                .mute_time_intervals
                .iter()
                .chain(&node.opts.active_time_intervals)
            {
                if !time_intervals.contains_key(name) {
                    return Err(file.error(
                        "route.mute_time_intervals",
                        name,
                        format!("undefined time interval {name:?} used in route"),
                    ));
                }
            }
        }

        let base_dir = Path::new(&file.source).parent().filter(|p| p.exists());
        let templates =
            Arc::new(Templates::load(&cfg.templates, base_dir).map_err(|e| file.error("templates", "templates", e))?);
        let mut receivers = HashMap::new();
        for (i, r) in cfg.receivers.iter().enumerate() {
            let mut integrations = Vec::new();
            for (j, w) in r.webhook_configs.iter().enumerate() {
                let hook = Webhook::new(w, cfg.global.http_config.as_ref()).map_err(|e| {
                    file.error(
                        format!("receivers[{i}].webhook_configs[{j}]"),
                        w.url.as_deref().unwrap_or(&r.name),
                        e,
                    )
                })?;
                integrations.push(Integration {
                    name: "webhook",
                    index: j,
                    send_resolved: w.send_resolved.unwrap_or(true),
                    kind: IntegrationKind::Webhook(hook),
                });
            }
            for (j, e) in r.email_configs.iter().enumerate() {
                let mail = Email::new(e, &cfg.global, templates.clone()).map_err(|msg| {
                    file.error(
                        format!("receivers[{i}].email_configs[{j}]"),
                        e.to.as_deref().unwrap_or(&r.name),
                        msg,
                    )
                })?;
                integrations.push(Integration {
                    name: "email",
                    index: j,
                    send_resolved: e.send_resolved.unwrap_or(false),
                    kind: IntegrationKind::Email(Box::new(mail)),
                });
            }
            for (kind, n) in r.unsupported() {
                for j in 0..n {
                    integrations.push(Integration {
                        name: kind,
                        index: j,
                        send_resolved: false,
                        kind: IntegrationKind::Unsupported,
                    });
                }
            }
            receivers.insert(
                r.name.clone(),
                Arc::new(Receiver {
                    name: r.name.clone(),
                    integrations,
                }),
            );
        }
        Ok(Runtime {
            route,
            inhibit_rules,
            receivers,
            time_intervals,
            resolve_timeout: cfg
                .global
                .resolve_timeout
                .map(|d| d.as_std())
                .unwrap_or(Duration::from_secs(300)),
            external_url: file.external_url.clone(),
        })
    }

    /// Whether a route's mute/active time intervals silence it at `now`.
    pub fn route_muted(&self, opts: &super::route::RouteOpts, now: chrono::DateTime<chrono::Utc>) -> bool {
        let within = |name: &String| {
            self.time_intervals
                .get(name)
                .is_some_and(|tis| tis.iter().any(|t| t.contains(now)))
        };
        if !opts.active_time_intervals.is_empty() && !opts.active_time_intervals.iter().any(within) {
            return true;
        }
        opts.mute_time_intervals.iter().any(within)
    }
}
