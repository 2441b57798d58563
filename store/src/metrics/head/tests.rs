use tidewatch_model::{BatchRange, MatchOp};

use super::*;
use crate::metrics::wal::{Wal, WalOptions, replay};

const HOUR: i64 = 3_600_000;

fn options() -> HeadOptions {
    HeadOptions {
        block_range_ms: 2 * HOUR,
        out_of_order_window_ms: 0,
        limits: HeadLimits::default(),
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    wal: Wal,
    head: Head,
}

fn fixture(options: HeadOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(
        dir.path(),
        WalOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap();
    Fixture {
        _dir: dir,
        wal,
        head: Head::new(options, i64::MIN),
    }
}

fn write<'a>(series: &'a [(Vec<(&'a str, &'a str)>, Vec<(i64, f64)>)]) -> WriteBatch<'a> {
    let mut b = WriteBatch::default();
    for (labels, samples) in series {
        b.push(labels.iter().copied(), samples.iter().copied());
    }
    b
}

fn up(job: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![("__name__", "up"), ("job", job)]
}

#[test]
fn appends_select_and_index_by_every_matcher_kind() {
    let mut f = fixture(options());
    let data = vec![
        (up("a"), vec![(1000, 1.0), (2000, 2.0)]),
        (up("b"), vec![(1000, 3.0)]),
        (vec![("__name__", "x"), ("job", "a")], vec![(1500, 9.0)]),
    ];
    let out = f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    assert_eq!((out.accepted, out.refused_count(), out.new_series), (4, 0, 3));
    let m = |n: &str, op, v: &str| Matcher::new(n, op, v).unwrap();
    assert_eq!(f.head.select(&[m("__name__", MatchOp::Equal, "up")], 0, 5000).len(), 2);
    assert_eq!(f.head.select(&[m("job", MatchOp::Equal, "a")], 0, 5000).len(), 2);
    assert_eq!(f.head.select(&[m("job", MatchOp::NotEqual, "a")], 0, 5000).len(), 1);
    assert_eq!(
        f.head.select(&[m("__name__", MatchOp::Regex, "u.|x")], 0, 5000).len(),
        3
    );
    assert_eq!(
        f.head.select(&[m("__name__", MatchOp::NotRegex, "u.")], 0, 5000).len(),
        1
    );
    assert_eq!(f.head.select(&[m("missing", MatchOp::Equal, "")], 0, 5000).len(), 3);
    let a = f.head.select(
        &[m("__name__", MatchOp::Equal, "up"), m("job", MatchOp::Equal, "a")],
        1500,
        5000,
    );
    assert_eq!(
        a[0].samples,
        vec![Sample {
            timestamp_ms: 2000,
            value: 2.0
        }]
    );
    assert_eq!(f.head.label_values("job", &[]), vec!["a", "b"]);
    assert_eq!(
        f.head.label_names(&[m("__name__", MatchOp::Equal, "x")]),
        vec!["__name__", "job"]
    );
}

#[test]
fn out_of_order_duplicates_and_bad_labels_are_refused_but_the_rest_is_kept() {
    let mut f = fixture(options());
    let data = vec![(up("a"), vec![(2000, 1.0)])];
    f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    let data = vec![
        (up("a"), vec![(1000, 1.0), (2000, 1.0), (2000, 5.0), (3000, 2.0)]),
        (vec![("job", "no-name")], vec![(1000, 1.0)]),
        (vec![("__name__", "y"), ("bad-name", "v")], vec![(1000, 1.0)]),
        (vec![("__name__", "z"), ("a", "1"), ("a", "2")], vec![(1000, 1.0)]),
    ];
    let out = f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    // 2000/1.0 repeats the stored sample and counts as accepted; 3000 is new.
    assert_eq!(out.accepted, 2);
    let kinds: Vec<Refusal> = out.refused.iter().map(|r| r.0).collect();
    assert!(
        kinds.contains(&Refusal::OutOfOrder)
            && kinds.contains(&Refusal::DuplicateTimestamp)
            && kinds.contains(&Refusal::InvalidLabels),
        "{:?}",
        out.refused
    );
    assert_eq!(out.refused_count(), 5);
    assert_eq!(
        f.head.select(&[Matcher::equal("job", "a")], 0, 9999)[0].samples.len(),
        2
    );
}

