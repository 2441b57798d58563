//! Blocks: immutable time ranges of samples in Parquet, one folder each.
//!
//! ```text
//! <blocks_dir>/<id>/series.parquet   one row per series: id, counts, time range, one column per label
//!                   samples.parquet  one row per sample, sorted by (series_id, timestamp)
//!                   meta.json        BlockMeta
//! ```
//!
//! The layout, and why it is shaped so, is in store/docs/format/block.md. A block is written
//! once ([`write_block`], [`compact`]) into a `.tmp` folder renamed into place, so a folder
//! without a dot in its name is always complete; it is read through [`Block`], which keeps the
//! labels and their postings in memory and reads only the row groups and pages a query needs.

mod compact;
mod error;
mod index;
mod meta;
mod read;
mod schema;
mod write;

pub use self::compact::{compact, delete_block, list_blocks};
pub use self::error::BlockError;
pub(crate) use self::index::intersect;
pub use self::meta::BlockMeta;
pub use self::read::Block;
pub use self::schema::FORMAT_VERSION;
pub use self::write::write_block;
