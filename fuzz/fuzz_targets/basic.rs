//! `Authorization: Basic` decoding: never panics, and what it accepts
//! round-trips through base64 to the same user and password.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use regproxy_core::auth::basic::{decode, is_empty_credentials};

fuzz_target!(|data: &[u8]| {
    let _ = is_empty_credentials(data);
    let Ok(creds) = decode(data) else {
        return;
    };
    assert!(!creds.user.contains(':'));
    let mut plain = creds.user.clone().into_bytes();
    plain.push(b':');
    plain.extend_from_slice(creds.password());
    let again = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&plain)
    );
    let back = decode(again.as_bytes()).expect("re-encoded credentials decode");
    assert_eq!(back.user, creds.user);
    assert_eq!(back.password(), creds.password());
});
