//! The Loki HTTP API over a [`LogStore`]:
//!
//! - `POST /loki/api/v1/push`: protobuf (snappy) or JSON, with the optional `Tidewatch-Batch`
//!   header. 204 once every stored line is durable; 400 when some entries or streams were
//!   refused (the rest are stored, a sender must not retry), naming each; 503 when the WAL
//!   cannot write (retry).
//! - `GET|POST /loki/api/v1/query`, `query_range`: LogQL; streams, vector and matrix results.
//! - `GET /loki/api/v1/labels`, `label/<name>/values`, `series`, `index/stats`.
//! - `GET /loki/api/v1/tail`: a websocket of new lines (see `tail.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tidewatch_model::{
    AppendError, BATCH_HEADER, BatchHeader, Labels, Query, QueryError, QueryErrorKind, QueryOptions, QueryValue, Series,
};

use super::config::LogsLimitsConfig;
use super::index::{Partition, Partitions};
use super::logql::eval::{self, MetricParams};
use super::logql::parse::LabelMatcher;
use super::logql::{Expr, parse};
use super::push::{self, Stream};
use super::store::{Entry, IngestBatch, LogStore};
use super::time::{now_ns, parse_duration_ns, parse_time};

/// The Loki routes over `store`.
pub fn routes(store: Arc<LogStore>) -> Router {
    let body_limit = store.config().limits.max_body.bytes() as usize;
    Router::new()
        .route(
            "/loki/api/v1/push",
            post(push_handler).layer(tower::limit::ConcurrencyLimitLayer::new(64)),
        )
        .route("/loki/api/v1/query", get(query).post(query_post))
        .route("/loki/api/v1/query_range", get(query_range).post(query_range_post))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
        .route("/loki/api/v1/series", get(series).post(series_post))
        .route("/loki/api/v1/index/stats", get(index_stats))
        .route("/loki/api/v1/tail", get(super::tail::tail))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(store)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", message.into()),
    )
        .into_response()
}

fn query_error(e: QueryError) -> Response {
    let status = StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.message)
}

fn bad(m: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::BadData, m)
}

async fn push_handler(State(store): State<Arc<LogStore>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = match headers.get(BATCH_HEADER).map(|v| {
        v.to_str()
            .map_err(|_| "not ASCII".to_string())
            .and_then(|v| BatchHeader::parse(v).map_err(|e| e.to_string()))
    }) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("header {BATCH_HEADER}: {e}")),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .to_ascii_lowercase();
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let json = content_type.starts_with("application/json");
    match encoding.as_deref() {
        None | Some("identity") => {}
        Some("snappy") if !json => {}
        Some(other) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported (protobuf bodies are snappy, JSON bodies plain)"),
            );
        }
    }
    let s = store.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(u64, usize, Vec<String>), AppendError> {
        let limits = &s.config().limits;
        let streams = if json {
            push::decode_json(&body)
        } else {
            tidewatch_model::remote_write::decompress(&body, limits.max_decompressed_body.bytes() as usize)
                .map_err(|e| format!("snappy: {e}"))
                .and_then(|raw| push::decode_protobuf(&raw))
        }
        .map_err(|e| AppendError::Rejected(format!("body: {e}")))?;
        let (records, refused) = validate(streams, s.as_ref());
        let (seq, outcome) = s.append_blocking(records, header.as_ref())?;
        Ok((seq, outcome.accepted, refused))
    })
    .await;
    let (seq, accepted, refused) = match result {
        Ok(Ok(x)) => x,
        Ok(Err(AppendError::Rejected(m))) => return error(StatusCode::BAD_REQUEST, m),
        Ok(Err(AppendError::OverLimit(m))) => return error(StatusCode::TOO_MANY_REQUESTS, m),
        Ok(Err(AppendError::Unavailable(m))) => return error(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("push task failed: {e}")),
    };
    if let Err(e) = store.wait_durable(seq).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    if refused.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let shown: Vec<&String> = refused.iter().take(10).collect();
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "{accepted} entries stored, {} refused: {}",
            refused.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; ")
        ),
    )
}

