//! Durations (`90`, `5s`, `1h10m`, `2d12h`) and sizes (`512`, `4b`, `2g`) as
//! written in blat's configuration and on its command line.
//!
//! Errors repeat the bad input and say what form was expected, so that a
//! message naming the file, line and column is enough to fix the config.

use std::time::Duration;

/// The longest duration blat accepts: 100 years (36500 days). Every
/// duration then fits in i64 seconds, and `Instant + duration` and
/// `now + duration` arithmetic cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_SECS);
const MAX_DURATION_SECS: u64 = 36500 * 86400;

/// The largest size blat accepts: 2^63 - 1 bytes (8 EiB, 8589934591g), so
/// every size fits in an i64 as well as a u64.
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// A number of seconds as a duration, refused beyond [`MAX_DURATION`].
pub fn duration_from_secs(secs: u64, shown: &str) -> Result<Duration, String> {
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "invalid duration '{}': expected at most 36500d (100 years)",
            printable(shown)
        ));
    }
    Ok(Duration::from_secs(secs))
}

/// A duration's whole seconds as an i64, for arithmetic with epoch times
/// (saturating; configured durations never come near the limit).
pub fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Parses a duration: whole seconds, or a sum of terms with suffixes
/// `s`, `m`, `h`, `d` (`1h10m`, `2d12h`, `90s`), at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "invalid duration '{}': expected seconds or terms like 90s, 5m, 1h10m, 2d12h",
            printable(text)
        )
    };
    let too_long = || duration_from_secs(u64::MAX, text).unwrap_err();
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(expected());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut terms = 0;
    for c in text_trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(expected()),
        };
        if digits.is_empty() {
            return Err(expected());
        }
        // Digits only: parsing fails on overflow alone, which is too long.
        let n: u64 = digits.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(too_long)?;
        digits.clear();
        terms += 1;
    }
    if !digits.is_empty() {
        // A bare number is seconds, but only on its own: "1h30" is ambiguous.
        if terms > 0 {
            return Err(expected());
        }
        total = digits.parse().map_err(|_| too_long())?;
    }
    duration_from_secs(total, text)
}

/// Parses a size in bytes: a number with suffix `k` (KiB, also the default),
/// `b` (a 1 KiB block), `m` (MiB) or `g` (GiB), at most [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let expected = || {
        format!(
            "invalid size '{}': expected a number with suffix k, b, m or g (e.g. 512k, 2g)",
            printable(text)
        )
    };
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    if number.is_empty() {
        return Err(expected());
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "k" | "b" => 1024,
        "m" => 1024 * 1024,
        "g" => 1024 * 1024 * 1024,
        _ => return Err(expected()),
    };
    let too_big = || {
        format!(
            "invalid size '{}': expected at most 8 EiB (8589934591g)",
            printable(text)
        )
    };
    let n: u64 = number.parse().map_err(|_| {
        // All digits, but more than u64 holds.
        too_big()
    })?;
    n.checked_mul(multiplier)
        .filter(|&bytes| bytes <= MAX_SIZE)
        .ok_or_else(too_big)
}

/// `text` with its control characters (newlines, escapes) escaped, so an
/// error that repeats it stays one printable line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Formats a byte count for people: `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats a duration for people and for config round-trips: `1h10m`, `45s`.
pub fn human_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, name) in [(86400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if s >= unit {
            out.push_str(&format!("{}{}", s / unit, name));
            s %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accepted() {
        for (text, secs) in [
            ("0", 0),
            ("90", 90),
            ("5s", 5),
            ("5m", 300),
            ("1h10m", 4200),
            ("2d12h", 216000),
            ("1d1h1m1s", 90061),
            ("1h1h", 7200),
            (" 14d ", 14 * 86400),
            ("36500d", 36500 * 86400),
            ("3153600000", 3_153_600_000),
            ("36499d23h59m60s", 36500 * 86400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_rejected() {
        for text in [
            "",
            "h",
            "5x",
            "1.5h",
            "-5",
            "1h30",
            "5 m",
            "m5",
            "99999999999999999999d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(&format!("'{text}'")), "{err}");
            assert!(err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn durations_beyond_100_years_rejected() {
        // Each of these once wrapped negative as i64 seconds, overflowed a
        // u64, or would overflow `Instant + duration`.
        for text in [
            "36501d",
            "36500d1s",
            "3153600001",
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "213503982334601d",
            "5124095576030431h",
            "307445734561825860m",
            "9223372036854775807s",
            "9223372036854775808s",
            "18446744073709551615s1s",
            "36500d36500d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(
                err,
                format!("invalid duration '{text}': expected at most 36500d (100 years)")
            );
        }
        assert_eq!(secs_i64(MAX_DURATION), 3_153_600_000);
        assert!(std::time::Instant::now()
            .checked_add(MAX_DURATION)
            .is_some());
    }

    #[test]
    fn sizes_accepted() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512 * 1024),
            ("512k", 512 * 1024),
            ("4b", 4 * 1024),
            ("3m", 3 << 20),
            ("2g", 2 << 30),
            ("2G", 2 << 30),
            ("8589934591g", 8589934591 << 30),
            ("8796093022207m", 8796093022207 << 20),
            ("9007199254740991", 9007199254740991 << 10),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn sizes_rejected() {
        for text in [
            "",
            "g",
            "2t",
            "1.5g",
            "-1",
            "2 g",
            "2gb",
            "99999999999999999999g",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(&format!("'{text}'")), "{err}");
        }
    }

    #[test]
    fn sizes_beyond_8_eib_rejected() {
        // Within u64 after multiplying, but not within i64; or not even u64.
        for text in [
            "8589934592g",
            "17179869184g",
            "17179869183g",
            "8796093022208m",
            "9007199254740992",
            "9007199254740992k",
            "18014398509481984b",
            "18446744073709551615",
            "18446744073709551616g",
        ] {
            let err = parse_size(text).unwrap_err();
            assert_eq!(
                err,
                format!("invalid size '{text}': expected at most 8 EiB (8589934591g)")
            );
        }
    }

    #[test]
    fn human_forms() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(Duration::from_secs(4200)), "1h10m");
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
    }
}
