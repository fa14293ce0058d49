//! Serving from the cache: Range and HEAD against the registry's own
//! answers, eviction while clients read, single flight, TLS clients.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::support::cache::{
    blob_answer, blob_gets, blob_head, blob_path, files_under, get_hashed, origin_gets, push_blob,
    random_blob, serve_blob, CacheOpts, Edge, SlowRead, WAIT,
};
use crate::support::http;
use crate::support::origin::{Origin, Step};
use crate::support::proxy::EPOLL;
use crate::support::registry::Registry;
use crate::support::skopeo::{
    docker_ref, make_image_dir, skopeo_copy, CopyOpts, MANIFEST_MEDIA_TYPE,
};
use crate::{KIB, MIB};

/// The headers a hit must carry as the registry does.
const SAME_HEADERS: [&str; 5] = [
    "docker-content-digest",
    "etag",
    "accept-ranges",
    "content-type",
    "content-length",
];

/// From a hit: `bytes=0-0`, `bytes=10-99`, `bytes=-100`, a range reaching
/// the end, and `bytes=size-` (416, `Content-Range: bytes */size`), each
/// compared with the registry's own answer to the same request (status,
/// `Content-Range`, body) and with the bytes pushed; the full GET's and
/// HEAD's headers equal the registry's. The registry sends the blob once:
/// without the cache every one of these would be a GET there.
#[test]
fn ranges_and_head_from_a_hit_match_the_registry() {
    let registry = Registry::start();
    let edge = Edge::start(registry.addr(), &CacheOpts::default());
    let (data, _) = random_blob(300 * KIB + 7);
    let digest = push_blob(registry.addr(), "range/app", &data);
    let path = blob_path("range/app", &digest);
    let fill = edge.get_blob("range/app", &digest).unwrap();
    assert_eq!((fill.status, fill.body == data), (200, true), "{fill:?}");
    edge.wait_fills(1);

    let direct = |method: &str, extra: &[(&str, &str)]| {
        http::request(registry.addr(), method, &path, None, extra, b"").unwrap()
    };
    for method in ["GET", "HEAD"] {
        let mine = edge.call(method, &path, &[]).unwrap();
        let theirs = direct(method, &[]);
        assert_eq!(mine.status, 200, "{method}: {mine:?}");
        for name in SAME_HEADERS {
            assert_eq!(
                mine.header(name),
                theirs.header(name),
                "{method} {name}: {mine:?} vs {theirs:?}"
            );
        }
        let want: &[u8] = if method == "GET" { &data } else { b"" };
        assert!(
            mine.body == want,
            "{method}: body of {} bytes",
            mine.body.len()
        );
    }
    let ranges = check_ranges(&edge, &registry, &path, &data);
    let n = 3 + ranges;
    let mut want = vec![Some("fill".to_owned())];
    want.resize(n, Some("hit".to_owned()));
    assert_eq!(edge.outcomes(&path, n), want);
    assert_eq!(edge.metric("hits_total"), (n - 1) as u64);
    registry.settle(Duration::from_millis(300));
    // The fill, and the test's own full GET (its ranges are 206 and 416).
    assert_eq!(blob_gets(&registry, &digest), 2);
}

/// Each single range from the hit, against the registry's own answer
/// and the bytes pushed; returns how many were asked.
fn check_ranges(edge: &Edge, registry: &Registry, path: &str, data: &[u8]) -> usize {
    let size = data.len();
    let direct = |extra: &[(&str, &str)]| {
        http::request(registry.addr(), "GET", path, None, extra, b"").unwrap()
    };
    let ranges = [
        ("bytes=0-0".to_owned(), Some(0..1)),
        ("bytes=10-99".to_owned(), Some(10..100)),
        ("bytes=-100".to_owned(), Some(size - 100..size)),
        (format!("bytes={}-", size - 1000), Some(size - 1000..size)),
        (
            format!("bytes={}-{}", size - 5, size + 50),
            Some(size - 5..size),
        ),
        (format!("bytes={size}-"), None),
    ];
    for (range, want) in &ranges {
        let mine = edge.call("GET", path, &[("Range", range)]).unwrap();
        let theirs = match want {
            Some(_) => direct(&[("Range", range)]),
            // The registry's 416 keeps the blob's Content-Length over a
            // 33-byte error text: its head only.
            None => registry_head_only(registry.addr(), path, range),
        };
        assert_eq!(
            mine.status, theirs.status,
            "{range}: {mine:?} vs {theirs:?}"
        );
        assert_eq!(
            mine.header("content-range"),
            theirs.header("content-range"),
            "{range}"
        );
        match want {
            Some(span) => {
                assert_eq!(mine.status, 206, "{range}");
                assert!(mine.body == data[span.clone()], "{range}: wrong bytes");
                assert_eq!(
                    mine.header("content-length"),
                    Some(span.len().to_string().as_str())
                );
            }
            None => {
                assert_eq!(mine.status, 416, "{range}");
                let all = format!("bytes */{size}");
                assert_eq!(mine.header("content-range"), Some(all.as_str()), "{range}");
            }
        }
    }
    ranges.len()
}

