//! Silences: create, update (in place when Alertmanager allows it, else expire and replace),
//! expire, match. Persisted through a [`Journal`]; expired silences are kept for the retention.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::journal::{Journal, JournalError};
use crate::notify::matchers::{ApiMatcher, LabelSet, Matcher};

/// A silence as stored and as the API returns it (without `status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// UUID.
    pub id: String,
    /// What it silences.
    pub matchers: Vec<ApiMatcher>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// `pending`, `active` or `expired`.
pub fn state(s: &Silence, now: DateTime<Utc>) -> &'static str {
    if now < s.starts_at {
        "pending"
    } else if now < s.ends_at {
        "active"
    } else {
        "expired"
    }
}

/// A silence as posted (`id` set: update).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<ApiMatcher>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

/// Why a silence operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// No silence with that id.
    #[error("silence {0} not found")]
    NotFound(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The disk write failed: nothing was changed.
    #[error("{0}")]
    Storage(#[from] JournalError),
}

/// Expired silences are kept this long (Alertmanager's `--data.retention` default).
pub const RETENTION: chrono::Duration = chrono::Duration::hours(120);

/// The silences, in memory and on disk.
pub struct Silences {
    journal: Journal,
    items: HashMap<String, (Silence, Vec<Matcher>)>,
    limit: usize,
}

fn compile(matchers: &[ApiMatcher]) -> Result<Vec<Matcher>, SilenceError> {
    matchers
        .iter()
        .map(|m| m.to_matcher().map_err(SilenceError::Invalid))
        .collect()
}

impl Silences {
    /// Opens `dir/silences.jsonl`; at most `limit` silences are kept.
    pub fn open(dir: &Path, now: DateTime<Utc>, limit: usize) -> Result<Self, JournalError> {
        let (journal, records) = Journal::open::<Silence>(&dir.join("silences.jsonl"))?;
        let mut s = Silences {
            journal,
            items: HashMap::new(),
            limit,
        };
        for r in records {
            match compile(&r.matchers) {
                Ok(m) => {
                    s.items.insert(r.id.clone(), (r, m));
                }
                Err(e) => tracing::warn!(id = %r.id, error = %e, "dropping stored silence with bad matchers"),
            }
        }
        s.gc(now)?;
        Ok(s)
    }

    fn validate(p: &PostableSilence) -> Result<Vec<Matcher>, SilenceError> {
        if p.matchers.is_empty() {
            return Err(SilenceError::Invalid("silence has no matchers".into()));
        }
        let compiled = compile(&p.matchers)?;
        if compiled.iter().all(|m| m.matches_value("")) {
            return Err(SilenceError::Invalid(
                "at least one matcher must not match the empty string".into(),
            ));
        }
        if p.ends_at < p.starts_at {
            return Err(SilenceError::Invalid("endsAt is before startsAt".into()));
        }
        if p.created_by.is_empty() {
            return Err(SilenceError::Invalid("createdBy is missing".into()));
        }
        if p.comment.is_empty() {
            return Err(SilenceError::Invalid("comment is missing".into()));
        }
        Ok(compiled)
    }

    /// Creates or updates; returns the id under which the silence now lives.
    pub fn set(&mut self, p: PostableSilence, now: DateTime<Utc>) -> Result<String, SilenceError> {
        let compiled = Self::validate(&p)?;
        let mut starts_at = p.starts_at;
        if let Some(id) = p.id.as_ref().filter(|id| !id.is_empty()) {
            let Some((prev, _)) = self.items.get(id).cloned() else {
                return Err(SilenceError::NotFound(id.clone()));
            };
            if can_update(&prev, &p, now) {
                let s = Silence {
                    id: id.clone(),
                    matchers: p.matchers,
                    starts_at: p.starts_at,
                    ends_at: p.ends_at,
                    updated_at: now,
                    created_by: p.created_by,
                    comment: p.comment,
                };
                self.store(s, compiled)?;
                return Ok(id.clone());
            }
            if state(&prev, now) != "expired" {
                self.expire(id, now)?;
            }
        }
        if p.ends_at <= now {
            return Err(SilenceError::Invalid("endsAt is in the past".into()));
        }
        if starts_at < now {
            starts_at = now;
        }
        if self.items.len() >= self.limit {
            self.gc(now)?;
            if self.items.len() >= self.limit {
                return Err(SilenceError::Invalid(format!(
                    "too many silences (limit {})",
                    self.limit
                )));
            }
        }
        let s = Silence {
            id: uuid::Uuid::new_v4().to_string(),
            matchers: p.matchers,
            starts_at,
            ends_at: p.ends_at,
            updated_at: now,
            created_by: p.created_by,
            comment: p.comment,
        };
        let id = s.id.clone();
        self.store(s, compiled)?;
        Ok(id)
    }

    fn store(&mut self, s: Silence, compiled: Vec<Matcher>) -> Result<(), SilenceError> {
        self.journal.append(&s)?;
        self.items.insert(s.id.clone(), (s, compiled));
        Ok(())
    }

    /// Expires a silence now.
    pub fn expire(&mut self, id: &str, now: DateTime<Utc>) -> Result<(), SilenceError> {
        let Some((mut s, m)) = self.items.get(id).cloned() else {
            return Err(SilenceError::NotFound(id.to_string()));
        };
        match state(&s, now) {
            "expired" => return Err(SilenceError::Invalid(format!("silence {id} already expired"))),
            "pending" => {
                s.starts_at = now;
                s.ends_at = now;
            }
            _ => s.ends_at = now,
        }
        s.updated_at = now;
        self.store(s, m)
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.items.get(id).map(|(s, _)| s)
    }

    /// All silences.
    pub fn all(&self) -> impl Iterator<Item = (&Silence, &[Matcher])> {
        self.items.values().map(|(s, m)| (s, m.as_slice()))
    }

    /// Ids of the active silences that match `labels`.
    pub fn silenced_by(&self, labels: &LabelSet, now: DateTime<Utc>) -> Vec<String> {
        let mut ids: Vec<String> = self
            .items
            .values()
            .filter(|(s, m)| state(s, now) == "active" && m.iter().all(|m| m.matches(labels)))
            .map(|(s, _)| s.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Drops silences expired for longer than the retention and compacts the file.
    pub fn gc(&mut self, now: DateTime<Utc>) -> Result<(), JournalError> {
        self.items
            .retain(|_, (s, _)| s.ends_at.checked_add_signed(RETENTION).is_none_or(|t| t > now));
        let all: Vec<&Silence> = self.items.values().map(|(s, _)| s).collect();
        self.journal.rewrite(all.into_iter())
    }

    /// Appends since the last compaction.
    pub fn appended(&self) -> usize {
        self.journal.appended()
    }
}

fn can_update(prev: &Silence, next: &PostableSilence, now: DateTime<Utc>) -> bool {
    if prev.matchers != next.matchers {
        return false;
    }
    match state(prev, now) {
        "active" => next.starts_at == prev.starts_at && next.ends_at >= now,
        "pending" => next.starts_at >= now,
        _ => false,
    }
}
