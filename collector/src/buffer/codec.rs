//! The bytes of one buffer entry. Hand-written because the header fields (source, sequence
//! numbers, checkpoint) must be readable without decoding the payload when the buffer is
//! scanned at start, and because it is the hot path of the agent's footprint figure.
//!
//! ```text
//! u8 kind (3 logs, 4 metrics) | str source | u64 first_seq | u64 count | str checkpoint | wire
//! str: u32 length | UTF-8 bytes; integers little-endian
//! ```
//! `wire` is the records already in the protobuf the shipper sends: field 1 of a Loki
//! `PushRequest` (one `StreamAdapter`) or of a remote_write `WriteRequest` (one `TimeSeries` per
//! series with samples). Repeated protobuf fields concatenate, so a request body is the entries'
//! wire bytes one after the other: the records are encoded once, when they are read, and never
//! decoded in the agent again.
//!
//! Buffers written before this format (kinds 1 and 2: labels and lines as length-prefixed
//! strings) are still read, and converted to wire bytes as they are.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tidewatch_model::loki_push;
use tidewatch_model::{Labels, Sample, Series};

use super::{Entry, Payload};

const KIND_LOGS_V1: u8 = 1;
const KIND_METRICS_V1: u8 = 2;
const KIND_LOGS: u8 = 3;
const KIND_METRICS: u8 = 4;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends an entry's header and wire bytes to `out` with `first_seq` 0 (the writer sets it
/// under its lock at this offset: `1 + 4 + source.len()`). Returns the record count.
pub(crate) fn encode(source: &str, checkpoint: &str, payload: &Payload, out: &mut Vec<u8>) -> u64 {
    let count = payload.count();
    out.push(match payload {
        Payload::Logs { .. } | Payload::EncodedLogs { .. } => KIND_LOGS,
        Payload::Metrics(_) => KIND_METRICS,
    });
    put_str(out, source);
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    put_str(out, checkpoint);
    encode_wire(payload, out);
    count
}

/// Appends the payload's records as protobuf (see the module comment).
pub(crate) fn encode_wire(payload: &Payload, out: &mut Vec<u8>) {
    match payload {
        Payload::Logs { labels, lines } => wire_logs(labels, lines, out),
        Payload::EncodedLogs { labels, lines } => {
            put_stream(labels, lines.bytes.len(), out);
            out.extend_from_slice(&lines.bytes);
        }
        Payload::Metrics(series) => series
            .iter()
            .filter(|s| !s.samples.is_empty())
            .for_each(|s| wire_series(s, out)),
    }
}

fn len_delimited(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_len_delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn timestamp_len(ts: i64) -> usize {
    let (seconds, nanos) = (ts.div_euclid(1_000_000_000), ts.rem_euclid(1_000_000_000));
    1 + encoded_len_varint(seconds as u64) + 1 + encoded_len_varint(nanos as u64)
}

fn entry_len(ts: i64, line: &str) -> usize {
    len_delimited(1, timestamp_len(ts)) + len_delimited(2, line.len())
}

/// `StreamAdapter.entries` (field 2): `EntryAdapter { timestamp = 1 { seconds = 1, nanos = 2 },
/// line = 2 }`.
fn put_entry(ts: i64, line: &str, out: &mut Vec<u8>) {
    encode_key(2, WireType::LengthDelimited, out);
    encode_varint(entry_len(ts, line) as u64, out);
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(timestamp_len(ts) as u64, out);
    encode_key(1, WireType::Varint, out);
    encode_varint(ts.div_euclid(1_000_000_000) as u64, out);
    encode_key(2, WireType::Varint, out);
    encode_varint(ts.rem_euclid(1_000_000_000) as u64, out);
    put_len_delimited(2, line.as_bytes(), out);
}

/// `PushRequest.streams` (field 1): one `StreamAdapter { labels = 1, entries = 2 }` whose
/// entries are already encoded.
fn put_stream(labels: &str, entries_len: usize, out: &mut Vec<u8>) {
    let stream_len = len_delimited(1, labels.len()) + entries_len;
    out.reserve(len_delimited(1, stream_len));
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(stream_len as u64, out);
    put_len_delimited(1, labels.as_bytes(), out);
}

fn wire_logs(labels: &Labels, lines: &[(i64, String)], out: &mut Vec<u8>) {
    let labels = loki_push::format_labels(labels);
    let entries_len = lines
        .iter()
        .map(|(ts, line)| len_delimited(2, entry_len(*ts, line)))
        .sum::<usize>();
    put_stream(&labels, entries_len, out);
    for (ts, line) in lines {
        put_entry(*ts, line, out);
    }
}

/// Log lines of one stream, encoded as Loki entries as they arrive: a follower writes each
/// line once, from the bytes Docker sent, and never keeps it as a `String` of its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedLines {
    bytes: Vec<u8>,
    count: u64,
}