/// The head of the registry's answer to `GET path` with `Range: range`.
fn registry_head_only(addr: std::net::SocketAddr, path: &str, range: &str) -> http::RawResponse {
    let mut conn = http::Conn::connect(addr).unwrap();
    let host = addr.to_string();
    let extra = [("Host", host.as_str()), ("Range", range)];
    conn.send(&http::build_request("GET", path, None, &extra, b""))
        .unwrap();
    conn.read_head_response().unwrap()
}

/// `max_size` 16 MiB, blobs of 7 MiB: while two slow readers hold hits of
/// A and B part-read, fills of C and D evict A and B (unlinked under the
/// readers). Every read completes byte-exact, evictions are counted, and
/// the cache never holds more than `max_size`. Without an open file
/// outliving its unlink the readers would be cut or read other bytes.
#[test]
fn eviction_never_breaks_a_reader() {
    eviction_under_readers("");
}

/// The same on the epoll driver, where every socket is non-blocking.
#[test]
fn eviction_never_breaks_a_reader_on_the_epoll_driver() {
    eviction_under_readers(EPOLL);
}

fn eviction_under_readers(top: &'static str) {
    let registry = Registry::start();
    let edge = Edge::start(
        registry.addr(),
        &CacheOpts {
            max_size: "16MiB".into(),
            top,
            ..CacheOpts::default()
        },
    );
    let blobs: Vec<(Vec<u8>, String)> = (0..4)
        .map(|_| {
            let (data, _) = random_blob(7 * MIB);
            let d = push_blob(registry.addr(), "evict/app", &data);
            (data, d)
        })
        .collect();
    let max = 16 * MIB;
    for (n, (data, d)) in blobs[..2].iter().enumerate() {
        let r = get_hashed(&edge.ep(), &blob_path("evict/app", d)).unwrap();
        assert_eq!((r.status, r.len), (200, data.len() as u64));
        edge.wait_fills(n as u64 + 1);
    }
    // Two hits, read 1 MiB then held, then 8 KiB a read.
    let readers: Vec<_> = blobs[..2]
        .iter()
        .map(|(_, d)| {
            let slow = Arc::new(SlowRead::new(MIB, 8 * KIB as usize));
            let (s, ep, path) = (slow.clone(), edge.ep(), blob_path("evict/app", d));
            (slow, std::thread::spawn(move || s.run(&ep, &path)))
        })
        .collect();
    for (slow, _) in &readers {
        let started = crate::support::wait_for(WAIT, || {
            (slow.progress.load(Ordering::SeqCst) >= MIB).then_some(())
        });
        assert!(started.is_some(), "a slow reader never got its first MiB");
    }
    for (n, (data, d)) in blobs[2..].iter().enumerate() {
        // Two clients reading slowly must not hold up a third.
        let r = get_hashed(&edge.ep(), &blob_path("evict/app", d))
            .unwrap_or_else(|e| panic!("a fill beside two slow readers: {e}"));
        assert_eq!((r.status, r.len), (200, data.len() as u64));
        edge.wait_fills(n as u64 + 3);
        assert!(
            edge.metric("bytes") <= max,
            "{} bytes held",
            edge.metric("bytes")
        );
    }
    assert!(
        edge.metric("evictions_total") >= 2,
        "{}",
        edge.metric("evictions_total")
    );
    for (_, d) in &blobs[..2] {
        assert!(!edge.entry_path(d).exists(), "{d} should have been evicted");
    }
    for ((slow, reader), (data, d)) in readers.into_iter().zip(&blobs) {
        slow.gate.store(true, Ordering::SeqCst);
        let got = reader
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("reader of {d}: {e}"));
        assert_eq!(got.status, 200);
        assert!(got.body == *data, "reader of {d}: wrong bytes");
    }
    let on_disk: u64 = files_under(&edge.cache_dir.join("blobs"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len() - 512)
        .sum();
    assert!(on_disk <= max, "{on_disk} bytes of blobs on disk");
    assert!(edge.metric("bytes") <= max);
    let path_a = blob_path("evict/app", &blobs[0].1);
    assert_eq!(
        edge.outcomes(&path_a, 2),
        [Some("fill".to_owned()), Some("hit".to_owned())]
    );
}

