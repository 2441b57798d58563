//! `tidewatch import FILE`: backfill samples from a Prometheus text or OpenMetrics file (with
//! timestamps) into blocks, as `promtool tsdb create-blocks-from openmetrics` does.
//!
//! The file is read once to find its time range, then once per block range, so memory holds
//! one block range of samples at a time whatever the file's size. Blocks are written straight
//! into `<data_dir>/metrics/blocks` under the server's lock: the server must be stopped.
//! Imported blocks have level 0, which tells the store they were not cut from its head, so they
//! never move the head's lower bound and never cause recent samples to be refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tidewatch_model::{Labels, Sample};
use tidewatch_store::metrics::block;
use tidewatch_store::metrics::openmetrics::{Format, Parser};

use crate::data_dir::DirLock;

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn open(path: &Path, bar: &ProgressBar) -> anyhow::Result<Box<dyn BufRead>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let counting = Counting {
        inner: file,
        bar: bar.clone(),
    };
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(counting),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, counting))
    })
}

fn bar(path: &Path, message: String) -> anyhow::Result<ProgressBar> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    Ok(bar)
}

/// Reads `path` and writes its samples as blocks into `data_dir`. Returns (blocks, samples).
pub fn import(path: &Path, data_dir: &Path, format: Format, block_range_ms: i64) -> anyhow::Result<(usize, u64)> {
    let _lock = DirLock::acquire(data_dir, "import").context("the server must be stopped while importing")?;
    let blocks_dir = data_dir.join("metrics").join("blocks");
    std::fs::create_dir_all(&blocks_dir).with_context(|| format!("cannot create {}", blocks_dir.display()))?;

    // Pass 1: the time range, and every error before anything is written.
    let scan = bar(path, "scanning".into())?;
    let (mut min, mut max, mut count) = (i64::MAX, i64::MIN, 0u64);
    for item in Parser::new(open(path, &scan)?, format, 0) {
        let (_, sample) = item.with_context(|| format!("{}", path.display()))?;
        min = min.min(sample.timestamp_ms);
        max = max.max(sample.timestamp_ms);
        count += 1;
    }
    scan.finish_and_clear();
    if count == 0 {
        bail!("{}: no samples", path.display());
    }
    eprintln!("{}: {count} samples from {min} to {max} (ms)", path.display());

    // Pass 2..: one block per block range.
    let mut written = 0;
    let first = min.div_euclid(block_range_ms);
    let last = max.div_euclid(block_range_ms);
    for window in first..=last {
        let (start, end) = (window * block_range_ms, (window + 1) * block_range_ms);
        let pass = bar(path, format!("block {}/{}", window - first + 1, last - first + 1))?;
        let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for item in Parser::new(open(path, &pass)?, format, 0) {
            let (labels, sample) = item.with_context(|| format!("{}", path.display()))?;
            if sample.timestamp_ms >= start && sample.timestamp_ms < end {
                series.entry(labels).or_default().push(sample);
            }
        }
        pass.finish_and_clear();
        if series.is_empty() {
            continue;
        }
        for samples in series.values_mut() {
            // Files need not be in time order; blocks must be, one sample per timestamp.
            samples.sort_by_key(|s| s.timestamp_ms);
            samples.dedup_by_key(|s| s.timestamp_ms);
        }
        let meta = block::write_block(&blocks_dir, series.into_iter(), 0, vec!["import".to_string()])
            .with_context(|| format!("writing the block for [{start}, {end})"))?;
        eprintln!(
            "wrote block {} ({} series, {} samples)",
            meta.id, meta.num_series, meta.num_samples
        );
        written += 1;
    }
    Ok((written, count))
}
