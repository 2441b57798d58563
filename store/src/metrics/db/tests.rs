use std::sync::atomic::{AtomicBool, Ordering};

use tidewatch_model::{BatchRange, Labels};

use super::*;
use crate::metrics::config::WalConfig;
use crate::metrics::head::WriteBatch;

const MINUTE: i64 = 60_000;

fn config(block_minutes: u64) -> MetricsConfig {
    MetricsConfig {
        block_range: tidewatch_model::Duration::from_secs(block_minutes * 60),
        wal: WalConfig {
            fsync: false,
            segment_size: tidewatch_model::ByteSize(4096),
        },
        ..Default::default()
    }
}

fn open(dir: &Path, config: MetricsConfig) -> MetricsStore {
    MetricsStore::open(dir, config, &mut Registry::default()).unwrap()
}

/// `series` series of `up`, one sample every 15 s from `from` to `to` (ms, exclusive).
fn samples(series: usize, from: i64, to: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    (0..series)
        .map(|s| {
            (
                format!("{s:03}"),
                (from..to)
                    .step_by(15_000)
                    .map(|t| (t, (t / 1000) as f64 + s as f64))
                    .collect(),
            )
        })
        .collect()
}

async fn write(store: &MetricsStore, data: &[(String, Vec<(i64, f64)>)]) {
    let mut batch = WriteBatch::default();
    for (name, s) in data {
        batch.push([("__name__", "up"), ("instance", name.as_str())], s.iter().copied());
    }
    let out = store.append(&batch, None).await.unwrap();
    assert_eq!(out.refused_count(), 0, "{:?}", out.refused);
}

fn all(store: &MetricsStore) -> Vec<Series> {
    store
        .select(&[Matcher::equal("__name__", "up")], i64::MIN, i64::MAX, usize::MAX)
        .unwrap()
}

fn total(series: &[Series]) -> usize {
    series.iter().map(|s| s.samples.len()).sum()
}

#[tokio::test]
async fn writes_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config(120));
    write(&store, &samples(10, 0, 10 * MINUTE)).await;
    let before = all(&store);
    assert_eq!(total(&before), 10 * 40);
    store.close();
    drop(store);
    let store = open(dir.path(), config(120));
    assert_eq!(all(&store), before);
}

#[tokio::test]
async fn the_head_is_cut_into_blocks_and_the_wal_shrinks_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config(2));
    // 10 minutes of data, in one-minute writes as a scraper would send them.
    for m in 0..10 {
        write(&store, &samples(20, m * MINUTE, (m + 1) * MINUTE)).await;
    }
    let wal_dir = dir.path().join("wal");
    let segments_before = crate::metrics::wal::segments(&wal_dir).unwrap().len();
    let report = store.maintain().unwrap();
    assert!(report.cut >= 3, "{report:?}");
    // [0,2) [2,4) [4,6) [6,8) were cut (the first three then compacted into one 6-minute
    // block); the head keeps the last 1.5 ranges.
    let blocks = store.blocks();
    assert!(!blocks.is_empty());
    assert!(
        blocks.iter().all(|b| b.meta().max_time_ms < 8 * MINUTE),
        "{:?}",
        blocks.iter().map(|b| b.meta()).collect::<Vec<_>>()
    );
    assert_eq!(blocks.iter().map(|b| b.meta().num_samples).sum::<u64>(), 20 * 4 * 8);
    let segments_after = crate::metrics::wal::segments(&wal_dir).unwrap().len();
    assert!(
        segments_after < segments_before,
        "WAL segments {segments_before} → {segments_after}"
    );
    let got = all(&store);
    assert_eq!(total(&got), 20 * 40, "every sample, from blocks and head");
    assert!(
        got.iter()
            .all(|s| s.samples.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms))
    );
    // A sample in a range that is now a block is refused, not silently lost.
    let mut batch = WriteBatch::default();
    batch.push([("__name__", "up"), ("instance", "000")], [(1_000, 1.0)]);
    let out = store.append(&batch, None).await.unwrap();
    assert_eq!(out.refused[0].0, crate::metrics::Refusal::OutOfBounds);
    // And all of it comes back after a restart, from blocks and the shortened WAL.
    store.close();
    drop(store);
    let store = open(dir.path(), config(2));
    assert_eq!(all(&store), got);
}

