//! The configuration file: parsed once at start-up (and by `regproxy check`),
//! validated whole, and turned into plain values the workers copy.
//!
//! Every mistake is reported as `FILE:LINE:COLUMN: what is wrong`, so an
//! operator moving off nginx can fix the file without reading our source.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::auth::acl::Rule;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; relative paths inside it are resolved against its folder.
    pub path: PathBuf,
    pub listen: SocketAddr,
    /// Worker threads, already resolved from `workers = 0` to the core count.
    pub workers: usize,
    pub tls: Option<TlsFiles>,
    pub auth: AuthConfig,
    pub upstream: UpstreamConfig,
    pub forwarding: ForwardingConfig,
    pub client: ClientConfig,
    pub access_log: AccessLogTarget,
    pub admin_listen: Option<SocketAddr>,
    pub shutdown_timeout: Duration,
    pub driver: Driver,
    /// Groups declared in the config (`[groups]`), merged with `auth.groups`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// `[[access]]` rules, validated, in order; `None`: `push_users` decides.
    pub access: Option<Vec<Rule>>,
}

/// Which I/O driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// io_uring where the kernel allows it, else epoll (logged).
    Auto,
    /// Always epoll: for kernels or sandboxes where io_uring misbehaves.
    Epoll,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub realm: String,
    pub htpasswd: PathBuf,
    /// `None`: every valid user may push.
    pub push_users: Option<Vec<String>>,
    pub cache_ttl: Duration,
    /// Threads that run bcrypt, shared by all workers.
    pub hash_threads: usize,
    /// Cache misses allowed to wait for a hash thread before new ones get 503.
    pub hash_queue: usize,
    /// How often the htpasswd file's mtime is checked.
    pub reload_interval: Duration,
    /// An Apache htgroup file, if any.
    pub groups_file: Option<PathBuf>,
    /// Failed checks allowed per client address and per user name within
    /// `failure_window` before further checks get 429 (0: no limit).
    pub max_failures: u32,
    pub failure_window: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub servers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_idle_per_worker: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardingConfig {
    pub trust_forwarded_headers: bool,
    pub forward_authorization: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

// === raw file shape ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Spanned<String>,
    workers: Option<Spanned<usize>>,
    tls: Option<RawTls>,
    auth: RawAuth,
    upstream: RawUpstream,
    #[serde(default)]
    forwarding: RawForwarding,
    #[serde(default)]
    client: RawClient,
    #[serde(default)]
    log: RawLog,
    admin: Option<RawAdmin>,
    #[serde(default = "default_shutdown_timeout", deserialize_with = "duration")]
    shutdown_timeout: Duration,
    #[serde(default = "default_driver")]
    driver: Driver,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    access: Option<Vec<Spanned<RawRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    repository: String,
    who: Vec<String>,
    actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default = "default_realm")]
    realm: Spanned<String>,
    htpasswd: Spanned<PathBuf>,
    push_users: Option<Vec<String>>,
    #[serde(default = "default_cache_ttl", deserialize_with = "duration")]
    cache_ttl: Duration,
    #[serde(default)]
    hash_threads: usize,
    #[serde(default = "default_hash_queue")]
    hash_queue: usize,
    #[serde(default = "default_reload_interval", deserialize_with = "duration")]
    reload_interval: Duration,
    groups: Option<Spanned<PathBuf>>,
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    #[serde(default = "default_failure_window", deserialize_with = "duration")]
    failure_window: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    servers: Spanned<Vec<String>>,
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    connect_timeout: Duration,
    #[serde(default = "default_read_timeout", deserialize_with = "duration")]
    read_timeout: Duration,
    #[serde(default = "default_max_idle")]
    max_idle_per_worker: usize,
    #[serde(default = "default_upstream_idle", deserialize_with = "duration")]
    idle_timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawForwarding {
    #[serde(default)]
    trust_forwarded_headers: bool,
    #[serde(default)]
    forward_authorization: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    #[serde(default = "default_header_timeout", deserialize_with = "duration")]
    header_timeout: Duration,
    #[serde(default = "default_client_idle", deserialize_with = "duration")]
    idle_timeout: Duration,
    #[serde(default = "default_body_timeout", deserialize_with = "duration")]
    body_timeout: Duration,
}

impl Default for RawClient {
    fn default() -> Self {
        Self {
            header_timeout: default_header_timeout(),
            idle_timeout: default_client_idle(),
            body_timeout: default_body_timeout(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_access_log")]
    access: Spanned<String>,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            access: Spanned::new(0..0, default_access_log().into_inner()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Spanned<String>,
}

// nginx's defaults where nginx has one (client_header_timeout 60s,
// keepalive_timeout 75s); the recipe's proxy_read_timeout 900 for reads.
fn default_realm() -> Spanned<String> {
    Spanned::new(0..0, "Registry realm".to_owned())
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_hash_queue() -> usize {
    256
}
fn default_reload_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(900)
}
fn default_max_idle() -> usize {
    64
}
fn default_upstream_idle() -> Duration {
    Duration::from_secs(60)
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_client_idle() -> Duration {
    Duration::from_secs(75)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(900)
}
fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_failures() -> u32 {
    10
}
fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}
fn default_driver() -> Driver {
    Driver::Auto
}
fn default_access_log() -> Spanned<String> {
    Spanned::new(0..0, "stdout".to_owned())
}

/// Durations are written as humans write them: "5s", "900s", "5m", "1h 30m".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write it like \"5s\", \"15m\" or \"1h\""
        ))
    })
}

