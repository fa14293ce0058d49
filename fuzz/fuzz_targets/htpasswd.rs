//! htpasswd files: parsing never panics, every error names a line that
//! exists, and every accepted entry can be verified (cheap schemes only:
//! bcrypt and SHA-crypt would make each run take milliseconds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use regproxy_core::auth::htpasswd::Htpasswd;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Htpasswd::parse(text) {
        Ok(users) => {
            for user in users.users() {
                let hash = users.get(user).expect("listed user has an entry");
                let _ = hash.scheme();
                if !hash.is_slow_for(b"password") {
                    assert!(!hash.verify(b"\xff not a password \xff"));
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
