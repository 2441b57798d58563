//! The metrics store: WAL + head + blocks, and the maintenance that moves data between them.
//!
//! Write path: decode → (head and WAL under one lock) → wait for the WAL sync → acknowledge.
//! Read path: every block overlapping the range, then the head, merged by series.
//! Maintenance (one at a time, off the async workers): cut the head's oldest block range into
//! a Parquet block, compact adjacent blocks, apply retention, delete retired blocks once no
//! reader holds them.
//!
//! Order that keeps acknowledged data visible and durable through a cut: seal the range in the
//! head (older writes are refused from then on) and collect it in the same lock; write and
//! open the block; publish it to readers; only then drop the range from the head and delete the
//! WAL segments whose samples all lie before it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tidewatch_model::{AppendError, BatchHeader, Matcher, Sample, Series};
use tracing::{error, info, warn};

use super::block::{self, Block};
use super::config::MetricsConfig;
use super::head::{AppendOutcome, Head, HeadOptions, HeadStats, WriteBatch};
use super::wal::{self, Durability, Record, Wal, WalOptions};

/// Why the store could not open or answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The WAL could not be read or written.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// A block could not be written or read.
    #[error(transparent)]
    Block(#[from] block::BlockError),
    /// A folder could not be created or listed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A query would hold more samples than allowed.
    #[error("query would load more than {0} samples (metrics.limits / query max_samples)")]
    TooManySamples(usize),
}

/// The store's own metrics, registered in the process registry.
#[derive(Clone, Default)]
struct StoreMetrics {
    appended: Counter,
    refused: Family<Vec<(String, String)>, Counter>,
    head_series: Gauge,
    blocks: Gauge,
    block_cuts: Counter,
    compactions: Counter,
    retention_deletions: Counter,
}

impl StoreMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = StoreMetrics::default();
        registry.register(
            "tidewatch_metrics_samples_appended",
            "Samples stored",
            m.appended.clone(),
        );
        registry.register(
            "tidewatch_metrics_samples_refused",
            "Samples refused, by reason",
            m.refused.clone(),
        );
        registry.register(
            "tidewatch_metrics_head_series",
            "Series in the head",
            m.head_series.clone(),
        );
        registry.register("tidewatch_metrics_blocks", "Blocks on disk", m.blocks.clone());
        registry.register(
            "tidewatch_metrics_block_cuts",
            "Blocks cut from the head",
            m.block_cuts.clone(),
        );
        registry.register(
            "tidewatch_metrics_compactions",
            "Compactions run",
            m.compactions.clone(),
        );
        registry.register(
            "tidewatch_metrics_retention_deleted_blocks",
            "Blocks deleted by retention",
            m.retention_deletions.clone(),
        );
        m
    }
}

struct Inner {
    head: Head,
    wal: Wal,
    /// The newest sample time written to each WAL segment, to know which can be deleted.
    segment_max_t: BTreeMap<u32, i64>,
}

/// What [`MetricsStore::maintain`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Blocks cut from the head.
    pub cut: usize,
    /// Compactions run.
    pub compacted: usize,
    /// Blocks deleted by retention.
    pub expired: usize,
}