/// Turns decoded streams into a batch in wire order; refused entries are `None` with a reason.
fn validate(streams: Vec<Stream>, store: &LogStore) -> (IngestBatch, Vec<String>) {
    let limits = &store.config().limits;
    let oldest = store.oldest_accepted_ns();
    let mut out = IngestBatch::default();
    let mut seen: std::collections::HashMap<Labels, u32> = std::collections::HashMap::new();
    let mut refused = Vec::new();
    for (i, s) in streams.into_iter().enumerate() {
        let labels = s.labels.and_then(|l| push::check_labels(&l, limits).map(|_| l));
        let labels = match labels {
            Ok(l) => l,
            Err(e) => {
                refused.push(format!("streams[{i}]: {e} ({} entries)", s.entries.len()));
                out.entries.extend(s.entries.iter().map(|_| None));
                continue;
            }
        };
        // Streams repeated in one push (as some clients send them) are stored once.
        let stream = match seen.get(&labels) {
            Some(k) => *k,
            None => {
                let k = out.streams.len() as u32;
                seen.insert(labels.clone(), k);
                out.streams.push(labels);
                k
            }
        };
        let labels = &out.streams[stream as usize];
        for (j, (ts, line)) in s.entries.into_iter().enumerate() {
            if line.len() as u64 > limits.max_line_size.bytes() {
                refused.push(format!(
                    "streams[{i}] {labels} entry {j}: line of {} bytes is longer than logs.limits.max_line_size ({})",
                    line.len(),
                    limits.max_line_size
                ));
                out.entries.push(None);
            } else if ts < oldest {
                refused.push(format!(
                    "streams[{i}] {labels} entry {j}: timestamp {ts} is older than the retention"
                ));
                out.entries.push(None);
            } else {
                out.entries.push(Some(Entry { stream, ts, line }));
            }
        }
    }
    (out, refused)
}

type Params = BTreeMap<String, String>;

/// Lines grouped by their labels: `(labels, [(ns, line)])`.
pub type StreamsResult = Vec<(Labels, Vec<(i64, String)>)>;

fn params(query: Option<String>, body: &[u8]) -> Params {
    let mut p: Params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    p.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    p
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, QueryError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => parse_time(v).map_err(|e| bad(format!("parameter {name}: {e}"))),
    }
}

fn limit_param(store: &LogStore, p: &Params) -> Result<usize, QueryError> {
    let max = store.config().limits.max_entries_per_query;
    let limit = match p.get("limit").filter(|v| !v.is_empty()) {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("parameter limit: {v:?} is not a number")))?,
    };
    if limit > max {
        return Err(bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {max})"
        )));
    }
    Ok(limit)
}

fn backward(p: &Params) -> Result<bool, QueryError> {
    match p.get("direction").map(|d| d.to_ascii_lowercase()) {
        None => Ok(true),
        Some(d) if d == "backward" || d.is_empty() => Ok(true),
        Some(d) if d == "forward" => Ok(false),
        Some(d) => Err(bad(format!("parameter direction: {d:?} is not forward or backward"))),
    }
}

fn float_str(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{v}")
    }
}

