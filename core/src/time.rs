//! Civil time without a clock: the caller passes `now` in as milliseconds since the Unix epoch.

use alloc::string::String;
use core::fmt::Write;

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type UnixMillis = i64;

// Days from civil, after Howard Hinnant's public-domain algorithm (exact for the proleptic
// Gregorian calendar), so no table and no clock are needed.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Appends [`format_iso8601`]'s text to `out` without formatting machinery.
pub fn write_iso8601(t: UnixMillis, out: &mut alloc::vec::Vec<u8>) {
    if let Ok(u) = u64::try_from(t)
        && u <= LAST_MILLI_OF_9999
    {
        out.extend_from_slice(&iso8601_since_1970(u));
        return;
    }
    let days = t.div_euclid(86_400_000);
    let ms_of_day = t.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let Ok(year @ 0..=9999) = u32::try_from(y) else {
        // Years of other widths: the general formatter.
        out.extend_from_slice(format_iso8601(t).as_bytes());
        return;
    };
    // ms_of_day is in 0..86_400_000, so it fits u32.
    out.extend_from_slice(&iso8601_text(year, m, d, ms_of_day as u32));
}

/// 9999-12-31T23:59:59.999Z: the last instant [`iso8601_since_1970`] writes.
const LAST_MILLI_OF_9999: u64 = 253_402_300_799_999;

/// [`write_iso8601`]'s text for an instant from 1970 to the end of 9999: the same
/// arithmetic as [`civil_from_days`], unsigned and in u32 (no era before 0, no sign fixes
/// in the divisions), every field below 100 (but the milliseconds) split in two digits
/// without a `% 10`.
fn iso8601_since_1970(t: u64) -> [u8; 24] {
    // t <= LAST_MILLI_OF_9999: fewer than 2^22 days.
    let days = (t / 86_400_000) as u32;
    let ms = (t % 86_400_000) as u32;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u32::from(m <= 2);
    iso8601_text(year, m, d, ms)
}

/// The 24 bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ` for a year below 10,000 and the milliseconds of
/// the day, every field below 100 (but the milliseconds) split in two digits without a `% 10`.
fn iso8601_text(year: u32, m: u32, d: u32, ms: u32) -> [u8; 24] {
    // v < 100: its pair of digits from the table.
    let two = |v: u32| {
        let i = 2 * v as usize;
        match crate::encode::PAIRS.get(i..i + 2) {
            Some(&[a, b]) => [a, b],
            _ => [b'0', b'0'],
        }
    };
    let [y0, y1] = two(year / 100);
    let [y2, y3] = two(year % 100);
    let [mo0, mo1] = two(m);
    let [d0, d1] = two(d);
    let [h0, h1] = two(ms / 3_600_000);
    let [mi0, mi1] = two(ms / 60_000 % 60);
    let secs = ms / 1000;
    let [s0, s1] = two(secs % 60);
    let milli = ms - secs * 1000;
    let [c1, c2] = two(milli % 100);
    [
        y0,
        y1,
        y2,
        y3,
        b'-',
        mo0,
        mo1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        mi0,
        mi1,
        b':',
        s0,
        s1,
        b'.',
        b'0' + (milli / 100) as u8,
        c1,
        c2,
        b'Z',
    ]
}

/// Formats as ISO 8601 UTC with milliseconds: `2026-11-26T09:42:00.000Z`.
pub fn format_iso8601(t: UnixMillis) -> String {
    let days = t.div_euclid(86_400_000);
    let ms_of_day = t.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        y,
        m,
        d,
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    );
    out
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let c = *self.s.get(self.i)?;
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(c - b'0');
            self.i += 1;
        }
        Some(v)
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
}

