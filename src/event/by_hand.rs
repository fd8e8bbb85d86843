//! The fields of a detection read by hand from the line, for the plain lines nearly every stream
//! is made of (issue 21: serde's derived visitor was most of the parse stage's time).
//!
//! It takes only the simplest form of what serde_json would take into `RawDetection`, and returns
//! None at anything else, which sends the line on to serde (and then to the general parser). It
//! reads strings without escapes or control characters, numbers without exponents (and, where a
//! field wants an unsigned integer or a score, without sign or fraction as the field requires),
//! `null` where the field is optional, each known key at most once (serde rejects a repeated
//! field), and skips the values of unknown keys after checking their JSON syntax. Exposure other
//! than `null` is left to the general parser. Whatever it returns, serde_json returns the same
//! for the line: differential property tests in `fast.rs` hold the two together.
//!
//! A line it reads is also one the general parser (a `serde_json::Value`) takes, so it needs no
//! `fast::plain` check first: it has no escapes (so no surrogate), no number with an exponent or
//! over 300 digits before its point (so every number fits an f64), no nesting beyond 100, and the
//! caller has checked that the whole line is UTF-8.

use std::borrow::Cow;

use super::fast::RawDetection;

/// Nesting a line may have, counting its outer object (`fast::plain`'s bound; the general
/// parser's own limit is 128): a skipped value at depth d opens depth d + 1.
const MAX_DEPTH: usize = 100;

struct Cursor<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &str) -> bool {
        self.ws();
        let found = self.text[self.i..].starts_with(word);
        if found {
            self.i += word.len();
        }
        found
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let len = string_len(&self.bytes()[start..])?;
        self.i = start + len + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..start + len)
    }

    /// A number token `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most 300 digits before its point
    /// (None for an exponent or more digits: `fast::plain`'s bounds); the caller then checks what
    /// follows it. Returns the token, and its digits as an integer with the number of digits after
    /// the point where they fit a u64 (at most 19 digits in all).
    fn number(&mut self) -> Option<Number<'a>> {
        self.ws();
        let b = self.bytes();
        let start = self.i;
        let negative = b.get(start) == Some(&b'-');
        let mut i = start + negative as usize;
        let integer = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count(),
            _ => return None,
        }
        if i - integer > 300 {
            return None;
        }
        let mut scale = 0;
        if b.get(i) == Some(&b'.') {
            scale = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if scale == 0 {
                return None;
            }
            i += 1 + scale;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.i = i;
        // At most 19 digits fit a u64 (10^19 − 1 < 2^64).
        let digits = (i - integer - (scale > 0) as usize <= 19).then(|| {
            b[integer..i].iter().filter(|c| c.is_ascii_digit()).fold(0u64, |n, c| n * 10 + u64::from(c - b'0'))
        });
        Some(Number { text: &self.text[start..i], negative, digits, scale })
    }

    /// An unsigned integer as serde reads a `u64` (no sign, no fraction, in range).
    fn unsigned(&mut self) -> Option<u64> {
        let t = self.number()?;
        if t.negative || t.scale > 0 {
            return None;
        }
        t.digits.or_else(|| t.text.parse().ok())
    }

    /// `null`, else `f`'s value.
    fn optional<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal("null") { Some(None) } else { f(self).map(Some) }
    }

    /// An array of unsigned numbers (scores and qualities; a sign is left to serde), into `v`
    /// (a vector done with, so that its allocation is reused).
    fn units(&mut self, mut v: Vec<f64>) -> Option<Vec<f64>> {
        self.eat(b'[')?;
        v.clear();
        v.reserve(16);
        if self.eat(b']').is_some() {
            return Some(v);
        }
        loop {
            let t = self.number()?;
            if t.negative {
                return None;
            }
            v.push(t.value()?);
            if self.eat(b',').is_some() {
                continue;
            }
            self.eat(b']')?;
            return Some(v);
        }
    }

    /// Any JSON value at nesting `depth`, checked and skipped.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            open @ (b'[' | b'{') if depth < MAX_DEPTH => {
                let close = if open == b'[' { b']' } else { b'}' };
                self.i += 1;
                if self.eat(close).is_some() {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        self.string()?;
                        self.eat(b':')?;
                    }
                    self.skip(depth + 1)?;
                    if self.eat(b',').is_some() {
                        continue;
                    }
                    return self.eat(close);
                }
            }
            _ => None,
        }
    }
}

/// A number token as [`Cursor::number`] read it.
struct Number<'a> {
    text: &'a str,
    negative: bool,
    /// All its digits as one integer, where they are at most 19.
    digits: Option<u64>,
    /// How many of them follow the point.
    scale: usize,
}

