//! The file source: tails the files that match globs, woken by notify (inotify here) with a
//! polling fallback, and ships their lines to the disk buffer.
//!
//! - **Identity.** A file is its device and inode; each is one delivery source
//!   (`<node>/file/<dev>:<ino>`), so a file renamed by rotation keeps its numbers and position.
//!   The checkpoint is `offset:fp_len:fp_crc`: the offset after the last line taken, and a
//!   CRC-32 of the file's first `fp_len` (≤ 256) bytes. If the inode at that device is later a
//!   different file (a reused inode), the fingerprint differs and the file is read from the
//!   start, so nothing of it is lost and nothing of the old file is repeated.
//! - **Rotation by rename.** The open descriptor follows the renamed file, which is drained
//!   until it has been idle for `rotate_wait` after it stopped matching; the new file at the
//!   path is a new identity read from its start.
//! - **Copytruncate.** A file shorter than the offset, or whose first bytes changed, starts
//!   again at 0. (Globs must not match the copies, or they are read as new files.)
//! - **Long lines.** A line longer than `max_line_size` is split; every piece but the last
//!   ends with [`LINE_CONTINUES`](crate::sources::docker::LINE_CONTINUES).
//! - Labels: the configured ones, `filename` (the path the file was found at) and `node`.
//! - A last line without a newline is kept until its newline arrives, or until the file is
//!   rotated away and idle.
//! - A file renamed out of the globs while the agent was down is found again at start (same
//!   device, inode and first bytes, in a folder the globs watch) and its tail is drained.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use notify::Watcher;
use serde::{Deserialize, Serialize};
use tidewatch_model::{ByteSize, Duration, Labels};
use tokio_util::sync::CancellationToken;

use crate::agent::AgentMetrics;
use crate::buffer::{Buffer, Payload};
use crate::sources::docker::LINE_CONTINUES;

/// One `files:` item of the agent's configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Glob patterns of files to follow (`/var/log/app/*.log`).
    pub paths: Vec<String>,
    /// Labels added to every line.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lines longer than this are split and marked (default `128KiB`).
    #[serde(default = "default_max_line")]
    pub max_line_size: ByteSize,
    /// How often files are checked without a notify event (default `1s`); the only way on
    /// file systems where notify sees nothing (NFS, some overlays).
    #[serde(default = "default_poll")]
    pub poll_interval: Duration,
    /// How long a file that no longer matches (rotated away) is still read after its last
    /// growth (default `5s`).
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait: Duration,
}

fn default_max_line() -> ByteSize {
    ByteSize(128 * 1024)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

impl FileConfig {
    /// Checks the globs and labels; errors name the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.paths.is_empty() {
            return Err("paths: at least one glob is needed".into());
        }
        for (i, p) in self.paths.iter().enumerate() {
            glob::Pattern::new(p).map_err(|e| format!("paths[{i}]: {p:?}: {e}"))?;
            if !Path::new(p).is_absolute() {
                return Err(format!("paths[{i}]: {p:?} is not an absolute path"));
            }
        }
        for name in self.labels.keys() {
            tidewatch_model::validate_label_name(name).map_err(|e| format!("labels: {e}"))?;
        }
        Ok(())
    }
}

const FP_MAX: u64 = 256;
const READ_CHUNK: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    crc: u32,
}

fn fingerprint(file: &File, size: u64) -> std::io::Result<Fingerprint> {
    let len = size.min(FP_MAX);
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(Fingerprint {
        len,
        crc: crc32fast::hash(&buf),
    })
}

/// `offset:fp_len:fp_crc:path` (the path where the file was found, last since it may hold `:`).
fn encode_cp(offset: u64, fp: Fingerprint, path: &Path) -> String {
    format!("{offset}:{}:{}:{}", fp.len, fp.crc, path.display())
}

fn decode_cp(s: &str) -> Option<(u64, Fingerprint, PathBuf)> {
    let mut it = s.splitn(4, ':');
    let offset = it.next()?.parse().ok()?;
    let len = it.next()?.parse().ok()?;
    let crc = it.next()?.parse().ok()?;
    let path = PathBuf::from(it.next().unwrap_or_default());
    Some((offset, Fingerprint { len, crc }, path))
}

