//! What goes wrong: an origin that lies or dies mid-body, regproxy killed
//! mid-fill, the registry stopped or overloaded, a cache folder that can't
//! be used, a full disk; and no `[cache]` at all.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::cache::{
    self, blob_answer, blob_head, blob_path, get_hashed, origin_gets, push_blob, random_blob,
    serve_blob, CacheOpts, Edge, Tmpfs, WAIT,
};
use crate::support::origin::{Origin, Step};
use crate::support::registry::Registry;
use crate::{KIB, MIB};

/// How the fake origin lies about a blob's body.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// 200 with the right length and the wrong bytes.
    WrongBytes,
    /// 200, half the body, then the connection closed.
    Cut,
}

/// A lying origin leaves nothing in the cache: the client's connection
/// closes short of its Content-Length, `fill_failures_total` is 1, and the
/// next pull (the origin honest again) fetches again and is kept. Without
/// the digest check the wrong bytes would reach the client whole and stay
/// in the cache; without the cut check a half file would be kept.
#[test]
fn an_origin_sending_wrong_bytes_leaves_nothing_cached() {
    lying_origin(Lie::WrongBytes);
}

#[test]
fn an_origin_cutting_the_body_leaves_nothing_cached() {
    lying_origin(Lie::Cut);
}

fn lying_origin(lie: Lie) {
    let (data, digest) = random_blob(2 * MIB);
    let lying = Arc::new(AtomicBool::new(true));
    let origin = {
        let (data, digest, lying) = (data.clone(), digest.clone(), lying.clone());
        Origin::start(move |req| {
            if let Some(steps) = serve_blob(req, &data, &digest) {
                return steps;
            }
            if !lying.load(Ordering::SeqCst) {
                return blob_answer(&data, &digest, 256 * KIB as usize, Duration::ZERO);
            }
            let mut head = vec![Step::Write(blob_head(&digest, data.len()))];
            match lie {
                Lie::WrongBytes => {
                    let mut wrong = data.clone();
                    wrong[data.len() / 3] ^= 0x5a;
                    head.push(Step::Write(wrong));
                }
                Lie::Cut => {
                    head.push(Step::Write(data[..data.len() / 2].to_vec()));
                    head.push(Step::Close);
                }
            }
            head
        })
    };
    let edge = Edge::start(origin.addr(), &CacheOpts::default());
    let path = blob_path("lie/app", &digest);

    let r = get_hashed(&edge.ep(), &path);
    assert!(r.is_err(), "{lie:?}: the client got a whole body: {r:?}");
    assert_eq!(edge.wait_metric("fill_failures_total", 1), 1, "{lie:?}");
    assert!(
        cache::wait_empty(|| edge.tmp_files()),
        "{lie:?}: tmp/ keeps {:?}",
        edge.tmp_files()
    );
    assert!(
        edge.blob_files().is_empty(),
        "{lie:?}: {:?}",
        edge.blob_files()
    );
    assert_eq!(edge.metric("fills_total"), 0);

    lying.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        let r = get_hashed(&edge.ep(), &path).unwrap();
        assert_eq!((r.status, &r.digest), (200, &digest), "{lie:?}: {r:?}");
        edge.wait_fills(1);
    }
    // The lie's own line is a fill too (one that failed).
    assert_eq!(
        edge.outcomes(&path, 3),
        [
            Some("fill".to_owned()),
            Some("fill".to_owned()),
            Some("hit".to_owned())
        ],
        "{lie:?}"
    );
    assert_eq!(edge.blob_files(), [edge.entry_path(&digest)], "{lie:?}");
    // The lie, the honest fill; the hit was confirmed with a HEAD.
    assert_eq!(origin_gets(&origin.requests(), &digest), 2, "{lie:?}");
    assert_eq!(edge.metric("fill_failures_total"), 1);
}

