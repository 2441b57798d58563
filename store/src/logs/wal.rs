//! The logs write-ahead log: every acknowledged line is here, fsynced, before the answer.
//!
//! One writer thread owns the open segment. Pushes hand it encoded batches through a bounded
//! queue (in sequence order: the store assigns sequence numbers and enqueues under one lock)
//! and wait until the durable sequence number passes theirs. The thread writes whatever queued
//! up while it was syncing and syncs once (group commit), then hands the batches, in order, to
//! the indexer. A segment is deleted once every batch in it is in a tantivy commit.
//!
//! Each segment starts with a snapshot of the delivery marks, so the marks survive the deletion
//! of older segments. A torn or corrupt tail is cut at the last good record; it is never fatal.
//! The format is in `store/docs/format/logs.md`.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use prost::encoding::{decode_varint, encode_varint};
use tidewatch_model::{HighWaterMarks, Label, Labels};
use tokio::sync::watch;
use tracing::warn;

/// Bytes before each record: payload length (u32 LE) and CRC-32 (IEEE) of the payload.
const HEADER_LEN: usize = 8;
const KIND_MARKS: u8 = 1;
const KIND_BATCH: u8 = 2;
/// Records larger than this are taken as corruption (a push is at most 64 MiB decompressed).
const MAX_RECORD: u64 = 1 << 30;

/// One acknowledged push: its lines and the marks it raises, written as one record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalBatch {
    /// Assigned under the store's lock: log order is sequence order.
    pub seq: u64,
    /// `(source, new mark)` for every range of the push's `Tidewatch-Batch` header.
    pub marks: Vec<(String, u64)>,
    /// The streams of the push, each once; entries refer to them by index (so a line costs
    /// no copy, hash or comparison of its labels anywhere on the write path).
    pub streams: Vec<Labels>,
    /// `(stream index, ns, line)`, in wire order.
    pub entries: Vec<Entry>,
}

/// One line of a [`WalBatch`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Index into the batch's streams.
    pub stream: u32,
    /// Nanoseconds.
    pub ts: i64,
    /// The line.
    pub line: String,
}

impl WalBatch {
    /// Bytes of the lines.
    pub fn line_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.line.len()).sum()
    }
}

/// A decoded record.
#[derive(Debug)]
pub enum WalRecord {
    /// The marks when the segment was started.
    Marks(Vec<(String, u64)>),
    /// A push.
    Batch(WalBatch),
}

