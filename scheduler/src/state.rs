//! The desired state that must survive a restart: each service's desired replica count (set by
//! `scale` or the autoscaler) and the spec count it overrides. Written to
//! `<data>/scheduler/state.json` by write-fsync-rename-fsync, so a reader sees the old file or
//! the new one, never a torn one, and a count is acknowledged only once it is on disk.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is persisted for one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredEntry {
    /// The count the scheduler converges to.
    pub desired: u32,
    /// The spec's `replicas` when `desired` was set: when the spec file later says something
    /// else, the person editing it wins over the last `scale`.
    pub spec_replicas: u32,
}

/// The file's content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// By service name.
    pub services: BTreeMap<String, DesiredEntry>,
}

/// The state file of a data folder.
#[derive(Clone)]
pub struct StateFile {
    path: PathBuf,
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}: {message}")]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// Why it failed.
    pub message: String,
}

impl StateFile {
    /// The state file under `<data_dir>/scheduler/`, creating the folder.
    pub fn open(data_dir: &Path) -> Result<StateFile, StateError> {
        let dir = data_dir.join("scheduler");
        std::fs::create_dir_all(&dir).map_err(|e| StateError {
            path: dir.clone(),
            what: "create folder",
            message: e.to_string(),
        })?;
        Ok(StateFile {
            path: dir.join("state.json"),
        })
    }

    /// Reads the state; a missing file is an empty state.
    pub fn load(&self) -> Result<State, StateError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError {
                path: self.path.clone(),
                what: "parse",
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                ..State::default()
            }),
            Err(e) => Err(StateError {
                path: self.path.clone(),
                what: "read",
                message: e.to_string(),
            }),
        }
    }

    /// Writes the state durably: a temporary file, fsync, rename over the old one, fsync of the
    /// folder (so the rename itself survives a crash).
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let err = |what: &'static str| {
            let path = self.path.clone();
            move |e: std::io::Error| StateError {
                path,
                what,
                message: e.to_string(),
            }
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| err("encode")(std::io::Error::other(e)))?;
        let mut file = std::fs::File::create(&tmp).map_err(err("create temporary file"))?;
        file.write_all(&bytes).map_err(err("write"))?;
        file.sync_all().map_err(err("fsync"))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(err("rename"))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(err("fsync folder"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::open(dir.path()).unwrap();
        assert!(file.load().unwrap().services.is_empty());
        let mut state = State::default();
        state.services.insert(
            "web".into(),
            DesiredEntry {
                desired: 4,
                spec_replicas: 1,
            },
        );
        file.save(&state).unwrap();
        state.services.get_mut("web").unwrap().desired = 5;
        file.save(&state).unwrap();
        let again = StateFile::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(again.services["web"].desired, 5);
        assert!(!dir.path().join("scheduler/state.json.tmp").exists());
        std::fs::write(dir.path().join("scheduler/state.json"), "{not json").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("state.json") && err.contains("parse"), "{err}");
    }
}
