//! tuning/: `tuning/check` against fake /proc and /sys trees (verdicts and
//! exit status), `tuning/apply` into a directory (dry run, apply, revert
//! byte for byte, pinned settings), `tuning/apply` for real inside a
//! network namespace read back by `tuning/check`, and the systemd unit
//! through `systemd-analyze verify`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::netns::Netns;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tuning")
        .join(name)
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("REGPROXY", support::proxy::bin())
        .env("NO_COLOR", "1")
        .output()
        .expect("run script")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn put(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn sysctl(root: &Path, name: &str, value: &str) {
    put(
        root,
        &format!("proc/sys/{}", name.replace('.', "/")),
        &format!("{value}\n"),
    );
}

/// A config for a fake host: two workers on port 5043.
fn config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("users"), "").unwrap();
    let path = dir.join("regproxy.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0:5043\"\nworkers = 2\n[auth]\nhtpasswd = \"users\"\n[upstream]\nservers = [\"127.0.0.1:5000\"]\n",
    )
    .unwrap();
    path
}

/// The fixture host tuned the way tuning/apply leaves it
/// (`tests/fixtures/tuned-host`, shared with `src/tuning/tests.rs`),
/// copied into `root` for the test to change.
fn good_tree(root: &Path) {
    support::copy_dir(&support::fixture("tuned-host"), root);
}

