//! The WAL's record encoding. See `store/docs/format/wal.md`.
//!
//! A segment is a sequence of records `len:u32le crc32:u32le type:u8 payload[len]`, the CRC
//! (IEEE, crc32fast) covering the type byte and the payload. Records are never split across
//! segments. Integers inside payloads are protobuf varints (unsigned) or zigzag varints
//! (signed).

use bytes::Buf;
use prost::encoding::{decode_varint, encode_varint};
use tidewatch_model::Labels;

/// Bytes before a payload: length, CRC, type.
pub const HEADER_LEN: usize = 9;

/// Record types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// Series declarations: `count, (ref, label count, (name, value)*)*`.
    Series = 1,
    /// Samples and the delivery marks they advance, atomically:
    /// `count, base_t, (ref, t - base_t zigzag, value bits fixed64le)*, mark count, (source, mark)*`.
    Samples = 2,
    /// Every delivery mark, written first in each segment so older segments can be deleted.
    Marks = 3,
}

/// A decoded record.
#[derive(Debug, PartialEq)]
pub enum Record {
    /// New series: `(ref, labels)`.
    Series(Vec<(u32, Labels)>),
    /// Samples `(ref, t, value bits)` and marks `(source, mark)`.
    Samples {
        samples: Vec<(u32, i64, u64)>,
        marks: Vec<(String, u64)>,
    },
    /// All marks.
    Marks(Vec<(String, u64)>),
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Appends one framed record of `kind` whose payload `fill` writes.
pub fn frame(out: &mut Vec<u8>, kind: RecordType, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out[start + 8] = kind as u8;
    fill(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Encodes series declarations; `labels` yields each series' pairs.
pub fn encode_series<'a, I, L>(out: &mut Vec<u8>, series: I)
where
    I: ExactSizeIterator<Item = (u32, L)>,
    L: ExactSizeIterator<Item = (&'a str, &'a str)>,
{
    frame(out, RecordType::Series, |p| {
        encode_varint(series.len() as u64, p);
        for (r, labels) in series {
            encode_varint(u64::from(r), p);
            encode_varint(labels.len() as u64, p);
            for (n, v) in labels {
                put_str(p, n);
                put_str(p, v);
            }
        }
    });
}

/// Encodes samples and marks in one record.
pub fn encode_samples<'a>(
    out: &mut Vec<u8>,
    samples: &[(u32, i64, u64)],
    marks: impl ExactSizeIterator<Item = (&'a str, u64)>,
) {
    frame(out, RecordType::Samples, |p| {
        encode_varint(samples.len() as u64, p);
        let base = samples.first().map_or(0, |s| s.1);
        encode_varint(zigzag(base), p);
        for &(r, t, v) in samples {
            encode_varint(u64::from(r), p);
            encode_varint(zigzag(t.wrapping_sub(base)), p);
            p.extend_from_slice(&v.to_le_bytes());
        }
        encode_marks(p, marks);
    });
}

/// Encodes a marks snapshot.
pub fn encode_marks_record<'a>(out: &mut Vec<u8>, marks: impl ExactSizeIterator<Item = (&'a str, u64)>) {
    frame(out, RecordType::Marks, |p| encode_marks(p, marks));
}

fn encode_marks<'a>(p: &mut Vec<u8>, marks: impl ExactSizeIterator<Item = (&'a str, u64)>) {
    encode_varint(marks.len() as u64, p);
    for (source, mark) in marks {
        put_str(p, source);
        encode_varint(mark, p);
    }
}

/// Why a payload could not be decoded (the CRC matched, so this is a bug or a version skew).
#[derive(Debug, thiserror::Error)]
#[error("malformed {kind} record: {reason}")]
pub struct DecodeError {
    kind: &'static str,
    reason: String,
}

struct Payload<'a> {
    buf: &'a [u8],
    kind: &'static str,
}

