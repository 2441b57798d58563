//! The head: recent samples in memory, compressed per series, with a label index.
//!
//! The head is not thread-safe by itself: the store keeps it and the WAL's appending side under
//! one mutex, so the order of records in the log is the order of changes in the head. Every
//! method runs in time proportional to its input (a batch, a query's matching series), never
//! to the whole head, except [`Head::truncate`] and [`Head::collect`], which the block cutter
//! calls once per block range.

pub mod chunk;
mod symbols;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use tidewatch_model::{BatchHeader, HighWaterMarks, Labels, MatchOp, Matcher, Sample, Series, validate_label_name};

use self::chunk::{FrozenChunk, XorChunk};
use self::symbols::{Sym, Symbols};
use super::block::intersect;
use super::wal::{Wal, WalError, format};

/// A series' id in the head and in the WAL.
pub type SeriesRef = u32;

/// Samples per chunk before it is frozen, as Prometheus: decoding a chunk to answer a query
/// costs at most this many samples.
const SAMPLES_PER_CHUNK: usize = 120;

/// Limits on what one write may add; see `Limits` in the configuration for their defaults.
#[derive(Clone, Debug)]
pub struct HeadLimits {
    /// Series the head may hold at once; new series beyond it are refused.
    pub max_active_series: usize,
    /// Labels per series.
    pub max_labels_per_series: usize,
    /// Bytes of a label name.
    pub max_label_name_length: usize,
    /// Bytes of a label value.
    pub max_label_value_length: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_active_series: 5_000_000,
            max_labels_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 16 * 1024,
        }
    }
}

/// How the head stores samples.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Chunks never span a multiple of this, so a block cut drops whole chunks.
    pub block_range_ms: i64,
    /// How far behind a series' newest sample an older one may still be accepted.
    pub out_of_order_window_ms: i64,
    /// Limits on writes.
    pub limits: HeadLimits,
}

struct MemSeries {
    labels: Box<[(Sym, Sym)]>,
    chunks: Vec<FrozenChunk>,
    open: XorChunk,
    /// Out-of-order samples accepted within the window, sorted by time (value bits).
    ooo: Vec<(i64, u64)>,
    /// The WAL segment that last declared this series; a new segment declares it again.
    declared_in: u32,
}

impl MemSeries {
    fn last(&self) -> Option<(i64, u64)> {
        (!self.open.is_empty())
            .then(|| (self.open.max_time(), self.open.last_value_bits()))
            .or_else(|| {
                self.chunks
                    .last()
                    .and_then(|c| c.iter().last().map(|(t, v)| (t, v.to_bits())))
            })
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty() && self.chunks.is_empty() && self.ooo.is_empty()
    }

    /// Samples in `[mint, maxt]`, in time order, out-of-order ones merged in.
    fn samples(&self, mint: i64, maxt: i64) -> Vec<Sample> {
        let mut out = Vec::new();
        let in_range = |&(t, _): &(i64, f64)| t >= mint && t <= maxt;
        for c in self.chunks.iter().filter(|c| c.max_t >= mint && c.min_t <= maxt) {
            out.extend(c.iter().filter(in_range).map(|(t, v)| Sample {
                timestamp_ms: t,
                value: v,
            }));
        }
        if !self.open.is_empty() && self.open.max_time() >= mint && self.open.min_time() <= maxt {
            out.extend(self.open.iter().filter(in_range).map(|(t, v)| Sample {
                timestamp_ms: t,
                value: v,
            }));
        }
        if self.ooo.iter().any(|&(t, _)| t >= mint && t <= maxt) {
            out.extend(
                self.ooo
                    .iter()
                    .filter(|&&(t, _)| t >= mint && t <= maxt)
                    .map(|&(t, v)| Sample {
                        timestamp_ms: t,
                        value: f64::from_bits(v),
                    }),
            );
            out.sort_by_key(|s| s.timestamp_ms);
            out.dedup_by_key(|s| s.timestamp_ms);
        }
        out
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.len() * 8
            + self.chunks.iter().map(FrozenChunk::memory_bytes).sum::<usize>()
            + self.open.encoded_bytes()
            + self.ooo.capacity() * 16
    }
}

