//! The data folder: its layout, and the lock that keeps two processes from writing it at once.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// An exclusive lock on a folder, held for the life of the process (or until dropped).
///
/// The lock is `flock` on `<folder>/LOCK`, so the kernel releases it when the process dies,
/// even by `kill -9`: a stale lock file never blocks a restart. The file holds the owner's pid,
/// for the message the next process prints.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Creates `folder` when missing and locks it for this process.
    pub fn acquire(folder: &Path, role: &str) -> anyhow::Result<DirLock> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the data folder {}", folder.display()))?;
        let path = folder.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                bail!(
                    "{} is in use by another Tidewatch {} (lock file {}); stop it or choose another --data-dir",
                    folder.display(),
                    owner.trim(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{role} (pid {})", std::process::id())?;
        file.sync_all()?;
        Ok(DirLock { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "server").unwrap();
        let err = DirLock::acquire(dir.path(), "server").unwrap_err().to_string();
        assert!(err.contains("in use by another Tidewatch server (pid"), "{err}");
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        DirLock::acquire(dir.path(), "server").unwrap();
    }
}
