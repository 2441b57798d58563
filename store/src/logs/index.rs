//! Partitions: one tantivy index per time span, their schema and tokenizer, and the indexer
//! thread that batches synced WAL batches into commits.
//!
//! Schema (chosen for size; see `store/docs/format/logs.md`):
//! - `ts`: i64 nanoseconds, fast field only (an indexed unique timestamp costs ~7 % of the raw
//!   size and range filtering reads the column anyway);
//! - `sid`: u64 stream id, indexed (stream selectors become a term set) and fast (grouping);
//! - `len`: u64 line length in bytes, fast (`bytes_over_time` without reading the store);
//! - `line`: text, tokenized by [`LogTokenizer`], doc ids only (no freqs or positions: filters
//!   are checked exactly on the stored line), stored with zstd.
//!
//! Stream labels live once per partition in `streams.jsonl`, not per line.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, NumericOptions, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, TantivyDocument};
use tidewatch_model::{HighWaterMarks, Labels};
use tracing::{info, warn};

use super::time::{format_rfc3339, now_ns, parse_rfc3339};
use super::wal::{WalBatch, WalTruncator};

/// The tokenizer's registered name.
pub const TOKENIZER: &str = "tidewatch_log";
/// Tokens longer than this are not indexed (and never used to narrow a search); the line gets
/// the term [`LONG_TOKEN`] instead, so a substring search still finds it.
pub const MAX_TOKEN: usize = 100;
/// The term standing for every token longer than [`MAX_TOKEN`] (`~` is never in a token).
pub const LONG_TOKEN: &str = "~long";

/// The byte ranges of the tokens of `text`: maximal runs of ASCII letters and digits and of
/// non-ASCII characters. Every other byte (space, punctuation) separates tokens, so the parts
/// of an IP, path, UUID or key=value are each a token; a search for the whole thing looks up
/// its parts and checks the line itself.
pub fn token_spans(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && !is_token_byte(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        Some((start, i))
    })
}

/// Whether a byte belongs to a token.
pub fn is_token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c >= 0x80
}

/// The tokenizer of the `line` field: [`token_spans`], ASCII-lowercased, tokens longer than
/// [`MAX_TOKEN`] bytes indexed as [`LONG_TOKEN`].
#[derive(Clone, Default)]
pub struct LogTokenizer;

/// The token stream of [`LogTokenizer`].
pub struct LogTokenStream<'a> {
    text: &'a str,
    pos: usize,
    token: Token,
}

impl Tokenizer for LogTokenizer {
    type TokenStream<'a> = LogTokenStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> LogTokenStream<'a> {
        LogTokenStream {
            text,
            pos: 0,
            token: Token::default(),
        }
    }
}

impl TokenStream for LogTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let b = self.text.as_bytes();
        while self.pos < b.len() && !is_token_byte(b[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return false;
        }
        let start = self.pos;
        while self.pos < b.len() && is_token_byte(b[self.pos]) {
            self.pos += 1;
        }
        self.token.text.clear();
        if self.pos - start > MAX_TOKEN {
            self.token.text.push_str(LONG_TOKEN);
        } else {
            self.token.text.push_str(&self.text[start..self.pos]);
            self.token.text.make_ascii_lowercase();
        }
        self.token.offset_from = start;
        self.token.offset_to = self.pos;
        self.token.position = self.token.position.wrapping_add(1);
        true
    }
    fn token(&self) -> &Token {
        &self.token
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The fields of the schema.
#[derive(Clone, Copy, Debug)]
pub struct Fields {
    /// Nanoseconds, fast only.
    pub ts: Field,
    /// Stream id, indexed and fast.
    pub sid: Field,
    /// Line length in bytes, fast.
    pub len: Field,
    /// The line, tokenized and stored.
    pub line: Field,
}

/// The schema every partition uses.
pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ts = b.add_i64_field("ts", NumericOptions::default().set_fast());
    let sid = b.add_u64_field("sid", INDEXED | FAST);
    let len = b.add_u64_field("len", FAST);
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::Basic);
    let line = b.add_text_field("line", TextOptions::default().set_indexing_options(indexing) | STORED);
    (b.build(), Fields { ts, sid, len, line })
}

