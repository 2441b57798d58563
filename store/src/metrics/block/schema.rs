//! The Parquet layout of a block: file and column names, Arrow schemas, writer settings, and the
//! decimal value encoding. store/docs/format/block.md describes the same thing for readers, with
//! the measurements behind each choice.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{DeltaBinaryPackedEncoderOptions, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// The version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

pub(super) const SAMPLES_FILE: &str = "samples.parquet";
pub(super) const SERIES_FILE: &str = "series.parquet";
pub(super) const META_FILE: &str = "meta.json";

// samples.parquet
pub(super) const SERIES_ID: &str = "series_id";
pub(super) const TIMESTAMP: &str = "timestamp";
pub(super) const VALUE_INT: &str = "value_int";
pub(super) const VALUE_SCALE: &str = "value_scale";
pub(super) const VALUE_FLOAT: &str = "value_float";

// series.parquet, besides `series_id` and one column per label name.
pub(super) const NUM_SAMPLES: &str = "num_samples";
pub(super) const MIN_TIME: &str = "min_time";
pub(super) const MAX_TIME: &str = "max_time";

/// Names the series table uses for itself; a label with one of these names, or whose name
/// starts with [`ESCAPE`], gets [`ESCAPE`] in front of its column name.
const RESERVED: [&str; 4] = [SERIES_ID, NUM_SAMPLES, MIN_TIME, MAX_TIME];
const ESCAPE: &str = "__label_";

/// The series-table column that holds label `name`.
pub(super) fn label_column(name: &str) -> Cow<'_, str> {
    if RESERVED.contains(&name) || name.starts_with(ESCAPE) {
        Cow::Owned(format!("{ESCAPE}{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The label a series-table column holds, or None for the table's own columns.
pub(super) fn column_label(column: &str) -> Option<&str> {
    match column.strip_prefix(ESCAPE) {
        Some(escaped) => Some(escaped),
        None if RESERVED.contains(&column) => None,
        None => Some(column),
    }
}

pub(super) fn samples_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SERIES_ID, DataType::UInt32, false),
        Field::new(TIMESTAMP, DataType::Int64, false),
        Field::new(VALUE_INT, DataType::Int64, true),
        Field::new(VALUE_SCALE, DataType::UInt8, false),
        Field::new(VALUE_FLOAT, DataType::Float64, true),
    ]))
}

