//! Real clients pull through the cache cold, then hot (their local copy
//! removed in between): docker, podman, containerd's ctr and skopeo. The
//! image (one uncompressed tar layer holding 6 MiB of random bytes) is
//! pushed by skopeo straight to the registry, so the registry's access log
//! holds only the pulls. Each client checks digests itself; the test also
//! checks the layer it got. What would fail without the cache: the
//! registry's log shows each blob `GET` once over two pulls, and the
//! second pull's layer is logged `hit`.
//!
//! A client that cannot start here fails under CI and is skipped loudly
//! elsewhere. The tests take turns (one daemon at a time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::support::cache::{blob_gets, blob_path, random_blob, CacheOpts, Edge, USER};
use crate::support::cmd::{run, run_stdout_to, Run};
use crate::support::containerd::Containerd;
use crate::support::dockerd::Dockerd;
use crate::support::podman::Podman;
use crate::support::registry::Registry;
use crate::support::skopeo::{
    docker_ref, image_dir_from_layer_files, pulled_layer_digests, sha256_file, skopeo_copy,
    verify_dir_blobs, CopyOpts, ImageDir,
};
use crate::MIB;

const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
const STEP_LIMIT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry holding one image, and a cache in front of it.
struct Setup {
    dir: tempfile::TempDir,
    registry: Registry,
    edge: Edge,
    image: ImageDir,
    repo: String,
}

impl Setup {
    fn start(client: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        let edge = Edge::start(registry.addr(), &CacheOpts::default());
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("blob"), random_blob(6 * MIB).0).unwrap();
        let layer_tar = dir.path().join("layer.tar");
        run(
            Command::new("tar")
                .arg("-C")
                .arg(&ctx)
                .arg("-cf")
                .arg(&layer_tar)
                .arg("blob"),
            STEP_LIMIT,
        )
        .assert_success();
        let image = image_dir_from_layer_files(&dir.path().join("image"), &[layer_tar]);
        let repo = format!("cache/{client}");
        skopeo_copy(
            &image.reference(),
            &docker_ref(registry.addr(), &repo, "v1"),
            &CopyOpts::push_plain(),
        )
        .assert_success();
        Setup {
            dir,
            registry,
            edge,
            image,
            repo,
        }
    }

    /// `localhost:PORT` of the (plain) cache.
    fn host(&self) -> String {
        format!("localhost:{}", self.edge.proxy.addr().port())
    }

    fn reference(&self) -> String {
        format!("{}/{}:v1", self.host(), self.repo)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn layer(&self) -> &str {
        &self.image.layers[0].digest
    }

    /// After pull number `round` (1, 2): the registry sent the layer and
    /// the config once in all; the layer's GETs were a fill, then hits.
    fn check(&self, client: &str, round: usize) {
        self.edge.wait_fills(2);
        self.registry.settle(Duration::from_millis(300));
        for d in [self.layer(), self.image.config.digest.as_str()] {
            assert_eq!(
                blob_gets(&self.registry, d),
                1,
                "{client} pull {round}: GETs of {d}"
            );
        }
        let path = blob_path(&self.repo, self.layer());
        let lines: Vec<_> = self
            .edge
            .wait_log(&path, round)
            .into_iter()
            .filter(|l| l.method == "GET")
            .collect();
        let outcomes: Vec<_> = lines
            .iter()
            .map(|l| l.cache.as_deref().unwrap_or("-"))
            .collect();
        // Sorted: each worker flushes its own log lines.
        let count = |what: &str| outcomes.iter().filter(|o| **o == what).count();
        assert!(outcomes.len() >= round, "{client} pull {round}: {lines:?}");
        assert_eq!(count("fill"), 1, "{client} pull {round}: {outcomes:?}");
        assert_eq!(
            count("hit"),
            outcomes.len() - 1,
            "{client} pull {round}: {outcomes:?}"
        );
        if round > 1 {
            assert!(
                self.edge.metric("hits_total") >= 2,
                "{client}: layer and config hits"
            );
        }
        eprintln!("cache-client: {client} pull {round}: layer {outcomes:?}");
    }
}

fn skip(client: &str, package: &str, why: &str) {
    crate::support::skip_unless_ci(
        &format!("{client} cannot run here: {why}"),
        &format!("apt-get install {package} (or scripts/setup-deps)"),
    );
}

fn creds() -> String {
    format!("{}:{}", USER.0, USER.1)
}