/// The index settings: a zstd document store in blocks large enough to compress well.
pub fn settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::Zstd(ZstdCompressor {
            compression_level: Some(3),
        }),
        docstore_blocksize: 64 * 1024,
        ..IndexSettings::default()
    }
}

/// The payload of every commit: what the partition holds, for replay and exactly-once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommitPayload {
    /// Every WAL batch up to this sequence number that falls in the partition is committed.
    pub seq: u64,
    /// The delivery marks when the commit was made (all sources, not only this partition's).
    pub marks: BTreeMap<String, u64>,
}

/// The streams of one partition: stream id ↔ labels.
#[derive(Default)]
pub struct Streams {
    /// By id.
    pub by_id: HashMap<u64, Labels>,
    by_labels: HashMap<Labels, u64>,
}

impl Streams {
    /// The id of `labels`, if known.
    pub fn id(&self, labels: &Labels) -> Option<u64> {
        self.by_labels.get(labels).copied()
    }

    fn insert(&mut self, id: u64, labels: Labels) {
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, labels);
    }

    /// A new id for `labels`: a hash, probed on collision.
    fn assign(&mut self, labels: &Labels) -> u64 {
        let mut id = fnv(labels);
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.insert(id, labels.clone());
        id
    }
}

fn fnv(labels: &Labels) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for l in labels.iter() {
        for b in l.name.bytes().chain([0xff]).chain(l.value.bytes()).chain([0xfe]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

#[derive(Serialize, Deserialize)]
struct StreamLine {
    id: u64,
    labels: Labels,
}

/// One partition: a tantivy index over `[start_ns, end_ns)`.
pub struct Partition {
    /// Inclusive start.
    pub start_ns: i64,
    /// Exclusive end.
    pub end_ns: i64,
    /// The folder.
    pub dir: PathBuf,
    /// The index.
    pub index: Index,
    /// Reloaded after every commit.
    pub reader: IndexReader,
    /// Its streams.
    pub streams: RwLock<Streams>,
    /// What the last commit covers.
    pub committed: CommitPayload,
    /// Per segment, its `line` terms joined by `\n` (built on the first substring search):
    /// a filter token that may sit inside a longer token is found with one memmem pass instead
    /// of an automaton walk over the term dictionary per query.
    pub term_cache: std::sync::Mutex<HashMap<tantivy::index::SegmentId, Arc<Vec<u8>>>>,
}

impl Partition {
    /// The folder name of a partition starting at `start_ns`.
    pub fn dir_name(start_ns: i64) -> String {
        format_rfc3339(start_ns)
    }

    /// Opens (or creates) the partition in `dir`.
    pub fn open(dir: &Path, start_ns: i64, span_ns: i64) -> tantivy::Result<Partition> {
        std::fs::create_dir_all(dir)?;
        let (schema, _) = schema();
        let index = if dir.join("meta.json").exists() {
            Index::open_in_dir(dir)?
        } else {
            Index::builder()
                .schema(schema)
                .settings(settings())
                .create_in_dir(dir)?
        };
        index.tokenizers().register(TOKENIZER, LogTokenizer);
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let committed = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default();
        let mut streams = Streams::default();
        if let Ok(text) = std::fs::read_to_string(dir.join("streams.jsonl")) {
            for line in text.lines() {
                // A torn last line (crash while appending) is skipped: its stream is
                // re-registered when its lines are replayed.
                if let Ok(s) = serde_json::from_str::<StreamLine>(line) {
                    streams.insert(s.id, s.labels);
                }
            }
        }
        Ok(Partition {
            start_ns,
            end_ns: start_ns.saturating_add(span_ns),
            dir: dir.to_path_buf(),
            index,
            reader,
            streams: RwLock::new(streams),
            committed,
            term_cache: Default::default(),
        })
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        dir_size(&self.dir)
    }
}

/// Bytes of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The partitions, newest last; shared by the indexer and queries.
pub type Partitions = Arc<RwLock<BTreeMap<i64, Arc<Partition>>>>;

/// Opens every partition under `dir` (folders named by their start time).
pub fn open_partitions(dir: &Path, span_ns: i64) -> Result<BTreeMap<i64, Arc<Partition>>, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(start) = parse_rfc3339(&name) else { continue };
        if !e.path().is_dir() {
            continue;
        }
        match Partition::open(&e.path(), start, span_ns) {
            Ok(p) => {
                out.insert(start, Arc::new(p));
            }
            Err(err) => {
                let aside = dir.join(format!("{name}.corrupt"));
                warn!(partition = %e.path().display(), error = %err, "cannot open a log partition; setting it aside");
                let _ = std::fs::rename(e.path(), aside);
            }
        }
    }
    Ok(out)
}