/// Metrics storage in `<data_dir>/metrics`.
pub struct MetricsStore {
    blocks_dir: PathBuf,
    config: MetricsConfig,
    inner: Mutex<Inner>,
    durability: Durability,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Blocks replaced or expired, deleted once no query holds them.
    retired: Mutex<Vec<Arc<Block>>>,
    metrics: StoreMetrics,
    maintenance: Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock is a bug already reported; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MetricsStore {
    /// Opens (or creates) the store in `dir`: opens the blocks, replays the WAL into the head,
    /// and starts a new WAL segment. Returns once everything acknowledged before is readable.
    pub fn open(dir: &Path, config: MetricsConfig, registry: &mut Registry) -> Result<MetricsStore, StoreError> {
        Self::open_with(dir, config, registry, None)
    }

    /// [`MetricsStore::open`] with a hook called before each WAL sync (tests only).
    pub fn open_with(
        dir: &Path,
        config: MetricsConfig,
        registry: &mut Registry,
        sync_hook: Option<wal::SyncHook>,
    ) -> Result<MetricsStore, StoreError> {
        let started = std::time::Instant::now();
        let blocks_dir = dir.join("blocks");
        let wal_dir = dir.join("wal");
        std::fs::create_dir_all(&blocks_dir).map_err(io(&blocks_dir))?;
        let blocks = open_blocks(&blocks_dir)?;
        // Only blocks cut from the head bound it: imported blocks (level 0) may lie anywhere in
        // time, and must not make the head refuse, or drop on replay, newer samples.
        let lower_bound = blocks
            .iter()
            .filter(|b| b.meta().level >= 1)
            .map(|b| b.meta().max_time_ms.saturating_add(1))
            .max()
            .unwrap_or(i64::MIN);

        let options = HeadOptions {
            block_range_ms: config.block_range.as_std().as_millis() as i64,
            out_of_order_window_ms: config.out_of_order_window.as_std().as_millis() as i64,
            limits: config.limits.head(),
        };
        let mut head = Head::new(options, lower_bound);
        let mut segment_max_t = BTreeMap::new();
        let mut samples = 0usize;
        let stats = wal::replay(&wal_dir, |segment, record| {
            if let Record::Samples { samples: s, .. } = &record {
                if let Some(max) = s.iter().map(|x| x.1).max() {
                    let e = segment_max_t.entry(segment).or_insert(i64::MIN);
                    *e = (*e).max(max);
                }
            } else {
                segment_max_t.entry(segment).or_insert(i64::MIN);
            }
            samples += head.replay(record);
        })?;
        let mut wal = Wal::open(
            &wal_dir,
            WalOptions {
                fsync: config.wal.fsync,
                segment_bytes: config.wal.segment_size.bytes(),
                sync_hook,
            },
        )?;
        // Each segment starts with every delivery mark, so older segments can go once their
        // samples are in blocks.
        let mut snapshot = Vec::new();
        wal::format::encode_marks_record(&mut snapshot, head.marks().iter().collect::<Vec<_>>().into_iter());
        wal.submit(snapshot)?;
        segment_max_t.insert(wal.segment(), i64::MIN);
        info!(
            blocks = blocks.len(),
            wal_segments = stats.segments,
            wal_records = stats.records,
            samples_replayed = samples,
            series = head.num_series(),
            truncated_bytes = stats.truncated_bytes,
            took = ?started.elapsed(),
            "metrics store open"
        );
        let metrics = StoreMetrics::register(registry);
        metrics.head_series.set(head.num_series() as i64);
        metrics.blocks.set(blocks.len() as i64);
        let durability = wal.durability();
        Ok(MetricsStore {
            blocks_dir,
            config,
            inner: Mutex::new(Inner {
                head,
                wal,
                segment_max_t,
            }),
            durability,
            blocks: RwLock::new(blocks),
            retired: Mutex::new(Vec::new()),
            metrics,
            maintenance: Mutex::new(()),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Applies a write to the head and queues it in the WAL; the caller must then
    /// `durability().wait(outcome.wait_for)` before acknowledging. Blocking: call it off the
    /// async workers.
    pub fn append_unsynced(
        &self,
        batch: &WriteBatch<'_>,
        header: Option<&BatchHeader>,
    ) -> Result<AppendOutcome, AppendError> {
        let mut inner = lock(&self.inner);
        let Inner {
            head,
            wal,
            segment_max_t,
        } = &mut *inner;
        let keep = match header {
            Some(h) => Some(
                head.marks()
                    .plan(h, batch.samples.len())
                    .map_err(|e| AppendError::Rejected(e.to_string()))?,
            ),
            None => None,
        };
        let outcome = head
            .append(batch, keep.as_deref(), header, wal)
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        if let Some(max) = batch.samples.iter().map(|s| s.0).max() {
            let e = segment_max_t.entry(wal.segment()).or_insert(i64::MIN);
            *e = (*e).max(max);
        }
        self.metrics.appended.inc_by(outcome.accepted as u64);
        for (why, n, _) in &outcome.refused {
            self.metrics
                .refused
                .get_or_create(&vec![("reason".to_string(), why.as_str().to_string())])
                .inc_by(*n as u64);
        }
        self.metrics.head_series.set(head.num_series() as i64);
        Ok(outcome)
    }

    /// Waits for WAL writes.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    /// Appends and waits until durable.
    pub async fn append(
        &self,
        batch: &WriteBatch<'_>,
        header: Option<&BatchHeader>,
    ) -> Result<AppendOutcome, AppendError> {
        let outcome = self.append_unsynced(batch, header)?;
        self.durability
            .wait(outcome.wait_for)
            .await
            .map_err(|e| AppendError::Unavailable(e.to_string()))?;
        Ok(outcome)
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`, from blocks and head,
    /// sorted by labels. Fails rather than hold more than `max_samples` samples.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<Vec<Series>, StoreError> {
        let blocks: Vec<Arc<Block>> = self.blocks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut merged: BTreeMap<tidewatch_model::Labels, Vec<Sample>> = BTreeMap::new();
        let mut held = 0usize;
        let mut add = |series: Vec<Series>, held: &mut usize| -> Result<(), StoreError> {
            for s in series {
                *held += s.samples.len();
                if *held > max_samples {
                    return Err(StoreError::TooManySamples(max_samples));
                }
                merged.entry(s.labels).or_default().extend(s.samples);
            }
            Ok(())
        };
        // Blocks are read on all cores; their results are merged in time order below.
        use rayon::prelude::*;
        let parts: Vec<Result<Vec<Series>, block::BlockError>> = blocks
            .par_iter()
            .filter(|b| b.meta().max_time_ms >= mint && b.meta().min_time_ms <= maxt)
            .map(|b| b.select(matchers, mint, maxt))
            .collect();
        for part in parts {
            add(part?, &mut held)?;
        }
        let head = lock(&self.inner).head.select(matchers, mint, maxt);
        add(head, &mut held)?;
        Ok(merged
            .into_iter()
            .map(|(labels, mut samples)| {
                // Blocks come in time order and before the head; a sample in two places (a block
                // cut racing a query) is the same sample.
                if !samples.is_sorted_by_key(|s| s.timestamp_ms) {
                    samples.sort_by_key(|s| s.timestamp_ms);
                }
                samples.dedup_by_key(|s| s.timestamp_ms);
                Series { labels, samples }
            })
            .collect())
    }

    /// Label names among series matching `matchers` (all series when empty), sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = lock(&self.inner).head.label_names(matchers);
        for b in self.blocks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            names.extend(b.label_names(matchers));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Values of `name` among series matching `matchers`, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StoreError> {
        let mut values: Vec<String> = lock(&self.inner).head.label_values(name, matchers);
        for b in self.blocks.read().unwrap_or_else(|e| e.into_inner()).iter() {
            values.extend(b.label_values(name, matchers));
        }
        values.sort();
        values.dedup();
        Ok(values)
    }

    /// Cardinality statistics of the head (`/api/v1/status/tsdb`).
    pub fn head_stats(&self, limit: usize) -> HeadStats {
        lock(&self.inner).head.stats(limit)
    }

    /// The blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Cuts, compacts, expires and deletes as needed. Blocking; one call at a time.
    pub fn maintain(&self) -> Result<Maintenance, StoreError> {
        let _one = lock(&self.maintenance);
        let mut report = Maintenance::default();
        while self.cut_one()? {
            report.cut += 1;
        }
        report.compacted = self.compact()?;
        report.expired = self.expire()?;
        self.delete_retired();
        self.metrics.blocks.set(self.blocks().len() as i64);
        Ok(report)
    }

    fn block_range(&self) -> i64 {
        (self.config.block_range.as_std().as_millis() as i64).max(1)
    }

    /// Cuts the head's oldest block range when the head spans more than 1.5 ranges.
    fn cut_one(&self) -> Result<bool, StoreError> {
        let range = self.block_range();
        let (start, end, data) = {
            let mut inner = lock(&self.inner);
            let Some((min, max)) = inner.head.time_range() else {
                return Ok(false);
            };
            if max - min <= range + range / 2 {
                return Ok(false);
            }
            let start = min.div_euclid(range) * range;
            let end = start + range;
            // Sealed and collected under one lock: no sample older than `end` can slip in
            // after the collection and be lost by the truncation below.
            inner.head.seal_before(end);
            (start, end, inner.head.collect(start, end))
        };
        let series = data
            .into_iter()
            .map(|c| c.decode())
            .filter(|(_, samples)| !samples.is_empty());
        let meta = block::write_block(&self.blocks_dir, series, 1, Vec::new())?;
        let opened = Arc::new(Block::open(&self.blocks_dir.join(&meta.id))?);
        self.publish(vec![opened], &[]);
        let (delete_before, current) = {
            let mut inner = lock(&self.inner);
            inner.head.truncate(end);
            self.metrics.head_series.set(inner.head.num_series() as i64);
            let current = inner.wal.segment();
            let mut first_kept = current;
            for (&segment, &max_t) in inner.segment_max_t.iter() {
                if segment >= current || max_t >= end {
                    first_kept = segment;
                    break;
                }
            }
            inner.segment_max_t.retain(|&s, _| s >= first_kept);
            (first_kept, current)
        };
        let deleted = lock(&self.inner).wal.delete_before(delete_before)?;
        self.metrics.block_cuts.inc();
        info!(block = %meta.id, start, end, series = meta.num_series, samples = meta.num_samples, wal_segments_deleted = deleted, current_segment = current, "cut a block from the head");
        Ok(true)
    }

    /// Adds `new` blocks and retires `old` ones in one step, so a query sees either.
    fn publish(&self, new: Vec<Arc<Block>>, old: &[String]) {
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        let mut retired = Vec::new();
        blocks.retain(|b| {
            let keep = !old.contains(&b.meta().id);
            if !keep {
                retired.push(b.clone());
            }
            keep
        });
        blocks.extend(new);
        blocks.sort_by_key(|b| (b.meta().min_time_ms, b.meta().max_time_ms));
        drop(blocks);
        lock(&self.retired).extend(retired);
    }

    /// Merges blocks that fall in the same window of 3×, 9×, 27×… the block range (up to 31
    /// days or a tenth of the retention), once the window is entirely behind the head.
    fn compact(&self) -> Result<usize, StoreError> {
        let range = self.block_range();
        let max_span = (self.config.retention.as_std().as_millis() as i64 / 10).clamp(range, 31 * 86_400_000);
        let sealed = lock(&self.inner).head.lower_bound();
        let mut done = 0;
        let mut window = range * 3;
        while window <= max_span {
            let blocks = self.blocks();
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in blocks {
                let m = b.meta();
                let w = m.min_time_ms.div_euclid(window);
                // Only blocks entirely inside one window, and windows the head has moved past.
                if m.max_time_ms.div_euclid(window) == w && (w + 1) * window <= sealed {
                    groups.entry(w).or_default().push(b);
                }
            }
            for (_, group) in groups.into_iter().filter(|(_, g)| g.len() > 1) {
                let inputs: Vec<&Block> = group.iter().map(|b| b.as_ref()).collect();
                let meta = block::compact(&self.blocks_dir, &inputs)?;
                let opened = Arc::new(Block::open(&self.blocks_dir.join(&meta.id))?);
                let old: Vec<String> = group.iter().map(|b| b.meta().id.clone()).collect();
                self.publish(vec![opened], &old);
                self.metrics.compactions.inc();
                info!(block = %meta.id, from = ?old, samples = meta.num_samples, "compacted blocks");
                done += 1;
            }
            window *= 3;
        }
        Ok(done)
    }

    /// Retires blocks past the retention time or beyond the retention size, oldest first.
    fn expire(&self) -> Result<usize, StoreError> {
        let blocks = self.blocks();
        let newest = {
            let inner = lock(&self.inner);
            inner.head.time_range().map(|r| r.1)
        }
        .into_iter()
        .chain(blocks.iter().map(|b| b.meta().max_time_ms))
        .max();
        let Some(newest) = newest else { return Ok(0) };
        let cutoff = newest - self.config.retention.as_std().as_millis() as i64;
        let mut expired: Vec<String> = blocks
            .iter()
            .filter(|b| b.meta().max_time_ms < cutoff)
            .map(|b| b.meta().id.clone())
            .collect();
        let limit = self.config.retention_size.bytes();
        if limit > 0 {
            let wal_bytes = dir_size(&self.blocks_dir.with_file_name("wal"));
            let mut total: u64 = wal_bytes + blocks.iter().map(|b| b.size_bytes()).sum::<u64>();
            for b in &blocks {
                if total <= limit {
                    break;
                }
                if !expired.contains(&b.meta().id) {
                    expired.push(b.meta().id.clone());
                }
                total = total.saturating_sub(b.size_bytes());
            }
        }
        if !expired.is_empty() {
            info!(blocks = ?expired, cutoff, "retention deletes blocks");
            self.metrics.retention_deletions.inc_by(expired.len() as u64);
            self.publish(Vec::new(), &expired);
        }
        Ok(expired.len())
    }

    /// Deletes retired blocks that no query holds any more.
    fn delete_retired(&self) {
        let mut retired = lock(&self.retired);
        retired.retain(|b| {
            if Arc::strong_count(b) > 1 {
                return true;
            }
            if let Err(e) = block::delete_block(b.dir()) {
                error!(block = %b.meta().id, error = %e, "cannot delete a retired block; will retry");
                return true;
            }
            false
        });
    }

    /// Writes and syncs what the WAL holds and stops its writer. Later writes fail.
    pub fn close(&self) {
        lock(&self.inner).wal.close();
    }
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Opens every block; one that fails to open is set aside as `<id>.corrupt` (kept for
/// inspection, never deleted) so the rest of the data stays available.
fn open_blocks(dir: &Path) -> Result<Vec<Arc<Block>>, StoreError> {
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || name.contains('.') {
            if name.ends_with(".tmp") || name.ends_with(".deleted") {
                // Left by a crash mid-write or mid-delete: never complete, safe to remove.
                let _ = std::fs::remove_dir_all(&path);
            }
            continue;
        }
        match Block::open(&path) {
            Ok(b) => blocks.push(Arc::new(b)),
            Err(e) => {
                let aside = path.with_extension("corrupt");
                error!(block = %path.display(), error = %e, moved_to = %aside.display(), "cannot open a block; set aside, the rest of the data stays available");
                if let Err(e) = std::fs::rename(&path, &aside) {
                    warn!(error = %e, "cannot set the block aside");
                }
            }
        }
    }
    blocks.sort_by_key(|b| (b.meta().min_time_ms, b.meta().max_time_ms));
    Ok(blocks)
}

#[cfg(test)]
mod tests;
