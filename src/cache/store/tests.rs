use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use super::*;

fn config(dir: &Path) -> CacheConfig {
    CacheConfig {
        dir: dir.join("cache"),
        max_size: 1 << 30,
        confirm_ttl: Duration::ZERO,
        stale_if_error: Duration::ZERO,
    }
}

fn d(n: u32) -> BlobDigest {
    BlobDigest::parse(&format!("sha256:{n:064x}")).expect("valid")
}

/// A pid no process has: above Linux's largest `pid_max` (2²²).
const DEAD_PID: u32 = 99_999_999;

/// Writes an entry of `body` body bytes for `d` (header left as zeros:
/// the store reads sizes, not headers), modified at `mtime`.
fn put(store: &Store, d: &BlobDigest, body: u64, mtime: SystemTime) {
    let path = store.path(d);
    fs::create_dir_all(path.parent().expect("fan")).expect("mkdir");
    let f = File::create(&path).expect("create");
    f.set_len(HEADER_LEN + body).expect("size");
    f.set_modified(mtime).expect("mtime");
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

#[test]
fn open_creates_the_folders() {
    let t = tempfile::tempdir().expect("tempdir");
    let (store, rebuilt) = Store::open(&config(t.path())).expect("opens");
    let dir = t.path().join("cache");
    assert_eq!(store.dir(), dir);
    assert!(dir.join("blobs").is_dir());
    let own = dir.join("tmp").join(std::process::id().to_string());
    assert!(own.is_dir());
    assert_eq!(
        fs::read_dir(&own).expect("list").count(),
        0,
        "probe removed"
    );
    assert!(rebuilt.entries.is_empty());
    assert_eq!((rebuilt.removed_junk, rebuilt.removed_tmp), (0, 0));
}

#[test]
fn a_folder_that_cannot_be_written_is_an_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let cfg = config(t.path());
    Store::open(&cfg).expect("first open");
    let tmp = cfg.dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o555)).expect("chmod");
    // root ignores modes: make the folder immutable instead.
    let immutable = File::create(tmp.join("w")).is_ok();
    if immutable {
        let _ = fs::remove_file(tmp.join("w"));
        let _ = fs::remove_dir_all(tmp.join(std::process::id().to_string()));
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&tmp)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            assert!(
                std::env::var_os("CI").is_none(),
                "running as root, a read-only folder needs chattr (Debian: e2fsprogs) on ext4/xfs"
            );
            eprintln!("skipped: root, and chattr +i failed");
            return;
        }
    }
    let result = Store::open(&cfg);
    if immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&tmp)
            .status();
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod back");
    let err = result.expect_err("read-only tmp/").to_string();
    assert!(err.starts_with("cache: cannot "), "{err}");
    assert!(err.contains(&tmp.display().to_string()), "{err}");
}

#[test]
fn a_file_where_the_folder_goes_is_an_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let cfg = config(t.path());
    fs::write(&cfg.dir, "").expect("a file");
    let err = Store::open(&cfg).expect_err("a file").to_string();
    assert!(err.contains("cannot create"), "{err}");
}

#[test]
fn dead_processes_fills_go_and_live_ones_stay() {
    let t = tempfile::tempdir().expect("tempdir");
    let cfg = config(t.path());
    let tmp = cfg.dir.join("tmp");
    // pid 1 always runs; our own pid's folder is a previous life's.
    for pid in [DEAD_PID, 1, std::process::id()] {
        let dir = tmp.join(pid.to_string());
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("fill"), "partial").expect("write");
    }
    fs::write(tmp.join("stray"), "x").expect("write");
    fs::create_dir_all(tmp.join("0")).expect("mkdir");
    let (_, rebuilt) = Store::open(&cfg).expect("opens");
    assert_eq!(rebuilt.removed_tmp, 3, "dead pid, junk file, pid 0");
    assert!(!tmp.join(DEAD_PID.to_string()).exists());
    assert!(tmp.join("1/fill").exists());
    assert!(!tmp
        .join(std::process::id().to_string())
        .join("fill")
        .exists());
    assert!(!tmp.join("stray").exists() && !tmp.join("0").exists());
}

