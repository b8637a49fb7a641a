//! Time as the database stores it: unix milliseconds, shown as RFC 3339.

/// One day in milliseconds: download limits count per UTC day.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_millis() as i64
}

/// Formats unix milliseconds as RFC 3339 (UTC, second precision).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses RFC 3339 into unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Seconds from `now` until the next UTC day starts (at least 1).
pub fn secs_until_next_day(now: i64) -> u64 {
    let day = now / DAY_MS;
    (((day + 1) * DAY_MS - now) / 1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_at_second_precision() {
        let ms = 1_700_000_000_123;
        assert_eq!(rfc3339(ms), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(1_700_000_000_000));
    }

    #[test]
    fn the_next_day_is_never_zero_seconds_away() {
        assert_eq!(secs_until_next_day(DAY_MS - 1), 1);
        assert_eq!(secs_until_next_day(DAY_MS), 24 * 3600);
    }
}
