//! oneM2M time values (TS-0004 §6.3.3): `m2m:timestamp` is `YYYYMMDDThhmmss[,ffffff]` in UTC (ISO 8601
//! basic format), and `m2m:absRelTimestamp` is either such a timestamp or a relative offset in
//! milliseconds. ACME also accepts numeric strings and ISO 8601 durations (`PT5S`) as relative values,
//! so they are accepted here too.
//!
//! Times are Unix milliseconds; the calendar math is the days-from-civil algorithm, so no date crate
//! is needed for this one format.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds.
pub type UnixMillis = i64;

/// The current time as Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')))
}

/// Parse `YYYYMMDDThhmmss[,ffffff]` (a `.` separator is tolerated) into Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<UnixMillis> {
    let b = s.as_bytes();
    if b.len() < 15 || b[8] != b'T' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[4..6])?, digits(&b[6..8])?);
    let (h, mi, se) = (digits(&b[9..11])?, digits(&b[11..13])?, digits(&b[13..15])?);
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let month_days = [
        31,
        28 + i64::from(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > month_days[(mo - 1) as usize] {
        return None;
    }
    let mut millis = 0;
    if b.len() > 15 {
        if !matches!(b[15], b',' | b'.') || b.len() == 16 || b.len() > 22 {
            return None;
        }
        let frac = &b[16..];
        let value = digits(frac)?;
        millis = value * 1000 / 10i64.pow(frac.len() as u32);
    }
    Some((days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se) * 1000 + millis)
}

/// Format Unix milliseconds as `YYYYMMDDThhmmss` (with `,ffffff` when `fraction`).
pub fn format_timestamp(t: UnixMillis, fraction: bool) -> String {
    let secs = t.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let base = format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if fraction {
        format!("{base},{:06}", t.rem_euclid(1000) * 1000)
    } else {
        base
    }
}

/// Parse an ISO 8601 duration such as `PT5S`, `P1DT2H`, `PT0.5S` into milliseconds.
fn parse_duration(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    let (mut total, mut in_time, mut number, mut any) = (0f64, false, String::new(), false);
    for c in rest.chars() {
        match c {
            'T' if !in_time && number.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => number.push(if c == ',' { '.' } else { c }),
            unit => {
                let n: f64 = number.parse().ok()?;
                number.clear();
                any = true;
                total += n * match (unit, in_time) {
                    ('W', false) => 604_800_000.0,
                    ('D', false) => 86_400_000.0,
                    ('H', true) => 3_600_000.0,
                    ('M', true) => 60_000.0,
                    ('S', true) => 1000.0,
                    _ => return None,
                };
            }
        }
    }
    (any && number.is_empty()).then_some(total as i64)
}

/// An `m2m:absRelTimestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsRelTime {
    Absolute(UnixMillis),
    /// Milliseconds from when the primitive was received.
    Relative(i64),
}

impl AbsRelTime {
    /// Parse from a string (timestamp, digits, or ISO duration).
    pub fn parse_str(s: &str) -> Option<Self> {
        if let Some(t) = parse_timestamp(s) {
            return Some(Self::Absolute(t));
        }
        let unsigned = s.strip_prefix('-').unwrap_or(s);
        if !unsigned.is_empty()
            && unsigned.len() < 19
            && unsigned.bytes().all(|b| b.is_ascii_digit())
        {
            return s.parse().ok().map(Self::Relative);
        }
        parse_duration(s).map(Self::Relative)
    }

    /// The absolute time, given when the primitive was received.
    pub fn resolve(self, received: UnixMillis) -> UnixMillis {
        match self {
            Self::Absolute(t) => t,
            Self::Relative(ms) => received.saturating_add(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("20261126T112059").unwrap();
        assert_eq!(format_timestamp(t, false), "20261126T112059");
        assert_eq!(parse_timestamp("19700101T000000"), Some(0));
        assert_eq!(
            parse_timestamp("20261126T112050,553471").unwrap() % 1000,
            553
        );
        assert_eq!(
            parse_timestamp("20000229T000000")
                .map(|t| format_timestamp(t, false))
                .unwrap(),
            "20000229T000000"
        );
        for bad in [
            "2026-11-26T11:20:59",
            "20261126 112059",
            "20261326T112059",
            "20230229T000000",
            "20261126T112059,",
            "20261126T2",
            "20261126T112059Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn abs_rel_forms() {
        assert_eq!(
            AbsRelTime::parse_str("5000"),
            Some(AbsRelTime::Relative(5000))
        );
        assert_eq!(
            AbsRelTime::parse_str("PT5S"),
            Some(AbsRelTime::Relative(5000))
        );
        assert_eq!(
            AbsRelTime::parse_str("P1DT1H"),
            Some(AbsRelTime::Relative(90_000_000))
        );
        assert_eq!(
            AbsRelTime::parse_str("PT0.5S"),
            Some(AbsRelTime::Relative(500))
        );
        assert!(matches!(
            AbsRelTime::parse_str("20261126T112059"),
            Some(AbsRelTime::Absolute(_))
        ));
        assert_eq!(AbsRelTime::parse_str("soon"), None);
        assert_eq!(AbsRelTime::parse_str("P"), None);
        assert_eq!(AbsRelTime::Relative(10).resolve(5), 15);
    }
}