#[test]
fn the_out_of_order_window_accepts_late_samples_in_time_order() {
    let mut f = fixture(HeadOptions {
        out_of_order_window_ms: 10_000,
        ..options()
    });
    let data = vec![(up("a"), vec![(10_000, 1.0), (20_000, 2.0)])];
    f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    let late = vec![(up("a"), vec![(15_000, 1.5), (5_000, 0.5)])];
    let out = f.head.append(&write(&late), None, None, &mut f.wal).unwrap();
    assert_eq!(out.accepted, 1, "{:?}", out.refused);
    let ts: Vec<i64> = f.head.select(&[], 0, 99_999)[0]
        .samples
        .iter()
        .map(|s| s.timestamp_ms)
        .collect();
    assert_eq!(ts, vec![10_000, 15_000, 20_000]);
}

#[test]
fn limits_refuse_what_is_over_them() {
    let limits = HeadLimits {
        max_active_series: 2,
        max_labels_per_series: 3,
        max_label_name_length: 8,
        max_label_value_length: 8,
    };
    let mut f = fixture(HeadOptions { limits, ..options() });
    let data = vec![
        (up("a"), vec![(1, 1.0)]),
        (up("b"), vec![(1, 1.0)]),
        (up("c"), vec![(1, 1.0)]),
        (vec![("__name__", "up"), ("job", "a-very-long-value")], vec![(1, 1.0)]),
        (
            vec![("__name__", "up"), ("a", "1"), ("b", "2"), ("c", "3")],
            vec![(1, 1.0)],
        ),
    ];
    let out = f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    assert_eq!(out.accepted, 2);
    assert_eq!(f.head.num_series(), 2);
    let reasons: Vec<_> = out.refused.iter().map(|(r, n, _)| (*r, *n)).collect();
    assert!(
        reasons.contains(&(Refusal::SeriesLimit, 1)) && reasons.contains(&(Refusal::LabelLimit, 2)),
        "{reasons:?}"
    );
    assert!(out.refused.iter().any(|(_, _, e)| e.contains("max_active_series")));
}