/// regproxy killed (SIGKILL, by pid) while a fill is half written, then
/// started again on the same folder: the dead process's `tmp/<pid>` is
/// gone, no partial blob is under `blobs/`, and the next pull is a fill,
/// byte-exact. Without the start-up sweep the half file would stay under
/// `tmp/` for ever; without the rename-after-check it would be a blob.
#[test]
fn kill_9_mid_fill_leaves_no_partial_file_after_a_restart() {
    let (data, digest) = random_blob(4 * MIB);
    let stalled = Arc::new(AtomicBool::new(true));
    let origin = {
        let (data, digest, stalled) = (data.clone(), digest.clone(), stalled.clone());
        Origin::start(move |req| {
            if let Some(steps) = serve_blob(req, &data, &digest) {
                return steps;
            }
            if !stalled.load(Ordering::SeqCst) {
                return blob_answer(&data, &digest, 256 * KIB as usize, Duration::ZERO);
            }
            // Half the body, then nothing: the fill is in flight.
            vec![
                Step::Write(blob_head(&digest, data.len())),
                Step::Write(data[..data.len() / 2].to_vec()),
                Step::Hang,
            ]
        })
    };
    let mut edge = Edge::start(origin.addr(), &CacheOpts::default());
    let path = blob_path("crash/app", &digest);
    let client = {
        let (ep, path) = (edge.ep(), path.clone());
        std::thread::spawn(move || get_hashed(&ep, &path))
    };
    let half = 512 + data.len() as u64 / 2;
    let written = crate::support::wait_for(WAIT, || {
        let files = edge.tmp_files();
        let len = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .max();
        (len >= Some(half)).then_some(files)
    });
    let written = written
        .unwrap_or_else(|| panic!("no half-written fill under tmp/: {:?}", edge.tmp_files()));
    let dead = edge.proxy.pid();
    let dead_tmp = edge.cache_dir.join("tmp").join(dead.to_string());
    assert!(
        written.iter().all(|f| f.starts_with(&dead_tmp)),
        "{written:?} not under {dead_tmp:?}"
    );

    stalled.store(false, Ordering::SeqCst);
    edge.restart();
    let cut = client.join().unwrap();
    assert!(
        cut.is_err(),
        "the killed fill's client got a whole body: {cut:?}"
    );
    assert!(
        !dead_tmp.exists(),
        "{dead_tmp:?} survived the restart: {:?}",
        edge.tmp_files()
    );
    assert!(
        edge.blob_files().is_empty(),
        "partial blob kept: {:?}",
        edge.blob_files()
    );
    assert!(edge.tmp_files().is_empty(), "{:?}", edge.tmp_files());

    let r = get_hashed(&edge.ep(), &path).unwrap();
    assert_eq!((r.status, &r.digest), (200, &digest), "{r:?}");
    assert_eq!(edge.outcomes(&path, 1), [Some("fill".to_owned())]);
    assert_eq!(edge.blob_files(), [edge.entry_path(&digest)]);
}

/// The real registry stopped (its pid killed): with `stale_if_error = 1h`
/// a blob confirmed before is served, byte-exact, logged `stale`; a blob
/// never cached gets 502 as without a cache; with `stale_if_error = 0s`
/// the cached blob gets 502 too. Without the cache every one is a 502.
#[test]
fn stale_if_error_serves_confirmed_blobs_while_the_registry_is_stopped() {
    let mut registry = Registry::start();
    let (x, _) = random_blob(300 * KIB);
    let (y, _) = random_blob(100 * KIB);
    let dx = push_blob(registry.addr(), "stale/app", &x);
    let dy = push_blob(registry.addr(), "stale/app", &y);
    let edge = |stale: &str| {
        Edge::start(
            registry.addr(),
            &CacheOpts {
                stale_if_error: stale.into(),
                // Confirmations are per worker: one worker holds them all.
                workers: Some(1),
                ..CacheOpts::default()
            },
        )
    };
    let (lenient, strict) = (edge("1h"), edge("0s"));
    for e in [&lenient, &strict] {
        let r = e.get_blob("stale/app", &dx).unwrap();
        assert_eq!((r.status, r.body == x), (200, true), "{r:?}");
        e.wait_fills(1);
    }
    registry.stop();

    let r = lenient.get_blob("stale/app", &dx).unwrap();
    assert_eq!((r.status, r.body == x), (200, true), "stale copy: {r:?}");
    let px = blob_path("stale/app", &dx);
    assert_eq!(lenient.outcomes(&px, 2)[1], Some("stale".to_owned()));
    assert_eq!(lenient.metric("stale_served_total"), 1);
    for (e, d, what) in [
        (&lenient, &dy, "never cached"),
        (&strict, &dy, "never cached"),
        (&strict, &dx, "stale_if_error 0s"),
    ] {
        let r = e.get_blob("stale/app", d).unwrap();
        assert_eq!(r.status, 502, "{what}: {r:?}");
    }
    assert_eq!(strict.metric("stale_served_total"), 0);
}

