//! Process life for `up`, `server` and `agent`: open the parts, serve, and stop in order.
//!
//! Stop order (SIGINT or SIGTERM; a second signal exits at once with status 1):
//! 1. the HTTP listeners stop accepting and finish the requests in flight, for at most
//!    `server.shutdown_timeout`, so no write is acknowledged after this point;
//! 2. the reloader stops;
//! 3. the autoscaler stops deciding, then the scheduler stops reconciling (its containers keep
//!    running, and the next start adopts them); storage maintenance stops; then the stores
//!    flush and close: the log store indexes and commits what is queued, the metrics store's WAL
//!    writes and syncs it (the collector stops before them, so the agent's last batch reaches a
//!    store that is still open);
//! 4. the data folder locks are released and "shutdown complete" is logged;
//! 5. `main` drops the [`crate::logging::LogGuard`], which flushes the last lines, and exits 0.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};

use anyhow::Context;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tidewatch_store::logs::LogStore;
use tidewatch_store::metrics::{self, MetricsStore, http::RouteLimits};
use tidewatch_store::promql::{self, Engine, EngineOptions};
use tidewatch_store::{QueryRouter, Storage};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::{error, info, warn};

use crate::agent;
use crate::config::{Config, Source};
use crate::data_dir::DirLock;
use crate::http::{self, AppState, Readiness};
use crate::logging::Logging;
use crate::parts;
use crate::reload;
use crate::self_metrics::{self, ReloadMetrics};

/// Which parts a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process.
    Up,
    /// The server parts.
    Server,
    /// The collector only.
    Agent,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Up => "up",
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }

    fn runs_server(self) -> bool {
        matches!(self, Role::Up | Role::Server)
    }

    fn runs_agent(self) -> bool {
        matches!(self, Role::Up | Role::Agent)
    }
}

/// After the agent's thread wakes, it waits this long before running tasks, so the wake-ups of
/// fifty log sockets, timers and files arrive as one batch instead of hundreds a second: a
/// context switch cost more than the work it woke for. Delays the agent's work by at most this.
const AGENT_WAKE_COALESCE: std::time::Duration = std::time::Duration::from_millis(25);