// === loading ===

/// A located problem in the config file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates `path`. Referenced files (cert, key,
    /// htpasswd) are checked for existence here, and parsed by their owners.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Ok(Self::parse(path, &text)?)
    }

    /// Parses config text as if it came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let located = |span: Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            ConfigError {
                file: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            located(span, e.message().trim_end().to_owned())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let listen = parse_socket_addr(raw.listen.get_ref())
            .map_err(|m| located(raw.listen.span(), format!("listen: {m}")))?;

        let workers = match raw.workers.as_ref().map(|w| (*w.get_ref(), w.span())) {
            None | Some((0, _)) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some((n, span)) if n > MAX_WORKERS => {
                return Err(located(
                    span,
                    format!("workers = {n} is more than the {MAX_WORKERS} we allow"),
                ))
            }
            Some((n, _)) => n,
        };

        let tls = match raw.tls {
            None => None,
            Some(t) => {
                let cert = resolve(t.cert.get_ref());
                let key = resolve(t.key.get_ref());
                for (name, spanned, file) in
                    [("tls.cert", &t.cert, &cert), ("tls.key", &t.key, &key)]
                {
                    if !file.is_file() {
                        return Err(located(
                            spanned.span(),
                            format!("{name}: no such file {}", file.display()),
                        ));
                    }
                }
                Some(TlsFiles { cert, key })
            }
        };

        let htpasswd = resolve(raw.auth.htpasswd.get_ref());
        if !htpasswd.is_file() {
            return Err(located(
                raw.auth.htpasswd.span(),
                format!("auth.htpasswd: no such file {}", htpasswd.display()),
            ));
        }
        let realm = raw.auth.realm.get_ref().clone();
        if realm.is_empty()
            || realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
        {
            return Err(located(
                raw.auth.realm.span(),
                "auth.realm must be non-empty, without quotes, backslashes or control characters"
                    .into(),
            ));
        }

        let mut servers = Vec::new();
        for s in raw.upstream.servers.get_ref() {
            let addr = parse_socket_addr(s).map_err(|m| {
                located(
                    raw.upstream.servers.span(),
                    format!("upstream.servers: {m}"),
                )
            })?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(located(
                raw.upstream.servers.span(),
                "upstream.servers must name at least one registry".into(),
            ));
        }

        let groups_file = match &raw.auth.groups {
            None => None,
            Some(g) => {
                let file = resolve(g.get_ref());
                if !file.is_file() {
                    return Err(located(
                        g.span(),
                        format!("auth.groups: no such file {}", file.display()),
                    ));
                }
                Some(file)
            }
        };

        // `push_users` is shorthand for rules; both at once would leave the
        // reader guessing which one decides.
        let access = match raw.access {
            None => None,
            Some(rules) => {
                if raw.auth.push_users.is_some() {
                    let span = rules.first().map_or(0..0, |r| r.span());
                    return Err(located(
                        span,
                        "[[access]] rules and auth.push_users cannot be used together; \
                         express push_users as a rule"
                            .into(),
                    ));
                }
                let mut built = Vec::with_capacity(rules.len());
                for rule in rules {
                    let span = rule.span();
                    let r = rule.into_inner();
                    built.push(
                        Rule::new(&r.repository, r.who, r.actions)
                            .map_err(|m| located(span, format!("[[access]] rule: {m}")))?,
                    );
                }
                Some(built)
            }
        };

        let access_log = match raw.log.access.get_ref().as_str() {
            "stdout" | "-" => AccessLogTarget::Stdout,
            "off" => AccessLogTarget::Off,
            other => AccessLogTarget::File(resolve(Path::new(other))),
        };

        let admin_listen = match raw.admin {
            None => None,
            Some(a) => Some(
                parse_socket_addr(a.listen.get_ref())
                    .map_err(|m| located(a.listen.span(), format!("admin.listen: {m}")))?,
            ),
        };

        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Config {
            path: path.to_owned(),
            listen,
            workers,
            tls,
            auth: AuthConfig {
                realm,
                htpasswd,
                push_users: raw.auth.push_users,
                cache_ttl: raw.auth.cache_ttl,
                hash_threads: if raw.auth.hash_threads == 0 {
                    cores
                } else {
                    raw.auth.hash_threads
                },
                hash_queue: raw.auth.hash_queue.max(1),
                reload_interval: raw.auth.reload_interval.max(Duration::from_millis(50)),
                groups_file,
                max_failures: raw.auth.max_failures,
                failure_window: raw.auth.failure_window,
            },
            upstream: UpstreamConfig {
                servers,
                connect_timeout: raw.upstream.connect_timeout,
                read_timeout: raw.upstream.read_timeout,
                max_idle_per_worker: raw.upstream.max_idle_per_worker,
                idle_timeout: raw.upstream.idle_timeout,
            },
            forwarding: ForwardingConfig {
                trust_forwarded_headers: raw.forwarding.trust_forwarded_headers,
                forward_authorization: raw.forwarding.forward_authorization,
            },
            client: ClientConfig {
                header_timeout: raw.client.header_timeout,
                idle_timeout: raw.client.idle_timeout,
                body_timeout: raw.client.body_timeout,
            },
            access_log,
            admin_listen,
            shutdown_timeout: raw.shutdown_timeout,
            driver: raw.driver,
            groups: raw.groups,
            access,
        })
    }
}

