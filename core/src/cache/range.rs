//! `Range` and `If-Range` on a cached body (RFC 9110 §13.1.5, §14.1-14.4),
//! for the one case clients send: a single byte range. Anything else is
//! answered with the whole body, which a server may always do; only a
//! well-formed range that starts past the end is unsatisfiable (416).

/// How to answer a request for a body of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end` (inclusive, as `Content-Range` writes
    /// them); always `start <= end < size`.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// One `range-spec` of the `bytes` unit, before it meets a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last`, `first <= last`.
    Closed(u64, u64),
    /// `first-`.
    From(u64),
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

/// The answer to `range` (the `Range` field's value) and `if_range`
/// (`If-Range`'s) for a body of `size` bytes whose strong entity tag is
/// `etag` (with its quotes, as sent in `ETag`).
///
/// Several ranges, an unknown unit, a malformed spec, a number past
/// `u64`, or an `If-Range` that is not exactly `etag` (a date, a weak or
/// another tag) give [`RangeAnswer::Full`].
pub fn answer(range: Option<&str>, if_range: Option<&str>, etag: &str, size: u64) -> RangeAnswer {
    let Some(range) = range else {
        return RangeAnswer::Full;
    };
    if if_range.is_some_and(|v| v.trim_matches(is_ows) != etag) {
        return RangeAnswer::Full;
    }
    match parse(range) {
        Some(spec) => resolve(spec, size),
        None => RangeAnswer::Full,
    }
}

/// RFC 9110's OWS: spaces and horizontal tabs.
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `bytes=<one range-spec>`; the unit is case-insensitive (§14.1), and
/// empty list elements are allowed (§5.6.1). `None` for anything else.
fn parse(value: &str) -> Option<Spec> {
    let (unit, set) = value.trim_matches(is_ows).split_once('=')?;
    if !unit.trim_matches(is_ows).eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches(is_ows))
        .filter(|s| !s.is_empty());
    let one = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    let (first, last) = one.split_once('-')?;
    match (first.is_empty(), last.is_empty()) {
        (true, false) => Some(Spec::Suffix(number(last)?)),
        (false, true) => Some(Spec::From(number(first)?)),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            (a <= b).then_some(Spec::Closed(a, b))
        }
        (true, true) => None,
    }
}

/// `1*DIGIT` that fits a `u64`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn resolve(spec: Spec, size: u64) -> RangeAnswer {
    let Some(last_byte) = size.checked_sub(1) else {
        return RangeAnswer::Unsatisfiable;
    };
    match spec {
        Spec::Closed(start, _) | Spec::From(start) if start >= size => RangeAnswer::Unsatisfiable,
        Spec::Closed(start, end) => RangeAnswer::Partial {
            start,
            end: end.min(last_byte),
        },
        Spec::From(start) => RangeAnswer::Partial {
            start,
            end: last_byte,
        },
        Spec::Suffix(0) => RangeAnswer::Unsatisfiable,
        Spec::Suffix(n) => RangeAnswer::Partial {
            start: size.saturating_sub(n),
            end: last_byte,
        },
    }
}

#[cfg(test)]
mod tests;