fn matrix_json(m: &[Series]) -> Value {
    Value::Array(
        m.iter()
            .map(|s| {
                json!({
                    "metric": s.labels,
                    "values": s.samples.iter().map(|x| json!([x.timestamp_ms as f64 / 1000.0, float_str(x.value)])).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn success(result_type: &str, result: Value) -> Response {
    axum::Json(json!({
        "status": "success",
        "data": {"resultType": result_type, "result": result, "stats": {}},
    }))
    .into_response()
}

impl LogStore {
    /// A log query: the lines, grouped into streams by their labels after the pipeline.
    pub fn select_lines(
        &self,
        query: &str,
        start: i64,
        end: i64,
        limit: usize,
        backward: bool,
    ) -> Result<StreamsResult, QueryError> {
        let Expr::Log(log) = parse(query).map_err(bad)? else {
            return Err(bad("expected a log query such as {job=\"x\"} |= \"error\""));
        };
        let parts = self.partitions_in(start, end);
        let entries = eval::select_logs(&parts, &log, start, end, limit, backward)?;
        let mut streams: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
        for e in entries {
            streams.entry(e.labels).or_default().push((e.ts, e.line));
        }
        Ok(streams.into_iter().collect())
    }

    /// A metric query evaluated at every step from `start` to `end` (ns, inclusive).
    pub fn eval_metric(&self, query: &str, start: i64, end: i64, step: i64) -> Result<Vec<Series>, QueryError> {
        eval_metric_in(&self.partitions, &self.config().limits, query, start, end, step)
    }

    fn stream_labels(&self, matchers: Option<&[LabelMatcher]>, start: i64, end: i64) -> BTreeSet<Labels> {
        let mut out = BTreeSet::new();
        for p in self.partitions_in(start, end) {
            match matchers {
                Some(m) => out.extend(eval::matching_streams(&p, m).into_iter().map(|(_, l)| l)),
                None => out.extend(p.streams.read().unwrap().by_id.values().cloned()),
            }
        }
        out
    }
}

/// A metric query over `partitions`; what [`LogStore::eval_metric`] and the `Query`
/// implementation (on a blocking thread, without borrowing the store) both run.
fn eval_metric_in(
    partitions: &Partitions,
    limits: &LogsLimitsConfig,
    query: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<Series>, QueryError> {
    let Expr::Metric(m) = parse(query).map_err(bad)? else {
        return Err(bad("expected a metric query such as count_over_time({job=\"x\"}[5m])"));
    };
    if step <= 0 {
        return Err(bad("zero or negative query resolution step widths are not accepted"));
    }
    let steps = (end - start) / step + 1;
    if steps > 11_000 {
        return Err(bad(format!(
            "exceeded maximum resolution of 11,000 points per timeseries ({steps}); try increasing step"
        )));
    }
    let lookback = max_range(&m);
    let (lo, hi) = (start.saturating_sub(lookback), end.saturating_add(1));
    let parts: Vec<Arc<Partition>> = partitions
        .read()
        .unwrap()
        .values()
        .filter(|p| p.end_ns > lo && p.start_ns < hi)
        .cloned()
        .collect();
    eval::eval_metric(
        &parts,
        &m,
        &MetricParams {
            start,
            end,
            step,
            max_lines: limits.max_lines_per_metric_query,
            max_points: limits.max_points_per_query,
        },
    )
}

fn max_range(m: &super::logql::MetricExpr) -> i64 {
    match m {
        super::logql::MetricExpr::Range {
            range_ns, offset_ns, ..
        } => range_ns + offset_ns,
        super::logql::MetricExpr::Agg { inner, .. } => max_range(inner),
        super::logql::MetricExpr::Scalar(_) => 0,
        super::logql::MetricExpr::Binary { lhs, rhs, .. } => max_range(lhs).max(max_range(rhs)),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| QueryError::new(QueryErrorKind::Internal, e.to_string()))?
}

async fn query(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery) -> Response {
    run_query(s, params(q, b"")).await
}
async fn query_post(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    run_query(s, params(q, &body)).await
}

async fn run_query(store: Arc<LogStore>, p: Params) -> Response {
    let r = blocking(move || {
        let q = p.get("query").cloned().ok_or_else(|| bad("parameter query is required"))?;
        let t = time_param(&p, "time", now_ns())?;
        match parse(&q).map_err(bad)? {
            Expr::Log(_) => Err(bad(
                "log queries are not supported as an instant query type, please change your query to a range query type",
            )),
            Expr::Metric(_) => store.eval_metric(&q, t, t, 1),
        }
    })
    .await;
    match r {
        Ok(m) => {
            let QueryValue::Vector(v) = eval::as_vector(m) else {
                unreachable!()
            };
            let result: Vec<Value> = v
                .iter()
                .map(|s| json!({"metric": s.labels, "value": [s.sample.timestamp_ms as f64 / 1000.0, float_str(s.sample.value)]}))
                .collect();
            success("vector", Value::Array(result))
        }
        Err(e) => query_error(e),
    }
}

async fn query_range(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery) -> Response {
    run_range(s, params(q, b"")).await
}
async fn query_range_post(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    run_range(s, params(q, &body)).await
}

enum RangeResult {
    Streams(Vec<(Labels, Vec<(i64, String)>)>),
    Matrix(Vec<Series>),
}

async fn run_range(store: Arc<LogStore>, p: Params) -> Response {
    let r = blocking(move || {
        let q = p
            .get("query")
            .cloned()
            .ok_or_else(|| bad("parameter query is required"))?;
        let now = now_ns();
        let end = time_param(&p, "end", now)?;
        let start = time_param(&p, "start", end - 3_600_000_000_000)?;
        if end < start {
            return Err(bad("the end timestamp must not be before the start time"));
        }
        match parse(&q).map_err(bad)? {
            Expr::Log(_) => {
                let limit = limit_param(&store, &p)?;
                // Loki's end is inclusive for log queries when start == end; half-open otherwise.
                let end_excl = if end == start { end + 1 } else { end };
                Ok(RangeResult::Streams(store.select_lines(
                    &q,
                    start,
                    end_excl,
                    limit,
                    backward(&p)?,
                )?))
            }
            Expr::Metric(_) => {
                let step = match p.get("step").filter(|v| !v.is_empty()) {
                    Some(v) => parse_duration_ns(v).map_err(|e| bad(format!("parameter step: {e}")))?,
                    None => (((end - start) as f64 / 1e9 / 250.0).ceil().max(1.0) * 1e9) as i64,
                };
                Ok(RangeResult::Matrix(store.eval_metric(&q, start, end, step)?))
            }
        }
    })
    .await;
    match r {
        Ok(RangeResult::Streams(streams)) => success(
            "streams",
            Value::Array(
                streams
                    .iter()
                    .map(|(l, v)| json!({"stream": l, "values": v.iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>()}))
                    .collect(),
            ),
        ),
        Ok(RangeResult::Matrix(m)) => success("matrix", matrix_json(&m)),
        Err(e) => query_error(e),
    }
}

fn range_params(p: &Params) -> Result<(i64, i64), QueryError> {
    let end = time_param(p, "end", now_ns())?;
    let start = time_param(p, "start", end - 6 * 3_600_000_000_000)?;
    Ok((start, end.max(start) + 1))
}

fn data(v: Value) -> Response {
    axum::Json(json!({"status": "success", "data": v})).into_response()
}

async fn labels(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery) -> Response {
    let r = blocking(move || {
        let p = params(q, b"");
        let (start, end) = range_params(&p)?;
        let m = match p.get("query").filter(|v| !v.is_empty()) {
            Some(q) => Some(selector(q)?),
            None => None,
        };
        let names: BTreeSet<String> = s
            .stream_labels(m.as_deref(), start, end)
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
            .collect();
        Ok(names)
    })
    .await;
    match r {
        Ok(n) => data(json!(n)),
        Err(e) => query_error(e),
    }
}

async fn label_values(State(s): State<Arc<LogStore>>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    let r = blocking(move || {
        let p = params(q, b"");
        let (start, end) = range_params(&p)?;
        let m = match p.get("query").filter(|v| !v.is_empty()) {
            Some(q) => Some(selector(q)?),
            None => None,
        };
        let values: BTreeSet<String> = s
            .stream_labels(m.as_deref(), start, end)
            .iter()
            .filter_map(|l| l.get(&name).map(str::to_string))
            .collect();
        Ok(values)
    })
    .await;
    match r {
        Ok(v) => data(json!(v)),
        Err(e) => query_error(e),
    }
}

fn selector(q: &str) -> Result<Vec<LabelMatcher>, QueryError> {
    match parse(q).map_err(bad)? {
        Expr::Log(l) => Ok(l.matchers),
        Expr::Metric(_) => Err(bad(format!("{q:?} is not a stream selector"))),
    }
}

async fn series(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery) -> Response {
    series_run(s, params(q, b"")).await
}
async fn series_post(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    series_run(s, params_multi(q, &body)).await
}

fn params_multi(q: Option<String>, body: &[u8]) -> Params {
    params(q, body)
}

async fn series_run(s: Arc<LogStore>, p: Params) -> Response {
    let r = blocking(move || {
        let (start, end) = range_params(&p)?;
        let sels: Vec<&String> = p
            .iter()
            .filter(|(k, _)| k.as_str() == "match[]" || k.as_str() == "match")
            .map(|(_, v)| v)
            .collect();
        if sels.is_empty() {
            return Err(bad("parameter match[] is required"));
        }
        let mut out = BTreeSet::new();
        for q in sels {
            out.extend(s.stream_labels(Some(&selector(q)?), start, end));
        }
        Ok(out)
    })
    .await;
    match r {
        Ok(v) => data(json!(v)),
        Err(e) => query_error(e),
    }
}

async fn index_stats(State(s): State<Arc<LogStore>>, RawQuery(q): RawQuery) -> Response {
    let r = blocking(move || {
        let p = params(q, b"");
        let (start, end) = range_params(&p)?;
        let q = p
            .get("query")
            .cloned()
            .ok_or_else(|| bad("parameter query is required"))?;
        let Expr::Log(mut log) = parse(&q).map_err(bad)? else {
            return Err(bad(format!("{q:?} is not a stream selector")));
        };
        log.stages.clear();
        let (mut streams, mut chunks, mut entries, mut bytes) = (BTreeSet::new(), 0u64, 0u64, 0u64);
        for part in s.partitions_in(start, end) {
            let searcher = part.reader.searcher();
            chunks += searcher.segment_readers().len() as u64;
            eval::scan_partition(&part, &searcher, &log, start, end, &mut |h| {
                streams.insert((part.start_ns, h.sid));
                entries += 1;
                bytes += h.len;
                Ok(())
            })?;
        }
        Ok(json!({"streams": streams.len(), "chunks": chunks, "entries": entries, "bytes": bytes}))
    })
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => query_error(e),
    }
}

/// LogQL metric queries through the shared query interface (times in milliseconds), so alert
/// rules and the autoscaler can use them. Log queries are `bad_data`. Evaluation runs on a
/// blocking thread (`spawn_blocking`), so any runtime flavour works, current-thread included.
#[async_trait]
impl Query for LogStore {
    async fn instant(&self, expr: &str, at_ms: i64, _options: &QueryOptions) -> Result<QueryValue, QueryError> {
        let t = at_ms.saturating_mul(1_000_000);
        self.metric_off_thread(expr, t, t, 1).await.map(eval::as_vector)
    }

    async fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        _options: &QueryOptions,
    ) -> Result<QueryValue, QueryError> {
        self.metric_off_thread(
            expr,
            start_ms.saturating_mul(1_000_000),
            end_ms.saturating_mul(1_000_000),
            step_ms.saturating_mul(1_000_000),
        )
        .await
        .map(QueryValue::Matrix)
    }
}

impl LogStore {
    async fn metric_off_thread(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Vec<Series>, QueryError> {
        let partitions = self.partitions.clone();
        let limits = self.config().limits.clone();
        let expr = expr.to_string();
        blocking(move || eval_metric_in(&partitions, &limits, &expr, start, end, step)).await
    }
}