struct Tracked {
    source: String,
    path: PathBuf,
    file: File,
    offset: u64,
    fp: Fingerprint,
    labels: Labels,
    max_line: usize,
    rotate_wait: StdDuration,
    /// Found at a matching path in the last scan.
    seen: bool,
    /// Since when it has not been found at a matching path.
    unseen_since: Option<Instant>,
    last_growth: Instant,
    last_ts: i64,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The folder a glob's matches live in (its part before the first wildcard), to watch.
fn watch_dir(pattern: &str) -> PathBuf {
    let cut = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
    let prefix = &pattern[..cut];
    let p = Path::new(prefix);
    if prefix.ends_with('/') {
        p.to_path_buf()
    } else {
        p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
    }
}

/// Tails the configured files until `cancel` fires.
pub async fn run(
    configs: Vec<FileConfig>,
    node: String,
    buffer: Buffer,
    metrics: Arc<AgentMetrics>,
    cancel: CancellationToken,
) {
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
        let _ = wake_tx.try_send(());
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            for c in &configs {
                for p in &c.paths {
                    let dir = watch_dir(p);
                    if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), error = %e, "files: cannot watch; polling it");
                    }
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "files: notify is not available; polling");
            None
        }
    };
    let poll = configs
        .iter()
        .map(|c| c.poll_interval.as_std())
        .min()
        .unwrap_or(StdDuration::from_secs(1))
        .max(StdDuration::from_millis(10));
    let mut tracked: HashMap<(u64, u64), Tracked> = HashMap::new();
    scan(&configs, &node, &buffer, &mut tracked);
    recover_renamed(&configs, &node, &buffer, &mut tracked);
    loop {
        scan(&configs, &node, &buffer, &mut tracked);
        let ids: Vec<(u64, u64)> = tracked.keys().copied().collect();
        for id in ids {
            let Some(t) = tracked.get_mut(&id) else { continue };
            if !read(t, &buffer, &metrics, &cancel).await {
                return;
            }
            if t.seen {
                continue;
            }
            let since = *t.unseen_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= t.rotate_wait && t.last_growth.elapsed() >= t.rotate_wait {
                // Rotated away and idle: a last line without newline is complete now.
                if !flush_partial(t, &buffer, &metrics).await {
                    continue;
                }
                tracing::debug!(path = %t.path.display(), "files: done with a rotated file");
                tracked.remove(&id);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.recv() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

fn scan(configs: &[FileConfig], node: &str, buffer: &Buffer, tracked: &mut HashMap<(u64, u64), Tracked>) {
    for t in tracked.values_mut() {
        t.seen = false;
    }
    for c in configs {
        for pattern in &c.paths {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                let id = (meta.dev(), meta.ino());
                if let Some(t) = tracked.get_mut(&id) {
                    t.seen = true;
                    t.unseen_since = None;
                    continue;
                }
                let Ok(file) = File::open(&path) else { continue };
                // Identity from the open descriptor: the path may have changed since metadata().
                let Ok(meta) = file.metadata() else { continue };
                let id = (meta.dev(), meta.ino());
                if tracked.contains_key(&id) {
                    continue;
                }
                let source = format!("{node}/file/{}:{}", id.0, id.1);
                let fp = fingerprint(&file, meta.len()).unwrap_or(Fingerprint { len: 0, crc: 0 });
                let offset = buffer
                    .resume_point(&source)
                    .and_then(|p| decode_cp(&p.checkpoint))
                    .and_then(|(offset, old, _)| {
                        // The same file only if its first bytes are those it had.
                        let now = fingerprint(&file, old.len.min(meta.len())).ok()?;
                        (old.len <= meta.len() && now == old && offset <= meta.len()).then_some(offset)
                    })
                    .unwrap_or(0);
                let mut labels: Vec<(String, String)> = c.labels.clone().into_iter().collect();
                labels.push(("filename".into(), path.display().to_string()));
                labels.push(("node".into(), node.to_string()));
                tracing::debug!(path = %path.display(), offset, "files: following");
                tracked.insert(
                    id,
                    Tracked {
                        source,
                        path: path.clone(),
                        file,
                        offset,
                        fp,
                        labels: Labels::from_pairs(labels),
                        max_line: (c.max_line_size.bytes() as usize).max(16),
                        rotate_wait: c.rotate_wait.as_std(),
                        seen: true,
                        unseen_since: None,
                        last_growth: Instant::now(),
                        last_ts: 0,
                    },
                );
            }
        }
    }
}

/// Finds the files that were being read when the agent stopped and were renamed to a name the
/// globs do not match meanwhile (rotation while the agent was down): same device and inode,
/// same first bytes, in a folder the globs watch. Their unread tail is drained like any
/// rotated file's.
fn recover_renamed(configs: &[FileConfig], node: &str, buffer: &Buffer, tracked: &mut HashMap<(u64, u64), Tracked>) {
    let prefix = format!("{node}/file/");
    let mut wanted: HashMap<(u64, u64), (String, u64, Fingerprint, PathBuf)> = HashMap::new();
    for (source, point) in buffer.resume_points(&prefix) {
        let Some((dev, ino)) = source[prefix.len()..]
            .split_once(':')
            .and_then(|(d, i)| Some((d.parse().ok()?, i.parse().ok()?)))
        else {
            continue;
        };
        if tracked.contains_key(&(dev, ino)) {
            continue;
        }
        if let Some((offset, fp, path)) = decode_cp(&point.checkpoint) {
            wanted.insert((dev, ino), (source, offset, fp, path));
        }
    }
    if wanted.is_empty() {
        return;
    }
    let dirs: std::collections::BTreeSet<PathBuf> = configs
        .iter()
        .flat_map(|c| c.paths.iter().map(|p| watch_dir(p)))
        .collect();
    for dir in dirs {
        let Ok(items) = std::fs::read_dir(&dir) else { continue };
        for item in items.flatten() {
            let Ok(meta) = item.metadata() else { continue };
            let id = (meta.dev(), meta.ino());
            let Some((source, offset, fp, old_path)) = wanted.remove(&id) else {
                continue;
            };
            let Ok(file) = File::open(item.path()) else { continue };
            let same = fp.len <= meta.len() && fingerprint(&file, fp.len).ok() == Some(fp);
            if !same || offset >= meta.len() {
                continue;
            }
            let Some(c) = configs.iter().find(|c| {
                c.paths
                    .iter()
                    .any(|p| glob::Pattern::new(p).is_ok_and(|g| g.matches_path(&old_path)))
            }) else {
                continue;
            };
            let mut labels: Vec<(String, String)> = c.labels.clone().into_iter().collect();
            labels.push(("filename".into(), old_path.display().to_string()));
            labels.push(("node".into(), node.to_string()));
            tracing::info!(path = %item.path().display(), was = %old_path.display(), "files: draining a file renamed while the agent was down");
            tracked.insert(
                id,
                Tracked {
                    source,
                    path: old_path,
                    file,
                    offset,
                    fp,
                    labels: Labels::from_pairs(labels),
                    max_line: (c.max_line_size.bytes() as usize).max(16),
                    rotate_wait: c.rotate_wait.as_std(),
                    seen: false,
                    unseen_since: None,
                    last_growth: Instant::now(),
                    last_ts: 0,
                },
            );
        }
    }
}

/// Reads what is new in `t` and buffers it; false when cancelled.
async fn read(t: &mut Tracked, buffer: &Buffer, metrics: &AgentMetrics, cancel: &CancellationToken) -> bool {
    // Room for a whole line of the maximum length, or a long line would never be taken.
    let chunk = READ_CHUNK.max(t.max_line + 1);
    let mut buf = vec![0u8; chunk];
    loop {
        let Ok(meta) = t.file.metadata() else { return true };
        let size = meta.len();
        let truncated =
            size < t.offset || (t.fp.len > 0 && fingerprint(&t.file, t.fp.len.min(size)).ok() != Some(t.fp));
        if truncated {
            tracing::info!(path = %t.path.display(), "files: truncated (copytruncate?); reading from the start");
            t.offset = 0;
            t.fp = Fingerprint { len: 0, crc: 0 };
        }
        if t.fp.len < FP_MAX
            && size > t.fp.len
            && let Ok(fp) = fingerprint(&t.file, size)
        {
            t.fp = fp;
        }
        if size <= t.offset {
            return true;
        }
        let want = ((size - t.offset) as usize).min(chunk);
        let n = match t.file.read_at(&mut buf[..want], t.offset) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %t.path.display(), error = %e, "files: read failed");
                return true;
            }
        };
        t.last_growth = Instant::now();
        let data = &buf[..n];
        let mut lines = Vec::new();
        let mut start = 0usize;
        let mut ts = now_ns().max(t.last_ts + 1);
        let mut take = |text: &[u8], lines: &mut Vec<(i64, String)>| {
            lines.push((ts, String::from_utf8_lossy(text).into_owned()));
            ts += 1;
        };
        while start < n {
            match data[start..].iter().position(|b| *b == b'\n') {
                Some(i) if i <= t.max_line => {
                    let end = if i > 0 && data[start + i - 1] == b'\r' {
                        start + i - 1
                    } else {
                        start + i
                    };
                    take(&data[start..end], &mut lines);
                    start += i + 1;
                }
                _ if n - start > t.max_line => {
                    // Longer than the maximum: a marked piece now, the rest after it.
                    let mut cut = start + t.max_line;
                    while cut > start && (data[cut] & 0xC0) == 0x80 {
                        cut -= 1;
                    }
                    if cut == start {
                        cut = start + t.max_line;
                    }
                    let mut piece = data[start..cut].to_vec();
                    piece.extend_from_slice(LINE_CONTINUES.as_bytes());
                    take(&piece, &mut lines);
                    start = cut;
                }
                _ => break,
            }
        }
        t.last_ts = ts - 1;
        if lines.is_empty() {
            return true;
        }
        let offset = t.offset + start as u64;
        let count = lines.len() as u64;
        let payload = Payload::Logs {
            labels: t.labels.clone(),
            lines,
        };
        let pushed = tokio::select! {
            _ = cancel.cancelled() => return false,
            r = buffer.push(&t.source, encode_cp(offset, t.fp, &t.path), payload) => r,
        };
        match pushed {
            Ok(_) => {
                metrics.read("file", count);
                t.offset = offset;
            }
            Err(e) => {
                tracing::error!(path = %t.path.display(), error = %e, "files: cannot buffer lines");
                return true;
            }
        }
    }
}

/// Ships a last line that has no newline; false if it could not be buffered.
async fn flush_partial(t: &mut Tracked, buffer: &Buffer, metrics: &AgentMetrics) -> bool {
    let Ok(size) = t.file.metadata().map(|m| m.len()) else {
        return true;
    };
    if size <= t.offset {
        return true;
    }
    // `read` already took everything up to a piece shorter than max_line_size.
    let len = (size - t.offset).min(t.max_line as u64);
    let mut rest = vec![0u8; len as usize];
    if t.file.read_exact_at(&mut rest, t.offset).is_err() {
        return true;
    }
    let ts = now_ns().max(t.last_ts + 1);
    let payload = Payload::Logs {
        labels: t.labels.clone(),
        lines: vec![(ts, String::from_utf8_lossy(&rest).into_owned())],
    };
    match buffer
        .push(&t.source, encode_cp(t.offset + len, t.fp, &t.path), payload)
        .await
    {
        Ok(_) => {
            metrics.read("file", 1);
            t.offset += len;
            true
        }
        Err(e) => {
            tracing::error!(path = %t.path.display(), error = %e, "files: cannot buffer lines");
            false
        }
    }
}
