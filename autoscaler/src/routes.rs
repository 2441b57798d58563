//! `/api/v1/autoscaler*`: the status of every service, one service like `kubectl describe hpa`,
//! its decisions, and the text `tidewatch autoscaler explain` prints.
//!
//! Answers use Prometheus' envelope (`{"status":"success","data":…}` or
//! `{"status":"error","errorType":…,"error":…}`) like the rest of Tidewatch's API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::controller::{Autoscaler, AutoscalerError, DECISION_LOG_CAPACITY};

/// Decisions shown with one service's status.
const RECENT_DECISIONS: usize = 20;

impl IntoResponse for AutoscalerError {
    fn into_response(self) -> Response {
        let status = match self {
            AutoscalerError::UnknownService(_) => StatusCode::NOT_FOUND,
        };
        error(status, "not_found", self.to_string())
    }
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": kind, "error": message})),
    )
        .into_response()
}

fn success(data: impl serde::Serialize) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

impl Autoscaler {
    /// The autoscaler's routes, for the binary to merge.
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/api/v1/autoscaler", get(list))
            .route("/api/v1/autoscaler/{service}", get(show))
            .route("/api/v1/autoscaler/{service}/decisions", get(decisions))
            .route("/api/v1/autoscaler/{service}/explain", get(explain))
            .with_state(self)
    }
}

async fn list(State(a): State<Arc<Autoscaler>>) -> Response {
    success(a.statuses())
}

async fn show(State(a): State<Arc<Autoscaler>>, Path(service): Path<String>) -> Response {
    match (a.status(&service), a.decisions(&service, RECENT_DECISIONS)) {
        (Ok(status), Ok(decisions)) => success(json!({"status": status, "decisions": decisions})),
        (Err(e), _) | (_, Err(e)) => e.into_response(),
    }
}

async fn decisions(
    State(a): State<Arc<Autoscaler>>,
    Path(service): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let limit = match params.get("limit") {
        None => DECISION_LOG_CAPACITY,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    format!("invalid parameter \"limit\": {text:?} is not a whole number ≥ 1"),
                );
            }
        },
    };
    match a.decisions(&service, limit) {
        Ok(d) => success(d),
        Err(e) => e.into_response(),
    }
}

async fn explain(State(a): State<Arc<Autoscaler>>, Path(service): Path<String>) -> Response {
    if let Err(e) = a.status(&service) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        a.explain(&service),
    )
        .into_response()
}
