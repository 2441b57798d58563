//! `GET /loki/api/v1/tail` over a real websocket (tokio-tungstenite, ws:// on loopback) on the
//! loghub lines: the backfill since `start`, live lines as they are pushed, checked against a
//! plain substring filter over the raw file; a client that does not read gets drops reported
//! in `dropped_entries`; bad parameters get Loki's 400s.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tidewatch_store::logs::{LogStore, LogsConfig, routes};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

mod common;
use common::{lines, now_ns};

fn config(tail_buffer: usize) -> LogsConfig {
    let mut c = common::config();
    c.limits.tail_buffer = tail_buffer;
    c
}

struct Server {
    store: Arc<LogStore>,
    app: axum::Router,
    addr: std::net::SocketAddr,
}

async fn serve(dir: &Path, tail_buffer: usize) -> Server {
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir, config(tail_buffer), &mut reg).unwrap());
    let app = routes(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    Server { store, app, addr }
}

/// Pushes `lines` as one stream `{job=...}`, line `i` at `base + i ms`.
async fn push(app: &axum::Router, job: &str, base: i64, lines: &[String]) {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!([(base + i as i64 * 1_000_000).to_string(), l]))
        .collect();
    let body = json!({"streams": [{"stream": {"job": job}, "values": values}]});
    let req = Request::post("/loki/api/v1/push")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, params: &[(&str, &str)]) -> Ws {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{addr}/loki/api/v1/tail?{q}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Reads messages until `done` says so (generous bound: a hang fails instead of blocking).
async fn read_until(ws: &mut Ws, mut done: impl FnMut(&Value) -> bool) {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let msg = ws.next().await.expect("socket open").expect("websocket message");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text).expect("tail message is JSON");
            assert!(v["streams"].is_array() && v["dropped_entries"].is_array(), "{v}");
            if done(&v) {
                return;
            }
        }
    })
    .await
    .expect("tail messages did not arrive");
}

fn entries(v: &Value) -> Vec<(Value, i64, String)> {
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["values"].as_array().unwrap().iter().map(move |e| {
                (
                    s["stream"].clone(),
                    e[0].as_str().unwrap().parse().unwrap(),
                    e[1].as_str().unwrap().to_string(),
                )
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sends_the_backfill_then_live_lines_matching_the_raw_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), 10_000).await;
    let ssh = lines("OpenSSH");
    let base = now_ns() - 600_000_000_000;
    let needle = "Failed password";
    // History: the first 500 lines, searchable before the tail starts.
    push(&s.app, "ssh", base, &ssh[..500]).await;
    let want_hist: Vec<(i64, String)> = ssh[..500]
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, l)| (base + i as i64 * 1_000_000, l.clone()))
        .collect();
    assert!(!want_hist.is_empty());
    let query = format!("{{job=\"ssh\"}} |= \"{needle}\"");
    loop {
        let got = s.store.select_lines(&query, base - 1, now_ns(), 5000, false).unwrap();
        if got.iter().map(|(_, v)| v.len()).sum::<usize>() == want_hist.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = (base - 1).to_string();
    let mut ws = connect(s.addr, &[("query", &query), ("start", &start), ("limit", "5000")]).await;
    let mut hist = Vec::new();
    read_until(&mut ws, |v| {
        hist.extend(entries(v));
        hist.len() >= want_hist.len()
    })
    .await;
    let got: Vec<(i64, String)> = hist.iter().map(|(_, t, l)| (*t, l.clone())).collect();
    assert_eq!(got, want_hist, "backfill, oldest first");
    assert!(hist.iter().all(|(l, _, _)| l == &json!({"job": "ssh"})));

    // Live: the rest, in 3 pushes; lines of another job must not come.
    let live_base = base + 500 * 1_000_000;
    for (k, chunk) in ssh[500..].chunks(500).enumerate() {
        push(&s.app, "ssh", live_base + k as i64 * 500 * 1_000_000, chunk).await;
        push(&s.app, "other", live_base, chunk).await;
    }
    let want_live: BTreeSet<(i64, String)> = ssh[500..]
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, l)| (live_base + i as i64 * 1_000_000, l.clone()))
        .collect();
    let mut live = BTreeSet::new();
    let mut dropped = 0;
    read_until(&mut ws, |v| {
        for (labels, t, l) in entries(v) {
            assert_eq!(labels, json!({"job": "ssh"}));
            assert!(live.insert((t, l)), "a line came twice");
        }
        dropped += v["dropped_entries"].as_array().unwrap().len();
        live.len() >= want_live.len()
    })
    .await;
    assert_eq!(live, want_live);
    assert_eq!(dropped, 0);
    ws.close(None).await.unwrap();
    s.store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_gets_the_overflow_in_dropped_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), 10).await;
    let hdfs = lines("HDFS");
    let base = now_ns() - 60_000_000_000;
    let start = (base - 1_000_000).to_string();
    // One line of history: its arrival in the backfill shows the connection is subscribed.
    push(&s.app, "hdfs", base - 1_000_000, &hdfs[..1]).await;
    while s
        .store
        .select_lines("{job=\"hdfs\"}", base - 2_000_000, now_ns(), 10, false)
        .unwrap()
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = connect(s.addr, &[("query", "{job=\"hdfs\"}"), ("start", &start)]).await;
    read_until(&mut ws, |v| entries(v).len() == 1).await;
    // One push of 500 lines reaches the connection's 10-line buffer at once: 10 are kept.
    push(&s.app, "hdfs", base, &hdfs[..500]).await;
    let (mut sent, mut dropped) = (BTreeSet::new(), BTreeSet::new());
    read_until(&mut ws, |v| {
        for (_, t, _) in entries(v) {
            sent.insert(t);
        }
        for d in v["dropped_entries"].as_array().unwrap() {
            assert_eq!(d["labels"], json!({"job": "hdfs"}));
            dropped.insert(d["timestamp"].as_str().unwrap().parse::<i64>().unwrap());
        }
        sent.len() + dropped.len() >= 500
    })
    .await;
    assert_eq!(sent.len(), 10, "the buffer holds 10 lines");
    assert_eq!(dropped.len(), 490);
    let all: BTreeSet<i64> = sent.union(&dropped).copied().collect();
    let want: BTreeSet<i64> = (0..500).map(|i| base + i * 1_000_000).collect();
    assert_eq!(all, want, "every line is either sent or reported dropped");
    s.store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_refuses_bad_parameters_with_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), 100).await;
    for (params, want) in [
        (
            "query=%7Bjob%3D%22x%22%7D&delay_for=6",
            "delay_for can't be greater than 5",
        ),
        (
            "query=count_over_time(%7Bjob%3D%22x%22%7D%5B1m%5D)",
            "not a metric query",
        ),
        ("query=%7Bjob%3D%22x%22%7D&limit=99999", "max_entries_limit"),
        ("delay_for=1", "parameter query is required"),
        ("query=%7Bjob%3D%22x%22%7D&start=yesterday", "parameter start"),
    ] {
        let req = Request::get(format!("/loki/api/v1/tail?{params}"))
            .body(Body::empty())
            .unwrap();
        let resp = s.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{params}");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(want), "{params}: {text}");
    }
    // A valid query without the upgrade headers is not a websocket.
    let req = Request::get("/loki/api/v1/tail?query=%7Bjob%3D%22x%22%7D")
        .body(Body::empty())
        .unwrap();
    let resp = s.app.clone().oneshot(req).await.unwrap();
    assert!(resp.status().is_client_error());
    s.store.close();
}
