//! Text to typed values: the parsing half of every cast, free of Arrow and of JSON reading.
//!
//! Numbers are read from their decimal text, digit by digit, into an `i128` scaled integer: a
//! JSON number never passes through `f64` on its way to a `decimal(p,s)` or an integer column,
//! so `12345678901234567.89` stays exact. Dates and timestamps are read by a small strict parser
//! of the ISO shapes rtsync accepts, with the calendar arithmetic done here (days from civil
//! date), because these columns are on the hot path and a general-purpose format parser costs
//! several times more per value.

use rtsync_core::civil;

/// A number's text split into its parts: `-12.50e3` is negative, `12`, `50`, exponent 3.
/// Leading zeros and a leading `+` are accepted (they come from strings that hold numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumberText<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
    exp: i64,
}

/// Exponents are clamped to this magnitude: anything larger is out of range (or zero) for every
/// column type, and clamping keeps the arithmetic below in `i64`.
const EXP_LIMIT: i64 = 1 << 32;

/// Splits `[+-]digits[.digits][(e|E)[+-]digits]` (at least one mantissa digit); None otherwise.
pub(crate) fn parse_number(text: &str) -> Option<NumberText<'_>> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            at = 1;
            true
        }
        Some(b'+') => {
            at = 1;
            false
        }
        _ => false,
    };
    let digits_from = |from: usize| from + bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let int_end = digits_from(at);
    let int = &bytes[at..int_end];
    at = int_end;
    let mut frac: &[u8] = &[];
    if bytes.get(at) == Some(&b'.') {
        let frac_end = digits_from(at + 1);
        frac = &bytes[at + 1..frac_end];
        at = frac_end;
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp = 0i64;
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        let exp_negative = match bytes.get(at) {
            Some(b'-') => {
                at += 1;
                true
            }
            Some(b'+') => {
                at += 1;
                false
            }
            _ => false,
        };
        let exp_end = digits_from(at);
        if exp_end == at {
            return None;
        }
        for &d in &bytes[at..exp_end] {
            exp = (exp * 10 + i64::from(d - b'0')).min(EXP_LIMIT);
        }
        if exp_negative {
            exp = -exp;
        }
        at = exp_end;
    }
    (at == bytes.len()).then_some(NumberText { negative, int, frac, exp })
}

/// What to do with digits below the target scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rounding {
    /// Round half away from zero (decimal columns).
    HalfAwayFromZero,
    /// Refuse any non-zero digit below the scale (integer columns).
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumberError {
    /// Larger than an `i128` can hold once scaled.
    OutOfRange,
    /// Has non-zero digits below the scale and [`Rounding::Exact`] was asked for.
    Inexact,
}

impl NumberText<'_> {
    /// The number times `10^scale` as an integer: exact, rounded as `rounding` says.
    pub(crate) fn scaled(&self, scale: u32, rounding: Rounding) -> Result<i128, NumberError> {
        let digits = self.int.iter().chain(self.frac.iter()).map(|d| i128::from(d - b'0'));
        let total = (self.int.len() + self.frac.len()) as i64;
        // How many leading digits form the integer part of the scaled value.
        let keep = self.int.len() as i64 + self.exp + i64::from(scale);
        let (mut acc, mut round_up, mut inexact) = (0i128, false, false);
        for (i, d) in (0i64..).zip(digits) {
            if i < keep {
                acc = acc.checked_mul(10).and_then(|a| a.checked_add(d)).ok_or(NumberError::OutOfRange)?;
            } else {
                if i == keep {
                    round_up = d >= 5;
                }
                inexact |= d != 0;
            }
        }
        if acc != 0 {
            for _ in total..keep {
                acc = acc.checked_mul(10).ok_or(NumberError::OutOfRange)?;
            }
        }
        match rounding {
            Rounding::Exact if inexact => return Err(NumberError::Inexact),
            Rounding::HalfAwayFromZero if round_up => acc += 1,
            _ => {}
        }
        Ok(if self.negative { -acc } else { acc })
    }
}

