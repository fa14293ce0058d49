//! Zero-loss restarts: regbench (ping and pull, 32 clients each) runs
//! against regproxy in front of the real registry while the test starts a
//! second regproxy and SIGTERMs the first, five times over, inside a
//! network namespace of its own where `net.ipv4.tcp_migrate_req` is set to
//! 0 or 1. With `handoff_socket` the new process takes the old one's
//! listening sockets, so nothing is lost whatever the sysctl says.
//! Without it, the new process joins the SO_REUSEPORT group with sockets
//! of its own, and only `tcp_migrate_req = 1` keeps the connections queued
//! on the old sockets. The p99 during restarts is printed beside the quiet
//! one (not asserted: no timing assertions in tests).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::netns::Netns;
use support::proxy::Proxy;
use support::registry::Registry;

const RESTARTS: usize = 5;
const CLIENTS: &str = "32";
/// Pause between the new process listening and SIGTERM to the old one, and
/// after the old one exits: both serve together for a while.
const OVERLAP: Duration = Duration::from_millis(300);
const SETTLE: Duration = Duration::from_millis(500);
/// Quiet run before the restarts, for the baseline p99.
const QUIET: &str = "3s";
/// Load while restarting: long enough for five restarts with drains.
const LOADED: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn regbench() -> &'static std::path::Path {
    support::regbench()
}

/// A regbench run in the background, its report going to `json`.
struct Bench {
    child: Child,
    json: PathBuf,
    what: String,
}

impl Bench {
    fn start(scenario: &str, url: &str, creds: &Path, duration: &str, json: PathBuf) -> Bench {
        let mut args = vec![
            scenario,
            url,
            "--credentials",
            creds.to_str().unwrap(),
            "-c",
            CLIENTS,
            "--threads",
            "1",
            "--duration",
            duration,
            "--timeout",
            "20s",
        ];
        if scenario == "pull" {
            args.extend(["--blob-size", "256KiB", "--repo-prefix", "restart"]);
        }
        let child = Command::new(regbench())
            .args(&args)
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn regbench");
        Bench {
            child,
            json,
            what: format!("regbench {}", args.join(" ")),
        }
    }

    /// Waits for it; returns (failed requests, p99 µs of all requests).
    fn finish(self) -> (u64, f64, String) {
        let out = self.child.wait_with_output().expect("wait regbench");
        let text = format!(
            "{}: status {:?}\n{}\n{}",
            self.what,
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = std::fs::read_to_string(&self.json)
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_else(|_| panic!("no report from {text}"));
        let failed = report["total"]["errors"].as_u64().unwrap()
            + report["connects"]["errors"].as_u64().unwrap_or(0);
        let p99 = report["total"]["latency_us"]["p99"].as_f64().unwrap();
        assert!(
            report["total"]["ok"].as_u64().unwrap() > 0,
            "nothing succeeded: {text}"
        );
        (failed, p99, text)
    }
}

struct Outcome {
    failed: u64,
    quiet_p99_us: f64,
    restart_p99_us: f64,
    details: String,
}

/// One scenario inside its own namespace; `None` where namespaces cannot
/// be made.
fn restarts(tag: &str, migrate_req: u8, handoff: bool) -> Option<Outcome> {
    let ns = Netns::create(tag)?;
    ns.sysctl("net.ipv4.tcp_migrate_req", &migrate_req.to_string());
    ns.enter();
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let users = dir.path().join("users");
    support::write_htpasswd(&users, &[("ci", "ci-password")]);
    let creds = dir.path().join("creds");
    std::fs::write(&creds, "ci:ci-password\n").unwrap();
    // Every process must name the same port. The namespace is this test's
    // own, so a fixed port below the ephemeral range is free; one picked by
    // binding port 0 was in that range, and an outgoing connect (to the
    // registry, say) could take it before regproxy bound it (seen once:
    // "cannot listen ... Address already in use").
    let port = 5043;
    let handoff_line = if handoff {
        format!(
            "handoff_socket = \"{}\"\n",
            dir.path().join("handoff.sock").display()
        )
    } else {
        String::new()
    };
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
workers = 2
shutdown_timeout = "15s"
{handoff_line}
[auth]
htpasswd = "{users}"
[upstream]
servers = ["{upstream}"]
[log]
access = "off"
"#,
        users = users.display(),
        upstream = registry.addr(),
    );
    let mut generation = 0;
    let start =
        |generation: usize| Proxy::start(&config, &dir.path().join(format!("p{generation}")));
    let mut current = start(generation);
    let url = format!("http://127.0.0.1:{port}");

