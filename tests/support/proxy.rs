//! The `regproxy` binary under test.
//!
//! [`Proxy::start`] writes the given TOML to `WORKDIR/regproxy.toml`, runs
//! `regproxy --config WORKDIR/regproxy.toml` with stdout (the access log)
//! captured to `WORKDIR/regproxy.stdout` and stderr (the tracing log) to
//! `WORKDIR/regproxy.stderr`, and waits for the line containing `listening`
//! with `addr=IP:PORT` (and, when an admin listener is configured,
//! `admin_addr=IP:PORT`). Relative paths in the TOML resolve against WORKDIR.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The top-level key that puts the workers on the epoll fallback instead of
/// io_uring: the tests that cover both drivers run once with it.
pub const EPOLL: &str = "driver = \"epoll\"";

/// Path of the binary Cargo built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_regproxy")
}

/// A `Command` for the binary with colours off and stdin closed; for runs
/// that are not a long-lived server (`regproxy check`, bad configs, `--help`).
pub fn command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    cmd
}

/// Why [`Proxy::try_start`] found no listening line.
#[derive(Debug)]
pub struct StartFailure {
    /// `None`: still running at the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    pub stderr: String,
    pub stdout: String,
}

pub struct Proxy {
    child: Option<Child>,
    pid: u32,
    exit: Option<ExitStatus>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    workdir: PathBuf,
}

impl Proxy {
    /// Starts the proxy and waits for its listening line; panics with its
    /// stderr if it exits or stays silent for 30 s.
    pub fn start(config_toml: &str, workdir: &Path) -> Proxy {
        Self::start_wrapped(config_toml, workdir, &[])
    }

    /// [`Proxy::start`] run through `wrapper` ([`Proxy::try_start_wrapped`]).
    pub fn start_wrapped(config_toml: &str, workdir: &Path, wrapper: &[&str]) -> Proxy {
        match Self::try_start_wrapped(config_toml, workdir, wrapper, &[], &[]) {
            Ok(p) => p,
            Err(f) => panic!(
                "regproxy did not start (exit: {:?})\n--- stderr ---\n{}\n--- stdout ---\n{}",
                f.status, f.stderr, f.stdout
            ),
        }
    }

    /// Like [`Proxy::start`] but returns how it failed, for tests that expect
    /// a bad configuration to be refused.
    pub fn try_start(config_toml: &str, workdir: &Path) -> Result<Proxy, StartFailure> {
        Self::try_start_with(config_toml, workdir, &[], &[])
    }

