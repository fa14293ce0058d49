//! What a test needs from the machine (a tool, root, a kernel setting),
//! and what happens when it is not there: under CI (`CI` set) the test
//! fails and names the Debian package or the fix; elsewhere it prints a
//! loud `SKIP:` line and the caller returns, so a developer without docker
//! can still run the rest. A test never turns green by not running in CI.

use std::path::{Path, PathBuf};

/// Whether this run is CI's: `CI` is set to anything but empty, `0` or
/// `false` (CI services set `CI=true`; `.ci/run` runs with it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The test cannot run here because of `why`; `fix` says what makes it run
/// (`apt-get install PACKAGE`, say). Under CI this panics with both;
/// otherwise it prints a `SKIP:` line and the caller returns.
#[track_caller]
pub fn skip_unless_ci(why: &str, fix: &str) {
    if in_ci() {
        panic!("CI must run this test, and it cannot: {why}. Fix: {fix}");
    }
    eprintln!("SKIP: {why}. Fix: {fix} (under CI=true this test fails)");
}

/// The path of `tool`, from Debian's `package`: `None` after
/// [`skip_unless_ci`] when it is not installed.
#[track_caller]
pub fn require_tool(tool: &str, package: &str) -> Option<PathBuf> {
    let found = find_tool(tool);
    if found.is_none() {
        skip_unless_ci(
            &format!("`{tool}` is not installed (not on PATH)"),
            &format!("apt-get install {package} (or scripts/setup-deps)"),
        );
    }
    found
}

/// `tool` in the directories of `PATH`; for a user other than root also in
/// the sbin directories, where Debian puts daemons (nginx, haproxy) and
/// which a normal user's PATH lacks. Root's PATH has them, so for root PATH
/// alone decides (a test can hide a tool by narrowing PATH).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !running_as_root() {
        dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    }
    dirs.into_iter()
        .map(|d| d.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the test runs as root (effective UID 0, from /proc).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
