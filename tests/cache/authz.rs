//! Authorization is not weakened by the cache: the registry must confirm
//! that the repository asked for holds the digest, whatever sits on disk.

use crate::support::cache::{blob_path, push_blob, random_blob, CacheOpts, Edge};
use crate::support::http::{self, RawResponse};
use crate::support::registry::Registry;
use crate::KIB;

/// The first error code of a registry error body.
fn error_code(r: &RawResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A blob pushed to `team-a/app` only and cached through it: a pull of the
/// same digest through `team-b/app` gets the registry's own 404
/// `BLOB_UNKNOWN`, with `confirm_ttl` 0 and 1h alike, while the file sits
/// in the cache. Without the repository's confirmation (a cache keyed by
/// digest alone) B would get A's bytes with a 200.
#[test]
fn a_blob_cached_through_one_repository_is_not_served_to_another() {
    let registry = Registry::start();
    let (data, _) = random_blob(200 * KIB);
    let digest = push_blob(registry.addr(), "team-a/app", &data);
    let (a, b) = (
        blob_path("team-a/app", &digest),
        blob_path("team-b/app", &digest),
    );
    // What a client of B gets with no cache in between.
    let direct = http::get(registry.addr(), &b, None, &[]).unwrap();
    assert_eq!(direct.status, 404, "{direct:?}");
    assert_eq!(
        error_code(&direct),
        "BLOB_UNKNOWN",
        "{}",
        direct.body_text()
    );

    for ttl in ["0s", "1h"] {
        let edge = Edge::start(
            registry.addr(),
            &CacheOpts {
                confirm_ttl: ttl.into(),
                // One worker: its confirmations are the only ones.
                workers: Some(1),
                ..CacheOpts::default()
            },
        );
        let r = edge.get_blob("team-a/app", &digest).unwrap();
        assert_eq!((r.status, r.body == data), (200, true), "ttl {ttl}: {r:?}");
        edge.wait_fills(1);
        assert!(edge.entry_path(&digest).is_file(), "ttl {ttl}: not cached");
        for round in 0..2 {
            let r = edge.get_blob("team-b/app", &digest).unwrap();
            assert_eq!(r.status, direct.status, "ttl {ttl}, B #{round}: {r:?}");
            assert_eq!(
                error_code(&r),
                "BLOB_UNKNOWN",
                "ttl {ttl}: {}",
                r.body_text()
            );
            assert_ne!(r.body, data);
        }
        assert!(
            edge.entry_path(&digest).is_file(),
            "ttl {ttl}: the file went"
        );
        assert_eq!(edge.outcomes(&a, 1), [Some("fill".to_owned())], "ttl {ttl}");
        let b_lines = edge.wait_log(&b, 2);
        assert!(
            b_lines
                .iter()
                .all(|l| l.status == 404 && l.cache.as_deref() != Some("hit")),
            "ttl {ttl}: {b_lines:?}"
        );
        assert_eq!(edge.metric("hits_total"), 0, "ttl {ttl}");
    }
}

/// A blob deleted from its repository at the registry (`DELETE` through
/// the API) stops being served at once with `confirm_ttl` 0: the next pull
/// gets the registry's 404. Without the per-hit confirmation the cached
/// copy would still be served with a 200.
#[test]
fn a_blob_deleted_at_the_registry_stops_being_served_at_once() {
    let registry = Registry::start();
    let edge = Edge::start(registry.addr(), &CacheOpts::default());
    let (data, _) = random_blob(100 * KIB);
    let digest = push_blob(registry.addr(), "gone/app", &data);
    let path = blob_path("gone/app", &digest);
    for _ in 0..2 {
        let r = edge.get_blob("gone/app", &digest).unwrap();
        assert_eq!((r.status, r.body == data), (200, true), "{r:?}");
        edge.wait_fills(1);
    }
    assert_eq!(
        edge.outcomes(&path, 2),
        [Some("fill".to_owned()), Some("hit".to_owned())]
    );
    let del = http::request(registry.addr(), "DELETE", &path, None, &[], b"").unwrap();
    assert_eq!(del.status, 202, "{del:?} {}", del.body_text());

    let r = edge.get_blob("gone/app", &digest).unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(error_code(&r), "BLOB_UNKNOWN", "{}", r.body_text());
    let lines = edge.wait_log(&path, 3);
    assert_eq!(lines[2].status, 404, "{lines:?}");
    assert_ne!(lines[2].cache.as_deref(), Some("hit"), "{lines:?}");
}