impl Number<'_> {
    /// The f64 nearest the token, as serde_json (`float_roundtrip`) and `str::parse` read it.
    /// Where its digits are an integer of at most 2^53 and at most 22 follow the point, that is
    /// one division of two exactly represented numbers, which IEEE 754 rounds correctly (Clinger's
    /// fast path, which `str::parse` also takes, after more work to find it applies).
    fn value(&self) -> Option<f64> {
        const POWERS: [f64; 23] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
            1e19, 1e20, 1e21, 1e22,
        ];
        match self.digits {
            Some(n) if n <= 1 << 53 && self.scale < POWERS.len() => {
                let x = n as f64 / POWERS[self.scale];
                Some(if self.negative { -x } else { x })
            }
            _ => self.text.parse().ok(),
        }
    }
}

/// Where the string starting at `b[0]` closes: the index of its closing quote (None at a
/// backslash or control character before it, or without one). Eight bytes at a time: a byte
/// equal to `"` or `\`, or below 0x20, sets the top bit of its lane in `special`, and no lane
/// below the first such byte is set (the subtractions borrow only from a lane that matched), so
/// the lowest set bit is the first such byte.
fn string_len(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const TOPS: u64 = ONES << 7;
    let below = |w: u64, c: u8| w.wrapping_sub(ONES * u64::from(c)) & !w & TOPS;
    let mut at = 0;
    while let Some(chunk) = b.get(at..at + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let special = below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20);
        if special != 0 {
            at += special.trailing_zeros() as usize / 8;
            return (b[at] == b'"').then_some(at);
        }
        at += 8;
    }
    let rest = b[at..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
    (b[at + rest] == b'"').then_some(at + rest)
}

/// The detection fields of `line` if it is a JSON object in the simple form described above (None:
/// let serde read it). Whether they make a valid detection is for the caller to check.
/// `scores` and `quality` are vectors done with, whose allocations the arrays are read into.
pub(super) fn detection(line: &str, [mut scores_buf, mut quality_buf]: [Vec<f64>; 2]) -> Option<RawDetection<'_>> {
    let mut c = Cursor { text: line, i: 0 };
    c.eat(b'{')?;
    let (mut schema_version, mut kind, mut event_id, mut deployment_id) = (None, None, None, None);
    let (mut system, mut source_id, mut ts, mut ts_emitted, mut count) = (None, None, None, None, None);
    let (mut scores, mut quality, mut canary_passes) = (None, None, None);
    // Each known key once: serde rejects a repeated field.
    let mut seen = 0u16;
    if c.eat(b'}').is_none() {
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            let bit = match key {
                "schema_version" => 0,
                "type" => 1,
                "event_id" => 2,
                "deployment_id" => 3,
                "system" => 4,
                "source_id" => 5,
                "ts" => 6,
                "ts_emitted" => 7,
                "count" => 8,
                "scores" => 9,
                "quality" => 10,
                "exposure" => 11,
                "canary_passes" => 12,
                _ => 15,
            };
            if bit < 15 {
                if seen & (1 << bit) != 0 {
                    return None;
                }
                seen |= 1 << bit;
            }
            match bit {
                0 => schema_version = Some(c.unsigned()?),
                1 => kind = Some(c.string()?),
                2 => event_id = Some(c.string()?),
                3 => deployment_id = Some(c.string()?),
                4 => system = Some(c.string()?),
                5 => source_id = Some(c.string()?),
                6 => ts = Some(c.string()?),
                7 => ts_emitted = c.optional(Cursor::string)?,
                8 => count = Some(c.unsigned()?),
                9 => scores = c.optional(|c| c.units(std::mem::take(&mut scores_buf)))?,
                10 => quality = c.optional(|c| c.units(std::mem::take(&mut quality_buf)))?,
                // Exposure tables are the general parser's.
                11 => c.literal("null").then_some(())?,
                12 => canary_passes = c.optional(Cursor::unsigned)?,
                _ => c.skip(1)?,
            }
            if c.eat(b',').is_some() {
                continue;
            }
            c.eat(b'}')?;
            break;
        }
    }
    c.ws();
    if c.i != line.len() {
        return None;
    }
    Some(RawDetection {
        schema_version: schema_version?,
        kind: Cow::Borrowed(kind?),
        event_id: Cow::Borrowed(event_id?),
        deployment_id: Cow::Borrowed(deployment_id?),
        system: Cow::Borrowed(system?),
        source_id: Cow::Borrowed(source_id?),
        ts: Cow::Borrowed(ts?),
        ts_emitted: ts_emitted.map(Cow::Borrowed),
        count: count?,
        scores,
        quality,
        exposure: None,
        canary_passes,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The eight-bytes-at-a-time scan finds what a scan byte by byte finds, on strings of the
        /// bytes that matter to it (and their neighbours in value) at every offset of a word.
        #[test]
        fn string_len_equals_the_bytewise_scan(
            bytes in proptest::collection::vec(prop::sample::select(
                vec![b'a', b'"', b'\\', 0x00, 0x01, 0x1F, 0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xA2, 0xDC, 0xFF]), 0..40),
        ) {
            let bytewise = bytes
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .filter(|&at| bytes[at] == b'"');
            prop_assert_eq!(super::string_len(&bytes), bytewise, "{:?}", bytes);
        }
    }
}