/// `{{json .RootFS.Layers}}` of an image: its layers' diff IDs. The layer
/// is an uncompressed tar, so its diff ID is its digest: the client hashed
/// what it unpacked.
fn diff_ids(out: &Run) -> Vec<String> {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// After a docker or podman pull (their CLIs agree here): the image holds
/// the pushed layer, is removed for the next round, and the round's cache
/// outcomes are checked.
fn check_and_remove(cli: impl Fn() -> Command, s: &Setup, image: &str, client: &str, round: usize) {
    let inspect = run(
        cli().args([
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            image,
        ]),
        STEP_LIMIT,
    );
    assert_eq!(diff_ids(inspect.assert_success()), [s.layer()]);
    run(cli().args(["rmi", image]), STEP_LIMIT).assert_success();
    s.check(client, round);
}

#[test]
fn docker_pulls_cold_then_hot_through_the_cache() {
    let _turn = serial();
    let s = Setup::start("docker");
    let d = match Dockerd::start(&[s.host()]) {
        Ok(d) => d,
        Err(e) => return skip("docker", "docker.io", &e),
    };
    let cfg = s.path("docker-config");
    run(
        d.docker(Some(&cfg))
            .args(["login", "-u", USER.0, "-p", USER.1])
            .arg(s.host()),
        STEP_LIMIT,
    )
    .assert_success();
    let image = s.reference();
    for round in 1..=2 {
        run(d.docker(Some(&cfg)).args(["pull", &image]), TRANSFER_LIMIT).assert_success();
        check_and_remove(|| d.docker(None), &s, &image, "docker", round);
    }
}

#[test]
fn podman_pulls_cold_then_hot_through_the_cache() {
    let _turn = serial();
    let s = Setup::start("podman");
    let p = match Podman::new() {
        Ok(p) => p,
        Err(e) => return skip("podman", "podman", &e),
    };
    let policy = p.policy_args();
    let image = s.reference();
    let creds = creds();
    for round in 1..=2 {
        run(
            p.podman().arg("pull").args(&policy).args([
                "--tls-verify=false",
                "--creds",
                &creds,
                &image,
            ]),
            TRANSFER_LIMIT,
        )
        .assert_success();
        check_and_remove(|| p.podman(), &s, &image, "podman", round);
    }
}

#[test]
fn ctr_pulls_cold_then_hot_through_the_cache() {
    let _turn = serial();
    let s = Setup::start("ctr");
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(e) => return skip("ctr", "containerd", &e),
    };
    let host = s.host();
    let hosts = c.hosts_dir("hosts", &[(host.as_str(), "http")], None);
    let (image, creds, layer) = (s.reference(), creds(), s.layer().to_owned());
    for round in 1..=2 {
        run(
            c.ctr()
                .args(["images", "pull", "--hosts-dir"])
                .arg(&hosts)
                .args(["--user", &creds, "--snapshotter", "native", &image]),
            TRANSFER_LIMIT,
        )
        .assert_success();
        let out = s.path(&format!("layer-{round}"));
        run_stdout_to(c.ctr().args(["content", "get", &layer]), &out, STEP_LIMIT).assert_success();
        assert_eq!(sha256_file(&out), layer, "ctr pull {round}");
        run(c.ctr().args(["images", "rm", "--sync", &image]), STEP_LIMIT).assert_success();
        assert!(
            !run(c.ctr().args(["content", "get", &layer]), STEP_LIMIT).success(),
            "the layer is still in containerd's store"
        );
        s.check("ctr", round);
    }
}

#[test]
fn skopeo_pulls_cold_then_hot_through_the_cache() {
    let _turn = serial();
    let s = Setup::start("skopeo");
    let src = format!("docker://{}", s.reference());
    for round in 1..=2 {
        let out = s.path(&format!("pulled-{round}"));
        let opts = CopyOpts {
            src_creds: Some((USER.0.to_owned(), USER.1.to_owned())),
            src_tls_verify: Some(false),
            ..CopyOpts::default()
        };
        skopeo_copy(&src, &format!("dir:{}", out.display()), &opts).assert_success();
        verify_dir_blobs(&out).unwrap();
        assert_eq!(pulled_layer_digests(&out), s.image.layer_digests());
        assert_eq!(sha256_file(&layer_file(&out, s.layer())), s.layer());
        s.check("skopeo", round);
    }
}

fn layer_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join(digest.trim_start_matches("sha256:"))
}
