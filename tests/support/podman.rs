//! podman (Debian's `podman`) with all of its state in a temp dir.
//!
//! Nothing of the host's container setup is read or written: `--root`,
//! `--runroot` and `--tmpdir` point into the temp dir, the vfs driver needs
//! no overlay mount, and the configuration files podman would read from
//! /etc/containers are replaced through its environment variables
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`,
//! `CONTAINERS_REGISTRIES_CONF`) and `--signature-policy`. `TMPDIR` too:
//! podman spools blobs to /var/tmp by default. podman has no daemon; the
//! temp dir goes on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

pub struct Podman {
    dir: TempDir,
}

impl Podman {
    /// Writes the private configuration. `Err` says why podman can't run
    /// here (the caller skips).
    pub fn new() -> Result<Podman, String> {
        if super::cmd::version_line(Command::new("podman").arg("--version")).is_none() {
            return Err("podman is not installed (apt-get install podman)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("rpp")
            .tempdir_in("/tmp")
            .map_err(|e| format!("temp dir: {e}"))?;
        let p = Podman { dir };
        for sub in ["root", "run", "tmp", "certs"] {
            std::fs::create_dir_all(p.path(sub)).map_err(|e| e.to_string())?;
        }
        let write = |name: &str, text: String| {
            std::fs::write(p.path(name), text).map_err(|e| format!("write {name}: {e}"))
        };
        write(
            "storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                p.path("run").display(),
                p.path("root").display()
            ),
        )?;
        write(
            "containers.conf",
            "[engine]\nevents_logger = \"file\"\ncgroup_manager = \"cgroupfs\"\n".into(),
        )?;
        write(
            "registries.conf",
            "unqualified-search-registries = []\n".into(),
        )?;
        write(
            "policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#.into(),
        )?;
        let info = super::cmd::run(p.podman().arg("info"), Duration::from_secs(60));
        if !info.success() {
            return Err(format!("`podman info` fails:\n{}", info.output()));
        }
        Ok(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `podman` command with the private root, run root, driver and
    /// configuration.
    pub fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("run"))
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ])
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .env("TMPDIR", self.path("tmp"));
        cmd
    }

    /// `--signature-policy FILE`, for push, pull and build.
    pub fn policy_args(&self) -> [String; 2] {
        [
            "--signature-policy".into(),
            self.path("policy.json").display().to_string(),
        ]
    }

    /// A directory holding only `ca`, for `--cert-dir` (podman reads the
    /// `*.crt` files in it; a `certs.d/HOST:PORT` tree is not searched).
    pub fn cert_dir(&self, ca: &Path) -> PathBuf {
        let dir = self.path("certs");
        std::fs::copy(ca, dir.join("ca.crt")).expect("copy CA for podman");
        dir
    }
}