struct OpenWriter {
    writer: IndexWriter,
    dirty: bool,
    new_streams: Vec<(u64, Labels)>,
    used: Instant,
}

/// Settings of the indexer.
#[derive(Clone, Debug)]
pub struct IndexerOptions {
    /// The partition span.
    pub span_ns: i64,
    /// Commit period.
    pub commit_interval: Duration,
    /// Bytes of each writer.
    pub writer_memory: usize,
    /// Threads of each writer.
    pub threads: usize,
    /// Retention by age.
    pub retention_ns: i64,
    /// Retention by size (0: none).
    pub retention_bytes: u64,
    /// How often retention runs.
    pub retention_interval: Duration,
}

/// Writers at most open at once; more partitions written at once (late lines) close the least
/// recently used.
const MAX_OPEN_WRITERS: usize = 4;
/// Lines are committed (made searchable) this long after ingest goes quiet, without waiting for
/// the commit interval: a lone line is searchable in about a tenth of a second, and the end of
/// a burst does not wait out the interval. Under steady ingest the interval still batches.
const COMMIT_WHEN_QUIET: Duration = Duration::from_millis(100);
/// Quiet commits come no closer than this, so bursty senders (agents shipping once a second
/// each) cost at most four commits a second, not one per push.
const MIN_COMMIT_GAP: Duration = Duration::from_millis(250);

/// Batches synced WAL batches into partitions; commits every `commit_interval`.
pub struct Indexer {
    dir: PathBuf,
    fields: Fields,
    options: IndexerOptions,
    partitions: Partitions,
    writers: HashMap<i64, OpenWriter>,
    marks: HighWaterMarks,
    /// The last batch fully added.
    seq: u64,
    /// Partitions before this were dropped by retention and are never recreated.
    pub dropped_before: i64,
    last_maintenance: Instant,
    /// Shared with the store, which refuses lines older than this.
    pub dropped_before_shared: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Where durable batches are published for live tails (only while someone listens).
    pub tail: Option<tokio::sync::broadcast::Sender<Arc<WalBatch>>>,
}

/// The retention record: `{"dropped_before": <ns>}`.
#[derive(Serialize, Deserialize, Default)]
struct RetentionState {
    dropped_before: i64,
}

