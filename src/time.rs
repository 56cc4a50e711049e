//! RFC 3339 instants without a date crate: format a `SystemTime` as UTC with `Z`
//! and parse the forms Docker, Kubernetes and Swarm emit (fractional seconds,
//! `Z` or `±hh:mm`). Health reports need both (CONTRACT §2.4, §8.4). Also the
//! one retry schedule every loop uses: doubling from a first delay, capped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The delay before attempt `attempt` (1, 2, 3 …) of something that keeps
/// failing: `first`, then doubled each time, never more than `cap`.
pub fn doubling(first: Duration, attempt: u32, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    first.saturating_mul(1u32 << doublings).min(cap)
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC). Times before 1970 print as the epoch.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// 10000-01-01T00:00:00Z in seconds since the epoch.
const YEAR_10000: i64 = 253_402_300_800;

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an RFC 3339 instant. Returns `None` for anything else, and for
/// Docker's "unknown" marker `0001-01-01T00:00:00Z` (any year before 1970).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    // Every valid instant is ASCII; refusing the rest up front makes each byte
    // offset below a character boundary (a `é` in the zone used to panic, issue 12).
    if s.len() < 20 || !s.is_ascii() {
        return None;
    }
    let (date, rest) = s.split_at(10);
    let sep = rest.as_bytes().first()?;
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let (clock, zone) = rest[1..].split_at(8);
    // Fixed widths (`YYYY-MM-DD`, `hh:mm:ss`): found by fuzzing, `22100-5-19`
    // was read as year 22100, month 5, an instant no RFC 3339 text can print.
    let (d, c) = (date.as_bytes(), clock.as_bytes());
    if d[4] != b'-' || d[7] != b'-' || c[2] != b':' || c[5] != b':' {
        return None;
    }
    let y = i64::from(num(&date[..4])?);
    let (mo, da) = (num(&date[5..7])?, num(&date[8..10])?);
    let (h, mi, se) = (num(&clock[..2])?, num(&clock[3..5])?, num(&clock[6..8])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut zone = zone;
    let mut nanos: u32 = 0;
    if let Some(frac) = zone.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let digits = &frac[..end];
        if digits.is_empty() {
            return None;
        }
        let mut padded: String = digits.chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = num(&padded)?;
        zone = &frac[end..];
    }
    let offset: i64 = match zone {
        "Z" | "z" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) && &z[3..4] == ":" => {
            let mag = i64::from(num(&z[1..3])?) * 3600 + i64::from(num(&z[4..6])?) * 60;
            if z.starts_with('-') { -mag } else { mag }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, da) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(se)
        - offset;
    // Before 1970 is Docker's "unknown"; from year 10000 on, the instant has no
    // RFC 3339 text (`9999-12-31T23:59:59-01:00`).
    if !(0..YEAR_10000).contains(&secs) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_737_304_051_123);
        let s = format_rfc3339(t);
        assert_eq!(s, "2025-01-19T16:27:31.123Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
    }

    #[test]
    fn parses_docker_nanoseconds_and_offsets() {
        let t = parse_rfc3339("2025-01-19T16:27:31.123456789Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            123_456_789
        );
        let a = parse_rfc3339("2025-01-19T17:27:31+01:00").unwrap();
        let b = parse_rfc3339("2025-01-19T16:27:31Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z")
                .map(format_rfc3339)
                .as_deref(),
            Some("2000-02-29T00:00:00.000Z")
        );
    }

    #[test]
    fn rejects_unknown_marker_and_garbage() {
        assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339(""), None);
        assert_eq!(parse_rfc3339("yesterday at noon ok"), None);
        assert_eq!(parse_rfc3339("2025-13-19T16:27:31Z"), None);
        assert_eq!(parse_rfc3339("2025-01-19T16:27:31"), None);
        assert_eq!(parse_rfc3339("2025-01-19T16:27:31é"), None);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/rfc3339.rs): fields of other widths
    /// were accepted, and instants past year 9999 printed as text that does not
    /// parse back.
    #[test]
    fn fields_have_their_fixed_widths_and_years_stop_at_9999() {
        assert_eq!(parse_rfc3339("22100-5-19T17:27:31+01:00"), None);
        assert_eq!(parse_rfc3339("2025-1-019T17:27:31+01:00"), None);
        assert_eq!(parse_rfc3339("2025-01-19T7:27:310+01:00"), None);
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59-01:00"), None);
        let last = parse_rfc3339("9999-12-31T23:59:59.999Z").unwrap();
        assert_eq!(format_rfc3339(last), "9999-12-31T23:59:59.999Z");
    }

    /// Issue 12: the zone was sliced at byte offsets, so a multi-byte character
    /// there panicked (exit 70 while planning, in a restart loop).
    #[test]
    fn multi_byte_characters_anywhere_are_refused_without_a_panic() {
        for s in [
            "2025-01-19T16:27:31+0é00",
            "2025-01-19T16:27:31+é:00",
            "2025-01-19T16:27:31+01:é",
            "2025-01-19T16:27:31.1é",
            "2025-01-19T16:27:31.é00Z",
            "2025-01-19T16:27:3é",
            "é025-01-19T16:27:31Z",
            "2025-01-19T16:27:31+01:0é",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }
}
