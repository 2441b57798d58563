//! The routes the binary itself owns: health, readiness, `/metrics`, the loaded configuration
//! and `/-/reload`. The parts' own routes are merged in by [`crate::run`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::self_metrics;

/// What the process still waits for before it is ready: parts register a name at start and
/// remove it once open (storage: replayed), so `/-/ready` says exactly what is missing.
#[derive(Debug, Default)]
pub struct Readiness {
    pending: Mutex<BTreeSet<&'static str>>,
}

impl Readiness {
    /// Marks `part` as not ready yet.
    pub fn wait_for(&self, part: &'static str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(part);
    }

    /// Marks `part` as ready.
    pub fn ready(&self, part: &'static str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(part);
    }

    /// The parts not ready yet, empty when the process is ready.
    pub fn pending(&self) -> Vec<&'static str> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// A request to reload the configuration; the answer is the error message if it failed.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the routes read.
#[derive(Clone)]
pub struct AppState {
    /// Parts not ready yet.
    pub readiness: Arc<Readiness>,
    /// Every metric of the process, one registry per part.
    pub registries: Arc<std::sync::RwLock<Vec<Arc<Registry>>>>,
    /// The configuration in force.
    pub config: watch::Receiver<Arc<Config>>,
    /// Asks the reloader for a reload (`None` where this process does not reload).
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

/// The binary's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/-/healthy", get(healthy).head(healthy))
        .route("/-/ready", get(ready).head(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .route("/api/v1/status/config", get(status_config))
        .with_state(state)
}

async fn healthy() -> &'static str {
    "Tidewatch is Healthy.\n"
}

async fn ready(State(s): State<AppState>) -> Response {
    let pending = s.readiness.pending();
    if pending.is_empty() {
        "Tidewatch is Ready.\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Service Unavailable: waiting for {}\n", pending.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, self_metrics::TEXT_CONTENT_TYPE)],
        self_metrics::render(&s.registries.read().unwrap_or_else(|e| e.into_inner()).clone()),
    )
        .into_response()
}

/// Prometheus' `/api/v1/status/config`: `{"status":"success","data":{"yaml":"..."}}`.
async fn status_config(State(s): State<AppState>) -> Response {
    let yaml = s.config.borrow().to_yaml();
    axum::Json(serde_json::json!({"status": "success", "data": {"yaml": yaml}})).into_response()
}

/// Prometheus' `POST /-/reload`: 200 when the new configuration is in force, 500 with the
/// error when it was refused (the old one stays).
async fn reload(State(s): State<AppState>) -> Response {
    let Some(reload) = s.reload else {
        return (
            StatusCode::NOT_FOUND,
            "this process has no configuration file to reload\n",
        )
            .into_response();
    };
    let (tx, rx) = oneshot::channel();
    if reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => "configuration reloaded\n".into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state() -> AppState {
        let (_tx, rx) = watch::channel(Arc::new(Config::default()));
        AppState {
            readiness: Arc::default(),
            registries: Arc::new(std::sync::RwLock::new(vec![Arc::new(self_metrics::registry())])),
            config: rx,
            reload: None,
        }
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn ready_only_when_nothing_is_pending() {
        let s = state();
        s.readiness.wait_for("storage");
        let (status, body) = get(router(s.clone()), "/-/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("waiting for storage"), "{body}");
        s.readiness.ready("storage");
        assert_eq!(get(router(s.clone()), "/-/ready").await.0, StatusCode::OK);
        assert_eq!(get(router(s), "/-/healthy").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn status_config_is_prometheus_shaped() {
        let (status, body) = get(router(state()), "/api/v1/status/config").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success");
        assert!(
            v["data"]["yaml"].as_str().unwrap().contains("listen: 127.0.0.1:9700"),
            "{body}"
        );
    }
}
