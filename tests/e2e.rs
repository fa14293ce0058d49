//! The main job, end to end: skopeo pushes and pulls through regproxy (TLS,
//! CA verified) into the real distribution registry, with a GiB layer, under
//! a memory ceiling; and the recipe's refusals hold for a real client. The
//! TLS and the plain (spliced) round trips run again on the epoll driver
//! (`driver = "epoll"`, the fallback where io_uring is unavailable), with
//! smaller layers.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::proxy::EPOLL;
use support::registry::Registry;
use support::skopeo::{
    docker_ref, make_image_dir, pulled_layer_digests, skopeo_copy, verify_dir_blobs, CopyOpts,
};
use support::stack::{PlainStack, TlsStack};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// regproxy's peak RSS while a GiB layer goes through it both ways.
const RSS_CEILING_KIB: u64 = 64 * 1024;

/// The real registry and a TLS regproxy (testuser may push, reader pull).
fn stack() -> TlsStack {
    stack_top("")
}

/// [`stack`] with top-level keys `top`.
fn stack_top(top: &str) -> TlsStack {
    TlsStack::start_top(
        top,
        &[("testuser", "testpassword"), ("reader", "readerpassword")],
        "push_users = [\"testuser\"]",
        "",
    )
}

fn workdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn gib_layer_round_trips_through_tls_under_memory_ceiling() {
    tls_round_trip("", "io_uring", "e2e/big", &[GIB, 3 * MIB]);
}

/// The epoll driver's TLS path: reads and writes batched as on io_uring.
#[test]
fn layers_round_trip_through_tls_on_the_epoll_driver() {
    tls_round_trip(EPOLL, "epoll", "e2e/epoll", &[64 * MIB, 3 * MIB]);
}

/// skopeo pushes an image of `layers` through a TLS regproxy started with
/// `top` (whose workers must run `driver`), pulls it back as reader and
/// checks every byte; regproxy's peak RSS stays under the ceiling.
fn tls_round_trip(top: &str, driver: &str, repo: &str, layers: &[u64]) {
    let s = stack_top(top);
    s.proxy.assert_driver(driver);
    let work = workdir();
    let image = make_image_dir(&work.path().join("image"), layers);
    let certs = s.tls.cert_dir_for_skopeo();
    let dest = docker_ref(s.proxy.addr(), repo, "v1");

    skopeo_copy(
        &image.reference(),
        &dest,
        &CopyOpts::push(&certs, "testuser", "testpassword"),
    )
    .assert_success();
    for layer in &image.layers {
        assert!(
            s.registry.has_blob(&layer.digest),
            "registry lacks {}",
            layer.digest
        );
    }
    let after_push = s.proxy.vm_hwm_kib();

    let pulled = work.path().join("pulled");
    skopeo_copy(
        &dest,
        &format!("dir:{}", pulled.display()),
        &CopyOpts::pull(&certs, "reader", "readerpassword"),
    )
    .assert_success();
    let mut want = image.layer_digests();
    let mut got = pulled_layer_digests(&pulled);
    want.sort();
    got.sort();
    assert_eq!(got, want, "pulled layers differ from pushed ones");
    // Re-hash what landed on disk: the bytes, not just the names, match.
    verify_dir_blobs(&pulled).unwrap();
    for layer in &image.layers {
        let path = pulled.join(layer.digest.trim_start_matches("sha256:"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), layer.size);
    }

    let peak = s.proxy.vm_hwm_kib();
    assert!(
        peak < RSS_CEILING_KIB,
        "regproxy peak RSS {peak} KiB (after push: {after_push} KiB) is over {RSS_CEILING_KIB} KiB"
    );
    eprintln!("regproxy ({driver}) peak RSS over a push and pull of {layers:?} bytes: {peak} KiB");
}

