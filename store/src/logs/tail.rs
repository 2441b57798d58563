//! `GET /loki/api/v1/tail` over a websocket, as Loki serves it: first the lines since `start`
//! (oldest first, at most `limit`), then every new matching line as it becomes durable.
//!
//! Each connection has two halves. A filter task takes every durable push from the store's
//! broadcast, runs the query's selector and pipeline on it, and queues matches in a bounded
//! buffer (`logs.limits.tail_buffer` entries); when the buffer is full the entry is dropped and
//! its labels and timestamp are reported in the next message's `dropped_entries`, so a slow
//! client costs bounded memory and never slows ingest. The connection task sends the buffer
//! (entries older than `delay_for`, sorted by time, at most `limit` per message).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tidewatch_model::{Labels, QueryError, QueryErrorKind};
use tokio::sync::{Notify, broadcast};
use tracing::debug;

use super::logql::pipeline::{self, LabelMap};
use super::logql::{Expr, LogExpr, parse};
use super::store::LogStore;
use super::time::{now_ns, parse_time};
use super::wal::WalBatch;

/// Loki refuses a `delay_for` above 5 seconds.
const MAX_DELAY_SECS: u64 = 5;
/// Dropped entries named in one message; more are counted in the log only.
const MAX_DROPPED_LISTED: usize = 1000;

fn bad(m: impl Into<String>) -> QueryError {
    QueryError::new(QueryErrorKind::BadData, m)
}

/// A validated tail request.
struct TailSpec {
    query: String,
    log: LogExpr,
    delay: Duration,
    limit: usize,
    start: i64,
}

fn spec(store: &LogStore, q: Option<String>) -> Result<TailSpec, QueryError> {
    let p: BTreeMap<String, String> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let query = p
        .get("query")
        .cloned()
        .ok_or_else(|| bad("parameter query is required"))?;
    let Expr::Log(log) = parse(&query).map_err(bad)? else {
        return Err(bad(
            "tail takes a log query such as {job=\"x\"} |= \"error\", not a metric query",
        ));
    };
    let delay = match p.get("delay_for").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| bad(format!("parameter delay_for: {v:?} is not a whole number of seconds")))?,
    };
    if delay > MAX_DELAY_SECS {
        return Err(bad(format!("delay_for can't be greater than {MAX_DELAY_SECS}")));
    }
    let max = store.config().limits.max_entries_per_query;
    let limit = match p.get("limit").filter(|v| !v.is_empty()) {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad(format!("parameter limit: {v:?} is not a number")))?,
    };
    if limit == 0 || limit > max {
        return Err(bad(format!(
            "parameter limit: {limit} must be between 1 and max_entries_limit ({max})"
        )));
    }
    let start = match p.get("start").filter(|v| !v.is_empty()) {
        None => now_ns() - 3_600_000_000_000,
        Some(v) => parse_time(v).map_err(|e| bad(format!("parameter start: {e}")))?,
    };
    Ok(TailSpec {
        query,
        log,
        delay: Duration::from_secs(delay),
        limit,
        start,
    })
}

/// The route handler: validates the parameters (400 with the reason), then upgrades.
pub async fn tail(
    State(store): State<Arc<LogStore>>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let spec = match spec(&store, q) {
        Ok(s) => s,
        Err(e) => {
            return (
                axum::http::StatusCode::from_u16(e.kind.http_status()).unwrap_or(axum::http::StatusCode::BAD_REQUEST),
                format!("{}\n", e.message),
            )
                .into_response();
        }
    };
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| connection(store, spec, socket)),
        Err(rejection) => rejection.into_response(),
    }
}

struct Buffered {
    arrived: Instant,
    labels: Labels,
    ts: i64,
    line: String,
}

#[derive(Default)]
struct Buffer {
    entries: VecDeque<Buffered>,
    dropped: Vec<(Labels, i64)>,
    dropped_unlisted: u64,
    closed: bool,
}

fn message(entries: Vec<(Labels, i64, String)>, dropped: &[(Labels, i64)]) -> String {
    let mut streams: BTreeMap<Labels, Vec<(i64, String)>> = BTreeMap::new();
    for (l, ts, line) in entries {
        streams.entry(l).or_default().push((ts, line));
    }
    let streams: Vec<Value> = streams
        .into_iter()
        .map(|(l, mut v)| {
            v.sort_by_key(|e| e.0);
            json!({"stream": l, "values": v.iter().map(|(t, line)| json!([t.to_string(), line])).collect::<Vec<_>>()})
        })
        .collect();
    let dropped: Vec<Value> = dropped
        .iter()
        .map(|(l, ts)| json!({"labels": l, "timestamp": ts.to_string()}))
        .collect();
    json!({"streams": streams, "dropped_entries": dropped}).to_string()
}