/// Why text is not an integer of the wanted width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntError {
    NotAnInteger,
    OutOfRange,
}

/// An integer from a JSON number's text or a string: `42`, `-7`, `+7`, `1.0`, `1e3` (values
/// that are whole numbers); `1.5` is not an integer.
pub(crate) fn parse_i64(text: &str) -> Result<i64, IntError> {
    if let Ok(v) = text.parse::<i64>() {
        return Ok(v);
    }
    let number = parse_number(text).ok_or(IntError::NotAnInteger)?;
    match number.scaled(0, Rounding::Exact) {
        Ok(v) => i64::try_from(v).map_err(|_| IntError::OutOfRange),
        Err(NumberError::Inexact) => Err(IntError::NotAnInteger),
        Err(NumberError::OutOfRange) => Err(IntError::OutOfRange),
    }
}

pub(crate) fn parse_i32(text: &str) -> Result<i32, IntError> {
    i32::try_from(parse_i64(text)?).map_err(|_| IntError::OutOfRange)
}

/// `true`/`false` in any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `n` ASCII digits at `bytes[at..]` as a number.
fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = bytes.get(at..at + n)?;
    field.iter().try_fold(0u32, |acc, &b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// Days since the epoch of `YYYY-MM-DD` at the start of `bytes` (which may continue).
fn date_prefix(bytes: &[u8]) -> Option<i64> {
    let year = digits(bytes, 0, 4)?;
    let month = digits(bytes, 5, 2)?;
    let day = digits(bytes, 8, 2)?;
    // Year 0000 is outside Delta's date range (0001-01-01 ..= 9999-12-31): readers refuse it.
    if bytes[4] != b'-' || bytes[7] != b'-' || !(1..=12).contains(&month) || year == 0 {
        return None;
    }
    civil::date_days(i64::from(year), month, day)
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 {
        return None;
    }
    date_prefix(bytes).and_then(|d| i32::try_from(d).ok())
}

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A timestamp as microseconds since the epoch, UTC:
/// `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction][Z|z|(+|-)HH:MM|(+|-)HHMM]`. Without an offset the time
/// is taken as UTC. Fraction digits past microseconds are truncated. A leap second (`:60`) reads
/// as the first second of the next minute.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let days = date_prefix(b)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if b[13] != b':' || b[16] != b':' || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if b.get(at) == Some(&b'.') {
        let n = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for (i, &c) in b[at + 1..at + 1 + n].iter().enumerate() {
            if i < 6 {
                micros = micros * 10 + i64::from(c - b'0');
            }
        }
        for _ in n..6 {
            micros *= 10;
        }
        at += 1 + n;
    }
    let offset_seconds = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)?;
            let om = match b.len() - at {
                6 if b[at + 3] == b':' => digits(b, at + 4, 2)?,
                5 => digits(b, at + 3, 2)?,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let seconds = i64::from(oh * 3600 + om * 60);
            if sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let at = seconds * MICROS_PER_SECOND + micros;
    // An offset can carry 0001-01-01 or 9999-12-31 past Delta's range.
    (FIRST_MICROS..=LAST_MICROS).contains(&at).then_some(at)
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: Delta's timestamp range.
const FIRST_MICROS: i64 = -62_135_596_800 * MICROS_PER_SECOND;
const LAST_MICROS: i64 = 253_402_300_799 * MICROS_PER_SECOND + 999_999;

/// An unpaired UTF-16 surrogate in a `\u` escape: valid JSON syntax, but no Unicode text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEscape;

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    field.iter().try_fold(0u32, |acc, &b| (b as char).to_digit(16).map(|d| acc * 16 + d))
}