#[test]
fn rebuild_lists_sizes_oldest_first_and_removes_junk() {
    let t = tempfile::tempdir().expect("tempdir");
    let cfg = config(t.path());
    let store = Store::at(&cfg.dir);
    put(&store, &d(1), 100, at(30));
    put(&store, &d(2), 0, at(10));
    put(&store, &d(3), 5, at(20));
    let sha512 = BlobDigest::parse(&format!("sha512:{}", "ab".repeat(64))).expect("valid");
    put(&store, &sha512, 7, at(5));
    let blobs = cfg.dir.join("blobs");
    let h = d(0xab4).hex().to_owned();
    let junk = [
        blobs.join("README"),
        blobs.join("md5/00/x"),
        blobs.join("sha256/zz/x"),
        blobs.join("sha256/0g/x"),
        blobs.join(format!("sha256/01/{h}")),
        blobs.join(format!("sha256/00/{h}.tmp")),
        blobs.join(format!("sha256/00/{}", h.to_uppercase())),
        blobs.join(format!("sha512/00/{h}")),
    ];
    for j in &junk {
        fs::create_dir_all(j.parent().expect("parent")).expect("mkdir");
        fs::write(j, [0u8; 600]).expect("junk");
    }
    // Too short for a header, and a folder where an entry goes.
    fs::write(store.path(&d(5)), [0u8; 511]).expect("short");
    fs::create_dir_all(store.path(&d(6))).expect("a folder");
    std::os::unix::fs::symlink(store.path(&d(1)), store.path(&d(7))).expect("link");
    let (_, rebuilt) = Store::open(&cfg).expect("opens");
    let want = vec![(sha512, 7), (d(2), 0), (d(3), 5), (d(1), 100)];
    assert_eq!(rebuilt.entries, want);
    assert_eq!(
        rebuilt.removed_junk,
        8 + 3,
        "md5/ and sha256/zz/ count once"
    );
    for j in junk {
        assert!(!j.exists(), "{}", j.display());
    }
    for n in [5, 6, 7] {
        assert!(fs::symlink_metadata(store.path(&d(n))).is_err(), "{n}");
    }
    assert!(store.path(&d(1)).exists(), "a link's target stays");
    let again = Store::open(&cfg).expect("opens").1;
    assert_eq!((again.entries.len(), again.removed_junk), (4, 0));
}

#[test]
fn parallel_and_serial_walks_agree() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = Store::at(t.path());
    for n in 0..600u32 {
        put(
            &store,
            &d(n.wrapping_mul(2_654_435_761)),
            u64::from(n),
            at(u64::from(n % 50)),
        );
    }
    let one = scan::list(&store.blobs, scan::Junk::Keep, 1).expect("serial");
    let four = scan::list(&store.blobs, scan::Junk::Keep, 4).expect("parallel");
    let key = |l: &scan::Listing| {
        l.entries
            .iter()
            .map(|e| (e.digest.clone(), e.size, e.mtime))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&one).len(), 600);
    assert_eq!(key(&one), key(&four));
}

