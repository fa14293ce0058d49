//! Sizes and durations as people type and read them: `--blob-size 16MiB`,
//! latencies printed as `412µs` or `1.20s`.

use std::time::Duration;

/// Binary and decimal suffixes `parse_size` accepts, longest first so "KiB"
/// is not read as "K" followed by junk.
const SIZE_SUFFIXES: [(&str, u64); 13] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
    ("B", 1),
];

/// Parses `4096`, `4KiB`, `16MiB`, `1GiB`, `1.5GiB`, `10MB` (decimal) or
/// `1G` (binary, as dd and docker read it). Case-insensitive suffixes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let suffix = suffix.trim();
    let multiplier = if suffix.is_empty() {
        1
    } else {
        SIZE_SUFFIXES
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(suffix))
            .map(|&(_, m)| m)
            .ok_or_else(|| {
                format!("unknown size suffix {suffix:?} in {text:?} (try 4KiB, 16MiB, 1GiB)")
            })?
    };
    if number.is_empty() {
        return Err(format!("no number in size {text:?}"));
    }
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(multiplier)
            .ok_or_else(|| format!("size {text:?} is too large"));
    }
    let f: f64 = number
        .parse()
        .map_err(|_| format!("invalid number in size {text:?}"))?;
    let bytes = f * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("size {text:?} is too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses `2s`, `500ms`, `1m30s` (humantime), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// `1.50 GiB`, `16.0 MiB`, `512 B`: for headers and logs.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if value >= 100.0 => format!("{value:.0} {}", UNITS[unit]),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A latency in microseconds as `87µs`, `1.23ms` or `4.56s`: three
/// significant digits, the precision the histograms keep.
pub fn format_micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 10_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// A rate with a thousands separator for readability: `41,230`.
pub fn format_count(n: f64) -> String {
    if n < 100.0 {
        return format!("{n:.1}");
    }
    let whole = n.round() as u64;
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("0", 0),
            ("4096", 4096),
            ("4KiB", 4096),
            ("4kib", 4096),
            ("16MiB", 16 << 20),
            ("1GiB", 1 << 30),
            ("1G", 1 << 30),
            ("10MB", 10_000_000),
            ("1.5KiB", 1536),
            (" 2 MiB ", 2 << 20),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "MiB",
            "1XB",
            "1.2.3K",
            "99999999999999999999",
            "16777216TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(1 << 30), "1.0 GiB");
        assert_eq!(format_bytes(200 << 20), "200 MiB");
        assert_eq!(format_micros(87.4), "87µs");
        assert_eq!(format_micros(1234.0), "1.23ms");
        assert_eq!(format_micros(45_600.0), "45.6ms");
        assert_eq!(format_micros(4_560_000.0), "4.56s");
        assert_eq!(format_count(41_230.4), "41,230");
        assert_eq!(format_count(1_000_000.0), "1,000,000");
        assert_eq!(format_count(999.0), "999");
        assert_eq!(format_count(3.24), "3.2");
    }
}
