//! Time, in one leaf module: event-time milliseconds ([`Millis`]), RFC 3339 formatting, config
//! durations ([`Dur`]) and the one wall clock. Every layer may use it; it uses none of them.
//! Only [`wall_clock_ms`] reads the system clock (`clippy.toml` bans `SystemTime::now`
//! elsewhere); everything else takes the time as a parameter.

mod duration;

pub use duration::Dur;

/// Milliseconds since the Unix epoch (event time or wall time).
pub type Millis = i64;

/// A clock passed into the components that stamp wall time (audit records, sources, the
/// notifier), so tests can drive it: [`wall_clock_ms`] in production.
pub type Clock = fn() -> Millis;

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
#[allow(clippy::disallowed_methods)] // the one place the system clock is read
pub fn wall_clock_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Formats a timestamp as RFC 3339 UTC with millisecond precision when needed.
pub fn format_ts(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

/// Parses RFC 3339 with an offset into epoch milliseconds.
pub fn parse_ts(s: &str) -> Option<Millis> {
    utc(s.as_bytes()).or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis()))
}

/// `YYYY-MM-DDTHH:MM:SS[.f]Z` (1–9 digits of fraction), the form nearly every event's times take,
/// read without chrono (issue 21: chrono's general RFC 3339 parser was a tenth of the parse
/// stage's time on detections): the milliseconds chrono gives, rounded down as chrono's
/// `timestamp_millis` does, or None for any other form or an out-of-range field (a leap second
/// among them), which [`parse_ts`] leaves to chrono. A property test holds the two together.
fn utc(b: &[u8]) -> Option<Millis> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1, rest @ ..] = b else {
        return None;
    };
    let fraction = match rest {
        [b'Z'] => &[][..],
        [b'.', digits @ .., b'Z'] if (1..=9).contains(&digits.len()) => digits,
        _ => return None,
    };
    let mut fields = [0i64; 7];
    for (field, digits) in fields.iter_mut().zip([
        &[*y0, *y1, *y2, *y3][..],
        &[*m0, *m1],
        &[*d0, *d1],
        &[*h0, *h1],
        &[*n0, *n1],
        &[*s0, *s1],
        // Milliseconds: the first three digits of the fraction, the missing ones 0.
        &[
            fraction.first().copied().unwrap_or(b'0'),
            fraction.get(1).copied().unwrap_or(b'0'),
            fraction.get(2).copied().unwrap_or(b'0'),
        ],
    ]) {
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            *field = *field * 10 + i64::from(c - b'0');
        }
    }
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let [year, month, day, hour, minute, second, ms] = fields;
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 => 28 + leap as i64,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms)
}

/// Serialises an optional timestamp as RFC 3339 (serde `serialize_with`).
pub fn ser_opt_ts<S: serde::Serializer>(ts: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.serialize_str(&format_ts(*t)),
        None => s.serialize_none(),
    }
}

/// Serialises a timestamp as RFC 3339 (serde `serialize_with`).
pub fn ser_ts<S: serde::Serializer>(ts: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_ms(s: &str) -> Option<Millis> {
        chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The hand-read form gives chrono's milliseconds wherever it takes a time, over digits
        /// anywhere in range or out of it, and separators, fractions and zones of every kind.
        #[test]
        fn utc_agrees_with_chrono(
            year in prop_oneof![0u32..=9999, 1960u32..2100],
            month in prop_oneof![9 => 1u32..=12, 1 => 0u32..100],
            day in prop_oneof![9 => 1u32..=31, 1 => 0u32..100],
            hour in prop_oneof![9 => 0u32..=23, 1 => 0u32..100],
            minute in prop_oneof![9 => 0u32..=59, 1 => 0u32..100],
            second in prop_oneof![9 => 0u32..=59, 1 => 0u32..100],
            fraction in proptest::collection::vec(prop_oneof![20 => b'0'..=b'9', 1 => Just(b'x')], 0..11),
            point in any::<bool>(),
            separator in prop_oneof![8 => Just(b'T'), 1 => prop::sample::select(vec![b't', b' ', b'-'])],
            zone in prop_oneof![8 => Just("Z"), 1 => prop::sample::select(vec!["z", "+00:00", "+01:30", "-05:00", ""])],
        ) {
            let mut s = format!("{year:04}-{month:02}-{day:02}{}{hour:02}:{minute:02}:{second:02}", separator as char);
            if point {
                s.push('.');
            }
            s.push_str(std::str::from_utf8(&fraction).unwrap());
            s.push_str(zone);
            // `parse_ts` is `utc`, else chrono: equal to chrono wherever `utc` takes the time.
            prop_assert_eq!(parse_ts(&s), chrono_ms(&s), "{}", s);
        }
    }

    /// The fast form is taken where it should be (so the property above compares something), on
    /// every day of four centuries, at the edges of each day, and with each length of fraction.
    #[test]
    fn utc_takes_every_canonical_time() {
        let mut day = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
        while day < chrono::NaiveDate::from_ymd_opt(2300, 1, 1).unwrap() {
            for time in ["00:00:00Z", "23:59:59.999Z", "12:34:56.7Z", "01:02:03.123456789Z"] {
                let s = format!("{day}T{time}");
                assert_eq!(utc(s.as_bytes()), chrono_ms(&s), "{s}");
                assert!(utc(s.as_bytes()).is_some(), "{s}");
            }
            day = day.succ_opt().unwrap();
        }
        for s in ["2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-04-25T24:00:00Z", "2026-04-25T09:00:60Z"] {
            assert_eq!(utc(s.as_bytes()), None, "{s}");
        }
        // A leap second is chrono's to read.
        assert_eq!(parse_ts("2016-12-31T23:59:60Z"), chrono_ms("2016-12-31T23:59:60Z"));
        assert_eq!(parse_ts("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(parse_ts("1969-12-31T23:59:59.999Z"), Some(-1));
    }
}
