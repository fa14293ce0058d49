//! Running a client tool (docker, podman, ctr, tar) with a time limit and
//! its output captured, for the real-client tests.
//!
//! Output goes to files rather than pipes so a chatty tool (docker's
//! progress bars) can never block on a full pipe while we wait for it.

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How one run ended.
#[derive(Debug)]
pub struct Run {
    /// `None`: still running at the time limit (it was then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The command line, for messages.
    pub line: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the command line and its output unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.success(),
            "`{}` failed ({:?}, after {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless it exited non-zero (a time-out is not a refusal).
    pub fn assert_failure(&self) -> &Self {
        assert!(
            self.status.is_some_and(|s| !s.success()),
            "`{}` should have failed ({:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` (stdin closed) for at most `limit`; killed by its PID past it.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    let out = tempfile::tempdir().expect("temp dir for command output");
    run_inner(cmd, &out.path().join("stdout"), limit, true)
}

/// [`run`] with stdout written to `path` (binary content; `Run::stdout`
/// stays empty).
pub fn run_stdout_to(cmd: &mut Command, path: &Path, limit: Duration) -> Run {
    run_inner(cmd, path, limit, false)
}

fn run_inner(cmd: &mut Command, out_path: &Path, limit: Duration, read_stdout: bool) -> Run {
    let line = format!("{cmd:?}");
    let err_dir = tempfile::tempdir().expect("temp dir for command output");
    let err_path = err_dir.path().join("stderr");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {line}: {e}"));
    let status = super::wait_for(limit, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Run {
        status,
        stdout: if read_stdout {
            std::fs::read_to_string(out_path).unwrap_or_default()
        } else {
            String::new()
        },
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: start.elapsed(),
        line,
    }
}

/// Sends `SIGTERM` to `pid`, waits up to `grace` for `/proc/PID` to go (or
/// turn zombie), then sends `SIGKILL`. For daemons we did not spawn as a
/// `Child` (they were started by one and wrote a pidfile).
pub fn stop_pid(pid: u32, grace: Duration) {
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    if !alive() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    if super::wait_for(grace, || (!alive()).then_some(())).is_none() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status();
        super::wait_for(Duration::from_secs(5), || (!alive()).then_some(()));
    }
}

/// Sends `sig` (`STOP`, `CONT`, …) to `pid`. `STOP` pauses a process, which
/// keeps its sockets but answers nothing, as a hung server does.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// The first line of `cmd`'s stdout (e.g. `tool --version`), or `None` if
/// it cannot run (not installed, or it fails).
pub fn version_line(cmd: &mut Command) -> Option<String> {
    let program = Path::new(cmd.get_program());
    if program.components().count() == 1 {
        super::require::find_tool(&program.to_string_lossy())?;
    }
    let r = run(cmd, Duration::from_secs(20));
    r.success()
        .then(|| r.stdout.lines().next().unwrap_or("").trim().to_owned())
}
