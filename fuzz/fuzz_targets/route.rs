//! `route::classify` against the registry's own route regexps
//! (`route::reference`, shared with the unit tests): every path we route
//! must reach the same route and repository there, and every refusal must
//! be one the registry makes too or one of our documented extra refusals.
//! Arbitrary methods and queries must not panic either.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regproxy_core::route::classify;
use regproxy_core::route::reference::{agrees, Registry28};

fuzz_target!(|data: &[u8]| {
    static REG: OnceLock<Registry28> = OnceLock::new();
    let reg = REG.get_or_init(Registry28::new);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "METHOD PATH?QUERY" with a content type after a newline, as seeds
    // are written; the path alone goes to the differential check.
    let (line, ct) = text.split_once('\n').unwrap_or((text, ""));
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let ct = (!ct.is_empty()).then_some(ct.as_bytes());
    let _ = classify(method, path, query, ct);
    // The registry routes only absolute paths under /v2/; anything else is
    // a 404 for both, which the check covers too.
    agrees(reg, path);
});
