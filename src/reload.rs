//! Live reload of the configuration file: on change (notify), on SIGHUP and on `POST /-/reload`.
//!
//! A new file is loaded and checked in full before anything changes; a broken one is refused
//! with a logged error and the running configuration stays. Parts that follow the
//! configuration subscribe to the `watch` channel; settings that cannot change in a running
//! process (listen addresses, the data folder) are reported as needing a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Source};
use crate::http::ReloadRequest;
use crate::logging::Logging;
use crate::self_metrics::ReloadMetrics;

/// Editors save in bursts (truncate, write, rename): wait this long after the first event and
/// load once.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs until `shutdown`, reloading `source` into `current` whenever asked.
pub async fn run(
    source: Source,
    current: watch::Sender<Arc<Config>>,
    logging: Logging,
    metrics: ReloadMetrics,
    mut requests: mpsc::Receiver<ReloadRequest>,
    shutdown: CancellationToken,
) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; reload by file change or POST /-/reload");
            None
        }
    };
    // One pending event is enough to cause a reload, so a full channel just drops the rest.
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    let _watcher = source.path.as_deref().and_then(|path| watch_file(path, changed_tx));

    loop {
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = changed.recv() => {
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
                None
            }
            Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                info!("received SIGHUP, reloading configuration");
                None
            }
            Some(reply) = requests.recv() => Some(reply),
        };
        let outcome = reload(&source, &current, &logging);
        metrics.record(outcome.is_ok());
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

/// Loads and applies the configuration once; `Err` is the message of the refused file.
fn reload(source: &Source, current: &watch::Sender<Arc<Config>>, logging: &Logging) -> Result<(), String> {
    let new = match source.load() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "configuration reload refused; the running configuration stays");
            return Err(e.to_string());
        }
    };
    let old = current.borrow().clone();
    if *old == new {
        info!("configuration reloaded, nothing changed");
        return Ok(());
    }
    if let Err(e) = logging.set_level(&new.log.level) {
        error!(error = %e, "configuration reload refused: log.level");
        return Err(format!("log.level: {e}"));
    }
    let restart = old.restart_needed_for(&new);
    if !restart.is_empty() {
        warn!(keys = ?restart, "these settings changed and take effect at the next start");
    }
    current.send_replace(Arc::new(new));
    info!("configuration reloaded");
    Ok(())
}

/// Watches the folder holding `path`, not the file itself: editors and config managers
/// replace a file by renaming a new one over it, which a watch on the old inode would miss.
fn watch_file(path: &Path, changed: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let name = path.file_name()?.to_owned();
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| p.file_name() == Some(name.as_os_str())) {
            let _ = changed.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch the configuration file; reload with SIGHUP or POST /-/reload");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        warn!(error = %e, folder = %dir.display(), "cannot watch the configuration folder; reload with SIGHUP or POST /-/reload");
        return None;
    }
    Some(watcher)
}
