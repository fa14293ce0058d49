//! Network namespaces a test makes (`ip netns add`) and deletes on drop,
//! so per-namespace `net.*` sysctls can be set for real without touching
//! the host. [`Netns::enter`] moves the calling thread in: sockets it opens
//! and processes it spawns afterwards live in the namespace (each test runs
//! on a thread of its own, so other tests are unaffected).

use std::process::Command;

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `regproxy-<tag>-<pid>` with its loopback up; `None` where
    /// `ip netns` cannot run ([`super::skip_unless_ci`]: a failure under CI).
    pub fn create(tag: &str) -> Option<Netns> {
        let name = format!("regproxy-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        let added = Command::new("ip").args(["netns", "add", &name]).output();
        if !matches!(&added, Ok(o) if o.status.success()) {
            super::skip_unless_ci(
                &format!("`ip netns add {name}` failed: {added:?}"),
                "run as root, with iproute2 (apt-get install iproute2)",
            );
            return None;
        }
        let ns = Netns { name };
        assert!(ns.exec(&["ip", "link", "set", "lo", "up"]).status.success());
        Some(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `cmd` inside the namespace with `ip netns exec`.
    pub fn exec(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("run ip netns exec")
    }

    /// Sets a per-namespace sysctl.
    pub fn sysctl(&self, name: &str, value: &str) {
        let out = self.exec(&["sysctl", "-qw", &format!("{name}={value}")]);
        assert!(out.status.success(), "sysctl {name}={value}: {out:?}");
    }

    /// Reads a sysctl as seen inside the namespace.
    pub fn read_sysctl(&self, name: &str) -> String {
        let out = self.exec(&["sysctl", "-n", name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
