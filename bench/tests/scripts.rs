//! The bench's shell scripts and report, checked without running a bench:
//! they parse (`bash -n`), `bench/fleet` answers `--help` and refuses bad
//! options with exit 2 before it touches the network, and its report turns
//! a few hand-written rows into the tables, the targets and a chart; so
//! does `bench/compare`'s report for the Bearer token rows.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bench_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the checks need: when it is missing they fail under `CI`, naming
/// the Debian package, and are skipped elsewhere.
fn have(tool: &str, package: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{tool} is missing: apt-get install {package}"
    );
    eprintln!("skipped: {tool} is missing (Debian package {package})");
    false
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[test]
fn the_scripts_parse() {
    if !have("bash", "bash") {
        return;
    }
    for script in ["fleet", "lib.sh", "compare", "soak"] {
        let out = run(Command::new("bash").arg("-n").arg(bench_dir().join(script)));
        assert!(
            out.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn fleet_answers_help_and_refuses_bad_options() {
    if !have("bash", "bash") || !have("python3", "python3") {
        return;
    }
    let fleet = bench_dir().join("fleet");
    let out = run(Command::new(&fleet).arg("--help"));
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--quick",
        "--reps",
        "--out",
        "--keep",
        "--no-build",
        "--layer-size",
        "--clients",
        "--fronts",
    ] {
        assert!(
            help.contains(option),
            "--help does not mention {option}:\n{help}"
        );
    }
    for (args, says) in [
        (&["--fronts", "direct,squid"][..], "unknown front"),
        (&["--layer-size", "12XB"][..], "--layer-size"),
        (&["--clients", "0"][..], "--clients"),
        (&["--no-such-option"][..], "unknown option"),
    ] {
        let out = run(Command::new(&fleet).args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Rows as bench/fleet writes them: 2 clients, 3 layers of 1 MiB.
const RUNS: &str = "front\tround\tphase\trep\twall_s\tlink_bytes\tserved_bytes\tcpu_s\trss_kib\terrors\tverified\tupstream_gets
direct\t1\tcold\t1\t0.100\t6291456\t6291456\t\t\t0\t3\t6
nginx\t1\tcold\t1\t0.050\t3150000\t6291456\t0.010\t20000\t0\t3\t3
nginx\t1\thot\t1\t0.010\t0\t6291456\t0.001\t20000\t0\t3\t0
nginx\t2\tcold\t1\t0.100\t6300000\t6291456\t0.020\t20000\t0\t3\t6
regproxy\t1\tcold\t1\t0.040\t3150000\t6291456\t0.005\t8000\t0\t3\t3
regproxy\t1\thot\t1\t0.012\t2000\t6291456\t0.001\t8000\t0\t3\t0
regproxy\t2\tcold\t1\t0.040\t3150000\t6291456\t0.005\t8000\t0\t3\t3
nginx\t1\tone\t1\t0.002\t0\t1048576\t0.000\t20000\t0\t0\t0
regproxy\t1\tone\t1\t0.001\t0\t1048576\t0.000\t8000\t0\t0\t0
";

#[test]
fn fleet_report_makes_tables_targets_and_a_chart() {
    if !have("python3", "python3") {
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("regbench-fleet-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("runs.tsv"), RUNS).unwrap();
    let out = run(Command::new("python3")
        .arg(bench_dir().join("fleet-report.py"))
        .args([
            "--runs",
            dir.join("runs.tsv").to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .args([
            "--layer-bytes",
            "1048576",
            "--clients",
            "2",
            "--date",
            "d",
            "--machine",
            "m",
        ])
        .args(["--versions", "v", "--command", "c", "--elapsed", "1"]));
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap_or_default();
    let chart = std::fs::read_to_string(dir.join("chart.svg")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // regproxy's cold link bytes: 3,150,000 / 3 MiB = 1.00×, in both rounds;
    // nginx's round 2 fetched once per repository.
    assert!(md.contains("| regproxy cache | 0.0 | 1.00× | 3 |"), "{md}");
    assert!(
        md.contains("| nginx proxy_cache + lock | 0.1 | 2.00× | 6 |"),
        "{md}"
    );
    assert!(
        md.contains("| round 2, cold: link bytes ≤ 1.02× the image | 1.00× | yes |"),
        "{md}"
    );
    // No TLS rows: that target is not met, and says so.
    assert!(
        md.contains("| hot TLS: ≤ 0.6× nginx's CPU-s/GiB | – (– vs –) | **no** |"),
        "{md}"
    );
    // nginx's hot wall (0.010 s) beat regproxy's (0.012 s): said plainly.
    assert!(
        md.contains("round 1, hot wall: nginx proxy_cache + lock"),
        "{md}"
    );
    assert!(
        chart.starts_with("<svg") && chart.contains("regproxy cache"),
        "{chart}"
    );
}

#[test]
fn compare_answers_help_with_the_token_options() {
    if !have("bash", "bash") {
        return;
    }
    let compare = bench_dir().join("compare");
    let out = run(Command::new(&compare).arg("--help"));
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--tokens-only", "--no-tokens", "--quick", "--small-only"] {
        assert!(
            help.contains(option),
            "--help does not mention {option}:\n{help}"
        );
    }
    let out = run(Command::new(&compare).arg("--no-such-option"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A regbench JSON report as far as compare-report.py reads it.
fn regbench_json(scenario: &str, requests: u64, secs: f64, op_rate: f64) -> String {
    let lat = r#"{"p50":100.0,"p90":200.0,"p99":2000.0,"p99_9":3000.0,"max":4000.0,"mean":150.0}"#;
    format!(
        r#"{{"scenario":"{scenario}","elapsed_s":{secs},"errors":[],"requests":[],
        "total":{{"name":"all requests","ok":{requests},"errors":0,"per_second":{rate},
          "bytes_sent":1000,"bytes_received":1000,"mb_per_second":0.1,"latency_us":{lat}}},
        "operations":[{{"name":"op","ok":10,"errors":0,"per_second":{op_rate},
          "bytes_sent":0,"bytes_received":0,"mb_per_second":0.0,"latency_us":{lat}}}]}}"#,
        rate = requests as f64 / secs,
    )
}

#[test]
fn compare_report_makes_the_token_rows_and_goal() {
    if !have("python3", "python3") {
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("regbench-compare-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = "phase\tscenario\ttarget\trep\tcpu_s\trss_kib\texit\tjson\n".to_owned();
    // 1,000 requests each: CPU-s 0.100 -> 100 µs per request.
    for (i, (phase, scenario, target, cpu, requests, secs)) in [
        ("tokens-registry", "ci", "regproxy", 0.100, 1000, 4.0),
        ("tokens-registry", "ci", "regproxy-bearer", 0.105, 1000, 4.0),
        ("tokens-origin", "ci", "regproxy", 0.020, 1000, 4.0),
        ("tokens-origin", "ci", "regproxy-bearer", 0.024, 1000, 4.0),
        ("tokens", "token", "issue-es256", 1.0, 10_000, 2.0),
    ]
    .into_iter()
    .enumerate()
    {
        let json = dir.join(format!("run-{i}.json"));
        std::fs::write(&json, regbench_json(scenario, requests, secs, 20.0)).unwrap();
        results += &format!(
            "{phase}\t{scenario}\t{target}\t1\t{cpu}\t8192\t0\t{}\n",
            json.display()
        );
    }
    std::fs::write(dir.join("results.tsv"), results).unwrap();
    let jwt = dir.join("jwt-1.json");
    std::fs::write(
        &jwt,
        r#"{"count":100,"rounds":10,"token_bytes":[],"cases":[
        {"name":"ES256, regproxy token","op":"verify","alg":"ES256","path":"regproxy","n":100,
         "median_us":57.3,"p90_us":62.5,"p99_us":70.0,"min_us":55.0,"mean_us":58.0}]}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("jwt.tsv"),
        format!("rep\tjson\n1\t{}\n", jwt.display()),
    )
    .unwrap();
    let out = run(Command::new("python3")
        .arg(bench_dir().join("compare-report.py"))
        .arg("--results")
        .arg(dir.join("results.tsv"))
        .arg("--jwt")
        .arg(dir.join("jwt.tsv"))
        .arg("--out")
        .arg(&dir)
        .args(["--date", "d", "--machine", "m", "--versions", "v"])
        .args(["--command", "c", "--elapsed", "1"]));
    let md = std::fs::read_to_string(dir.join("results.md")).unwrap_or_default();
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        md.contains("| real registry | Bearer tokens (ES256) | 20.0 | 250.0 | 2.00 | 105.0 |"),
        "{md}"
    );
    assert!(
        md.contains("real registry: Bearer / cached Basic, proxy CPU per request 1.050×."),
        "{md}"
    );
    assert!(md.contains("(real registry) | 1.050× | yes |"), "{md}");
    assert!(md.contains("(fast origin) | 1.200× | **no** |"), "{md}");
    // 10,000 tokens in 2 s for 1 CPU-second: 100 µs each, half a core.
    assert!(
        md.contains("| ES256 (P-256) | 5,000 | 100.0 | 10,000 | 0.50 | 2.00 | 0 |"),
        "{md}"
    );
    assert!(
        md.contains("| verify ES256, regproxy token | 57.3 | 62.5 |"),
        "{md}"
    );
    // Only token rows: the goals of the other phases are not claimed.
    assert!(!md.contains("Goals (issue 3)"), "{md}");
    assert!(
        summary.contains("jwt/verify ES256, regproxy token"),
        "{summary}"
    );
}