    let quiet = [
        Bench::start(
            "ping",
            &url,
            &creds,
            QUIET,
            dir.path().join("quiet-ping.json"),
        ),
        Bench::start(
            "pull",
            &url,
            &creds,
            QUIET,
            dir.path().join("quiet-pull.json"),
        ),
    ];
    let mut details = String::new();
    let mut quiet_p99: f64 = 0.0;
    let mut failed = 0;
    for b in quiet {
        let (f, p99, text) = b.finish();
        failed += f;
        quiet_p99 = quiet_p99.max(p99);
        details.push_str(&text);
    }
    assert_eq!(failed, 0, "failures before any restart:\n{details}");

    let secs = format!("{}s", LOADED.as_secs());
    let loaded = [
        Bench::start("ping", &url, &creds, &secs, dir.path().join("ping.json")),
        Bench::start("pull", &url, &creds, &secs, dir.path().join("pull.json")),
    ];
    let began = Instant::now();
    // SETTLE and OVERLAP are not synchronisation: they space the restarts
    // over the load, which is the scenario under test.
    std::thread::sleep(SETTLE);
    for _ in 0..RESTARTS {
        generation += 1;
        let next = start(generation);
        if handoff {
            assert!(
                next.stderr_text()
                    .contains("took over the listening sockets"),
                "no handoff:\n{}",
                next.stderr_text()
            );
        }
        // Both serve together for a while (not synchronisation, as above).
        std::thread::sleep(OVERLAP);
        let mut old = std::mem::replace(&mut current, next);
        old.send_signal("TERM");
        let status = old.wait_exit(EXIT_TIMEOUT);
        assert!(
            status.is_some_and(|s| s.success()),
            "old regproxy did not drain and exit cleanly ({status:?}):\n{}",
            old.stderr_text()
        );
        // The new one alone under load before the next restart (as above).
        std::thread::sleep(SETTLE);
    }
    let restarted_in = began.elapsed();
    assert!(
        restarted_in < LOADED,
        "the restarts took {restarted_in:?}, longer than the load ({LOADED:?})"
    );
    let mut restart_p99: f64 = 0.0;
    for b in loaded {
        let (f, p99, text) = b.finish();
        failed += f;
        restart_p99 = restart_p99.max(p99);
        details.push_str(&text);
    }
    drop(current);
    drop(registry);
    drop(ns);
    eprintln!(
        "restart [{tag}] tcp_migrate_req={migrate_req} handoff={handoff}: {failed} failed requests; \
         p99 quiet {:.1} ms, during {RESTARTS} restarts {:.1} ms",
        quiet_p99 / 1000.0,
        restart_p99 / 1000.0
    );
    Some(Outcome {
        failed,
        quiet_p99_us: quiet_p99,
        restart_p99_us: restart_p99,
        details,
    })
}

fn assert_lossless(o: Option<Outcome>) {
    let Some(o) = o else { return };
    assert!(o.quiet_p99_us > 0.0 && o.restart_p99_us > 0.0);
    assert_eq!(
        o.failed, 0,
        "requests failed across restarts:\n{}",
        o.details
    );
}

#[test]
fn handoff_loses_nothing_without_migrate_req() {
    assert_lossless(restarts("hand0", 0, true));
}

#[test]
fn handoff_loses_nothing_with_migrate_req() {
    assert_lossless(restarts("hand1", 1, true));
}

#[test]
fn reuseport_join_loses_nothing_with_migrate_req() {
    assert_lossless(restarts("join1", 1, false));
}

/// The case the handoff exists for: measured, not asserted (whether a
/// connection is queued at the instant a socket closes is timing).
/// `cargo test --release --test restart -- --ignored --nocapture`.
#[test]
#[ignore = "measurement for tuning/README.md"]
fn reuseport_join_without_migrate_req_measured() {
    if let Some(o) = restarts("join0", 0, false) {
        eprintln!("reuseport join, tcp_migrate_req=0: {} failed", o.failed);
    }
}

/// systemd socket activation, with systemd's own `systemd-socket-activate`
/// standing in for PID 1: the connection made before regproxy exists waits
/// in the socket's queue and is answered once it starts.
#[test]
fn socket_activation_serves_the_passed_socket() {
    let Some(activate) = support::require_tool("systemd-socket-activate", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    support::write_htpasswd(&users, &[("ci", "ci-password")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("regproxy.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nworkers = 2\n[auth]\nhtpasswd = \"{}\"\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[log]\naccess = \"off\"\n",
            users.display()
        ),
    )
    .unwrap();
    let stderr = dir.path().join("stderr");
    let mut child = Command::new(activate)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(support::proxy::bin())
        .arg("--config")
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let answered = support::wait_for(Duration::from_secs(30), || {
        support::http::get(addr, "/v2/", None, &[]).ok()
    });
    let log = std::fs::read_to_string(&stderr).unwrap();
    // Same PID: systemd-socket-activate execs regproxy.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered.map(|r| r.status), Some(401), "{log}");
    assert!(log.contains("using the sockets systemd passed"), "{log}");
}
