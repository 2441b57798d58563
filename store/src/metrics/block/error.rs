//! The one error type of the block module. Every variant that concerns a file names it.

use std::path::PathBuf;

/// Why a block could not be written, opened or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file or folder could not be created, read, written, synced or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet library refused a file (truncated, corrupt, or not Parquet).
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// What the Parquet library said.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Arrow refused the data read from or written to a file.
    #[error("{path}: arrow: {source}")]
    Arrow {
        /// The Parquet file.
        path: PathBuf,
        /// What Arrow said.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// `meta.json` is missing a field, is not JSON, or contradicts itself.
    #[error("{path}: invalid block meta: {reason}")]
    Meta {
        /// The meta.json file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file parses but does not hold what the format says (a missing column, a wrong type,
    /// series out of order, counts that disagree with meta.json…).
    #[error("{path}: corrupt block: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The block was written by a newer Tidewatch.
    #[error("{path}: block format version {found} is not supported (this build reads up to {supported})")]
    UnsupportedVersion {
        /// The meta.json file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The folder is an unfinished write or delete (`*.tmp`, `*.deleted`), never a block.
    #[error("{path}: not a complete block (a leftover of an interrupted write or delete)")]
    Incomplete {
        /// The folder.
        path: PathBuf,
    },
    /// There was nothing to write: no series with samples.
    #[error("no samples to write into a block")]
    Empty,
    /// The series given to the writer break its contract.
    #[error("invalid block input: series {series}: {what}")]
    InvalidInput {
        /// The series, in Prometheus notation.
        series: String,
        /// What is wrong, e.g. "timestamps not increasing at 1700000000000".
        what: String,
    },
}

impl BlockError {
    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BlockError {
        let path = path.into();
        move |source| BlockError::Io { path, source }
    }

    pub(super) fn parquet(path: impl Into<PathBuf>) -> impl FnOnce(parquet::errors::ParquetError) -> BlockError {
        let path = path.into();
        move |source| BlockError::Parquet { path, source }
    }

    pub(super) fn arrow(path: impl Into<PathBuf>) -> impl FnOnce(arrow_schema::ArrowError) -> BlockError {
        let path = path.into();
        move |source| BlockError::Arrow { path, source }
    }

    pub(super) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> BlockError {
        BlockError::Corrupt {
            path: path.into(),
            what: what.into(),
        }
    }
}
