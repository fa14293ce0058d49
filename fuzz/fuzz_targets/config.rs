//! The configuration file: `Config::parse` never panics, and every error
//! it reports is located inside the text (FILE:LINE:COL).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regproxy_core::config::{Config, Offline};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An offline host: referenced files are never found and host names
    // never resolved, so no run touches real files or the network.
    let path = Path::new("/nonexistent-regproxy-fuzz/regproxy.toml");
    if let Err(e) = Config::parse(path, text, &Offline) {
        let lines = text.split('\n').count();
        assert!(e.line <= lines, "{e}");
        let _ = e.to_string();
    }
});
