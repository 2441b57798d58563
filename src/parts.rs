//! The server parts that sit on top of the store: the alert engine (rules and the
//! Alertmanager) and the scheduler with its autoscaler. Each is started here from the
//! configuration, gets its routes merged, follows configuration reloads, and is stopped before
//! the store closes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use tidewatch_alertmanager::AlertSink;
use tidewatch_alertmanager::notify::Alertmanager;
use tidewatch_alertmanager::rules::RuleManager;
use tidewatch_autoscaler::{Autoscaler, Policy};
use tidewatch_model::{Appender, Query, Replicas};
use tidewatch_scheduler::Scheduler;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;

/// What [`start`] started, to stop in order.
pub struct Parts {
    /// Routes to merge into the server's router.
    pub routes: Router,
    /// Metrics of the parts.
    pub registry: Registry,
    /// Told of every acknowledged write, so rules without `for` fire without waiting for
    /// their group's next tick.
    pub rules: Option<RuleManager>,
    /// Cancelled last: rule evaluation and notifications stop (notification log and silences
    /// are on disk already).
    alerts_stop: CancellationToken,
    alerts_tasks: Vec<JoinHandle<()>>,
    /// Cancelled first at shutdown: the autoscaler stops deciding.
    autoscaler_stop: CancellationToken,
    autoscaler_task: Option<JoinHandle<()>>,
    /// Cancelled next: the scheduler stops reconciling (its containers keep running).
    scheduler_stop: CancellationToken,
    scheduler_tasks: Vec<JoinHandle<()>>,
}

impl Parts {
    /// Stops the autoscaler, then the scheduler; containers are left running for the next
    /// start to adopt.
    pub async fn stop(self) {
        self.autoscaler_stop.cancel();
        if let Some(t) = self.autoscaler_task {
            let _ = t.await;
        }
        self.scheduler_stop.cancel();
        for t in self.scheduler_tasks {
            let _ = t.await;
        }
        self.alerts_stop.cancel();
        for t in self.alerts_tasks {
            let _ = t.await;
        }
    }
}

/// Whether the configuration asks for a scheduler: services inline or a services folder.
fn wants_scheduler(config: &Config) -> bool {
    !config.scheduler.services.is_empty() || config.scheduler.services_dir.is_some()
}

/// The query interfaces the parts read through.
pub struct Queries {
    /// PromQL or LogQL, told apart by the expression (the autoscaler's policies).
    pub any: Arc<dyn Query>,
    /// PromQL only (rule expressions the rule engine takes for PromQL).
    pub promql: Arc<dyn Query>,
    /// LogQL only (rules the rule engine takes for LogQL, as Loki's ruler runs them).
    pub logql: Arc<dyn Query>,
}

/// Starts the alert engine, and the scheduler with the autoscaler when services are
/// configured. A scheduler that cannot reach Docker is logged and left out, and a broken rule
/// file is logged and skipped: metrics, logs and queries still run. A broken alertmanager.yml
/// stops the start with its file, line and field, as Alertmanager itself refuses to start.
pub async fn start(
    config: &Config,
    config_dir: std::path::PathBuf,
    config_rx: watch::Receiver<Arc<Config>>,
    queries: Queries,
    appender: Arc<dyn Appender>,
) -> anyhow::Result<Parts> {
    let mut parts = Parts {
        routes: Router::new(),
        registry: Registry::default(),
        rules: None,
        alerts_stop: CancellationToken::new(),
        alerts_tasks: Vec::new(),
        autoscaler_stop: CancellationToken::new(),
        autoscaler_task: None,
        scheduler_stop: CancellationToken::new(),
        scheduler_tasks: Vec::new(),
    };
    start_alerts(
        &mut parts,
        config,
        config_dir,
        config_rx.clone(),
        &queries,
        appender.clone(),
    )?;
    start_services(&mut parts, config, config_rx, queries.any, appender).await;
    Ok(parts)
}

