//! Loki's push API: the protobuf messages (`logproto.PushRequest`), and the encoder the
//! shipper uses. Decoding lives with the store, which also accepts Loki's JSON form.
//!
//! Hand-written `prost` derives, as for remote_write: three small messages do not justify a
//! protoc build step.

use prost::Message;

use crate::{Labels, LogRecord};

/// `logproto.PushRequest` (grafana/loki pkg/push/push.proto).
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// The labels as LogQL writes them: `{job="x", node="y"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// The sender's hash of the labels (ignored).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Timestamp {
    /// Seconds since the epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.EntryAdapter` (structured metadata, field 3, is skipped).
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    /// When.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
}

/// Writes labels as Loki's stream selector syntax: `{name="value", ...}` with Go string escapes.
pub fn format_labels(labels: &Labels) -> String {
    let mut out = String::with_capacity(16 * labels.len());
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&l.name);
        out.push_str("=\"");
        for c in l.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// Builds a push request from records, one stream per distinct label set, keeping the records'
/// order within each stream (the order the delivery contract numbers them in).
pub fn push_request(records: &[LogRecord]) -> PushRequest {
    let mut streams: Vec<StreamAdapter> = Vec::new();
    let mut index: std::collections::HashMap<&Labels, usize> = std::collections::HashMap::new();
    for r in records {
        let i = *index.entry(&r.labels).or_insert_with(|| {
            streams.push(StreamAdapter {
                labels: format_labels(&r.labels),
                entries: Vec::new(),
                hash: 0,
            });
            streams.len() - 1
        });
        streams[i].entries.push(EntryAdapter {
            timestamp: Some(Timestamp {
                seconds: r.timestamp_ns.div_euclid(1_000_000_000),
                nanos: r.timestamp_ns.rem_euclid(1_000_000_000) as i32,
            }),
            line: r.line.clone(),
        });
    }
    PushRequest { streams }
}

/// Encodes records as a snappy-compressed protobuf body, ready for `POST /loki/api/v1/push`
/// with `Content-Type: application/x-protobuf`.
pub fn encode_push(records: &[LogRecord]) -> Vec<u8> {
    let raw = push_request(records).encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input that fits in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_group_records_and_keep_their_order() {
        let a = Labels::from_pairs([("job", "a")]);
        let b = Labels::from_pairs([("job", "b\"q")]);
        let rec = |l: &Labels, ns: i64, line: &str| LogRecord {
            timestamp_ns: ns,
            labels: l.clone(),
            line: line.into(),
        };
        let req = push_request(&[rec(&a, 1_500_000_000, "1"), rec(&b, 2, "2"), rec(&a, 3, "3")]);
        assert_eq!(req.streams.len(), 2);
        assert_eq!(req.streams[0].labels, r#"{job="a"}"#);
        assert_eq!(req.streams[1].labels, r#"{job="b\"q"}"#);
        let lines: Vec<_> = req.streams[0].entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["1", "3"]);
        let t = req.streams[0].entries[0].timestamp.unwrap();
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
        let body = encode_push(&[rec(&a, 1, "x")]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(
            PushRequest::decode(raw.as_slice()).unwrap().streams[0].entries[0].line,
            "x"
        );
    }
}
