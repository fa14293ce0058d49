//! Bad configurations are refused at start, before anything listens, with
//! `FILE:LINE:COLUMN: what is wrong` (or `FILE:LINE:` for htpasswd lines, or
//! `FILE: …` for PEM files) on stderr and a non-zero exit; `regproxy check`
//! says the same without serving, and `ok` when all is well.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::proxy::{self, Proxy};
use support::tls::Tls;

/// A valid config; every bad case changes one line of it. Line numbers:
/// 1 listen, 3 cert, 4 key, 6 htpasswd, 7 push_users, 8 cache_ttl,
/// 10 servers.
const GOOD: &str = r#"listen = "127.0.0.1:0"
[tls]
cert = "tls/server.crt"
key = "tls/server.key"
[auth]
htpasswd = "users"
push_users = ["testuser"]
cache_ttl = "5m"
[upstream]
servers = ["127.0.0.1:5000"]
"#;

/// A folder with the files [`GOOD`] names: `users` (one bcrypt line made by
/// `htpasswd -B`) and `tls/` (a CA-signed `localhost` certificate and key).
struct Fixture {
    dir: tempfile::TempDir,
    tls: Tls,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        support::write_htpasswd(&dir.path().join("users"), &[("testuser", "testpassword")]);
        let tls = Tls::generate(&dir.path().join("tls"));
        Fixture { dir, tls }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Where [`Proxy::try_start`] writes the config.
    fn config_path(&self) -> PathBuf {
        self.path("regproxy.toml")
    }
}

/// `GOOD` with the line starting with `key` replaced by `line`.
fn good_with(key: &str, line: &str) -> String {
    let mut found = false;
    let text: Vec<&str> = GOOD
        .lines()
        .map(|l| {
            if l.starts_with(key) {
                found = true;
                line
            } else {
                l
            }
        })
        .collect();
    assert!(found, "no line starting with {key:?} in GOOD");
    text.join("\n") + "\n"
}

/// `regproxy check --config FILE`.
fn check(config: &Path) -> Output {
    proxy::command()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    support::strip_ansi(&String::from_utf8_lossy(bytes))
}

/// Serving `toml` from `fx` fails, and so does `regproxy check` on it; both
/// exit non-zero with a stderr holding `location` and every one of
/// `fragments`. Returns check's stderr.
fn assert_refused(fx: &Fixture, toml: &str, location: &str, fragments: &[&str]) -> String {
    let serve = match Proxy::try_start(toml, fx.dir.path()) {
        Ok(p) => panic!(
            "regproxy served a bad config (expected {location} {fragments:?}):\n{toml}\n{}",
            p.stderr_text()
        ),
        Err(f) => f,
    };
    let status = serve
        .status
        .unwrap_or_else(|| panic!("regproxy neither served nor exited:\n{}", serve.stderr));
    assert!(!status.success(), "{status}: {}", serve.stderr);

    let out = check(&fx.config_path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "check: {stderr}");
    assert!(
        !text(&out.stdout).contains("ok"),
        "check said ok: {}",
        text(&out.stdout)
    );
    for (what, err) in [("serve", &serve.stderr), ("check", &stderr)] {
        assert!(
            err.contains(location),
            "{what}: expected {location:?} in stderr:\n{err}"
        );
        for f in fragments {
            assert!(err.contains(f), "{what}: expected {f:?} in stderr:\n{err}");
        }
    }
    stderr
}

/// `FILE:LINE:` of the fixture's config.
fn at_line(fx: &Fixture, line: usize) -> String {
    format!("{}:{line}:", fx.config_path().display())
}

#[test]
fn good_config_checks_ok_and_serves() {
    let fx = Fixture::new();
    let proxy = Proxy::start(GOOD, fx.dir.path());
    drop(proxy);
    let out = check(&fx.config_path());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{}: ok", fx.config_path().display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 users") && stdout.contains("tls on"),
        "{stdout}"
    );
}

#[test]
fn config_mistakes_name_file_line_and_problem() {
    // (what, line key, replacement line, line number, fragments)
    let cases: &[(&str, &str, &str, usize, &[&str])] = &[
        (
            "typo in a key",
            "htpasswd",
            r#"htpassword = "users""#,
            6,
            &["unknown field `htpassword`"],
        ),
        (
            "bad duration",
            "cache_ttl",
            r#"cache_ttl = "5 parsecs""#,
            8,
            &["invalid duration", "5 parsecs"],
        ),
        (
            "listen without a port",
            "listen",
            r#"listen = "127.0.0.1""#,
            1,
            &["listen", "needs a port"],
        ),
        (
            "no upstream servers",
            "servers",
            "servers = []",
            10,
            &["upstream.servers must name at least one registry"],
        ),
        (
            "upstream without a port",
            "servers",
            r#"servers = ["127.0.0.1"]"#,
            10,
            &["upstream.servers", "needs a port"],
        ),
        (
            "wrong type",
            "push_users",
            r#"push_users = "testuser""#,
            7,
            &["invalid type"],
        ),
        (
            "unterminated string",
            "cache_ttl",
            r#"cache_ttl = "5m"#,
            8,
            &[],
        ),
        ("bare word value", "cache_ttl", "cache_ttl = 5m", 8, &[]),
        (
            "duplicate key",
            "push_users",
            "htpasswd = \"users\"",
            7,
            &["duplicate key"],
        ),
    ];
    for (what, key, line, number, fragments) in cases {
        let fx = Fixture::new();
        let toml = good_with(key, line);
        let location = at_line(&fx, *number);
        let stderr = assert_refused(&fx, &toml, &location, fragments);
        // One precise report, not a cascade.
        assert_eq!(
            stderr
                .matches(&*fx.config_path().display().to_string())
                .count(),
            1,
            "{what}: {stderr}"
        );
    }
}

