//! What the log store's integration tests share: the loghub files, a small store
//! configuration, and calls to the Loki API through the router.
//!
//! Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tidewatch_store::logs::LogsConfig;
use tower::ServiceExt;

/// The loghub samples in ../shared (read in place, never copied into the repository).
pub const LOGHUB: &str = "/work/shared/data/loghub";

/// Every loghub sample, 2,000 lines each.
pub const FILES: [&str; 10] = [
    "Android",
    "Apache",
    "BGL",
    "HDFS",
    "Hadoop",
    "Linux",
    "OpenSSH",
    "OpenStack",
    "Spark",
    "Zookeeper",
];

/// The lines of `<name>_2k.log`.
pub fn lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(LOGHUB).join(format!("{name}_2k.log")))
        .expect("loghub data")
        .lines()
        .map(str::to_string)
        .collect()
}

/// A store that commits every 100 ms with one indexing thread.
pub fn config() -> LogsConfig {
    LogsConfig {
        commit_interval: tidewatch_model::Duration::from_millis(100),
        writer_memory: tidewatch_model::ByteSize::mib(32),
        indexing_threads: 1,
        ..LogsConfig::default()
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Line `i` of a file is at `base + i ms`.
pub fn ts(base: i64, i: usize) -> i64 {
    base + i as i64 * 1_000_000
}

pub async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 30).await.unwrap();
    (status, body.to_vec())
}

pub async fn get_raw(app: &axum::Router, path: &str, params: &[(&str, &str)]) -> (StatusCode, String) {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let (status, body) = call(app, Request::get(format!("{path}?{q}")).body(Body::empty()).unwrap()).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A GET that must answer 200 with JSON.
pub async fn get(app: &axum::Router, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = get_raw(app, path, params).await;
    assert_eq!(status, StatusCode::OK, "{path} {params:?}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A vector result as `name=value,...` → sample value.
pub fn vector(v: &Value) -> BTreeMap<String, f64> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect::<Vec<_>>()
                .join(",");
            (key, s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

/// Every line of a streams result, sorted by time then text.
pub fn stream_lines(v: &Value) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["values"].as_array().unwrap().iter().map(|e| {
                (
                    e[0].as_str().unwrap().parse().unwrap(),
                    e[1].as_str().unwrap().to_string(),
                )
            })
        })
        .collect();
    out.sort();
    out
}

/// An instant query that must give a vector.
pub async fn instant(app: &axum::Router, q: &str, at: i64) -> BTreeMap<String, f64> {
    let v = get(app, "/loki/api/v1/query", &[("query", q), ("time", &at.to_string())]).await;
    assert_eq!(v["data"]["resultType"], "vector", "{q}");
    vector(&v)
}
