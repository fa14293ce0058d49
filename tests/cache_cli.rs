//! `regproxy cache stats | purge <digest> | purge --all`, run as the real
//! binary on a temporary cache folder: what stats counts, what purge
//! removes (never fills in progress), and the exit codes for a malformed
//! digest (2) and a config without `[cache]` (1).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = r#"listen = "127.0.0.1:0"
[auth]
htpasswd = "users"
[upstream]
servers = ["127.0.0.1:5000"]
[cache]
dir = "cache"
max_size = "64MiB"
"#;

fn digest(n: u32) -> String {
    format!("sha256:{n:064x}")
}

/// An entry of `body` bytes after the 512-byte header, as the store lays
/// it out (the header's content is not read by these commands).
fn put_entry(cache: &Path, n: u32, body: u64) {
    let hex = format!("{n:064x}");
    let dir = cache.join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join(&hex)).unwrap();
    f.set_len(512 + body).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_regproxy"))
        .arg("--config")
        .arg(dir.join("regproxy.toml"))
        .arg("cache")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// The value of `key` in stats' `key value` lines.
fn stat(text: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

fn fixture(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users"), "").unwrap();
    std::fs::write(dir.path().join("regproxy.toml"), config).unwrap();
    dir
}

#[test]
fn stats_and_purge() {
    let dir = fixture(CONFIG);
    let cache = dir.path().join("cache");
    let empty = stdout(&run(dir.path(), &["stats"]));
    assert_eq!(stat(&empty, "entries"), "0");
    assert_eq!(stat(&empty, "max_size"), (64u64 << 20).to_string());
    assert!(!cache.exists(), "stats creates nothing");

    put_entry(&cache, 1, 1000);
    put_entry(&cache, 2, 24);
    put_entry(&cache, 3, 0);
    let fills = cache.join("tmp/12345");
    std::fs::create_dir_all(&fills).unwrap();
    std::fs::write(fills.join("fill"), [0u8; 700]).unwrap();
    let text = stdout(&run(dir.path(), &["stats"]));
    assert_eq!(stat(&text, "dir"), cache.display().to_string());
    assert_eq!(stat(&text, "entries"), "3");
    assert_eq!(stat(&text, "bytes"), "1024");
    assert_eq!(stat(&text, "tmp_files"), "1");
    assert_eq!(stat(&text, "tmp_bytes"), "700");

    let one = digest(1);
    assert_eq!(
        stdout(&run(dir.path(), &["purge", &one])),
        format!("removed {one}\n")
    );
    assert_eq!(
        stdout(&run(dir.path(), &["purge", &one])),
        format!("{one} is not in the cache\n")
    );
    let text = stdout(&run(dir.path(), &["stats"]));
    assert_eq!(
        (stat(&text, "entries"), stat(&text, "bytes")),
        ("2".into(), "24".into())
    );

    let all = stdout(&run(dir.path(), &["purge", "--all"]));
    assert_eq!(all, "removed 2 entries, 24 bytes\n");
    let text = stdout(&run(dir.path(), &["stats"]));
    assert_eq!(stat(&text, "entries"), "0");
    assert_eq!(stat(&text, "tmp_files"), "1", "fills in progress stay");
    assert!(fills.join("fill").exists());
}

#[test]
fn a_malformed_digest_exits_2_and_touches_nothing() {
    let dir = fixture(CONFIG);
    let cache = dir.path().join("cache");
    put_entry(&cache, 1, 10);
    let upper = digest(0xabc).to_uppercase();
    for bad in ["sha256:abc", "latest", "", "../../etc/passwd", &upper] {
        let o = run(dir.path(), &["purge", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {o:?}");
        assert!(stderr(&o).contains("64 lower-case hex"), "{}", stderr(&o));
    }
    // Neither a digest nor --all, or both: clap's usage error, also 2.
    assert_eq!(run(dir.path(), &["purge"]).status.code(), Some(2));
    let both = run(dir.path(), &["purge", &digest(1), "--all"]);
    assert_eq!(both.status.code(), Some(2));
    assert_eq!(stat(&stdout(&run(dir.path(), &["stats"])), "entries"), "1");
}

#[test]
fn a_config_without_a_cache_exits_1() {
    let without = CONFIG.split("[cache]").next().unwrap();
    let dir = fixture(without);
    for args in [&["stats"][..], &["purge", "--all"], &["purge", &digest(1)]] {
        let o = run(dir.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {o:?}");
        assert!(
            stderr(&o).contains("has no [cache] table"),
            "{}",
            stderr(&o)
        );
    }
    // A config error is located, as everywhere.
    let dir = fixture(&CONFIG.replace("64MiB", "1MiB"));
    let o = run(dir.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("regproxy.toml:8:12: cache.max_size"),
        "{}",
        stderr(&o)
    );
}