/// Why samples of a write were refused; each kind is counted and the first case kept as an
/// example for the error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Older than the series' newest sample by more than the out-of-order window.
    OutOfOrder,
    /// Older than the head: that time range is already in a block.
    OutOfBounds,
    /// Same timestamp as a stored sample, different value.
    DuplicateTimestamp,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`, is repeated, or a series has no `__name__`.
    InvalidLabels,
    /// A label name or value, or the number of labels, is over its limit.
    LabelLimit,
    /// The head is at `max_active_series`.
    SeriesLimit,
}

impl Refusal {
    /// The words used in error messages and the `reason` label of the refusal counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OutOfOrder => "out_of_order",
            Refusal::OutOfBounds => "out_of_bounds",
            Refusal::DuplicateTimestamp => "duplicate_timestamp",
            Refusal::InvalidLabels => "invalid_labels",
            Refusal::LabelLimit => "label_limit",
            Refusal::SeriesLimit => "series_limit",
        }
    }
}

/// What became of a write.
#[derive(Debug, Default)]
pub struct AppendOutcome {
    /// Samples stored (duplicates of stored samples count as stored: they are).
    pub accepted: usize,
    /// Samples refused, by reason, with the first example of each.
    pub refused: Vec<(Refusal, usize, String)>,
    /// The WAL write to wait for before acknowledging (0: nothing to wait for).
    pub wait_for: u64,
    /// Series created by this write.
    pub new_series: usize,
}

impl AppendOutcome {
    fn refuse(&mut self, why: Refusal, count: usize, example: impl FnOnce() -> String) {
        match self.refused.iter_mut().find(|(r, _, _)| *r == why) {
            Some((_, n, _)) => *n += count,
            None => self.refused.push((why, count, example())),
        }
    }

    /// Samples refused in all.
    pub fn refused_count(&self) -> usize {
        self.refused.iter().map(|(_, n, _)| n).sum()
    }
}

/// A decoded write: series labels and samples in flat arrays, borrowing from the request
/// body, so that a request costs a few allocations whatever its size.
#[derive(Debug, Default)]
pub struct WriteBatch<'a> {
    /// Every series' label pairs, one after another.
    pub labels: Vec<(&'a str, &'a str)>,
    /// Every series' samples `(t, value)`, one after another; a sample's index here is its
    /// record number in the delivery contract.
    pub samples: Vec<(i64, f64)>,
    /// For each series, where its labels and samples end.
    pub ends: Vec<(usize, usize)>,
}

impl<'a> WriteBatch<'a> {
    /// Adds a series.
    pub fn push(
        &mut self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        samples: impl IntoIterator<Item = (i64, f64)>,
    ) {
        self.labels.extend(labels);
        self.samples.extend(samples);
        self.ends.push((self.labels.len(), self.samples.len()));
    }

    /// The series as `(labels, sample index range)`.
    pub fn series(&self) -> impl Iterator<Item = (&[(&'a str, &'a str)], Range<usize>)> {
        let mut start = (0, 0);
        self.ends.iter().map(move |&(l, s)| {
            let out = (&self.labels[start.0..l], start.1..s);
            start = (l, s);
            out
        })
    }
}

/// One series' data for a block, still compressed.
pub struct Collected {
    /// The series.
    pub labels: Labels,
    chunks: Vec<FrozenChunk>,
    ooo: Vec<(i64, u64)>,
    mint: i64,
    maxt: i64,
}

impl Collected {
    /// The samples in the collected range, in time order, out-of-order ones merged in.
    pub fn decode(self) -> (Labels, Vec<Sample>) {
        let (mint, maxt) = (self.mint, self.maxt);
        let mut out: Vec<Sample> = self
            .chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter(|&(t, _)| t >= mint && t <= maxt)
            .map(|(t, v)| Sample {
                timestamp_ms: t,
                value: v,
            })
            .collect();
        if !self.ooo.is_empty() {
            out.extend(self.ooo.iter().map(|&(t, v)| Sample {
                timestamp_ms: t,
                value: f64::from_bits(v),
            }));
            out.sort_by_key(|s| s.timestamp_ms);
            out.dedup_by_key(|s| s.timestamp_ms);
        }
        (self.labels, out)
    }
}

/// What [`Head::stats`] reports; each list holds `(name, count)` pairs, largest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeadStats {
    /// Series in the head.
    pub num_series: usize,
    /// Distinct label name/value pairs.
    pub num_label_pairs: usize,
    /// Chunks, the open ones included.
    pub chunk_count: usize,
    /// The oldest sample time (ms), 0 when empty.
    pub min_time: i64,
    /// The newest sample time (ms), 0 when empty.
    pub max_time: i64,
    /// Series per metric name.
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of the distinct values per label name.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Series per `name=value` pair.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// The in-memory head.
pub struct Head {
    options: HeadOptions,
    symbols: Symbols,
    series: HashMap<SeriesRef, MemSeries, ahash::RandomState>,
    /// Series by the hash of their labels; true collisions go to `collisions`.
    by_hash: HashMap<u64, SeriesRef, ahash::RandomState>,
    collisions: HashMap<u64, Vec<SeriesRef>, ahash::RandomState>,
    /// label name → value → series, each list sorted.
    postings: HashMap<Sym, HashMap<Sym, Vec<SeriesRef>, ahash::RandomState>, ahash::RandomState>,
    next_ref: SeriesRef,
    marks: HighWaterMarks,
    /// Samples before this are in blocks: older writes are refused as out of bounds.
    lower_bound: i64,
    hasher: ahash::RandomState,
}

/// Hashes label pairs the same way whether they come from a request or from the head.
fn hash_labels<'a>(hasher: &ahash::RandomState, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h = hasher.build_hasher();
    for (n, v) in pairs {
        h.write(n.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

fn insert_sorted(list: &mut Vec<SeriesRef>, r: SeriesRef) {
    match list.last() {
        Some(&last) if last < r => list.push(r),
        None => list.push(r),
        _ => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
    }
}

impl Head {
    /// An empty head whose samples start at `lower_bound` (the end of the newest block).
    pub fn new(options: HeadOptions, lower_bound: i64) -> Head {
        Head {
            options,
            symbols: Symbols::default(),
            series: HashMap::default(),
            by_hash: HashMap::default(),
            collisions: HashMap::default(),
            postings: HashMap::default(),
            next_ref: 1,
            marks: HighWaterMarks::default(),
            lower_bound,
            // Fixed seeds: hashes are only compared within this process, but a fixed seed keeps
            // behaviour reproducible in tests.
            hasher: ahash::RandomState::with_seeds(0x7469_6465, 0x7761_7463, 0x6820_6865, 0x6164_2121),
        }
    }

    /// The delivery marks of every source applied so far.
    pub fn marks(&self) -> &HighWaterMarks {
        &self.marks
    }

    /// Active series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The oldest and newest sample times, if any sample is held.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut range: Option<(i64, i64)> = None;
        for s in self.series.values() {
            let first = s
                .chunks
                .first()
                .map(|c| c.min_t)
                .or((!s.open.is_empty()).then(|| s.open.min_time()));
            let first = match (first, s.ooo.first()) {
                (Some(a), Some(&(b, _))) => Some(a.min(b)),
                (a, b) => a.or(b.map(|x| x.0)),
            };
            let (Some(first), Some((last, _))) = (first, s.last()) else {
                continue;
            };
            let last = last.max(s.ooo.last().map_or(i64::MIN, |x| x.0));
            range = Some(range.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
        }
        range
    }

    /// Refuses writes older than `t` from now on (the range before it is being cut into a block).
    pub fn seal_before(&mut self, t: i64) {
        self.lower_bound = self.lower_bound.max(t);
    }

    /// The time before which writes are refused.
    pub fn lower_bound(&self) -> i64 {
        self.lower_bound
    }

    /// Approximate bytes held by series, chunks, symbols and the index.
    pub fn memory_bytes(&self) -> usize {
        let series: usize = self.series.values().map(MemSeries::memory_bytes).sum();
        let index: usize = self
            .postings
            .values()
            .map(|m| m.values().map(|l| l.capacity() * 4 + 32).sum::<usize>())
            .sum();
        series + index + self.symbols.memory_bytes() + self.by_hash.capacity() * 16
    }

    fn find(&self, hash: u64, pairs: &[(&str, &str)]) -> Option<SeriesRef> {
        let same = |r: &SeriesRef| {
            self.series.get(r).is_some_and(|s| {
                s.labels.len() == pairs.len()
                    && s.labels
                        .iter()
                        .zip(pairs)
                        .all(|(&(n, v), &(pn, pv))| self.symbols.resolve(n) == pn && self.symbols.resolve(v) == pv)
            })
        };
        if let Some(r) = self.by_hash.get(&hash).filter(|r| same(r)) {
            return Some(*r);
        }
        self.collisions
            .get(&hash)
            .and_then(|list| list.iter().find(|r| same(r)).copied())
    }

    fn create(&mut self, r: SeriesRef, hash: u64, pairs: &[(&str, &str)]) {
        let labels: Box<[(Sym, Sym)]> = pairs
            .iter()
            .map(|(n, v)| (self.symbols.intern(n), self.symbols.intern(v)))
            .collect();
        for &(n, v) in labels.iter() {
            insert_sorted(self.postings.entry(n).or_default().entry(v).or_default(), r);
        }
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(r);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.entry(hash).or_default().push(r),
        }
        self.series.insert(
            r,
            MemSeries {
                labels,
                chunks: Vec::new(),
                open: XorChunk::default(),
                ooo: Vec::new(),
                declared_in: 0,
            },
        );
        self.next_ref = self.next_ref.max(r.saturating_add(1));
    }

    /// Checks a series' labels against Prometheus' rules and the limits; sorts them if needed.
    fn check_labels<'a>(
        &self,
        pairs: &[(&'a str, &'a str)],
        sorted: &mut Vec<(&'a str, &'a str)>,
    ) -> Result<(), (Refusal, String)> {
        let l = &self.options.limits;
        if pairs.len() > l.max_labels_per_series {
            return Err((
                Refusal::LabelLimit,
                format!("{} labels, over the limit of {}", pairs.len(), l.max_labels_per_series),
            ));
        }
        sorted.clear();
        sorted.extend(pairs.iter().filter(|(_, v)| !v.is_empty()).copied());
        if !sorted.is_sorted_by(|a, b| a.0 < b.0) {
            sorted.sort_by(|a, b| a.0.cmp(b.0));
        }
        for w in sorted.windows(2) {
            if w[0].0 == w[1].0 {
                return Err((Refusal::InvalidLabels, format!("label {} repeated", w[0].0)));
            }
        }
        if !sorted.iter().any(|(n, _)| *n == "__name__") {
            return Err((Refusal::InvalidLabels, "no __name__ label".to_string()));
        }
        for (n, v) in sorted.iter() {
            if n.len() > l.max_label_name_length {
                return Err((
                    Refusal::LabelLimit,
                    format!(
                        "label name of {} bytes, over the limit of {}",
                        n.len(),
                        l.max_label_name_length
                    ),
                ));
            }
            if v.len() > l.max_label_value_length {
                return Err((
                    Refusal::LabelLimit,
                    format!(
                        "label {n} has a value of {} bytes, over the limit of {}",
                        v.len(),
                        l.max_label_value_length
                    ),
                ));
            }
            if validate_label_name(n).is_err() {
                return Err((Refusal::InvalidLabels, format!("invalid label name {n:?}")));
            }
        }
        Ok(())
    }

    /// Appends one sample to a series, or says why not. `replay` accepts what the log holds
    /// without applying the window again.
    fn append_sample(&mut self, r: SeriesRef, t: i64, bits: u64, replay: bool) -> Result<bool, Refusal> {
        if t < self.lower_bound {
            return Err(Refusal::OutOfBounds);
        }
        let range = self.options.block_range_ms.max(1);
        let window = self.options.out_of_order_window_ms;
        let Some(s) = self.series.get_mut(&r) else {
            return Err(Refusal::InvalidLabels);
        };
        match s.last() {
            Some((last_t, last_bits)) if t == last_t => {
                return if bits == last_bits {
                    Ok(false)
                } else {
                    Err(Refusal::DuplicateTimestamp)
                };
            }
            Some((last_t, _)) if t < last_t => {
                if !replay && last_t - t > window {
                    return Err(Refusal::OutOfOrder);
                }
                return match s.ooo.binary_search_by_key(&t, |x| x.0) {
                    Ok(i) if s.ooo[i].1 == bits => Ok(false),
                    Ok(_) => Err(Refusal::DuplicateTimestamp),
                    Err(i) => {
                        // An out-of-order sample may repeat one already in a chunk.
                        if s.samples(t, t).first().is_some_and(|x| x.timestamp_ms == t) {
                            return Ok(false);
                        }
                        s.ooo.insert(i, (t, bits));
                        Ok(true)
                    }
                };
            }
            _ => {}
        }
        if !s.open.is_empty()
            && (s.open.len() >= SAMPLES_PER_CHUNK || s.open.min_time().div_euclid(range) != t.div_euclid(range))
        {
            let frozen = s.open.freeze();
            s.chunks.push(frozen);
            s.open = XorChunk::default();
        }
        s.open.append(t, f64::from_bits(bits));
        Ok(true)
    }

    /// Applies a write: the samples whose indices are in `keep` (all when `None`), under the
    /// delivery `header`; writes the accepted ones and the advanced marks to the WAL in one
    /// record. Refused samples are reported, not fatal: the rest of the write is kept.
    pub fn append(
        &mut self,
        batch: &WriteBatch<'_>,
        keep: Option<&[Range<usize>]>,
        header: Option<&BatchHeader>,
        wal: &mut Wal,
    ) -> Result<AppendOutcome, WalError> {
        let mut outcome = AppendOutcome::default();
        let mut buf = Vec::new();
        if wal.wants_rotation() {
            wal.rotate()?;
            format::encode_marks_record(&mut buf, self.marks.iter().collect::<Vec<_>>().into_iter());
        }
        let segment = wal.segment();
        let mut declare: Vec<SeriesRef> = Vec::new();
        let mut accepted: Vec<(SeriesRef, i64, u64)> = Vec::with_capacity(batch.samples.len());
        let mut sorted = Vec::new();
        let mut keep_iter = keep.map(|k| k.iter().peekable());
        for (pairs, range) in batch.series() {
            // The part of this series' samples the delivery plan keeps.
            let wanted: Vec<Range<usize>> = match keep_iter.as_mut() {
                None => vec![range.clone()],
                Some(k) => {
                    let mut parts = Vec::new();
                    while let Some(r) = k.peek() {
                        if r.start >= range.end {
                            break;
                        }
                        let (s, e) = (r.start.max(range.start), r.end.min(range.end));
                        if s < e {
                            parts.push(s..e);
                        }
                        if r.end <= range.end {
                            k.next();
                        } else {
                            break;
                        }
                    }
                    parts
                }
            };
            let count: usize = wanted.iter().map(|r| r.len()).sum();
            if count == 0 {
                continue;
            }
            if let Err((why, detail)) = self.check_labels(pairs, &mut sorted) {
                outcome.refuse(why, count, || {
                    format!("{detail} in series {}", Labels::from_pairs(pairs.iter().copied()))
                });
                continue;
            }
            let hash = hash_labels(&self.hasher, sorted.iter().copied());
            let r = match self.find(hash, &sorted) {
                Some(r) => r,
                None if self.series.len() >= self.options.limits.max_active_series => {
                    let limit = self.options.limits.max_active_series;
                    outcome.refuse(Refusal::SeriesLimit, count, || {
                        format!(
                            "the head holds {limit} series (storage.limits.max_active_series); new series {} refused",
                            Labels::from_pairs(sorted.iter().copied())
                        )
                    });
                    continue;
                }
                None => {
                    let r = self.next_ref;
                    if r == SeriesRef::MAX {
                        outcome.refuse(Refusal::SeriesLimit, count, || {
                            "series ids exhausted; restart to renumber".to_string()
                        });
                        continue;
                    }
                    self.create(r, hash, &sorted);
                    outcome.new_series += 1;
                    r
                }
            };
            if let Some(s) = self.series.get_mut(&r) {
                if s.declared_in != segment {
                    s.declared_in = segment;
                    declare.push(r);
                }
            }
            for i in wanted.into_iter().flatten() {
                let (t, v) = batch.samples[i];
                match self.append_sample(r, t, v.to_bits(), false) {
                    Ok(stored) => {
                        outcome.accepted += 1;
                        if stored {
                            accepted.push((r, t, v.to_bits()));
                        }
                    }
                    Err(why) => outcome.refuse(why, 1, || {
                        format!("sample at {t} of series {}", Labels::from_pairs(sorted.iter().copied()))
                    }),
                }
            }
        }
        if !declare.is_empty() {
            let symbols = &self.symbols;
            let series = &self.series;
            format::encode_series(
                &mut buf,
                declare
                    .iter()
                    .filter_map(|r| {
                        series.get(r).map(|s| {
                            (
                                *r,
                                s.labels.iter().map(|&(n, v)| (symbols.resolve(n), symbols.resolve(v))),
                            )
                        })
                    })
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
        }
        let marks: Vec<(String, u64)> = match header {
            Some(h) => h
                .ranges
                .iter()
                .filter(|r| r.last > self.marks.mark(&r.source))
                .map(|r| (r.source.clone(), r.last))
                .collect(),
            None => Vec::new(),
        };
        if !accepted.is_empty() || !marks.is_empty() {
            format::encode_samples(&mut buf, &accepted, marks.iter().map(|(s, m)| (s.as_str(), *m)));
        }
        if let Some(h) = header {
            self.marks.advance(h);
        }
        outcome.wait_for = if buf.is_empty() {
            wal.last_submitted()
        } else {
            wal.submit(buf)?
        };
        Ok(outcome)
    }

    /// Applies one record read back from the WAL.
    pub fn replay(&mut self, record: format::Record) -> usize {
        match record {
            format::Record::Series(series) => {
                for (r, labels) in series {
                    let pairs: Vec<(&str, &str)> = labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
                    let hash = hash_labels(&self.hasher, pairs.iter().copied());
                    if !self.series.contains_key(&r) && self.find(hash, &pairs).is_none() {
                        self.create(r, hash, &pairs);
                    }
                }
                0
            }
            format::Record::Samples { samples, marks } => {
                let mut applied = 0;
                for (r, t, bits) in samples {
                    if let Ok(true) = self.append_sample(r, t, bits, true) {
                        applied += 1;
                    }
                }
                for (source, mark) in marks {
                    self.marks.raise(&source, mark);
                }
                applied
            }
            format::Record::Marks(marks) => {
                for (source, mark) in marks {
                    self.marks.raise(&source, mark);
                }
                0
            }
        }
    }

    fn labels_of(&self, s: &MemSeries) -> Labels {
        Labels::from_pairs(
            s.labels
                .iter()
                .map(|&(n, v)| (self.symbols.resolve(n), self.symbols.resolve(v))),
        )
    }

    /// The series matching every matcher, by ref.
    fn matching(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let mut candidates: Option<Vec<SeriesRef>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let Some(name) = self.symbols.get(&m.name) else {
                return Vec::new();
            };
            let Some(values) = self.postings.get(&name) else {
                return Vec::new();
            };
            let list = match m.op {
                MatchOp::Equal => self
                    .symbols
                    .get(&m.value)
                    .and_then(|v| values.get(&v))
                    .cloned()
                    .unwrap_or_default(),
                _ => {
                    let mut union: Vec<SeriesRef> = values
                        .iter()
                        .filter(|(v, _)| m.matches(self.symbols.resolve(**v)))
                        .flat_map(|(_, l)| l.iter().copied())
                        .collect();
                    union.sort_unstable();
                    union.dedup();
                    union
                }
            };
            candidates = Some(match candidates {
                None => list,
                Some(c) => intersect(&c, &list),
            });
        }
        let mut refs = candidates.unwrap_or_else(|| {
            let mut all: Vec<SeriesRef> = self.series.keys().copied().collect();
            all.sort_unstable();
            all
        });
        refs.retain(|r| {
            self.series.get(r).is_some_and(|s| {
                matchers.iter().all(|m| {
                    let value = s
                        .labels
                        .iter()
                        .find(|(n, _)| self.symbols.resolve(*n) == m.name)
                        .map_or("", |(_, v)| self.symbols.resolve(*v));
                    m.matches(value)
                })
            })
        });
        refs
    }

    /// Series matching `matchers` with their samples in `[mint, maxt]`; series without a
    /// sample there are left out. Sorted by labels.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .matching(matchers)
            .into_iter()
            .filter_map(|r| self.series.get(&r))
            .filter_map(|s| {
                let samples = s.samples(mint, maxt);
                (!samples.is_empty()).then(|| Series {
                    labels: self.labels_of(s),
                    samples,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Every series' compressed chunks overlapping `[mint, maxt_exclusive)`, for cutting a
    /// block. Copying the compressed bytes is all that happens under the head lock; decoding
    /// ([`Collected::decode`]) happens after it is released, so writers wait only for a memcpy.
    pub fn collect(&self, mint: i64, maxt_exclusive: i64) -> Vec<Collected> {
        let maxt = maxt_exclusive - 1;
        self.series
            .values()
            .filter_map(|s| {
                let mut chunks: Vec<FrozenChunk> = s
                    .chunks
                    .iter()
                    .filter(|c| c.max_t >= mint && c.min_t <= maxt)
                    .cloned()
                    .collect();
                if !s.open.is_empty() && s.open.max_time() >= mint && s.open.min_time() <= maxt {
                    chunks.push(s.open.freeze());
                }
                let ooo: Vec<(i64, u64)> = s
                    .ooo
                    .iter()
                    .filter(|&&(t, _)| t >= mint && t <= maxt)
                    .copied()
                    .collect();
                (!chunks.is_empty() || !ooo.is_empty()).then(|| Collected {
                    labels: self.labels_of(s),
                    chunks,
                    ooo,
                    mint,
                    maxt,
                })
            })
            .collect()
    }

    /// Drops every sample before `before` (now in a block), and the series left empty.
    /// Returns how many series were removed.
    pub fn truncate(&mut self, before: i64) -> usize {
        self.lower_bound = self.lower_bound.max(before);
        let mut removed = Vec::new();
        for (r, s) in self.series.iter_mut() {
            s.chunks.retain(|c| c.max_t >= before);
            if !s.open.is_empty() && s.open.max_time() < before {
                s.open = XorChunk::default();
            }
            s.ooo.retain(|&(t, _)| t >= before);
            if s.is_empty() {
                removed.push(*r);
            }
        }
        if removed.is_empty() {
            return 0;
        }
        removed.sort_unstable();
        for r in &removed {
            let Some(s) = self.series.remove(r) else { continue };
            let pairs: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|&(n, v)| (self.symbols.resolve(n), self.symbols.resolve(v)))
                .collect();
            let hash = hash_labels(&self.hasher, pairs.into_iter());
            if self.by_hash.get(&hash) == Some(r) {
                self.by_hash.remove(&hash);
                // Promote a colliding series, if any, to the main table.
                if let Some(list) = self.collisions.get_mut(&hash) {
                    if let Some(next) = list.pop() {
                        self.by_hash.insert(hash, next);
                    }
                    if list.is_empty() {
                        self.collisions.remove(&hash);
                    }
                }
            } else if let Some(list) = self.collisions.get_mut(&hash) {
                list.retain(|x| x != r);
            }
        }
        for values in self.postings.values_mut() {
            for list in values.values_mut() {
                list.retain(|r| removed.binary_search(r).is_err());
            }
            values.retain(|_, l| !l.is_empty());
        }
        self.postings.retain(|_, v| !v.is_empty());
        removed.len()
    }

    /// Cardinality statistics as Prometheus' `/api/v1/status/tsdb` reports them for its head:
    /// the `limit` largest entries of each list, and totals.
    pub fn stats(&self, limit: usize) -> HeadStats {
        fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        }
        let (mut by_metric, mut value_counts, mut value_bytes, mut pairs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut num_label_pairs = 0;
        for (name, values) in &self.postings {
            let name = self.symbols.resolve(*name);
            value_counts.push((name.to_string(), values.len() as u64));
            let mut bytes = 0u64;
            for (value, refs) in values {
                let value = self.symbols.resolve(*value);
                if name == "__name__" {
                    by_metric.push((value.to_string(), refs.len() as u64));
                }
                pairs.push((format!("{name}={value}"), refs.len() as u64));
                bytes += value.len() as u64;
            }
            num_label_pairs += values.len();
            value_bytes.push((name.to_string(), bytes));
        }
        let (min_time, max_time) = self.time_range().unwrap_or((0, 0));
        HeadStats {
            num_series: self.series.len(),
            num_label_pairs,
            chunk_count: self
                .series
                .values()
                .map(|s| s.chunks.len() + usize::from(!s.open.is_empty()))
                .sum(),
            min_time,
            max_time,
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(value_counts, limit),
            memory_in_bytes_by_label_name: top(value_bytes, limit),
            series_count_by_label_value_pair: top(pairs, limit),
        }
    }

    /// Label names of series matching `matchers`, sorted.
    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        let mut names: Vec<String> = if matchers.is_empty() {
            self.postings
                .keys()
                .map(|n| self.symbols.resolve(*n).to_string())
                .collect()
        } else {
            let mut set = std::collections::BTreeSet::new();
            for r in self.matching(matchers) {
                if let Some(s) = self.series.get(&r) {
                    set.extend(s.labels.iter().map(|(n, _)| self.symbols.resolve(*n).to_string()));
                }
            }
            set.into_iter().collect()
        };
        names.sort();
        names.dedup();
        names
    }

    /// Values of label `name` among series matching `matchers`, sorted.
    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        let Some(n) = self.symbols.get(name) else {
            return Vec::new();
        };
        let mut values: Vec<String> = if matchers.is_empty() {
            self.postings
                .get(&n)
                .map(|v| v.keys().map(|v| self.symbols.resolve(*v).to_string()).collect())
                .unwrap_or_default()
        } else {
            self.matching(matchers)
                .into_iter()
                .filter_map(|r| self.series.get(&r))
                .filter_map(|s| {
                    s.labels
                        .iter()
                        .find(|(ln, _)| *ln == n)
                        .map(|(_, v)| self.symbols.resolve(*v).to_string())
                })
                .collect()
        };
        values.sort();
        values.dedup();
        values
    }
}

#[cfg(test)]
mod tests;
