use super::*;

const TAG: &str = "\"sha256:abc\"";

fn r(range: &str, size: u64) -> RangeAnswer {
    answer(Some(range), None, TAG, size)
}

fn part(start: u64, end: u64) -> RangeAnswer {
    RangeAnswer::Partial { start, end }
}

use RangeAnswer::{Full, Unsatisfiable};

/// RFC 9110 §14.1.2's examples, on its 10000-byte representation.
#[test]
fn rfc_9110_examples() {
    assert_eq!(r("bytes=0-499", 10000), part(0, 499));
    assert_eq!(r("bytes=500-999", 10000), part(500, 999));
    assert_eq!(r("bytes=-500", 10000), part(9500, 9999));
    assert_eq!(r("bytes=9500-", 10000), part(9500, 9999));
    assert_eq!(r("bytes=0-0", 10000), part(0, 0));
    assert_eq!(r("bytes=-1", 10000), part(9999, 9999));
    // Several ranges: a server may ignore them and send the whole body.
    assert_eq!(r("bytes=0-0,-1", 10000), Full);
    assert_eq!(r("bytes=500-600,601-999", 10000), Full);
    assert_eq!(r("bytes=500-700,601-999", 10000), Full);
}

#[test]
fn ends_are_clamped_and_starts_past_the_end_are_unsatisfiable() {
    assert_eq!(r("bytes=0-4", 5), part(0, 4));
    assert_eq!(r("bytes=0-5", 5), part(0, 4));
    assert_eq!(r("bytes=3-1000000", 5), part(3, 4));
    assert_eq!(r("bytes=4-", 5), part(4, 4));
    assert_eq!(r("bytes=4-4", 5), part(4, 4));
    assert_eq!(r("bytes=5-", 5), Unsatisfiable);
    assert_eq!(r("bytes=5-5", 5), Unsatisfiable);
    assert_eq!(r("bytes=5-9", 5), Unsatisfiable);
    assert_eq!(r("bytes=6-", 5), Unsatisfiable);
    assert_eq!(r("bytes=0-", 5), part(0, 4));
    assert_eq!(r("bytes=0-18446744073709551615", 5), part(0, 4));
    assert_eq!(r("bytes=18446744073709551615-", 5), Unsatisfiable);
    assert_eq!(
        r("bytes=0-", u64::MAX),
        part(0, u64::MAX - 1),
        "a size at the type's limit"
    );
}

#[test]
fn suffixes() {
    assert_eq!(r("bytes=-5", 5), part(0, 4));
    assert_eq!(r("bytes=-6", 5), part(0, 4), "longer than the body: all");
    assert_eq!(r("bytes=-18446744073709551615", 5), part(0, 4));
    assert_eq!(r("bytes=-4", 5), part(1, 4));
    assert_eq!(r("bytes=-0", 5), Unsatisfiable);
    assert_eq!(r("bytes=-00", 5), Unsatisfiable);
}

#[test]
fn an_empty_body_satisfies_no_range() {
    for range in ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=5-"] {
        assert_eq!(r(range, 0), Unsatisfiable, "{range}");
    }
    assert_eq!(r("bytes=1-0", 0), Full, "malformed stays Full");
    assert_eq!(answer(None, None, TAG, 0), Full);
}

#[test]
fn malformed_or_invalid_specs_are_ignored() {
    for range in [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=,",
        "bytes= , ",
        "bytes=5-1",
        "bytes=a-b",
        "bytes=1-b",
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=--1",
        "bytes=1--2",
        "bytes=1-2-3",
        "bytes=0x10-",
        "bytes=1.5-2",
        "bytes=1 - 2",
        "bytes=1- 2",
        "bytes=\u{0661}-2",
        "bytes 0-1",
        "bytes:0-1",
        "bits=0-1",
        "items=0-1",
        "bytes=0-1;x",
        "=0-1",
        "0-1",
        "bytes==0-1",
    ] {
        assert_eq!(r(range, 100), Full, "{range:?}");
    }
}

#[test]
fn numbers_past_u64_are_ignored() {
    assert_eq!(r("bytes=18446744073709551616-", 100), Full);
    assert_eq!(r("bytes=0-18446744073709551616", 100), Full);
    assert_eq!(r("bytes=-18446744073709551616", 100), Full);
    assert_eq!(r("bytes=99999999999999999999999999-1", 100), Full);
    // Leading zeros are digits, not an overflow.
    assert_eq!(r("bytes=0000000000000000000000000001-2", 100), part(1, 2));
}

#[test]
fn units_are_case_insensitive_and_whitespace_is_optional() {
    assert_eq!(r("Bytes=1-2", 10), part(1, 2));
    assert_eq!(r("BYTES=1-2", 10), part(1, 2));
    assert_eq!(r(" bytes=1-2 ", 10), part(1, 2));
    assert_eq!(r("\tbytes=1-2\t", 10), part(1, 2));
    assert_eq!(r("bytes = 1-2", 10), part(1, 2));
    assert_eq!(r("bytes=1-2, ", 10), part(1, 2), "empty list elements");
    assert_eq!(r("bytes=, 1-2", 10), part(1, 2));
    assert_eq!(r("bytes=1-2 ,, 3-4", 10), Full, "still two ranges");
}

#[test]
fn if_range_must_be_exactly_the_etag() {
    let with = |v: &str| answer(Some("bytes=1-2"), Some(v), TAG, 10);
    assert_eq!(with(TAG), part(1, 2));
    assert_eq!(with(&format!(" {TAG} ")), part(1, 2));
    assert_eq!(with(&format!("W/{TAG}")), Full, "weak never matches");
    assert_eq!(with("\"sha256:abd\""), Full);
    assert_eq!(with("sha256:abc"), Full, "unquoted");
    assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), Full, "a date");
    assert_eq!(with(""), Full);
    assert_eq!(
        answer(None, Some(TAG), TAG, 10),
        Full,
        "If-Range alone is nothing"
    );
    assert_eq!(answer(Some("bytes=20-"), Some(TAG), TAG, 10), Unsatisfiable);
    assert_eq!(answer(Some("bytes=20-"), Some("\"x\""), TAG, 10), Full);
}

/// Every answer is inside the body, for every small size and spec.
#[test]
fn partial_answers_always_lie_inside_the_body() {
    let numbers = ["0", "1", "2", "3", "7", "8", "9", "18446744073709551615"];
    for size in 0..10u64 {
        for a in numbers.iter().chain([&""]) {
            for b in numbers.iter().chain([&""]) {
                let spec = format!("bytes={a}-{b}");
                match r(&spec, size) {
                    RangeAnswer::Partial { start, end } => {
                        assert!(start <= end && end < size, "{spec} on {size}")
                    }
                    Full => assert!(
                        (a.is_empty() && b.is_empty())
                            || (!a.is_empty()
                                && !b.is_empty()
                                && a.parse::<u64>().ok() > b.parse().ok()),
                        "{spec} on {size}"
                    ),
                    Unsatisfiable => {}
                }
            }
        }
    }
}
