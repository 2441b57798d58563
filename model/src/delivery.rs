//! The exactly-once delivery contract between an agent and a server.
//!
//! An agent numbers each source's records with consecutive sequence numbers starting at 1 and
//! sends, with every batch, a header
//! `Tidewatch-Batch: <source>=<first>-<last>[;<source>=<first>-<last>]`.
//! The ranges, in header order, cover the batch's records in wire order (remote_write: every
//! sample of every time series in turn; Loki push: every entry of every stream in turn), so
//! their lengths add up to the number of records.
//!
//! The server keeps per source the highest sequence number applied ([`HighWaterMarks`]),
//! written atomically with the data. A range at or below the mark is acknowledged and dropped;
//! a range that overlaps it is trimmed to what lies above.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The HTTP header that carries a batch's ranges.
pub const HEADER_NAME: &str = "Tidewatch-Batch";

/// Why a batch header is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The header text does not follow the grammar.
    #[error("Tidewatch-Batch header: {0}")]
    Malformed(String),
    /// The ranges do not cover the records of the batch exactly.
    #[error("Tidewatch-Batch header covers {covered} records but the batch holds {records}")]
    CountMismatch {
        /// Records named by the header.
        covered: u64,
        /// Records in the body.
        records: u64,
    },
}

/// One source's consecutive records in a batch, `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRange {
    /// The source: an agent-unique name such as `node-1/docker/<id>/stdout`.
    pub source: String,
    /// The first sequence number, at least 1.
    pub first: u64,
    /// The last sequence number, at least `first`.
    pub last: u64,
}

impl BatchRange {
    /// How many records the range covers.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range covers at least one record.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The parsed `Tidewatch-Batch` header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// The ranges, in the order their records appear in the body.
    pub ranges: Vec<BatchRange>,
}

/// Characters a source name may hold as they are; everything else is percent-encoded so the
/// header stays visible ASCII and its separators stay unambiguous.
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'%' | b';' | b'=' | b',')
}

fn encode_source(source: &str, out: &mut String) {
    for &b in source.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn decode_source(text: &str) -> Result<String, DeliveryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| DeliveryError::Malformed(format!("bad percent escape in source {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DeliveryError::Malformed(format!("source {text:?} is not UTF-8")))
}

impl BatchHeader {
    /// Parses the header's value.
    pub fn parse(value: &str) -> Result<Self, DeliveryError> {
        let mut ranges = Vec::new();
        for part in value.split(';').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (source, span) = part
                .rsplit_once('=')
                .ok_or_else(|| DeliveryError::Malformed(format!("{part:?} is not <source>=<first>-<last>")))?;
            let (first, last) = span
                .split_once('-')
                .ok_or_else(|| DeliveryError::Malformed(format!("{span:?} is not <first>-<last>")))?;
            let number = |t: &str| {
                t.parse::<u64>()
                    .map_err(|_| DeliveryError::Malformed(format!("{t:?} in {part:?} is not a sequence number")))
            };
            let (first, last) = (number(first)?, number(last)?);
            if first == 0 || last < first {
                return Err(DeliveryError::Malformed(format!(
                    "range {first}-{last} of {part:?} is empty or starts at 0"
                )));
            }
            if source.is_empty() {
                return Err(DeliveryError::Malformed(format!("{part:?} names no source")));
            }
            ranges.push(BatchRange {
                source: decode_source(source)?,
                first,
                last,
            });
        }
        if ranges.is_empty() {
            return Err(DeliveryError::Malformed("no ranges".to_string()));
        }
        Ok(BatchHeader { ranges })
    }

    /// How many records the header covers.
    pub fn record_count(&self) -> u64 {
        self.ranges.iter().map(BatchRange::len).sum()
    }
}

impl fmt::Display for BatchHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            encode_source(&r.source, &mut out);
            out.push_str(&format!("={}-{}", r.first, r.last));
        }
        f.write_str(&out)
    }
}

/// What to do with one range of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeDecision {
    /// Everything was applied before: acknowledge and drop.
    Skip,
    /// Apply the records from sequence number `from` to the range's end.
    Apply {
        /// The first sequence number not applied yet.
        from: u64,
    },
}

/// The highest sequence number applied per source. The store persists it in the same write as
/// the records it covers; this type only decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HighWaterMarks {
    marks: HashMap<String, u64>,
}

impl HighWaterMarks {
    /// The highest sequence number applied for `source` (0 when none was).
    pub fn mark(&self, source: &str) -> u64 {
        self.marks.get(source).copied().unwrap_or(0)
    }

    /// Whether and from where to apply `range`.
    pub fn decide(&self, range: &BatchRange) -> RangeDecision {
        let mark = self.mark(&range.source);
        if range.last <= mark {
            RangeDecision::Skip
        } else {
            RangeDecision::Apply {
                from: range.first.max(mark + 1),
            }
        }
    }

