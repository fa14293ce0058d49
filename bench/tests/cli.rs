//! regbench's command line: usage errors exit 2 and name the problem, and
//! `--help` lists every subcommand. (The end-to-end runs against the real
//! registry and regproxy are the root package's `tests/bench.rs`; this file
//! also makes a workspace `cargo test` build the regbench binary they use.)
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn regbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_regbench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_subcommands() {
    let out = regbench(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["origin", "report", "token", "jwt-verify"] {
        assert!(text.contains(sub), "--help does not mention {sub}:\n{text}");
    }
}

#[test]
fn an_unknown_option_is_a_usage_error() {
    let out = regbench(&["--no-such-option"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(!out.stderr.is_empty());
}
