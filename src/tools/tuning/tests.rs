#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::facts::{parse_cpu_list, parse_cpu_mask, parse_ethtool, parse_limit};
use super::*;

fn needs() -> Needs {
    Needs {
        workers: 4,
        listen: "0.0.0.0:5043".parse().unwrap(),
        backlog: 4096,
        max_connections: None,
        splice_pipe_size: 1 << 20,
        wants_io_uring: true,
        upstream_loopback: true,
    }
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn sysctl(root: &Path, name: &str, value: &str) {
    put(
        root,
        &format!("proc/sys/{}", name.replace('.', "/")),
        &format!("{value}\n"),
    );
}

/// The fixture host tuned as tuning/apply leaves it
/// (`tests/fixtures/tuned-host`, shared with `tests/tuning.rs`), copied
/// into `root` for the test to change.
fn good_tree(root: &Path) {
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tuned-host"),
        root,
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn verdict_of(rows: &[Check], setting: &str) -> Verdict {
    rows.iter()
        .find(|c| c.setting == setting)
        .unwrap_or_else(|| panic!("no row {setting} in\n{}", render(rows)))
        .verdict
}

#[test]
fn a_tuned_host_is_all_ok() {
    let dir = tempfile::tempdir().unwrap();
    good_tree(dir.path());
    let facts = HostFacts::read(dir.path());
    assert_eq!(facts.nofile, Some((1_048_576, 1_048_576)));
    assert_eq!(facts.thp.as_deref(), Some("madvise"));
    assert_eq!(facts.cpus, vec![0, 1, 2, 3]);
    assert_eq!(facts.nics.len(), 1, "lo has no device: {:?}", facts.nics);
    assert_eq!(facts.io_uring_works, None);
    let rows = run_all(&facts, &needs());
    assert_eq!(worst(&rows), Verdict::Ok, "\n{}", render(&rows));
    assert!(rows.len() >= 20, "{}", render(&rows));
}

#[test]
fn a_default_distribution_host_slows_but_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    good_tree(root);
    sysctl(root, "net.core.somaxconn", "1024");
    sysctl(root, "net.ipv4.tcp_max_syn_backlog", "512");
    sysctl(root, "net.ipv4.tcp_tw_reuse", "0");
    sysctl(root, "net.ipv4.tcp_migrate_req", "0");
    sysctl(root, "net.ipv4.tcp_rmem", "4096 131072 2097152");
    sysctl(root, "fs.pipe-max-size", "65536");
    sysctl(root, "kernel.io_uring_disabled", "2");
    put(
        root,
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    );
    put(
        root,
        "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave\n",
    );
    put(
        root,
        "proc/self/limits",
        "Max open files            1024                 4096                 files\n",
    );
    for irq in [40, 41, 42, 43] {
        put(root, &format!("proc/irq/{irq}/smp_affinity_list"), "0\n");
    }
    let rows = run_all(&HostFacts::read(root), &needs());
    for s in [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.tcp_migrate_req",
        "net.ipv4.tcp_rmem",
        "fs.pipe-max-size",
        "kernel.io_uring_disabled",
        "transparent_hugepage/enabled",
        "cpufreq scaling_governor",
        "LimitNOFILE (RLIMIT_NOFILE hard)",
        "eth0 IRQ affinity",
    ] {
        assert_eq!(
            verdict_of(&rows, s),
            Verdict::Slows,
            "{s}\n{}",
            render(&rows)
        );
    }
    assert_eq!(verdict_of(&rows, "net.ipv4.tcp_wmem"), Verdict::Ok);
    assert_eq!(worst(&rows), Verdict::Slows, "\n{}", render(&rows));
    let why = &rows
        .iter()
        .find(|c| c.setting == "net.core.somaxconn")
        .unwrap()
        .why;
    assert!(
        why.starts_with("somaxconn 1024 < backlog 4096: bursts beyond 1024"),
        "{why}"
    );
}

#[test]
fn what_breaks_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    good_tree(root);
    // Port 443 without the capability.
    put(
        root,
        "proc/self/status",
        "CapEff:\t0000000000000000\nCpus_allowed_list:\t0-3\n",
    );
    let mut n = needs();
    n.listen = "0.0.0.0:443".parse().unwrap();
    let rows = run_all(&HostFacts::read(root), &n);
    assert_eq!(
        verdict_of(&rows, "net.ipv4.ip_unprivileged_port_start"),
        Verdict::Breaks
    );
    // An explicit max_connections the descriptor limits cannot hold.
    n.listen = "0.0.0.0:5043".parse().unwrap();
    n.max_connections = Some(600_000);
    let rows = run_all(&HostFacts::read(root), &n);
    assert_eq!(
        verdict_of(&rows, "fs.nr_open"),
        Verdict::Breaks,
        "\n{}",
        render(&rows)
    );
    assert_eq!(
        verdict_of(&rows, "LimitNOFILE (RLIMIT_NOFILE hard)"),
        Verdict::Breaks
    );
    assert_eq!(worst(&rows), Verdict::Breaks);
    // The derived default only slows.
    n.max_connections = None;
    put(
        root,
        "proc/self/limits",
        "Max open files            1024                 1024                 files\n",
    );
    let rows = run_all(&HostFacts::read(root), &n);
    assert_eq!(
        verdict_of(&rows, "LimitNOFILE (RLIMIT_NOFILE hard)"),
        Verdict::Slows
    );
    put(
        root,
        "proc/self/limits",
        "Max open files            64                   64                   files\n",
    );
    let rows = run_all(&HostFacts::read(root), &n);
    assert_eq!(
        verdict_of(&rows, "LimitNOFILE (RLIMIT_NOFILE hard)"),
        Verdict::Breaks
    );
}