/// Why the log cannot write or replay.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("logs WAL {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier write failed; the log refuses writes until a restart replays it.
    #[error("logs WAL failed earlier and refuses writes until restart: {0}")]
    Failed(Arc<str>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

fn put_marks(out: &mut Vec<u8>, marks: &[(String, u64)]) {
    encode_varint(marks.len() as u64, out);
    for (source, mark) in marks {
        put_str(out, source);
        encode_varint(*mark, out);
    }
}

/// Encodes a batch record's payload (kind byte first).
pub fn encode_batch(batch: &WalBatch) -> Vec<u8> {
    let bytes: usize = batch.entries.iter().map(|e| e.line.len() + 12).sum();
    let mut out = Vec::with_capacity(bytes + 64);
    out.push(KIND_BATCH);
    encode_varint(batch.seq, &mut out);
    put_marks(&mut out, &batch.marks);
    // Streams are written once per record and referred to by index.
    encode_varint(batch.streams.len() as u64, &mut out);
    for s in &batch.streams {
        encode_varint(s.len() as u64, &mut out);
        for l in s.iter() {
            put_str(&mut out, &l.name);
            put_str(&mut out, &l.value);
        }
    }
    encode_varint(batch.entries.len() as u64, &mut out);
    for e in &batch.entries {
        encode_varint(e.stream as u64, &mut out);
        encode_varint(((e.ts << 1) ^ (e.ts >> 63)) as u64, &mut out);
        put_str(&mut out, &e.line);
    }
    out
}

fn encode_marks(marks: &HighWaterMarks) -> Vec<u8> {
    let mut out = vec![KIND_MARKS];
    let list: Vec<(String, u64)> = marks.iter().map(|(s, m)| (s.to_string(), m)).collect();
    put_marks(&mut out, &list);
    out
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn varint(&mut self) -> Result<u64, String> {
        decode_varint(&mut self.0).map_err(|e| e.to_string())
    }
    fn count(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        if n > self.0.len() as u64 {
            return Err(format!("count {n} exceeds the record"));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.count()?;
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8(s.to_vec()).map_err(|_| "string is not UTF-8".to_string())
    }
    fn marks(&mut self) -> Result<Vec<(String, u64)>, String> {
        let n = self.count()?;
        (0..n).map(|_| Ok((self.string()?, self.varint()?))).collect()
    }
}

/// Decodes a record payload.
pub fn decode(payload: &[u8]) -> Result<WalRecord, String> {
    let (&kind, rest) = payload.split_first().ok_or("empty record")?;
    let mut c = Cursor(rest);
    match kind {
        KIND_MARKS => Ok(WalRecord::Marks(c.marks()?)),
        KIND_BATCH => {
            let seq = c.varint()?;
            let marks = c.marks()?;
            let n = c.count()?;
            let mut streams = Vec::with_capacity(n);
            for _ in 0..n {
                let k = c.count()?;
                let mut labels = Vec::with_capacity(k);
                for _ in 0..k {
                    labels.push(Label {
                        name: c.string()?,
                        value: c.string()?,
                    });
                }
                streams.push(Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value))));
            }
            let n = c.count()?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let i = c.varint()?;
                if i >= streams.len() as u64 {
                    return Err("stream index out of range".into());
                }
                let z = c.varint()?;
                let ts = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let line = c.string()?;
                entries.push(Entry {
                    stream: i as u32,
                    ts,
                    line,
                });
            }
            Ok(WalRecord::Batch(WalBatch {
                seq,
                marks,
                streams,
                entries,
            }))
        }
        k => Err(format!("unknown record kind {k}")),
    }
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .filter(|s| s.len() == 8)
            .and_then(|s| s.parse::<u32>().ok())
        {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What replay found: the segments with their highest batch sequence number.
#[derive(Debug, Default)]
pub struct Replayed {
    /// `(segment, highest seq in it)`, in order.
    pub segments: Vec<(u32, u64)>,
    /// Bytes cut off torn or corrupt tails.
    pub truncated_bytes: u64,
}

/// Reads every record of every segment in order. A torn or corrupt record ends its segment:
/// the file is truncated there so the next writer starts clean.
pub fn replay(dir: &Path, mut each: impl FnMut(WalRecord)) -> Result<Replayed, WalError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut out = Replayed::default();
    for (n, path) in segments(dir)? {
        let file = File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let (mut pos, mut last_seq) = (0u64, 0u64);
        let mut payload = Vec::new();
        let reason = loop {
            let mut header = [0u8; HEADER_LEN];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break (pos < size).then_some("torn record header");
                }
                Err(e) => return Err(io(&path)(e)),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if len > MAX_RECORD || pos + HEADER_LEN as u64 + len > size {
                break Some("torn record");
            }
            payload.resize(len as usize, 0);
            reader.read_exact(&mut payload).map_err(io(&path))?;
            if crc32fast::hash(&payload) != crc {
                break Some("checksum mismatch");
            }
            match decode(&payload) {
                Ok(record) => {
                    if let WalRecord::Batch(b) = &record {
                        last_seq = last_seq.max(b.seq);
                    }
                    each(record)
                }
                Err(e) => {
                    warn!(segment = %path.display(), offset = pos, error = %e, "skipping an undecodable logs WAL record")
                }
            }
            pos += HEADER_LEN as u64 + len;
        };
        if let Some(reason) = reason {
            warn!(segment = %path.display(), offset = pos, cut = size - pos, reason, "truncating the logs WAL segment at its last good record");
            let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
            file.set_len(pos).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            out.truncated_bytes += size - pos;
        }
        out.segments.push((n, last_seq));
    }
    Ok(out)
}

/// What the writer thread has made durable.
#[derive(Clone, Debug, Default)]
pub struct Durable {
    /// Every batch up to this sequence number is synced.
    pub seq: u64,
    /// Set when a write or sync failed.
    pub failed: Option<Arc<str>>,
}

/// One batch on its way to disk.
pub struct Job {
    /// The encoded payload.
    pub bytes: Vec<u8>,
    /// The batch itself, handed to the indexer once synced.
    pub batch: WalBatch,
}

/// How many pushes may queue before appenders wait.
const QUEUE: usize = 256;

/// The appending side of the log.
pub struct Wal {
    tx: Option<SyncSender<Job>>,
    durable: watch::Receiver<Durable>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// `(segment, highest seq)` of every segment on disk; the last is the open one.
    segments: Arc<Mutex<Vec<(u32, u64)>>>,
    dir: PathBuf,
}

/// Deletes closed segments once their batches are committed in the indexes.
#[derive(Clone)]
pub struct WalTruncator {
    segments: Arc<Mutex<Vec<(u32, u64)>>>,
    dir: PathBuf,
}

impl WalTruncator {
    /// Deletes the closed segments whose batches are all at or below `seq`.
    pub fn truncate(&self, seq: u64) {
        let mut segs = self.segments.lock().unwrap();
        while segs.len() > 1 && segs[0].1 <= seq {
            let (n, _) = segs.remove(0);
            let path = segment_path(&self.dir, n);
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(segment = %path.display(), error = %e, "cannot delete a logs WAL segment");
            }
        }
    }
}

/// Settings of the writer.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Sync before acknowledging.
    pub fsync: bool,
    /// A segment is closed past this size.
    pub segment_bytes: u64,
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

