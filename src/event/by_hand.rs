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

use std::borrow::Cow;

use super::fast::RawDetection;

/// Nesting a skipped value may have (the general parser's own limit is 128; `plain` sends lines
/// nested beyond 100 to it).
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
        let len = memchr::memchr(b'"', &self.bytes()[start..])?;
        let s = &self.bytes()[start..start + len];
        if s.iter().any(|&c| c < 0x20 || c == b'\\') {
            return None;
        }
        self.i = start + len + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        Some(&self.text[start..start + len])
    }

    /// A number token `-?(0|[1-9][0-9]*)(\.[0-9]+)?` (an exponent: None); the caller then checks
    /// what follows it.
    fn number(&mut self) -> Option<&'a str> {
        self.ws();
        let b = self.bytes();
        let start = self.i;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        self.i = i;
        Some(&self.text[start..i])
    }

    /// An unsigned integer as serde reads a `u64` (no sign, no fraction, in range).
    fn unsigned(&mut self) -> Option<u64> {
        let t = self.number()?;
        if t.starts_with('-') || t.contains('.') {
            return None;
        }
        t.parse().ok()
    }

    /// `null`, else `f`'s value.
    fn optional<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal("null") { Some(None) } else { f(self).map(Some) }
    }

    /// An array of unsigned numbers (scores and qualities; a sign is left to serde).
    fn units(&mut self) -> Option<Vec<f64>> {
        self.eat(b'[')?;
        let mut v = Vec::with_capacity(16);
        if self.eat(b']').is_some() {
            return Some(v);
        }
        loop {
            let t = self.number()?;
            if t.starts_with('-') {
                return None;
            }
            // Correctly rounded, as serde_json's `float_roundtrip` parse.
            v.push(t.parse().ok()?);
            if self.eat(b',').is_some() {
                continue;
            }
            self.eat(b']')?;
            return Some(v);
        }
    }

    /// Any JSON value, checked and skipped.
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

/// The detection fields of `line` if it is a JSON object in the simple form described above (None:
/// let serde read it). Whether they make a valid detection is for the caller to check.
pub(super) fn detection(line: &str) -> Option<RawDetection<'_>> {
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
                9 => scores = c.optional(Cursor::units)?,
                10 => quality = c.optional(Cursor::units)?,
                // Exposure tables are the general parser's.
                11 => c.literal("null").then_some(())?,
                12 => canary_passes = c.optional(Cursor::unsigned)?,
                _ => c.skip(0)?,
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