#[test]
fn memlock_matters_only_before_5_12() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    good_tree(root);
    put(
        root,
        "proc/self/limits",
        "Max open files 1048576 1048576 files\nMax locked memory 65536 65536 bytes\n",
    );
    let rows = run_all(&HostFacts::read(root), &needs());
    assert_eq!(
        verdict_of(&rows, "LimitMEMLOCK (RLIMIT_MEMLOCK)"),
        Verdict::Ok
    );
    sysctl(root, "kernel.osrelease", "5.10.0-28-amd64");
    let rows = run_all(&HostFacts::read(root), &needs());
    assert_eq!(
        verdict_of(&rows, "LimitMEMLOCK (RLIMIT_MEMLOCK)"),
        Verdict::Slows
    );
}

#[test]
fn a_single_queue_nic_wants_rps_and_loopback_has_no_nic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    good_tree(root);
    std::fs::remove_dir_all(root.join("sys/class/net/eth0")).unwrap();
    put(root, "sys/class/net/eth0/device/msi_irqs/40", "msix\n");
    put(root, "proc/irq/40/smp_affinity_list", "1\n");
    put(
        root,
        "sys/class/net/eth0/queues/rx-0/rps_cpus",
        "00000000,00000000\n",
    );
    put(root, "sys/class/net/eth0/queues/tx-0/xps_cpus", "0\n");
    let rows = run_all(&HostFacts::read(root), &needs());
    assert_eq!(
        verdict_of(&rows, "eth0 rps_cpus"),
        Verdict::Slows,
        "\n{}",
        render(&rows)
    );
    put(
        root,
        "sys/class/net/eth0/queues/rx-0/rps_cpus",
        "00000000,0000000f\n",
    );
    let rows = run_all(&HostFacts::read(root), &needs());
    assert_eq!(verdict_of(&rows, "eth0 rps_cpus"), Verdict::Ok);
    let mut n = needs();
    n.listen = "127.0.0.1:5043".parse().unwrap();
    let rows = run_all(&HostFacts::read(root), &n);
    assert_eq!(verdict_of(&rows, "NIC"), Verdict::Ok);
    assert!(!rows.iter().any(|c| c.setting.starts_with("eth0")));
}

#[test]
fn an_empty_tree_gives_ok_rows_that_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run_all(&HostFacts::read(dir.path()), &needs());
    assert_eq!(worst(&rows), Verdict::Ok, "\n{}", render(&rows));
    assert!(rows.iter().any(|c| c.why == "not readable here"));
}

#[test]
fn parsers() {
    assert_eq!(parse_cpu_list("0-2,5, 7-8"), vec![0, 1, 2, 5, 7, 8]);
    assert_eq!(parse_cpu_mask("00000000,00000105"), vec![0, 2, 8]);
    assert_eq!(parse_cpu_mask("0"), Vec::<usize>::new());
    assert_eq!(
        parse_limit(
            "Max open files            1024   unlimited   files",
            "Max open files"
        ),
        Some((1024, u64::MAX))
    );
    let e = parse_ethtool(
        "Features for eth0:\ntcp-segmentation-offload: on\ngeneric-segmentation-offload: off [fixed]\ngeneric-receive-offload: on\nrx-checksumming: on\n",
    );
    assert_eq!(e.len(), 3);
    assert!(!e["generic-segmentation-offload"]);
}

#[test]
fn the_table_lines_up() {
    let rows = vec![Check {
        setting: "net.core.somaxconn".into(),
        current: "1024".into(),
        recommended: "4096".into(),
        why: "because".into(),
        verdict: Verdict::Slows,
    }];
    let t = render(&rows);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines[0].find("current"), lines[1].find("1024"));
    assert!(lines[1].ends_with("slows    because"), "{t}");
}
