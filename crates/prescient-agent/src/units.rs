//! The two kinds of quantity a config file writes with units: intervals
//! (`"100ms"`, `"1s"`, `"2.5m"`) and byte sizes (`"512MiB"`, `1073741824`).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A time interval, written with a unit: `ms`, `s`, `m` or `h`
/// (`"100ms"`, `"1.5s"`), or `d` (days). Kept in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(pub u64);

impl Interval {
    /// From milliseconds.
    pub const fn ms(ms: u64) -> Self {
        Interval(ms)
    }

    /// From seconds.
    pub const fn secs(s: u64) -> Self {
        Interval(s * 1000)
    }

    /// Milliseconds.
    pub fn as_ms(self) -> u64 {
        self.0
    }

    /// Milliseconds, as a timestamp difference.
    pub fn as_ms_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }

    /// As a [`Duration`].
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// Parses `"100ms"`, `"1s"`, `"1.5s"`, `"2m"`, `"1h"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?} has no unit: write e.g. \"500ms\", \"1s\", \"2m\""))?;
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let scale = match unit.trim() {
            "ms" => 1.0,
            "s" => 1e3,
            "m" | "min" => 60e3,
            "h" => 3600e3,
            "d" => 86_400e3,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (expected ms, s, m, h or d)"
                ));
            }
        };
        let ms = n * scale;
        if !ms.is_finite() || ms > 1e15 {
            return Err(format!("{s:?} is too long"));
        }
        if ms.fract() != 0.0 {
            return Err(format!("{s:?} is not a whole number of milliseconds"));
        }
        Ok(Interval(ms as u64))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms != 0 && ms.is_multiple_of(86_400_000) {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms != 0 && ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Interval;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an interval with a unit, e.g. \"500ms\" or \"1s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Interval, E> {
                Interval::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Interval, E> {
                Err(E::custom(format!(
                    "{v} has no unit: write e.g. \"{v}ms\" or \"{v}s\""
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Interval, E> {
                Err(E::custom(format!("{v} has no unit: write e.g. \"{v}s\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number of bytes: an integer, or a string with a unit (`B`, binary
/// `KiB` `MiB` `GiB` `TiB`, decimal `KB` `MB` `GB` `TB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"512MiB"`, `"1.5GiB"`, `"4096"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?}: {num:?} is not a number"))?;
        let scale: f64 = match unit.trim() {
            "" | "B" => 1.0,
            "KiB" | "K" => 1024.0,
            "MiB" | "M" => 1024.0 * 1024.0,
            "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
            "TiB" | "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            "KB" | "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            "TB" => 1e12,
            u => {
                return Err(format!(
                    "{s:?}: unknown unit {u:?} (expected B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                ));
            }
        };
        let b = n * scale;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(ByteSize(b.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (u, m) in UNITS {
            if self.0 != 0 && self.0.is_multiple_of(m) {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes, e.g. 1073741824 or \"1GiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v}: a size cannot be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                    Ok(ByteSize(v.round() as u64))
                } else {
                    Err(E::custom(format!("{v} is not a size in bytes")))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(Interval::parse("100ms"), Ok(Interval(100)));
        assert_eq!(Interval::parse("1.5s"), Ok(Interval(1500)));
        assert_eq!(Interval::parse("2m"), Ok(Interval(120_000)));
        assert!(Interval::parse("10").unwrap_err().contains("no unit"));
        assert!(Interval::parse("1x").unwrap_err().contains("unknown unit"));
        assert!(Interval::parse("0.1ms").is_err());
        for ms in [0, 100, 1000, 1500, 60_000, 3_600_000] {
            assert_eq!(Interval::parse(&Interval(ms).to_string()), Ok(Interval(ms)));
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(ByteSize::parse("512MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1GB"), Ok(ByteSize(1_000_000_000)));
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert!(ByteSize::parse("1 XB").is_err());
        assert!(ByteSize::parse("-1").is_err());
        for b in [0, 1, 4096, 1 << 20, 3 << 30, 12345] {
            assert_eq!(ByteSize::parse(&ByteSize(b).to_string()), Ok(ByteSize(b)));
        }
    }
}