    /// [`Proxy::try_start`] with extra arguments after `--config FILE` and
    /// extra environment variables.
    pub fn try_start_with(
        config_toml: &str,
        workdir: &Path,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Proxy, StartFailure> {
        Self::try_start_wrapped(config_toml, workdir, &[], extra_args, envs)
    }

    /// [`Proxy::try_start_with`] run through `wrapper` (a command that
    /// execs its arguments, e.g. `prlimit --nofile=1024:1024`), so the
    /// process keeps the pid the wrapper started with.
    pub fn try_start_wrapped(
        config_toml: &str,
        workdir: &Path,
        wrapper: &[&str],
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Proxy, StartFailure> {
        std::fs::create_dir_all(workdir).expect("create proxy workdir");
        let config = workdir.join("regproxy.toml");
        std::fs::write(&config, config_toml).expect("write regproxy.toml");
        let stdout = File::create(workdir.join("regproxy.stdout")).expect("create stdout file");
        let stderr = File::create(workdir.join("regproxy.stderr")).expect("create stderr file");
        let mut cmd = match wrapper.split_first() {
            None => command(),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args)
                    .arg(bin())
                    .env("NO_COLOR", "1")
                    .stdin(Stdio::null());
                cmd
            }
        };
        cmd.arg("--config")
            .arg(&config)
            .args(extra_args)
            .current_dir(workdir)
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn regproxy");
        let mut proxy = Proxy {
            pid: child.id(),
            child: Some(child),
            exit: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            workdir: workdir.to_owned(),
        };
        // Listening (logged), or exited.
        let started = super::wait_for(START_TIMEOUT, || {
            match parse_listening(super::complete_lines(&proxy.stderr_text())) {
                Some(listening) => Some(Ok(listening)),
                None => proxy.try_wait().map(Err),
            }
        });
        if let Some(Ok((addr, admin))) = started {
            proxy.addr = addr;
            proxy.admin_addr = admin;
            return Ok(proxy);
        }
        let status = proxy.try_wait();
        proxy.kill();
        // Anything logged between the last poll and the exit.
        Err(StartFailure {
            status,
            stderr: proxy.stderr_text(),
            stdout: proxy.access_log_text(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener; panics if the listening line had no `admin_addr=`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
            .expect("regproxy logged no admin_addr= (is [admin] configured?)")
    }

    /// Counter `name` from the admin endpoint's `/metrics`.
    pub fn metric(&self, name: &str) -> u64 {
        let text = super::http::get(self.admin_addr(), "/metrics", None, &[])
            .expect("scrape /metrics")
            .body_text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    pub fn admin_addr_opt(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    pub fn config_path(&self) -> PathBuf {
        self.workdir.join("regproxy.toml")
    }

    /// Peak resident memory (`VmHWM`) in KiB; panics once it has exited.
    pub fn vm_hwm_kib(&self) -> u64 {
        super::mem::vm_hwm_kib(self.pid).expect("read VmHWM of regproxy (has it exited?)")
    }

    /// Current resident memory (`VmRSS`) in KiB.
    pub fn vm_rss_kib(&self) -> u64 {
        super::mem::vm_rss_kib(self.pid).expect("read VmRSS of regproxy (has it exited?)")
    }

    /// `VmRSS` in KiB once it holds still: within 0.5% for 500 ms, five of
    /// the workers' 100 ms sweeps, so a heap trim due after a wave of
    /// closes has run. After 10 s without that, the value then (said on
    /// stderr).
    pub fn settled_rss_kib(&self) -> u64 {
        const STILL: Duration = Duration::from_millis(500);
        let mut held: Option<(u64, Instant)> = None;
        let settled = super::wait_for(Duration::from_secs(10), || {
            let now = self.vm_rss_kib();
            match held {
                Some((kib, since)) if now.abs_diff(kib) <= kib / 200 => {
                    (since.elapsed() >= STILL).then_some(now)
                }
                _ => {
                    held = Some((now, Instant::now()));
                    None
                }
            }
        });
        settled.unwrap_or_else(|| {
            let now = self.vm_rss_kib();
            eprintln!("regproxy's RSS did not settle within 10 s; {now} KiB now");
            now
        })
    }

    /// Connections in the accept queues of its listening sockets: made by a
    /// client, not yet accepted by a worker.
    pub fn accept_queue_len(&self) -> u32 {
        super::tcp::sockets()
            .iter()
            .filter(|s| s.state == super::tcp::LISTEN && s.local == self.addr)
            .map(|s| s.rx_queue)
            .sum()
    }

    /// Resets `VmHWM` to the current RSS so a later [`Proxy::vm_hwm_kib`]
    /// measures only what happened in between.
    pub fn reset_peak_memory(&self) {
        super::mem::reset_peak(self.pid).expect("reset VmHWM via /proc/PID/clear_refs");
    }

    /// The tracing log so far, ANSI colours removed.
    pub fn stderr_text(&self) -> String {
        super::strip_ansi(
            &std::fs::read_to_string(self.workdir.join("regproxy.stderr")).unwrap_or_default(),
        )
    }

    /// The I/O driver each worker logged at start (`io_uring` or `epoll`).
    pub fn drivers(&self) -> Vec<String> {
        self.stderr_text()
            .lines()
            .filter(|l| l.contains("worker started"))
            .filter_map(|l| {
                let at = l.find("driver=")? + "driver=".len();
                l[at..].split_whitespace().next().map(str::to_owned)
            })
            .collect()
    }

    /// Every worker runs `want` (`io_uring` or `epoll`). Where the kernel
    /// refuses io_uring, a default config falls back to epoll: under CI
    /// that fails (the io_uring half of a both-drivers test would not have
    /// run); elsewhere it is said on stderr.
    pub fn assert_driver(&self, want: &str) {
        let got = self.drivers();
        assert!(
            !got.is_empty(),
            "no worker logged its driver:\n{}",
            self.stderr_text()
        );
        if got.iter().all(|d| d == want) {
            return;
        }
        if want == "io_uring" && !super::require::in_ci() {
            eprintln!("NOTE: io_uring is unavailable here, the workers ran {got:?}");
            return;
        }
        panic!("workers ran {got:?}, not {want}:\n{}", self.stderr_text());
    }

    /// The access log (stdout) so far.
    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(self.workdir.join("regproxy.stdout")).unwrap_or_default()
    }

    pub fn access_log_lines(&self) -> Vec<String> {
        self.access_log_text().lines().map(str::to_owned).collect()
    }

    /// Waits until stderr contains `needle`; returns whether it did.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        super::wait_for(timeout, || {
            self.stderr_text().contains(needle).then_some(())
        })
        .is_some()
    }

    /// Waits until the access log has at least `n` lines; returns them.
    pub fn wait_for_access_lines(&self, n: usize, timeout: Duration) -> Vec<String> {
        super::wait_for(timeout, || {
            let lines = self.access_log_lines();
            (lines.len() >= n).then_some(lines)
        })
        .unwrap_or_else(|| self.access_log_lines())
    }

    /// Sends a signal by name (`"TERM"`, `"INT"`, `"HUP"`, `"USR1"`, ...)
    /// with `kill -SIG PID`; does nothing once the process has been reaped.
    pub fn send_signal(&mut self, sig: &str) {
        if self.try_wait().is_some() {
            return;
        }
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// Exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                    self.child = None;
                }
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_for(timeout, || self.try_wait())
    }

    /// SIGKILL by PID and reap. Idempotent; also done on drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.exit = Some(status);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Finds the first line containing `listening` with an `addr=` field, e.g.
/// `INFO regproxy: listening addr=127.0.0.1:43211 workers=2 tls=on admin_addr=127.0.0.1:43212`.
pub fn parse_listening(log: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    log.lines()
        .filter(|l| l.contains("listening"))
        .find_map(|line| {
            let line = super::strip_ansi(line);
            let field = |key: &str| -> Option<SocketAddr> {
                line.split_whitespace().find_map(|tok| {
                    let (k, v) = tok.split_once('=')?;
                    (k == key).then(|| v.trim_matches(|c| c == '"' || c == ',').parse().ok())?
                })
            };
            Some((field("addr")?, field("admin_addr")))
        })
}
