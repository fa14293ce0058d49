//! The stacks most end-to-end tests start: the real registry with a
//! regproxy in front of it, TLS ([`TlsStack`]) or plain with an admin port
//! ([`PlainStack`]), and the test's files (htpasswd, certificates, config)
//! in one temporary directory that lives as long as the stack.

use std::net::SocketAddr;

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
        Self::start_top("", users, auth, tail)
    }

    /// [`TlsStack::start`] with `top` before the first table (top-level
    /// keys, such as [`super::proxy::EPOLL`]).
    pub fn start_top(top: &str, users: &[(&str, &str)], auth: &str, tail: &str) -> TlsStack {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        let tls = Tls::generate(&dir.path().join("tls"));
        super::write_htpasswd(&dir.path().join("users"), users);
        let config = config_top(&registry, &tls, top, auth, tail);
        let proxy = Proxy::start(&config, dir.path());
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

/// The real registry behind a plain regproxy (no `[tls]`: TLS ends at a
/// load balancer, or the test does not need it) with an admin port.
pub struct PlainStack {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub proxy: Proxy,
}

impl PlainStack {
    /// `htpasswd` is the text of `DIR/users` ([`super::htpasswd_text`]);
    /// `top` goes before the first table, `auth` into `[auth]`, `admin` into
    /// `[admin]` (or more tables after it).
    pub fn start(htpasswd: &str, top: &str, auth: &str, admin: &str) -> PlainStack {
        Self::start_wrapped(htpasswd, top, auth, admin, &[])
    }

    /// [`PlainStack::start`] with regproxy run under `wrapper` (`prlimit`,
    /// say: [`Proxy::try_start_wrapped`]).
    pub fn start_wrapped(
        htpasswd: &str,
        top: &str,
        auth: &str,
        admin: &str,
        wrapper: &[&str],
    ) -> PlainStack {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start();
        std::fs::write(dir.path().join("users"), htpasswd).expect("write htpasswd file");
        let config = plain_config(registry.addr(), top, auth, admin);
        let proxy = Proxy::start_wrapped(&config, dir.path(), wrapper);
        PlainStack {
            dir,
            registry,
            proxy,
        }
    }
}

/// The config [`TlsStack::start`] writes, for a test that rewrites it.
pub fn config(registry: &Registry, tls: &Tls, auth: &str, tail: &str) -> String {
    config_top(registry, tls, "", auth, tail)
}

fn config_top(registry: &Registry, tls: &Tls, top: &str, auth: &str, tail: &str) -> String {
    let top = format!(
        "{top}\n[tls]\ncert = \"{}\"\nkey = \"{}\"",
        tls.server_cert().display(),
        tls.server_key().display()
    );
    compose(registry.addr(), &top, auth, tail)
}

/// The config [`PlainStack::start`] writes, in front of `upstream` (the
/// registry, a fake origin, or a port nothing answers on).
pub fn plain_config(upstream: SocketAddr, top: &str, auth: &str, admin: &str) -> String {
    compose(
        upstream,
        top,
        auth,
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{admin}"),
    )
}

/// A listener on a free port, `top`, `[auth]` with `DIR/users` and `auth`,
/// `[upstream]` with `upstream`, then `tail`.
fn compose(upstream: SocketAddr, top: &str, auth: &str, tail: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
{top}
[auth]
htpasswd = "users"
{auth}
[upstream]
servers = ["{upstream}"]
{tail}"#
    )
}
