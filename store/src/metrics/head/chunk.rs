//! Gorilla compression for one series' samples: delta-of-delta timestamps and XOR'd values, the
//! encoding Prometheus' head uses (Pelkonen et al., "Gorilla", VLDB 2015). Regular scrapes cost
//! about one bit per timestamp and unchanged values one bit per value.
//!
//! Values are compared and stored as raw bits, so NaN payloads (staleness markers) and -0.0
//! survive exactly.

/// Appends bits to a byte vector, most significant bit first.
#[derive(Clone, Debug, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// Pushes the low `n` bits of `value`, most significant first.
    fn push_bits(&mut self, value: u64, n: u8) {
        for i in (0..n).rev() {
            self.push_bit((value >> i) & 1 == 1);
        }
    }
}

/// Reads bits back in the order [`BitWriter`] wrote them.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(bit)
    }

    fn bits(&mut self, n: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Some(v)
    }
}

/// The delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 4] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20), (0b1111, 4, 64)];

/// An append-only compressed run of samples in time order.
#[derive(Clone, Debug, Default)]
pub struct XorChunk {
    bits: BitWriter,
    count: u32,
    first_t: i64,
    last_t: i64,
    last_delta: i64,
    last_bits: u64,
    leading: u8,
    trailing: u8,
}

impl XorChunk {
    /// Appends a sample; `t` must be greater than the last timestamp (the head checks).
    pub fn append(&mut self, t: i64, v: f64) {
        let vbits = v.to_bits();
        match self.count {
            0 => {
                self.bits.push_bits(t as u64, 64);
                self.bits.push_bits(vbits, 64);
                self.first_t = t;
            }
            1 => {
                let delta = t.wrapping_sub(self.last_t);
                self.bits.push_bits(delta as u64, 64);
                self.push_value(vbits);
                self.last_delta = delta;
            }
            _ => {
                let delta = t.wrapping_sub(self.last_t);
                let dod = delta.wrapping_sub(self.last_delta);
                if dod == 0 {
                    self.bits.push_bit(false);
                } else {
                    let (prefix, plen, vlen) = *DOD_BUCKETS
                        .iter()
                        .find(|(_, _, n)| *n == 64 || (-(1i64 << (n - 1)) < dod && dod <= (1i64 << (n - 1))))
                        .unwrap_or(&DOD_BUCKETS[3]);
                    self.bits.push_bits(prefix, plen);
                    let mask = if vlen == 64 { u64::MAX } else { (1u64 << vlen) - 1 };
                    self.bits.push_bits(dod as u64 & mask, vlen);
                }
                self.push_value(vbits);
                self.last_delta = delta;
            }
        }
        self.last_t = t;
        self.last_bits = vbits;
        self.count += 1;
    }

    fn push_value(&mut self, vbits: u64) {
        let xor = vbits ^ self.last_bits;
        if xor == 0 {
            self.bits.push_bit(false);
            return;
        }
        self.bits.push_bit(true);
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if self.count > 1 && leading >= self.leading && trailing >= self.trailing && self.leading + self.trailing > 0 {
            // Fits in the previous window: reuse it.
            self.bits.push_bit(false);
            self.bits
                .push_bits(xor >> self.trailing, 64 - self.leading - self.trailing);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - leading - trailing;
            self.bits.push_bit(true);
            self.bits.push_bits(u64::from(leading), 5);
            // 64 significant bits are written as 0: six bits cannot hold 64.
            self.bits.push_bits(u64::from(sig) & 63, 6);
            self.bits.push_bits(xor >> trailing, sig);
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first sample's time.
    pub fn min_time(&self) -> i64 {
        self.first_t
    }

    /// The last sample's time.
    pub fn max_time(&self) -> i64 {
        self.last_t
    }

    /// The last value appended.
    pub fn last_value_bits(&self) -> u64 {
        self.last_bits
    }

    /// Bytes held by the encoded samples.
    pub fn encoded_bytes(&self) -> usize {
        self.bits.bytes.capacity()
    }

    /// Freezes the chunk into a compact immutable form.
    pub fn freeze(&self) -> FrozenChunk {
        FrozenChunk {
            bytes: self.bits.bytes.clone().into_boxed_slice(),
            count: self.count,
            min_t: self.first_t,
            max_t: self.last_t,
        }
    }

    /// Decodes every sample.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(&self.bits.bytes, self.count)
    }
}

/// A closed chunk: the encoded bits and its time range, for pruning without decoding.
#[derive(Clone, Debug)]
pub struct FrozenChunk {
    bytes: Box<[u8]>,
    count: u32,
    /// First sample's time.
    pub min_t: i64,
    /// Last sample's time.
    pub max_t: i64,
}

impl FrozenChunk {
    /// Decodes every sample.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(&self.bytes, self.count)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Bytes of memory held.
    pub fn memory_bytes(&self) -> usize {
        self.bytes.len() + std::mem::size_of::<Self>()
    }
}

/// Decodes samples `(t, value bits)` in order.
pub struct XorIter<'a> {
    r: BitReader<'a>,
    remaining: u32,
    read: u32,
    t: i64,
    delta: i64,
    vbits: u64,
    leading: u8,
    trailing: u8,
}

