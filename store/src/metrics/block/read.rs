//! Opening and querying a block.
//!
//! `open` reads meta.json, the whole series table (labels, per-series sample counts and time
//! ranges) and the footer and page index of samples.parquet. A query resolves its matchers on
//! the postings, drops series whose time range misses the query's, and turns the rest into
//! exact row ranges (a series' rows start where the previous series' end). The Parquet reader
//! then reads only the row groups that hold those rows and, through the offset index, only the
//! pages that do.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, UInt8Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::PageIndexPolicy;
use tidewatch_model::{Labels, Matcher, Sample, Series};

use super::error::BlockError;
use super::index::Postings;
use super::meta::BlockMeta;
use super::schema::{self, META_FILE, SAMPLES_FILE, SERIES_FILE};

/// Rows decoded at a time when reading samples.
const READ_BATCH_ROWS: usize = 8192;

/// An open, immutable block: its meta, its series and their postings in memory, and the
/// footer of its samples file. Queries read samples.parquet on demand.
///
/// Memory: the labels of every series (owned strings), the postings (one `u32` per label of
/// each series, plus each distinct name and value once), 24 bytes of counts and times per
/// series, and the Parquet footer with its page index.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    /// Labels by series id; ids follow label order.
    series: Vec<Labels>,
    /// The first row of each series in samples.parquet, plus the total row count at the end.
    first_row: Vec<u64>,
    /// Per series: the first and last sample time.
    times: Vec<(i64, i64)>,
    postings: Postings,
    samples: ArrowReaderMetadata,
    size_bytes: u64,
}

