//! The cache's file header (`cache::entry::decode`) on arbitrary bytes,
//! as a damaged disk or another version could leave them: it must never
//! panic, and a header it accepts must be exactly what `encode` writes for
//! what it returned, so one entry has one form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::cache::entry::{decode, encode};
use regproxy_core::cache::HEADER_LEN;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = decode(data) else {
        return;
    };
    let block = encode(&meta).expect("a decoded header encodes");
    assert_eq!(&block[..], &data[..HEADER_LEN as usize]);
    assert_eq!(decode(&block), Ok(meta));
});
