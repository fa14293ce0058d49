//! Authentication and authorization, the pure half: Basic credentials from
//! the request ([`basic`]), the user database ([`htpasswd`]) and groups
//! ([`groups`]), the brute-force limiter ([`limiter`]), and the access rules
//! ([`acl`]). The verified-credential cache that keeps bcrypt off the event
//! loops lives in the proxy (`regproxy::auth::cache`).

use std::fmt;

pub mod acl;
pub mod basic;
pub mod groups;
pub mod htpasswd;
pub mod jwt;
pub mod limiter;
pub mod oidc;
#[cfg(test)]
mod testkeys;
pub mod token;

/// One rejected line of an htpasswd or htgroup file. `reason` is a fixed
/// message that copies nothing from the line, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based, as editors count.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for LineError {}