/// Decodes the inside of a JSON string literal (the text between its quotes) onto `out`. With
/// `lossy`, an unpaired surrogate becomes U+FFFD instead of an error.
pub(crate) fn unescape_into(inner: &str, out: &mut String, lossy: bool) -> Result<(), BadEscape> {
    let bytes = inner.as_bytes();
    let mut rest = 0;
    while let Some(found) = inner[rest..].find('\\') {
        let at = rest + found;
        out.push_str(&inner[rest..at]);
        let (ch, len) = match bytes.get(at + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => {
                let unit = hex4(bytes, at + 2).ok_or(BadEscape)?;
                let low = (bytes.get(at + 6..at + 8) == Some(b"\\u".as_slice()))
                    .then(|| hex4(bytes, at + 8))
                    .flatten()
                    .filter(|low| (0xDC00..0xE000).contains(low));
                match (unit, low) {
                    (0xD800..=0xDBFF, Some(low)) => {
                        let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code).ok_or(BadEscape)?, 12)
                    }
                    _ => match char::from_u32(unit) {
                        Some(ch) => (ch, 6),
                        None if lossy => (char::REPLACEMENT_CHARACTER, 6),
                        None => return Err(BadEscape),
                    },
                }
            }
            _ => return Err(BadEscape),
        };
        out.push(ch);
        rest = at + len;
    }
    out.push_str(&inner[rest..]);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decimal(text: &str, scale: u32) -> Result<i128, NumberError> {
        parse_number(text).unwrap().scaled(scale, Rounding::HalfAwayFromZero)
    }

    #[test]
    fn numbers_split_into_parts() {
        let n = parse_number("-12.50e3").unwrap();
        assert_eq!(n, NumberText { negative: true, int: b"12", frac: b"50", exp: 3 });
        assert_eq!(parse_number("+.5").unwrap(), NumberText { negative: false, int: b"", frac: b"5", exp: 0 });
        assert_eq!(parse_number("7.").unwrap(), NumberText { negative: false, int: b"7", frac: b"", exp: 0 });
        assert_eq!(parse_number("1E-2").unwrap().exp, -2);
        assert_eq!(parse_number("1e99999999999999999999").unwrap().exp, EXP_LIMIT);
        for bad in ["", "-", ".", "abc", "1e", "1e+", "1.2.3", "1 ", " 1", "0x10", "1,5", "--1", "1e5x", "NaN"] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(decimal("12345678901234567.89", 2), Ok(1_234_567_890_123_456_789));
        assert_eq!(decimal("0.1", 2), Ok(10));
        assert_eq!(decimal("-0.1", 2), Ok(-10));
        assert_eq!(decimal("5", 2), Ok(500));
        assert_eq!(decimal("1.5e3", 2), Ok(150_000));
        assert_eq!(decimal("15e-1", 0), Ok(2));
        assert_eq!(decimal("0000012.3400", 2), Ok(1234));
        assert_eq!(decimal("0e999999", 2), Ok(0));
        assert_eq!(decimal("1e-999999", 2), Ok(0));
        assert_eq!(decimal("99999999999999999999999999999999999999", 0), Ok(10i128.pow(38) - 1));
        assert_eq!(decimal("1e38", 0), Ok(10i128.pow(38)));
        assert_eq!(decimal("1e39", 0), Err(NumberError::OutOfRange));
        assert_eq!(decimal("170141183460469231731687303715884105728", 0), Err(NumberError::OutOfRange));
        assert_eq!(decimal("1e999999", 0), Err(NumberError::OutOfRange));
    }

    #[test]
    fn decimals_round_half_away_from_zero() {
        assert_eq!(decimal("1.005", 2), Ok(101));
        assert_eq!(decimal("1.0049999", 2), Ok(100));
        assert_eq!(decimal("-1.005", 2), Ok(-101));
        assert_eq!(decimal("-1.004", 2), Ok(-100));
        assert_eq!(decimal("0.5", 0), Ok(1));
        assert_eq!(decimal("-0.5", 0), Ok(-1));
        assert_eq!(decimal("0.05", 0), Ok(0));
        assert_eq!(decimal("0.005", 2), Ok(1));
        assert_eq!(decimal("9.995", 2), Ok(1000));
    }

    #[test]
    fn integers_must_be_whole_and_in_range() {
        assert_eq!(parse_i64("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64("9223372036854775808"), Err(IntError::OutOfRange));
        assert_eq!(parse_i64("1e30"), Err(IntError::OutOfRange));
        assert_eq!(parse_i64("+42"), Ok(42));
        assert_eq!(parse_i64("1.0"), Ok(1));
        assert_eq!(parse_i64("1.5e1"), Ok(15));
        assert_eq!(parse_i64("1.5"), Err(IntError::NotAnInteger));
        assert_eq!(parse_i64("12abc"), Err(IntError::NotAnInteger));
        assert_eq!(parse_i32("2147483647"), Ok(i32::MAX));
        assert_eq!(parse_i32("2147483648"), Err(IntError::OutOfRange));
        assert_eq!(parse_i32("-2147483649"), Err(IntError::OutOfRange));
    }

    #[test]
    fn booleans_ignore_case() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn dates_read_the_calendar() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("0001-01-01"), Some(-719_162));
        assert_eq!(parse_date("9999-12-31"), Some(2_932_896));
        assert_eq!(parse_date("0000-01-01"), None, "before Delta's first date");
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), Some(FIRST_MICROS));
        assert_eq!(parse_timestamp("9999-12-31T23:59:59.999999Z"), Some(LAST_MICROS));
        assert_eq!(parse_timestamp("0001-01-01T00:30:00+01:00"), None, "an offset past the first instant");
        assert_eq!(parse_timestamp("9999-12-31T23:30:00-01:00"), None, "an offset past the last instant");
        for bad in ["2023-02-29", "2024-13-01", "2024-00-10", "2024-01-32", "2024-1-01", "2024/01/01", "24-01-01", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_read_iso_shapes_into_utc_micros() {
        let base = 1_700_000_000i64 * MICROS_PER_SECOND; // 2023-11-14T22:13:20Z
        assert_eq!(parse_timestamp("2023-11-14T22:13:20Z"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14t22:13:20z"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14 22:13:20"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14 22:13:20.5"), Some(base + 500_000));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.123456Z"), Some(base + 123_456));
        assert_eq!(parse_timestamp("2023-11-14T22:13:20.123456789Z"), Some(base + 123_456));
        assert_eq!(parse_timestamp("2023-11-15T00:13:20+02:00"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14T16:43:20-0530"), Some(base));
        assert_eq!(parse_timestamp("2023-11-14T22:13:59.5Z").map(|t| t - base), Some(39_500_000));
        assert_eq!(parse_timestamp("1969-12-31T23:59:59.5Z"), Some(-500_000));
        assert_eq!(parse_timestamp("2016-12-31T23:59:60Z"), parse_timestamp("2017-01-01T00:00:00Z"));
        for bad in [
            "2023-11-14",
            "2023-11-14T22:13",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+02:0",
            "2023-11-14T22:13:20 +02:00",
            "2023-11-14T22:13:20Zx",
            "2023-11-14X22:13:20",
            "2023-02-30T00:00:00Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn unescapes_json_strings() {
        let mut out = String::new();
        unescape_into(r#"a\"b\\c\/d\b\f\n\r\t \u00e9 \ud83d\ude00 z"#, &mut out, false).unwrap();
        assert_eq!(out, "a\"b\\c/d\u{8}\u{c}\n\r\t é 😀 z");
        let mut out = String::new();
        assert_eq!(unescape_into(r"\ud800x", &mut out, false), Err(BadEscape));
        assert_eq!(unescape_into(r"\udc00", &mut String::new(), false), Err(BadEscape));
        let mut lossy = String::new();
        unescape_into(r"a\ud800b", &mut lossy, true).unwrap();
        assert_eq!(lossy, "a\u{fffd}b");
        assert_eq!(unescape_into(r"\x", &mut String::new(), true), Err(BadEscape));
        assert_eq!(unescape_into(r"\u12", &mut String::new(), true), Err(BadEscape));
    }

    #[test]
    fn escapes_json_strings() {
        let mut out = String::new();
        rtsync_core::json::push_string(&mut out, "a\"b\\c\n\u{1}é");
        assert_eq!(out, r#""a\"b\\c\n\u0001é""#);
    }
}
