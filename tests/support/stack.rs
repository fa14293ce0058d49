//! The stack most end-to-end tests start: the real registry, a TLS
//! regproxy in front of it, and the test's files (htpasswd, certificates,
//! config) in one temporary directory that lives as long as the stack.

use super::http::Endpoint;
use super::proxy::Proxy;
use super::registry::Registry;
use super::tls::Tls;

pub struct TlsStack {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub tls: Tls,
    pub proxy: Proxy,
}

impl TlsStack {
    /// `users` go to `DIR/users` (bcrypt); `auth` is added to `[auth]`,
    /// `tail` (more tables: `[admin]`, `[log]`, access rules) after
    /// `[upstream]`.
    pub fn start(users: &[(&str, &str)], auth: &str, tail: &str) -> TlsStack {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        let tls = Tls::generate(&dir.path().join("tls"));
        super::write_htpasswd(&dir.path().join("users"), users);
        let proxy = Proxy::start(&config(&registry, &tls, auth, tail), dir.path());
        TlsStack {
            dir,
            registry,
            tls,
            proxy,
        }
    }

    /// Where a client reaches the proxy, trusting the stack's CA.
    pub fn ep(&self) -> Endpoint {
        self.tls.endpoint(self.proxy.addr())
    }
}

/// The config [`TlsStack::start`] writes, for a test that rewrites it.
pub fn config(registry: &Registry, tls: &Tls, auth: &str, tail: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
[tls]
cert = "{cert}"
key = "{key}"
[auth]
htpasswd = "users"
{auth}
[upstream]
servers = ["{upstream}"]
{tail}"#,
        cert = tls.server_cert().display(),
        key = tls.server_key().display(),
        upstream = registry.addr(),
    )
}