    /// The record indices of a batch of `records` records that must be applied, given its
    /// header. Fails when the header does not cover the batch exactly, so a sender's bug cannot
    /// silently move marks over data that was never written.
    pub fn plan(&self, header: &BatchHeader, records: usize) -> Result<Vec<Range<usize>>, DeliveryError> {
        let covered = header.record_count();
        if covered != records as u64 {
            return Err(DeliveryError::CountMismatch {
                covered,
                records: records as u64,
            });
        }
        let mut keep = Vec::new();
        let mut offset = 0usize;
        for range in &header.ranges {
            let len = range.len() as usize;
            if let RangeDecision::Apply { from } = self.decide(range) {
                let start = offset + (from - range.first) as usize;
                match keep.last_mut() {
                    Some(Range { end, .. }) if *end == start => *end = offset + len,
                    _ => keep.push(start..offset + len),
                }
            }
            offset += len;
        }
        Ok(keep)
    }

    /// Raises the marks to the ends of `header`'s ranges (never lowers one).
    pub fn advance(&mut self, header: &BatchHeader) {
        for range in &header.ranges {
            let mark = self.marks.entry(range.source.clone()).or_insert(0);
            *mark = (*mark).max(range.last);
        }
    }

    /// Raises the mark of `source` to `mark` (never lowers it); used when replaying a log.
    pub fn raise(&mut self, source: &str, mark: u64) {
        match self.marks.get_mut(source) {
            Some(m) => *m = (*m).max(mark),
            None => {
                self.marks.insert(source.to_string(), mark);
            }
        }
    }

    /// How many sources have a mark.
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether no source has a mark.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    /// The marks, for persisting.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.marks.iter().map(|(s, m)| (s.as_str(), *m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(text: &str) -> BatchHeader {
        BatchHeader::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_the_header() {
        let h = header("node-1/docker/abc/stdout=5-9;node-1/file/var/log/x=1-1");
        assert_eq!(h.ranges.len(), 2);
        assert_eq!(
            h.ranges[0],
            BatchRange {
                source: "node-1/docker/abc/stdout".into(),
                first: 5,
                last: 9
            }
        );
        assert_eq!(h.record_count(), 6);
        assert_eq!(h.to_string(), "node-1/docker/abc/stdout=5-9;node-1/file/var/log/x=1-1");
    }

    #[test]
    fn sources_with_separators_round_trip() {
        let h = BatchHeader {
            ranges: vec![BatchRange {
                source: "a=b;c d%é".into(),
                first: 1,
                last: 2,
            }],
        };
        let text = h.to_string();
        assert!(text.is_ascii() && !text.contains(' '));
        assert_eq!(BatchHeader::parse(&text).unwrap(), h);
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in ["", "x", "x=1", "x=0-3", "x=5-4", "=1-2", "x=a-b", "x%zz=1-2"] {
            assert!(BatchHeader::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges_below_the_mark_are_skipped_and_overlaps_trimmed() {
        let mut marks = HighWaterMarks::default();
        marks.advance(&header("a=1-10"));
        assert_eq!(marks.decide(&header("a=3-10").ranges[0]), RangeDecision::Skip);
        assert_eq!(
            marks.decide(&header("a=8-14").ranges[0]),
            RangeDecision::Apply { from: 11 }
        );
        assert_eq!(
            marks.decide(&header("b=8-14").ranges[0]),
            RangeDecision::Apply { from: 8 }
        );
        // a=8-14 is 7 records at 0..7, of which 11..=14 are new (indices 3..7); b=1-2 at 7..9.
        assert_eq!(marks.plan(&header("a=8-14;b=1-2"), 9).unwrap(), vec![3..9]);
        assert_eq!(marks.plan(&header("a=1-5;b=1-2"), 7).unwrap(), vec![5..7]);
        assert!(matches!(
            marks.plan(&header("a=1-5"), 4),
            Err(DeliveryError::CountMismatch { .. })
        ));
    }

    #[test]
    fn marks_never_go_down() {
        let mut marks = HighWaterMarks::default();
        marks.advance(&header("a=5-9"));
        marks.advance(&header("a=1-3"));
        assert_eq!(marks.mark("a"), 9);
    }

    proptest! {
        /// A sender that crashes and rewinds to any point it had reached, then re-sends in
        /// batches of any size, gets every record applied exactly once and in order.
        #[test]
        fn rewinds_and_rechunking_apply_each_record_once(
            total in 1u64..200,
            steps in proptest::collection::vec((1u64..30, proptest::option::of(0u64..200)), 1..60),
        ) {
            let mut marks = HighWaterMarks::default();
            let mut applied = Vec::new();
            let mut cursor = 1;
            let mut steps = steps.into_iter().cycle().take(1000);
            while cursor <= total {
                let (len, rewind) = steps.next().unwrap_or((30, None));
                let last = (cursor + len - 1).min(total);
                let h = BatchHeader { ranges: vec![BatchRange { source: "s".into(), first: cursor, last }] };
                for r in marks.plan(&h, h.record_count() as usize).unwrap() {
                    applied.extend(r.map(|i| cursor + i as u64));
                }
                marks.advance(&h);
                cursor = last + 1;
                if let Some(back) = rewind {
                    cursor = cursor.min(back.max(1));
                }
            }
            prop_assert_eq!(applied, (1..=total).collect::<Vec<_>>());
        }
    }
}
