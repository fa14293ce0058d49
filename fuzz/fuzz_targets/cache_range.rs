//! `cache::range::answer` on arbitrary `Range` and `If-Range` values and
//! sizes: it must never panic, a partial answer must lie inside the body,
//! an empty body has no partial answer, and an `If-Range` equal to the
//! entity tag changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::cache::range::{answer, RangeAnswer};

const ETAG: &str = "\"sha256:0123\"";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Seeds are "RANGE\nIF-RANGE\nSIZE"; a missing or bad size is the
    // input's length, so small sizes come up often.
    let mut lines = text.splitn(3, '\n');
    let range = lines.next();
    let if_range = lines.next().filter(|v| !v.is_empty());
    let size = lines
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(data.len() as u64);
    let got = answer(range, if_range, ETAG, size);
    match got {
        RangeAnswer::Partial { start, end } => assert!(start <= end && end < size),
        RangeAnswer::Unsatisfiable => assert!(range.is_some()),
        RangeAnswer::Full => {}
    }
    assert_eq!(answer(range, Some(ETAG), ETAG, size), answer(range, None, ETAG, size));
    assert_eq!(answer(None, if_range, ETAG, size), RangeAnswer::Full);
});
