//! The shared index and single flight, without a runtime: lookups, a fill's
//! begin, commit, failure and abandonment, and what the next lookup sees.

use std::io::Write;
use std::time::Duration;

use super::*;

const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const MIB: u64 = 1 << 20;

fn open(dir: &std::path::Path, max_size: u64) -> Arc<Cache> {
    Cache::open(&CacheConfig {
        dir: dir.to_path_buf(),
        max_size,
        confirm_ttl: Duration::ZERO,
        stale_if_error: Duration::ZERO,
    })
    .expect("cache opens")
}

fn digest(s: &str) -> BlobDigest {
    BlobDigest::parse(s).expect("digest")
}

fn fill(cache: &Arc<Cache>, d: &BlobDigest, size: u64) -> usize {
    let Lookup::Fill(mut filler) = cache.lookup(d, true) else {
        panic!("expected a fill");
    };
    let (mut file, _) = filler
        .begin(Kind::Blob, size, "application/octet-stream")
        .expect("begin");
    file.write_all(&vec![7u8; size as usize]).expect("write");
    filler.advance(size);
    filler.commit().expect("commit")
}

#[test]
fn one_fill_per_digest_others_follow_then_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(dir.path(), 64 * MIB);
    let a = digest(A);
    let Lookup::Fill(mut filler) = cache.lookup(&a, true) else {
        panic!("the first miss fills");
    };
    let Lookup::Follow(flight) = cache.lookup(&a, true) else {
        panic!("a second miss follows");
    };
    assert_eq!(flight.stage(), Stage::Asking);
    assert!(matches!(cache.lookup(&a, false), Lookup::Follow(_)));
    let (_file, evicted) = filler
        .begin(Kind::Blob, 0, "application/octet-stream")
        .expect("begin");
    assert_eq!(evicted, 0);
    let tmp = flight.known().expect("known after begin").tmp.clone();
    assert!(tmp.exists(), "followers can open the fill's file");
    filler.commit().expect("commit");
    assert_eq!(flight.stage(), Stage::Done);
    assert!(!tmp.exists(), "renamed into place");
    assert!(cache.path(&a).exists());
    assert!(matches!(cache.lookup(&a, true), Lookup::Hit));
    assert_eq!(cache.gauges(), (0, 1));
}

#[test]
fn a_failed_or_dropped_fill_keeps_nothing_and_the_next_miss_fills_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(dir.path(), 64 * MIB);
    let a = digest(A);
    let Lookup::Fill(mut filler) = cache.lookup(&a, true) else {
        panic!("fill");
    };
    let Lookup::Follow(flight) = cache.lookup(&a, true) else {
        panic!("follow");
    };
    filler
        .begin(Kind::Blob, MIB, "application/octet-stream")
        .expect("begin");
    let tmp = flight.known().expect("known").tmp.clone();
    drop(filler);
    assert_eq!(flight.stage(), Stage::Failed);
    assert!(!tmp.exists(), "the partial file is removed");
    assert_eq!(cache.gauges(), (0, 0), "the reservation is given back");
    let Lookup::Fill(filler) = cache.lookup(&a, true) else {
        panic!("the next miss fills again");
    };
    let Lookup::Follow(flight) = cache.lookup(&a, true) else {
        panic!("follow");
    };
    filler.abandon();
    assert_eq!(flight.stage(), Stage::Abandoned);
    assert!(matches!(cache.lookup(&a, false), Lookup::Miss));
}

#[test]
fn filling_past_max_size_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = open(dir.path(), 16 * MIB);
    let (a, b) = (digest(A), digest(B));
    assert_eq!(fill(&cache, &a, 10 * MIB), 0);
    let kept = std::fs::File::open(cache.path(&a)).expect("a reader holds a");
    assert_eq!(fill(&cache, &b, 10 * MIB), 0, "room was reserved at begin");
    assert!(!cache.path(&a).exists(), "a was evicted for b");
    assert_eq!(
        kept.metadata().expect("metadata").len(),
        HEADER_LEN + 10 * MIB,
        "an open reader keeps the whole evicted file"
    );
    assert!(matches!(cache.lookup(&a, false), Lookup::Miss));
    assert!(matches!(cache.lookup(&b, false), Lookup::Hit));
    assert_eq!(cache.gauges(), (10 * MIB, 1));
}

#[test]
fn a_restart_finds_what_was_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = digest(A);
    fill(&open(dir.path(), 64 * MIB), &a, 3);
    let again = open(dir.path(), 64 * MIB);
    assert!(matches!(again.lookup(&a, true), Lookup::Hit));
    assert_eq!(again.gauges(), (3, 1));
}