impl<'a> XorIter<'a> {
    fn new(bytes: &'a [u8], count: u32) -> Self {
        XorIter {
            r: BitReader { bytes, pos: 0 },
            remaining: count,
            read: 0,
            t: 0,
            delta: 0,
            vbits: 0,
            leading: 0,
            trailing: 0,
        }
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.bit()? {
            return Some(());
        }
        if self.r.bit()? {
            self.leading = self.r.bits(5)? as u8;
            let mut sig = self.r.bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            self.trailing = 64u8.saturating_sub(self.leading + sig);
        }
        let sig = 64 - self.leading - self.trailing;
        let xor = self.r.bits(sig)? << self.trailing;
        self.vbits ^= xor;
        Some(())
    }

    fn next_sample(&mut self) -> Option<(i64, f64)> {
        match self.read {
            0 => {
                self.t = self.r.bits(64)? as i64;
                self.vbits = self.r.bits(64)?;
            }
            1 => {
                self.delta = self.r.bits(64)? as i64;
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
            _ => {
                let mut dod = 0i64;
                if self.r.bit()? {
                    let mut bucket = 0;
                    while bucket < 3 && self.r.bit()? {
                        bucket += 1;
                    }
                    let n = DOD_BUCKETS[bucket].2;
                    let raw = self.r.bits(n)?;
                    dod = if n == 64 {
                        raw as i64
                    } else {
                        // Sign-extend an n-bit two's complement number.
                        let shift = 64 - u32::from(n);
                        ((raw << shift) as i64) >> shift
                    };
                }
                self.delta = self.delta.wrapping_add(dod);
                self.t = self.t.wrapping_add(self.delta);
                self.read_value()?;
            }
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.vbits)))
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        self.next_sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) {
        let mut c = XorChunk::default();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let back: Vec<(i64, u64)> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        assert_eq!(back, want);
        let frozen: Vec<(i64, u64)> = c.freeze().iter().map(|(t, v)| (t, v.to_bits())).collect();
        assert_eq!(frozen, want);
    }

    #[test]
    fn regular_scrapes_compress_to_a_few_bits_per_sample() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i / 10) as f64))
            .collect();
        round_trip(&samples);
        let mut c = XorChunk::default();
        samples.iter().for_each(|&(t, v)| c.append(t, v));
        assert!(c.bits.bytes.len() < 120, "{} bytes for 120 samples", c.bits.bytes.len());
    }

    #[test]
    fn special_values_and_extreme_times_round_trip() {
        round_trip(&[
            (i64::MIN / 2, f64::NAN),
            (-1, -0.0),
            (0, f64::INFINITY),
            (1, f64::from_bits(tidewatch_model::STALE_NAN_BITS)),
            (1 << 40, f64::MIN_POSITIVE),
            (i64::MAX / 2, f64::MAX),
        ]);
    }

    proptest! {
        #[test]
        fn any_increasing_series_round_trips(start in -1_000_000_000_000i64..1_000_000_000_000, steps in proptest::collection::vec((1i64..100_000_000, any::<u64>(), 0u8..3), 0..300)) {
            let mut t = start;
            let mut last = 0.0f64;
            let mut samples = Vec::new();
            for (dt, bits, kind) in steps {
                t += dt;
                // Mix repeated values, small changes and arbitrary bit patterns.
                let v = match kind { 0 => last, 1 => last + (bits % 1000) as f64, _ => f64::from_bits(bits) };
                samples.push((t, v));
                last = v;
            }
            round_trip(&samples);
        }
    }
}
