use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

fn record(i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode_samples(&mut out, &[(1, i as i64, (i as f64).to_bits())], std::iter::empty());
    out
}

fn replayed(dir: &Path) -> (Vec<i64>, ReplayStats) {
    let mut ts = Vec::new();
    let stats = replay(dir, |_, r| {
        if let Record::Samples { samples, .. } = r {
            ts.extend(samples.iter().map(|s| s.1));
        }
    })
    .unwrap();
    (ts, stats)
}

#[tokio::test]
async fn writes_are_durable_in_order_and_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(
        dir.path(),
        WalOptions {
            segment_bytes: 200,
            ..Default::default()
        },
    )
    .unwrap();
    let durability = wal.durability();
    let mut last = 0;
    for i in 0..50 {
        if wal.wants_rotation() {
            wal.rotate().unwrap();
        }
        last = wal.submit(record(i)).unwrap();
    }
    durability.wait(last).await.unwrap();
    wal.close();
    let (ts, stats) = replayed(dir.path());
    assert_eq!(ts, (0..50).collect::<Vec<_>>());
    assert!(stats.segments > 3, "{stats:?}");
    // Reopening appends in a new segment after the old ones.
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.segment() as usize, stats.segments + 1);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_replay_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let d = wal.durability();
    for i in 0..10 {
        d.wait(wal.submit(record(i)).unwrap()).await.unwrap();
    }
    wal.close();
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let full = std::fs::metadata(&path).unwrap().len();
    // Cut the last record in half, and append garbage to simulate a crash mid-write.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(full - 5).unwrap();
    drop(file);
    let (ts, stats) = replayed(dir.path());
    assert_eq!(ts, (0..9).collect::<Vec<_>>());
    assert!(stats.truncated_bytes > 0);
    // The file now ends at the last good record, and replays cleanly.
    let (ts2, stats2) = replayed(dir.path());
    assert_eq!(ts2, ts);
    assert_eq!(stats2.truncated_bytes, 0);
}

#[tokio::test]
async fn a_flipped_bit_ends_the_segment_at_the_last_good_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let d = wal.durability();
    for i in 0..10 {
        d.wait(wal.submit(record(i)).unwrap()).await.unwrap();
    }
    wal.close();
    let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let one = bytes.len() / 10;
    bytes[one * 6 + 12] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let (ts, _) = replayed(dir.path());
    assert_eq!(ts, (0..6).collect::<Vec<_>>());
}

/// Nothing is acknowledged before its sync: the hook holds the sync, and the waiter must not
/// return until it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_acknowledged_before_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let syncs = Arc::new(AtomicUsize::new(0));
    let counted = syncs.clone();
    let hook: SyncHook = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = release_rx.lock().unwrap().recv();
    });
    let mut wal = Wal::open(
        dir.path(),
        WalOptions {
            sync_hook: Some(hook),
            ..Default::default()
        },
    )
    .unwrap();
    let seq = wal.submit(record(1)).unwrap();
    let waiter = tokio::spawn({
        let d = wal.durability();
        async move { d.wait(seq).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "acknowledged while its sync was held");
    assert_eq!(syncs.load(Ordering::SeqCst), 1, "the writer reached the sync");
    release_tx.send(()).unwrap();
    waiter.await.unwrap().unwrap();
    drop(release_tx);
    wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let syncs = Arc::new(AtomicUsize::new(0));
    let counted = syncs.clone();
    let hook: SyncHook = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(5));
    });
    let wal = Arc::new(std::sync::Mutex::new(
        Wal::open(
            dir.path(),
            WalOptions {
                sync_hook: Some(hook),
                ..Default::default()
            },
        )
        .unwrap(),
    ));
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let (seq, d) = {
                let mut w = wal.lock().unwrap();
                (w.submit(record(i)).unwrap(), w.durability())
            };
            d.wait(seq).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = syncs.load(Ordering::SeqCst);
    assert!(n < 200, "group commit: {n} syncs for 200 writes");
    wal.lock().unwrap().close();
    assert_eq!(replayed(dir.path()).0.len(), 200);
}
