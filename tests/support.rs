//! End-to-end test harness shared by every test binary (`mod support;`).
//!
//! - [`registry`]: a real CNCF distribution registry (`docker-registry`) on a
//!   free loopback port with throwaway storage, and a count of the requests
//!   that reached it.
//! - [`proxy`]: the `regproxy` binary under test, started from a TOML string.
//! - [`stack`]: the usual end-to-end stack, the real registry behind a TLS
//!   regproxy with an htpasswd file, and the config it is started with.
//! - [`tls`]: a test CA and a `localhost`/`127.0.0.1` server certificate.
//! - [`http`]: a tiny blocking HTTP/1.1 client (plain or TLS) that can send
//!   arbitrary bytes and report how the server framed and closed.
//! - [`skopeo`]: image directories with random layers, `skopeo copy`, and
//!   the digests of what came back.
//! - [`cache`]: a regproxy with a `[cache]` table and the JSON log, blobs
//!   pushed straight to the registry, the cache folder's files, a tmpfs.
//! - [`origin`]: a fault-injecting fake origin (refuse, hang, garbage,
//!   close or reset mid-body, slow or gated responses) that records the
//!   requests it receives.
//! - [`token`]: regproxy's token signing keys (openssl), a stack with
//!   `[auth] scheme = "bearer"`, a `/token` client, hand-forged tokens.
//! - [`oidc`]: a test OIDC issuer (RS256 and ES256 keys, GitHub- and
//!   GitLab-shaped claims) and an HTTPS JWKS server that can hang or lie.
//! - [`mem`]: peak resident memory (`VmHWM`) of a process.
//! - [`cmd`]: run a client tool with a time limit; stop a daemon by PID.
//! - [`dockerd`], [`podman`], [`containerd`]: the real registry clients
//!   (docker, podman, ctr), each with private state in a temp dir.
//! - [`tap`]: a transparent TCP relay that notes how each request's body
//!   is framed (how a real client uploads).
//! - [`htpasswd_bcrypt`]: an htpasswd line made by the real `htpasswd -B`.
//! - [`regbench`]: the load tester's binary, from its own crate.
//! - [`require`]: a tool or machine condition a test needs; missing, it
//!   fails the test under CI (naming the package) and skips loudly
//!   elsewhere ([`require_tool`], [`skip_unless_ci`]).
//! - [`tcp`]: the kernel's TCP socket table (queues, states), for waiting
//!   on what a connection's peer has read or closed.
//! - [`wait_for`]: polls a condition; tests wait on conditions, not sleeps.
//!
//! Nothing here uses fixed ports or kills processes by name: every child is
//! killed by its own PID when its handle is dropped.
#![allow(dead_code)]

pub mod cache;
pub mod cmd;
pub mod containerd;
pub mod dockerd;
pub mod http;
pub mod mem;
pub mod netns;
pub mod oidc;
pub mod origin;
pub mod podman;
pub mod proxy;
pub mod registry;
pub mod require;
pub mod skopeo;
pub mod stack;
pub mod tap;
pub mod tcp;
pub mod tls;
pub mod token;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use require::{require_tool, skip_unless_ci};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago, for programs that cannot be
/// told to bind port 0 and report it (nginx, HAProxy, a container, a
/// registry restarted on the same address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free loopback port")
        .local_addr()
        .expect("local address")
        .port()
}

/// bcrypt cost used by the tests unless they need another: the recipe's
/// `htpasswd -B` default is 5, which keeps the hash at a few milliseconds.
pub const BCRYPT_COST: u32 = 5;

/// One `user:$2y$05$...` htpasswd line (no trailing newline) made by the real
/// `htpasswd -Bbn` at [`BCRYPT_COST`].
pub fn htpasswd_bcrypt(user: &str, pass: &str) -> String {
    htpasswd_bcrypt_cost(user, pass, BCRYPT_COST)
}

/// Like [`htpasswd_bcrypt`] with an explicit cost (`htpasswd -C`, 4..=17).
pub fn htpasswd_bcrypt_cost(user: &str, pass: &str, cost: u32) -> String {
    let out = Command::new("htpasswd")
        .arg("-Bbn")
        .arg("-C")
        .arg(cost.to_string())
        .arg(user)
        .arg(pass)
        .output()
        .expect("run htpasswd (apt-get install apache2-utils)");
    assert!(
        out.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("htpasswd output is UTF-8");
    let line = text.trim_end().to_owned();
    assert!(
        line.starts_with(&format!("{user}:$2")),
        "unexpected htpasswd output {line:?}"
    );
    line
}

/// Writes an htpasswd file with one bcrypt line per `(user, password)`.
pub fn write_htpasswd(path: &Path, users: &[(&str, &str)]) {
    std::fs::write(path, htpasswd_text(users)).expect("write htpasswd file");
}

/// An htpasswd file's text: a bcrypt line per user ([`htpasswd_bcrypt`]).
pub fn htpasswd_text(users: &[(&str, &str)]) -> String {
    users
        .iter()
        .map(|(user, pass)| htpasswd_bcrypt(user, pass) + "\n")
        .collect()
}

/// `tests/fixtures/NAME` (tests/fixtures/README.md says what each is).
pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies the directory tree `from` into `to` (created if missing), so a
/// test can change a fixture without changing it for the others.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read a fixture directory") {
        let entry = entry.expect("read a fixture directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a fixture file");
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // The poll interval of the wait itself.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The part of `text` up to and including its last newline, so a line that
/// is still being written is never parsed.
pub fn complete_lines(text: &str) -> &str {
    &text[..text.rfind('\n').map_or(0, |i| i + 1)]
}

/// Removes ANSI colour escapes (`ESC [ ... letter`) so log lines can be parsed
/// whether or not the logger coloured them.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.clone().next() == Some('[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The `regbench` binary. It is its own crate (`bench/`), so cargo gives
/// this package no `CARGO_BIN_EXE_regbench`: a workspace `cargo test`
/// builds it beside the test binaries (bench/tests/ makes cargo build it),
/// and a test run on its own builds it here, once, with the same profile.
pub fn regbench() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(std::path::Path::parent)
            .expect("test binaries live in target/<profile>/deps");
        let bin = profile_dir.join("regbench");
        if !bin.exists() {
            let target_dir = profile_dir.parent().expect("target dir");
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "regbench", "--bin", "regbench"]);
            cargo.arg("--target-dir").arg(target_dir);
            if profile_dir.ends_with("release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("run cargo to build regbench");
            assert!(status.success(), "cargo build -p regbench failed");
        }
        bin
    })
}
