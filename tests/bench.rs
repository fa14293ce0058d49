//! regbench end to end: push then pull against the real registry with the
//! digests checked, a corrupted blob from `regbench origin` reported as a
//! digest error, `--count` and `--duration` bounding a run, a run
//! through regproxy with TLS and basic auth, and runs through regproxy in
//! Bearer mode (`ci --token-auth`, the `token` scenario).
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::proxy::Proxy;
use support::registry::Registry;
use support::tls::Tls;

/// Exit status of a run that completed with failed requests.
const EXIT_ERRORS: i32 = 3;

fn bin() -> &'static std::path::Path {
    support::regbench()
}

/// Runs regbench to completion with `--json FILE`; returns its output and
/// the parsed report (`Null` if none was written).
fn regbench(args: &[&str], dir: &Path) -> (Output, Value) {
    let json = dir.join(format!(
        "report-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let out = Command::new(bin())
        .args(args)
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .expect("run regbench");
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).expect("report is JSON"))
        .unwrap_or(Value::Null);
    (out, report)
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_clean(out: &Output, report: &Value) {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    assert_eq!(report["errors"], Value::Array(vec![]), "{}", describe(out));
}

/// `ok` of the named row in `report[table]`.
fn ok_of(report: &Value, table: &str, name: &str) -> u64 {
    report[table]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map_or(0, |r| r["ok"].as_u64().unwrap())
}

/// `regbench origin` on a free loopback port, killed by PID on drop.
struct Origin {
    child: Child,
    addr: SocketAddr,
}

impl Origin {
    fn start() -> Origin {
        let mut child = Command::new(bin())
            .args(["origin", "--listen", "127.0.0.1:0", "--threads", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn regbench origin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Origin { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The images a report lists, as (repository, tag, manifest digest, blobs).
fn images(report: &Value) -> Vec<(String, String, String, Vec<String>)> {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["repository"].as_str().unwrap().to_owned(),
                i["tag"].as_str().unwrap().to_owned(),
                i["manifest_digest"].as_str().unwrap().to_owned(),
                i["blobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn push_then_pull_round_trips_against_the_real_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let url = format!("http://{}", registry.addr());
    for monolithic in [false, true] {
        let mut args = vec![
            "push",
            &url,
            "--count",
            "3",
            "--concurrency",
            "2",
            "--layers",
            "2",
            "--blob-size",
            "3MiB",
        ];
        if monolithic {
            args.push("--monolithic");
        }
        let (out, report) = regbench(&args, dir.path());
        assert_clean(&out, &report);
        assert_eq!(ok_of(&report, "operations", "push"), 3);
        // Chunked: POST, PATCH, PUT per layer; monolithic: POST, PUT.
        let patches = if monolithic { 0 } else { 6 };
        assert_eq!(ok_of(&report, "requests", "upload PATCH"), patches);
        assert_eq!(ok_of(&report, "requests", "manifest PUT"), 3);
        let pushed = images(&report);
        assert_eq!(pushed.len(), 3);
        for (_, _, _, blobs) in &pushed {
            assert_eq!(blobs.len(), 3, "config and two layers");
            for b in blobs {
                assert!(registry.has_blob(b), "the registry lacks {b}");
            }
        }

        // Pull what was pushed: same manifest digest, same blobs, verified.
        let (repo, tag, manifest, blobs) = &pushed[0];
        let image = format!("{repo}:{tag}");
        let (out, report) = regbench(
            &["pull", &url, "--image", &image, "--count", "2"],
            dir.path(),
        );
        assert_clean(&out, &report);
        assert_eq!(ok_of(&report, "operations", "pull"), 2);
        let pulled = images(&report);
        assert_eq!(pulled.len(), 2);
        for (r, t, m, b) in &pulled {
            assert_eq!((r, t, m, b), (repo, tag, manifest, blobs));
        }
        let received: u64 = report["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "blob GET")
            .unwrap()["bytes_received"]
            .as_u64()
            .unwrap();
        assert!(received >= 2 * 2 * 3 * (1 << 20), "{received}");
    }
}

#[test]
fn origin_serves_verifiable_blobs_and_corrupts_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start();
    let url = origin.url();
    let (out, report) = regbench(
        &[
            "pull",
            &url,
            "--count",
            "4",
            "--layers",
            "3",
            "--blob-size",
            "2MiB",
        ],
        dir.path(),
    );
    assert_clean(&out, &report);
    assert_eq!(ok_of(&report, "requests", "blob GET"), 4 * 4);

    let (out, report) = regbench(
        &[
            "pull",
            &url,
            "--count",
            "3",
            "--repo-prefix",
            "team/corrupt",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(EXIT_ERRORS), "{}", describe(&out));
    let errors = report["errors"].as_array().unwrap();
    let digest = errors
        .iter()
        .find(|e| e["request"] == "blob GET" && e["kind"] == "digest")
        .unwrap_or_else(|| panic!("no digest error in {errors:?}"));
    assert_eq!(digest["count"], 3);
    assert!(
        digest["sample"]
            .as_str()
            .unwrap()
            .contains("hashes to sha256:"),
        "{digest}"
    );
    assert_eq!(ok_of(&report, "operations", "pull"), 0);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("digest"), "{table}");

    // --no-verify skips hashing, so the corruption goes unseen (sizes match).
    let (out, report) = regbench(
        &[
            "pull",
            &url,
            "--count",
            "1",
            "--repo-prefix",
            "corrupt",
            "--no-verify",
        ],
        dir.path(),
    );
    assert_clean(&out, &report);

    // Pushes are accepted and discarded; HEAD knows what was uploaded.
    let (out, report) = regbench(&["ci", &url, "--count", "6", "-c", "3"], dir.path());
    assert_clean(&out, &report);
    assert_eq!(ok_of(&report, "operations", "ci job"), 6);
    assert!(ok_of(&report, "requests", "blob HEAD") >= 6 * 4);
}

#[test]
fn count_and_duration_bound_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start();
    let url = origin.url();

    let (out, report) = regbench(&["ping", &url, "--count", "777", "-c", "8"], dir.path());
    assert_clean(&out, &report);
    assert_eq!(ok_of(&report, "requests", "ping"), 777);
    assert_eq!(ok_of(&report, "operations", "ping"), 777);

    let started = Instant::now();
    let (out, report) = regbench(&["head", &url, "--duration", "2s", "-c", "4"], dir.path());
    let wall = started.elapsed();
    assert_clean(&out, &report);
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    assert!((1.9..3.0).contains(&elapsed), "elapsed {elapsed}");
    assert!(wall < Duration::from_secs(15), "took {wall:?}");
    assert!(ok_of(&report, "operations", "head") > 100);

    // Neither given: a small default count, not an endless run.
    let (out, report) = regbench(&["push", &url, "--blob-size", "4KiB"], dir.path());
    assert_clean(&out, &report);
    assert_eq!(ok_of(&report, "operations", "push"), 20);

    // A server that never answers: the deadline's grace period cuts the
    // operations in flight, and the run still ends.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let (out, report) = regbench(
        &[
            "ping",
            &silent_url,
            "--duration",
            "1s",
            "--grace",
            "1s",
            "-c",
            "2",
        ],
        dir.path(),
    );
    let wall = started.elapsed();
    assert!(wall < Duration::from_secs(10), "took {wall:?}");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(report["cancelled"], 2, "{}", describe(&out));
    assert_eq!(ok_of(&report, "requests", "ping"), 0);
}

/// regproxy over TLS in front of `registry`, with `auth` as the body of
/// its `[auth]` table (and any tables after it): the proxy, its URL and
/// the CA file its clients trust.
fn tls_proxy(dir: &Path, tls: &Tls, registry: &Registry, auth: &str) -> (Proxy, String, String) {
    let config = format!(
        r#"
listen = "127.0.0.1:0"
[tls]
cert = "{cert}"
key = "{key}"
[upstream]
servers = ["{upstream}"]
[log]
access = "off"
[auth]
{auth}
"#,
        cert = tls.server_cert().display(),
        key = tls.server_key().display(),
        upstream = registry.addr(),
    );
    let proxy = Proxy::start(&config, dir);
    let url = format!("https://localhost:{}", proxy.addr().port());
    (proxy, url, tls.ca_cert().display().to_string())
}

#[test]
fn through_regproxy_with_tls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let tls = Tls::generate(&dir.path().join("tls"));
    support::write_htpasswd(
        &dir.path().join("users"),
        &[("testuser", "testpassword"), ("reader", "readerpassword")],
    );
    let (_proxy, url, ca) = tls_proxy(
        dir.path(),
        &tls,
        &registry,
        "htpasswd = \"users\"\npush_users = [\"testuser\"]",
    );
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "testuser:testpassword\n").unwrap();
    let creds = creds.display().to_string();

    let (out, report) = regbench(
        &[
            "push",
            &url,
            "--cacert",
            &ca,
            "--credentials",
            &creds,
            "--count",
            "2",
            "--blob-size",
            "2MiB",
        ],
        dir.path(),
    );
    assert_clean(&out, &report);
    let pushed = images(&report);
    for b in &pushed[0].3 {
        assert!(registry.has_blob(b), "the registry lacks {b}");
    }

    let image = format!("{}:{}", pushed[0].0, pushed[0].1);
    for scenario in ["pull", "head"] {
        let (out, report) = regbench(
            &[
                scenario,
                &url,
                "--cacert",
                &ca,
                "--user",
                "reader",
                "--password",
                "readerpassword",
                "--image",
                &image,
                "--count",
                "10",
                "-c",
                "4",
            ],
            dir.path(),
        );
        assert_clean(&out, &report);
    }
    let (out, report) = regbench(
        &[
            "ci",
            &url,
            "--cacert",
            &ca,
            "--user",
            "testuser",
            "--password",
            "testpassword",
            "--count",
            "4",
            "-c",
            "2",
        ],
        dir.path(),
    );
    assert_clean(&out, &report);

    // The proxy's refusals come back as errors by kind, with the sample.
    let (out, report) = regbench(
        &[
            "ping",
            &url,
            "--insecure",
            "--user",
            "testuser",
            "--password",
            "wrong",
            "-n",
            "5",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(EXIT_ERRORS), "{}", describe(&out));
    let e = &report["errors"][0];
    assert_eq!(
        (e["request"].as_str(), e["kind"].as_str()),
        (Some("ping"), Some("status 401"))
    );
    assert_eq!(e["count"], 5);
    assert!(
        e["sample"].as_str().unwrap().contains("UNAUTHORIZED"),
        "{e}"
    );

    let (out, report) = regbench(
        &[
            "push",
            &url,
            "--cacert",
            &ca,
            "--user",
            "reader",
            "--password",
            "readerpassword",
            "-n",
            "1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(EXIT_ERRORS), "{}", describe(&out));
    assert_eq!(report["errors"][0]["kind"], "status 403");

    // A CA that did not sign the proxy's certificate: every connect fails.
    let other = Tls::generate(&dir.path().join("other"));
    let (out, report) = regbench(
        &[
            "ping",
            &url,
            "--cacert",
            &other.ca_cert().display().to_string(),
            "-n",
            "3",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(EXIT_ERRORS), "{}", describe(&out));
    assert_eq!(report["errors"][0]["request"], "connect");
    assert_eq!(report["errors"][0]["kind"], "tls");
}

/// An Ed25519 signing key in PKCS#8 PEM, as `openssl genpkey` writes it.
fn signing_key_pem() -> String {
    use base64::Engine as _;
    use regproxy_core::auth::jwt::{Alg, SigningKey};
    let (_, der) = SigningKey::generate(Alg::EdDsa).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

#[test]
fn through_regproxy_with_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let tls = Tls::generate(&dir.path().join("tls"));
    support::write_htpasswd(&dir.path().join("users"), &[("testuser", "testpassword")]);
    std::fs::write(dir.path().join("token.key"), signing_key_pem()).unwrap();
    let (_proxy, url, ca) = tls_proxy(
        dir.path(),
        &tls,
        &registry,
        "scheme = \"bearer\"\nhtpasswd = \"users\"\n[auth.token]\nsigning_key = \"token.key\"\nservice = \"regbench.test\"",
    );
    let auth = [
        "--cacert",
        &ca,
        "--user",
        "testuser",
        "--password",
        "testpassword",
    ];

    // A second of the CI mix with tokens: every request but /token carries
    // one, and each client asks /token once per repository (its own and
    // the base image's), as docker does.
    let mut args = vec!["ci", &url, "--token-auth", "-d", "1s", "-c", "2"];
    args.extend(auth);
    let (out, report) = regbench(&args, dir.path());
    assert_clean(&out, &report);
    let jobs = ok_of(&report, "operations", "ci job");
    assert!(jobs >= 1, "{}", describe(&out));
    assert!(ok_of(&report, "requests", "blob HEAD") >= jobs * 4);
    let tokens = ok_of(&report, "requests", "token GET");
    assert!((1..=4).contains(&tokens), "{tokens} tokens for 2 clients");
    for (_, _, _, blobs) in images(&report) {
        for b in &blobs {
            assert!(registry.has_blob(b), "the registry lacks {b}");
        }
    }

    // Issuance: a second of /token requests, each answered with a token.
    let mut args = vec!["token", &url, "-d", "1s", "-c", "2"];
    args.extend(auth);
    let (out, report) = regbench(&args, dir.path());
    assert_clean(&out, &report);
    assert!(
        ok_of(&report, "requests", "token GET") > 10,
        "{}",
        describe(&out)
    );

    // A target without the Bearer flow: regbench says why instead of
    // running.
    let plain = Registry::start();
    let plain_url = format!("http://{}", plain.addr());
    let (out, _) = regbench(&["token", &plain_url, "-n", "1"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Bearer challenge"),
        "{}",
        describe(&out)
    );
}
