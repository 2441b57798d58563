//! Alertmanager's HTTP API v2 (the JSON shapes of its OpenAPI spec): alerts, alert groups,
//! silences, status and receivers. Request bodies are size-limited.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::alertmanager::{Alertmanager, StoredAlert};
use super::matchers::{Matcher, parse_matchers};
use super::state::silences::{PostableSilence, SilenceError, state};
use crate::PostableAlert;

/// Largest accepted request body.
pub const MAX_BODY: usize = 4 << 20;

/// The routes under `/api/v2`.
pub fn router(am: Arc<Alertmanager>) -> axum::Router {
    axum::Router::new()
        .route("/api/v2/alerts", get(get_alerts).post(post_alerts))
        .route("/api/v2/alerts/groups", get(get_groups))
        .route("/api/v2/silences", get(get_silences).post(post_silence))
        .route("/api/v2/silence/{id}", get(get_silence).delete(delete_silence))
        .route("/api/v2/status", get(status))
        .route("/api/v2/receivers", get(receivers))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(am)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(Value::String(msg.into()))).into_response()
}

/// API v2 timestamps (millisecond precision, UTC).
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

struct AlertQuery {
    filter: Vec<Matcher>,
    receiver: Option<regex::Regex>,
    active: bool,
    silenced: bool,
    inhibited: bool,
    unprocessed: bool,
}

fn parse_query(raw: Option<String>) -> Result<AlertQuery, String> {
    let mut q = AlertQuery {
        filter: Vec::new(),
        receiver: None,
        active: true,
        silenced: true,
        inhibited: true,
        unprocessed: true,
    };
    let raw = raw.unwrap_or_default();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let flag = || match v.as_ref() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("parameter {k}: {other:?} is not a boolean")),
        };
        match k.as_ref() {
            "filter" => q
                .filter
                .extend(parse_matchers(&v).map_err(|e| format!("parameter filter: {e}"))?),
            "receiver" => {
                q.receiver =
                    Some(regex::Regex::new(&format!("^(?:{v})$")).map_err(|e| format!("parameter receiver: {e}"))?)
            }
            "active" => q.active = flag()?,
            "silenced" => q.silenced = flag()?,
            "inhibited" => q.inhibited = flag()?,
            "unprocessed" => q.unprocessed = flag()?,
            _ => {}
        }
    }
    Ok(q)
}

fn gettable_alert(am: &Alertmanager, fp: u64, a: &StoredAlert, now: DateTime<Utc>, q: &AlertQuery) -> Option<Value> {
    if a.resolved_at(now) || !q.filter.iter().all(|m| m.matches(&a.labels)) {
        return None;
    }
    let (_, runtime) = am.config();
    let receivers: BTreeSet<String> = runtime
        .route
        .match_labels(&a.labels)
        .iter()
        .map(|r| r.opts.receiver.clone())
        .collect();
    if let Some(re) = &q.receiver
        && !receivers.iter().any(|r| re.is_match(r))
    {
        return None;
    }
    let (silenced_by, inhibited_by) = am.alert_status(&a.labels, now);
    let suppressed = !silenced_by.is_empty() || !inhibited_by.is_empty();
    if (!q.active && !suppressed)
        || (!q.silenced && !silenced_by.is_empty())
        || (!q.inhibited && !inhibited_by.is_empty())
    {
        return None;
    }
    Some(json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": ts(a.starts_at),
        "endsAt": ts(a.ends_at),
        "updatedAt": ts(a.updated_at),
        "generatorURL": a.generator_url,
        "fingerprint": format!("{fp:016x}"),
        "receivers": receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "status": {
            "state": if suppressed { "suppressed" } else { "active" },
            "silencedBy": silenced_by,
            "inhibitedBy": inhibited_by,
        },
    }))
}

