//! The bytes of one buffer entry. Hand-written because the header fields (source, sequence
//! numbers, checkpoint) must be readable without decoding the payload when the buffer is
//! scanned at start, and because it is the hot path of the log throughput figure.
//!
//! ```text
//! u8 kind (1 logs, 2 metrics) | str source | u64 first_seq | u64 count | str checkpoint | payload
//! logs:    labels | u32 n | n × (i64 timestamp_ns, str line)
//! metrics: u32 n | n × (labels, u32 m, m × (i64 timestamp_ms, f64 value))
//! labels:  u32 n | n × (str name, str value)        str: u32 length | UTF-8 bytes
//! ```
//! Integers are little-endian.

use tidewatch_model::{Labels, Sample, Series};

use super::{Entry, Payload};

const KIND_LOGS: u8 = 1;
const KIND_METRICS: u8 = 2;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for l in labels.iter() {
        put_str(out, &l.name);
        put_str(out, &l.value);
    }
}

/// Appends the encoding of an entry to `out`.
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) {
    out.push(match entry.payload {
        Payload::Logs { .. } => KIND_LOGS,
        Payload::Metrics(_) => KIND_METRICS,
    });
    put_str(out, &entry.source);
    out.extend_from_slice(&entry.first_seq.to_le_bytes());
    out.extend_from_slice(&entry.payload.count().to_le_bytes());
    put_str(out, &entry.checkpoint);
    match &entry.payload {
        Payload::Logs { labels, lines } => {
            put_labels(out, labels);
            out.extend_from_slice(&(lines.len() as u32).to_le_bytes());
            for (ts, line) in lines {
                out.extend_from_slice(&ts.to_le_bytes());
                put_str(out, line);
            }
        }
        Payload::Metrics(series) => {
            out.extend_from_slice(&(series.len() as u32).to_le_bytes());
            for s in series {
                put_labels(out, &s.labels);
                out.extend_from_slice(&(s.samples.len() as u32).to_le_bytes());
                for sample in &s.samples {
                    out.extend_from_slice(&sample.timestamp_ms.to_le_bytes());
                    out.extend_from_slice(&sample.value.to_bits().to_le_bytes());
                }
            }
        }
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
    if kind != KIND_LOGS && kind != KIND_METRICS {
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
    let count = c.u64()?;
    let checkpoint = c.str()?.to_string();
    let payload = match kind {
        KIND_LOGS => {
            let labels = c.labels()?;
            let n = c.u32()? as usize;
            let mut lines = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let ts = c.u64()? as i64;
                lines.push((ts, c.str()?.to_string()));
            }
            Payload::Logs { labels, lines }
        }
        KIND_METRICS => {
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
        _ => return Err(DecodeError("unknown entry kind")),
    };
    if payload.count() != count {
        return Err(DecodeError("record count does not match the header"));
    }
    Ok(Entry {
        source,
        first_seq,
        checkpoint,
        payload,
    })
}
