//! The agent's disk buffer: every record passes through it on its way to the server.
//!
//! On disk (one folder per stream, e.g. `<data>/collector/logs/`):
//! - `<logical offset, 20 digits>.seg`: append-only segments of frames
//!   `u32 length | u32 crc32(payload) | payload` (little-endian; payload: see `codec.rs`). A
//!   segment's name is the logical offset of its first byte, so a position in the buffer is one
//!   `u64` that stays valid while segments come and go.
//! - `state.json`: each sink's acknowledged position and each source's newest acknowledged
//!   sequence number and checkpoint (see `state.rs`), replaced atomically after every ack.
//!
//! What holds:
//! - **Numbering.** Each entry belongs to one source and carries that source's next consecutive
//!   sequence numbers (one per record), assigned under the writer lock in append order, so a
//!   source's numbers are consecutive in buffer order. They survive restarts: at open, the next
//!   number is one past the newest that is durable (in a segment or in `state.json`).
//! - **Torn tails.** At open every frame is checked; the first short or mis-checksummed frame of
//!   a segment and everything after it in that segment is cut off (after a kill -9 that is the
//!   record being written; its sequence numbers are given out again, which is safe because it
//!   was never shipped: readers only see fsynced data).
//! - **Bounded.** The segments never hold more than `max_bytes` (plus one entry): when full,
//!   [`Buffer::push`] waits until an acknowledgement frees a segment. Nothing is dropped.
//! - **Acknowledged positions.** A sink's position, and the checkpoints of the entries below
//!   it, move only in [`Reader::ack`], after the server acknowledged the batch (and are fsynced
//!   there). A segment is deleted once every sink's position is past it.
//! - **Resuming sources.** [`Buffer::resume_point`] gives a source the checkpoint of its newest
//!   *durable* entry (buffered or acknowledged), never one that only exists in memory. The
//!   entries after the acknowledged position are still in the buffer and will be shipped, so a
//!   source that resumed from the acknowledged checkpoint instead would read them twice; one
//!   that resumes from the newest durable entry re-reads exactly what was lost with a torn tail,
//!   under the same sequence numbers.

pub(crate) mod codec;
mod state;

pub use codec::EncodedLines;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Labels, Series};
use tokio::sync::{Notify, watch};

/// Bytes of a frame header: length and checksum.
const FRAME_HEADER: u64 = 8;

/// `buffer:` in the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Bytes the log buffer may hold on disk (default `256MiB`); the metric buffer gets a
    /// quarter of it. When full, sources wait: nothing is dropped.
    pub max_size: ByteSize,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_size: ByteSize::mib(256),
        }
    }
}

/// What went wrong in the buffer; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// A read, write or fsync failed.
    #[error("buffer file {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `state.json` does not parse.
    #[error("buffer state {path}: {message}")]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A frame that passed its checksum at open no longer does (the disk changed under us).
    #[error("buffer segment {path} at offset {offset}: {message}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong.
        message: String,
    },
}

impl BufferError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        BufferError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Log lines of one stream: `(timestamp_ns, line)`.
    Logs {
        /// The stream's labels.
        labels: Labels,
        /// The lines, each one record.
        lines: Vec<(i64, String)>,
    },
    /// Log lines of one stream, already encoded (the Docker follower's hot path).
    EncodedLogs {
        /// The stream's labels as Loki writes them, from [`tidewatch_model::loki_push::format_labels`].
        labels: Arc<str>,
        /// The lines, each one record.
        lines: EncodedLines,
    },
    /// One round of a metric source; each sample is one record.
    Metrics(Vec<Series>),
}

impl Payload {
    /// How many records (sequence numbers) the payload takes.
    pub fn count(&self) -> u64 {
        match self {
            Payload::Logs { lines, .. } => lines.len() as u64,
            Payload::EncodedLogs { lines, .. } => lines.count(),
            Payload::Metrics(series) => series.iter().map(|s| s.samples.len() as u64).sum(),
        }
    }
}