/// Runs the selector and pipeline of `log` on the lines of a durable batch.
fn filter(log: &LogExpr, batch: &WalBatch) -> Vec<(Labels, i64, String)> {
    let selected: Vec<bool> = batch
        .streams
        .iter()
        .map(|l| log.matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
        .collect();
    let mut out = Vec::new();
    for e in &batch.entries {
        if !selected.get(e.stream as usize).copied().unwrap_or(false) {
            continue;
        }
        let labels = &batch.streams[e.stream as usize];
        let mut line = e.line.clone();
        let mut map: LabelMap = labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
        if pipeline::run(&log.stages, &mut line, &mut map).is_some() {
            out.push((Labels::from(map), e.ts, line));
        }
    }
    out
}

async fn connection(store: Arc<LogStore>, spec: TailSpec, mut socket: WebSocket) {
    // Subscribe before the backfill, so no line durable after it is missed; lines of the
    // backfill that also come live are skipped.
    let mut rx = store.subscribe_tail();
    let cap = store.config().limits.tail_buffer.max(1);
    let backfill = {
        let (store, query, start, limit) = (store.clone(), spec.query.clone(), spec.start, spec.limit);
        tokio::task::spawn_blocking(move || store.select_lines(&query, start, now_ns() + 1, limit, false)).await
    };
    let backfill = match backfill {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let _ = socket.send(Message::Text(format!("error: {}", e.message).into())).await;
            return;
        }
        Err(e) => {
            let _ = socket.send(Message::Text(format!("error: {e}").into())).await;
            return;
        }
    };
    let mut seen: HashSet<(i64, String)> = HashSet::new();
    let mut first = Vec::new();
    for (labels, values) in backfill {
        for (ts, line) in values {
            seen.insert((ts, line.clone()));
            first.push((labels.clone(), ts, line));
        }
    }
    if !first.is_empty() && socket.send(Message::Text(message(first, &[]).into())).await.is_err() {
        return;
    }
    let buffer = Arc::new(Mutex::new(Buffer::default()));
    let notify = Arc::new(Notify::new());
    let filter_task = {
        let (buffer, notify, log) = (buffer.clone(), notify.clone(), spec.log.clone());
        tokio::spawn(async move {
            loop {
                let batch = match rx.recv().await {
                    Ok(b) => b,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Not even the filter kept up: the pushes are gone unread; count them.
                        buffer.lock().unwrap().dropped_unlisted += n;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                let now = Instant::now();
                let mut matched = filter(&log, &batch);
                if !seen.is_empty() {
                    matched.retain(|(_, ts, line)| !seen.contains(&(*ts, line.clone())));
                }
                if matched.is_empty() {
                    continue;
                }
                let mut b = buffer.lock().unwrap();
                for (labels, ts, line) in matched {
                    if b.entries.len() >= cap {
                        if b.dropped.len() < MAX_DROPPED_LISTED {
                            b.dropped.push((labels, ts));
                        } else {
                            b.dropped_unlisted += 1;
                        }
                    } else {
                        b.entries.push_back(Buffered {
                            arrived: now,
                            labels,
                            ts,
                            line,
                        });
                    }
                }
                drop(b);
                notify.notify_one();
            }
            buffer.lock().unwrap().closed = true;
            notify.notify_one();
        })
    };
    let tick = if spec.delay.is_zero() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    };
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => continue,
            },
            _ = notify.notified() => {}
            _ = tokio::time::sleep(tick) => {}
        }
        let (ready, dropped, closed) = {
            let mut b = buffer.lock().unwrap();
            let mut ready = Vec::new();
            while ready.len() < spec.limit {
                match b.entries.front() {
                    Some(e) if e.arrived.elapsed() >= spec.delay => {
                        let e = b.entries.pop_front().unwrap();
                        ready.push((e.labels, e.ts, e.line));
                    }
                    _ => break,
                }
            }
            if !b.entries.is_empty() && ready.len() >= spec.limit {
                // More is ready: come back without waiting.
                notify.notify_one();
            }
            if b.dropped_unlisted > 0 {
                debug!(
                    count = b.dropped_unlisted,
                    "tail: entries dropped beyond the listed ones"
                );
                b.dropped_unlisted = 0;
            }
            (ready, std::mem::take(&mut b.dropped), b.closed)
        };
        if (!ready.is_empty() || !dropped.is_empty())
            && socket
                .send(Message::Text(message(ready, &dropped).into()))
                .await
                .is_err()
        {
            break;
        }
        if closed {
            let _ = socket.send(Message::Close(None)).await;
            break;
        }
    }
    filter_task.abort();
}
