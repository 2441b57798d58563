//! Compaction (many blocks into one), deletion, and listing the blocks of a folder.

use std::path::{Path, PathBuf};

use tidewatch_model::{Labels, Sample};

use super::error::BlockError;
use super::meta::BlockMeta;
use super::read::{Block, Scan};
use super::write::{sync_dir, write_block_from};

/// Merges `inputs` (adjacent or overlapping blocks) into one new block in `blocks_dir` and
/// returns its meta; the inputs are left in place for the caller to retire.
///
/// Series are merged by labels. Where two inputs hold a sample at the same timestamp, the one
/// from the block later in `inputs` is kept, so pass them oldest first. The new block's level
/// is one more than the highest input level, and its parents are the input ids.
///
/// Memory: it streams. Each input is read front to back (its series are already in label
/// order), one record batch and one series per input at a time, and the merged series go
/// straight to the writer's spill file; what grows with the data is the writer's ~60 bytes
/// plus labels per output series (see `write_block`).
pub fn compact(blocks_dir: &Path, inputs: &[&Block]) -> Result<BlockMeta, BlockError> {
    if inputs.is_empty() {
        return Err(BlockError::Empty);
    }
    let level = inputs
        .iter()
        .map(|b| b.meta().level)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    let parents = inputs.iter().map(|b| b.meta().id.clone()).collect();
    let mut cursors = Vec::with_capacity(inputs.len());
    for block in inputs {
        let mut scan = block.scan()?;
        let head = scan.next_series()?;
        cursors.push(Cursor { block, scan, head });
    }
    write_block_from(blocks_dir, Merge { cursors, failed: false }, level, parents)
}

struct Cursor<'a> {
    block: &'a Block,
    scan: Scan,
    /// The series this input is at: its id and samples.
    head: Option<(u32, Vec<Sample>)>,
}

impl Cursor<'_> {
    fn labels(&self) -> Option<&Labels> {
        self.head.as_ref().and_then(|(id, _)| self.block.labels(*id))
    }
}

/// The inputs' series merged in label order.
struct Merge<'a> {
    cursors: Vec<Cursor<'a>>,
    failed: bool,
}

impl Merge<'_> {
    fn next_merged(&mut self) -> Result<Option<(Labels, Vec<Sample>)>, BlockError> {
        let Some(labels) = self.cursors.iter().filter_map(Cursor::labels).min().cloned() else {
            return Ok(None);
        };
        // Every input at these labels, in input order, each advanced past them.
        let mut parts: Vec<Vec<Sample>> = Vec::new();
        for c in &mut self.cursors {
            if c.labels() == Some(&labels) {
                if let Some((_, samples)) = c.head.take() {
                    parts.push(samples);
                }
                c.head = c.scan.next_series()?;
            }
        }
        let samples = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            merge_samples(parts)
        };
        Ok(Some((labels, samples)))
    }
}

impl Iterator for Merge<'_> {
    type Item = Result<(Labels, Vec<Sample>), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_merged().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

/// Merges time-ordered runs; on equal timestamps the run given later wins.
fn merge_samples(parts: Vec<Vec<Sample>>) -> Vec<Sample> {
    let mut all: Vec<Sample> = parts.into_iter().flatten().collect();
    // Stable: among equal timestamps, input order is kept, so the last one is the later block's.
    all.sort_by_key(|s| s.timestamp_ms);
    let mut out: Vec<Sample> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.timestamp_ms == s.timestamp_ms => *last = s,
            _ => out.push(s),
        }
    }
    out
}

/// Deletes the block in `dir`: renames it to `<dir>.deleted` (so an interrupted delete never
/// leaves a partial folder that looks like a block), then removes it.
pub fn delete_block(dir: &Path) -> Result<(), BlockError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let doomed = if name.ends_with(".deleted") {
        dir.to_path_buf()
    } else {
        let doomed = parent.join(format!("{name}.deleted"));
        std::fs::rename(dir, &doomed).map_err(BlockError::io(dir))?;
        sync_dir(parent)?;
        doomed
    };
    std::fs::remove_dir_all(&doomed).map_err(BlockError::io(&doomed))?;
    sync_dir(parent)
}

/// The block folders in `blocks_dir`, oldest first (ids sort by minimum time). Leftovers of
/// interrupted writes (`*.tmp`) and deletes (`*.deleted`) are removed, and other names with a
/// dot (such as a folder set aside as `*.corrupt`) are skipped: none of them is a block.
pub fn list_blocks(blocks_dir: &Path) -> Result<Vec<PathBuf>, BlockError> {
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(blocks_dir).map_err(BlockError::io(blocks_dir))? {
        let entry = entry.map_err(BlockError::io(blocks_dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type().map_err(BlockError::io(&path))?.is_dir() {
            continue;
        }
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            std::fs::remove_dir_all(&path).map_err(BlockError::io(&path))?;
        } else if !name.contains('.') {
            blocks.push(path);
        }
    }
    blocks.sort();
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_runs_win_on_equal_timestamps() {
        let s = |t, v| Sample {
            timestamp_ms: t,
            value: v,
        };
        let merged = merge_samples(vec![vec![s(1, 1.0), s(2, 1.0), s(4, 1.0)], vec![s(2, 2.0), s(3, 2.0)]]);
        assert_eq!(merged, vec![s(1, 1.0), s(2, 2.0), s(3, 2.0), s(4, 1.0)]);
    }
}
