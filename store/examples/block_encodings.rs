//! The encoding experiments behind the block format (store/docs/format/block.md): writes the
//! samples of one data set as `samples.parquet` in several layouts and prints the bytes per
//! sample of each. Only the samples file: the series table is the same in every variant.
//!
//! Run: `cargo run --release -p tidewatch-store --example block_encodings -- FILE.om[.gz]`
//! (a `.gz` file is read through `gzip -dc`).

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, UInt8Array, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{DeltaBinaryPackedEncoderOptions, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use tidewatch_model::{Labels, Sample};
use tidewatch_store::metrics::openmetrics::{Format, Parser};

#[derive(Clone, Copy, Debug)]
enum Values {
    /// One Float64 column.
    Float(Encoding),
    /// Decimal values as scaled integers (Int64) plus a Float64 column for the rest.
    Split(Encoding),
    /// As `Split`, with the Float64 column PLAIN rather than BYTE_STREAM_SPLIT.
    SplitFloatPlain,
    /// As `Split`, but the integer column holds the difference from the series' previous value.
    SplitDelta,
}

#[derive(Clone, Debug)]
struct Variant {
    name: &'static str,
    values: Values,
    timestamp: Encoding,
    zstd: Option<i32>,
    page_rows: usize,
    page_bytes: usize,
    row_group_rows: usize,
    dbp: (usize, usize),
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: block_encodings FILE.om[.gz]");
    let series = load(&path);
    let samples: usize = series.values().map(Vec::len).sum();
    println!("{path}: {} series, {samples} samples", series.len());

    let base = Variant {
        name: "",
        values: Values::Split(Encoding::DELTA_BINARY_PACKED),
        timestamp: Encoding::DELTA_BINARY_PACKED,
        zstd: Some(3),
        page_rows: 20_000,
        page_bytes: 1 << 20,
        row_group_rows: 1 << 20,
        dbp: (256, 4),
    };
    let mut variants = vec![
        Variant {
            name: "float BSS, zstd 3",
            values: Values::Float(Encoding::BYTE_STREAM_SPLIT),
            ..base.clone()
        },
        Variant {
            name: "float PLAIN, zstd 3",
            values: Values::Float(Encoding::PLAIN),
            ..base.clone()
        },
        Variant {
            name: "float BSS, no compression",
            zstd: None,
            values: Values::Float(Encoding::BYTE_STREAM_SPLIT),
            ..base.clone()
        },
        Variant {
            name: "split DBP, zstd 3",
            ..base.clone()
        },
        Variant {
            name: "split DBP, timestamps PLAIN",
            timestamp: Encoding::PLAIN,
            ..base.clone()
        },
        Variant {
            name: "split DBP, block 128/4",
            dbp: (128, 4),
            ..base.clone()
        },
        Variant {
            name: "split DBP, block 1024/8",
            dbp: (1024, 8),
            ..base.clone()
        },
        Variant {
            name: "split DBP, block 128/1",
            dbp: (128, 1),
            ..base.clone()
        },
        Variant {
            name: "split DBP, block 128/2",
            dbp: (128, 2),
            ..base.clone()
        },
        Variant {
            name: "split int BSS",
            values: Values::Split(Encoding::BYTE_STREAM_SPLIT),
            ..base.clone()
        },
        Variant {
            name: "split delta-in-series (PLAIN ints)",
            values: Values::SplitDelta,
            ..base.clone()
        },
    ];
    let tuned = Variant {
        dbp: (128, 4),
        page_rows: 100_000,
        page_bytes: 8 << 20,
        ..base.clone()
    };
    variants.push(Variant {
        name: "tuned: 128/4, page 100k",
        ..tuned.clone()
    });
    variants.push(Variant {
        name: "tuned, float PLAIN",
        values: Values::SplitFloatPlain,
        ..tuned.clone()
    });
    variants.push(Variant {
        name: "tuned, zstd 9",
        zstd: Some(9),
        ..tuned.clone()
    });
    variants.push(Variant {
        name: "tuned, zstd 15",
        zstd: Some(15),
        ..tuned.clone()
    });
    variants.push(Variant {
        name: "tuned, page 1M",
        page_rows: 1_000_000,
        ..tuned.clone()
    });
    variants.push(Variant {
        name: "tuned, page 32k",
        page_rows: 32_768,
        ..tuned.clone()
    });
    if std::env::var_os("ONLY_TUNED").is_some() {
        variants.retain(|v| v.name.starts_with("tuned"));
    }
    for level in [1, 9, 15, 19, 22] {
        variants.push(Variant {
            name: "split DBP, zstd level",
            zstd: Some(level),
            ..base.clone()
        });
    }
    for rows in [8_192, 100_000, 1_000_000] {
        variants.push(Variant {
            name: "split DBP, page rows",
            page_rows: rows,
            page_bytes: 8 << 20,
            ..base.clone()
        });
    }
    for rows in [65_536, 262_144] {
        variants.push(Variant {
            name: "split DBP, row group rows",
            row_group_rows: rows,
            ..base.clone()
        });
    }
    for v in &variants {
        let started = std::time::Instant::now();
        let bytes = write(&series, v);
        eprintln!("    write took {:?}", started.elapsed());
        println!(
            "{:<40} zstd {:>4} page_rows {:>8} rg_rows {:>8} dbp {:?}: {:>9} bytes, {:.4} bytes/sample",
            v.name,
            v.zstd.map_or("-".to_string(), |l| l.to_string()),
            v.page_rows,
            v.row_group_rows,
            v.dbp,
            bytes,
            bytes as f64 / samples as f64
        );
    }
}

fn load(path: &str) -> BTreeMap<Labels, Vec<Sample>> {
    let mut child = None;
    let reader: Box<dyn std::io::Read> = if path.ends_with(".gz") {
        let mut c = Command::new("gzip")
            .args(["-dc", path])
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        let out = c.stdout.take().expect("stdout");
        child = Some(c);
        Box::new(out)
    } else {
        Box::new(std::fs::File::open(path).expect("open"))
    };
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for r in Parser::new(BufReader::with_capacity(1 << 20, reader), Format::Detect, 0) {
        let (labels, sample) = r.expect("parse");
        series.entry(labels).or_default().push(sample);
    }
    if let Some(mut c) = child {
        c.wait().expect("gzip");
    }
    series
}

/// The smallest power of ten that makes `v` an integer of at most 2^53, with a bit-exact way
/// back (`m / 10^k`), or None.
fn decimal(v: f64) -> Option<(i64, u8)> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    for (k, p) in POW10.iter().enumerate() {
        let m = (v * p).round();
        if m.abs() > 9007199254740992.0 {
            return None;
        }
        if (m / p).to_bits() == v.to_bits() {
            return Some((m as i64, k as u8));
        }
    }
    None
}

