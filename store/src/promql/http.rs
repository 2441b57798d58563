//! Prometheus' HTTP API v1 for queries and metadata, as Grafana's Prometheus datasource calls
//! it: `query`, `query_range`, `series`, `labels`, `label/<name>/values`, `metadata`,
//! `query_exemplars`, `status/buildinfo`, `status/tsdb`. GET query strings and POST form bodies
//! both work; answers use Prometheus' JSON envelope, value encoding and status codes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value as Json, json};
use tidewatch_model::{Labels, Matcher, QueryError, QueryErrorKind, QueryOptions, QueryValue};

use super::{Engine, format_float};
use crate::metrics::MetricsStore;
use crate::metrics::http::{form_urlencoded_pairs, parse_selector};

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS: i64 = 11_000;

#[derive(Clone)]
struct ApiState {
    engine: Arc<Engine>,
    store: Arc<MetricsStore>,
}

/// The query API routes.
pub fn routes(engine: Arc<Engine>, store: Arc<MetricsStore>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .with_state(ApiState { engine, store })
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

fn failure(e: QueryError) -> Response {
    let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"status": "error", "errorType": e.kind.as_str(), "error": e.message})),
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::BadData, message)
}

/// The request's parameters: query string, then form body for POST.
fn params(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Vec<(String, String)> {
    let mut out = form_urlencoded_pairs(query.as_deref().unwrap_or(""));
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form && !body.is_empty() {
        out.extend(form_urlencoded_pairs(&String::from_utf8_lossy(body)));
    }
    out
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 (`2015-07-01T20:10:51.781Z`, `…+02:00`) in milliseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest = &frac[digits.len()..];
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        ms = padded.parse().ok()?;
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        r if r.len() == 6 && (r.starts_with('+') || r.starts_with('-')) => {
            let sign = if r.starts_with('-') { -1 } else { 1 };
            sign * (r[1..3].parse::<i64>().ok()? * 60 + r[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// A Prometheus API time: Unix seconds (with fraction) or RFC 3339.
fn parse_time(name: &str, s: &str) -> Result<i64, QueryError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    parse_rfc3339(s).ok_or_else(|| {
        bad(format!(
            "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid timestamp"
        ))
    })
}

/// A Prometheus API duration: seconds (with fraction) or `5m`-style.
fn parse_duration(name: &str, s: &str) -> Result<i64, QueryError> {
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() {
            return Ok((f * 1000.0).round() as i64);
        }
    }
    promql_parser::util::parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| {
            bad(format!(
                "invalid parameter \"{name}\": cannot parse \"{s}\" to a valid duration"
            ))
        })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn query_options(p: &[(String, String)]) -> Result<QueryOptions, QueryError> {
    let mut o = QueryOptions::default();
    if let Some(t) = param(p, "timeout") {
        o.timeout = Some(tidewatch_model::Duration::from_millis(
            parse_duration("timeout", t)?.max(0) as u64,
        ));
    }
    if let Some(l) = param(p, "lookback_delta") {
        o.lookback_delta = Some(tidewatch_model::Duration::from_millis(
            parse_duration("lookback_delta", l)?.max(0) as u64,
        ));
    }
    Ok(o)
}

/// A timestamp in seconds as Prometheus writes it: `1435781451.781`, and `1435781451` for a
/// whole second (no `.0`).
fn ts(ms: i64) -> Json {
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn result_json(v: QueryValue) -> Json {
    match v {
        QueryValue::Scalar(s) => json!({"resultType": "scalar", "result": [ts(s.timestamp_ms), format_float(s.value)]}),
        QueryValue::String { timestamp_ms, value } => {
            json!({"resultType": "string", "result": [ts(timestamp_ms), value]})
        }
        QueryValue::Vector(v) => json!({
            "resultType": "vector",
            "result": v.into_iter().map(|s| json!({"metric": s.labels, "value": [ts(s.sample.timestamp_ms), format_float(s.sample.value)]})).collect::<Vec<_>>(),
        }),
        QueryValue::Matrix(m) => json!({
            "resultType": "matrix",
            "result": m.into_iter().map(|s| json!({
                "metric": s.labels,
                "values": s.samples.iter().map(|x| json!([ts(x.timestamp_ms), format_float(x.value)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueryError::new(QueryErrorKind::Internal, e.to_string()))?
}

async fn query(State(s): State<ApiState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let expr = param(&p, "query")
            .ok_or_else(|| bad("invalid parameter \"query\": query must not be empty"))?
            .to_string();
        let at = match param(&p, "time") {
            Some(t) => parse_time("time", t)?,
            None => now_ms(),
        };
        let options = query_options(&p)?;
        let engine = s.engine.clone();
        run_blocking(move || engine.evaluate(&expr, at, at, 0, &options, true)).await
    }
    .await;
    match result {
        Ok(v) => success(result_json(v)),
        Err(e) => failure(e),
    }
}

async fn query_range(State(s): State<ApiState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let expr = param(&p, "query").ok_or_else(|| bad("invalid parameter \"query\": query must not be empty"))?.to_string();
        let start = parse_time("start", param(&p, "start").ok_or_else(|| bad("invalid parameter \"start\": missing"))?)?;
        let end = parse_time("end", param(&p, "end").ok_or_else(|| bad("invalid parameter \"end\": missing"))?)?;
        if end < start {
            return Err(bad("invalid parameter \"end\": end timestamp must not be before start time"));
        }
        let step = parse_duration("step", param(&p, "step").ok_or_else(|| bad("invalid parameter \"step\": missing"))?)?;
        if step <= 0 {
            return Err(bad("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        if (end - start) / step > MAX_POINTS {
            return Err(bad("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
        }
        let options = query_options(&p)?;
        let engine = s.engine.clone();
        run_blocking(move || engine.evaluate(&expr, start, end, step, &options, false)).await
    }
    .await;
    match result {
        Ok(v) => success(result_json(v)),
        Err(e) => failure(e),
    }
}

/// `match[]` selectors, `start` and `end` (defaults: all time).
fn selection(p: &[(String, String)], required: bool) -> Result<(Vec<Vec<Matcher>>, i64, i64), QueryError> {
    let mut selectors = Vec::new();
    for (k, v) in p {
        if k == "match[]" {
            selectors.push(parse_selector(v).map_err(|e| bad(format!("invalid parameter \"match[]\": {e}")))?);
        }
    }
    if required && selectors.is_empty() {
        return Err(bad("no match[] parameter provided"));
    }
    let start = param(p, "start")
        .map(|t| parse_time("start", t))
        .transpose()?
        .unwrap_or(i64::MIN / 2);
    let end = param(p, "end")
        .map(|t| parse_time("end", t))
        .transpose()?
        .unwrap_or(i64::MAX / 2);
    Ok((selectors, start, end))
}

fn limit(p: &[(String, String)]) -> Result<usize, QueryError> {
    match param(p, "limit") {
        None => Ok(usize::MAX),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n as usize),
            Ok(_) => Ok(usize::MAX),
            Err(_) => Err(bad(format!("invalid parameter \"limit\": cannot parse \"{l}\""))),
        },
    }
}

async fn series(State(s): State<ApiState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let (selectors, start, end) = selection(&p, true)?;
        let limit = limit(&p)?;
        let store = s.store.clone();
        run_blocking(move || {
            let mut set = std::collections::BTreeSet::<Labels>::new();
            for m in selectors {
                let found = store
                    .select(&m, start, end, 50_000_000)
                    .map_err(|e| QueryError::new(QueryErrorKind::Execution, e.to_string()))?;
                set.extend(found.into_iter().map(|s| s.labels));
            }
            Ok(set.into_iter().take(limit).collect::<Vec<_>>())
        })
        .await
    }
    .await;
    match result {
        Ok(v) => success(json!(v)),
        Err(e) => failure(e),
    }
}

async fn labels(State(s): State<ApiState>, RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = params(q, &headers, &body);
    let result = async {
        let (selectors, _, _) = selection(&p, false)?;
        let limit = limit(&p)?;
        let store = s.store.clone();
        run_blocking(move || {
            let mut names = std::collections::BTreeSet::new();
            let err = |e: crate::metrics::StoreError| QueryError::new(QueryErrorKind::Internal, e.to_string());
            if selectors.is_empty() {
                names.extend(store.label_names(&[]).map_err(err)?);
            }
            for m in selectors {
                names.extend(store.label_names(&m).map_err(err)?);
            }
            Ok(names.into_iter().take(limit).collect::<Vec<_>>())
        })
        .await
    }
    .await;
    match result {
        Ok(v) => success(json!(v)),
        Err(e) => failure(e),
    }
}

async fn label_values(State(s): State<ApiState>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    let p = form_urlencoded_pairs(q.as_deref().unwrap_or(""));
    let result = async {
        if tidewatch_model::validate_label_name(&name).is_err() {
            return Err(bad(format!("invalid label name: \"{name}\"")));
        }
        let (selectors, _, _) = selection(&p, false)?;
        let limit = limit(&p)?;
        let store = s.store.clone();
        run_blocking(move || {
            let mut values = std::collections::BTreeSet::new();
            let err = |e: crate::metrics::StoreError| QueryError::new(QueryErrorKind::Internal, e.to_string());
            if selectors.is_empty() {
                values.extend(store.label_values(&name, &[]).map_err(err)?);
            }
            for m in selectors {
                values.extend(store.label_values(&name, &m).map_err(err)?);
            }
            Ok(values.into_iter().take(limit).collect::<Vec<_>>())
        })
        .await
    }
    .await;
    match result {
        Ok(v) => success(json!(v)),
        Err(e) => failure(e),
    }
}

async fn metadata() -> Response {
    success(json!({}))
}

async fn exemplars() -> Response {
    success(json!([]))
}

async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn tsdb_status(State(s): State<ApiState>) -> Response {
    let store = s.store.clone();
    let stats = match tokio::task::spawn_blocking(move || store.head_stats(10)).await {
        Ok(stats) => stats,
        Err(e) => return failure(QueryError::new(QueryErrorKind::Internal, e.to_string())),
    };
    let list = |v: &[(String, u64)]| {
        v.iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect::<Vec<_>>()
    };
    success(json!({
        "headStats": {
            "numSeries": stats.num_series,
            "numLabelPairs": stats.num_label_pairs,
            "chunkCount": stats.chunk_count,
            "minTime": stats.min_time,
            "maxTime": stats.max_time,
        },
        "seriesCountByMetricName": list(&stats.series_count_by_metric_name),
        "labelValueCountByLabelName": list(&stats.label_value_count_by_label_name),
        "memoryInBytesByLabelName": list(&stats.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": list(&stats.series_count_by_label_value_pair),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_does() {
        assert_eq!(parse_time("t", "1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time("t", "2015-07-01T20:10:51.781Z").unwrap(), 1_435_781_451_781);
        assert_eq!(
            parse_time("t", "2015-07-01T22:10:51.781+02:00").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(parse_time("t", "1970-01-01T00:00:00Z").unwrap(), 0);
        assert!(
            parse_time("time", "yesterday")
                .unwrap_err()
                .message
                .contains("invalid parameter \"time\"")
        );
        assert_eq!(parse_duration("step", "15s").unwrap(), 15_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration("step", "1m30s").unwrap(), 90_000);
    }
}
