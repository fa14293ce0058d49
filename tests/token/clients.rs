//! Real clients through the Bearer flow over TLS (the test CA trusted by
//! each client, no insecure flag): docker, podman, skopeo, ctr and oras-py
//! log in, push an image with a random 1 MiB layer, drop it, pull it back
//! and hash it. Each follows regproxy's `WWW-Authenticate: Bearer`
//! challenge to `/token` with Basic credentials, then sends the token.
//! A pull-only user's token carries no push; its push is refused and
//! nothing is written to the registry.
//!
//! A client that cannot start here fails under CI and is skipped loudly
//! elsewhere. The tests take turns (one daemon at a time).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::support::cmd::{run, run_stdout_to, Run};
use crate::support::containerd::Containerd;
use crate::support::dockerd::{CertsD, Dockerd};
use crate::support::podman::Podman;
use crate::support::skopeo::{
    docker_ref, make_image_dir, oci_archive_of_blob, pulled_layer_digests, sha256_file,
    skopeo_copy, verify_dir_blobs, CopyOpts, RandomStream, Sha256,
};
use crate::support::token::{fetch_token, granted, token_of, StackOpts, TokenStack, SERVICE};
use crate::support::{http, skip_unless_ci};
use crate::{openssl_or_skip, pusher_reader_rules, MIB, PUSHER, READER};

const TRANSFER_LIMIT: Duration = Duration::from_secs(60);
const STEP_LIMIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The registry behind a TLS regproxy in bearer mode: PUSHER pushes,
/// READER pulls.
fn stack() -> Option<TokenStack> {
    openssl_or_skip()?;
    Some(TokenStack::start(StackOpts {
        users: vec![PUSHER, READER],
        tls: true,
        tail: pusher_reader_rules(),
        ..StackOpts::default()
    }))
}

fn skip(client: &str, package: &str, why: &str) {
    skip_unless_ci(
        &format!("{client} cannot run here: {why}"),
        &format!("apt-get install {package} (or scripts/setup-deps)"),
    );
}

fn host(s: &TokenStack) -> String {
    format!("localhost:{}", s.proxy.addr().port())
}

fn ca(s: &TokenStack) -> PathBuf {
    s.tls.as_ref().unwrap().ca_cert()
}

/// Writes `size` random bytes to `path`; returns their digest.
fn write_random(path: &Path, size: u64) -> String {
    let mut rng = RandomStream::new(crate::support::skopeo::fresh_seed());
    let mut buf = vec![0u8; size as usize];
    rng.fill(&mut buf);
    std::fs::write(path, &buf).unwrap();
    let mut h = Sha256::new();
    h.update(&buf);
    format!("sha256:{}", h.finish_hex())
}

/// `FROM scratch` + `COPY blob /blob`; the blob's digest.
fn build_context(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY blob /blob\n").unwrap();
    write_random(&dir.join("blob"), MIB)
}

/// The registry stored the one layer of `repo:v1`, and regproxy's log
/// shows the token fetches and Bearer requests of `user`.
fn check_stored(s: &TokenStack, repo: &str) -> String {
    let layers = s.registry.manifest_layers(repo, "v1");
    assert_eq!(layers.len(), 1, "{repo}: {layers:?}");
    assert!(s.registry.has_blob(&layers[0]), "{repo}: {layers:?}");
    layers[0].clone()
}

/// Every write that reached the registry so far.
fn registry_writes(s: &TokenStack) -> Vec<String> {
    s.registry.settle(Duration::from_millis(300));
    s.registry
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .map(|r| format!("{} {} {}", r.method, r.uri, r.status))
        .collect()
}

/// The clients fetched tokens: `/token` lines in regproxy's access log.
fn assert_token_fetches(s: &TokenStack, client: &str) {
    let found = crate::support::wait_for(Duration::from_secs(10), || {
        let log = s.proxy.access_log_text();
        log.lines().any(|l| l.contains("/token")).then_some(())
    });
    assert!(
        found.is_some(),
        "{client}: no /token request in regproxy's log:\n{}",
        s.proxy.access_log_text()
    );
}

