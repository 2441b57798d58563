//! An append-only JSON-lines file with fsync on every append, compacted on open: the durable
//! form of the notification log and the silences.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error reading or writing a journal, naming the file (and line when parsing).
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct JournalError {
    /// The file.
    pub path: String,
    /// The line that did not parse.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

/// One journal file.
pub struct Journal {
    path: PathBuf,
    file: File,
    appended: usize,
}

impl Journal {
    /// Opens (creating) the file and returns its records. A torn last line (a crash mid-write)
    /// is dropped; a bad line elsewhere is an error.
    pub fn open<T: DeserializeOwned>(path: &Path) -> Result<(Journal, Vec<T>), JournalError> {
        let err = |line, message: String| JournalError {
            path: path.display().to_string(),
            line,
            message,
        };
        let mut records = Vec::new();
        if path.exists() {
            let file = File::open(path).map_err(|e| err(None, e.to_string()))?;
            let lines: Vec<String> = BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()
                .map_err(|e| err(None, e.to_string()))?;
            let n = lines.len();
            for (i, line) in lines.iter().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(line) {
                    Ok(r) => records.push(r),
                    Err(_) if i + 1 == n => {
                        tracing::warn!(path = %path.display(), line = i + 1, "dropping torn last record")
                    }
                    Err(e) => return Err(err(Some(i + 1), e.to_string())),
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| err(None, e.to_string()))?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                appended: 0,
            },
            records,
        ))
    }

    /// Appends one record and fsyncs before returning.
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).map_err(|e| self.err(e.to_string()))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|e| self.err(e.to_string()))?;
        self.file.sync_data().map_err(|e| self.err(e.to_string()))?;
        self.appended += 1;
        Ok(())
    }

    /// Records appended since the last rewrite.
    pub fn appended(&self) -> usize {
        self.appended
    }

    /// Replaces the file by exactly `records` (write, fsync, rename, fsync the folder).
    pub fn rewrite<'a, T: Serialize + 'a>(&mut self, records: impl Iterator<Item = &'a T>) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(|e| self.err(e.to_string()))?;
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| self.err(e.to_string()))?;
            buf.push(b'\n');
        }
        f.write_all(&buf).map_err(|e| self.err(e.to_string()))?;
        f.sync_all().map_err(|e| self.err(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(e.to_string()))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.err(e.to_string()))?;
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e.to_string()))?;
        self.appended = 0;
        Ok(())
    }

    fn err(&self, message: String) -> JournalError {
        JournalError {
            path: self.path.display().to_string(),
            line: None,
            message,
        }
    }
}