/// The series table's schema for these label names (sorted, as label sets sort them).
pub(super) fn series_schema<'a>(label_names: impl Iterator<Item = &'a str>) -> SchemaRef {
    let mut fields = vec![
        Field::new(SERIES_ID, DataType::UInt32, false),
        Field::new(NUM_SAMPLES, DataType::UInt32, false),
        Field::new(MIN_TIME, DataType::Int64, false),
        Field::new(MAX_TIME, DataType::Int64, false),
    ];
    fields.extend(label_names.map(|n| Field::new(label_column(n), DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

/// Rows per row group of samples.parquet: pages, not row groups, are the unit a query skips
/// (through the offset index), so row groups are large; 256 Ki rows cost 0.6 % over 1 Mi rows
/// and give external readers that prune by row-group statistics a useful granularity.
pub(super) const SAMPLES_ROW_GROUP_ROWS: usize = 256 * 1024;
/// Rows per data page: the unit of skipping and of zstd's context. See block.md.
const SAMPLES_PAGE_ROWS: usize = 100_000;
/// zstd level for samples.parquet. See block.md for the size and time of each level.
const SAMPLES_ZSTD_LEVEL: i32 = 9;

fn key_value_metadata() -> Option<Vec<KeyValue>> {
    Some(vec![KeyValue::new(
        "tidewatch.block.format_version".to_string(),
        FORMAT_VERSION.to_string(),
    )])
}

pub(super) fn samples_properties() -> WriterProperties {
    let col = |name: &str| ColumnPath::from(name);
    // 128 values per block in 4 miniblocks of 32: where one series ends and the next begins the
    // delta is large, and it widens every value of its block; smaller blocks contain the damage.
    let dbp = DeltaBinaryPackedEncoderOptions::try_new(128, 4).expect("128/4 is a valid layout");
    WriterProperties::builder()
        .set_created_by(format!("tidewatch {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(key_value_metadata())
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(SAMPLES_ZSTD_LEVEL).expect("valid zstd level"),
        ))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(SAMPLES_ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(SAMPLES_PAGE_ROWS)
        .set_data_page_size_limit(8 << 20)
        .set_write_batch_size(8192)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_column_statistics_enabled(col(SERIES_ID), EnabledStatistics::Page)
        .set_column_statistics_enabled(col(TIMESTAMP), EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![
            SortingColumn {
                column_idx: 0,
                descending: false,
                nulls_first: false,
            },
            SortingColumn {
                column_idx: 1,
                descending: false,
                nulls_first: false,
            },
        ]))
        .set_delta_binary_packed_encoder_options(dbp)
        .set_column_encoding(col(SERIES_ID), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(col(TIMESTAMP), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(col(VALUE_INT), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(col(VALUE_FLOAT), Encoding::BYTE_STREAM_SPLIT)
        // One scale per series: a tiny dictionary and long RLE runs.
        .set_column_dictionary_enabled(col(VALUE_SCALE), true)
        .build()
}

pub(super) fn series_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(format!("tidewatch {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(key_value_metadata())
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(SAMPLES_ZSTD_LEVEL).expect("valid zstd level"),
        ))
        // Label values repeat across series: dictionary encoding is the default for strings.
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(ColumnPath::from(SERIES_ID), false)
        .set_column_encoding(ColumnPath::from(SERIES_ID), Encoding::DELTA_BINARY_PACKED)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .build()
}

/// `10^k` for every scale a value may have; all are exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];
/// The largest scale.
pub(super) const MAX_SCALE: u8 = 22;
/// Integers up to 2^53 are exact in f64, which makes `m / 10^k` exact in IEEE arithmetic.
const MAX_MANTISSA: i64 = 1 << 53;

/// `v` as `m / 10^k` with the smallest `k`, when that division gives back `v` bit for bit.
/// NaN, infinities and -0.0 have no such form.
///
/// Why the division is exact: `m` (at most 2^53) and `10^k` (k ≤ 22) are both exact in f64,
/// so IEEE division returns the double nearest to the rational m/10^k. Checking the result
/// here once makes any reader's `value_int / 10^value_scale` give the same bits.
pub(super) fn decimal(v: f64) -> Option<(i64, u8)> {
    if !v.is_finite() || v.to_bits() == (-0.0f64).to_bits() {
        return None;
    }
    if v.fract() == 0.0 {
        return (v.abs() <= MAX_MANTISSA as f64).then_some((v as i64, 0));
    }
    for (k, p) in POW10.iter().enumerate().skip(1) {
        let m = (v * p).round();
        if m.abs() > MAX_MANTISSA as f64 {
            return None;
        }
        if (m / p).to_bits() == v.to_bits() {
            return Some((m as i64, k as u8));
        }
    }
    None
}

/// `v` as a mantissa at scale `scale`, if exact (see [`decimal`]).
pub(super) fn to_scaled(v: f64, decimal: Option<(i64, u8)>, scale: u8) -> Option<i64> {
    let (m, k) = decimal?;
    if k > scale {
        return None;
    }
    let m = m.checked_mul(10i64.checked_pow(u32::from(scale - k))?)?;
    if m.abs() > MAX_MANTISSA {
        return None;
    }
    // Exact by the argument on `decimal`; checked anyway, it is one division.
    (from_scaled(m, scale)?.to_bits() == v.to_bits()).then_some(m)
}

/// The value `m / 10^scale`, or None for a scale outside the format.
pub(super) fn from_scaled(m: i64, scale: u8) -> Option<f64> {
    POW10.get(usize::from(scale)).map(|p| m as f64 / p)
}

/// The scale at which the most values of a series are exact, smallest first on ties. Values
/// not exact at it go to the float column.
pub(super) fn choose_scale(decimals: &[Option<(i64, u8)>]) -> u8 {
    let mut at_scale = [0usize; MAX_SCALE as usize + 1];
    // A value exact at scale k is exact at every larger scale as long as its mantissa fits;
    // the count ignores that limit, which at worst sends a few values to the float column.
    for &(_, k) in decimals.iter().flatten() {
        at_scale[usize::from(k)] += 1;
    }
    let (mut best, mut best_count, mut count) = (0u8, 0usize, 0usize);
    for (k, n) in at_scale.iter().enumerate() {
        count += n;
        if count > best_count {
            best = k as u8;
            best_count = count;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decimal_values_use_the_smallest_scale() {
        assert_eq!(decimal(3.0), Some((3, 0)));
        assert_eq!(decimal(-12.5), Some((-125, 1)));
        assert_eq!(decimal(0.1), Some((1, 1)));
        assert_eq!(decimal(3.5483e-05), Some((35483, 9)));
        assert_eq!(decimal(1234.56), Some((123456, 2)));
        assert_eq!(decimal(f64::NAN), None);
        assert_eq!(decimal(f64::INFINITY), None);
        assert_eq!(decimal(-0.0), None);
        assert_eq!(decimal(0.0), Some((0, 0)));
        assert_eq!(decimal(1e300), None);
        assert_eq!(decimal(std::f64::consts::PI), Some((3141592653589793, 15)));
        assert_eq!(decimal(0.1 + 0.2), None, "17 significant digits do not fit in 2^53");
    }

    #[test]
    fn scale_choice_counts_values() {
        let d: Vec<_> = [1.0, 2.5, 3.25, f64::NAN].into_iter().map(decimal).collect();
        assert_eq!(choose_scale(&d), 2);
        assert_eq!(to_scaled(2.5, decimal(2.5), 2), Some(250));
        assert_eq!(to_scaled(3.25, decimal(3.25), 1), None);
    }

    #[test]
    fn label_columns_escape_reserved_names() {
        for name in ["job", "__name__", "series_id", "min_time", "__label_x", "__label_"] {
            assert_eq!(column_label(&label_column(name)), Some(name));
        }
        assert_eq!(label_column("series_id"), "__label_series_id");
        assert_eq!(column_label("num_samples"), None);
    }

    proptest! {
        #[test]
        fn scaled_values_are_exact(v in any::<f64>(), scale in 0u8..=22) {
            let d = decimal(v);
            if let Some((m, k)) = d {
                prop_assert_eq!(from_scaled(m, k).unwrap().to_bits(), v.to_bits());
            }
            if let Some(m) = to_scaled(v, d, scale) {
                prop_assert_eq!(from_scaled(m, scale).unwrap().to_bits(), v.to_bits());
            }
        }

        #[test]
        fn short_decimals_are_found(m in -1_000_000_000i64..1_000_000_000, k in 0u32..10) {
            let v = m as f64 / 10f64.powi(k as i32);
            let (m2, k2) = decimal(v).expect("a short decimal");
            prop_assert!(k2 as u32 <= k);
            prop_assert_eq!(from_scaled(m2, k2).unwrap().to_bits(), v.to_bits());
        }
    }
}
