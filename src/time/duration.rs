//! Durations written as `250ms`, `30s`, `5m`, `24h`, `7d` or combined (`1h30m`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration in milliseconds, written with unit suffixes in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub i64);

impl Dur {
    pub const fn secs(s: i64) -> Self {
        Dur(s * 1000)
    }
    pub const fn mins(m: i64) -> Self {
        Dur(m * 60_000)
    }
    pub const fn hours(h: i64) -> Self {
        Dur(h * 3_600_000)
    }
    pub fn ms(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub fn parse(s: &str) -> Result<Dur, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        if s == "0" {
            return Ok(Dur(0));
        }
        let mut total: i64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("`{s}` is not a duration like 250ms, 30s, 5m, 24h"));
            }
            let n: i64 = rest[..digits].parse().map_err(|_| format!("`{s}` is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(format!("`{s}` needs a unit (ms, s, m, h, d)")),
                u => return Err(format!("`{u}` is not a duration unit (ms, s, m, h, d)")),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| format!("`{s}` is too large"))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s"), (1, "ms")];
        if ms == 0 {
            return f.write_str("0s");
        }
        for (size, name) in units {
            if ms % size == 0 {
                return write!(f, "{}{}", ms / size, name);
            }
        }
        unreachable!("1 ms divides everything")
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(Dur::parse("250ms"), Ok(Dur(250)));
        assert_eq!(Dur::parse("5m"), Ok(Dur::mins(5)));
        assert_eq!(Dur::parse("1h30m"), Ok(Dur(5_400_000)));
        assert_eq!(Dur::parse("24h"), Ok(Dur::hours(24)));
        assert!(Dur::parse("5").is_err());
        assert!(Dur::parse("5 minutes").is_err());
        assert!(Dur::parse("-5m").is_err());
        assert_eq!(Dur::parse("90s").unwrap().to_string(), "90s");
        assert_eq!(Dur::parse("1h30m").unwrap().to_string(), "90m");
    }
}
