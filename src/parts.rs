//! The server parts that sit on top of the store: the scheduler with its autoscaler (and,
//! once configured, the alert engine). Each is started here from the configuration, gets its
//! routes merged, follows configuration reloads, and is stopped before the store closes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
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
    }
}

/// Whether the configuration asks for a scheduler: services inline or a services folder.
fn wants_scheduler(config: &Config) -> bool {
    !config.scheduler.services.is_empty() || config.scheduler.services_dir.is_some()
}

/// Starts the scheduler and the autoscaler when services are configured. A scheduler that
/// cannot reach Docker is logged and left out: metrics, logs and queries still run.
pub async fn start(
    config: &Config,
    mut config_rx: watch::Receiver<Arc<Config>>,
    query: Arc<dyn Query>,
    appender: Arc<dyn Appender>,
) -> Parts {
    let mut parts = Parts {
        routes: Router::new(),
        registry: Registry::default(),
        autoscaler_stop: CancellationToken::new(),
        autoscaler_task: None,
        scheduler_stop: CancellationToken::new(),
        scheduler_tasks: Vec::new(),
    };
    if !wants_scheduler(config) {
        info!("no services configured (scheduler.services, scheduler.services_dir): scheduler and autoscaler off");
        return parts;
    }
    let scheduler = match Scheduler::open(&config.data_dir, config.scheduler.clone(), Some(appender.clone())).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot start the scheduler; services are not run until the next start");
            return parts;
        }
    };
    parts.routes = parts.routes.merge(tidewatch_scheduler::router(scheduler.clone()));
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
    parts.routes = parts.routes.merge(autoscaler.clone().router());
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
    parts
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
