//! Worst ingest latency while the store cuts a block and compacts (issue #3: "without stalling
//! them"). Fills the head with SERIES series × 3 hours at 15 s, then writes one new round of
//! every series in a loop — fsync on, as in production — while `maintain()` cuts the oldest
//! two hours into a Parquet block, and reports write latency percentiles before and during.
//!
//! Run: `cargo run --release -p tidewatch-store --example maintenance_latency -- [SERIES]`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tidewatch_store::metrics::{MetricsConfig, MetricsStore, WriteBatch};

const STEP: i64 = 15_000;

fn round(series: usize, t: i64) -> Vec<(String, (i64, f64))> {
    (0..series)
        .map(|s| (format!("{s:06}"), (t, (t / 1000 + s as i64) as f64)))
        .collect()
}

async fn write(store: &MetricsStore, data: &[(String, (i64, f64))]) -> Duration {
    let mut batch = WriteBatch::default();
    for (instance, sample) in data {
        batch.push(
            [
                ("__name__", "bench_metric"),
                ("instance", instance.as_str()),
                ("job", "bench"),
            ],
            [*sample],
        );
    }
    let start = Instant::now();
    store.append(&batch, None).await.expect("append");
    start.elapsed()
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no writes".into();
    }
    v.sort();
    let p = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "{} writes, p50 {:?}, p99 {:?}, max {:?}",
        v.len(),
        p(0.5),
        p(0.99),
        v[v.len() - 1]
    )
}

#[tokio::main]
async fn main() {
    let series: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("SERIES"))
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(MetricsStore::open(dir.path(), MetricsConfig::default(), &mut Registry::default()).expect("open"));
    let rounds = 3 * 3600 * 1000 / STEP;
    let started = Instant::now();
    for r in 0..rounds {
        write(&store, &round(series, r * STEP)).await;
    }
    println!("filled {series} series x {rounds} rounds in {:?}", started.elapsed());
    let mut t = rounds * STEP;
    let mut before = Vec::new();
    for _ in 0..50 {
        before.push(write(&store, &round(series, t)).await);
        t += STEP;
    }
    let done = Arc::new(AtomicBool::new(false));
    let maint = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let report = store.maintain().expect("maintain");
            done.store(true, Ordering::SeqCst);
            (report, start.elapsed())
        })
    };
    let mut during = Vec::new();
    while !done.load(Ordering::SeqCst) {
        during.push(write(&store, &round(series, t)).await);
        t += STEP;
    }
    let (report, took) = maint.join().expect("maintenance thread");
    println!("maintenance: {report:?} in {took:?}");
    println!("writes of {series} samples before maintenance: {}", percentiles(before));
    println!("writes of {series} samples during maintenance: {}", percentiles(during));
}