/// Parses an ISO 8601 / RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`, or a bare
/// date `YYYY-MM-DD` (midnight UTC). A time without an offset is taken as UTC.
pub fn parse_iso8601(s: &str) -> Option<UnixMillis> {
    let mut c = Cursor {
        s: s.trim().as_bytes(),
        i: 0,
    };
    let y = c.digits(4)?;
    if !c.eat(b'-') {
        return None;
    }
    let mo = c.digits(2)?;
    if !c.eat(b'-') {
        return None;
    }
    let d = c.digits(2)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(i64::from(y), mo) {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    if c.peek().is_none() {
        return Some(days * 86_400_000);
    }
    if !(c.eat(b'T') || c.eat(b't') || c.eat(b' ')) {
        return None;
    }
    let h = c.digits(2)?;
    if !c.eat(b':') {
        return None;
    }
    let mi = c.digits(2)?;
    let sec = if c.eat(b':') { c.digits(2)? } else { 0 };
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0u32;
    if c.eat(b'.') || c.eat(b',') {
        let mut n = 0;
        while let Some(b) = c.peek().filter(u8::is_ascii_digit) {
            if n < 3 {
                ms = ms * 10 + u32::from(b - b'0');
            }
            n += 1;
            c.i += 1;
        }
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_min: i64 = match c.peek() {
        None => 0,
        Some(b'Z' | b'z') => {
            c.i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let oh = c.digits(2)?;
            c.eat(b':');
            let om = c.digits(2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 60 + om);
            if sign == b'-' { -o } else { o }
        }
        Some(_) => return None,
    };
    if c.peek().is_some() {
        return None;
    }
    let secs = i64::from(h * 3600 + mi * 60 + sec.min(59)) - offset_min * 60;
    Some(days * 86_400_000 + secs * 1000 + i64::from(ms))
}

/// Parses an HTTP-date as used by `Retry-After` (RFC 9110 IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(s: &str) -> Option<UnixMillis> {
    let s = s.trim();
    let rest = s.split_once(", ").map_or(s, |(_, r)| r);
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: i64 = hms.next()?.parse().ok()?;
    let m: i64 = hms.next()?.parse().ok()?;
    let sec: i64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || hms.next().is_some() {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some((days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + sec.min(59)) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn write_iso8601_is_format_iso8601() {
        let mut cases = alloc::vec![
            0,
            -1,
            1_764_150_000_123,
            253_402_300_799_999,
            253_402_300_800_000,
            -62_167_219_200_000,
            -62_167_219_200_001,
            i64::MAX / 4,
            i64::MIN / 4,
        ];
        let mut x: i64 = 0x1234_5678_9abc;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            cases.push(x >> 20);
        }
        for t in cases {
            let mut out = alloc::vec::Vec::new();
            write_iso8601(t, &mut out);
            assert_eq!(out, format_iso8601(t).into_bytes(), "t = {t}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

        /// The unsigned u32 path (1970 to 9999) is the formatter's text, at any instant
        /// and around every day, month and year boundary.
        #[test]
        fn since_1970_is_format_iso8601(
            t in proptest::prop_oneof![
                0u64..=LAST_MILLI_OF_9999,
                (0u64..=2_932_896, 0u64..3).prop_map(|(d, k)| (d * 86_400_000 + [0, 86_399_999, 43_199_500][k as usize]).min(LAST_MILLI_OF_9999)),
            ]
        ) {
            let mut out = alloc::vec::Vec::new();
            write_iso8601(t as i64, &mut out);
            proptest::prop_assert_eq!(out, format_iso8601(t as i64).into_bytes());
        }
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_iso8601(1_795_686_120_000),
            "2026-11-26T09:42:00.000Z"
        );
        assert_eq!(format_iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        assert_eq!(
            parse_iso8601("2026-11-26T09:42:00Z"),
            Some(1_795_686_120_000)
        );
        assert_eq!(
            parse_iso8601("2026-11-26T10:42:00+01:00"),
            Some(1_795_686_120_000)
        );
        assert_eq!(
            parse_iso8601("2026-11-26T09:42:00.5Z"),
            Some(1_795_686_120_500)
        );
        assert_eq!(parse_iso8601("2026-11-26"), Some(1_795_651_200_000));
        assert_eq!(parse_iso8601("2026-02-30T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-11-26T09:42:00Zjunk"), None);
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn round_trips_every_format() {
        for t in [0, 1, 999, 1_795_686_120_000, 4_102_444_799_999, -86_400_001] {
            assert_eq!(parse_iso8601(&format_iso8601(t)), Some(t));
        }
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
        assert_eq!(parse_http_date("120"), None);
    }
}
