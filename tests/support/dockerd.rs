//! A private Docker daemon for one test (Debian's `docker.io`), and the
//! CA file docker reads from `/etc/docker/certs.d/HOST:PORT/ca.crt`.
//!
//! The daemon runs with its own data root, exec root, socket and pidfile in
//! a short temp dir under /tmp (unix socket paths are limited to 108 bytes,
//! and containerd's socket lives under the exec root), no bridge, no
//! iptables, and the `vfs` storage driver, so it needs no overlay mount and
//! leaves the host's networking alone. Dropping [`Dockerd`] stops it by its
//! PID (SIGTERM, then SIGKILL), then the containerd it started (pid from
//! its exec root), and removes the directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// How long the daemon may take to answer `docker version`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd daemon may take to exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Dockerd {
    child: Option<Child>,
    pid: u32,
    dir: TempDir,
}

impl Dockerd {
    /// Starts `dockerd` trusting `insecure` registries (`HOST:PORT`) over
    /// plain HTTP. `Err` says why docker can't run here (the caller skips).
    pub fn start(insecure: &[String]) -> Result<Dockerd, String> {
        if super::cmd::version_line(Command::new("dockerd").arg("--version")).is_none() {
            return Err("dockerd is not installed (apt-get install docker.io)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("rpd")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("x"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("d.sock").display()))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--storage-driver",
                "vfs",
            ]);
        for reg in insecure {
            cmd.arg("--insecure-registry").arg(reg);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn dockerd: {e}"))?;
        let mut daemon = Dockerd {
            pid: child.id(),
            child: Some(child),
            dir,
        };
        let up = super::wait_for(START_TIMEOUT, || {
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(Child::try_wait) {
                return Some(Err(format!("dockerd exited: {status}")));
            }
            let r = super::cmd::run(
                daemon
                    .docker(None)
                    .args(["version", "--format", "{{.Server.Version}}"]),
                Duration::from_secs(10),
            );
            r.success().then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => Ok(daemon),
            Some(Err(e)) => Err(format!("{e}\n{}", daemon.log_text())),
            None => Err(format!(
                "dockerd did not answer within {START_TIMEOUT:?}\n{}",
                daemon.log_text()
            )),
        }
    }

    /// A `docker` client command for this daemon; `config` is the client
    /// config dir (`--config`, where `docker login` keeps credentials).
    /// Images are built with the classic builder (`DOCKER_BUILDKIT=0`): no
    /// BuildKit daemon, no network.
    pub fn docker(&self, config: Option<&Path>) -> Command {
        let mut cmd = Command::new("docker");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("-H")
            .arg(format!(
                "unix://{}",
                self.dir.path().join("d.sock").display()
            ))
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `client/server` versions, e.g. `28.2.2/20.10.24+dfsg1`.
    pub fn versions(&self) -> String {
        let r = super::cmd::run(
            self.docker(None).args([
                "version",
                "--format",
                "{{.Client.Version}}/{{.Server.Version}}",
            ]),
            Duration::from_secs(20),
        );
        r.stdout.trim().to_owned()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Stops the daemon (SIGTERM by PID, SIGKILL after a grace period) and
    /// then the containerd it spawned, if that outlived it. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        super::cmd::stop_pid(self.pid, STOP_GRACE);
        let _ = child.kill();
        let _ = child.wait();
        // dockerd starts its own containerd when none is configured; its
        // PID is in the exec root. Only ours: the command line must name
        // our exec root.
        let exec_root = self.dir.path().join("x");
        let pidfile = exec_root.join("containerd/containerd.pid");
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*exec_root.to_string_lossy());
            if ours {
                super::cmd::stop_pid(pid, STOP_GRACE);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `/etc/docker/certs.d/HOST:PORT/ca.crt`, removed (with its directory)
/// on drop, also when the test panics.
pub struct CertsD {
    dir: PathBuf,
}

impl CertsD {
    /// Installs `ca` as the CA docker trusts for `host_port`.
    pub fn install(host_port: &str, ca: &Path) -> CertsD {
        let dir = Path::new("/etc/docker/certs.d").join(host_port);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let guard = CertsD { dir };
        std::fs::copy(ca, guard.dir.join("ca.crt")).expect("copy CA into certs.d");
        guard
    }
}

impl Drop for CertsD {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