impl Block {
    /// Opens the block in folder `dir`. Checks that its files agree with each other; a folder
    /// ending in `.tmp` or `.deleted` is refused (see [`BlockError::Incomplete`]).
    pub fn open(dir: &Path) -> Result<Block, BlockError> {
        let name = dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if name.ends_with(".tmp") || name.ends_with(".deleted") {
            return Err(BlockError::Incomplete {
                path: dir.to_path_buf(),
            });
        }
        let meta = BlockMeta::read(&dir.join(META_FILE))?;
        let series_path = dir.join(SERIES_FILE);
        let table = read_series_table(&series_path)?;
        if table.labels.len() as u64 != meta.num_series {
            return Err(BlockError::corrupt(
                &series_path,
                format!("{} series, meta.json says {}", table.labels.len(), meta.num_series),
            ));
        }
        let mut first_row = Vec::with_capacity(table.labels.len() + 1);
        let mut total = 0u64;
        for &n in &table.num_samples {
            first_row.push(total);
            total += u64::from(n);
        }
        first_row.push(total);
        if total != meta.num_samples {
            return Err(BlockError::corrupt(
                &series_path,
                format!("series hold {total} samples, meta.json says {}", meta.num_samples),
            ));
        }

        let samples_path = dir.join(SAMPLES_FILE);
        let file = File::open(&samples_path).map_err(BlockError::io(&samples_path))?;
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let samples = ArrowReaderMetadata::load(&file, options).map_err(BlockError::parquet(&samples_path))?;
        check_samples_schema(&samples_path, &samples)?;
        let rows = samples.metadata().file_metadata().num_rows();
        if u64::try_from(rows).ok() != Some(total) {
            return Err(BlockError::corrupt(
                &samples_path,
                format!("{rows} rows, the series table counts {total}"),
            ));
        }

        let mut size_bytes = 0;
        for entry in std::fs::read_dir(dir).map_err(BlockError::io(dir))? {
            let entry = entry.map_err(BlockError::io(dir))?;
            size_bytes += entry.metadata().map_err(BlockError::io(entry.path()))?.len();
        }
        let postings = Postings::new(&table.labels);
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            series: table.labels,
            first_row,
            times: table.times,
            postings,
            samples,
            size_bytes,
        })
    }

    /// The block's meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes on disk: every file of the folder.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Series matching all `matchers` (every series when empty), in label order.
    pub fn series(&self, matchers: &[Matcher]) -> Vec<Labels> {
        self.postings
            .select(matchers)
            .into_iter()
            .map(|id| self.series[id as usize].clone())
            .collect()
    }

    /// Label names of the series matching `matchers` (all names when empty), sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return self.postings.label_names().map(str::to_string).collect();
        }
        let mut names = std::collections::BTreeSet::new();
        for id in self.postings.select(matchers) {
            names.extend(self.series[id as usize].iter().map(|l| l.name.as_str()));
        }
        names.into_iter().map(str::to_string).collect()
    }

    /// Values of label `name` among the series matching `matchers`, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            return self.postings.label_values(name).map(str::to_string).collect();
        }
        let mut values = std::collections::BTreeSet::new();
        for id in self.postings.select(matchers) {
            values.extend(self.series[id as usize].get(name));
        }
        values.into_iter().map(str::to_string).collect()
    }

    /// Series matching `matchers` that have samples in `[min_t, max_t]` (inclusive), with only
    /// those samples, in label order.
    pub fn select(&self, matchers: &[Matcher], min_t: i64, max_t: i64) -> Result<Vec<Series>, BlockError> {
        if min_t > max_t || max_t < self.meta.min_time_ms || min_t > self.meta.max_time_ms {
            return Ok(Vec::new());
        }
        let ids: Vec<u32> = self
            .postings
            .select(matchers)
            .into_iter()
            .filter(|&id| {
                let (first, last) = self.times[id as usize];
                first <= max_t && last >= min_t
            })
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ranges: Vec<Range<u64>> = ids
            .iter()
            .map(|&id| self.first_row[id as usize]..self.first_row[id as usize + 1])
            .collect();
        let mut out: Vec<Series> = Vec::with_capacity(ids.len());
        let mut current = None;
        let mut wanted = ids.iter().peekable();
        self.read_rows(&ranges, |series_id, timestamp, value| {
            if timestamp < min_t || timestamp > max_t {
                return Ok(());
            }
            if current != Some(series_id) {
                // Rows come in series order; skip requested series that had no rows in range.
                while wanted.next_if(|&&id| id < series_id).is_some() {}
                if wanted.next_if(|&&id| id == series_id).is_none() {
                    return Err(format!("row of series {series_id}, which was not selected"));
                }
                current = Some(series_id);
                out.push(Series {
                    labels: self.series[series_id as usize].clone(),
                    samples: Vec::new(),
                });
            }
            if let Some(s) = out.last_mut() {
                s.samples.push(Sample {
                    timestamp_ms: timestamp,
                    value,
                });
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads every sample of the block in order, series by series: `(series id, samples)`.
    /// Used by compaction; holds one record batch and one series at a time.
    pub(super) fn scan(&self) -> Result<Scan, BlockError> {
        let path = self.dir.join(SAMPLES_FILE);
        let file = File::open(&path).map_err(BlockError::io(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.samples.clone())
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(BlockError::parquet(&path))?;
        Ok(Scan {
            path,
            reader,
            rows: Vec::new(),
            row: 0,
            pending: None,
            num_series: self.series.len() as u32,
        })
    }

    /// The labels of series `id`.
    pub(super) fn labels(&self, id: u32) -> Option<&Labels> {
        self.series.get(id as usize)
    }

    /// Reads the rows in `ranges` (ascending, disjoint) and calls `row` for each.
    fn read_rows(
        &self,
        ranges: &[Range<u64>],
        mut row: impl FnMut(u32, i64, f64) -> Result<(), String>,
    ) -> Result<(), BlockError> {
        let path = self.dir.join(SAMPLES_FILE);
        // Row groups holding any wanted row, and the wanted rows relative to those groups.
        let mut groups = Vec::new();
        let mut relative: Vec<Range<usize>> = Vec::new();
        let (mut group_start, mut skipped) = (0u64, 0u64);
        let mut r = 0;
        for (g, meta) in self.samples.metadata().row_groups().iter().enumerate() {
            let group_end = group_start + meta.num_rows() as u64;
            while r < ranges.len() && ranges[r].end <= group_start {
                r += 1;
            }
            let mut used = false;
            let mut k = r;
            while k < ranges.len() && ranges[k].start < group_end {
                let (start, end) = (ranges[k].start.max(group_start), ranges[k].end.min(group_end));
                relative.push((start - skipped) as usize..(end - skipped) as usize);
                used = true;
                k += 1;
            }
            if used {
                groups.push(g);
            } else {
                skipped += group_end - group_start;
            }
            group_start = group_end;
        }
        let selected_rows: usize = groups
            .iter()
            .map(|&g| self.samples.metadata().row_group(g).num_rows() as usize)
            .sum();
        let selection = RowSelection::from_consecutive_ranges(relative.into_iter(), selected_rows);
        let file = File::open(&path).map_err(BlockError::io(&path))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.samples.clone())
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(BlockError::parquet(&path))?;
        for batch in reader {
            let batch = batch.map_err(BlockError::arrow(&path))?;
            let cols = SampleColumns::new(&batch).map_err(|what| BlockError::corrupt(&path, what))?;
            for i in 0..batch.num_rows() {
                let (id, t, v) = cols.row(i).map_err(|what| BlockError::corrupt(&path, what))?;
                row(id, t, v).map_err(|what| BlockError::corrupt(&path, what))?;
            }
        }
        Ok(())
    }
}

/// A front-to-back read of a block's samples, one series at a time.
pub(super) struct Scan {
    path: PathBuf,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    /// The current record batch, decoded, and the position in it.
    rows: Vec<(u32, Sample)>,
    row: usize,
    /// The first row of the next series, read ahead.
    pending: Option<(u32, Sample)>,
    num_series: u32,
}

impl Scan {
    /// The next series' id and samples, or None at the end.
    pub(super) fn next_series(&mut self) -> Result<Option<(u32, Vec<Sample>)>, BlockError> {
        let Some((id, first)) = (match self.pending.take() {
            Some(p) => Some(p),
            None => self.next_row()?,
        }) else {
            return Ok(None);
        };
        let mut samples = vec![first];
        while let Some((next_id, sample)) = self.next_row()? {
            if next_id != id {
                if next_id < id {
                    return Err(BlockError::corrupt(
                        &self.path,
                        format!("series {next_id} after series {id}"),
                    ));
                }
                self.pending = Some((next_id, sample));
                break;
            }
            samples.push(sample);
        }
        Ok(Some((id, samples)))
    }

    fn next_row(&mut self) -> Result<Option<(u32, Sample)>, BlockError> {
        while self.row >= self.rows.len() {
            let Some(batch) = self.reader.next() else {
                return Ok(None);
            };
            let batch = batch.map_err(BlockError::arrow(&self.path))?;
            let cols = SampleColumns::new(&batch).map_err(|what| BlockError::corrupt(&self.path, what))?;
            self.rows.clear();
            self.row = 0;
            for i in 0..batch.num_rows() {
                let (id, timestamp_ms, value) = cols.row(i).map_err(|what| BlockError::corrupt(&self.path, what))?;
                if id >= self.num_series {
                    return Err(BlockError::corrupt(&self.path, format!("series_id {id} out of range")));
                }
                self.rows.push((id, Sample { timestamp_ms, value }));
            }
        }
        self.row += 1;
        Ok(Some(self.rows[self.row - 1]))
    }
}

/// Typed views of one record batch of samples.parquet.
struct SampleColumns<'a> {
    series_id: &'a arrow_array::PrimitiveArray<UInt32Type>,
    timestamp: &'a arrow_array::PrimitiveArray<Int64Type>,
    value_int: &'a arrow_array::PrimitiveArray<Int64Type>,
    value_scale: &'a arrow_array::PrimitiveArray<UInt8Type>,
    value_float: &'a arrow_array::PrimitiveArray<Float64Type>,
}

impl<'a> SampleColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("column {name} missing"))
        };
        Ok(SampleColumns {
            series_id: column(schema::SERIES_ID)?
                .as_primitive_opt()
                .ok_or("series_id is not UInt32")?,
            timestamp: column(schema::TIMESTAMP)?
                .as_primitive_opt()
                .ok_or("timestamp is not Int64")?,
            value_int: column(schema::VALUE_INT)?
                .as_primitive_opt()
                .ok_or("value_int is not Int64")?,
            value_scale: column(schema::VALUE_SCALE)?
                .as_primitive_opt()
                .ok_or("value_scale is not UInt8")?,
            value_float: column(schema::VALUE_FLOAT)?
                .as_primitive_opt()
                .ok_or("value_float is not Float64")?,
        })
    }

    /// Row `i` as (series id, timestamp, value).
    fn row(&self, i: usize) -> Result<(u32, i64, f64), String> {
        if self.series_id.is_null(i) || self.timestamp.is_null(i) || self.value_scale.is_null(i) {
            return Err("null in a required column".to_string());
        }
        let value = if self.value_float.is_valid(i) {
            self.value_float.value(i)
        } else if self.value_int.is_valid(i) {
            let scale = self.value_scale.value(i);
            schema::from_scaled(self.value_int.value(i), scale)
                .ok_or_else(|| format!("value_scale {scale} too large"))?
        } else {
            return Err("row with neither value_int nor value_float".to_string());
        };
        Ok((self.series_id.value(i), self.timestamp.value(i), value))
    }
}