async fn get_alerts(State(am): State<Arc<Alertmanager>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_query(raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = am.now();
    let mut alerts = am.alerts();
    alerts.sort_by(|a, b| a.1.labels.cmp(&b.1.labels));
    let out: Vec<Value> = alerts
        .iter()
        .filter_map(|(fp, a)| gettable_alert(&am, *fp, a, now, &q))
        .collect();
    Json(out).into_response()
}

async fn post_alerts(State(am): State<Arc<Alertmanager>>, body: axum::body::Bytes) -> Response {
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    match am.put_alerts(alerts) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_groups(State(am): State<Arc<Alertmanager>>, RawQuery(raw): RawQuery) -> Response {
    let q = match parse_query(raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = am.now();
    let mut out = Vec::new();
    let mut groups = am.groups();
    groups.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    for (labels, receiver, mut alerts) in groups {
        if let Some(re) = &q.receiver
            && !re.is_match(&receiver)
        {
            continue;
        }
        alerts.sort_by(|a, b| a.1.labels.cmp(&b.1.labels));
        let list: Vec<Value> = alerts
            .iter()
            .filter_map(|(fp, a)| gettable_alert(&am, *fp, a, now, &q))
            .collect();
        if list.is_empty() {
            continue;
        }
        out.push(json!({"labels": labels, "receiver": {"name": receiver}, "alerts": list}));
    }
    Json(out).into_response()
}

fn gettable_silence(s: &super::state::silences::Silence, now: DateTime<Utc>) -> Value {
    json!({
        "id": s.id,
        "status": {"state": state(s, now)},
        "updatedAt": ts(s.updated_at),
        "matchers": s.matchers,
        "startsAt": ts(s.starts_at),
        "endsAt": ts(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

async fn get_silences(State(am): State<Arc<Alertmanager>>, RawQuery(raw): RawQuery) -> Response {
    let mut filter = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == "filter" {
            match parse_matchers(&v) {
                Ok(m) => filter.extend(m),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("parameter filter: {e}")),
            }
        }
    }
    let now = am.now();
    let mut list: Vec<Value> = am.with_silences(|s| {
        s.all()
            .filter(|(sil, _)| {
                // Alertmanager: a silence passes when each filter matcher accepts the labels the
                // silence's equality matchers describe.
                let labels = sil
                    .matchers
                    .iter()
                    .filter(|m| !m.is_regex && m.is_equal)
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect();
                filter.iter().all(|f| f.matches(&labels))
            })
            .map(|(sil, _)| gettable_silence(sil, now))
            .collect::<Vec<_>>()
    });
    list.sort_by_key(|v| match v["status"]["state"].as_str() {
        Some("active") => 0,
        Some("pending") => 1,
        _ => 2,
    });
    Json(list).into_response()
}

async fn post_silence(State(am): State<Arc<Alertmanager>>, body: axum::body::Bytes) -> Response {
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    let now = am.now();
    match am.with_silences(|s| s.set(p, now)) {
        Ok(id) => Json(json!({"silenceID": id})).into_response(),
        Err(SilenceError::NotFound(id)) => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
        Err(SilenceError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ SilenceError::Storage(_)) => {
            tracing::error!(error = %e, "storing a silence failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "storing the silence failed")
        }
    }
}

async fn get_silence(State(am): State<Arc<Alertmanager>>, Path(id): Path<String>) -> Response {
    let now = am.now();
    match am.with_silences(|s| s.get(&id).map(|s| gettable_silence(s, now))) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn delete_silence(State(am): State<Arc<Alertmanager>>, Path(id): Path<String>) -> Response {
    let now = am.now();
    match am.with_silences(|s| s.expire(&id, now)) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(SilenceError::NotFound(id)) => error(StatusCode::NOT_FOUND, format!("silence {id} not found")),
        Err(SilenceError::Invalid(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(e @ SilenceError::Storage(_)) => {
            tracing::error!(error = %e, "expiring a silence failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "expiring the silence failed")
        }
    }
}

async fn status(State(am): State<Arc<Alertmanager>>) -> Response {
    let (file, _) = am.config();
    Json(json!({
        "cluster": {"name": "", "status": "disabled", "peers": []},
        "config": {"original": file.masked()},
        "uptime": ts(am.started()),
        "versionInfo": {
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": "",
            "version": concat!("tidewatch-", env!("CARGO_PKG_VERSION")),
        },
    }))
    .into_response()
}

async fn receivers(State(am): State<Arc<Alertmanager>>) -> Response {
    let (file, _) = am.config();
    let list: Vec<Value> = file.config.receivers.iter().map(|r| json!({"name": r.name})).collect();
    Json(list).into_response()
}