impl Indexer {
    /// An indexer over `partitions` in `dir`.
    pub fn new(dir: &Path, options: IndexerOptions, partitions: Partitions, marks: HighWaterMarks) -> Indexer {
        let dropped_before = std::fs::read_to_string(dir.join("retention.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<RetentionState>(&t).ok())
            .unwrap_or_default()
            .dropped_before;
        Indexer {
            dir: dir.to_path_buf(),
            fields: schema().1,
            options,
            partitions,
            writers: HashMap::new(),
            marks,
            seq: 0,
            dropped_before,
            last_maintenance: Instant::now(),
            tail: None,
            dropped_before_shared: None,
        }
    }

    fn partition_start(&self, ts: i64) -> i64 {
        ts.div_euclid(self.options.span_ns) * self.options.span_ns
    }

    fn partition(&mut self, start: i64) -> tantivy::Result<Arc<Partition>> {
        if let Some(p) = self.partitions.read().unwrap().get(&start) {
            return Ok(p.clone());
        }
        let dir = self.dir.join(Partition::dir_name(start));
        let p = Arc::new(Partition::open(&dir, start, self.options.span_ns)?);
        self.partitions.write().unwrap().insert(start, p.clone());
        Ok(p)
    }

    /// Adds a synced batch (or a replayed one: lines a partition already committed are skipped).
    pub fn add(&mut self, batch: WalBatch) -> tantivy::Result<()> {
        // Open writers only between batches, so a commit never splits one.
        let mut starts: Vec<i64> = batch.entries.iter().map(|e| self.partition_start(e.ts)).collect();
        starts.sort_unstable();
        starts.dedup();
        for &start in &starts {
            if start < self.dropped_before || self.writers.contains_key(&start) {
                continue;
            }
            if self.writers.len() >= MAX_OPEN_WRITERS {
                self.commit()?;
                if let Some((&lru, _)) = self.writers.iter().min_by_key(|(_, w)| w.used)
                    && let Some(w) = self.writers.remove(&lru)
                {
                    let _ = w.writer.wait_merging_threads();
                }
            }
            let p = self.partition(start)?;
            let writer = p
                .index
                .writer_with_num_threads(self.options.threads.max(1), self.options.writer_memory.max(16 << 20))?;
            self.writers.insert(
                start,
                OpenWriter {
                    writer,
                    dirty: false,
                    new_streams: Vec::new(),
                    used: Instant::now(),
                },
            );
        }
        let now = Instant::now();
        // Per (partition, stream index): the partition and the stream's id there, resolved once
        // per batch rather than per line.
        let mut resolved: HashMap<(i64, u32), (Arc<Partition>, u64)> = HashMap::new();
        for e in batch.entries {
            let start = self.partition_start(e.ts);
            if start < self.dropped_before {
                continue;
            }
            let (p, sid) = match resolved.get(&(start, e.stream)) {
                Some((p, sid)) => (p.clone(), *sid),
                None => {
                    let p = self.partition(start)?;
                    let Some(labels) = batch.streams.get(e.stream as usize) else {
                        continue;
                    };
                    let known = p.streams.read().unwrap().id(labels);
                    let sid = match known {
                        Some(id) => id,
                        None => {
                            let id = p.streams.write().unwrap().assign(labels);
                            if let Some(w) = self.writers.get_mut(&start) {
                                w.new_streams.push((id, labels.clone()));
                            }
                            id
                        }
                    };
                    resolved.insert((start, e.stream), (p.clone(), sid));
                    (p, sid)
                }
            };
            if batch.seq <= p.committed.seq {
                continue;
            }
            let w = self.writers.get_mut(&start).expect("writer opened above");
            let mut doc = TantivyDocument::default();
            doc.add_i64(self.fields.ts, e.ts);
            doc.add_u64(self.fields.sid, sid);
            doc.add_u64(self.fields.len, e.line.len() as u64);
            doc.add_text(self.fields.line, &e.line);
            w.writer.add_document(doc)?;
            w.dirty = true;
            w.used = now;
        }
        for (s, m) in batch.marks {
            self.marks.raise(&s, m);
        }
        self.seq = self.seq.max(batch.seq);
        Ok(())
    }

    /// Commits every partition written since its last commit, with the marks and the WAL
    /// position in the payload, and makes the lines searchable.
    pub fn commit(&mut self) -> tantivy::Result<()> {
        let payload = serde_json::to_string(&CommitPayload {
            seq: self.seq,
            marks: self.marks.iter().map(|(s, m)| (s.to_string(), m)).collect(),
        })
        .unwrap_or_default();
        for (start, w) in self.writers.iter_mut() {
            if !w.dirty {
                continue;
            }
            let p = self.partitions.read().unwrap().get(start).cloned();
            let Some(p) = p else { continue };
            if !w.new_streams.is_empty() {
                // Streams are durable before the commit that refers to them.
                let path = p.dir.join("streams.jsonl");
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
                let mut text = String::new();
                for (id, labels) in w.new_streams.drain(..) {
                    text.push_str(&serde_json::to_string(&StreamLine { id, labels }).unwrap_or_default());
                    text.push('\n');
                }
                f.write_all(text.as_bytes())?;
                f.sync_data()?;
            }
            let mut prepared = w.writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            p.reader.reload()?;
            w.dirty = false;
        }
        Ok(())
    }

    /// Drops partitions past retention; closes writers idle for 5 minutes.
    pub fn maintain(&mut self) {
        self.last_maintenance = Instant::now();
        let idle: Vec<i64> = self
            .writers
            .iter()
            .filter(|(_, w)| !w.dirty && w.used.elapsed() > Duration::from_secs(300))
            .map(|(s, _)| *s)
            .collect();
        for s in idle {
            if let Some(w) = self.writers.remove(&s) {
                let _ = w.writer.wait_merging_threads();
            }
        }
        let cutoff = now_ns().saturating_sub(self.options.retention_ns);
        let mut drop: Vec<i64> = Vec::new();
        {
            let parts = self.partitions.read().unwrap();
            drop.extend(parts.values().filter(|p| p.end_ns <= cutoff).map(|p| p.start_ns));
            if self.options.retention_bytes > 0 {
                let sizes: Vec<(i64, u64)> = parts.values().map(|p| (p.start_ns, p.disk_bytes())).collect();
                let mut total: u64 = sizes.iter().map(|s| s.1).sum();
                for (start, size) in &sizes[..sizes.len().saturating_sub(1)] {
                    if total <= self.options.retention_bytes {
                        break;
                    }
                    if !drop.contains(start) {
                        drop.push(*start);
                    }
                    total -= size;
                }
            }
        }
        if drop.is_empty() {
            return;
        }
        let before = drop.iter().max().map_or(0, |s| s + self.options.span_ns);
        self.dropped_before = self.dropped_before.max(before);
        if let Some(shared) = &self.dropped_before_shared {
            shared.fetch_max(self.dropped_before.max(0) as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let state = serde_json::to_string(&RetentionState {
            dropped_before: self.dropped_before,
        })
        .unwrap_or_default();
        let tmp = self.dir.join("retention.json.tmp");
        if std::fs::write(&tmp, state)
            .and_then(|_| std::fs::rename(&tmp, self.dir.join("retention.json")))
            .is_err()
        {
            warn!("cannot write logs/retention.json");
        }
        for start in drop {
            if let Some(w) = self.writers.remove(&start) {
                let _ = w.writer.wait_merging_threads();
            }
            let p = self.partitions.write().unwrap().remove(&start);
            if let Some(p) = p {
                info!(partition = %p.dir.display(), "retention: dropping a log partition");
                // Queries holding the partition keep their open (mmapped) files until they end.
                if let Err(e) = std::fs::remove_dir_all(&p.dir) {
                    warn!(partition = %p.dir.display(), error = %e, "cannot delete a log partition");
                }
            }
        }
    }

    /// The indexer thread: add batches as they come, commit every interval (or sooner once
    /// ingest goes quiet, see [`COMMIT_WHEN_QUIET`]), then truncate the WAL up to what is
    /// committed.
    pub fn run(mut self, rx: Receiver<WalBatch>, wal: WalTruncator) {
        let mut deadline = Instant::now() + self.options.commit_interval;
        let mut last_add: Option<Instant> = None;
        let mut last_commit = Instant::now();
        loop {
            let quiet_at = last_add.map(|t| (t + COMMIT_WHEN_QUIET).max(last_commit + MIN_COMMIT_GAP));
            let wake = quiet_at.map_or(deadline, |q| q.min(deadline));
            let timeout = wake.saturating_duration_since(Instant::now());
            let disconnected = match rx.recv_timeout(timeout) {
                Ok(batch) => {
                    if let Some(tail) = self.tail.as_ref().filter(|t| t.receiver_count() > 0) {
                        let _ = tail.send(Arc::new(batch.clone()));
                    }
                    if let Err(e) = self.add(batch) {
                        warn!(error = %e, "indexing failed; the lines stay in the WAL and are replayed at restart");
                    }
                    last_add = Some(Instant::now());
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            let now = Instant::now();
            let quiet = quiet_at.is_some_and(|q| now >= q) && last_add.is_some_and(|t| now >= t + COMMIT_WHEN_QUIET);
            if disconnected || now >= deadline || quiet {
                match self.commit() {
                    Ok(()) => wal.truncate(self.seq),
                    Err(e) => warn!(error = %e, "log index commit failed; will retry"),
                }
                if self.last_maintenance.elapsed() >= self.options.retention_interval {
                    self.maintain();
                }
                last_add = None;
                last_commit = Instant::now();
                deadline = last_commit + self.options.commit_interval;
            }
            if disconnected {
                for (_, w) in self.writers.drain() {
                    let _ = w.writer.wait_merging_threads();
                }
                return;
            }
        }
    }
}