/// A fake origin that sends a blob's head and first MiB, then waits for
/// `gate` before the rest (so fills overlap whatever the machine's speed),
/// and answers `HEAD`s at once.
fn gated_origin(data: &[u8], digest: &str, gate: &Arc<AtomicBool>) -> Origin {
    let (data, digest, gate) = (data.to_vec(), digest.to_owned(), gate.clone());
    Origin::start(move |req| {
        if let Some(steps) = serve_blob(req, &data, &digest) {
            return steps;
        }
        let first = MIB as usize;
        let mut steps = vec![
            Step::Write(blob_head(&digest, data.len())),
            Step::Write(data[..first].to_vec()),
            Step::Await(gate.clone()),
        ];
        let rest = blob_answer(&data[first..], &digest, 256 * KIB as usize, Duration::ZERO);
        steps.extend(rest.into_iter().skip(1));
        steps
    })
}

/// 64 concurrent cold GETs of one 8 MiB blob: exactly one GET reaches the
/// origin, one request logs `fill` and 63 `wait`, all 64 bodies hash to
/// the digest. The origin holds the body after its first MiB until all 63
/// followers are counted. Without single flight the origin gets 64 GETs.
#[test]
fn sixty_four_concurrent_cold_pulls_make_one_upstream_get() {
    const CLIENTS: usize = 64;
    let (data, digest) = random_blob(8 * MIB);
    let gate = Arc::new(AtomicBool::new(false));
    let origin = gated_origin(&data, &digest, &gate);
    let edge = Edge::start(origin.addr(), &CacheOpts::default());
    let path = blob_path("flight/app", &digest);
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (ep, path, start) = (edge.ep(), path.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                get_hashed(&ep, &path)
            })
        })
        .collect();
    let waits = edge.wait_metric("waits_total", CLIENTS as u64 - 1);
    gate.store(true, Ordering::SeqCst);
    for c in clients {
        let r = c.join().unwrap().expect("a client's pull");
        assert_eq!((r.status, &r.digest), (200, &digest), "{r:?}");
    }
    assert_eq!(
        waits,
        CLIENTS as u64 - 1,
        "followers counted before the gate opened"
    );
    assert_eq!(
        origin_gets(&origin.requests(), &digest),
        1,
        "GETs that reached the origin"
    );
    let lines = edge.wait_log(&path, CLIENTS);
    let count = |what: &str| {
        lines
            .iter()
            .filter(|l| l.cache.as_deref() == Some(what))
            .count()
    };
    assert_eq!(
        (count("fill"), count("wait")),
        (1, CLIENTS - 1),
        "{lines:?}"
    );
    assert_eq!(edge.metric("fills_total"), 1);
}