struct Writer {
    dir: PathBuf,
    file: File,
    segment: u32,
    len: u64,
    options: WalOptions,
    marks: HighWaterMarks,
    segments: Arc<Mutex<Vec<(u32, u64)>>>,
}

impl Writer {
    fn open_segment(dir: &Path, n: u32, marks: &HighWaterMarks, options: &WalOptions) -> Result<(File, u64), WalError> {
        let path = segment_path(dir, n);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut buf = Vec::new();
        frame(&encode_marks(marks), &mut buf);
        file.write_all(&buf).map_err(io(&path))?;
        if options.fsync {
            file.sync_data().map_err(io(&path))?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        Ok((file, buf.len() as u64))
    }

    fn write_round(&mut self, jobs: &[Job]) -> Result<(), WalError> {
        let mut buf = Vec::with_capacity(jobs.iter().map(|j| j.bytes.len() + HEADER_LEN).sum());
        for j in jobs {
            frame(&j.bytes, &mut buf);
            for (s, m) in &j.batch.marks {
                self.marks.raise(s, *m);
            }
        }
        let path = segment_path(&self.dir, self.segment);
        self.file.write_all(&buf).map_err(io(&path))?;
        if self.options.fsync {
            self.file.sync_data().map_err(io(&path))?;
        }
        self.len += buf.len() as u64;
        let last = jobs.iter().map(|j| j.batch.seq).max().unwrap_or(0);
        if let Some(seg) = self.segments.lock().unwrap().last_mut() {
            seg.1 = seg.1.max(last);
        }
        if self.len >= self.options.segment_bytes {
            let n = self.segment + 1;
            let (file, len) = Writer::open_segment(&self.dir, n, &self.marks, &self.options)?;
            self.file = file;
            self.segment = n;
            self.len = len;
            self.segments.lock().unwrap().push((n, last));
        }
        Ok(())
    }
}

impl Wal {
    /// Opens the log for appending in a new segment after the existing ones (call [`replay`]
    /// first). `marks` are the marks after replay; `replayed` what replay found; synced batches
    /// go to `indexer`.
    pub fn open(
        dir: &Path,
        options: WalOptions,
        marks: HighWaterMarks,
        replayed: &Replayed,
        indexer: SyncSender<WalBatch>,
    ) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let last_seq = replayed.segments.iter().map(|s| s.1).max().unwrap_or(0);
        let n = replayed.segments.last().map_or(0, |s| s.0 + 1);
        let (file, len) = Writer::open_segment(dir, n, &marks, &options)?;
        let mut list = replayed.segments.clone();
        list.push((n, last_seq));
        let segments = Arc::new(Mutex::new(list));
        let (durable_tx, durable) = watch::channel(Durable {
            seq: last_seq,
            failed: None,
        });
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let writer = Writer {
            dir: dir.to_path_buf(),
            file,
            segment: n,
            len,
            options,
            marks,
            segments: segments.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("logs-wal".into())
            .spawn(move || run(writer, rx, durable_tx, indexer))
            .map_err(io(dir))?;
        Ok(Wal {
            tx: Some(tx),
            durable,
            thread: Some(thread),
            segments,
            dir: dir.to_path_buf(),
        })
    }

    /// What is durable, to wait on without holding the store's lock.
    pub fn durable(&self) -> watch::Receiver<Durable> {
        self.durable.clone()
    }

    /// Queues a batch; blocks while the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), WalError> {
        if let Some(f) = &self.durable.borrow().failed {
            return Err(WalError::Failed(f.clone()));
        }
        self.tx
            .as_ref()
            .ok_or_else(|| WalError::Failed("closed".into()))?
            .send(job)
            .map_err(|_| WalError::Failed("the WAL writer stopped".into()))
    }

    /// A handle the indexer uses to delete segments it has committed.
    pub fn truncator(&self) -> WalTruncator {
        WalTruncator {
            segments: self.segments.clone(),
            dir: self.dir.clone(),
        }
    }

    /// Stops the writer after it has written everything queued.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(mut writer: Writer, rx: Receiver<Job>, durable: watch::Sender<Durable>, indexer: SyncSender<WalBatch>) {
    let mut failed: Option<Arc<str>> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if failed.is_none() {
            if let Err(e) = writer.write_round(&jobs) {
                tracing::error!(error = %e, "logs WAL write failed; refusing writes until restart");
                failed = Some(e.to_string().into());
                durable.send_modify(|d| d.failed = failed.clone());
                continue;
            }
            let last = jobs.iter().map(|j| j.batch.seq).max().unwrap_or(0);
            // Hand to the indexer before acknowledging, in log order, so a commit never covers
            // a sequence number whose batch it has not seen.
            for j in jobs {
                if indexer.send(j.batch).is_err() {
                    break;
                }
            }
            durable.send_modify(|d| d.seq = d.seq.max(last));
        }
    }
}