impl<'a> Payload<'a> {
    fn err(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            kind: self.kind,
            reason: reason.into(),
        }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        decode_varint(&mut self.buf).map_err(|e| self.err(e.to_string()))
    }

    /// A count, refused when it could not possibly fit in what is left (so a corrupt count
    /// cannot make us reserve gigabytes).
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()? as usize;
        if n.saturating_mul(min_item_bytes) > self.buf.len() {
            return Err(self.err(format!("count {n} larger than the payload")));
        }
        Ok(n)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.varint()? as usize;
        if len > self.buf.len() {
            return Err(self.err("string runs past the end"));
        }
        let (s, rest) = self.buf.split_at(len);
        self.buf = rest;
        std::str::from_utf8(s).map_err(|_| self.err("string is not UTF-8"))
    }

    fn fixed64(&mut self) -> Result<u64, DecodeError> {
        if self.buf.remaining() < 8 {
            return Err(self.err("truncated value"));
        }
        Ok(self.buf.get_u64_le())
    }

    fn marks(&mut self) -> Result<Vec<(String, u64)>, DecodeError> {
        let n = self.count(2)?;
        let mut marks = Vec::with_capacity(n);
        for _ in 0..n {
            marks.push((self.str()?.to_string(), self.varint()?));
        }
        Ok(marks)
    }
}

/// Decodes a record's payload.
pub fn decode(kind: u8, payload: &[u8]) -> Result<Record, DecodeError> {
    match kind {
        1 => {
            let mut p = Payload {
                buf: payload,
                kind: "series",
            };
            let n = p.count(2)?;
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let r = u32::try_from(p.varint()?).map_err(|_| p.err("series ref over u32"))?;
                let count = p.count(2)?;
                let mut pairs = Vec::with_capacity(count);
                for _ in 0..count {
                    pairs.push((p.str()?, p.str()?));
                }
                out.push((r, Labels::from_pairs(pairs)));
            }
            Ok(Record::Series(out))
        }
        2 => {
            let mut p = Payload {
                buf: payload,
                kind: "samples",
            };
            let n = p.count(10)?;
            let base = unzigzag(p.varint()?);
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let r = u32::try_from(p.varint()?).map_err(|_| p.err("series ref over u32"))?;
                let t = base.wrapping_add(unzigzag(p.varint()?));
                samples.push((r, t, p.fixed64()?));
            }
            let marks = p.marks()?;
            Ok(Record::Samples { samples, marks })
        }
        3 => Ok(Record::Marks(
            Payload {
                buf: payload,
                kind: "marks",
            }
            .marks()?,
        )),
        other => Err(DecodeError {
            kind: "unknown",
            reason: format!("record type {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        encode_series(
            &mut out,
            [(7u32, [("__name__", "up"), ("job", "x")].into_iter())].into_iter(),
        );
        encode_samples(
            &mut out,
            &[(7, 1000, 1f64.to_bits()), (7, 900, f64::NAN.to_bits())],
            [("src", 5u64)].into_iter(),
        );
        encode_marks_record(&mut out, [("a", 1u64), ("b", 2)].into_iter());
        let mut rest = &out[..];
        let mut records = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&rest[8..HEADER_LEN + len]));
            records.push(decode(rest[8], &rest[HEADER_LEN..HEADER_LEN + len]).unwrap());
            rest = &rest[HEADER_LEN + len..];
        }
        assert_eq!(
            records[0],
            Record::Series(vec![(7, Labels::from_pairs([("__name__", "up"), ("job", "x")]))])
        );
        assert_eq!(
            records[1],
            Record::Samples {
                samples: vec![(7, 1000, 1f64.to_bits()), (7, 900, f64::NAN.to_bits())],
                marks: vec![("src".into(), 5)]
            }
        );
        assert_eq!(records[2], Record::Marks(vec![("a".into(), 1), ("b".into(), 2)]));
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        for bytes in [
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
            &[5, 0, 0],
            &[1, 1, 200],
        ] {
            for kind in 0..5 {
                let _ = decode(kind, bytes);
            }
        }
    }
}