#[test]
fn docker_logs_in_pushes_and_pulls_with_tokens() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let d = match Dockerd::start(&[]) {
        Ok(d) => d,
        Err(e) => return skip("docker", "docker.io", &e),
    };
    // dockerd skips certificate checks for 127.0.0.0/8; 0.0.0.0 reaches
    // the same listener and is verified (tests/clients.rs says more).
    let host = format!("0.0.0.0:{}", s.proxy.addr().port());
    let _ca = CertsD::install(&host, &ca(&s));
    let want = build_context(&s.path("ctx"));
    let image = format!("{host}/tok/docker:v1");
    run(
        d.docker(None)
            .args(["build", "-t", &image])
            .arg(s.path("ctx")),
        TRANSFER_LIMIT,
    )
    .assert_success();
    let cfg = s.path("docker-config");
    run(
        d.docker(Some(&cfg))
            .args(["login", "-u", PUSHER.0, "-p", PUSHER.1])
            .arg(&host),
        STEP_LIMIT,
    )
    .assert_success();
    run(d.docker(Some(&cfg)).args(["push", &image]), TRANSFER_LIMIT).assert_success();
    check_stored(&s, "tok/docker");
    run(d.docker(None).args(["rmi", &image]), STEP_LIMIT).assert_success();
    run(d.docker(Some(&cfg)).args(["pull", &image]), TRANSFER_LIMIT).assert_success();
    let id = run(d.docker(None).args(["create", &image, "x"]), STEP_LIMIT);
    let id = id.assert_success().stdout.trim().to_owned();
    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    run(
        d.docker(None)
            .arg("cp")
            .arg(format!("{id}:/blob"))
            .arg(&out),
        STEP_LIMIT,
    )
    .assert_success();
    assert_eq!(sha256_file(&out.join("blob")), want);
    assert_token_fetches(&s, "docker");
}

#[test]
fn podman_logs_in_pushes_and_pulls_with_tokens() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let p = match Podman::new() {
        Ok(p) => p,
        Err(e) => return skip("podman", "podman", &e),
    };
    let want = build_context(&s.path("ctx"));
    let image = format!("{}/tok/podman:v1", host(&s));
    let policy = p.policy_args();
    let certs = p.cert_dir(&ca(&s)).display().to_string();
    let authfile = s.path("podman-auth.json").display().to_string();
    let podman = |args: &[&str], limit| -> Run { run(p.podman().args(args), limit) };
    let ctx = s.path("ctx").display().to_string();
    podman(
        &["build", &policy[0], &policy[1], "-t", &image, &ctx],
        TRANSFER_LIMIT,
    )
    .assert_success();
    let h = host(&s);
    podman(
        &[
            "login",
            "--cert-dir",
            &certs,
            "--authfile",
            &authfile,
            "-u",
            PUSHER.0,
            "-p",
            PUSHER.1,
            &h,
        ],
        STEP_LIMIT,
    )
    .assert_success();
    let transfer = |verb: &str| {
        podman(
            &[
                verb,
                &policy[0],
                &policy[1],
                "--cert-dir",
                &certs,
                "--authfile",
                &authfile,
                &image,
            ],
            TRANSFER_LIMIT,
        )
        .assert_success();
    };
    transfer("push");
    check_stored(&s, "tok/podman");
    podman(&["rmi", &image], STEP_LIMIT).assert_success();
    transfer("pull");
    let id = podman(&["create", &image, "x"], STEP_LIMIT);
    let id = id.assert_success().stdout.trim().to_owned();
    let out = s.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.display().to_string();
    podman(&["cp", &format!("{id}:/blob"), &dest], STEP_LIMIT).assert_success();
    assert_eq!(sha256_file(&out.join("blob")), want);
    assert_token_fetches(&s, "podman");
}