#[tokio::test]
async fn compaction_merges_blocks_of_a_window_and_retention_drops_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1);
    // Blocks may grow to a tenth of the retention: 4 minutes, so 3-minute windows compact.
    cfg.retention = tidewatch_model::Duration::from_secs(40 * 60);
    let store = open(dir.path(), cfg);
    for m in 0..30 {
        write(&store, &samples(5, m * MINUTE, (m + 1) * MINUTE)).await;
    }
    let report = store.maintain().unwrap();
    assert!(report.cut >= 20, "{report:?}");
    assert!(report.compacted >= 5, "{report:?}");
    assert_eq!(report.expired, 0);
    assert!(
        store
            .blocks()
            .iter()
            .any(|b| b.meta().level >= 2 && b.meta().max_time_ms - b.meta().min_time_ms > 2 * MINUTE)
    );
    assert_eq!(total(&all(&store)), 5 * 4 * 30);
    for m in 30..60 {
        write(&store, &samples(5, m * MINUTE, (m + 1) * MINUTE)).await;
    }
    let report = store.maintain().unwrap();
    assert!(report.expired >= 1, "{report:?}");
    let cutoff = 60 * MINUTE - 15_000 - 40 * MINUTE;
    assert!(
        store.blocks().iter().all(|b| b.meta().max_time_ms >= cutoff),
        "retention dropped the blocks older than 40 minutes"
    );
    let got = all(&store);
    let oldest_kept = got
        .iter()
        .flat_map(|s| s.samples.first())
        .map(|s| s.timestamp_ms)
        .min()
        .unwrap();
    assert!(oldest_kept > 0, "the oldest data is gone");
    assert!(
        got.iter().all(|s| s
            .samples
            .windows(2)
            .all(|w| w[1].timestamp_ms - w[0].timestamp_ms == 15_000)),
        "no gaps or duplicates in what remains"
    );
    // Retired blocks are deleted from disk once no query holds them.
    let on_disk = std::fs::read_dir(dir.path().join("blocks")).unwrap().count();
    assert_eq!(on_disk, store.blocks().len());
}

#[tokio::test]
async fn retention_by_size_deletes_the_oldest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1);
    cfg.retention_size = tidewatch_model::ByteSize(1);
    let store = open(dir.path(), cfg);
    for m in 0..6 {
        write(&store, &samples(5, m * MINUTE, (m + 1) * MINUTE)).await;
    }
    let report = store.maintain().unwrap();
    assert!(report.cut >= 4);
    assert!(store.blocks().is_empty(), "a 1-byte budget keeps no block");
    assert!(total(&all(&store)) > 0, "the head is untouched by size retention");
}

#[tokio::test]
async fn delivery_marks_survive_cuts_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), config(1));
    let mut seq = 0u64;
    for m in 0..5 {
        let data = samples(2, m * MINUTE, (m + 1) * MINUTE);
        let mut batch = WriteBatch::default();
        for (name, s) in &data {
            batch.push([("__name__", "up"), ("instance", name.as_str())], s.iter().copied());
        }
        let n = batch.samples.len() as u64;
        let header = BatchHeader {
            ranges: vec![BatchRange {
                source: "agent-1/scrape".into(),
                first: seq + 1,
                last: seq + n,
            }],
        };
        store.append(&batch, Some(&header)).await.unwrap();
        seq += n;
    }
    store.maintain().unwrap();
    store.close();
    drop(store);
    let store = open(dir.path(), config(1));
    // Re-sending the last batch applies nothing.
    let data = samples(2, 4 * MINUTE, 5 * MINUTE);
    let mut batch = WriteBatch::default();
    for (name, s) in &data {
        batch.push([("__name__", "up"), ("instance", name.as_str())], s.iter().copied());
    }
    let n = batch.samples.len() as u64;
    let header = BatchHeader {
        ranges: vec![BatchRange {
            source: "agent-1/scrape".into(),
            first: seq - n + 1,
            last: seq,
        }],
    };
    let out = store.append(&batch, Some(&header)).await.unwrap();
    assert_eq!((out.accepted, out.refused_count()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_before_the_wal_sync() {
    let dir = tempfile::tempdir().unwrap();
    let held = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let flag = held.clone();
    let hook: wal::SyncHook = Arc::new(move || {
        // Only hold syncs once the test says so (opening the store syncs too).
        if flag.load(Ordering::SeqCst) {
            let _ = release_rx.lock().unwrap().recv();
        }
    });
    let mut cfg = config(120);
    cfg.wal.fsync = true;
    let store = Arc::new(MetricsStore::open_with(dir.path(), cfg, &mut Registry::default(), Some(hook)).unwrap());
    held.store(true, Ordering::SeqCst);
    let writer = tokio::spawn({
        let store = store.clone();
        async move { write(&store, &samples(1, 0, MINUTE)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "the write was acknowledged while its fsync was held"
    );
    // The samples are already in the head (readable), just not acknowledged.
    assert_eq!(total(&all(&store)), 4);
    held.store(false, Ordering::SeqCst);
    release_tx.send(()).unwrap();
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_queries_go_on_during_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path(), config(1)));
    for m in 0..20 {
        write(&store, &samples(50, m * MINUTE, (m + 1) * MINUTE)).await;
    }
    let maint = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.maintain().unwrap()
    });
    let mut writes = 0;
    let mut m = 20;
    while !maint.is_finished() || writes == 0 {
        write(&store, &samples(50, m * MINUTE, (m + 1) * MINUTE)).await;
        assert!(!all(&store).is_empty());
        writes += 1;
        m += 1;
    }
    let report = maint.await.unwrap();
    assert!(report.cut > 0);
    assert_eq!(total(&all(&store)), 50 * 4 * m as usize);
    let _ = Labels::new();
}
