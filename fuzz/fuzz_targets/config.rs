//! The configuration file: `Config::parse` never panics, and every error
//! it reports is located inside the text (FILE:LINE:COL).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use regproxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that does not exist: referenced files are looked up
    // relative to it and never found, so no run touches real files.
    let path = Path::new("/nonexistent-regproxy-fuzz/regproxy.toml");
    if let Err(e) = Config::parse(path, text) {
        let lines = text.split('\n').count();
        assert!(e.line <= lines, "{e}");
        let _ = e.to_string();
    }
});
