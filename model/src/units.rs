//! Durations and byte sizes as people write them in configuration files: `30s`, `1h30m`,
//! `512MiB`. Both deserialize from a string (and, for sizes, a plain integer of bytes), and
//! serialize back to the same human form so `/api/v1/status/config` round-trips.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The duration text is not of the form `1h30m`, `500ms`, `15d`.
    #[error("invalid duration {text:?}: {reason} (expected e.g. 500ms, 30s, 5m, 1h30m, 15d)")]
    Duration {
        /// What was given.
        text: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The size text is not of the form `512MiB`, `1GB`, `4096`.
    #[error("invalid size {text:?}: {reason} (expected e.g. 4096, 64KiB, 512MiB, 2GiB, 1GB)")]
    Size {
        /// What was given.
        text: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A span of time written as Prometheus writes it (`1h30m`, `15d`, `500ms`).
///
/// `humantime` does the parsing (it accepts Prometheus' units and their concatenation); a bare
/// number is refused because `30` could mean seconds or milliseconds and the reader cannot know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of whole milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The standard library's duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| UnitError::Duration {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') && trimmed != "0" {
            return Err(err("a unit is required"));
        }
        if trimmed == "0" {
            return Ok(Duration(std::time::Duration::ZERO));
        }
        humantime::parse_duration(trimmed)
            .map(Duration)
            .map_err(|e| err(&e.to_string()))
    }
}

impl fmt::Display for Duration {
    /// Prometheus' own form: the largest units first, no spaces (`1h30m`, `250ms`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(&str, u128); 6] = [
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        for (unit, size) in UNITS {
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `String::deserialize` then `parse`: the error is then raised
        // while the deserializer still points at the value, so YAML errors carry its position.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 30s, 5m, 1h30m or 15d")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A number of bytes, written with SI (`kB`, `MB`, `GB`) or IEC (`KiB`, `MiB`, `GiB`) units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

const SIZE_UNITS: [(&str, u64); 13] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    // Prometheus' --storage.tsdb.retention.size accepts the short forms as powers of two.
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| UnitError::Size {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        if number.is_empty() {
            return Err(err("no number"));
        }
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| err("unknown unit"))?
        };
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(|| err("too large"));
        }
        let value: f64 = number.parse().map_err(|_| err("not a number"))?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(err("too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest IEC unit that divides the size exactly, so the text parses back to the same
    /// number of bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{}", self.0 / size, unit);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 512MiB, 1GB or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_prometheus_forms() {
        let d = |s: &str| s.parse::<Duration>().unwrap().0.as_millis();
        assert_eq!(d("500ms"), 500);
        assert_eq!(d("30s"), 30_000);
        assert_eq!(d("1h30m"), 5_400_000);
        assert_eq!(d("15d"), 15 * 86_400_000);
        assert_eq!(d("1w"), 7 * 86_400_000);
        assert_eq!(d("0"), 0);
    }

    #[test]
    fn durations_refuse_bare_numbers_and_garbage() {
        for bad in ["", "30", "1.5", "thirty seconds", "5 parsecs", "-5s"] {
            let err = bad.parse::<Duration>().unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn sizes_parse_si_and_iec() {
        let s = |t: &str| t.parse::<ByteSize>().unwrap().0;
        assert_eq!(s("4096"), 4096);
        assert_eq!(s("64KiB"), 65_536);
        assert_eq!(s("512MiB"), 512 << 20);
        assert_eq!(s("1GB"), 1_000_000_000);
        assert_eq!(s("1.5GiB"), 3 << 29);
        assert_eq!(s("2 mib"), 2 << 20);
        for bad in ["", "MiB", "12 parsecs", "99999999999999999999TiB", "-1MiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn sizes_deserialize_from_numbers_and_strings() {
        let n: ByteSize = yaml_serde::from_str("1048576").unwrap();
        let s: ByteSize = yaml_serde::from_str("1MiB").unwrap();
        assert_eq!(n, s);
        assert!(yaml_serde::from_str::<ByteSize>("-3").is_err());
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn size_display_round_trips(bytes in 0u64..(1 << 50)) {
            let b = ByteSize(bytes);
            prop_assert_eq!(b.to_string().parse::<ByteSize>().unwrap(), b);
        }
    }
}
