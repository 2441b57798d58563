//! Retention drops whole partitions while ingest and queries go on: a writer pushes one
//! partition's worth of loghub lines per minute of timestamps (1-minute partitions, a size
//! bound of a few partitions), two readers query all the while; no query fails, every minute a
//! query sees holds all of its lines or none, and the oldest partitions vanish from disk whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tidewatch_store::logs::{LogStore, LogsConfig, routes};
use tower::ServiceExt;

mod common;
use common::now_ns;

const MINUTE: i64 = 60_000_000_000;
const PER_MINUTE: usize = 200;
const MINUTES: usize = 30;

fn lines() -> Vec<String> {
    common::lines("Apache")
}

fn config() -> LogsConfig {
    LogsConfig {
        partition: tidewatch_model::Duration::from_secs(60),
        retention_size: tidewatch_model::ByteSize(150 * 1024),
        retention_interval: tidewatch_model::Duration::from_millis(50),
        commit_interval: tidewatch_model::Duration::from_millis(50),
        writer_memory: tidewatch_model::ByteSize::mib(16),
        indexing_threads: 1,
        ..LogsConfig::default()
    }
}

async fn push(app: &axum::Router, minute_start: i64, lines: &[String]) -> (StatusCode, String) {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| json!([(minute_start + i as i64 * 1_000_000).to_string(), l]))
        .collect();
    let body = json!({"streams": [{"stream": {"job": "ret"}, "values": values}]});
    let req = Request::post("/loki/api/v1/push")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).to_string())
}

/// Lines per minute `0..MINUTES` as `count_over_time` sees them (a window per minute).
fn counts(store: &LogStore, t0: i64) -> Vec<Option<f64>> {
    let q = r#"count_over_time({job="ret"}[1m])"#;
    let start = t0 + MINUTE / 2;
    let end = start + (MINUTES as i64 - 1) * MINUTE;
    let m = store
        .eval_metric(q, start, end, MINUTE)
        .expect("metric query during retention");
    let mut out = vec![None; MINUTES];
    for s in m {
        for x in s.samples {
            let k = ((x.timestamp_ms * 1_000_000 - start) / MINUTE) as usize;
            out[k] = Some(x.value);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_partitions_while_ingest_and_queries_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let store = Arc::new(LogStore::open(dir.path(), config(), &mut reg).unwrap());
    let app = routes(store.clone());
    let apache = lines();
    let t0 = (now_ns() - 40 * MINUTE) / MINUTE * MINUTE;
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let queries = Arc::new(AtomicUsize::new(0));

    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, stop, acked, queries) = (store.clone(), stop.clone(), acked.clone(), queries.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let done = acked.load(Ordering::Acquire);
                    if r == 0 {
                        for (k, c) in counts(&store, t0).into_iter().enumerate() {
                            // A minute is one push, one partition: all of it or nothing.
                            if let Some(c) = c {
                                assert_eq!(c, PER_MINUTE as f64, "minute {k} seen partially");
                            }
                        }
                    } else {
                        let got = store
                            .select_lines(r#"{job="ret"} |= "GET""#, t0, now_ns(), 5000, true)
                            .expect("log query during retention");
                        let n: usize = got.iter().map(|(_, v)| v.len()).sum();
                        assert!(n <= done.max(1) * PER_MINUTE + PER_MINUTE);
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                    // Leave the cores to ingest now and then (a debug build on 2 cores).
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();

    for k in 0..MINUTES {
        let chunk: Vec<String> = (0..PER_MINUTE)
            .map(|i| apache[(k * PER_MINUTE + i) % apache.len()].clone())
            .collect();
        let (status, body) = push(&app, t0 + k as i64 * MINUTE, &chunk).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "minute {k}: {body}");
        acked.store(k + 1, Ordering::Release);
        // Let a commit (and a retention pass) happen between minutes now and then.
        if k % 3 == 0 {
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    }
    // Every acknowledged minute gets indexed (the last one is searchable), then retention
    // settles: the size bound holds, the newest partition stays.
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts(&store, t0)[MINUTES - 1].is_none() {
        assert!(Instant::now() < deadline, "the last minute never became searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let parts = store.partition_list();
        let total: u64 = parts.values().sum();
        if total <= config().retention_size.bytes() || parts.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not bring {total} bytes under the bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader failed");
    }
    assert!(queries.load(Ordering::Relaxed) > 0);

    let parts = store.partition_list();
    let kept: Vec<usize> = parts.keys().map(|s| ((s - t0) / MINUTE) as usize).collect();
    assert!(!kept.is_empty() && kept.len() < MINUTES, "kept {kept:?}");
    let first = kept[0];
    assert_eq!(
        kept,
        (first..MINUTES).collect::<Vec<_>>(),
        "the newest partitions are kept, contiguous"
    );
    let counts = counts(&store, t0);
    for (k, c) in counts.iter().enumerate() {
        if k < first {
            assert_eq!(*c, None, "minute {k} was dropped but still answers");
        } else {
            assert_eq!(*c, Some(PER_MINUTE as f64), "minute {k} is kept whole");
        }
    }
    // The dropped partitions' folders are gone; the kept ones are there.
    let folders: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != "wal")
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(folders.len(), kept.len(), "{folders:?}");
    // A line for a dropped minute is refused, not silently lost.
    let (status, body) = push(&app, t0, &apache[..1]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("older than the retention"), "{body}");
    store.close();
}
