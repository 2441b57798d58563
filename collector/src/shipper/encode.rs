//! Turns a batch into a request body and its `Tidewatch-Batch` header.
//!
//! The header's ranges must cover the records in wire order, so the body is built from the
//! header's point of view: entries are grouped by source (first appearance order), each
//! source's records go out consecutively, and its range is `first..=last` over its entries
//! (consecutive, because the buffer numbers a source's entries in append order).

use std::collections::HashMap;

use prost::Message;
use tidewatch_model::loki_push::{self, EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use tidewatch_model::remote_write::{self, TimeSeries, WriteRequest};
use tidewatch_model::{BatchHeader, BatchRange};

use crate::buffer::{Entry, Payload};

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

/// A Loki push request; one stream per run of a source's entries with the same labels.
pub(crate) fn logs(entries: &[Entry]) -> Encoded {
    let groups = by_source(entries);
    let mut req = PushRequest { streams: Vec::new() };
    let mut records = 0u64;
    for g in &groups {
        let mut current: Option<(&tidewatch_model::Labels, usize)> = None;
        for e in g {
            let Payload::Logs { labels, lines } = &e.payload else {
                continue;
            };
            let i = match current {
                Some((l, i)) if l == labels => i,
                _ => {
                    req.streams.push(StreamAdapter {
                        labels: loki_push::format_labels(labels),
                        entries: Vec::new(),
                        hash: 0,
                    });
                    req.streams.len() - 1
                }
            };
            current = Some((labels, i));
            for (ts, line) in lines {
                req.streams[i].entries.push(EntryAdapter {
                    timestamp: Some(Timestamp {
                        seconds: ts.div_euclid(1_000_000_000),
                        nanos: ts.rem_euclid(1_000_000_000) as i32,
                    }),
                    line: line.clone(),
                });
                records += 1;
            }
        }
    }
    let raw = req.encode_to_vec();
    Encoded {
        body: snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default(),
        header: ranges(&groups),
        records,
    }
}

/// A remote_write 1.0 request; every sample of every series of every entry, in order.
pub(crate) fn metrics(entries: &[Entry]) -> Encoded {
    let groups = by_source(entries);
    let mut req = WriteRequest {
        timeseries: Vec::new(),
        metadata: Vec::new(),
    };
    let mut records = 0u64;
    for g in &groups {
        for e in g {
            let Payload::Metrics(series) = &e.payload else { continue };
            for s in series.iter().filter(|s| !s.samples.is_empty()) {
                records += s.samples.len() as u64;
                req.timeseries.push(TimeSeries {
                    labels: s
                        .labels
                        .iter()
                        .map(|l| remote_write::Label {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect(),
                    samples: s
                        .samples
                        .iter()
                        .map(|x| remote_write::Sample {
                            value: x.value,
                            timestamp: x.timestamp_ms,
                        })
                        .collect(),
                });
            }
        }
    }
    Encoded {
        body: req.to_snappy(),
        header: ranges(&groups),
        records,
    }
}

#[cfg(test)]
mod tests {
    use tidewatch_model::Labels;

    use super::*;

    fn entry(source: &str, first: u64, labels: &str, lines: &[&str]) -> Entry {
        Entry {
            source: source.into(),
            first_seq: first,
            checkpoint: String::new(),
            payload: Payload::Logs {
                labels: Labels::from_pairs([("stream", labels)]),
                lines: lines.iter().map(|l| (1, l.to_string())).collect(),
            },
        }
    }

    #[test]
    fn header_ranges_follow_the_wire_order() {
        let entries = [
            entry("a", 1, "x", &["a1", "a2"]),
            entry("b", 7, "y", &["b7"]),
            entry("a", 3, "x", &["a3"]),
            entry("a", 4, "renamed", &["a4"]),
        ];
        let enc = logs(&entries);
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
        assert_eq!(req.streams.len(), 3, "a label change starts a new stream");
    }
}