/// One entry of the buffer, as a shipper reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The delivery-contract source.
    pub source: String,
    /// The sequence number of the first record.
    pub first_seq: u64,
    /// How many records (sequence numbers) the entry holds.
    pub records: u64,
    /// The source's checkpoint after this entry's records (opaque to the buffer).
    pub checkpoint: String,
    /// The records as the protobuf field they become in a request (see `codec.rs`): a Loki
    /// `PushRequest` or a remote_write `WriteRequest` is its entries' `wire` concatenated.
    pub wire: Vec<u8>,
}

impl Entry {
    /// The sequence number of the last record.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.records.saturating_sub(1)
    }
}

/// Where a source resumes: its newest durable sequence number and checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// The last sequence number given out.
    pub seq: u64,
    /// The checkpoint stored with it.
    pub checkpoint: String,
}

struct Writer {
    /// Segment start → length in bytes; the last one is the active segment.
    segments: BTreeMap<u64, u64>,
    active: Arc<File>,
    active_start: u64,
    /// The logical end of the written data.
    end: u64,
    /// The logical end of the fsynced data.
    synced: u64,
    latest: HashMap<String, ResumePoint>,
}

struct Shared {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    acks: Mutex<state::AckState>,
    /// Woken when segments are deleted.
    space: Notify,
    /// The logical end of the written data, for readers waiting for more.
    written: watch::Sender<u64>,
}

/// The disk buffer of one stream (logs or metrics). Cheap to clone.
#[derive(Clone)]
pub struct Buffer {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.seg"))
}

/// Scans one segment, calling `each` with every good frame's payload, and returns the length
/// of its good prefix.
fn scan_segment(path: &Path, mut each: impl FnMut(&[u8])) -> Result<u64, BufferError> {
    let file = File::open(path).map_err(|e| BufferError::io(path, e))?;
    let len = file.metadata().map_err(|e| BufferError::io(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut good = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; FRAME_HEADER as usize];
        if good + FRAME_HEADER > len || r.read_exact(&mut header).is_err() {
            break;
        }
        let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if good + FRAME_HEADER + n > len {
            break;
        }
        payload.resize(n as usize, 0);
        if r.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        if codec::decode_header(&payload).is_err() {
            break;
        }
        each(&payload);
        good += FRAME_HEADER + n;
    }
    Ok(good)
}

