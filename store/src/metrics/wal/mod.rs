//! The write-ahead log: every accepted sample is here, fsynced, before it is acknowledged.
//!
//! One writer thread owns the open segment. Appenders hand it encoded records through a bounded
//! channel and wait for the durable sequence number to pass their own: the thread writes
//! everything that queued up while it was syncing, then syncs once (group commit), so a busy
//! server pays one `fdatasync` per round rather than per request.
//!
//! Records are never split across segments, and each segment starts with a snapshot of the
//! delivery marks and re-declares every series it uses, so any prefix of segments can be
//! deleted once its samples are in blocks. On open, a torn or corrupt tail is cut off at the
//! last good record; it is never fatal. The format is in `store/docs/format/wal.md`.

pub mod format;

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use tokio::sync::watch;
use tracing::{error, warn};

pub use self::format::{Record, RecordType};

/// A hook called just before each sync, so tests can prove nothing is acknowledged before it.
pub type SyncHook = Arc<dyn Fn() + Send + Sync>;

/// How the log writes.
#[derive(Clone)]
pub struct WalOptions {
    /// `fdatasync` before acknowledging (the default). Off, data reaches the page cache before
    /// the acknowledgement but a machine crash can lose it (Prometheus' own behaviour).
    pub fsync: bool,
    /// A segment is closed when it grows past this.
    pub segment_bytes: u64,
    /// Called before every sync; tests only.
    pub sync_hook: Option<SyncHook>,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: true,
            segment_bytes: 64 << 20,
            sync_hook: None,
        }
    }
}

/// Why the log cannot take or replay data.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("WAL {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier write or sync failed; the log refuses writes until a restart replays it.
    #[error("WAL failed earlier and refuses writes until restart: {0}")]
    Failed(Arc<str>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the writer thread has made durable.
#[derive(Clone, Debug, Default)]
struct Durable {
    seq: u64,
    failed: Option<Arc<str>>,
}

enum Command {
    Write { seq: u64, bytes: Vec<u8> },
    Rotate { segment: u32 },
}

/// The appending side of the log. Its methods take `&mut self`: the store calls them under its
/// head lock, which is what orders records in the log as in the head.
pub struct Wal {
    dir: PathBuf,
    tx: Option<SyncSender<Command>>,
    durable: watch::Receiver<Durable>,
    thread: Option<std::thread::JoinHandle<()>>,
    next_seq: u64,
    segment: u32,
    segment_len: u64,
    options: WalOptions,
}

/// How many write commands may queue before appenders wait: enough for a few rounds of group
/// commit, small enough that queued bytes stay bounded.
const QUEUE: usize = 256;

/// Segment file name: eight decimal digits, so names sort in order.
fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}"))
}

/// The segments in `dir`, in order.
pub fn segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, WalError> {
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

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    /// Segments read.
    pub segments: usize,
    /// Records decoded.
    pub records: u64,
    /// Bytes cut off torn or corrupt tails.
    pub truncated_bytes: u64,
}

/// Reads every record of every segment in order, calling `each(segment, record)`. A torn or
/// corrupt record ends its segment: the file is truncated there (and synced) so the next
/// writer starts clean, and replay goes on with the next segment.
pub fn replay(dir: &Path, mut each: impl FnMut(u32, Record)) -> Result<ReplayStats, WalError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut stats = ReplayStats::default();
    for (n, path) in segments(dir)? {
        stats.segments += 1;
        let file = File::open(&path).map_err(io(&path))?;
        let size = file.metadata().map_err(io(&path))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut pos = 0u64;
        let mut payload = Vec::new();
        let reason = loop {
            let mut header = [0u8; format::HEADER_LEN];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break (pos < size).then_some("torn record header");
                }
                Err(e) => return Err(io(&path)(e)),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if pos + format::HEADER_LEN as u64 + len > size {
                break Some("torn record");
            }
            payload.resize(len as usize, 0);
            reader.read_exact(&mut payload).map_err(io(&path))?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[8..9]);
            hasher.update(&payload);
            if hasher.finalize() != crc {
                break Some("checksum mismatch");
            }
            match format::decode(header[8], &payload) {
                Ok(record) => each(n, record),
                Err(e) => {
                    warn!(segment = %path.display(), offset = pos, error = %e, "skipping an undecodable WAL record");
                }
            }
            stats.records += 1;
            pos += format::HEADER_LEN as u64 + len;
        };
        if let Some(reason) = reason {
            warn!(segment = %path.display(), offset = pos, cut = size - pos, reason, "truncating the WAL segment at its last good record");
            let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
            file.set_len(pos).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            stats.truncated_bytes += size - pos;
        }
    }
    Ok(stats)
}

