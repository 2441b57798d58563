//! `LogStore`: open and replay, append (durable before the answer), select for queries, close.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tidewatch_model::{AppendError, BatchHeader, HighWaterMarks, Labels, LogRecord};
use tokio::sync::watch;

use super::config::LogsConfig;
use super::index::{Indexer, IndexerOptions, Partition, Partitions, open_partitions};
use super::time::now_ns;
pub use super::wal::Entry;
use super::wal::{self, Durable, Job, Wal, WalBatch, WalOptions, WalRecord};

/// Why the log store cannot open or work.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The WAL failed.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// tantivy failed.
    #[error("log index {path}: {source}")]
    Index {
        /// The partition or folder.
        path: PathBuf,
        /// The error.
        source: tantivy::TantivyError,
    },
    /// A file operation failed.
    #[error("logs {0}")]
    Io(String),
}

/// Lines to append: each stream once, entries referring to it by index, in wire order. An
/// entry refused by validation is `None`: it counts for the delivery marks, is not stored.
#[derive(Debug, Default)]
pub struct IngestBatch {
    /// The streams.
    pub streams: Vec<Labels>,
    /// The entries.
    pub entries: Vec<Option<Entry>>,
}

impl IngestBatch {
    /// Groups records by their labels.
    pub fn from_records(records: Vec<LogRecord>) -> IngestBatch {
        let mut index: HashMap<Labels, u32> = HashMap::new();
        let mut out = IngestBatch::default();
        for r in records {
            let stream = match index.get(&r.labels) {
                Some(i) => *i,
                None => {
                    let i = out.streams.len() as u32;
                    index.insert(r.labels.clone(), i);
                    out.streams.push(r.labels);
                    i
                }
            };
            out.entries.push(Some(Entry {
                stream,
                ts: r.timestamp_ns,
                line: r.line,
            }));
        }
        out
    }
}

/// The outcome of one push.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Lines written.
    pub accepted: usize,
    /// Lines dropped as already applied (delivery marks).
    pub duplicates: usize,
}

struct Ingest {
    marks: HighWaterMarks,
    next_seq: u64,
    wal: Option<Wal>,
}

#[derive(Default)]
struct Metrics {
    lines: Counter,
    bytes: Counter,
    duplicates: Counter,
    partitions: Gauge,
}

/// The log store: a WAL in front of one tantivy index per time partition.
pub struct LogStore {
    dir: PathBuf,
    config: LogsConfig,
    pub(crate) partitions: Partitions,
    ingest: Mutex<Ingest>,
    durable: watch::Receiver<Durable>,
    indexer: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Metrics,
    /// Partitions before this were dropped by retention (ns).
    dropped_before: Arc<AtomicU64>,
    /// Every durable push, for live tails.
    tail: tokio::sync::broadcast::Sender<Arc<WalBatch>>,
}

/// Pushes the tail broadcast holds for its slowest subscriber before it skips: memory is at
/// most this many pushes (each at most `logs.limits.max_decompressed_body`).
const TAIL_CHANNEL: usize = 64;

fn span_ns(config: &LogsConfig) -> i64 {
    (config.partition.as_std().as_nanos() as i64).max(60_000_000_000)
}