impl EncodedLines {
    /// Room for `bytes` of entries before the first reallocation.
    pub fn with_capacity(bytes: usize) -> Self {
        EncodedLines {
            bytes: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Appends one line.
    pub fn push(&mut self, ts: i64, line: &str) {
        put_entry(ts, line, &mut self.bytes);
        self.count += 1;
    }

    /// How many lines.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes encoded so far (a little more than the lines' text).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The lines back, for tests.
    #[cfg(test)]
    pub(crate) fn decode(&self) -> Vec<(i64, String)> {
        // The entries alone are a valid `StreamAdapter` (field 2 repeated, nothing else).
        let stream = <loki_push::StreamAdapter as prost::Message>::decode(&self.bytes[..]).unwrap_or_default();
        stream
            .entries
            .into_iter()
            .map(|e| {
                let t = e.timestamp.unwrap_or_default();
                (t.seconds * 1_000_000_000 + t.nanos as i64, e.line)
            })
            .collect()
    }
}

/// `WriteRequest.timeseries` (field 1): `TimeSeries { labels = 1 { name = 1, value = 2 },
/// samples = 2 { value = 1 (double), timestamp = 2 } }`.
fn wire_series(series: &Series, out: &mut Vec<u8>) {
    let label_len = |name: &str, value: &str| len_delimited(1, name.len()) + len_delimited(2, value.len());
    let sample_len = |ts: i64| 1 + 8 + 1 + encoded_len_varint(ts as u64);
    let len = series
        .labels
        .iter()
        .map(|l| len_delimited(1, label_len(&l.name, &l.value)))
        .sum::<usize>()
        + series
            .samples
            .iter()
            .map(|s| len_delimited(2, sample_len(s.timestamp_ms)))
            .sum::<usize>();
    out.reserve(len_delimited(1, len));
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
    for l in series.labels.iter() {
        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(label_len(&l.name, &l.value) as u64, out);
        put_len_delimited(1, l.name.as_bytes(), out);
        put_len_delimited(2, l.value.as_bytes(), out);
    }
    for s in &series.samples {
        encode_key(2, WireType::LengthDelimited, out);
        encode_varint(sample_len(s.timestamp_ms) as u64, out);
        encode_key(1, WireType::SixtyFourBit, out);
        out.extend_from_slice(&s.value.to_bits().to_le_bytes());
        encode_key(2, WireType::Varint, out);
        encode_varint(s.timestamp_ms as u64, out);
    }
}

/// Why an entry's bytes do not decode (only possible if the checksum matched corrupt data).
#[derive(Debug, thiserror::Error)]
#[error("buffer entry does not decode: {0}")]
pub struct DecodeError(&'static str);

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or(DecodeError("truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError("string is not UTF-8"))
    }
    fn labels(&mut self) -> Result<Labels, DecodeError> {
        let n = self.u32()? as usize;
        let mut pairs = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            pairs.push((self.str()?, self.str()?));
        }
        Ok(Labels::from_pairs(pairs))
    }
}

/// What a scan needs: the entry's source, sequence numbers and checkpoint.
pub(crate) struct Header<'a> {
    pub source: &'a str,
    pub first_seq: u64,
    pub count: u64,
    pub checkpoint: &'a str,
}

pub(crate) fn decode_header(buf: &[u8]) -> Result<Header<'_>, DecodeError> {
    let mut c = Cursor { buf, pos: 0 };
    let kind = c.u8()?;
    if !matches!(kind, KIND_LOGS_V1 | KIND_METRICS_V1 | KIND_LOGS | KIND_METRICS) {
        return Err(DecodeError("unknown entry kind"));
    }
    Ok(Header {
        source: c.str()?,
        first_seq: c.u64()?,
        count: c.u64()?,
        checkpoint: c.str()?,
    })
}

