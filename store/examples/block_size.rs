//! Disk size of Tidewatch blocks for one data set, for bench/disk/run.sh.
//!
//! Parses an OpenMetrics/Prometheus text file (timing the parser), writes it as level-1 blocks
//! cut on `--cut-ms` boundaries as the head would, compacts them into one block, deletes the
//! level-1 blocks and prints the sizes, one `key=value` per line, then a breakdown by file and by
//! samples.parquet column.
//!
//! Run: `cargo run --release -p tidewatch-store --example block_size -- FILE.om WORK_DIR [--cut-ms N]`

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Instant;

use tidewatch_model::{Labels, Sample};
use tidewatch_store::metrics::block::{self, Block};
use tidewatch_store::metrics::openmetrics::{Format, Parser};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: block_size FILE.om WORK_DIR [--cut-ms N]";
    let (input, work) = (args.get(1).expect(usage), Path::new(args.get(2).expect(usage)));
    let cut_ms: i64 = match args.iter().position(|a| a == "--cut-ms") {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).expect(usage),
        None => 600_000,
    };

    // The parser alone: lines per second over the uncompressed file.
    let started = Instant::now();
    let mut parser = Parser::new(
        BufReader::with_capacity(1 << 20, File::open(input).expect("input")),
        Format::Detect,
        0,
    );
    let mut count = 0u64;
    for item in parser.by_ref() {
        item.expect("input parses");
        count += 1;
    }
    let parse_s = started.elapsed().as_secs_f64();
    println!("parse_lines={}", parser.lines_read());
    println!("parse_seconds={parse_s:.3}");
    println!("parse_lines_per_second={:.0}", parser.lines_read() as f64 / parse_s);

    // Level-1 blocks, one per cut window.
    let mut windows: BTreeMap<i64, BTreeMap<Labels, Vec<Sample>>> = BTreeMap::new();
    let reader = BufReader::with_capacity(1 << 20, File::open(input).expect("input"));
    for item in Parser::new(reader, Format::Detect, 0) {
        let (labels, sample) = item.expect("input parses");
        windows
            .entry(sample.timestamp_ms.div_euclid(cut_ms))
            .or_default()
            .entry(labels)
            .or_default()
            .push(sample);
    }
    let blocks_dir = work.join("blocks");
    std::fs::create_dir_all(&blocks_dir).expect("work dir");
    let started = Instant::now();
    let mut level1 = Vec::new();
    for (_, series) in windows {
        let meta = block::write_block(&blocks_dir, series.into_iter(), 1, vec![]).expect("write block");
        level1.push(Block::open(&blocks_dir.join(&meta.id)).expect("open block"));
    }
    let write_s = started.elapsed().as_secs_f64();
    let level1_bytes: u64 = level1.iter().map(Block::size_bytes).sum();

    let started = Instant::now();
    let inputs: Vec<&Block> = level1.iter().collect();
    let meta = block::compact(&blocks_dir, &inputs).expect("compact");
    let compact_s = started.elapsed().as_secs_f64();
    for b in &level1 {
        block::delete_block(b.dir()).expect("delete");
    }
    let compacted = Block::open(&blocks_dir.join(&meta.id)).expect("open compacted");
    assert_eq!(
        compacted.meta().num_samples,
        count,
        "every sample is in the compacted block"
    );

    println!("samples={count}");
    println!("series={}", compacted.meta().num_series);
    println!("level1_blocks={}", level1.len());
    println!("level1_bytes={level1_bytes}");
    println!("level1_write_seconds={write_s:.3}");
    println!("compact_seconds={compact_s:.3}");
    println!("compacted_bytes={}", compacted.size_bytes());
    println!(
        "compacted_bytes_per_sample={:.4}",
        compacted.size_bytes() as f64 / count as f64
    );
    for f in ["samples.parquet", "series.parquet", "meta.json"] {
        let len = std::fs::metadata(compacted.dir().join(f)).expect("file").len();
        println!("file {f}={len}");
    }
    let samples = File::open(compacted.dir().join("samples.parquet")).expect("samples");
    let reader = parquet::file::serialized_reader::SerializedFileReader::new(samples).expect("parquet");
    let metadata = parquet::file::reader::FileReader::metadata(&reader);
    let mut by_column = BTreeMap::new();
    for rg in metadata.row_groups() {
        for c in rg.columns() {
            *by_column.entry(c.column_path().string()).or_insert(0i64) += c.compressed_size();
        }
    }
    for (column, bytes) in by_column {
        println!("column {column}={bytes}");
    }
    println!("row_groups={}", metadata.num_row_groups());
}
