//! Prometheus remote_write 1.0: the protobuf messages, snappy framing, and a decoder that
//! borrows from the request body.
//!
//! The messages are written with `prost` derives rather than generated from `.proto` files:
//! four small messages do not justify a protoc build step. `prost` encodes them (for the
//! shipper, tests and benchmarks); decoding on the server's hot path uses [`decode_borrowed`],
//! which hands out label names and values as `&str` slices of the body. A remote_write body of
//! 2,000 series with ten labels each would otherwise cost 40,000 `String` allocations, which
//! is most of the time spent ingesting.

use prost::Message;

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// Field 1.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Field 3 (metadata) is accepted and ignored by the decoder; it is not encoded.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Field 1: sorted by name, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Field 2: in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Sample {
    /// Field 1.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Field 2: milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// Field 1: the metric type as an enum number.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Field 2.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Field 4.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Field 5.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a remote_write body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not snappy block format.
    #[error("snappy: {0}")]
    Snappy(String),
    /// The body decompresses to more than the limit.
    #[error("decompressed body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The size the snappy header announces.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The protobuf is malformed.
    #[error("protobuf: {0}")]
    Protobuf(String),
}

impl WriteRequest {
    /// Encodes and snappy-compresses, as a remote_write sender does.
    pub fn to_snappy(&self) -> Vec<u8> {
        let raw = self.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&raw).unwrap_or_default()
    }
}

/// Decompresses a snappy block, refusing bodies that would decompress to more than `limit`
/// bytes before allocating anything.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, WireError> {
    let size = snap::raw::decompress_len(body).map_err(|e| WireError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(WireError::TooLarge { size, limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| WireError::Snappy(e.to_string()))
}

/// A time series whose labels borrow from the decoded body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BorrowedSeries<'a> {
    /// Label pairs as sent (senders sort them by name; the store checks).
    pub labels: Vec<(&'a str, &'a str)>,
    /// Samples as `(timestamp_ms, value)`.
    pub samples: Vec<(i64, f64)>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| WireError::Protobuf("truncated varint".into()))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::Protobuf("varint longer than 10 bytes".into()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| WireError::Protobuf("length-delimited field runs past the end".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| WireError::Protobuf("truncated fixed64".into()))?;
        self.pos += 8;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// Skips a field of `wire_type` (unknown fields are allowed by protobuf).
    fn skip(&mut self, wire_type: u64) -> Result<(), WireError> {
        match wire_type {
            0 => self.varint().map(drop),
            1 => self.fixed64().map(drop),
            2 => self.bytes().map(drop),
            5 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(WireError::Protobuf("truncated fixed32".into()));
                }
                self.pos += 4;
                Ok(())
            }
            t => Err(WireError::Protobuf(format!("unsupported wire type {t}"))),
        }
    }

    /// The next `(field number, wire type)`.
    fn key(&mut self) -> Result<(u64, u64), WireError> {
        let key = self.varint()?;
        Ok((key >> 3, key & 7))
    }
}

fn utf8(b: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(b).map_err(|_| WireError::Protobuf("label is not UTF-8".into()))
}

fn decode_label(buf: &[u8]) -> Result<(&str, &str), WireError> {
    let mut r = Reader { buf, pos: 0 };
    let (mut name, mut value) = ("", "");
    while !r.done() {
        match r.key()? {
            (1, 2) => name = utf8(r.bytes()?)?,
            (2, 2) => value = utf8(r.bytes()?)?,
            (_, t) => r.skip(t)?,
        }
    }
    Ok((name, value))
}

fn decode_sample(buf: &[u8]) -> Result<(i64, f64), WireError> {
    let mut r = Reader { buf, pos: 0 };
    let (mut t, mut v) = (0i64, 0f64);
    while !r.done() {
        match r.key()? {
            (1, 1) => v = f64::from_bits(r.fixed64()?),
            (2, 0) => t = r.varint()? as i64,
            (_, wt) => r.skip(wt)?,
        }
    }
    Ok((t, v))
}

/// Decodes an uncompressed `WriteRequest`, calling `each` for every time series in order.
/// The series' buffers are reused between calls, so a request allocates little whatever its
/// size. Metadata and unknown fields are skipped.
pub fn decode_borrowed<'a>(
    body: &'a [u8],
    mut each: impl FnMut(&BorrowedSeries<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut series = BorrowedSeries::default();
    while !r.done() {
        match r.key()? {
            (1, 2) => {
                let mut ts = Reader {
                    buf: r.bytes()?,
                    pos: 0,
                };
                series.labels.clear();
                series.samples.clear();
                while !ts.done() {
                    match ts.key()? {
                        (1, 2) => series.labels.push(decode_label(ts.bytes()?)?),
                        (2, 2) => series.samples.push(decode_sample(ts.bytes()?)?),
                        (_, t) => ts.skip(t)?,
                    }
                }
                each(&series)?;
            }
            (_, t) => r.skip(t)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(series: &[(Vec<(&str, &str)>, Vec<(i64, f64)>)]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(labels, samples)| TimeSeries {
                    labels: labels
                        .iter()
                        .map(|(n, v)| Label {
                            name: n.to_string(),
                            value: v.to_string(),
                        })
                        .collect(),
                    samples: samples
                        .iter()
                        .map(|&(timestamp, value)| Sample { value, timestamp })
                        .collect(),
                })
                .collect(),
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn borrowed_decoding_matches_prost() {
        let req = request(&[
            (
                vec![("__name__", "up"), ("job", "node")],
                vec![(1000, 1.0), (2000, 0.0)],
            ),
            (
                vec![("__name__", "x"), ("é", "ü")],
                vec![(-5, f64::from_bits(crate::STALE_NAN_BITS))],
            ),
        ]);
        let raw = decompress(&req.to_snappy(), 1 << 20).unwrap();
        let mut seen = Vec::new();
        decode_borrowed(&raw, |s| {
            seen.push((
                s.labels.clone(),
                s.samples.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, vec![("__name__", "up"), ("job", "node")]);
        assert_eq!(seen[0].1, vec![(1000, 1f64.to_bits()), (2000, 0f64.to_bits())]);
        assert_eq!(seen[1].1, vec![(-5, crate::STALE_NAN_BITS)]);
    }

    #[test]
    fn oversized_and_broken_bodies_are_refused() {
        let req = request(&[(vec![("__name__", "up")], vec![(1, 1.0)])]);
        let body = req.to_snappy();
        assert!(matches!(decompress(&body, 4), Err(WireError::TooLarge { .. })));
        assert!(decompress(b"not snappy at all", 1 << 20).is_err());
        let raw = req.encode_to_vec();
        assert!(decode_borrowed(&raw[..raw.len() - 3], |_| Ok(())).is_err());
    }

    proptest! {
        /// No input makes the decoder panic or read out of bounds.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_borrowed(&bytes, |_| Ok(()));
        }
    }
}