impl Buffer {
    /// Opens (or creates) the buffer in `dir` for the given sinks (by URL), truncating torn
    /// tails. Sinks in the state file that are not in `sinks` are forgotten; new ones start at
    /// the oldest data still held.
    pub fn open(dir: &Path, max_bytes: u64, sinks: &[String]) -> Result<Buffer, BufferError> {
        fs::create_dir_all(dir).map_err(|e| BufferError::io(dir, e))?;
        let mut starts = Vec::new();
        for item in fs::read_dir(dir).map_err(|e| BufferError::io(dir, e))? {
            let item = item.map_err(|e| BufferError::io(dir, e))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if let Some(start) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                starts.push(start);
            }
        }
        starts.sort_unstable();
        let mut latest: HashMap<String, ResumePoint> = HashMap::new();
        let mut segments = BTreeMap::new();
        for &start in &starts {
            let path = segment_path(dir, start);
            let good = scan_segment(&path, |payload| {
                if let Ok(h) = codec::decode_header(payload) {
                    let last = h.first_seq + h.count.saturating_sub(1);
                    let e = latest.entry(h.source.to_string()).or_default();
                    if last >= e.seq {
                        *e = ResumePoint {
                            seq: last,
                            checkpoint: h.checkpoint.to_string(),
                        };
                    }
                }
            })?;
            let len = fs::metadata(&path).map_err(|e| BufferError::io(&path, e))?.len();
            if good < len {
                tracing::warn!(segment = %path.display(), good, len, "buffer: cutting off a torn or corrupt tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| BufferError::io(&path, e))?;
                f.set_len(good).map_err(|e| BufferError::io(&path, e))?;
                f.sync_all().map_err(|e| BufferError::io(&path, e))?;
            }
            segments.insert(start, good);
        }
        let mut acks = state::load(dir)?;
        for (source, point) in &acks.sources {
            let e = latest.entry(source.clone()).or_default();
            if point.seq > e.seq {
                *e = point.clone();
            }
        }
        let oldest = segments.keys().next().copied();
        let end = segments
            .iter()
            .next_back()
            .map(|(s, l)| s + l)
            .unwrap_or(0)
            .max(acks.sinks.values().copied().max().unwrap_or(0));
        acks.sinks.retain(|url, _| sinks.contains(url));
        for url in sinks {
            let pos = acks.sinks.entry(url.clone()).or_insert(oldest.unwrap_or(end));
            *pos = (*pos).min(end);
        }
        // A fresh active segment after the newest data, so a torn segment is never appended to
        // and a fully deleted buffer never goes back to offsets the sinks have passed.
        let active_start = end;
        let active_path = segment_path(dir, active_start);
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(|e| BufferError::io(&active_path, e))?;
        let active_len = active.metadata().map_err(|e| BufferError::io(&active_path, e))?.len();
        segments.insert(active_start, active_len);
        let end = active_start + active_len;
        state::sync_dir(dir)?;
        let segment_bytes = (max_bytes / 16).clamp(64 << 10, 64 << 20);
        let shared = Shared {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            writer: Mutex::new(Writer {
                segments,
                active: Arc::new(active),
                active_start,
                end,
                synced: end,
                latest,
            }),
            acks: Mutex::new(acks),
            space: Notify::new(),
            written: watch::channel(end).0,
        };
        let buffer = Buffer {
            shared: Arc::new(shared),
        };
        buffer.delete_acknowledged()?;
        Ok(buffer)
    }

    /// The newest durable sequence number and checkpoint of `source`.
    pub fn resume_point(&self, source: &str) -> Option<ResumePoint> {
        lock(&self.shared.writer).latest.get(source).cloned()
    }

    /// The resume points of every source whose name starts with `prefix`.
    pub fn resume_points(&self, prefix: &str) -> Vec<(String, ResumePoint)> {
        let w = lock(&self.shared.writer);
        w.latest
            .iter()
            .filter(|(s, _)| s.starts_with(prefix))
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect()
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        lock(&self.shared.writer).segments.values().sum()
    }