#[test]
fn commit_renames_into_place_and_remove_and_purge_unlink() {
    let t = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(&config(t.path())).expect("opens");
    let (tmp, mut f) = store.tmp_file().expect("tmp file");
    assert!(tmp.starts_with(
        t.path()
            .join("cache/tmp")
            .join(std::process::id().to_string())
    ));
    f.write_all(&[7u8; 600]).expect("write");
    let path = store.commit(&tmp, &d(1)).expect("commit");
    assert_eq!(path, store.path(&d(1)));
    assert!(path.ends_with(format!("blobs/sha256/00/{}", d(1).hex())));
    assert!(!tmp.exists());
    assert_eq!(fs::read(&path).expect("read").len(), 600);
    let (other, _) = store.tmp_file().expect("tmp file");
    assert_ne!(other, tmp, "names are random");
    assert_eq!(
        store.stats().expect("stats"),
        Stats {
            entries: 1,
            bytes: 600 - HEADER_LEN,
            tmp_files: 1,
            tmp_bytes: 0
        }
    );
    // An open reader outlives the unlink.
    let reader = File::open(&path).expect("open");
    store.remove(&d(1)).expect("remove");
    store.remove(&d(1)).expect("a missing entry is fine");
    assert_eq!(reader.metadata().expect("still open").len(), 600);
    let err = store.commit(&tmp, &d(2)).expect_err("tmp is gone");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    for n in 3..6 {
        put(&store, &d(n), 10, at(0));
    }
    let purged = store.purge_all().expect("purge");
    assert_eq!((purged.entries, purged.bytes), (3, 30));
    let stats = store.stats().expect("stats");
    assert_eq!(
        (stats.entries, stats.tmp_files),
        (0, 1),
        "fills are not purged"
    );
}

#[test]
fn at_touches_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = Store::at(&t.path().join("none"));
    assert_eq!(store.stats().expect("stats"), Stats::default());
    assert_eq!(store.purge_all().expect("purge"), Stats::default());
    assert!(!t.path().join("none").exists());
}

/// The start-up rebuild for 100,000 entries, timed (not asserted):
/// `cargo test --release --lib rebuild_of_100k -- --ignored --nocapture`.
/// With `REGPROXY_DROP_CACHES=1` (root) each run starts with a cold
/// dentry and inode cache (`echo 2 > /proc/sys/vm/drop_caches`).
#[test]
#[ignore = "a measurement: run by hand for bench/journal"]
fn rebuild_of_100k_entries() {
    const N: u32 = 100_000;
    let t = tempfile::tempdir().expect("tempdir");
    let cfg = config(t.path());
    let store = Store::at(&cfg.dir);
    let made = std::time::Instant::now();
    for n in 0..N {
        put(
            &store,
            &d(n.wrapping_mul(2_654_435_761)),
            1,
            at(u64::from(n)),
        );
    }
    eprintln!("made {N} entries in {:?}", made.elapsed());
    let cold = std::env::var_os("REGPROXY_DROP_CACHES").is_some();
    let drop_caches = || {
        if cold {
            let _ = std::process::Command::new("sync").status();
            fs::write("/proc/sys/vm/drop_caches", "2").expect("drop_caches (needs root)");
        }
    };
    // utime + stime of the whole process (ended threads included), in
    // clock ticks of 10 ms.
    let cpu = || -> Duration {
        let stat = fs::read_to_string("/proc/self/stat").expect("stat");
        let after = stat.rsplit_once(')').expect("comm").1;
        let f: Vec<u64> = after
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Duration::from_millis((f[11] + f[12]) * 10)
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for threads in [1, scan::threads()] {
        let (mut runs, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            drop_caches();
            let (start, cpu0) = (std::time::Instant::now(), cpu());
            let listing = scan::list(&store.blobs, scan::Junk::Remove, threads).expect("list");
            runs.push(start.elapsed());
            cpus.push(cpu() - cpu0);
            assert_eq!(listing.entries.len(), N as usize);
        }
        eprintln!(
            "list, {threads} threads, cold={cold}: wall {runs:?}, median {:?}; cpu {cpus:?}",
            median(runs.clone())
        );
    }
    let (mut runs, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        drop_caches();
        let (start, cpu0) = (std::time::Instant::now(), cpu());
        let (_, rebuilt) = Store::open(&cfg).expect("opens");
        runs.push(start.elapsed());
        cpus.push(cpu() - cpu0);
        assert_eq!(rebuilt.entries.len(), N as usize);
    }
    eprintln!(
        "Store::open, cold={cold}: wall {runs:?}, median {:?}; cpu {cpus:?}",
        median(runs.clone())
    );
}
