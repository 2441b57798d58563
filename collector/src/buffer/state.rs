//! The acknowledgement state: each sink's position and the newest acknowledged checkpoint of
//! each source, in `state.json`, replaced atomically (write, fsync, rename, fsync the folder).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BufferError, ResumePoint};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct AckState {
    /// Per sink (its URL): the logical buffer position below which everything is acknowledged.
    pub sinks: BTreeMap<String, u64>,
    /// Per source: the newest acknowledged sequence number and its checkpoint.
    pub sources: BTreeMap<String, ResumePoint>,
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

pub(crate) fn load(dir: &Path) -> Result<AckState, BufferError> {
    let p = path(dir);
    match fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BufferError::State {
            path: p.clone(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AckState::default()),
        Err(e) => Err(BufferError::io(&p, e)),
    }
}

pub(crate) fn store(dir: &Path, state: &AckState) -> Result<(), BufferError> {
    let p = path(dir);
    let tmp = dir.join("state.json.tmp");
    let bytes = serde_json::to_vec(state).map_err(|e| BufferError::State {
        path: p.clone(),
        message: e.to_string(),
    })?;
    let mut f = fs::File::create(&tmp).map_err(|e| BufferError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| BufferError::io(&tmp, e))?;
    f.sync_all().map_err(|e| BufferError::io(&tmp, e))?;
    fs::rename(&tmp, &p).map_err(|e| BufferError::io(&p, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BufferError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BufferError::io(dir, e))
}