/// `(current, verdict)` of each row of check's table.
fn rows(stdout: &[u8]) -> BTreeMap<String, (String, String)> {
    let t = String::from_utf8_lossy(stdout).into_owned();
    let mut lines = t.lines();
    let head = lines.next().unwrap_or_default().to_owned();
    let cur = head.find("current").unwrap();
    let rec = head.find("recommended").unwrap();
    let ver = head.find("verdict").unwrap();
    lines
        .map(|l| {
            (
                l[..cur].trim().to_owned(),
                (
                    l[cur..rec].trim().to_owned(),
                    l[ver..].split_whitespace().next().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn check_reads_a_fake_tree_and_exits_by_the_worst_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let root = dir.path().join("root");
    good_tree(&root);
    let check = |root: &Path| {
        run(Command::new(script("check"))
            .arg("--config")
            .arg(&cfg)
            .arg("--proc-root")
            .arg(root))
    };
    let out = check(&root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = rows(&out.stdout);
    assert!(r.values().all(|(_, v)| v == "ok"), "{}", text(&out));
    assert_eq!(r["net.core.somaxconn"], ("4096".into(), "ok".into()));

    // A stock host: slower, still exit 0.
    sysctl(&root, "net.core.somaxconn", "1024");
    sysctl(&root, "net.ipv4.tcp_migrate_req", "0");
    sysctl(&root, "kernel.io_uring_disabled", "2");
    let out = check(&root);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = rows(&out.stdout);
    assert_eq!(
        r["net.core.somaxconn"],
        ("1024".into(), "slows".into()),
        "{}",
        text(&out)
    );
    assert_eq!(r["net.ipv4.tcp_migrate_req"].1, "slows");
    assert_eq!(r["kernel.io_uring_disabled"].1, "slows");

    // Port 443 without CAP_NET_BIND_SERVICE, and too few descriptors to run.
    put(&root, "proc/self/limits", "Max open files 64 64 files\n");
    let out = check(&root);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        rows(&out.stdout)["LimitNOFILE (RLIMIT_NOFILE hard)"].1,
        "breaks"
    );
}

/// Every file under `root` except the fake proc tree, with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_owned();
            if rel.starts_with("proc") {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn apply_dry_run_apply_and_revert_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let root = dir.path().join("root");
    good_tree(&root);
    // Below the recommendations, so there is something to write.
    sysctl(&root, "net.ipv4.tcp_migrate_req", "0");
    sysctl(&root, "net.ipv4.tcp_max_syn_backlog", "512");
    sysctl(&root, "net.ipv4.tcp_tw_reuse", "2");
    // A file of ours from before (replaced, then restored), a pinned
    // setting elsewhere, and an unrelated file.
    put(
        &root,
        "etc/sysctl.d/90-regproxy.conf",
        "# hand-written long ago\r\nvm.swappiness=10\n",
    );
    put(
        &root,
        "etc/sysctl.d/50-local.conf",
        "net.ipv4.tcp_max_syn_backlog = 512\n",
    );
    put(&root, "etc/hostname", "registry-1\n");
    let before = snapshot(&root);
    let apply = |extra: &[&str]| {
        run(Command::new(script("apply"))
            .arg("--config")
            .arg(&cfg)
            .arg("--root")
            .arg(&root)
            .arg("--proc-root")
            .arg(&root)
            .args(extra))
    };

    let out = apply(&["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let diff = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(diff.contains("+net.ipv4.tcp_migrate_req = 1"), "{diff}");
    assert!(diff.contains("-vm.swappiness=10"), "{diff}");
    assert!(diff.contains("+LimitNOFILE=1048576"), "{diff}");
    assert!(
        !diff.contains("tcp_max_syn_backlog"),
        "pinned setting in the diff:\n{diff}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcp_max_syn_backlog: pinned to 512"));
    assert_eq!(snapshot(&root), before, "--dry-run wrote something");

    let out = apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(root.join("etc/sysctl.d/90-regproxy.conf")).unwrap();
    assert!(
        written.contains("net.ipv4.tcp_migrate_req = 1\n"),
        "{written}"
    );
    assert!(written.contains("net.ipv4.tcp_tw_reuse = 1\n"), "{written}");
    assert!(!written.contains("tcp_max_syn_backlog"), "{written}");
    let dropin =
        std::fs::read_to_string(root.join("etc/systemd/system/regproxy.service.d/90-limits.conf"))
            .unwrap();
    assert!(
        dropin.contains("[Service]\nLimitNOFILE=1048576\n"),
        "{dropin}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/sysctl.d/50-local.conf")).unwrap(),
        before[Path::new("etc/sysctl.d/50-local.conf")]
    );

    // Idempotent.
    let applied = snapshot(&root);
    let out = apply(&[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to change"),
        "{}",
        text(&out)
    );
    assert_eq!(snapshot(&root), applied);

    // --force takes the pinned one too.
    let out = apply(&["--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let forced = std::fs::read_to_string(root.join("etc/sysctl.d/90-regproxy.conf")).unwrap();
    assert!(
        forced.contains("net.ipv4.tcp_max_syn_backlog = 4096\n"),
        "{forced}"
    );

    let out = apply(&["--revert"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(snapshot(&root), before, "revert did not restore every byte");
}

#[test]
fn apply_sets_namespace_sysctls_for_real_and_check_reads_them_back() {
    let Some(ns) = Netns::create("tune") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    ns.sysctl("net.ipv4.tcp_migrate_req", "0");
    ns.sysctl("net.core.somaxconn", "128");
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0");
    let host_somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();

    let out = run(Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(script("apply"))
        .arg("--config")
        .arg(&cfg)
        .arg("--root")
        .arg(&root)
        .args(["--only", "net.", "--load"]));
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(root.join("etc/sysctl.d/90-regproxy.conf")).unwrap();
    assert!(!written.contains("fs."), "--only net. wrote {written}");
    assert_eq!(ns.read_sysctl("net.ipv4.tcp_migrate_req"), "1");
    assert_eq!(ns.read_sysctl("net.core.somaxconn"), "4096");
    assert_eq!(
        ns.read_sysctl("net.ipv4.ip_local_port_range"),
        "10240 65535"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn,
        "the host's own value changed"
    );

    let out = run(Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(script("check"))
        .arg("--config")
        .arg(&cfg));
    let r = rows(&out.stdout);
    assert_eq!(
        r["net.ipv4.tcp_migrate_req"],
        ("1".into(), "ok".into()),
        "{}",
        text(&out)
    );
    assert_eq!(r["net.core.somaxconn"], ("4096".into(), "ok".into()));
    assert_eq!(r["net.ipv4.tcp_tw_reuse"], ("1".into(), "ok".into()));
    assert_eq!(r["net.ipv4.ip_local_port_range"].0, "10240 65535");
}

#[test]
fn the_systemd_units_verify() {
    let Some(analyze) = support::require_tool("systemd-analyze", "systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // verify insists that ExecStart exists: point it at the binary built here.
    let unit = std::fs::read_to_string(script("regproxy.service"))
        .unwrap()
        .replace("/usr/local/bin/regproxy", support::proxy::bin());
    for line in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadOnlyPaths=",
        "ReadWritePaths=",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register",
        "Restart=on-failure",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(line)),
            "unit lacks {line}"
        );
    }
    std::fs::write(dir.path().join("regproxy.service"), unit).unwrap();
    std::fs::copy(
        script("regproxy.socket"),
        dir.path().join("regproxy.socket"),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("regproxy.service"))
        .arg(dir.path().join("regproxy.socket"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("regproxy.s"),
        "systemd-analyze complained:\n{stderr}"
    );
}
