//! Real registry clients through regproxy: docker, podman, containerd's
//! `ctr` and skopeo each push an image with a 64 MiB random layer through
//! TLS regproxy (CA verified, no insecure flag) and through plain-HTTP
//! regproxy, in front of the real registry; drop their copy, pull it back
//! and hash the content. Also docker's refusal for a pull-only user, and
//! docker's cross-repository mounts under `[[access]]` rules.
//!
//! Every test prints `client-table:` lines (the client's version as it
//! reports it, and how it uploaded the layer as seen by a [`Tap`] in front
//! of the plain listener): README's "Registry clients" table comes from
//! them. A client that cannot start on this machine fails its test under
//! CI and is skipped loudly (`SKIP`) elsewhere; the others still run. The
//! tests take turns (one daemon at a time on a shared machine).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use support::cmd::{run, run_stdout_to, version_line, Run};
use support::containerd::Containerd;
use support::dockerd::{CertsD, Dockerd};
use support::podman::Podman;
use support::proxy::Proxy;
use support::registry::Registry;
use support::skopeo::{
    docker_ref, make_image_dir, oci_archive_of_blob, pulled_layer_digests, sha256_file,
    skopeo_copy, verify_dir_blobs, CopyOpts, RandomStream, Sha256,
};
use support::tap::{describe_upload, Framing, Scanner, Tap};
use support::tls::Tls;

const MIB: u64 = 1 << 20;
/// The layer every client pushes (issue 7: at least 64 MiB, random).
const LAYER: u64 = 64 * MIB;
/// One push or pull of [`LAYER`]; a few seconds on a quiet machine.
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);
/// Builds, tags, logins, removals.
const STEP_LIMIT: Duration = Duration::from_secs(60);

const PUSHER: (&str, &str) = ("testuser", "testpassword");
const READER: (&str, &str) = ("reader", "readerpassword");

static SERIAL: Mutex<()> = Mutex::new(());

/// One client test at a time: each runs a daemon and moves 64 MiB layers.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A registry with two regproxies in front, one TLS and one plain HTTP
/// (the latter behind a [`Tap`]), sharing the users file and the rules.
struct Stack {
    dir: tempfile::TempDir,
    registry: Registry,
    tls: Tls,
    proxy: Proxy,
    plain: Proxy,
    tap: Tap,
}

impl Stack {
    /// `auth` goes into `[auth]`, `tail` after the tables (rules).
    fn start(users: &[(&str, &str)], auth: &str, tail: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        // 0.0.0.0: see `docker_host`.
        let tls = Tls::generate_for(
            &dir.path().join("tls"),
            &["localhost", "127.0.0.1", "0.0.0.0"],
        );
        support::write_htpasswd(&dir.path().join("users"), users);
        let body = format!(
            "[auth]\nhtpasswd = \"{users}\"\n{auth}\n[upstream]\nservers = [\"{up}\"]\n{tail}",
            users = dir.path().join("users").display(),
            up = registry.addr(),
        );
        let tls_config = format!(
            "listen = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n{body}",
            tls.server_cert().display(),
            tls.server_key().display(),
        );
        let proxy = Proxy::start(&tls_config, &dir.path().join("tls-proxy"));
        let plain = Proxy::start(
            &format!("listen = \"127.0.0.1:0\"\n{body}"),
            &dir.path().join("plain-proxy"),
        );
        let tap = Tap::start(plain.addr());
        Stack {
            dir,
            registry,
            tls,
            proxy,
            plain,
            tap,
        }
    }

    /// testuser may push, reader may only pull (the recipe's setup).
    fn recipe() -> Stack {
        Stack::start(&[PUSHER, READER], "push_users = [\"testuser\"]", "")
    }

    /// `localhost:PORT` of the TLS regproxy (the certificate names localhost).
    fn tls_host(&self) -> String {
        format!("localhost:{}", self.proxy.addr().port())
    }

