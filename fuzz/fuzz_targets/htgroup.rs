//! htgroup files: parsing never panics, every error names a line that
//! exists, and membership agrees with the group listing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::auth::groups::Groups;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Groups::parse(text) {
        Ok(groups) => {
            for g in groups.names() {
                assert!(groups.is_defined(g));
                for m in groups.members(g) {
                    assert!(groups.contains(g, m));
                    assert!(groups.groups_of(m).any(|x| x == g));
                }
            }
        }
        Err(errors) => {
            let lines = text.split('\n').count();
            for e in errors {
                assert!(e.line >= 1 && e.line <= lines, "{e}");
            }
        }
    }
});