    /// Appends the records of `source` with the source's checkpoint after them, waiting while
    /// the buffer is full. Returns the first sequence number given, or `None` for no records.
    /// The payload may be lent (`&payload`), for a source that reuses it.
    pub async fn push(
        &self,
        source: &str,
        mut checkpoint: String,
        payload: impl Borrow<Payload>,
    ) -> Result<Option<u64>, BufferError> {
        if payload.borrow().count() == 0 {
            return Ok(None);
        }
        let mut frame = vec![0u8; FRAME_HEADER as usize];
        let count = codec::encode(source, &checkpoint, payload.borrow(), &mut frame);
        // An owned payload's lines are not needed while waiting for space.
        drop(payload);
        let len = frame.len() as u64 - FRAME_HEADER;
        let seq_at = FRAME_HEADER as usize + 1 + 4 + source.len();
        loop {
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = {
                let mut w = lock(&self.shared.writer);
                let held: u64 = w.segments.values().sum();
                // A frame larger than the whole buffer still goes in once everything before it
                // is acknowledged, so an oversized entry slows its source down but never wedges it.
                let everything_acked = lock(&self.shared.acks).sinks.values().min().is_none_or(|m| *m >= w.end);
                if held > 0 && held + frame.len() as u64 > self.shared.max_bytes && !everything_acked {
                    None
                } else {
                    let first = w.latest.get(source).map(|p| p.seq + 1).unwrap_or(1);
                    frame[seq_at..seq_at + 8].copy_from_slice(&first.to_le_bytes());
                    frame[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                    let crc = crc32fast::hash(&frame[FRAME_HEADER as usize..]);
                    frame[4..8].copy_from_slice(&crc.to_le_bytes());
                    self.append(&mut w, &frame)?;
                    w.latest.insert(
                        source.to_string(),
                        ResumePoint {
                            seq: first + count - 1,
                            checkpoint: std::mem::take(&mut checkpoint),
                        },
                    );
                    Some((first, w.end))
                }
            };
            match done {
                Some((first, end)) => {
                    self.shared.written.send_replace(end);
                    return Ok(Some(first));
                }
                None => notified.await,
            }
        }
    }

    fn append(&self, w: &mut Writer, frame: &[u8]) -> Result<(), BufferError> {
        let active_len = w.segments.get(&w.active_start).copied().unwrap_or(0);
        if active_len > 0 && active_len + frame.len() as u64 > self.shared.segment_bytes {
            // Records are never split across segments, so a full segment can be deleted whole.
            let old = segment_path(&self.shared.dir, w.active_start);
            w.active.sync_data().map_err(|e| BufferError::io(&old, e))?;
            w.synced = w.end;
            let start = w.end;
            let path = segment_path(&self.shared.dir, start);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| BufferError::io(&path, e))?;
            state::sync_dir(&self.shared.dir)?;
            w.active = Arc::new(f);
            w.active_start = start;
            w.segments.insert(start, 0);
        }
        let path = || segment_path(&self.shared.dir, w.active_start);
        let mut file: &File = &w.active;
        if let Err(e) = file.write_all(frame) {
            // Cut back to the last whole frame so a later append does not follow garbage.
            let len = w.segments[&w.active_start];
            let _ = w.active.set_len(len);
            return Err(BufferError::io(&path(), e));
        }
        *w.segments.entry(w.active_start).or_default() += frame.len() as u64;
        w.end += frame.len() as u64;
        Ok(())
    }

    /// Fsyncs what was written and returns the logical end of the durable data.
    fn sync(&self) -> Result<u64, BufferError> {
        let (target, file, start) = {
            let w = lock(&self.shared.writer);
            if w.synced >= w.end {
                return Ok(w.synced);
            }
            (w.end, w.active.clone(), w.active_start)
        };
        file.sync_data()
            .map_err(|e| BufferError::io(&segment_path(&self.shared.dir, start), e))?;
        let mut w = lock(&self.shared.writer);
        w.synced = w.synced.max(target);
        Ok(w.synced)
    }

    /// A reader for the sink `url` (one of those given to [`open`](Self::open)).
    pub fn reader(&self, url: &str) -> Reader {
        let pos = lock(&self.shared.acks).sinks.get(url).copied().unwrap_or(0);
        Reader {
            buffer: self.clone(),
            sink: url.to_string(),
            pos,
            written: self.shared.written.subscribe(),
        }
    }

    /// Deletes the segments every sink has passed, and wakes pushers waiting for space.
    fn delete_acknowledged(&self) -> Result<(), BufferError> {
        let min = lock(&self.shared.acks).sinks.values().copied().min();
        let Some(min) = min else { return Ok(()) };
        let mut w = lock(&self.shared.writer);
        let done: Vec<u64> = w
            .segments
            .iter()
            .filter(|(s, l)| **s != w.active_start && *s + *l <= min)
            .map(|(s, _)| *s)
            .collect();
        for start in &done {
            let path = segment_path(&self.shared.dir, *start);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BufferError::io(&path, e)),
            }
            w.segments.remove(start);
        }
        drop(w);
        if !done.is_empty() {
            self.shared.space.notify_waiters();
        }
        Ok(())
    }
}

/// A batch read for one sink: entries in buffer order and the position after them.
#[derive(Debug)]
pub struct Batch {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Bytes of the frames read.
    pub bytes: u64,
    end: u64,
}

/// One sink's view of the buffer: reads from its acknowledged position.
pub struct Reader {
    buffer: Buffer,
    sink: String,
    pos: u64,
    written: watch::Receiver<u64>,
}

