//! UTC timestamps in the RFC 3339 form Sentinel ingests, without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-06-06T09:30:11.412Z` for a point in time.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Accepts `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[ UTC]` (the ThreatFox form) or an RFC 3339 time
/// and returns it as RFC 3339 in UTC; `None` when it is none of these.
pub fn parse_date_or_time(text: &str) -> Option<String> {
    let text = text.trim();
    let date = text.get(..10)?;
    check_date(date)?;
    let rest = &text[10..];
    if rest.is_empty() {
        return Some(format!("{date}T00:00:00Z"));
    }

    let rest = rest.strip_prefix(['T', ' '])?;
    let clock = rest.get(..8)?;
    check_clock(clock)?;
    let zone = rest[8..].trim();
    let zone = match zone {
        "" | "Z" | "UTC" | "+00:00" => "Z",
        fraction_then_zone if fraction_then_zone.starts_with('.') => {
            return fraction_then_zone
                .ends_with('Z')
                .then(|| format!("{date}T{clock}{fraction_then_zone}"));
        }
        _ => return None,
    };
    Some(format!("{date}T{clock}{zone}"))
}

fn check_date(date: &str) -> Option<()> {
    let bytes = date.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9]
        .iter()
        .all(|&i| bytes[i].is_ascii_digit());
    let month: u32 = date.get(5..7)?.parse().ok()?;
    let day: u32 = date.get(8..10)?.parse().ok()?;
    (digits && bytes[4] == b'-' && bytes[7] == b'-' && (1..=12).contains(&month))
        .then_some(())
        .filter(|()| (1..=31).contains(&day))
}

fn check_clock(clock: &str) -> Option<()> {
    let bytes = clock.as_bytes();
    let digits = [0, 1, 3, 4, 6, 7]
        .iter()
        .all(|&i| bytes[i].is_ascii_digit());
    (digits && bytes[2] == b':' && bytes[5] == b':').then_some(())
}

/// Seconds since the Unix epoch of an RFC 3339 time in UTC as [`parse_date_or_time`] returns
/// it (fractions ignored); `None` for other text.
pub fn epoch_seconds(rfc3339: &str) -> Option<i64> {
    let normal = parse_date_or_time(rfc3339)?;
    let number = |range: std::ops::Range<usize>| normal.get(range)?.parse::<i64>().ok();
    let days = days_from_civil(number(0..4)?, number(5..7)?, number(8..10)?);
    let clock = number(11..13)? * 3600 + number(14..16)? * 60 + number(17..19)?;
    Some(days * 86_400 + clock)
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let time = UNIX_EPOCH + Duration::from_millis(1_780_738_211_412);
        assert_eq!(rfc3339_millis(time), "2026-06-06T09:30:11.412Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn converts_times_to_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01"), Some(0));
        assert_eq!(
            epoch_seconds("2026-06-06 09:30:11 UTC"),
            Some(1_780_738_211)
        );
        assert_eq!(epoch_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(epoch_seconds("yesterday"), None);
    }

    #[test]
    fn parses_dates_and_threatfox_times() {
        assert_eq!(
            parse_date_or_time("2026-06-06").unwrap(),
            "2026-06-06T00:00:00Z"
        );
        assert_eq!(
            parse_date_or_time("2026-06-06 08:14:02 UTC").unwrap(),
            "2026-06-06T08:14:02Z"
        );
        assert_eq!(
            parse_date_or_time("2026-06-06T08:14:02.5Z").unwrap(),
            "2026-06-06T08:14:02.5Z"
        );
        for bad in [
            "2026-13-01",
            "06/06/2026",
            "2026-06-06T8:14",
            "2026-06-06 08:14:02 CET",
        ] {
            assert!(parse_date_or_time(bad).is_none(), "{bad}");
        }
    }
}