/// Runs `role` until a signal, then shuts down in order.
pub fn run(role: Role, source: Source, config: Config, logging: Logging) -> anyhow::Result<()> {
    // The agent alone runs on one thread: its work is many small wake-ups (a log chunk, a
    // cgroup file), and handing them between workers cost more CPU than it did work (issue 5's
    // footprint). Blocking work still goes to tokio's blocking pool.
    let mut builder = match role {
        Role::Agent => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            b.on_thread_unpark(|| std::thread::sleep(AGENT_WAKE_COALESCE));
            b
        }
        Role::Up | Role::Server => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder
        .enable_all()
        .thread_name("tidewatch")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(serve(role, source, config, logging));
    // Tasks still running (a stuck client connection) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(role: Role, source: Source, config: Config, logging: Logging) -> anyhow::Result<()> {
    info!(role = role.name(), version = env!("CARGO_PKG_VERSION"), revision = env!("TIDEWATCH_REVISION"), config = ?source.path, "starting");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let readiness = Arc::new(Readiness::default());
    let mut registry = self_metrics::registry();
    let reload_metrics = ReloadMetrics::register(&mut registry);
    reload_metrics.record(true);
    let registries = Arc::new(RwLock::new(vec![Arc::new(registry)]));

    // Held until the end of this function: the kernel also drops them if the process dies.
    let mut locks = Vec::new();
    if role.runs_server() {
        readiness.wait_for("storage");
        locks.push(DirLock::acquire(&config.data_dir, "server")?);
    }
    if role.runs_agent() {
        readiness.wait_for("collector");
        locks.push(DirLock::acquire(&config.data_dir.join("collector"), "agent")?);
    }

    let listen = if role.runs_server() {
        config.server.listen
    } else {
        config.agent.listen
    };
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if !listen.ip().is_loopback() {
        warn!(%listen, "listening beyond loopback: the write and admin APIs have no authentication");
    }

    // Rule files and other relative paths of the configuration are taken from its folder.
    let config_dir = source
        .path
        .as_deref()
        .and_then(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from("."), |p| p.to_path_buf());
    let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let reloader = tokio::spawn(reload::run(
        source,
        config_tx,
        logging,
        reload_metrics,
        reload_rx,
        shutdown.clone(),
    ));

    let state_config = config_rx.clone();
    let state = AppState {
        readiness: readiness.clone(),
        registries: registries.clone(),
        config: config_rx,
        reload: Some(reload_tx),
    };
    // The parts' routes arrive once they are open; until then their paths answer 503, while
    // health, readiness and /metrics answer from the start.
    let parts: Arc<OnceLock<Router>> = Arc::new(OnceLock::new());
    let late = parts.clone();
    let app = Router::new()
        .merge(http::router(state))
        // The UI answers from the start (it is static); its pages wait for the APIs.
        .merge(tidewatch_dashboards::router(config.dashboards.dir.clone()))
        .fallback(move |request: Request| {
            let late = late.clone();
            async move {
                match late.get() {
                    Some(router) => router.clone().oneshot(request).await.into_response(),
                    None => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable: still starting\n").into_response(),
                }
            }
        })
        .layer(RequestBodyLimitLayer::new(
            config.server.max_request_body.bytes().try_into().unwrap_or(usize::MAX),
        ));
    let server = tokio::spawn(serve_http(listener, app, shutdown.clone()));
    info!(%listen, "listening");

    let mut routes = Router::new();
    let (store, logs, server_parts) = if role.runs_server() {
        let dir = config.data_dir.clone();
        let (metrics_config, logs_config) = (config.metrics.clone(), config.logs.clone());
        let opened = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut registry = prometheus_client::registry::Registry::default();
            let store = MetricsStore::open(&dir.join("metrics"), metrics_config, &mut registry)
                .context("cannot open the metrics store")?;
            let logs =
                LogStore::open(&dir.join("logs"), logs_config, &mut registry).context("cannot open the log store")?;
            Ok((Arc::new(store), Arc::new(logs), registry))
        });
        let (store, logs, registry) = tokio::select! {
            opened = opened => opened.context("the storage task failed")??,
            _ = shutdown.cancelled() => {
                // Stopped while replaying: nothing was accepted yet, so nothing to flush.
                info!("stopped before storage was open");
                return Ok(());
            }
        };
        registries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(registry));
        routes = routes.merge(metrics::http::routes(store.clone(), RouteLimits::default()));
        let engine = Arc::new(Engine::new(store.clone(), EngineOptions::default()));
        routes = routes.merge(promql::http::routes(engine.clone(), store.clone()));
        routes = routes.merge(tidewatch_store::logs::routes(logs.clone()));
        let queries = parts::Queries {
            any: Arc::new(QueryRouter {
                promql: engine.clone(),
                logs: logs.clone(),
            }),
            promql: engine,
            logql: logs.clone(),
        };
        let appender = Arc::new(Storage {
            metrics: store.clone(),
            logs: logs.clone(),
        });
        let mut started = parts::start(&config, config_dir.clone(), state_config.clone(), queries, appender).await?;
        routes = routes.merge(std::mem::take(&mut started.routes));
        if let Some(rules) = started.rules.clone() {
            // Rules without `for` are evaluated as soon as a write that may make them true is
            // acknowledged, not at their group's next tick.
            routes = routes.layer(axum::middleware::from_fn(
                move |request: Request, next: axum::middleware::Next| {
                    let rules = rules.clone();
                    async move {
                        let ingest = matches!(request.uri().path(), "/api/v1/write" | "/loki/api/v1/push");
                        let response = next.run(request).await;
                        if ingest && response.status().is_success() {
                            rules.notify_ingested();
                        }
                        response
                    }
                },
            ));
        }
        registries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(std::mem::take(&mut started.registry)));
        (Some(store), Some(logs), Some(started))
    } else {
        (None, None, None)
    };
    let maintenance = store.clone().map(|s| tokio::spawn(maintain(s, shutdown.clone())));
    let _ = parts.set(routes);
    if role.runs_server() {
        // Ready once every route answers: the stores and the parts above them are open.
        readiness.ready("storage");
    }
    let collector = if role.runs_agent() {
        // Under `up` it ships to this process' own listener.
        let ship_to = (role == Role::Up).then(|| format!("http://{}", config.server.listen));
        let mut running = agent::start(&config, ship_to, shutdown.clone()).await?;
        registries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(std::mem::take(&mut running.registry)));
        Some(running)
    } else {
        None
    };
    readiness.ready("collector");
    info!("ready");

    shutdown.cancelled().await;
    info!("shutting down");
    let drain = config.server.shutdown_timeout.as_std();
    match tokio::time::timeout(drain, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(error = %e, "HTTP server failed while stopping"),
        Ok(Err(e)) => error!(error = %e, "HTTP server task failed"),
        Err(_) => {
            warn!(timeout = %config.server.shutdown_timeout, "requests still in flight after the shutdown timeout were closed")
        }
    }
    let _ = reloader.await;
    if let Some(c) = collector {
        // Everything it read is in its disk buffer; what was not acknowledged ships next start.
        c.stop().await;
        info!("collector stopped");
    }
    if let Some(p) = server_parts {
        // Before the store closes: they write their events and decisions into it.
        p.stop().await;
        info!("scheduler and autoscaler stopped");
    }
    if let Some(m) = maintenance {
        let _ = m.await;
    }
    if let Some(logs) = logs {
        // Writes, indexes and commits what is queued, then stops its threads.
        tokio::task::spawn_blocking(move || logs.close())
            .await
            .context("closing the log store")?;
        info!("log store closed");
    }
    if let Some(store) = store {
        // The WAL writer writes and syncs what is queued before it stops.
        tokio::task::spawn_blocking(move || store.close())
            .await
            .context("closing the metrics store")?;
        info!("metrics store closed");
    }
    for lock in locks.drain(..).rev() {
        let path = lock.path().to_path_buf();
        drop(lock);
        tracing::debug!(lock = %path.display(), "released");
    }
    info!("shutdown complete");
    Ok(())
}

/// How often the store cuts, compacts and expires blocks.
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the store's maintenance until shutdown; a failure is logged and retried next round.
async fn maintain(store: Arc<MetricsStore>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.maintain()).await {
            Ok(Ok(report)) if report != Default::default() => info!(?report, "storage maintenance"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!(error = %e, "storage maintenance failed; retrying next round"),
            Err(e) => error!(error = %e, "storage maintenance task failed"),
        }
    }
}

async fn serve_http(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Cancels `shutdown` at the first SIGINT or SIGTERM; exits at once on the second.
async fn stop_on_signal(shutdown: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        error!("cannot listen for SIGTERM/SIGINT; stop the process with SIGKILL");
        return;
    };
    for round in 0.. {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        if round == 0 {
            info!(
                signal = name,
                "received signal, stopping gracefully (send it again to exit at once)"
            );
            shutdown.cancel();
        } else {
            eprintln!("received {name} again, exiting without finishing the shutdown");
            std::process::exit(1);
        }
    }
}
