//! `meta.json`: what a block holds, written last inside the temporary folder.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::error::BlockError;
use super::schema::FORMAT_VERSION;

/// The description of a block, stored as its `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block's folder name: `<min_time_ms as 16 hex digits>-<8 hex digits>`. The first part
    /// is the minimum time with its sign bit flipped (offset binary), so ids sort by time also
    /// across 1970; the second part tells apart blocks that start at the same millisecond.
    pub id: String,
    /// The first sample's time, in milliseconds.
    pub min_time_ms: i64,
    /// The last sample's time, in milliseconds (inclusive).
    pub max_time_ms: i64,
    /// Series in the block.
    pub num_series: u64,
    /// Samples in the block.
    pub num_samples: u64,
    /// 1 for a block cut from the head, one more than its highest input for a compacted block.
    pub level: u32,
    /// The ids of the blocks compacted into this one.
    pub parents: Vec<String>,
    /// The layout version (see store/docs/format/block.md).
    pub format_version: u32,
}

impl BlockMeta {
    pub(super) fn read(path: &Path) -> Result<BlockMeta, BlockError> {
        let bytes = std::fs::read(path).map_err(BlockError::io(path))?;
        let meta: BlockMeta = serde_json::from_slice(&bytes).map_err(|e| BlockError::Meta {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if meta.format_version > FORMAT_VERSION || meta.format_version == 0 {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: meta.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let bad = |reason: &str| {
            Err(BlockError::Meta {
                path: path.to_path_buf(),
                reason: reason.to_string(),
            })
        };
        if meta.min_time_ms > meta.max_time_ms {
            return bad("min_time_ms is after max_time_ms");
        }
        if meta.num_series == 0 || meta.num_samples < meta.num_series {
            return bad("a block holds at least one sample per series");
        }
        if !valid_id(&meta.id) {
            return bad("id is not <16 hex>-<8 hex>");
        }
        Ok(meta)
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("BlockMeta always serializes");
        json.push(b'\n');
        json
    }
}

/// A new block id for a block starting at `min_time_ms`.
pub(super) fn new_id(min_time_ms: i64) -> String {
    format!("{:016x}-{:08x}", (min_time_ms as u64) ^ (1 << 63), unique_suffix())
}

fn valid_id(id: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    id.split_once('-').is_some_and(|(a, b)| hex(a, 16) && hex(b, 8))
}

/// 32 bits that differ between calls and between processes: the clock, the process id and a
/// counter, mixed. Collisions are still checked by the writer (the rename refuses to replace a
/// block), so this only needs to make them rare.
pub(super) fn unique_suffix() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut x = (nanos as u64)
        ^ (u64::from(std::process::id()) << 32)
        ^ u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finalizer.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_across_the_epoch() {
        let ids: Vec<String> = [-5_000i64, -1, 0, 1, 1_795_431_900_174]
            .iter()
            .map(|&t| new_id(t))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids.iter().all(|id| valid_id(id)), "{ids:?}");
        assert_ne!(new_id(0), new_id(0));
    }
}
