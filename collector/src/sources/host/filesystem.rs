//! `node_filesystem_*`: the mounts of /proc/1/mounts that pass node_exporter's filters, with
//! their sizes from statvfs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use regex::Regex;

use super::{Emitter, strip_rootfs};

pub(super) struct Filter<'a> {
    pub rootfs: &'a Path,
    pub mount_points_exclude: &'a Regex,
    pub fs_types_exclude: &'a Regex,
    /// How long one statvfs may take before its mount is called stuck.
    pub mount_timeout: Duration,
    pub statvfs: &'a Statvfs,
}

type StatvfsResult = rustix::io::Result<rustix::fs::StatVfs>;
type Job = (PathBuf, mpsc::SyncSender<StatvfsResult>);

/// statvfs off the agent's thread, with a time limit. One worker thread serves every call (a
/// thread per call was most of the host source's cost at a 1 s interval); a call that times
/// out leaves its worker behind, blocked, and the next call starts a fresh one.
#[derive(Default)]
pub(super) struct Statvfs {
    /// Mounts whose statvfs has not returned: skipped until it does, as node_exporter does, so
    /// a hung network filesystem costs one blocked thread, not every round.
    stuck: Arc<Mutex<HashSet<PathBuf>>>,
    worker: Mutex<Option<mpsc::Sender<Job>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Statvfs {
    fn worker(&self) -> Option<mpsc::Sender<Job>> {
        let mut worker = lock(&self.worker);
        if worker.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let stuck = self.stuck.clone();
            let spawned = std::thread::Builder::new().name("statvfs".into()).spawn(move || {
                // Ends when the sender is dropped: the agent stopped, or gave up on this thread.
                for (path, reply) in rx {
                    let result = rustix::fs::statvfs(&path);
                    lock(&stuck).remove(&path);
                    let _ = reply.send(result);
                }
            });
            if spawned.is_err() {
                return None;
            }
            *worker = Some(tx);
        }
        worker.clone()
    }

    /// statvfs of `path`, waiting at most `timeout`; `None` when it timed out or the mount is
    /// still stuck from an earlier round.
    fn call(&self, path: &Path, timeout: Duration) -> Option<StatvfsResult> {
        if !lock(&self.stuck).insert(path.to_path_buf()) {
            return None;
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let sent = self.worker().is_some_and(|w| w.send((path.to_path_buf(), tx)).is_ok());
        if !sent {
            lock(&self.stuck).remove(path);
            return None;
        }
        match rx.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(_) => {
                *lock(&self.worker) = None;
                tracing::warn!(mount_point = %path.display(), "statvfs timed out; the mount is skipped until it answers");
                None
            }
        }
    }
}

/// The kernel writes space, tab, newline and backslash in mount paths as octal escapes.
fn unescape(field: &str) -> std::borrow::Cow<'_, str> {
    if !field.contains('\\') {
        return field.into();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

pub(super) fn emit(mounts: &str, filter: &Filter, out: &mut Emitter) {
    // node_exporter reports each (device, mountpoint, fstype) once, even when mounted twice.
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    for line in mounts.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let device = unescape(device);
        let mount_point = unescape(mount_point);
        let Some(reported) = strip_rootfs(filter.rootfs, &mount_point) else {
            continue;
        };
        if filter.mount_points_exclude.is_match(&reported) || filter.fs_types_exclude.is_match(fs_type) {
            continue;
        }
        if !seen.insert((device.to_string(), reported.to_string(), fs_type.to_string())) {
            continue;
        }
        let labels = [
            ("device", device.as_ref()),
            ("fstype", fs_type),
            ("mountpoint", reported.as_ref()),
        ];
        let Some(result) = filter
            .statvfs
            .call(Path::new(mount_point.as_ref()), filter.mount_timeout)
        else {
            continue;
        };
        match result {
            Ok(st) => {
                let block = st.f_frsize as f64;
                let ro = st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY);
                out.push("node_filesystem_size_bytes", &labels, st.f_blocks as f64 * block);
                out.push("node_filesystem_free_bytes", &labels, st.f_bfree as f64 * block);
                out.push("node_filesystem_avail_bytes", &labels, st.f_bavail as f64 * block);
                out.push("node_filesystem_files", &labels, st.f_files as f64);
                out.push("node_filesystem_files_free", &labels, st.f_ffree as f64);
                out.push("node_filesystem_readonly", &labels, if ro { 1.0 } else { 0.0 });
                out.push("node_filesystem_device_error", &labels, 0.0);
            }
            Err(_) => out.push("node_filesystem_device_error", &labels, 1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b\011c"), "/mnt/a b\tc");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
