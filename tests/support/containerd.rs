//! A private containerd (Debian's `containerd`) for one test, driven with
//! `ctr`.
//!
//! Its own config, root, state and sockets in a short temp dir under /tmp;
//! the CRI plugin is off (it wants CNI and a network). Dropping
//! [`Containerd`] stops it by its PID and removes the directories.
//!
//! Registry access goes through a `--hosts-dir`: ctr 1.6 speaks plain HTTP
//! to any `localhost` registry unless a `HOST:PORT/hosts.toml` there names
//! an `https://` server (and its CA).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(20);

pub struct Containerd {
    child: Option<Child>,
    pid: u32,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd. `Err` says why it can't run here (the caller
    /// skips).
    pub fn start() -> Result<Containerd, String> {
        if super::cmd::version_line(Command::new("containerd").arg("--version")).is_none() {
            return Err("containerd is not installed (apt-get install containerd)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("rpc")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("c.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(d.join("containerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn containerd: {e}"))?;
        let mut daemon = Containerd {
            pid: child.id(),
            child: Some(child),
            dir,
        };
        let up = super::wait_for(START_TIMEOUT, || {
            if let Some(Ok(Some(status))) = daemon.child.as_mut().map(Child::try_wait) {
                return Some(Err(format!("containerd exited: {status}")));
            }
            let r = super::cmd::run(daemon.ctr().arg("version"), Duration::from_secs(10));
            r.success().then_some(Ok(()))
        });
        match up {
            Some(Ok(())) => Ok(daemon),
            Some(Err(e)) => Err(format!("{e}\n{}", daemon.log_text())),
            None => Err(format!(
                "containerd did not answer within {START_TIMEOUT:?}\n{}",
                daemon.log_text()
            )),
        }
    }

    /// A `ctr` command for this daemon.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.path().join("c.sock"))
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE");
        cmd
    }

    /// A hosts dir `name` for `--hosts-dir` with `HOST:PORT/hosts.toml` for
    /// each `(host_port, scheme)`; `https` entries trust `ca` if given (else
    /// the system roots).
    pub fn hosts_dir(&self, name: &str, entries: &[(&str, &str)], ca: Option<&Path>) -> PathBuf {
        let root = self.dir.path().join(name);
        for (host_port, scheme) in entries {
            let dir = root.join(host_port);
            std::fs::create_dir_all(&dir).expect("create hosts.d entry");
            let mut toml = format!(
                "server = \"{scheme}://{host_port}\"\n[host.\"{scheme}://{host_port}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n"
            );
            if let (Some(ca), "https") = (ca, *scheme) {
                std::fs::copy(ca, dir.join("ca.crt")).expect("copy CA into hosts dir");
                toml.push_str(&format!("  ca = \"{}\"\n", dir.join("ca.crt").display()));
            }
            std::fs::write(dir.join("hosts.toml"), toml).expect("write hosts.toml");
        }
        root
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// SIGTERM by PID, SIGKILL after a grace period. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::cmd::stop_pid(self.pid, STOP_GRACE);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}