pub(crate) fn decode(buf: &[u8]) -> Result<Entry, DecodeError> {
    let mut c = Cursor { buf, pos: 0 };
    let kind = c.u8()?;
    let source = c.str()?.to_string();
    let first_seq = c.u64()?;
    let records = c.u64()?;
    let checkpoint = c.str()?.to_string();
    let wire = match kind {
        KIND_LOGS | KIND_METRICS => buf[c.pos..].to_vec(),
        KIND_LOGS_V1 | KIND_METRICS_V1 => {
            let payload = decode_v1(kind, &mut c)?;
            if payload.count() != records {
                return Err(DecodeError("record count does not match the header"));
            }
            let mut wire = Vec::new();
            encode_wire(&payload, &mut wire);
            wire
        }
        _ => return Err(DecodeError("unknown entry kind")),
    };
    Ok(Entry {
        source,
        first_seq,
        records,
        checkpoint,
        wire,
    })
}

/// The payload of a frame written before entries carried wire bytes.
fn decode_v1(kind: u8, c: &mut Cursor<'_>) -> Result<Payload, DecodeError> {
    Ok(match kind {
        KIND_LOGS_V1 => {
            let labels = c.labels()?;
            let n = c.u32()? as usize;
            let mut lines = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let ts = c.u64()? as i64;
                lines.push((ts, c.str()?.to_string()));
            }
            Payload::Logs { labels, lines }
        }
        _ => {
            let n = c.u32()? as usize;
            let mut series = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let labels = c.labels()?;
                let m = c.u32()? as usize;
                let mut samples = Vec::with_capacity(m.min(1 << 16));
                for _ in 0..m {
                    let timestamp_ms = c.u64()? as i64;
                    let value = f64::from_bits(c.u64()?);
                    samples.push(Sample { timestamp_ms, value });
                }
                series.push(Series { labels, samples });
            }
            Payload::Metrics(series)
        }
    })
}

/// The old encoding, kept so the test of reading old buffers can write one.
#[cfg(test)]
pub(crate) fn encode_v1(source: &str, first_seq: u64, checkpoint: &str, payload: &Payload) -> Vec<u8> {
    fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
        out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
        for l in labels.iter() {
            put_str(out, &l.name);
            put_str(out, &l.value);
        }
    }
    let mut out = Vec::new();
    out.push(match payload {
        Payload::Logs { .. } => KIND_LOGS_V1,
        Payload::Metrics(_) => KIND_METRICS_V1,
        Payload::EncodedLogs { .. } => unreachable!("entries of the old format never held encoded lines"),
    });
    put_str(&mut out, source);
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&payload.count().to_le_bytes());
    put_str(&mut out, checkpoint);
    match payload {
        Payload::Logs { labels, lines } => {
            put_labels(&mut out, labels);
            out.extend_from_slice(&(lines.len() as u32).to_le_bytes());
            for (ts, line) in lines {
                out.extend_from_slice(&ts.to_le_bytes());
                put_str(&mut out, line);
            }
        }
        Payload::Metrics(series) => {
            out.extend_from_slice(&(series.len() as u32).to_le_bytes());
            for s in series {
                put_labels(&mut out, &s.labels);
                out.extend_from_slice(&(s.samples.len() as u32).to_le_bytes());
                for sample in &s.samples {
                    out.extend_from_slice(&sample.timestamp_ms.to_le_bytes());
                    out.extend_from_slice(&sample.value.to_bits().to_le_bytes());
                }
            }
        }
        Payload::EncodedLogs { .. } => unreachable!("refused above"),
    }
    out
}
