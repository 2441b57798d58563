//! The metrics routes: remote_write ingest and raw export.
//!
//! - `POST /api/v1/write`: Prometheus remote_write 1.0 (snappy + protobuf), with the optional
//!   `Tidewatch-Batch` header of the delivery contract. Answers 204 once every accepted sample
//!   is fsynced; 400 when some samples were refused (the rest are stored, and a sender must not
//!   retry), naming each reason with an example; 503 when the WAL cannot write (retry).
//! - `GET /api/v1/export?match[]=<selector>&start=&end=`: raw samples as JSON lines, in
//!   VictoriaMetrics' export format (`{"metric":{...},"values":[...],"timestamps":[...]}`),
//!   for backups, debugging and tests that check exactly what was stored.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tidewatch_model::remote_write::{decode_borrowed, decompress};
use tidewatch_model::{AppendError, BATCH_HEADER, BatchHeader, MatchOp, Matcher};

use super::db::{MetricsStore, StoreError};
use super::head::{AppendOutcome, WriteBatch};

/// Settings of the routes that come from the server's configuration.
#[derive(Clone, Debug)]
pub struct RouteLimits {
    /// The largest decompressed remote_write body.
    pub max_decompressed_bytes: usize,
    /// The most samples one export may return.
    pub max_export_samples: usize,
}

impl Default for RouteLimits {
    /// 64 MiB decompressed per write (a typical remote_write request is a few hundred KiB;
    /// with at most [`MAX_CONCURRENT_WRITES`] at once, writes hold at most 4 GiB); 10 million
    /// samples per export.
    fn default() -> Self {
        RouteLimits {
            max_decompressed_bytes: 64 << 20,
            max_export_samples: 10_000_000,
        }
    }
}

/// Writes decoded at once; more wait for a turn.
pub const MAX_CONCURRENT_WRITES: usize = 64;

#[derive(Clone)]
struct RouteState {
    store: Arc<MetricsStore>,
    limits: RouteLimits,
}

/// The metrics routes over `store`.
pub fn routes(store: Arc<MetricsStore>, limits: RouteLimits) -> Router {
    Router::new()
        .route(
            "/api/v1/write",
            post(write).layer(tower::limit::ConcurrencyLimitLayer::new(MAX_CONCURRENT_WRITES)),
        )
        .route("/api/v1/export", get(export))
        .with_state(RouteState { store, limits })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", message.into()),
    )
        .into_response()
}

fn append_error(e: AppendError) -> Response {
    match e {
        AppendError::Rejected(m) => error(StatusCode::BAD_REQUEST, m),
        AppendError::OverLimit(m) => error(StatusCode::TOO_MANY_REQUESTS, m),
        AppendError::Unavailable(m) => error(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

async fn write(State(s): State<RouteState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = match headers.get(BATCH_HEADER).map(|v| {
        v.to_str()
            .map_err(|_| "not ASCII".to_string())
            .and_then(|v| BatchHeader::parse(v).map_err(|e| e.to_string()))
    }) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("header {BATCH_HEADER}: {e}")),
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()) {
        if !enc.eq_ignore_ascii_case("snappy") {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {enc:?} is not supported; remote_write bodies are snappy"),
            );
        }
    }
    // Decoding and the head update are CPU work under a lock: keep them off the async workers.
    let store = s.store.clone();
    let limits = s.limits.clone();
    let applied = tokio::task::spawn_blocking(move || -> Result<AppendOutcome, AppendError> {
        let raw = decompress(&body, limits.max_decompressed_bytes)
            .map_err(|e| AppendError::Rejected(format!("body: {e}")))?;
        let mut batch = WriteBatch::default();
        let max_series = store.config().limits.max_series_per_request;
        decode_borrowed(&raw, |series| {
            if batch.ends.len() >= max_series {
                return Err(tidewatch_model::remote_write::WireError::Protobuf(format!(
                    "more than {max_series} series in one request (metrics.limits.max_series_per_request)"
                )));
            }
            batch.push(series.labels.iter().copied(), series.samples.iter().copied());
            Ok(())
        })
        .map_err(|e| AppendError::Rejected(format!("body: {e}")))?;
        store.append_unsynced(&batch, header.as_ref())
    })
    .await;
    let outcome = match applied {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return append_error(e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("write task failed: {e}")),
    };
    if let Err(e) = s.store.durability().wait(outcome.wait_for).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    if outcome.refused.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let reasons: Vec<String> = outcome
        .refused
        .iter()
        .map(|(why, n, example)| format!("{}: {n} (first: {example})", why.as_str()))
        .collect();
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{} samples stored, {} refused: {}",
            outcome.accepted,
            outcome.refused_count(),
            reasons.join("; ")
        ),
    )
}

