//! `/api/v1/services`, `/api/v1/services/{name}`, `POST /api/v1/services/{name}/scale` and
//! `/api/v1/events`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::scheduler::{Scheduler, SchedulerError};

/// The scheduler's routes.
pub fn router(sched: Arc<Scheduler>) -> Router {
    Router::new()
        .route("/api/v1/services", get(list))
        .route("/api/v1/services/{name}", get(show))
        .route("/api/v1/services/{name}/scale", post(scale))
        .route("/api/v1/events", get(events))
        .with_state(sched)
}

/// An error answer: `{"status":"error","error":"..."}` with a status code.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": "error", "error": self.1});
        (self.0, Json(body)).into_response()
    }
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        let status = match e {
            SchedulerError::UnknownService(_) => StatusCode::NOT_FOUND,
            SchedulerError::TooMany(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

async fn list(State(sched): State<Arc<Scheduler>>) -> Response {
    Json(serde_json::json!({"status": "success", "data": sched.services()})).into_response()
}

async fn show(State(sched): State<Arc<Scheduler>>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let status = sched
        .service(&name)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no service named {name:?}")))?;
    Ok(Json(serde_json::json!({"status": "success", "data": status})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: u32,
}

async fn scale(
    State(sched): State<Arc<Scheduler>>,
    Path(name): Path<String>,
    body: Result<Json<ScaleBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "body: expected {{\"replicas\": N}} with N a whole number >= 0: {}",
                e.body_text()
            ),
        )
    })?;
    sched.scale(&name, body.replicas).await?;
    Ok(
        Json(serde_json::json!({"status": "success", "data": {"service": name, "replicas": body.replicas}}))
            .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    service: Option<String>,
    limit: Option<usize>,
}

async fn events(
    State(sched): State<Arc<Scheduler>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    let events = sched.events(q.service.as_deref(), limit);
    Ok(Json(serde_json::json!({"status": "success", "data": events})).into_response())
}
