//! UTC timestamps with microsecond precision, written as RFC 3339
//! (`2025-01-31T23:59:59.123456Z`, always six fraction digits and `Z`).
//!
//! The fixed width makes the textual form sort in time order, which the audit query uses.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds in one day.
const MICROS_PER_DAY: i64 = 86_400_000_000;
/// 0000-01-01T00:00:00Z in microseconds since the Unix epoch.
const MIN_MICROS: i64 = -62_167_219_200_000_000;
/// 9999-12-31T23:59:59.999999Z in microseconds since the Unix epoch.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// An instant in UTC with microsecond precision, between years 0000 and 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    micros: i64,
}

/// A string that is not an RFC 3339 timestamp this module accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp: {reason}")]
pub struct TimeError {
    reason: &'static str,
}

fn bad(reason: &'static str) -> TimeError {
    TimeError { reason }
}

impl Timestamp {
    /// The current system time (clamped to the supported range).
    pub fn now() -> Self {
        let micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(MAX_MICROS),
            Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(-MIN_MICROS),
        };
        Self::from_unix_micros(micros)
    }

    /// From microseconds since 1970-01-01T00:00:00Z (clamped to years 0000..=9999).
    pub const fn from_unix_micros(micros: i64) -> Self {
        let micros = if micros < MIN_MICROS {
            MIN_MICROS
        } else if micros > MAX_MICROS {
            MAX_MICROS
        } else {
            micros
        };
        Self { micros }
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub const fn unix_micros(self) -> i64 {
        self.micros
    }

    /// Appends the RFC 3339 form (27 bytes) to `out` without allocating.
    pub fn write_rfc3339(self, out: &mut Vec<u8>) {
        let days = self.micros.div_euclid(MICROS_PER_DAY);
        let in_day = self.micros.rem_euclid(MICROS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / 1_000_000;
        let frac = in_day % 1_000_000;
        let mut buf = [0u8; 27];
        put_digits(&mut buf[0..4], year);
        buf[4] = b'-';
        put_digits(&mut buf[5..7], i64::from(month));
        buf[7] = b'-';
        put_digits(&mut buf[8..10], i64::from(day));
        buf[10] = b'T';
        put_digits(&mut buf[11..13], secs / 3600);
        buf[13] = b':';
        put_digits(&mut buf[14..16], (secs / 60) % 60);
        buf[16] = b':';
        put_digits(&mut buf[17..19], secs % 60);
        buf[19] = b'.';
        put_digits(&mut buf[20..26], frac);
        buf[26] = b'Z';
        out.extend_from_slice(&buf);
    }

    /// The RFC 3339 form, e.g. `2025-01-31T23:59:59.123456Z`.
    pub fn to_rfc3339(self) -> String {
        let mut out = Vec::with_capacity(27);
        self.write_rfc3339(&mut out);
        // Only ASCII digits and separators were written.
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Parses `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    /// Fractions beyond microseconds are truncated; a date alone means midnight UTC.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimeError> {
        let b = s.as_bytes();
        if b.len() < 10 {
            return Err(bad("too short"));
        }
        let year = num(&b[0..4])?;
        let month = num(&b[5..7])?;
        let day = num(&b[8..10])?;
        if b[4] != b'-' || b[7] != b'-' {
            return Err(bad("expected YYYY-MM-DD"));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad("date out of range"));
        }
        let days = days_from_civil(year, month as u32, day as u32);
        if b.len() == 10 {
            return Ok(Self::from_unix_micros(days * MICROS_PER_DAY));
        }
        if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
            return Err(bad("expected THH:MM:SS"));
        }
        let (h, m, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
        if h > 23 || m > 59 || sec > 59 {
            return Err(bad("time out of range"));
        }
        let mut i = 19;
        let mut frac: i64 = 0;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    frac = frac * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return Err(bad("empty fraction"));
            }
            for _ in (i - start)..6 {
                frac *= 10;
            }
        }
        let offset_secs = match b.get(i..) {
            Some([b'Z' | b'z']) => 0,
            Some([sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2]) => {
                let oh = num(&[*oh1, *oh2])?;
                let om = num(&[*om1, *om2])?;
                if oh > 23 || om > 59 {
                    return Err(bad("offset out of range"));
                }
                let v = oh * 3600 + om * 60;
                if *sign == b'+' { v } else { -v }
            }
            _ => return Err(bad("expected Z or ±HH:MM offset")),
        };
        let secs = days * 86_400 + h * 3600 + m * 60 + sec - offset_secs;
        Ok(Self::from_unix_micros(secs * 1_000_000 + frac))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

fn put_digits(dst: &mut [u8], mut v: i64) {
    for slot in dst.iter_mut().rev() {
        // v is non-negative and fits the width for every caller in this module.
        *slot = b'0' + (v.rem_euclid(10)) as u8;
        v /= 10;
    }
}

fn num(digits: &[u8]) -> Result<i64, TimeError> {
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad("expected a digit"));
        }
        v = v * 10 + i64::from(d - b'0');
    }
    Ok(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era-based day counting).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(
            Timestamp::from_unix_micros(0).to_rfc3339(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(951_782_400_000_001).to_rfc3339(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(MAX_MICROS).to_rfc3339(),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            Timestamp::from_unix_micros(MIN_MICROS).to_rfc3339(),
            "0000-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn round_trips_and_parses_variants() {
        for micros in [
            0,
            1,
            -1,
            1_700_000_000_123_456,
            4_102_444_800_000_000,
            MIN_MICROS,
        ] {
            let t = Timestamp::from_unix_micros(micros);
            assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
        }
        let t = Timestamp::parse_rfc3339("2024-03-01T01:30:00.5+01:30").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-01T00:00:00.500000Z");
        let t = Timestamp::parse_rfc3339("2024-03-01T00:00:00.123456789Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-01T00:00:00.123456Z");
        let t = Timestamp::parse_rfc3339("2024-03-01").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-01T00:00:00.000000Z");
        for bad in [
            "",
            "2024-02-30",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn civil_conversion_is_consistent_over_many_days() {
        for z in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