#[test]
fn skopeo_pushes_and_pulls_with_tokens() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let image = make_image_dir(&s.path("image"), &[MIB]);
    let certs = s.tls.as_ref().unwrap().cert_dir_for_skopeo();
    let target = docker_ref(s.proxy.addr(), "tok/skopeo", "v1");
    skopeo_copy(
        &image.reference(),
        &target,
        &CopyOpts::push(&certs, PUSHER.0, PUSHER.1),
    )
    .assert_success();
    assert_eq!(
        s.registry.manifest_layers("tok/skopeo", "v1"),
        image.layer_digests()
    );
    let out = s.path("pulled");
    skopeo_copy(
        &target,
        &format!("dir:{}", out.display()),
        &CopyOpts::pull(&certs, READER.0, READER.1),
    )
    .assert_success();
    verify_dir_blobs(&out).unwrap();
    assert_eq!(pulled_layer_digests(&out), image.layer_digests());
    assert_token_fetches(&s, "skopeo");
}

#[test]
fn ctr_pushes_and_pulls_with_tokens() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let c = match Containerd::start() {
        Ok(c) => c,
        Err(e) => return skip("ctr", "containerd", &e),
    };
    build_context(&s.path("ctx"));
    let (archive, layer) = oci_archive_of_blob(&s.path("ctx"), &s.path("archive"));
    let name = format!("{}/tok/ctr", host(&s));
    let reference = format!("{name}:v1");
    let ctr = |args: &[&str], limit| -> Run { run(c.ctr().args(args), limit) };
    let archive = archive.display().to_string();
    ctr(
        &[
            "images",
            "import",
            "--no-unpack",
            "--base-name",
            &name,
            &archive,
        ],
        STEP_LIMIT,
    )
    .assert_success();
    let h = host(&s);
    let hosts = c.hosts_dir("hosts", &[(h.as_str(), "https")], Some(&ca(&s)));
    let hosts = hosts.display().to_string();
    let user = format!("{}:{}", PUSHER.0, PUSHER.1);
    ctr(
        &[
            "images",
            "push",
            "--hosts-dir",
            &hosts,
            "--user",
            &user,
            &reference,
        ],
        TRANSFER_LIMIT,
    )
    .assert_success();
    assert_eq!(check_stored(&s, "tok/ctr"), layer);
    ctr(&["images", "rm", "--sync", &reference], STEP_LIMIT).assert_success();
    assert!(
        !ctr(&["content", "get", &layer], STEP_LIMIT).success(),
        "layer still there"
    );
    let reader = format!("{}:{}", READER.0, READER.1);
    ctr(
        &[
            "images",
            "pull",
            "--hosts-dir",
            &hosts,
            "--user",
            &reader,
            "--snapshotter",
            "native",
            &reference,
        ],
        TRANSFER_LIMIT,
    )
    .assert_success();
    let out = s.path("pulled.tar");
    run_stdout_to(c.ctr().args(["content", "get", &layer]), &out, STEP_LIMIT).assert_success();
    assert_eq!(sha256_file(&out), layer);
    assert_token_fetches(&s, "ctr");
}

/// oras-py's venv: `REGPROXY_ORAS_VENV`, else what scripts/setup-deps
/// makes (`${XDG_CACHE_HOME:-~/.cache}/regproxy/oras`).
fn oras_python() -> Option<PathBuf> {
    let venv = std::env::var_os("REGPROXY_ORAS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("regproxy/oras"))
        })?;
    let python = venv.join("bin/python");
    let ok = run(
        Command::new(&python).args(["-c", "import oras.provider"]),
        STEP_LIMIT,
    )
    .success();
    ok.then_some(python)
}