fn check_samples_schema(path: &Path, meta: &ArrowReaderMetadata) -> Result<(), BlockError> {
    let want = schema::samples_schema();
    for field in want.fields() {
        match meta.schema().field_with_name(field.name()) {
            Ok(f) if f.data_type() == field.data_type() => {}
            Ok(f) => {
                return Err(BlockError::corrupt(
                    path,
                    format!(
                        "column {} is {}, expected {}",
                        field.name(),
                        f.data_type(),
                        field.data_type()
                    ),
                ));
            }
            Err(_) => return Err(BlockError::corrupt(path, format!("column {} missing", field.name()))),
        }
    }
    Ok(())
}

struct SeriesTable {
    labels: Vec<Labels>,
    num_samples: Vec<u32>,
    times: Vec<(i64, i64)>,
}

/// Reads series.parquet whole and checks that it is a valid series table.
fn read_series_table(path: &Path) -> Result<SeriesTable, BlockError> {
    let file = File::open(path).map_err(BlockError::io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(BlockError::parquet(path))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(BlockError::parquet(path))?;
    let corrupt = |what: String| BlockError::corrupt(path, what);
    let mut table = SeriesTable {
        labels: Vec::new(),
        num_samples: Vec::new(),
        times: Vec::new(),
    };
    for batch in reader {
        let batch = batch.map_err(BlockError::arrow(path))?;
        let required = |name: &str, ty: DataType| {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| corrupt(format!("column {name} missing")))?;
            if col.data_type() != &ty || col.null_count() > 0 {
                return Err(corrupt(format!("column {name} is not a {ty} without nulls")));
            }
            Ok(col)
        };
        let ids = required(schema::SERIES_ID, DataType::UInt32)?.as_primitive::<UInt32Type>();
        let counts = required(schema::NUM_SAMPLES, DataType::UInt32)?.as_primitive::<UInt32Type>();
        let mins = required(schema::MIN_TIME, DataType::Int64)?.as_primitive::<Int64Type>();
        let maxs = required(schema::MAX_TIME, DataType::Int64)?.as_primitive::<Int64Type>();
        let mut label_columns = Vec::new();
        for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
            let Some(label) = schema::column_label(field.name()) else {
                continue;
            };
            let values = col
                .as_string_opt::<i32>()
                .ok_or_else(|| corrupt(format!("label column {} is not Utf8", field.name())))?;
            label_columns.push((label.to_string(), values));
        }
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            if id as usize != table.labels.len() {
                return Err(corrupt(format!("series_id {id} at row {}", table.labels.len())));
            }
            let (count, min, max) = (counts.value(i), mins.value(i), maxs.value(i));
            if count == 0 || min > max {
                return Err(corrupt(format!("series {id}: {count} samples from {min} to {max}")));
            }
            let labels = Labels::from_pairs(
                label_columns
                    .iter()
                    .filter(|(_, v)| v.is_valid(i))
                    .map(|(name, v)| (name.as_str(), v.value(i))),
            );
            if table.labels.last().is_some_and(|prev| prev >= &labels) {
                return Err(corrupt(format!("series {id} is not in label order")));
            }
            table.labels.push(labels);
            table.num_samples.push(count);
            table.times.push((min, max));
        }
    }
    Ok(table)
}