#[test]
fn delivery_headers_drop_what_was_applied_and_the_marks_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(
        dir.path(),
        WalOptions {
            fsync: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut head = Head::new(options(), i64::MIN);
    let data = vec![(up("a"), vec![(1000, 1.0), (2000, 2.0)]), (up("b"), vec![(1000, 3.0)])];
    let batch = write(&data);
    let header = BatchHeader {
        ranges: vec![BatchRange {
            source: "agent/x".into(),
            first: 1,
            last: 3,
        }],
    };
    let keep = head.marks().plan(&header, batch.samples.len()).unwrap();
    head.append(&batch, Some(&keep), Some(&header), &mut wal).unwrap();
    // The same batch again: nothing applies, nothing changes.
    let keep = head.marks().plan(&header, batch.samples.len()).unwrap();
    assert!(keep.is_empty());
    let out = head.append(&batch, Some(&keep), Some(&header), &mut wal).unwrap();
    assert_eq!(out.accepted, 0);
    // An overlapping re-chunked batch: records 3..=4, of which 4 is new.
    let data2 = vec![(up("b"), vec![(1000, 3.0), (2000, 4.0)])];
    let batch2 = write(&data2);
    let header2 = BatchHeader {
        ranges: vec![BatchRange {
            source: "agent/x".into(),
            first: 3,
            last: 4,
        }],
    };
    let keep2 = head.marks().plan(&header2, 2).unwrap();
    assert_eq!(keep2, vec![1..2]);
    head.append(&batch2, Some(&keep2), Some(&header2), &mut wal).unwrap();
    wal.close();

    let mut replayed = Head::new(options(), i64::MIN);
    replay(dir.path(), |_, r| {
        replayed.replay(r);
    })
    .unwrap();
    assert_eq!(replayed.marks().mark("agent/x"), 4);
    assert_eq!(replayed.select(&[], 0, 9999), head.select(&[], 0, 9999));
    assert_eq!(
        replayed
            .select(&[], 0, 9999)
            .iter()
            .map(|s| s.samples.len())
            .sum::<usize>(),
        4
    );
}

#[test]
fn truncation_drops_old_chunks_and_empty_series_and_refuses_older_writes() {
    let mut f = fixture(options());
    let samples: Vec<(i64, f64)> = (0..600).map(|i| (i * 30_000, i as f64)).collect(); // 5 hours
    let data = vec![(up("a"), samples), (up("old"), vec![(1000, 1.0)])];
    f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    let block: Vec<_> = f.head.collect(0, 2 * HOUR).into_iter().map(|c| c.decode()).collect();
    assert_eq!(block.len(), 2);
    assert_eq!(block.iter().map(|(_, s)| s.len()).sum::<usize>(), 240 + 1);
    assert_eq!(f.head.truncate(2 * HOUR), 1);
    assert_eq!(f.head.num_series(), 1);
    let left = f.head.select(&[], i64::MIN, i64::MAX);
    assert_eq!(left[0].samples.first().unwrap().timestamp_ms, 2 * HOUR);
    assert_eq!(left[0].samples.len(), 360);
    let late = vec![(up("a"), vec![(1000, 1.0)])];
    let out = f.head.append(&write(&late), None, None, &mut f.wal).unwrap();
    assert_eq!(out.refused[0].0, Refusal::OutOfBounds);
    assert!(f.head.label_values("job", &[]) == vec!["a"]);
}

#[test]
fn a_full_segment_rotates_and_the_new_one_declares_series_and_marks_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(
        dir.path(),
        WalOptions {
            fsync: false,
            segment_bytes: 1,
            sync_hook: None,
        },
    )
    .unwrap();
    let mut head = Head::new(options(), i64::MIN);
    for i in 0..3 {
        let data = vec![(up("a"), vec![(1000 * (i + 1), 1.0)])];
        let batch = write(&data);
        let header = BatchHeader {
            ranges: vec![BatchRange {
                source: "s".into(),
                first: i as u64 + 1,
                last: i as u64 + 1,
            }],
        };
        let keep = head.marks().plan(&header, 1).unwrap();
        head.append(&batch, Some(&keep), Some(&header), &mut wal).unwrap();
    }
    wal.close();
    // Keep only the last segment: it alone must restore the series, its sample and the mark.
    let segs = crate::metrics::wal::segments(dir.path()).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    for (_, p) in &segs[..segs.len() - 1] {
        std::fs::remove_file(p).unwrap();
    }
    let mut replayed = Head::new(options(), i64::MIN);
    replay(dir.path(), |_, r| {
        replayed.replay(r);
    })
    .unwrap();
    assert_eq!(replayed.marks().mark("s"), 3);
    assert_eq!(
        replayed.select(&[], 0, 9999)[0].samples,
        vec![Sample {
            timestamp_ms: 3000,
            value: 1.0
        }]
    );
}

#[test]
fn stats_count_cardinality_as_prometheus_reports_it() {
    let mut f = fixture(options());
    let data = vec![
        (up("a"), vec![(1000, 1.0)]),
        (up("bb"), vec![(3000, 1.0)]),
        (vec![("__name__", "x"), ("job", "a")], vec![(2000, 9.0)]),
    ];
    f.head.append(&write(&data), None, None, &mut f.wal).unwrap();
    let s = f.head.stats(10);
    assert_eq!((s.num_series, s.num_label_pairs, s.chunk_count), (3, 4, 3));
    assert_eq!((s.min_time, s.max_time), (1000, 3000));
    assert_eq!(
        s.series_count_by_metric_name,
        [("up".to_string(), 2), ("x".to_string(), 1)]
    );
    assert_eq!(
        s.label_value_count_by_label_name,
        [("__name__".to_string(), 2), ("job".to_string(), 2)]
    );
    assert_eq!(
        s.memory_in_bytes_by_label_name,
        [("__name__".to_string(), 3), ("job".to_string(), 3)]
    );
    // Ties in count are ordered by name.
    assert_eq!(
        s.series_count_by_label_value_pair[..2],
        [("__name__=up".to_string(), 2), ("job=a".to_string(), 2)]
    );
    assert_eq!(f.head.stats(1).series_count_by_label_value_pair.len(), 1);
}
