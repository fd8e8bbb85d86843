//! The wall clock, in one place (every layer that stamps receive times or records reads it).

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