/// oras-py: a Registry client with Basic credentials; it follows the
/// Bearer challenge itself. Pushes `file` as an artifact, pulls it into
/// `out`. Its CA bundle is the test CA (`tls_verify` takes a path).
///
/// oras-py 0.2 keeps the first token it gets and asks for a new one only
/// after a 403; regproxy answers a token without the scope with 401
/// `insufficient_scope`, as distribution does (docker, podman, skopeo and
/// ctr then fetch a token with the scope). Its push opens with a HEAD
/// (scope pull), so unaided it would retry the upload with the pull token
/// and give up. The script therefore starts from the upload's challenge
/// (scope pull,push), through oras-py's own `authenticate_request`.
const ORAS_SCRIPT: &str = r#"
import sys
import oras.provider
host, user, password, ca, ref, file, out = sys.argv[1:]
repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
reg = oras.provider.Registry(hostname=host, tls_verify=ca)
reg.auth.set_basic_auth(user, password)
challenge = reg.session.post(f"https://{host}/v2/{repo}/blobs/uploads/", verify=ca)
assert challenge.status_code == 401, challenge.status_code
assert "pull,push" in challenge.headers["Www-Authenticate"], challenge.headers
_, ok = reg.auth.authenticate_request(challenge, {})
assert ok, "no token for pull,push"
resp = reg.push(target=ref, files=[file])
assert resp.status_code in (200, 201), resp.text
got = reg.pull(target=ref, outdir=out)
print("\n".join(got))
"#;

#[test]
fn oras_py_pushes_and_pulls_with_tokens() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let Some(python) = oras_python() else {
        return skip_unless_ci(
            "oras-py (PyPI `oras` 0.2.x) is not installed",
            "scripts/setup-deps (python3-venv, then pip install oras into ~/.cache/regproxy/oras)",
        );
    };
    let work = s.path("oras");
    std::fs::create_dir_all(work.join("out")).unwrap();
    let want = write_random(&work.join("artifact.bin"), MIB);
    let h = host(&s);
    let reference = format!("{h}/tok/oras:v1");
    let ca = ca(&s).display().to_string();
    let r = run(
        Command::new(python).current_dir(&work).args([
            "-c",
            ORAS_SCRIPT,
            &h,
            PUSHER.0,
            PUSHER.1,
            &ca,
            &reference,
            "artifact.bin",
            "out",
        ]),
        TRANSFER_LIMIT,
    );
    r.assert_success();
    assert!(s.registry.has_blob(&want), "registry lacks {want}");
    assert_eq!(sha256_file(&work.join("out/artifact.bin")), want);
    assert_token_fetches(&s, "oras-py");
}

/// READER's token has pull only; skopeo's push with it is refused by
/// regproxy (401 insufficient_scope) and nothing is written upstream.
#[test]
fn pull_only_user_gets_no_push_and_writes_nothing() {
    let _turn = serial();
    let Some(s) = stack() else { return };
    let ep = s.ep();
    let reader = http::basic_auth_value(READER.0, READER.1);
    let t = token_of(&fetch_token(
        &ep,
        SERVICE,
        &["repository:tok/denied:pull,push"],
        Some(&reader),
    ));
    assert_eq!(
        granted(&t),
        [("tok/denied".to_owned(), vec!["pull".to_owned()])]
    );

    let image = make_image_dir(&s.path("image"), &[MIB]);
    let certs = s.tls.as_ref().unwrap().cert_dir_for_skopeo();
    let blobs = s.registry.blob_count();
    let push = skopeo_copy(
        &image.reference(),
        &docker_ref(s.proxy.addr(), "tok/denied", "v1"),
        &CopyOpts::push(&certs, READER.0, READER.1),
    );
    let why = push.assert_failure();
    assert!(
        why.contains("401") || why.contains("denied") || why.contains("unauthorized"),
        "skopeo should report the refusal:\n{why}"
    );
    assert_eq!(
        s.registry.blob_count(),
        blobs,
        "no new blob in the registry"
    );
    let writes = registry_writes(&s);
    assert!(writes.is_empty(), "writes reached the registry: {writes:?}");
    let refused =
        |l: &str| l.contains("\"POST /v2/tok/denied/blobs/uploads/") && l.contains(" 401 ");
    let found = crate::support::wait_for(Duration::from_secs(10), || {
        s.proxy.access_log_lines().into_iter().find(|l| refused(l))
    });
    assert!(
        found.is_some(),
        "regproxy should log the 401:\n{}",
        s.proxy.access_log_text()
    );
}
