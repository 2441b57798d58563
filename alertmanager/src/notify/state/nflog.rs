//! The notification log: per (group, receiver integration), which alerts were last notified as
//! firing and resolved, and when. Persisted through a [`Journal`], so a restart does not
//! re-notify; entries expire after the retention (Alertmanager's default 120h).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::journal::{Journal, JournalError};

/// One notification log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NflogEntry {
    /// The aggregation group's key.
    pub group_key: String,
    /// `receiver/integration/index`.
    pub receiver: String,
    /// Fingerprints notified as firing.
    pub firing: Vec<u64>,
    /// Fingerprints notified as resolved.
    pub resolved: Vec<u64>,
    /// When the notification went out.
    pub ts: DateTime<Utc>,
    /// When the entry may be forgotten.
    pub expires_at: DateTime<Utc>,
}

/// Alertmanager's `DedupStage.needsUpdate`: whether a group's current alerts warrant a
/// notification given the last entry.
pub fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &HashSet<u64>,
    resolved: &HashSet<u64>,
    send_resolved: bool,
    repeat: std::time::Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(entry) = entry else {
        return !firing.is_empty();
    };
    let last_firing: HashSet<u64> = entry.firing.iter().copied().collect();
    if !firing.is_subset(&last_firing) {
        return true;
    }
    if firing.is_empty() {
        return !entry.firing.is_empty();
    }
    let last_resolved: HashSet<u64> = entry.resolved.iter().copied().collect();
    if send_resolved && !resolved.is_subset(&last_resolved) {
        return true;
    }
    let repeat = chrono::Duration::from_std(repeat).unwrap_or(chrono::Duration::MAX);
    entry.ts < now.checked_sub_signed(repeat).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The log, in memory and on disk.
pub struct NotificationLog {
    journal: Journal,
    entries: HashMap<(String, String), NflogEntry>,
}

impl NotificationLog {
    /// Opens `dir/nflog.jsonl`, drops expired entries and compacts the file.
    pub fn open(dir: &Path, now: DateTime<Utc>) -> Result<Self, JournalError> {
        let (journal, records) = Journal::open::<NflogEntry>(&dir.join("nflog.jsonl"))?;
        let mut log = NotificationLog {
            journal,
            entries: HashMap::new(),
        };
        for e in records {
            log.entries.insert((e.group_key.clone(), e.receiver.clone()), e);
        }
        log.gc(now)?;
        Ok(log)
    }

    /// The last entry for a group and receiver integration.
    pub fn get(&self, group_key: &str, receiver: &str) -> Option<&NflogEntry> {
        self.entries.get(&(group_key.to_string(), receiver.to_string()))
    }

    /// Records a notification durably (fsync) before returning.
    pub fn log(&mut self, entry: NflogEntry) -> Result<(), JournalError> {
        self.journal.append(&entry)?;
        self.entries
            .insert((entry.group_key.clone(), entry.receiver.clone()), entry);
        Ok(())
    }

    /// Drops expired entries and rewrites the file.
    pub fn gc(&mut self, now: DateTime<Utc>) -> Result<(), JournalError> {
        self.entries.retain(|_, e| e.expires_at > now);
        let mut all: Vec<&NflogEntry> = self.entries.values().collect();
        all.sort_by_key(|e| e.ts);
        self.journal.rewrite(all.into_iter())
    }

    /// Appends since the last compaction (compaction is due when this grows).
    pub fn appended(&self) -> usize {
        self.journal.appended()
    }
}