#[test]
fn missing_files_are_named_with_the_line_that_names_them() {
    let cases: &[(&str, &str, &str, usize, &str, &str)] = &[
        (
            "htpasswd",
            "htpasswd",
            r#"htpasswd = "nope.htpasswd""#,
            6,
            "auth.htpasswd: no such file",
            "nope.htpasswd",
        ),
        (
            "TLS cert",
            "cert",
            r#"cert = "tls/missing.crt""#,
            3,
            "tls.cert: no such file",
            "tls/missing.crt",
        ),
        (
            "TLS key",
            "key",
            r#"key = "tls/missing.key""#,
            4,
            "tls.key: no such file",
            "tls/missing.key",
        ),
    ];
    for (_what, key, line, number, problem, name) in cases {
        let fx = Fixture::new();
        // Relative paths resolve against the config's folder, and the
        // message shows where that led.
        let resolved = fx.path(name).display().to_string();
        assert_refused(
            &fx,
            &good_with(key, line),
            &at_line(&fx, *number),
            &[problem, &resolved],
        );
    }

    // The config file itself.
    let fx = Fixture::new();
    let missing = fx.path("absent.toml");
    let out = check(&missing);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read config file {}", missing.display())),
        "{stderr}"
    );
}

#[test]
fn unsupported_htpasswd_lines_name_the_file_and_line() {
    let fx = Fixture::new();
    let good_line = support::htpasswd_bcrypt("testuser", "testpassword");
    // Schemes nginx reads only through the system crypt(3): refused.
    // `openssl passwd -1 -salt abcdefgh secret`, and a 13-character
    // DES-crypt value of the shape `htpasswd -nbd` writes.
    let md5crypt = "dave:$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1";
    let des = "erin:abJnggxhB/yWI";
    let users = fx.path("users");
    let location = |line: usize| format!("{}:{line}:", users.display());

    // One bad line among good ones.
    std::fs::write(&users, format!("{good_line}\n{md5crypt}\n")).unwrap();
    let stderr = assert_refused(&fx, GOOD, &location(2), &["md5-crypt"]);
    assert!(!stderr.contains("cHJi5PXp"), "{stderr}");

    // Every bad line is reported, each with its own number.
    std::fs::write(&users, format!("{md5crypt}\n\n{good_line}\n{des}\n")).unwrap();
    let stderr = assert_refused(&fx, GOOD, &location(1), &["md5-crypt"]);
    assert!(stderr.contains(&location(4)), "{stderr}");
    assert!(stderr.contains("DES crypt"), "{stderr}");
    assert!(!stderr.contains("abJnggxhB"), "{stderr}");
}

#[test]
fn unusable_tls_files_are_named() {
    let fx = Fixture::new();
    let key = fx.tls.server_key();
    let cert = fx.tls.server_cert();

    // A key file that holds a certificate, then one that holds no PEM at all.
    std::fs::copy(&cert, &key).unwrap();
    assert_refused(
        &fx,
        GOOD,
        &format!("{}:", key.display()),
        &["no usable private key"],
    );
    std::fs::write(&key, "this is not a key\n").unwrap();
    assert_refused(
        &fx,
        GOOD,
        &format!("{}:", key.display()),
        &["no usable private key"],
    );

    // A cert file that holds no certificate.
    let fx = Fixture::new();
    let cert = fx.tls.server_cert();
    std::fs::copy(fx.tls.server_key(), &cert).unwrap();
    assert_refused(
        &fx,
        GOOD,
        &format!("{}:", cert.display()),
        &["no CERTIFICATE block found"],
    );

    // A certificate with another certificate's key.
    let fx = Fixture::new();
    let other = Tls::generate(&fx.path("other-tls"));
    std::fs::copy(other.server_key(), fx.tls.server_key()).unwrap();
    assert_refused(
        &fx,
        GOOD,
        &fx.tls.server_cert().display().to_string(),
        &["do not form a usable certificate and key"],
    );
}

#[test]
fn help_lists_config_and_check() {
    let out = proxy::command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("--config"), "{help}");
    assert!(help.contains("check"), "{help}");

    let out = proxy::command().args(["check", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--config"));
}

/// Each worker thread's allowed CPUs, from /proc/PID/task/*/status.
fn worker_cpus(pid: u32) -> Vec<String> {
    let mut cpus = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("regproxy-worke") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(list) = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        {
            cpus.push(list.trim().to_owned());
        }
    }
    cpus.sort();
    cpus
}

/// `pin_workers` left out: a registry on loopback shares the cores, so
/// workers may run on any; set, each worker is on one core of its own.
#[test]
fn workers_are_pinned_unless_the_registry_is_on_this_host() {
    let fx = Fixture::new();
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = ours
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned();
    let local = format!("workers = 2\n{GOOD}");
    let proxy = Proxy::start(&local, fx.dir.path());
    assert_eq!(worker_cpus(proxy.pid()), vec![all.clone(), all.clone()]);
    drop(proxy);

    let pinned = format!("workers = 2\npin_workers = true\n{GOOD}");
    let proxy = Proxy::start(&pinned, fx.dir.path());
    let cpus = worker_cpus(proxy.pid());
    assert_eq!(cpus.len(), 2, "{cpus:?}");
    let single = |c: &String| c.parse::<usize>().is_ok();
    if all.contains(['-', ',']) {
        assert!(
            cpus.iter().all(single) && cpus[0] != cpus[1],
            "{cpus:?} of {all}"
        );
    }
}