impl LogStore {
    /// Opens the store in `dir` (created if missing), replays its WAL into the indexes and
    /// commits, then starts the WAL writer and the indexer. Blocking.
    pub fn open(dir: &Path, config: LogsConfig, registry: &mut Registry) -> Result<LogStore, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| LogError::Io(format!("{}: {e}", dir.display())))?;
        let span = span_ns(&config);
        let parts = open_partitions(dir, span).map_err(LogError::Io)?;
        let mut marks = HighWaterMarks::default();
        let mut max_seq = 0;
        for p in parts.values() {
            for (s, m) in &p.committed.marks {
                marks.raise(s, *m);
            }
            max_seq = max_seq.max(p.committed.seq);
        }
        let partitions: Partitions = Arc::new(RwLock::new(parts));
        let options = IndexerOptions {
            span_ns: span,
            commit_interval: config
                .commit_interval
                .as_std()
                .max(std::time::Duration::from_millis(10)),
            writer_memory: config.writer_memory.bytes() as usize,
            threads: config.indexing_threads,
            retention_ns: config.retention.as_std().as_nanos().min(i64::MAX as u128) as i64,
            retention_bytes: config.retention_size.bytes(),
            retention_interval: config.retention_interval.as_std(),
        };
        let (tail, _) = tokio::sync::broadcast::channel(TAIL_CHANNEL);
        let mut indexer = Indexer::new(dir, options, partitions.clone(), marks.clone());
        let wal_dir = dir.join("wal");
        let mut replay_err = None;
        let replayed = wal::replay(&wal_dir, |r| match r {
            WalRecord::Marks(list) => {
                for (s, m) in list {
                    marks.raise(&s, m);
                }
            }
            WalRecord::Batch(b) => {
                for (s, m) in &b.marks {
                    marks.raise(s, *m);
                }
                max_seq = max_seq.max(b.seq);
                if replay_err.is_none()
                    && let Err(e) = indexer.add(b)
                {
                    replay_err = Some(e);
                }
            }
        })?;
        let index_err = |source| LogError::Index {
            path: dir.to_path_buf(),
            source,
        };
        if let Some(e) = replay_err {
            return Err(index_err(e));
        }
        indexer.commit().map_err(index_err)?;
        indexer.maintain();
        let dropped_before = indexer.dropped_before;
        indexer.tail = Some(tail.clone());
        let dropped_before = Arc::new(AtomicU64::new(dropped_before.max(0) as u64));
        indexer.dropped_before_shared = Some(dropped_before.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel::<WalBatch>(64);
        let wal = Wal::open(
            &wal_dir,
            WalOptions {
                fsync: config.wal.fsync,
                segment_bytes: config.wal.segment_size.bytes().max(1 << 20),
            },
            marks.clone(),
            &replayed,
            tx,
        )?;
        let truncator = wal.truncator();
        truncator.truncate(max_seq);
        let durable = wal.durable();
        let thread = std::thread::Builder::new()
            .name("logs-indexer".into())
            .spawn(move || indexer.run(rx, truncator))
            .map_err(|e| LogError::Io(e.to_string()))?;
        let metrics = Metrics::default();
        registry.register(
            "tidewatch_logs_lines_ingested",
            "Log lines written to the logs WAL",
            metrics.lines.clone(),
        );
        registry.register(
            "tidewatch_logs_bytes_ingested",
            "Bytes of log lines written to the logs WAL",
            metrics.bytes.clone(),
        );
        registry.register(
            "tidewatch_logs_duplicate_lines",
            "Log lines dropped because their delivery marks show them applied",
            metrics.duplicates.clone(),
        );
        registry.register(
            "tidewatch_logs_partitions",
            "Log partitions open",
            metrics.partitions.clone(),
        );
        metrics.partitions.set(partitions.read().unwrap().len() as i64);
        Ok(LogStore {
            dir: dir.to_path_buf(),
            config,
            partitions,
            ingest: Mutex::new(Ingest {
                marks,
                next_seq: max_seq + 1,
                wal: Some(wal),
            }),
            durable,
            indexer: Mutex::new(Some(thread)),
            metrics,
            dropped_before,
            tail,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LogsConfig {
        &self.config
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The oldest timestamp a push may carry (older lines would land in dropped partitions).
    pub fn oldest_accepted_ns(&self) -> i64 {
        let retention = self.config.retention.as_std().as_nanos().min(i64::MAX as u128) as i64;
        (now_ns().saturating_sub(retention)).max(self.dropped_before.load(Ordering::Relaxed) as i64)
    }

    /// Writes `batch` (entries refused by validation are `None`: they count for the delivery
    /// marks but are not stored) and returns the sequence number to wait for. Blocking: call
    /// it off the async workers.
    pub fn append_blocking(
        &self,
        batch: IngestBatch,
        delivery: Option<&BatchHeader>,
    ) -> Result<(u64, AppendOutcome), AppendError> {
        let mut ingest = self.ingest.lock().unwrap();
        let IngestBatch { streams, entries } = batch;
        let total = entries.len();
        let (entries, marks): (Vec<Entry>, Vec<(String, u64)>) = match delivery {
            None => (entries.into_iter().flatten().collect(), Vec::new()),
            Some(h) => {
                let plan = ingest
                    .marks
                    .plan(h, total)
                    .map_err(|e| AppendError::Rejected(format!("header {}: {e}", tidewatch_model::BATCH_HEADER)))?;
                let mut keep = Vec::new();
                let mut it = entries.into_iter().enumerate();
                for r in plan {
                    for (i, e) in it.by_ref() {
                        if i >= r.start && i < r.end {
                            keep.extend(e);
                        }
                        if i + 1 >= r.end {
                            break;
                        }
                    }
                }
                (keep, h.ranges.iter().map(|r| (r.source.clone(), r.last)).collect())
            }
        };
        let accepted = entries.len();
        let applied = match delivery {
            Some(h) => ingest
                .marks
                .plan(h, total)
                .map(|p| p.iter().map(|r| r.len()).sum())
                .unwrap_or(total),
            None => total,
        };
        let duplicates = total.saturating_sub(applied);
        let marks_move = marks.iter().any(|(s, m)| ingest.marks.mark(s) < *m);
        if entries.is_empty() && !marks_move {
            self.metrics.duplicates.inc_by(duplicates as u64);
            return Ok((
                0,
                AppendOutcome {
                    accepted: 0,
                    duplicates,
                },
            ));
        }
        let seq = ingest.next_seq;
        let batch = WalBatch {
            seq,
            marks,
            streams,
            entries,
        };
        let bytes = wal::encode_batch(&batch);
        let line_bytes = batch.line_bytes();
        let wal = ingest
            .wal
            .as_ref()
            .ok_or_else(|| AppendError::Unavailable("the log store is closed".into()))?;
        wal.submit(Job { bytes, batch })
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        ingest.next_seq += 1;
        if let Some(h) = delivery {
            ingest.marks.advance(h);
        }
        self.metrics.lines.inc_by(accepted as u64);
        self.metrics.bytes.inc_by(line_bytes as u64);
        self.metrics.duplicates.inc_by(duplicates as u64);
        Ok((seq, AppendOutcome { accepted, duplicates }))
    }

    /// Waits until batch `seq` is durable (0: nothing to wait for).
    pub async fn wait_durable(&self, seq: u64) -> Result<(), AppendError> {
        if seq == 0 {
            return Ok(());
        }
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| AppendError::Unavailable("the logs WAL writer stopped".into()))?;
        match &state.failed {
            Some(f) if state.seq < seq => Err(AppendError::Unavailable(f.to_string())),
            _ => Ok(()),
        }
    }

    /// Appends records; returns once they are durable (the `Appender` contract).
    pub async fn append(
        self: &Arc<Self>,
        records: Vec<LogRecord>,
        delivery: Option<BatchHeader>,
    ) -> Result<AppendOutcome, AppendError> {
        let store = self.clone();
        let (seq, outcome) = tokio::task::spawn_blocking(move || {
            store.append_blocking(IngestBatch::from_records(records), delivery.as_ref())
        })
        .await
        .map_err(|e| AppendError::Unavailable(e.to_string()))??;
        self.wait_durable(seq).await?;
        Ok(outcome)
    }

    /// The partitions overlapping `[start, end)`, oldest first.
    pub fn partitions_in(&self, start: i64, end: i64) -> Vec<Arc<Partition>> {
        let parts = self.partitions.read().unwrap();
        self.metrics.partitions.set(parts.len() as i64);
        parts
            .values()
            .filter(|p| p.end_ns > start && p.start_ns < end)
            .cloned()
            .collect()
    }

    /// Every push from now on, once durable and in WAL order (for `tail`). A subscriber that
    /// falls more than a few dozen pushes behind gets `Lagged`.
    pub fn subscribe_tail(&self) -> tokio::sync::broadcast::Receiver<Arc<WalBatch>> {
        self.tail.subscribe()
    }

    /// The delivery mark of `source`.
    pub fn mark(&self, source: &str) -> u64 {
        self.ingest.lock().unwrap().marks.mark(source)
    }

    /// Bytes on disk (partitions and WAL).
    pub fn disk_bytes(&self) -> u64 {
        super::index::dir_size(&self.dir)
    }

    /// Stops accepting writes, writes and indexes what is queued, commits and stops the
    /// threads. Blocking.
    pub fn close(&self) {
        let wal = self.ingest.lock().unwrap().wal.take();
        if let Some(mut wal) = wal {
            wal.close();
        }
        if let Some(t) = self.indexer.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    /// Partition starts and sizes, for tests and the status page.
    pub fn partition_list(&self) -> BTreeMap<i64, u64> {
        self.partitions
            .read()
            .unwrap()
            .values()
            .map(|p| (p.start_ns, p.disk_bytes()))
            .collect()
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}