impl Wal {
    /// Opens the log for appending in a new segment after the existing ones. Call [`replay`]
    /// first.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segment = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        let file = open_segment(dir, segment)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let (durable_tx, durable) = watch::channel(Durable::default());
        let thread_dir = dir.to_path_buf();
        let thread_options = options.clone();
        let thread = std::thread::Builder::new()
            .name("tidewatch-wal".into())
            .spawn(move || writer(thread_dir, segment, file, rx, durable_tx, thread_options))
            .map_err(io(dir))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            tx: Some(tx),
            durable,
            thread: Some(thread),
            next_seq: 1,
            segment,
            segment_len: 0,
            options,
        })
    }

    /// The segment new records go to.
    pub fn segment(&self) -> u32 {
        self.segment
    }

    /// Whether the current segment is full; the caller then calls [`Wal::rotate`] and writes
    /// the marks snapshot and series declarations again.
    pub fn wants_rotation(&self) -> bool {
        self.segment_len >= self.options.segment_bytes
    }

    /// Starts a new segment.
    pub fn rotate(&mut self) -> Result<u32, WalError> {
        self.segment += 1;
        self.segment_len = 0;
        self.send(Command::Rotate { segment: self.segment })?;
        Ok(self.segment)
    }

    /// Queues encoded records; returns the sequence number to wait for with [`Durability::wait`].
    /// Blocks while the queue is full (that is the backpressure on appenders).
    pub fn submit(&mut self, bytes: Vec<u8>) -> Result<u64, WalError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.segment_len += bytes.len() as u64;
        self.send(Command::Write { seq, bytes })?;
        Ok(seq)
    }

    /// The sequence number of the last submitted write (0 if none).
    pub fn last_submitted(&self) -> u64 {
        self.next_seq - 1
    }

    fn send(&self, command: Command) -> Result<(), WalError> {
        if let Some(failed) = self.durable.borrow().failed.clone() {
            return Err(WalError::Failed(failed));
        }
        let tx = self.tx.as_ref().ok_or_else(|| WalError::Failed("closed".into()))?;
        match tx.try_send(command) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(command)) => tx.send(command).map_err(|_| WalError::Failed("writer stopped".into())),
            Err(TrySendError::Disconnected(_)) => Err(WalError::Failed("writer stopped".into())),
        }
    }

    /// A handle to wait for durability without holding the appender.
    pub fn durability(&self) -> Durability {
        Durability {
            durable: self.durable.clone(),
        }
    }

    /// Deletes the segments before `segment` (their samples are in blocks).
    pub fn delete_before(&self, segment: u32) -> Result<usize, WalError> {
        let mut deleted = 0;
        for (n, path) in segments(&self.dir)? {
            if n >= segment || n >= self.segment {
                break;
            }
            std::fs::remove_file(&path).map_err(io(&path))?;
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// Writes and syncs what is queued, then stops the writer thread.
    pub fn close(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for writes to become durable.
#[derive(Clone)]
pub struct Durability {
    durable: watch::Receiver<Durable>,
}

impl Durability {
    /// Returns once the write numbered `seq` (and every earlier one) is synced.
    pub async fn wait(&self, seq: u64) -> Result<(), WalError> {
        let mut rx = self.durable.clone();
        let state = rx
            .wait_for(|d| d.seq >= seq || d.failed.is_some())
            .await
            .map_err(|_| WalError::Failed("writer stopped".into()))?
            .clone();
        match state.failed {
            Some(why) if state.seq < seq => Err(WalError::Failed(why)),
            _ => Ok(()),
        }
    }
}

fn open_segment(dir: &Path, n: u32) -> Result<File, WalError> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    // The new name must be durable too, or a crash could lose the whole file.
    sync_dir(dir)?;
    Ok(file)
}

/// The writer thread: write what queued up, sync once, publish, repeat.
fn writer(
    dir: PathBuf,
    mut segment: u32,
    mut file: File,
    rx: Receiver<Command>,
    durable: watch::Sender<Durable>,
    options: WalOptions,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let fail = |durable: &watch::Sender<Durable>, what: String| {
        error!(error = %what, "WAL write failed; refusing writes until restart");
        durable.send_modify(|d| d.failed = Some(what.into()));
    };
    let flush = |file: &mut File, buf: &mut Vec<u8>, segment: u32| -> Result<(), String> {
        if !buf.is_empty() {
            file.write_all(buf)
                .map_err(|e| format!("segment {segment:08}: write: {e}"))?;
            buf.clear();
        }
        if let Some(hook) = &options.sync_hook {
            hook();
        }
        if options.fsync {
            file.sync_data()
                .map_err(|e| format!("segment {segment:08}: fdatasync: {e}"))?;
        }
        Ok(())
    };
    'rounds: while let Ok(first) = rx.recv() {
        let mut last_seq = None;
        let mut next = Some(first);
        while let Some(command) = next.take() {
            match command {
                Command::Write { seq, bytes } => {
                    buf.extend_from_slice(&bytes);
                    last_seq = Some(seq);
                }
                Command::Rotate { segment: new } => {
                    if let Err(e) = flush(&mut file, &mut buf, segment) {
                        fail(&durable, e);
                        break 'rounds;
                    }
                    match open_segment(&dir, new) {
                        Ok(f) => {
                            file = f;
                            segment = new;
                        }
                        Err(e) => {
                            fail(&durable, e.to_string());
                            break 'rounds;
                        }
                    }
                }
            }
            // Keep a round's buffer bounded; what is left waits for the next round.
            if buf.len() < 16 << 20 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = flush(&mut file, &mut buf, segment) {
            fail(&durable, e);
            break;
        }
        if let Some(seq) = last_seq {
            durable.send_modify(|d| d.seq = seq);
        }
    }
    // On failure, drain the queue so appenders blocked on a full channel wake up and see it.
    while rx.recv().is_ok() {}
}

#[cfg(test)]
mod tests;
