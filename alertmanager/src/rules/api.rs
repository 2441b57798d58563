//! Prometheus' `GET /api/v1/rules` and `GET /api/v1/alerts`, in Prometheus' JSON shapes.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};

use super::alerting::{Alert, AlertState};
use super::gofmt::format_float;
use super::group::{Group, RuleKind};
use super::manager::RuleManager;

/// The routes `/api/v1/rules` and `/api/v1/alerts` over `manager`'s groups.
pub fn router(manager: RuleManager) -> Router {
    Router::new()
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .with_state(manager)
}

/// Go's `time.Time` in JSON (RFC 3339 with trailing zeros of the fraction removed); the zero
/// time for "never".
fn go_time(ms: Option<i64>) -> String {
    let Some(t) = ms.and_then(chrono::DateTime::from_timestamp_millis) else {
        return "0001-01-01T00:00:00Z".into();
    };
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let millis = t.timestamp_subsec_millis();
    if millis == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{millis:03}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

fn api_alert(a: &Alert) -> Json {
    let mut o = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": go_time(Some(a.active_at_ms)),
        "value": format_float(a.value, 'e', None),
    });
    if let Some(k) = a.keep_firing_since_ms {
        o["keepFiringSince"] = json!(go_time(Some(k)));
    }
    o
}

fn active_alerts(alerts: &std::collections::HashMap<BTreeMap<String, String>, Alert>) -> Vec<Json> {
    let mut v: Vec<&Alert> = alerts.values().filter(|a| a.state != AlertState::Inactive).collect();
    v.sort_by(|a, b| a.labels.cmp(&b.labels));
    v.into_iter().map(api_alert).collect()
}

fn bad_data(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"status": "error", "errorType": "bad_data", "error": message})),
    )
        .into_response()
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn query_pairs(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn rules(State(m): State<RuleManager>, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref().unwrap_or(""));
    let mut want_alert = true;
    let mut want_record = true;
    let (mut names, mut group_names, mut files) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in &pairs {
        match k.as_str() {
            "type" => match v.to_ascii_lowercase().as_str() {
                "alert" => want_record = false,
                "record" => want_alert = false,
                "" => {}
                other => return bad_data(format!("invalid parameter \"type\": not supported value {other:?}")),
            },
            "rule_name[]" => names.push(v.clone()),
            "rule_group[]" => group_names.push(v.clone()),
            "file[]" => files.push(v.clone()),
            _ => {}
        }
    }
    let filtered = !(want_alert && want_record && names.is_empty() && group_names.is_empty() && files.is_empty());
    let mut out = Vec::new();
    for g in m.groups().await {
        let g = g.lock().await;
        let file = g.file.to_string_lossy().into_owned();
        if (!group_names.is_empty() && !group_names.contains(&g.name)) || (!files.is_empty() && !files.contains(&file))
        {
            continue;
        }
        let rules = group_rules(&g, want_alert, want_record, &names);
        if filtered && rules.is_empty() {
            continue;
        }
        out.push(json!({
            "name": g.name,
            "file": file,
            "rules": rules,
            "interval": g.interval_ms as f64 / 1000.0,
            "limit": g.limit,
            "evaluationTime": g.eval_seconds,
            "lastEvaluation": go_time(g.last_eval_ms),
        }));
    }
    axum::Json(json!({"status": "success", "data": {"groups": out}})).into_response()
}

fn group_rules(g: &Group, want_alert: bool, want_record: bool, names: &[String]) -> Vec<Json> {
    let mut rules = Vec::new();
    for r in &g.rules {
        if !names.is_empty() && !names.iter().any(|n| n == r.name()) {
            continue;
        }
        let mut j = match &r.kind {
            RuleKind::Alerting(a) if want_alert => json!({
                "state": a.state().as_str(),
                "name": a.name,
                "query": a.expr,
                "duration": a.hold_ms as f64 / 1000.0,
                "keepFiringFor": a.keep_firing_for_ms as f64 / 1000.0,
                "labels": a.labels,
                "annotations": a.annotations,
                "alerts": active_alerts(&a.active),
                "health": r.health.as_str(),
                "evaluationTime": r.eval_seconds,
                "lastEvaluation": go_time(r.last_eval_ms),
                "type": "alerting",
            }),
            RuleKind::Recording(rec) if want_record => {
                let mut j = json!({
                    "name": rec.name,
                    "query": rec.expr,
                    "health": r.health.as_str(),
                    "evaluationTime": r.eval_seconds,
                    "lastEvaluation": go_time(r.last_eval_ms),
                    "type": "recording",
                });
                if !rec.labels.is_empty() {
                    j["labels"] = json!(rec.labels);
                }
                j
            }
            _ => continue,
        };
        if let Some(e) = &r.last_error {
            j["lastError"] = json!(e);
        }
        rules.push(j);
    }
    rules
}

async fn alerts(State(m): State<RuleManager>) -> Response {
    let mut out = Vec::new();
    for g in m.groups().await {
        let g = g.lock().await;
        for r in &g.rules {
            if let RuleKind::Alerting(a) = &r.kind {
                out.extend(active_alerts(&a.active));
            }
        }
    }
    axum::Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_params_as_prometheus() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        assert_eq!(go_time(Some(1_500)), "1970-01-01T00:00:01.5Z");
        assert_eq!(go_time(Some(60_000)), "1970-01-01T00:01:00Z");
        assert_eq!(
            query_pairs("type=alert&rule_name%5B%5D=a+b&x"),
            vec![
                ("type".into(), "alert".into()),
                ("rule_name[]".into(), "a b".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(query_pairs("a=%4"), vec![("a".into(), "%4".into())]);
    }
}