/// An overloaded registry (a fake origin answering 503, then 429, to
/// everything) does not stop a confirmed blob: it is served stale within
/// `stale_if_error`. A blob never cached gets the origin's own 503, as
/// without a cache. Without the cache both would get the 503/429.
#[test]
fn stale_if_error_serves_through_503_and_429() {
    let (x, dx) = random_blob(200 * KIB);
    let (y, dy) = random_blob(50 * KIB);
    let answer = Arc::new(AtomicU16::new(0));
    let origin = {
        let (x, dx, y, dy, answer) = (x.clone(), dx.clone(), y.clone(), dy.clone(), answer.clone());
        Origin::start(move |req| {
            let status = answer.load(Ordering::SeqCst);
            if status != 0 {
                let body = br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"busy"}]}"#;
                return vec![Step::Write(cache::answer(
                    req,
                    status,
                    &[("Content-Type", "application/json"), ("Retry-After", "1")],
                    body,
                ))];
            }
            let (data, digest) = if req.target.ends_with(&dy) {
                (&y, &dy)
            } else {
                (&x, &dx)
            };
            serve_blob(req, data, digest)
                .unwrap_or_else(|| blob_answer(data, digest, 64 * 1024, Duration::ZERO))
        })
    };
    let edge = Edge::start(
        origin.addr(),
        &CacheOpts {
            stale_if_error: "1h".into(),
            workers: Some(1),
            ..CacheOpts::default()
        },
    );
    let r = get_hashed(&edge.ep(), &blob_path("busy/app", &dx)).unwrap();
    assert_eq!((r.status, &r.digest), (200, &dx));
    edge.wait_fills(1);
    for status in [503, 429] {
        answer.store(status, Ordering::SeqCst);
        let r = get_hashed(&edge.ep(), &blob_path("busy/app", &dx)).unwrap();
        assert_eq!(
            (r.status, &r.digest),
            (200, &dx),
            "registry answering {status}: {r:?}"
        );
    }
    let px = blob_path("busy/app", &dx);
    assert_eq!(
        edge.outcomes(&px, 3),
        [
            Some("fill".to_owned()),
            Some("stale".to_owned()),
            Some("stale".to_owned())
        ]
    );
    assert_eq!(edge.metric("stale_served_total"), 2);
    answer.store(503, Ordering::SeqCst);
    let r = edge.get_blob("busy/app", &dy).unwrap();
    assert_eq!(r.status, 503, "never cached: the registry's answer: {r:?}");
}

/// A cache folder that cannot be made (its parent is a regular file):
/// regproxy starts, logs `cache disabled`, and serves as a plain proxy
/// (no `cache` field, every pull reaches the registry). And no `[cache]`
/// table: no field, no folder, behaviour as before the feature.
#[test]
fn an_unusable_cache_folder_or_no_cache_table_means_a_plain_proxy() {
    let registry = Registry::start();
    let (data, _) = random_blob(100 * KIB);
    let digest = push_blob(registry.addr(), "plain/app", &data);
    let path = blob_path("plain/app", &digest);
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let broken = Edge::start(
        registry.addr(),
        &CacheOpts {
            dir: Some(file.join("cache")),
            ..CacheOpts::default()
        },
    );
    assert!(
        broken.proxy.wait_for_stderr("cache disabled", WAIT),
        "{}",
        broken.proxy.stderr_text()
    );
    let none = Edge::start(
        registry.addr(),
        &CacheOpts {
            cache: false,
            ..CacheOpts::default()
        },
    );
    for (edge, what) in [(&broken, "unusable folder"), (&none, "no [cache]")] {
        for _ in 0..2 {
            let r = edge.get_blob("plain/app", &digest).unwrap();
            assert_eq!((r.status, r.body == data), (200, true), "{what}: {r:?}");
        }
        let lines = edge.wait_log(&path, 2);
        assert_eq!(lines.len(), 2, "{what}: {lines:?}");
        assert!(
            lines.iter().all(|l| l.raw.get("cache").is_none()),
            "{what}: {lines:?}"
        );
        assert_eq!(
            edge.metric("hits_total") + edge.metric("entries"),
            0,
            "{what}"
        );
    }
    assert!(
        !none.cache_dir.exists(),
        "no [cache] made {:?}",
        none.cache_dir
    );
    registry.settle(Duration::from_millis(300));
    assert_eq!(
        cache::blob_gets(&registry, &digest),
        4,
        "every pull reached the registry"
    );
}

/// A full disk: the cache folder on a 20 MiB tmpfs and a 32 MiB blob. The
/// client still gets the whole blob byte-exact, the failed fill is counted,
/// nothing is left under `tmp/`. Without the disk-error path the client's
/// pull would fail with the disk.
#[test]
fn a_full_disk_fails_the_fill_not_the_pull() {
    let Some(tmpfs) = Tmpfs::mount(20) else {
        return;
    };
    let registry = Registry::start();
    let (data, _) = random_blob(32 * MIB);
    let digest = push_blob(registry.addr(), "full/app", &data);
    drop(data);
    // Declared after the tmpfs: dropped (killed) before it is unmounted.
    let edge = Edge::start(
        registry.addr(),
        &CacheOpts {
            dir: Some(tmpfs.path().join("cache")),
            max_size: "64MiB".into(),
            ..CacheOpts::default()
        },
    );
    for round in 0..2 {
        let r = get_hashed(&edge.ep(), &blob_path("full/app", &digest)).unwrap();
        assert_eq!(
            (r.status, &r.digest),
            (200, &digest),
            "round {round}: {r:?}"
        );
        assert!(
            edge.wait_metric("fill_failures_total", round + 1) > round,
            "round {round}"
        );
        assert!(
            cache::wait_empty(|| edge.tmp_files()),
            "round {round}: {:?}",
            edge.tmp_files()
        );
        assert!(edge.blob_files().is_empty(), "{:?}", edge.blob_files());
    }
    assert_eq!(edge.metric("bytes"), 0);
}
