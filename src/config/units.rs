//! Durations (`90`, `5s`, `1h10m`, `2d12h`) and sizes (`512`, `4b`, `2g`) as
//! written in blat's configuration and on its command line.
//!
//! Errors repeat the bad input and say what form was expected, so that a
//! message naming the file, line and column is enough to fix the config.

use std::time::Duration;

/// Parses a duration: whole seconds, or a sum of terms with suffixes
/// `s`, `m`, `h`, `d` (`1h10m`, `2d12h`, `90s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "invalid duration '{}': expected seconds or terms like 90s, 5m, 1h10m, 2d12h",
            printable(text)
        )
    };
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
        let n: u64 = digits.parse().map_err(|_| expected())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(expected)?;
        digits.clear();
        terms += 1;
    }
    if !digits.is_empty() {
        // A bare number is seconds, but only on its own: "1h30" is ambiguous.
        if terms > 0 {
            return Err(expected());
        }
        total = digits.parse().map_err(|_| expected())?;
    }
    Ok(Duration::from_secs(total))
}

/// Parses a size in bytes: a number with suffix `k` (KiB, also the default),
/// `b` (a 1 KiB block), `m` (MiB) or `g` (GiB).
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
    let n: u64 = number.parse().map_err(|_| expected())?;
    n.checked_mul(multiplier).ok_or_else(expected)
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
    fn sizes_accepted() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512 * 1024),
            ("512k", 512 * 1024),
            ("4b", 4 * 1024),
            ("3m", 3 << 20),
            ("2g", 2 << 30),
            ("2G", 2 << 30),
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
    fn human_forms() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_duration(Duration::from_secs(4200)), "1h10m");
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
    }
}