fn write(series: &BTreeMap<Labels, Vec<Sample>>, v: &Variant) -> usize {
    let int_type = DataType::Int64;
    let schema = Arc::new(Schema::new(match v.values {
        Values::Float(_) => vec![
            Field::new("series_id", DataType::UInt32, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
        ],
        Values::Split(_) | Values::SplitDelta | Values::SplitFloatPlain => vec![
            Field::new("series_id", DataType::UInt32, false),
            Field::new("timestamp", DataType::Int64, false),
            Field::new("value_int", int_type, true),
            Field::new("value_scale", DataType::UInt8, false),
            Field::new("value_float", DataType::Float64, true),
        ],
    }));
    let mut props = WriterProperties::builder()
        .set_compression(match v.zstd {
            Some(l) => Compression::ZSTD(ZstdLevel::try_new(l).unwrap()),
            None => Compression::UNCOMPRESSED,
        })
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(v.page_rows)
        .set_data_page_size_limit(v.page_bytes)
        .set_max_row_group_row_count(Some(v.row_group_rows))
        .set_delta_binary_packed_encoder_options(DeltaBinaryPackedEncoderOptions::try_new(v.dbp.0, v.dbp.1).unwrap())
        .set_column_encoding(ColumnPath::from("series_id"), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(ColumnPath::from("timestamp"), v.timestamp)
        .set_column_dictionary_enabled(ColumnPath::from("value_scale"), true);
    props = match v.values {
        Values::Float(e) => props.set_column_encoding(ColumnPath::from("value"), e),
        Values::Split(e) => props
            .set_column_encoding(ColumnPath::from("value_int"), e)
            .set_column_encoding(ColumnPath::from("value_float"), Encoding::BYTE_STREAM_SPLIT),
        Values::SplitFloatPlain => props
            .set_column_encoding(ColumnPath::from("value_int"), Encoding::DELTA_BINARY_PACKED)
            .set_column_encoding(ColumnPath::from("value_float"), Encoding::PLAIN),
        Values::SplitDelta => props
            .set_column_encoding(ColumnPath::from("value_int"), Encoding::PLAIN)
            .set_column_encoding(ColumnPath::from("value_float"), Encoding::BYTE_STREAM_SPLIT),
    };
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), Some(props.build())).unwrap();
    let (mut ids, mut ts, mut vals, mut ints, mut scales, mut floats) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let flush = |w: &mut ArrowWriter<&mut Vec<u8>>,
                 ids: &mut Vec<u32>,
                 ts: &mut Vec<i64>,
                 vals: &mut Vec<f64>,
                 ints: &mut Vec<Option<i64>>,
                 scales: &mut Vec<u8>,
                 floats: &mut Vec<Option<f64>>| {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(std::mem::take(ids))),
            Arc::new(Int64Array::from(std::mem::take(ts))),
        ];
        match v.values {
            Values::Float(_) => cols.push(Arc::new(Float64Array::from(std::mem::take(vals)))),
            _ => {
                cols.push(Arc::new(Int64Array::from(std::mem::take(ints))));
                cols.push(Arc::new(UInt8Array::from(std::mem::take(scales))));
                cols.push(Arc::new(Float64Array::from(std::mem::take(floats))));
            }
        }
        w.write(&RecordBatch::try_new(schema.clone(), cols).unwrap()).unwrap();
    };
    for (id, samples) in series.values().enumerate() {
        // The series' scale: the one that represents the most values exactly.
        let mut counts = [0usize; 23];
        for s in samples {
            if let Some((_, k)) = decimal(s.value) {
                counts[k as usize] += 1;
            }
        }
        let mut best = (0, 0);
        let mut cum = 0;
        for (k, c) in counts.iter().enumerate() {
            cum += c;
            if cum > best.1 {
                best = (k, cum);
            }
        }
        let scale = best.0 as u8;
        let mut prev = 0i64;
        for s in samples {
            ids.push(id as u32);
            ts.push(s.timestamp_ms);
            vals.push(s.value);
            scales.push(scale);
            let as_int = decimal(s.value).and_then(|(m, k)| {
                if k > scale {
                    return None;
                }
                let m = m.checked_mul(10i64.pow(u32::from(scale - k)))?;
                (m.abs() <= 1 << 53).then_some(m)
            });
            match (as_int, v.values) {
                (Some(m), Values::SplitDelta) => {
                    ints.push(Some(m - prev));
                    prev = m;
                    floats.push(None);
                }
                (Some(m), _) => {
                    ints.push(Some(m));
                    floats.push(None);
                }
                (None, _) => {
                    ints.push(None);
                    floats.push(Some(s.value));
                }
            }
        }
        if ids.len() >= 65_536 {
            flush(
                &mut w,
                &mut ids,
                &mut ts,
                &mut vals,
                &mut ints,
                &mut scales,
                &mut floats,
            );
        }
    }
    if !ids.is_empty() {
        flush(
            &mut w,
            &mut ids,
            &mut ts,
            &mut vals,
            &mut ints,
            &mut scales,
            &mut floats,
        );
    }
    let meta = w.close().unwrap();
    let mut per_column = vec![0i64; schema.fields().len()];
    for rg in meta.row_groups() {
        for (i, c) in rg.columns().iter().enumerate() {
            per_column[i] += c.compressed_size();
        }
    }
    let names: Vec<String> = schema
        .fields()
        .iter()
        .zip(&per_column)
        .map(|(f, b)| format!("{}={b}", f.name()))
        .collect();
    eprintln!("    columns: {}", names.join(" "));
    out.len()
}
