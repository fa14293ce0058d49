//! Loading the configuration file. The core parses and validates it
//! (`regproxy_core::config`, re-exported here); this module reads the file
//! and answers the core's questions about the machine: which files exist,
//! what a host name resolves to, how many cores there are.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::Context;

pub use regproxy_core::config::*;

/// Reads, parses and validates `path`. Referenced files (cert, key,
/// htpasswd) are checked for existence here, and parsed by their owners.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    Ok(Config::parse(path, &text, &SystemHost)?)
}

/// The machine regproxy runs on, as the core's config validation sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String> {
        host_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host_port:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host_port:?} resolves to no address"))
    }

    fn cores(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn is_not_directory(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
    }
}