    /// The TLS regproxy as docker must name it to verify its certificate.
    /// dockerd treats every registry whose host resolves into 127.0.0.0/8
    /// as insecure and skips certificate checks for it, whatever
    /// certs.d holds; `0.0.0.0` is outside that range, and Linux sends a
    /// connection to it over loopback to 127.0.0.1, where regproxy listens.
    fn docker_host(&self) -> String {
        format!("0.0.0.0:{}", self.proxy.addr().port())
    }

    /// `localhost:PORT` of the tap in front of the plain regproxy.
    fn plain_host(&self) -> String {
        format!("localhost:{}", self.tap.addr().port())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Both access logs, once a line matches `want` (they are flushed
    /// every 200 ms) or 10 s have passed.
    fn proxy_log(&self, want: impl Fn(&str) -> bool) -> String {
        let text = || self.proxy.access_log_text() + &self.plain.access_log_text();
        support::wait_for(Duration::from_secs(10), || {
            let t = text();
            t.lines().any(&want).then_some(t)
        })
        .unwrap_or_else(text)
    }
}

/// Writes `size` random bytes to `path`; returns their `sha256:` digest.
fn write_random(path: &Path, size: u64) -> String {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let mut rng = RandomStream::new(support::skopeo::fresh_seed());
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        rng.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    format!("sha256:{}", hash.finish_hex())
}

/// A build context: `Dockerfile` (`FROM scratch`, `COPY blob /blob`) and a
/// `size`-byte random `blob`; returns the blob's digest.
fn build_context(dir: &Path, size: u64) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY blob /blob\n").unwrap();
    write_random(&dir.join("blob"), size)
}

/// `client` (from Debian's `package`) cannot start here: a failure under
/// CI, a loud skip elsewhere ([`support::skip_unless_ci`]).
fn skip(client: &str, package: &str, why: &str) {
    support::skip_unless_ci(
        &format!("{client} cannot run here: {why}"),
        &format!("apt-get install {package} (or scripts/setup-deps)"),
    );
}

// === docker ===

/// A dockerd that takes the plain host as insecure, or `None` ([`skip`]).
fn docker_or_skip(s: &Stack) -> Option<Dockerd> {
    match Dockerd::start(&[s.plain_host()]) {
        Ok(d) => Some(d),
        Err(e) => {
            skip("docker", "docker.io", &e);
            None
        }
    }
}

/// Makes docker trust `stack`'s CA for the TLS regproxy (until dropped).
fn trust_ca(s: &Stack) -> CertsD {
    CertsD::install(&s.docker_host(), &s.tls.ca_cert())
}

fn docker_login(d: &Dockerd, config: &Path, host: &str, (user, pass): (&str, &str)) {
    run(
        d.docker(Some(config))
            .args(["login", "-u", user, "-p", pass])
            .arg(host),
        STEP_LIMIT,
    )
    .assert_success();
}

/// Pulls nothing: copies `/blob` out of `image` (through a created, never
/// started container) and returns its digest.
fn docker_blob_digest(d: &Dockerd, image: &str, out: &Path) -> String {
    let id = run(d.docker(None).args(["create", image, "x"]), STEP_LIMIT);
    id.assert_success();
    let id = id.stdout.trim().to_owned();
    std::fs::create_dir_all(out).unwrap();
    run(
        d.docker(None).arg("cp").arg(format!("{id}:/blob")).arg(out),
        STEP_LIMIT,
    )
    .assert_success();
    run(d.docker(None).args(["rm", &id]), STEP_LIMIT).assert_success();
    sha256_file(&out.join("blob"))
}

/// `docker rmi` of every tag given; afterwards the image is gone locally.
fn docker_rmi(d: &Dockerd, tags: &[&str]) {
    run(d.docker(None).arg("rmi").args(tags), STEP_LIMIT).assert_success();
    let left = run(d.docker(None).args(["images", "-q"]), STEP_LIMIT);
    assert!(
        left.stdout.trim().is_empty(),
        "images left: {}",
        left.stdout
    );
}

#[test]
fn docker_pushes_and_pulls_through_tls_and_plain_http() {
    let _turn = serial();
    let s = Stack::recipe();
    let Some(d) = docker_or_skip(&s) else {
        return;
    };
    // docker checks the certificate: without the CA it refuses regproxy.
    let untrusted = run(
        d.docker(Some(&s.path("cfg-untrusted")))
            .args(["login", "-u", PUSHER.0, "-p", PUSHER.1])
            .arg(s.docker_host()),
        STEP_LIMIT,
    );
    untrusted.assert_failure();
    assert!(
        untrusted
            .output()
            .contains("certificate signed by unknown authority"),
        "docker should refuse the unknown CA:\n{}",
        untrusted.output()
    );
    let _ca = trust_ca(&s);
    let version = d.versions();
    let want = build_context(&s.path("ctx"), LAYER);
    let (tls_ref, plain_ref) = (
        format!("{}/clients/docker:v1", s.docker_host()),
        format!("{}/clients/docker-plain:v1", s.plain_host()),
    );
    run(
        d.docker(None)
            .args(["build", "-t", &tls_ref])
            .arg(s.path("ctx")),
        TRANSFER_LIMIT,
    )
    .assert_success();
    run(
        d.docker(None).args(["tag", &tls_ref, &plain_ref]),
        STEP_LIMIT,
    )
    .assert_success();
    let (pusher, reader) = (s.path("cfg-pusher"), s.path("cfg-reader"));
    for host in [s.docker_host(), s.plain_host()] {
        docker_login(&d, &pusher, &host, PUSHER);
        docker_login(&d, &reader, &host, READER);
    }

    // TLS: push, forget, pull back, compare.
    run(
        d.docker(Some(&pusher)).args(["push", &tls_ref]),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let layers = s.registry.manifest_layers("clients/docker", "v1");
    assert_eq!(layers.len(), 1, "one layer: {layers:?}");
    assert!(s.registry.has_blob(&layers[0]));
    // Plain HTTP (dockerd's --insecure-registry), through the tap.
    s.tap.clear();
    run(
        d.docker(Some(&pusher)).args(["push", &plain_ref]),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let shape = describe_upload(&s.tap.seen(), LAYER);

    docker_rmi(&d, &[&tls_ref, &plain_ref]);
    run(
        d.docker(Some(&reader)).args(["pull", &tls_ref]),
        TRANSFER_LIMIT,
    )
    .assert_success();
    assert_eq!(docker_blob_digest(&d, &tls_ref, &s.path("out-tls")), want);
    docker_rmi(&d, &[&tls_ref]);
    run(
        d.docker(Some(&reader)).args(["pull", &plain_ref]),
        TRANSFER_LIMIT,
    )
    .assert_success();
    assert_eq!(
        docker_blob_digest(&d, &plain_ref, &s.path("out-plain")),
        want
    );

    eprintln!("client-table: docker | {version} | {shape} | TLS pass | plain pass");
}

#[test]
fn docker_push_by_pull_only_user_is_denied_and_stores_nothing() {
    let _turn = serial();
    let s = Stack::recipe();
    let Some(d) = docker_or_skip(&s) else {
        return;
    };
    let _ca = trust_ca(&s);
    build_context(&s.path("ctx"), MIB);
    let image = format!("{}/clients/denied:v1", s.docker_host());
    run(
        d.docker(None)
            .args(["build", "-t", &image])
            .arg(s.path("ctx")),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let reader = s.path("cfg-reader");
    docker_login(&d, &reader, &s.docker_host(), READER);
    let blobs = s.registry.blob_count();

    let push = run(
        d.docker(Some(&reader)).args(["push", &image]),
        TRANSFER_LIMIT,
    );
    push.assert_failure();
    assert!(
        push.output().contains("denied"),
        "docker should say denied:\n{}",
        push.output()
    );
    s.registry.settle(Duration::from_millis(300));
    assert_eq!(
        s.registry.blob_count(),
        blobs,
        "no new blob in the registry"
    );
    let writes: Vec<_> = s
        .registry
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "writes reached the registry: {writes:?}");
    let refused = |l: &str| {
        l.contains("reader \"POST /v2/clients/denied/blobs/uploads/") && l.contains("\" 403 ")
    };
    let log = s.proxy_log(refused);
    assert!(
        log.lines().any(refused),
        "regproxy should log the 403:\n{log}"
    );
}

#[test]
fn docker_cross_repository_mount_needs_pull_on_the_source() {
    let _turn = serial();
    let rules = [
        ("src/**", "[\"alice\"]"),
        ("dst/**", "[\"alice\", \"bob\"]"),
    ]
    .iter()
    .map(|(repo, who)| {
        format!(
            "[[access]]\nrepository = \"{repo}\"\nwho = {who}\nactions = [\"pull\", \"push\"]\n"
        )
    })
    .collect::<String>();
    let (alice, bob) = (("alice", "alice-pw"), ("bob", "bob-pw"));
    let s = Stack::start(&[alice, bob], "", &rules);
    let Some(d) = docker_or_skip(&s) else {
        return;
    };
    let _ca = trust_ca(&s);
    build_context(&s.path("ctx"), 8 * MIB);
    let host = s.docker_host();
    let src = format!("{host}/src/app:v1");
    run(
        d.docker(None)
            .args(["build", "-t", &src])
            .arg(s.path("ctx")),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let (cfg_a, cfg_b) = (s.path("cfg-alice"), s.path("cfg-bob"));
    docker_login(&d, &cfg_a, &host, alice);
    docker_login(&d, &cfg_b, &host, bob);

    run(d.docker(Some(&cfg_a)).args(["push", &src]), TRANSFER_LIMIT).assert_success();
    let layer = s.registry.manifest_layers("src/app", "v1").remove(0);
    let hex = layer.trim_start_matches("sha256:");

    // bob may not pull src/app: his mount is refused before the registry,
    // and docker uploads the layer itself instead.
    let dst_b = format!("{host}/dst/b:v1");
    run(d.docker(None).args(["tag", &src, &dst_b]), STEP_LIMIT).assert_success();
    run(
        d.docker(Some(&cfg_b)).args(["push", &dst_b]),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let mount_refused = |l: &str| {
        l.contains("bob \"POST /v2/dst/b/blobs/uploads/?")
            && l.contains("mount=")
            && l.contains("\" 403 ")
    };
    let log = s.proxy_log(mount_refused);
    assert!(
        log.lines().any(mount_refused),
        "bob's mount from src/app should be refused:\n{log}"
    );
    s.registry.settle(Duration::from_millis(300));
    let reqs = s.registry.requests();
    assert!(
        !reqs
            .iter()
            .any(|r| r.uri.starts_with("/v2/dst/b/") && r.uri.contains("mount=")),
        "a mount into dst/b reached the registry: {reqs:#?}"
    );
    assert!(
        reqs.iter().any(|r| r.method == "PUT"
            && r.uri.starts_with("/v2/dst/b/blobs/uploads/")
            && r.uri.contains(hex)
            && r.status == 201),
        "bob should have uploaded the layer himself: {reqs:#?}"
    );
    assert!(s.registry.repo_links_blob("dst/b", &layer));

    // alice may pull src/app (and dst/b): her push is a mount, no upload.
    let dst_a = format!("{host}/dst/a:v1");
    run(d.docker(None).args(["tag", &src, &dst_a]), STEP_LIMIT).assert_success();
    let push = run(
        d.docker(Some(&cfg_a)).args(["push", &dst_a]),
        TRANSFER_LIMIT,
    );
    push.assert_success();
    assert!(push.stdout.contains("Mounted from"), "{}", push.stdout);
    s.registry.settle(Duration::from_millis(300));
    let reqs = s.registry.requests();
    assert!(
        reqs.iter().any(|r| r.method == "POST"
            && r.uri.starts_with("/v2/dst/a/blobs/uploads/?")
            && r.uri.contains("mount=")
            && r.uri.contains(hex)
            && r.status == 201),
        "alice's mount should reach the registry and succeed: {reqs:#?}"
    );
    // (The config blob is uploaded as usual; the layer's upload would end
    // in a PUT naming its digest.)
    assert!(
        !reqs.iter().any(|r| r.method == "PUT"
            && r.uri.starts_with("/v2/dst/a/blobs/uploads/")
            && r.uri.contains(hex)),
        "alice's layer should not be uploaded again: {reqs:#?}"
    );
    assert!(s.registry.repo_links_blob("dst/a", &layer));
    eprintln!("docker mounts: alice 201 from src/app, bob 403 then own upload");
}

// === podman ===

#[test]
fn podman_pushes_and_pulls_through_tls_and_plain_http() {
    let _turn = serial();
    let s = Stack::recipe();
    let p = match Podman::new() {
        Ok(p) => p,
        Err(e) => return skip("podman", "podman", &e),
    };
    let version = version_line(Command::new("podman").arg("--version")).unwrap_or_default();
    let want = build_context(&s.path("ctx"), LAYER);
    let certs = p.cert_dir(&s.tls.ca_cert());
    let policy = p.policy_args();
    let (tls_ref, plain_ref) = (
        format!("{}/clients/podman:v1", s.tls_host()),
        format!("{}/clients/podman-plain:v1", s.plain_host()),
    );
    let podman = |args: &[&str], limit: Duration| -> Run { run(p.podman().args(args), limit) };
    let creds = |(u, pw): (&str, &str)| format!("{u}:{pw}");
    let ctx = s.path("ctx").display().to_string();
    podman(
        &["build", &policy[0], &policy[1], "-t", &tls_ref, &ctx],
        TRANSFER_LIMIT,
    )
    .assert_success();
    podman(&["tag", &tls_ref, &plain_ref], STEP_LIMIT).assert_success();
    let cert_dir = certs.display().to_string();
    let tls_args = ["--cert-dir", cert_dir.as_str()];
    let plain_args = ["--tls-verify=false"];

    let transfer = |verb: &str, image: &str, extra: &[&str], user: (&str, &str)| {
        let mut args = vec![verb, policy[0].as_str(), policy[1].as_str()];
        args.extend_from_slice(extra);
        let c = creds(user);
        args.extend_from_slice(&["--creds", &c, image]);
        podman(&args, TRANSFER_LIMIT).assert_success();
    };
    // Without the CA podman refuses regproxy's certificate.
    let c = creds(PUSHER);
    let untrusted = podman(
        &["push", &policy[0], &policy[1], "--creds", &c, &tls_ref],
        TRANSFER_LIMIT,
    );
    untrusted.assert_failure();
    assert!(
        untrusted
            .output()
            .contains("certificate signed by unknown authority"),
        "{}",
        untrusted.output()
    );
    transfer("push", &tls_ref, &tls_args, PUSHER);
    s.tap.clear();
    transfer("push", &plain_ref, &plain_args, PUSHER);
    let shape = describe_upload(&s.tap.seen(), LAYER / 2);

    let blob_of = |image: &str, out: &Path| -> String {
        let id = podman(&["create", image, "x"], STEP_LIMIT);
        id.assert_success();
        let id = id.stdout.trim().to_owned();
        std::fs::create_dir_all(out).unwrap();
        let dest = out.display().to_string();
        podman(&["cp", &format!("{id}:/blob"), &dest], STEP_LIMIT).assert_success();
        podman(&["rm", &id], STEP_LIMIT).assert_success();
        sha256_file(&out.join("blob"))
    };
    podman(&["rmi", &tls_ref, &plain_ref], STEP_LIMIT).assert_success();
    assert!(podman(&["images", "-q"], STEP_LIMIT)
        .stdout
        .trim()
        .is_empty());
    transfer("pull", &tls_ref, &tls_args, READER);
    assert_eq!(blob_of(&tls_ref, &s.path("out-tls")), want);
    podman(&["rmi", &tls_ref], STEP_LIMIT).assert_success();
    transfer("pull", &plain_ref, &plain_args, READER);
    assert_eq!(blob_of(&plain_ref, &s.path("out-plain")), want);

    eprintln!("client-table: podman | {version} | {shape} | TLS pass | plain pass");
}

// === containerd (ctr) ===

#[test]
fn ctr_pushes_and_pulls_through_tls_and_plain_http() {
    let _turn = serial();
    let s = Stack::recipe();
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(e) => return skip("ctr", "containerd", &e),
    };
    let version = version_line(Command::new("ctr").arg("--version")).unwrap_or_default();
    // An OCI archive with one uncompressed tar layer holding the random
    // blob, made by tar and skopeo, imported without unpacking.
    build_context(&s.path("ctx"), LAYER);
    let (archive, layer) = oci_archive_of_blob(&s.path("ctx"), &s.path("archive"));
    let (tls_name, plain_name) = (
        format!("{}/clients/ctr", s.tls_host()),
        format!("{}/clients/ctr-plain", s.plain_host()),
    );
    let (tls_ref, plain_ref) = (format!("{tls_name}:v1"), format!("{plain_name}:v1"));
    let ctr = |args: &[&str], limit: Duration| -> Run { run(c.ctr().args(args), limit) };
    let archive_arg = archive.display().to_string();
    ctr(
        &[
            "images",
            "import",
            "--no-unpack",
            "--base-name",
            &tls_name,
            &archive_arg,
        ],
        STEP_LIMIT,
    )
    .assert_success();
    ctr(&["images", "tag", &tls_ref, &plain_ref], STEP_LIMIT).assert_success();
    let entries = [(s.tls_host(), "https"), (s.plain_host(), "http")];
    let entries: Vec<(&str, &str)> = entries.iter().map(|(h, sc)| (h.as_str(), *sc)).collect();
    let hosts = c.hosts_dir("hosts", &entries, Some(&s.tls.ca_cert()));
    let hosts = hosts.display().to_string();
    // Without the CA ctr refuses regproxy's certificate.
    let untrusted = c.hosts_dir("hosts-no-ca", &entries, None);
    let user = format!("{}:{}", PUSHER.0, PUSHER.1);
    let refused = run(
        c.ctr()
            .args(["images", "push", "--hosts-dir"])
            .arg(&untrusted)
            .args(["--user", &user, &tls_ref]),
        TRANSFER_LIMIT,
    );
    refused.assert_failure();
    assert!(
        refused
            .output()
            .contains("certificate signed by unknown authority"),
        "{}",
        refused.output()
    );
    let transfer = |verb: &str, image: &str, (u, pw): (&str, &str)| {
        let user = format!("{u}:{pw}");
        let mut args = vec!["images", verb, "--hosts-dir", &hosts, "--user", &user];
        if verb == "pull" {
            // The native snapshotter: unpacking needs no overlay mount.
            args.extend_from_slice(&["--snapshotter", "native"]);
        }
        args.push(image);
        ctr(&args, TRANSFER_LIMIT).assert_success();
    };
    transfer("push", &tls_ref, PUSHER);
    assert!(s.registry.has_blob(&layer), "registry lacks {layer}");
    s.tap.clear();
    transfer("push", &plain_ref, PUSHER);
    let shape = describe_upload(&s.tap.seen(), LAYER);

    // Drop the images and let the garbage collector take their content.
    ctr(
        &["images", "rm", "--sync", &tls_ref, &plain_ref],
        STEP_LIMIT,
    )
    .assert_success();
    assert!(
        !ctr(&["content", "get", &layer], STEP_LIMIT).success(),
        "layer still there"
    );
    let pulled = |name: &str| {
        let out = s.path(name);
        run_stdout_to(c.ctr().args(["content", "get", &layer]), &out, STEP_LIMIT).assert_success();
        sha256_file(&out)
    };
    transfer("pull", &tls_ref, READER);
    assert_eq!(pulled("pulled-tls.tar"), layer);
    ctr(&["images", "rm", "--sync", &tls_ref], STEP_LIMIT).assert_success();
    assert!(
        !ctr(&["content", "get", &layer], STEP_LIMIT).success(),
        "layer still there"
    );
    transfer("pull", &plain_ref, READER);
    assert_eq!(pulled("pulled-plain.tar"), layer);

    eprintln!("client-table: ctr | {version} | {shape} | TLS pass | plain pass");
}

// === skopeo ===

#[test]
fn skopeo_pushes_and_pulls_through_tls_and_plain_http() {
    let _turn = serial();
    let s = Stack::recipe();
    let version = version_line(Command::new("skopeo").arg("--version")).unwrap_or_default();
    let image = make_image_dir(&s.path("image"), &[LAYER]);
    let certs = s.tls.cert_dir_for_skopeo();
    let tls_ref = docker_ref(s.proxy.addr(), "clients/skopeo", "v1");
    // The tap's port, under the name the certificate would carry.
    let plain_ref = format!("docker://{}/clients/skopeo-plain:v1", s.plain_host());
    let creds = |(u, p): (&str, &str)| Some((u.to_owned(), p.to_owned()));

    skopeo_copy(
        &image.reference(),
        &tls_ref,
        &CopyOpts::push(&certs, PUSHER.0, PUSHER.1),
    )
    .assert_success();
    s.tap.clear();
    let plain_push = CopyOpts {
        dest_creds: creds(PUSHER),
        dest_tls_verify: Some(false),
        preserve_digests: true,
        ..CopyOpts::default()
    };
    skopeo_copy(&image.reference(), &plain_ref, &plain_push).assert_success();
    let shape = describe_upload(&s.tap.seen(), LAYER);

    let tls_out = s.path("pulled-tls");
    skopeo_copy(
        &tls_ref,
        &format!("dir:{}", tls_out.display()),
        &CopyOpts::pull(&certs, READER.0, READER.1),
    )
    .assert_success();
    let plain_out = s.path("pulled-plain");
    let plain_pull = CopyOpts {
        src_creds: creds(READER),
        src_tls_verify: Some(false),
        ..CopyOpts::default()
    };
    skopeo_copy(
        &plain_ref,
        &format!("dir:{}", plain_out.display()),
        &plain_pull,
    )
    .assert_success();
    for out in [&tls_out, &plain_out] {
        verify_dir_blobs(out).unwrap();
        assert_eq!(pulled_layer_digests(out), image.layer_digests());
    }

    eprintln!("client-table: skopeo | {version} | {shape} | TLS pass | plain pass");
}

// === the tap's scanner ===

#[test]
fn tap_scanner_follows_framing_across_any_split() {
    let stream = concat!(
        "POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        "PATCH /v2/r/blobs/uploads/u1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        "5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
        "PUT /v2/r/blobs/uploads/u1?digest=d HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n",
        "Expect: 100-continue\r\n\r\nGET ",
        "HEAD /v2/r/blobs/d HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    .as_bytes();
    for step in [1, 2, 3, 7, 64, stream.len()] {
        let mut s = Scanner::default();
        for piece in stream.chunks(step) {
            s.feed(piece);
        }
        let got: Vec<(&str, Framing, bool)> = s
            .seen
            .iter()
            .map(|r| (r.method.as_str(), r.framing.clone(), r.expect_continue))
            .collect();
        assert_eq!(
            got,
            vec![
                ("POST", Framing::ContentLength(0), false),
                (
                    "PATCH",
                    Framing::Chunked {
                        chunks: 2,
                        bytes: 8
                    },
                    false
                ),
                ("PUT", Framing::ContentLength(4), true),
                ("HEAD", Framing::None, false),
            ],
            "split every {step} bytes"
        );
    }
}