impl Reader {
    /// Bytes written (not necessarily synced) after this reader's position.
    pub fn pending_bytes(&self) -> u64 {
        self.written.borrow().saturating_sub(self.pos)
    }

    /// Waits until something was written after this reader's position.
    pub async fn wait_for_data(&mut self) {
        let pos = self.pos;
        let _ = self.written.wait_for(|end| *end > pos).await;
    }

    /// Waits until more is written (any change), for size-triggered batching.
    pub async fn wait_for_more(&mut self) {
        self.written.borrow_and_update();
        let _ = self.written.changed().await;
    }

    /// Fsyncs the buffer and reads entries from the acknowledged position until `max_bytes` of
    /// frames (at least one entry). `None` when nothing durable is waiting.
    pub fn read_batch(&mut self, max_bytes: u64) -> Result<Option<Batch>, BufferError> {
        let limit = self.buffer.sync()?;
        let segments: Vec<(u64, u64)> = {
            let w = lock(&self.buffer.shared.writer);
            w.segments.iter().map(|(s, l)| (*s, *l)).collect()
        };
        let mut entries = Vec::new();
        let mut p = self.pos;
        let mut bytes = 0u64;
        let mut open: Option<(u64, File)> = None;
        while p < limit && bytes < max_bytes {
            // The segment holding p, or the next one after a gap left by a cut-off corrupt tail.
            let Some(&(start, len)) = segments
                .iter()
                .find(|(s, l)| *s <= p && p < s + l)
                .or_else(|| segments.iter().find(|(s, l)| *s > p && *l > 0))
            else {
                break;
            };
            if p < start {
                p = start;
                continue;
            }
            let path = segment_path(&self.buffer.shared.dir, start);
            if open.as_ref().map(|(s, _)| *s) != Some(start) {
                open = Some((start, File::open(&path).map_err(|e| BufferError::io(&path, e))?));
            }
            let file = &open.as_ref().expect("opened above").1;
            let offset = p - start;
            let corrupt = |message: String| BufferError::Corrupt {
                path: path.clone(),
                offset,
                message,
            };
            let mut header = [0u8; FRAME_HEADER as usize];
            file.read_exact_at(&mut header, offset)
                .map_err(|e| BufferError::io(&path, e))?;
            let n = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if offset + FRAME_HEADER + n > len {
                return Err(corrupt(format!("frame of {n} bytes runs past the segment's end")));
            }
            let mut payload = vec![0u8; n as usize];
            file.read_exact_at(&mut payload, offset + FRAME_HEADER)
                .map_err(|e| BufferError::io(&path, e))?;
            if crc32fast::hash(&payload) != crc {
                return Err(corrupt("checksum mismatch".into()));
            }
            entries.push(codec::decode(&payload).map_err(|e| corrupt(e.to_string()))?);
            p += FRAME_HEADER + n;
            bytes += FRAME_HEADER + n;
        }
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch { entries, bytes, end: p }))
    }

    /// Records that the server acknowledged (or definitively rejected) `batch`: moves this
    /// sink's position past it and commits its entries' checkpoints, fsynced before returning.
    pub fn ack(&mut self, batch: &Batch) -> Result<(), BufferError> {
        {
            let mut acks = lock(&self.buffer.shared.acks);
            acks.sinks.insert(self.sink.clone(), batch.end);
            for e in &batch.entries {
                let point = acks.sources.entry(e.source.clone()).or_default();
                if e.last_seq() >= point.seq {
                    *point = ResumePoint {
                        seq: e.last_seq(),
                        checkpoint: e.checkpoint.clone(),
                    };
                }
            }
            state::store(&self.buffer.shared.dir, &acks)?;
        }
        self.pos = batch.end;
        self.buffer.delete_acknowledged()
    }

    /// The sink's URL.
    pub fn sink(&self) -> &str {
        &self.sink
    }
}

#[cfg(test)]
mod tests;
