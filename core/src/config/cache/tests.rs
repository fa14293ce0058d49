use std::path::Path;
use std::time::Duration;

use crate::config::tests::{fixture, parse, MINIMAL};
use crate::config::{CacheConfig, Config, ConfigError};

fn with_cache(dir: &Path, table: &str) -> Result<Config, ConfigError> {
    parse(dir, &format!("{MINIMAL}[cache]\n{table}"))
}

#[test]
fn no_table_no_cache() {
    let dir = fixture();
    assert_eq!(parse(dir.path(), MINIMAL).expect("valid").cache, None);
}

#[test]
fn dir_resolves_against_the_config_and_durations_default_to_zero() {
    let dir = fixture();
    let c = with_cache(dir.path(), "dir = \"cache\"\nmax_size = \"50GiB\"\n").expect("valid");
    assert_eq!(
        c.cache,
        Some(CacheConfig {
            dir: dir.path().join("cache"),
            max_size: 50 << 30,
            confirm_ttl: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        })
    );
    let text = "dir = \"/var/cache/regproxy\"\nmax_size = 16777216\n\
                confirm_ttl = \"5m\"\nstale_if_error = \"1h\"\n";
    let c = with_cache(dir.path(), text)
        .expect("valid")
        .cache
        .expect("cache");
    assert_eq!(c.dir, Path::new("/var/cache/regproxy"));
    assert_eq!(c.max_size, 16 << 20);
    assert_eq!(c.confirm_ttl, Duration::from_secs(300));
    assert_eq!(c.stale_if_error, Duration::from_secs(3600));
}

/// The line and column of `text`'s first problem, and its message.
fn error(text: &str) -> (usize, usize, String) {
    let dir = fixture();
    let e = with_cache(dir.path(), text).expect_err("invalid");
    (e.line, e.column, e.message)
}

/// MINIMAL's lines, `[cache]` and the first key's line: errors on the
/// table's first line point here.
const FIRST: usize = 8;

#[test]
fn located_errors() {
    assert_eq!(MINIMAL.lines().count() + 2, FIRST, "MINIMAL changed");
    let (line, col, m) = error("dir = \"c\"\nmax_size = \"15MiB\"\n");
    assert_eq!((line, col), (FIRST + 1, 12), "{m}");
    assert!(m.contains("below the 16 MiB minimum"), "{m}");
    let (line, _, m) = error("dir = \"c\"\nmax_size = 16777215\n");
    assert_eq!(line, FIRST + 1);
    assert!(m.contains("16777215 bytes"), "{m}");
    let (line, _, m) = error("dir = \"c\"\nmax_size = \"lots\"\n");
    assert_eq!(line, FIRST + 1);
    assert!(m.contains("cache.max_size: invalid size \"lots\""), "{m}");
    let (line, _, m) = error("dir = \"c\"\nmax_size = \"1g\"\nconfirm_ttl = \"soon\"\n");
    assert_eq!(line, FIRST + 2);
    assert!(m.contains("invalid duration"), "{m}");
    let (line, _, m) = error("dir = \"c\"\nmax_size = \"1g\"\nstale_if_error = 5\n");
    assert_eq!(line, FIRST + 2, "{m}");
    let (line, _, m) = error("dir = \"\"\nmax_size = \"1g\"\n");
    assert_eq!(line, FIRST);
    assert!(m.contains("cache.dir must not be empty"), "{m}");
    let (_, _, m) = error("max_size = \"1g\"\n");
    assert!(m.contains("missing field `dir`"), "{m}");
    let (_, _, m) = error("dir = \"c\"\n");
    assert!(m.contains("missing field `max_size`"), "{m}");
    let (line, _, m) = error("dir = \"c\"\nmax_size = \"1g\"\nmax_sise = 1\n");
    assert_eq!(line, FIRST + 2);
    assert!(m.contains("unknown field `max_sise`"), "{m}");
}

#[test]
fn dir_may_be_missing_or_a_folder_but_not_a_file() {
    let dir = fixture();
    std::fs::create_dir(dir.path().join("there")).expect("mkdir");
    for ok in ["missing", "there", "there/missing"] {
        let text = format!("dir = \"{ok}\"\nmax_size = \"1g\"\n");
        assert!(with_cache(dir.path(), &text).is_ok(), "{ok}");
    }
    let text = "dir = \"users\"\nmax_size = \"1g\"\n";
    let e = with_cache(dir.path(), text).expect_err("a file");
    assert_eq!(e.line, FIRST);
    let users = dir.path().join("users");
    assert!(
        e.to_string().ends_with(&format!(
            "cache.dir: {} exists and is not a directory",
            users.display()
        )),
        "{e}"
    );
}