#[test]
fn wrong_password_cannot_push() {
    let s = stack();
    let work = workdir();
    let image = make_image_dir(&work.path().join("image"), &[MIB]);
    let before = s.registry.blob_count();
    let stderr = skopeo_copy(
        &image.reference(),
        &docker_ref(s.proxy.addr(), "e2e/wrongpw", "v1"),
        &CopyOpts::push(&s.tls.cert_dir_for_skopeo(), "testuser", "not-the-password"),
    )
    .assert_failure()
    .to_owned();
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("unauthorized"),
        "{stderr}"
    );
    assert_eq!(s.registry.blob_count(), before, "a blob was stored");
    assert_nothing_written(&s.registry);
}

#[test]
fn pull_only_user_gets_403_and_nothing_is_stored() {
    let s = stack();
    let work = workdir();
    let image = make_image_dir(&work.path().join("image"), &[2 * MIB]);
    let before = s.registry.blob_count();
    let stderr = skopeo_copy(
        &image.reference(),
        &docker_ref(s.proxy.addr(), "e2e/readonly", "v1"),
        &CopyOpts::push(&s.tls.cert_dir_for_skopeo(), "reader", "readerpassword"),
    )
    .assert_failure()
    .to_owned();
    assert!(
        stderr.contains("denied") || stderr.contains("403"),
        "skopeo should report the refusal: {stderr}"
    );
    assert_eq!(s.registry.blob_count(), before, "a blob was stored");
    for layer in &image.layers {
        assert!(!s.registry.has_blob(&layer.digest));
    }
    assert_nothing_written(&s.registry);
    // The refusal is logged with the user, and the credential never is.
    let log = s.proxy.access_log_text() + &s.proxy.stderr_text();
    assert!(log.contains(" reader \""), "{log}");
    assert!(!log.contains("readerpassword"));
}

/// The registry saw only reads (skopeo's HEAD checks may pass for pulls
/// allowed to everyone valid); no upload ever started.
fn assert_nothing_written(registry: &Registry) {
    registry.settle(std::time::Duration::from_millis(300));
    let writes: Vec<_> = registry
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "writes reached the registry: {writes:?}");
}

#[test]
fn push_then_pull_small_image_over_plain_http_uses_splice() {
    plain_round_trip_splices("", "io_uring", "e2e/plain");
}

/// The epoll driver's splice path: readiness from epoll, not io_uring polls.
#[test]
fn push_then_pull_over_plain_http_splices_on_the_epoll_driver() {
    plain_round_trip_splices(EPOLL, "epoll", "e2e/plain-epoll");
}

fn plain_round_trip_splices(top: &str, driver: &str, repo: &str) {
    // TLS ends at a load balancer: no [tls] table. Length-delimited bodies
    // then move kernel to kernel.
    let users = support::htpasswd_text(&[("testuser", "testpassword")]);
    let s = PlainStack::start(&users, top, "", "");
    let proxy = &s.proxy;
    proxy.assert_driver(driver);
    let work = workdir();
    let image = make_image_dir(&work.path().join("image"), &[16 * MIB]);
    let dest = docker_ref(proxy.addr(), repo, "v1");
    let mut push = CopyOpts::push(Path::new("/nonexistent"), "testuser", "testpassword");
    push.dest_cert_dir = None;
    push.dest_tls_verify = Some(false);
    skopeo_copy(&image.reference(), &dest, &push).assert_success();
    let pulled = work.path().join("pulled");
    let mut pull = CopyOpts::pull(Path::new("/nonexistent"), "testuser", "testpassword");
    pull.src_cert_dir = None;
    pull.src_tls_verify = Some(false);
    skopeo_copy(&dest, &format!("dir:{}", pulled.display()), &pull).assert_success();
    verify_dir_blobs(&pulled).unwrap();

    let spliced = proxy.metric("regproxy_spliced_bytes_total");
    assert!(
        spliced >= 16 * MIB,
        "the 16 MiB layer should have been spliced at least on the way out: {spliced}"
    );
}