/// More workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

/// Accepts "IP:PORT", "[v6]:PORT" and "host:PORT" (resolved once, here, so no
/// worker ever blocks on DNS).
fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} needs a port, like \"{s}:5000\""));
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("users"), "").expect("write");
        dir
    }

    fn parse(dir: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse(&dir.join("regproxy.toml"), text)
    }

    const MINIMAL: &str = r#"
listen = "127.0.0.1:5043"
[auth]
htpasswd = "users"
[upstream]
servers = ["127.0.0.1:5000"]
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let dir = fixture();
        let c = parse(dir.path(), MINIMAL).expect("valid");
        assert_eq!(c.listen, "127.0.0.1:5043".parse().expect("addr"));
        assert!(c.workers >= 1);
        assert!(c.tls.is_none());
        assert_eq!(c.auth.realm, "Registry realm");
        assert_eq!(c.auth.cache_ttl, Duration::from_secs(300));
        assert_eq!(c.auth.htpasswd, dir.path().join("users"));
        assert_eq!(c.upstream.read_timeout, Duration::from_secs(900));
        assert_eq!(c.access_log, AccessLogTarget::Stdout);
        assert!(!c.forwarding.trust_forwarded_headers);
        assert!(!c.forwarding.forward_authorization);
    }

    #[test]
    fn bad_duration_names_line() {
        let dir = fixture();
        let text = MINIMAL.replace("[upstream]", "cache_ttl = \"5 parsecs\"\n[upstream]");
        let e = parse(dir.path(), &text).expect_err("invalid");
        let msg = e.to_string();
        assert_eq!(e.line, 5, "{msg}");
        assert!(msg.contains("regproxy.toml:5:"), "{msg}");
        assert!(msg.contains("invalid duration"), "{msg}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let dir = fixture();
        let text = MINIMAL.replace("[auth]", "[auth]\nhtpassword = \"x\"");
        let e = parse(dir.path(), &text).expect_err("invalid");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unknown field `htpassword`"), "{e}");
    }

    #[test]
    fn missing_file_names_key_and_line() {
        let dir = fixture();
        let text = MINIMAL.replace("\"users\"", "\"nope\"");
        let e = parse(dir.path(), &text).expect_err("invalid");
        assert_eq!(e.line, 4);
        assert!(e.message.contains("auth.htpasswd: no such file"), "{e}");
    }

    #[test]
    fn bad_listen_and_servers() {
        let dir = fixture();
        let e = parse(dir.path(), &MINIMAL.replace("127.0.0.1:5043", "localhost"))
            .expect_err("no port");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("needs a port"), "{e}");
        let e =
            parse(dir.path(), &MINIMAL.replace("[\"127.0.0.1:5000\"]", "[]")).expect_err("empty");
        assert_eq!(e.line, 6);
    }

    #[test]
    fn syntax_error_is_located() {
        let dir = fixture();
        let e = parse(dir.path(), "listen = \n").expect_err("syntax");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn access_rules_are_validated_with_their_line() {
        let dir = fixture();
        let ok = format!(
            "{MINIMAL}\n[groups]\nteam-a = [\"alice\"]\n\n[[access]]\nrepository = \"team-a/**\"\nwho = [\"@team-a\"]\nactions = [\"pull\", \"push\"]\n"
        );
        let c = parse(dir.path(), &ok).expect("valid");
        assert_eq!(c.access.as_ref().map(Vec::len), Some(1));
        assert_eq!(c.groups["team-a"], vec!["alice".to_owned()]);

        let bad = ok.replace("\"push\"]", "\"fly\"]");
        let e = parse(dir.path(), &bad).expect_err("bad action");
        assert!(e.line >= 10, "{e}");
        assert!(e.message.contains("[[access]] rule"), "{e}");

        let both = ok.replace("[auth]", "[auth]\npush_users = [\"x\"]");
        let e = parse(dir.path(), &both).expect_err("both");
        assert!(e.message.contains("cannot be used together"), "{e}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
