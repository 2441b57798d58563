//! Turns a batch into a request body and its `Tidewatch-Batch` header.
//!
//! The header's ranges must cover the records in wire order, so the body is built from the
//! header's point of view: entries are grouped by source (first appearance order), each
//! source's records go out consecutively, and its range is `first..=last` over its entries
//! (consecutive, because the buffer numbers a source's entries in append order).

use std::collections::HashMap;

use tidewatch_model::{BatchHeader, BatchRange};

use crate::buffer::Entry;

/// A request ready to send.
pub(crate) struct Encoded {
    /// Snappy-compressed protobuf.
    pub body: Vec<u8>,
    /// The `Tidewatch-Batch` header.
    pub header: BatchHeader,
    /// Records in the batch.
    pub records: u64,
}

/// Entries grouped by source, in order of first appearance.
fn by_source(entries: &[Entry]) -> Vec<Vec<&Entry>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<&Entry>> = Vec::new();
    for e in entries {
        let i = *index.entry(&e.source).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(e);
    }
    groups
}

fn ranges(groups: &[Vec<&Entry>]) -> BatchHeader {
    let mut header = BatchHeader::default();
    for g in groups {
        let mut first = g[0].first_seq;
        let mut last = g[0].last_seq();
        for e in &g[1..] {
            if e.first_seq == last + 1 {
                last = e.last_seq();
            } else {
                // Not expected (a source's numbers are consecutive in the buffer), but a gap
                // must not make the header claim records the body lacks.
                header.ranges.push(BatchRange {
                    source: g[0].source.clone(),
                    first,
                    last,
                });
                first = e.first_seq;
                last = e.last_seq();
            }
        }
        header.ranges.push(BatchRange {
            source: g[0].source.clone(),
            first,
            last,
        });
    }
    header
}

/// The request body: the entries' wire bytes grouped by source, as one Loki `PushRequest` or
/// remote_write `WriteRequest` (both are repeated field 1 of what the entries hold), snappy
/// compressed.
pub(crate) fn encode(entries: &[Entry]) -> Encoded {
    let groups = by_source(entries);
    let mut raw = Vec::with_capacity(entries.iter().map(|e| e.wire.len()).sum());
    let mut records = 0u64;
    for e in groups.iter().flatten() {
        raw.extend_from_slice(&e.wire);
        records += e.records;
    }
    Encoded {
        body: snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default(),
        header: ranges(&groups),
        records,
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use tidewatch_model::loki_push::PushRequest;
    use tidewatch_model::remote_write::WriteRequest;
    use tidewatch_model::{Labels, Sample, Series};

    use super::*;
    use crate::buffer::Payload;

    fn entry(source: &str, first: u64, payload: Payload) -> Entry {
        let mut frame = Vec::new();
        crate::buffer::codec::encode(source, "", &payload, &mut frame);
        let mut e = crate::buffer::codec::decode(&frame).unwrap();
        e.first_seq = first;
        e
    }

    fn logs(source: &str, first: u64, labels: &str, lines: &[&str]) -> Entry {
        let payload = Payload::Logs {
            labels: Labels::from_pairs([("stream", labels)]),
            lines: lines.iter().map(|l| (1_500_000_001, l.to_string())).collect(),
        };
        entry(source, first, payload)
    }

    #[test]
    fn header_ranges_follow_the_wire_order() {
        let entries = [
            logs("a", 1, "x", &["a1", "a2"]),
            logs("b", 7, "y", &["b7"]),
            logs("a", 3, "x", &["a3"]),
            logs("a", 4, "renamed", &["a4"]),
        ];
        let enc = encode(&entries);
        assert_eq!(enc.header.to_string(), "a=1-4;b=7-7");
        assert_eq!(enc.records, 5);
        let raw = snap::raw::Decoder::new().decompress_vec(&enc.body).unwrap();
        let req = PushRequest::decode(raw.as_slice()).unwrap();
        let wire: Vec<&str> = req
            .streams
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| e.line.as_str()))
            .collect();
        assert_eq!(wire, ["a1", "a2", "a3", "a4", "b7"]);
        let labels: Vec<&str> = req.streams.iter().map(|s| s.labels.as_str()).collect();
        assert_eq!(
            labels,
            [
                r#"{stream="x"}"#,
                r#"{stream="x"}"#,
                r#"{stream="renamed"}"#,
                r#"{stream="y"}"#
            ]
        );
        let ts = req.streams[0].entries[0].timestamp.unwrap();
        assert_eq!((ts.seconds, ts.nanos), (1, 500_000_001));
    }

    #[test]
    fn metric_entries_concatenate_into_one_write_request() {
        let series = |name: &str, samples: &[(i64, f64)]| Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "j\"q")]),
            samples: samples
                .iter()
                .map(|&(timestamp_ms, value)| Sample { timestamp_ms, value })
                .collect(),
        };
        let entries = [
            entry(
                "m",
                1,
                Payload::Metrics(vec![series("up", &[(-5, 1.0)]), series("none", &[])]),
            ),
            entry(
                "m",
                2,
                Payload::Metrics(vec![series("x", &[(1_700_000_000_000, f64::NAN), (2, -0.5)])]),
            ),
        ];
        let enc = encode(&entries);
        assert_eq!((enc.header.to_string().as_str(), enc.records), ("m=1-3", 3));
        let raw = snap::raw::Decoder::new().decompress_vec(&enc.body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        let names: Vec<&str> = req.timeseries.iter().map(|t| t.labels[0].value.as_str()).collect();
        assert_eq!(names, ["up", "x"], "a series without samples is left out");
        assert_eq!(req.timeseries[0].labels[1].value, "j\"q");
        assert_eq!(
            (
                req.timeseries[0].samples[0].timestamp,
                req.timeseries[0].samples[0].value
            ),
            (-5, 1.0)
        );
        let s = &req.timeseries[1].samples;
        assert!(s[0].value.is_nan());
        assert_eq!(
            (s[0].timestamp, s[1].timestamp, s[1].value),
            (1_700_000_000_000, 2, -0.5)
        );
    }
}
