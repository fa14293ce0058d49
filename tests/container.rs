//! The container image: a `FROM scratch` runtime stage around a statically
//! linked regproxy (as the Dockerfile's `runtime` stage builds it, without
//! pulling the Rust image, which this machine cannot), run by a private
//! `dockerd` with `--network host`, carrying a real `docker push` and
//! `docker pull` into the real registry; `docker stop` (SIGTERM) drains and
//! exits 0.
//!
//! The static binary is `target/x86_64-unknown-linux-gnu/release/regproxy`,
//! built here when missing (`scripts/test` builds it first).
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::dockerd::Dockerd;
use support::registry::Registry;

const TARGET: &str = "x86_64-unknown-linux-gnu";
const USER: (&str, &str) = ("testuser", "testpassword");

fn static_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(format!("target/{TARGET}/release/regproxy"));
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "--bin",
                "regproxy",
            ])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .current_dir(root)
            .status()
            .unwrap()
            .success();
        assert!(ok, "static build failed");
    }
    bin
}

/// A private dockerd (`support::dockerd`), or `None` where it cannot run
/// ([`support::skip_unless_ci`]: a failure under CI).
fn start_dockerd() -> Option<Dockerd> {
    Dockerd::start(&[])
        .map_err(|why| {
            support::skip_unless_ci(
                &format!("cannot run dockerd here: {why}"),
                "apt-get install docker.io (or scripts/setup-deps)",
            )
        })
        .ok()
}

/// `docker ARGS` against `d`.
fn run(d: &Dockerd, args: &[&str]) -> Output {
    d.docker(None)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `docker ARGS` against `d`, which must succeed; its trimmed stdout.
fn ok(d: &Dockerd, args: &[&str]) -> String {
    let out = run(d, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn scratch_image_carries_docker_push_and_pull() {
    let Some(docker) = start_dockerd() else {
        return;
    };
    let bin = static_binary();
    let dir = tempfile::tempdir().unwrap();

    // The runtime stage of the Dockerfile, around the prebuilt binary.
    let ctx = dir.path().join("image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(&bin, ctx.join("regproxy")).unwrap();
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let runtime = &dockerfile[dockerfile.find("FROM scratch AS runtime").unwrap()..];
    std::fs::write(
        ctx.join("Dockerfile"),
        runtime.replace(
            "COPY --from=build /out/regproxy /regproxy",
            "COPY regproxy /regproxy",
        ),
    )
    .unwrap();
    ok(
        &docker,
        &[
            "build",
            "-q",
            "-t",
            "regproxy-test:scratch",
            ctx.to_str().unwrap(),
        ],
    );

    // Config, users and the registry it fronts, mounted read-only.
    let registry = Registry::start();
    let port = support::free_port();
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    support::write_htpasswd(&etc.join("htpasswd"), &[USER]);
    std::fs::write(
        etc.join("regproxy.toml"),
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 1\nshutdown_timeout = \"5s\"\n[auth]\nhtpasswd = \"htpasswd\"\n[upstream]\nservers = [\"{}\"]\n",
            registry.addr()
        ),
    )
    .unwrap();
    for f in ["", "htpasswd", "regproxy.toml"] {
        let p = etc.join(f);
        let mode = if f.is_empty() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let mount = format!("{}:/etc/regproxy:ro", etc.display());
    let id = ok(
        &docker,
        &[
            "run",
            "-d",
            "--network",
            "host",
            "-v",
            &mount,
            "regproxy-test:scratch",
        ],
    );
    let user = ok(&docker, &["inspect", "-f", "{{.Config.User}}", &id]);
    assert_eq!(user, "65532:65532", "the image runs as non-root");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = support::wait_for(Duration::from_secs(20), || {
        support::http::get(addr, "/v2/", None, &[])
            .ok()
            .map(|r| r.status)
    });
    assert_eq!(up, Some(401), "logs:\n{}", ok(&docker, &["logs", &id]));

    // docker push and pull through the container (127.0.0.0/8 registries
    // may be plain HTTP for docker). The regproxy image itself is pushed;
    // a second image of random content, not in use, makes the round trip.
    let registry_host = format!("127.0.0.1:{port}");
    ok(
        &docker,
        &["login", "-u", USER.0, "-p", USER.1, &registry_host],
    );
    let own = format!("{registry_host}/scaleout/regproxy:scratch");
    ok(&docker, &["tag", "regproxy-test:scratch", &own]);
    ok(&docker, &["push", &own]);

    let payload_ctx = dir.path().join("payload");
    std::fs::create_dir_all(&payload_ctx).unwrap();
    let mut data = vec![0u8; 2 << 20];
    support::skopeo::WyRand::new(support::skopeo::fresh_seed()).fill(&mut data);
    std::fs::write(payload_ctx.join("payload"), &data).unwrap();
    std::fs::write(
        payload_ctx.join("Dockerfile"),
        "FROM scratch\nCOPY payload /payload\n",
    )
    .unwrap();
    let image = format!("{registry_host}/scaleout/payload:1");
    ok(
        &docker,
        &["build", "-q", "-t", &image, payload_ctx.to_str().unwrap()],
    );
    let pushed = ok(&docker, &["inspect", "-f", "{{.Id}}", &image]);
    ok(&docker, &["push", &image]);
    ok(&docker, &["rmi", &image]);
    assert!(
        !run(&docker, &["inspect", &image]).status.success(),
        "image still local"
    );
    ok(&docker, &["pull", &image]);
    let pulled = ok(&docker, &["inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(pulled, pushed, "the pulled image is the pushed one");

    // SIGTERM drains and exits cleanly.
    ok(&docker, &["stop", "-t", "20", &id]);
    let code = ok(&docker, &["inspect", "-f", "{{.State.ExitCode}}", &id]);
    let logs = run(&docker, &["logs", &id]);
    assert_eq!(code, "0", "{}", String::from_utf8_lossy(&logs.stderr));
    let _ = run(&docker, &["rm", "-f", &id]);
}