/// Parses a series selector such as `up{job=~"node|prom"}` into matchers.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, String> {
    let expr = promql_parser::parser::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!("{text:?} is not a series selector"));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!("{text:?}: `or` in a selector is not supported"));
    }
    let mut out = Vec::new();
    for m in vs.matchers.matchers {
        let op = match m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::Regex,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(m.name, op, m.value).map_err(|e| e.to_string())?);
    }
    if let Some(name) = vs.name {
        if !out.iter().any(|m| m.name == "__name__") {
            out.push(Matcher::equal("__name__", name));
        }
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err(format!(
            "{text:?}: a selector must contain at least one matcher that does not match the empty string"
        ));
    }
    Ok(out)
}

/// Parses a Prometheus API time: RFC 3339 or Unix seconds with a fraction, in milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    Err(format!("cannot parse {text:?} to a valid timestamp (Unix seconds)"))
}

async fn export(State(s): State<RouteState>, RawQuery(query): RawQuery) -> Response {
    let mut selectors = Vec::new();
    let (mut start, mut end) = (i64::MIN, i64::MAX);
    for (k, v) in form_urlencoded_pairs(query.as_deref().unwrap_or("")) {
        let parsed = match k.as_str() {
            "match[]" => parse_selector(&v).map(|m| selectors.push(m)),
            "start" => parse_time(&v).map(|t| start = t),
            "end" => parse_time(&v).map(|t| end = t),
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            return error(StatusCode::BAD_REQUEST, format!("parameter {k}: {e}"));
        }
    }
    if selectors.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "parameter match[]: at least one series selector is required",
        );
    }
    let store = s.store.clone();
    let max = s.limits.max_export_samples;
    let result = tokio::task::spawn_blocking(move || -> Result<String, StoreError> {
        let mut out = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for matchers in selectors {
            for series in store.select(&matchers, start, end, max)? {
                if !seen.insert(series.labels.clone()) {
                    continue;
                }
                let values: Vec<serde_json::Value> = series.samples.iter().map(|x| json_float(x.value)).collect();
                let line = serde_json::json!({
                    "metric": series.labels,
                    "values": values,
                    "timestamps": series.samples.iter().map(|x| x.timestamp_ms).collect::<Vec<_>>(),
                });
                out.push_str(&line.to_string());
                out.push('\n');
            }
        }
        Ok(out)
    })
    .await;
    match result {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/stream+json")], body).into_response(),
        Ok(Err(StoreError::TooManySamples(n))) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the export would return more than {n} samples; narrow match[] or start/end"),
        ),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// JSON has no NaN or infinities: they are written as strings, as Prometheus writes values.
fn json_float(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else if v.is_nan() {
        serde_json::json!("NaN")
    } else if v > 0.0 {
        serde_json::json!("+Inf")
    } else {
        serde_json::json!("-Inf")
    }
}

/// `application/x-www-form-urlencoded` pairs, repeated keys kept (`match[]` repeats).
pub fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_into_matchers() {
        let m = parse_selector(r#"up{job=~"no.e", instance!="x"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.iter().any(|m| m.name == "__name__" && m.value == "up"));
        assert!(
            parse_selector("rate(up[5m])")
                .unwrap_err()
                .contains("not a series selector")
        );
        assert!(parse_selector(r#"{job=""}"#).is_err());
        assert!(parse_selector("up{").is_err());
    }

    #[test]
    fn query_strings_decode() {
        let pairs = form_urlencoded_pairs("match%5B%5D=up%7Bjob%3D%22a%22%7D&match[]=x&start=1.5&end");
        assert_eq!(pairs[0], ("match[]".into(), "up{job=\"a\"}".into()));
        assert_eq!(pairs[1], ("match[]".into(), "x".into()));
        assert_eq!(pairs[3], ("end".into(), String::new()));
        assert_eq!(parse_time("1.5").unwrap(), 1500);
        assert!(parse_time("soon").is_err());
    }
}