/// TLS clients: a fill, a follower of it and a hit, all over TLS, all
/// byte-exact (the follower and the hit read the file through the TLS
/// writer, not sendfile). Without the cache the follower would be a second
/// GET at the origin.
#[test]
fn tls_clients_get_fills_followers_and_hits_byte_exact() {
    let (data, digest) = random_blob(3 * MIB + 123);
    let gate = Arc::new(AtomicBool::new(false));
    let origin = gated_origin(&data, &digest, &gate);
    let edge = Edge::start(
        origin.addr(),
        &CacheOpts {
            tls: true,
            ..CacheOpts::default()
        },
    );
    let path = blob_path("tls/app", &digest);
    let pull = || {
        let (ep, path) = (edge.ep(), path.clone());
        std::thread::spawn(move || get_hashed(&ep, &path))
    };
    let filler = pull();
    let began = crate::support::wait_for(WAIT, || (!edge.tmp_files().is_empty()).then_some(()));
    assert!(began.is_some(), "the fill never began");
    let follower = pull();
    assert_eq!(edge.wait_metric("waits_total", 1), 1);
    gate.store(true, Ordering::SeqCst);
    for c in [filler, follower] {
        let r = c.join().unwrap().unwrap();
        assert_eq!((r.status, &r.digest), (200, &digest), "{r:?}");
    }
    edge.wait_fills(1);
    let r = pull().join().unwrap().unwrap();
    assert_eq!((r.status, &r.digest), (200, &digest), "hit: {r:?}");
    let lines = edge.wait_log(&path, 3);
    let mut outcomes: Vec<_> = lines
        .iter()
        .map(|l| l.cache.clone().unwrap_or_default())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["fill", "hit", "wait"], "{lines:?}");
    assert!(
        lines.iter().all(|l| l.raw.get("tls").is_some()),
        "{lines:?}"
    );
    assert_eq!(origin_gets(&origin.requests(), &digest), 1);
}

/// What a user coming from nginx's `proxy_cache` expects of a registry
/// cache: a manifest fetched by digest is cached (fill, then hit, the
/// registry's `Content-Type` and digest kept), one fetched by tag never is
/// (no `cache` field, every GET reaches the registry). A client whose
/// `Accept` the registry would refuse gets the registry's own answer, not
/// the cached manifest. Without the cache the by-digest GETs all reach the
/// registry; a cache keyed by URL alone would serve the tag.
#[test]
fn manifests_by_digest_are_cached_and_by_tag_never() {
    let registry = Registry::start();
    let edge = Edge::start(registry.addr(), &CacheOpts::default());
    let work = tempfile::tempdir().unwrap();
    let image = make_image_dir(&work.path().join("image"), &[64 * KIB]);
    skopeo_copy(
        &image.reference(),
        &docker_ref(registry.addr(), "man/app", "v1"),
        &CopyOpts::push_plain(),
    )
    .assert_success();
    let accept = [("Accept", MANIFEST_MEDIA_TYPE)];
    let (by_tag, by_digest) = (
        "/v2/man/app/manifests/v1".to_owned(),
        format!("/v2/man/app/manifests/{}", image.manifest_digest),
    );
    let direct = http::get(registry.addr(), &by_digest, None, &accept).unwrap();
    assert_eq!(direct.status, 200, "{direct:?}");
    for path in [&by_tag, &by_digest, &by_tag, &by_digest] {
        let r = edge.call("GET", path, &accept).unwrap();
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body, direct.body, "{path}");
        for name in ["content-type", "docker-content-digest", "content-length"] {
            assert_eq!(r.header(name), direct.header(name), "{path} {name}");
        }
        if path == &by_digest {
            edge.wait_fills(1);
        }
    }
    let tag_lines = edge.wait_log(&by_tag, 2);
    assert!(
        tag_lines.iter().all(|l| l.raw.get("cache").is_none()),
        "{tag_lines:?}"
    );
    assert_eq!(
        edge.outcomes(&by_digest, 2),
        [Some("fill".to_owned()), Some("hit".to_owned())]
    );
    // No OCI type in Accept: whatever the registry says to that, the cache
    // says too (the confirmation carries the client's head).
    let picky = [(
        "Accept",
        "application/vnd.docker.distribution.manifest.v2+json",
    )];
    let mine = edge.call("GET", &by_digest, &picky).unwrap();
    let theirs = http::get(registry.addr(), &by_digest, None, &picky).unwrap();
    assert_eq!(mine.status, theirs.status, "{mine:?} vs {theirs:?}");
    assert_eq!(mine.body, theirs.body);
    registry.settle(Duration::from_millis(300));
    let gets = |p: &str| {
        registry
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.uri == p)
            .count()
    };
    assert_eq!(gets(&by_tag), 2, "every GET by tag reaches the registry");
    // The fill, the test's two direct GETs, and the picky client's own
    // GET only if the registry refused its HEAD.
    let picky_forwarded = usize::from(theirs.status != 200);
    assert_eq!(gets(&by_digest), 3 + picky_forwarded);
}