/// The Alertmanager (API v2, routing, receivers; its state in `<data_dir>/alerts`) and the rule
/// engine, which hands it its alerts in process.
fn start_alerts(
    parts: &mut Parts,
    config: &Config,
    config_dir: std::path::PathBuf,
    mut config_rx: watch::Receiver<Arc<Config>>,
    queries: &Queries,
    appender: Arc<dyn Appender>,
) -> anyhow::Result<()> {
    // A relative alertmanager.yml path is taken from the configuration's folder.
    let settings = {
        let dir = config_dir.clone();
        move |s: &tidewatch_alertmanager::notify::NotifySettings| {
            let mut s = s.clone();
            s.config_file = s.config_file.map(|f| if f.is_relative() { dir.join(f) } else { f });
            s
        }
    };
    let am_config = settings(&config.alertmanager)
        .load()
        .map_err(|e| anyhow::anyhow!("alertmanager: {e}"))?;
    let am = Alertmanager::open(&config.data_dir.join("alerts"), am_config).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the alert state in {}: {e}",
            config.data_dir.join("alerts").display()
        )
    })?;
    am.register_metrics(&mut parts.registry);
    parts.routes = parts
        .routes
        .clone()
        .merge(tidewatch_alertmanager::notify::router(am.clone()));
    parts
        .alerts_tasks
        .push(tokio::spawn(am.clone().run(parts.alerts_stop.clone())));

    let rules = RuleManager::new(
        queries.promql.clone(),
        Some(queries.logql.clone()),
        appender,
        am.clone() as Arc<dyn AlertSink>,
        config.rules.clone(),
    );
    let load = move |rules: &RuleManager| {
        let rules = rules.clone();
        let dir = config_dir.clone();
        async move {
            match rules.resolve_files(&dir) {
                Err(e) => warn!(error = %e, "rule files not loaded"),
                Ok(paths) => match rules.load_files(&paths).await {
                    Ok(n) => info!(files = paths.len(), rules = n, "rules loaded"),
                    Err(errors) => {
                        for e in errors {
                            error!(error = %e, "rule file refused; the rules in force stay");
                        }
                    }
                },
            }
        }
    };
    parts.routes = parts
        .routes
        .clone()
        .merge(tidewatch_alertmanager::rules::router(rules.clone()));
    parts
        .alerts_tasks
        .push(tokio::spawn(rules.clone().run(parts.alerts_stop.clone())));
    parts.rules = Some(rules.clone());

    // Reloads re-read the rule files (the globs of `rules.files` are those of the start) and
    // the alertmanager.yml.
    let stop = parts.alerts_stop.clone();
    parts.alerts_tasks.push(tokio::spawn(async move {
        load(&rules).await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = config_rx.changed() => if changed.is_err() { return },
            }
            let current = settings(&config_rx.borrow_and_update().alertmanager);
            match current.load() {
                Ok(file) => {
                    if let Err(e) = am.reload(file) {
                        error!(error = %e, "alertmanager configuration refused; the one in force stays");
                    }
                }
                Err(e) => error!(error = %e, "alertmanager configuration refused; the one in force stays"),
            }
            load(&rules).await;
        }
    }));
    Ok(())
}

/// The scheduler and the autoscaler, when services are configured.
async fn start_services(
    parts: &mut Parts,
    config: &Config,
    mut config_rx: watch::Receiver<Arc<Config>>,
    query: Arc<dyn Query>,
    appender: Arc<dyn Appender>,
) {
    if !wants_scheduler(config) {
        info!("no services configured (scheduler.services, scheduler.services_dir): scheduler and autoscaler off");
        return;
    }
    let scheduler = match Scheduler::open(&config.data_dir, config.scheduler.clone(), Some(appender.clone())).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot start the scheduler; services are not run until the next start");
            return;
        }
    };
    parts.routes = parts
        .routes
        .clone()
        .merge(tidewatch_scheduler::router(scheduler.clone()));
    let stop = parts.scheduler_stop.clone();
    parts
        .scheduler_tasks
        .push(tokio::spawn(scheduler.clone().run(stop.cancelled_owned())));

    let autoscaler = Arc::new(Autoscaler::new(
        query,
        scheduler.clone() as Arc<dyn Replicas>,
        Some(appender),
    ));
    autoscaler.register(&mut parts.registry);
    let mut applied = HashMap::new();
    apply_policies(&autoscaler, &scheduler, &mut applied);
    parts.routes = parts.routes.clone().merge(autoscaler.clone().router());
    parts.autoscaler_task = Some(tokio::spawn(autoscaler.clone().run(parts.autoscaler_stop.clone())));

    // Follow reloads: the main file's inline services, and the services folder, whose specs
    // the scheduler re-reads on its own; policies follow the specs either way.
    let stop = parts.scheduler_stop.clone();
    parts.scheduler_tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = config_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let inline = config_rx.borrow_and_update().scheduler.services.clone();
                    if let Err(e) = scheduler.reload(&inline).await {
                        warn!(error = %e, "services not reloaded; the specs in force stay");
                    }
                }
                _ = tick.tick() => {}
            }
            apply_policies(&autoscaler, &scheduler, &mut applied);
        }
    }));
}

/// Hands the `autoscale` sections of the specs to the autoscaler when they changed.
fn apply_policies(autoscaler: &Autoscaler, scheduler: &Scheduler, applied: &mut HashMap<String, Policy>) {
    let mut policies = HashMap::new();
    for spec in scheduler.specs() {
        let Some(section) = spec.autoscale.clone() else {
            continue;
        };
        match Policy::from_yaml_value(section) {
            Ok(p) => {
                policies.insert(spec.name.clone(), p);
            }
            Err(e) => {
                warn!(service = %spec.name, error = %e, "autoscale section refused; the service is not autoscaled")
            }
        }
    }
    if *applied == policies {
        return;
    }
    match autoscaler.set_policies(policies.clone()) {
        Ok(()) => *applied = policies,
        Err(e) => warn!(error = %e, "autoscale policies refused; the policies in force stay"),
    }
}
