//! Fuzzes the PROXY protocol v1/v2 parser: it must never panic, and a
//! complete header must lie within the bytes it was given, carry a v1 line
//! no longer than the spec allows, and be decided the same way when the
//! bytes after it change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::proxy_protocol::{parse, Parse, Version, MAX_V2_BYTES, V1_MAX_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(Parse::Complete {
        header,
        version,
        len,
    }) = parse(data)
    else {
        return;
    };
    assert!(len <= data.len());
    match version {
        Version::V1 => assert!(len <= V1_MAX_BYTES),
        Version::V2 => assert!(len <= MAX_V2_BYTES),
    }
    // The header alone parses to the same result: nothing after it counts.
    assert_eq!(
        parse(&data[..len]),
        Ok(Parse::Complete {
            header,
            version,
            len
        })
    );
});
