//! The configuration file: parsed once at start-up (and by `regproxy check`),
//! validated whole, and turned into plain values the workers copy.
//!
//! Every mistake is reported as `FILE:LINE:COLUMN: what is wrong`, so an
//! operator moving off nginx can fix the file without reading our source.
//! Each table has its own module (`config/<table>.rs`) with its raw shape,
//! its defaults and its validation; this file holds the top level and the
//! shared pieces (locating errors, resolving paths, durations, addresses).

mod admin;
mod auth;
mod cache;
mod client;
mod forwarding;
mod log;
mod tls;
mod token;
mod upstream;

pub use auth::AuthConfig;
pub use cache::{CacheConfig, MIN_CACHE_SIZE};
pub use client::{ClientConfig, Lingering};
pub use forwarding::ForwardingConfig;
pub use log::{AccessLogTarget, LogFormat};
pub use tls::TlsFiles;
pub use token::{AuthScheme, JwksSource, OidcConfig, TokenConfig};
pub use upstream::{HealthConfig, UpstreamConfig, UpstreamTls, DEFAULT_CA_FILE};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::auth::acl::Rule;
pub use crate::proxy_protocol::Mode as ProxyMode;

/// `splice_pipe_size` when the config does not set it: 1 MiB, the Linux
/// default `pipe-max-size`, 16 times the default pipe.
pub const DEFAULT_PIPE_SIZE: usize = 1 << 20;

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; relative paths inside it are resolved against its folder.
    pub path: PathBuf,
    pub listen: SocketAddr,
    /// Worker threads, already resolved from `workers = 0` to the core count.
    pub workers: usize,
    /// Whether each worker is pinned to a core; resolved from `pin_workers`
    /// or, when it is left out, by [`pin_by_default`].
    pub pin_workers: bool,
    pub tls: Option<TlsFiles>,
    pub auth: AuthConfig,
    pub upstream: UpstreamConfig,
    pub forwarding: ForwardingConfig,
    pub client: ClientConfig,
    pub access_log: AccessLogTarget,
    pub access_log_format: LogFormat,
    pub admin_listen: Option<SocketAddr>,
    /// `[admin] top_repositories`: 0, or how many of the busiest
    /// repositories `/metrics` names (`metrics::top`).
    pub top_repositories: usize,
    pub shutdown_timeout: Duration,
    /// Unix socket over which a running regproxy hands its listening
    /// sockets to a newly started one (see `handoff`); `None`: new
    /// processes join the SO_REUSEPORT group with sockets of their own.
    pub handoff_socket: Option<PathBuf>,
    pub driver: Driver,
    /// Whether connections start with a PROXY protocol header (v1/v2) from
    /// a balancer in `forwarding.trusted_proxies`.
    pub proxy_protocol: ProxyMode,
    /// Bytes each splice pipe is enlarged to (F_SETPIPE_SZ), before the
    /// kernel's `pipe-max-size` cap applied at start.
    pub splice_pipe_size: usize,
    /// Client connections for the whole process; `None`: derived from the
    /// descriptor limit at start (`admission::Limits`).
    pub max_connections: Option<u64>,
    /// Client connections per client address; `Some(0)`: off; `None`: a
    /// quarter of `max_connections`, at least 256.
    pub max_connections_per_ip: Option<u32>,
    /// Groups declared in the config (`[groups]`), merged with `auth.groups`.
    pub groups: BTreeMap<String, Vec<String>>,
    /// `[[access]]` rules, validated, in order; `None`: `push_users` decides.
    pub access: Option<Vec<Rule>>,
    /// `[cache]`; `None`: no cache, every request goes to the registry.
    pub cache: Option<CacheConfig>,
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

// === raw file shape ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Spanned<String>,
    workers: Option<Spanned<usize>>,
    pin_workers: Option<bool>,
    tls: Option<tls::RawTls>,
    auth: auth::RawAuth,
    upstream: upstream::RawUpstream,
    #[serde(default)]
    forwarding: forwarding::RawForwarding,
    #[serde(default)]
    client: client::RawClient,
    #[serde(default)]
    log: log::RawLog,
    admin: Option<admin::RawAdmin>,
    #[serde(default = "default_shutdown_timeout", deserialize_with = "duration")]
    shutdown_timeout: Duration,
    handoff_socket: Option<PathBuf>,
    #[serde(default = "default_driver")]
    driver: Driver,
    proxy_protocol: Option<Spanned<ProxyMode>>,
    splice_pipe_size: Option<Spanned<usize>>,
    max_connections: Option<Spanned<u64>>,
    max_connections_per_ip: Option<Spanned<u32>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    access: Option<Vec<Spanned<RawRule>>>,
    cache: Option<cache::RawCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    repository: String,
    who: Vec<String>,
    actions: Vec<String>,
}

fn default_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_driver() -> Driver {
    Driver::Auto
}

/// Whether workers are pinned when `pin_workers` is left out: yes, unless
/// the registry runs on this host (an upstream on a loopback address, as in
/// the nginx recipe). Then its threads, and often its clients', share the
/// workers' cores, and a pinned worker cannot leave a core they keep busy:
/// on 2 cores, plain GETs of 1 GiB through a pinned worker ran at 0.78× and
/// 0.95× HAProxy's rate (HAProxy is not pinned), unpinned at 1.20× and
/// 1.09× (medians of 7, two runs each, `bench/journal/2026-11-29-heap-fragmentation-pinning-and-both-sockets.md`). A proxy with
/// its cores to itself keeps each connection's work, and its caches, on
/// one core.
pub fn pin_by_default(servers: &[SocketAddr]) -> bool {
    !servers.iter().any(|s| s.ip().is_loopback())
}

/// `splice_pipe_size` bounds: a page, and the largest pipe Linux makes
/// (1 GiB, even for root).
const SPLICE_PIPE_SIZE_RANGE: std::ops::RangeInclusive<usize> = 4096..=1 << 30;

/// `max_connections` bounds: at least one, at most what any kernel's
/// descriptor ceiling (`fs.nr_open`, 2³⁰ at most) could hold.
const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<u64> = 1..=1 << 30;

/// Durations are written as humans write them: "5s", "900s", "5m", "1h 30m".
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write it like \"5s\", \"15m\" or \"1h\""
        ))
    })
}

/// Sizes are a byte count or a string with a unit, as nginx and humans
/// write them: 67108864, "64MiB", "64M", "64m", "1g", "512k".
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(n),
        Raw::Text(t) => parse_size(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {t:?}; write bytes, or a number with K, M or G (\"64MiB\", \"1g\")"
            ))
        }),
    }
}

/// `"64MiB"` → 64 × 2²⁰. Units are binary, whichever spelling is used, as
/// in nginx (`64m`).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
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

/// What validating a config asks of the machine it will run on. The core
/// only asks; the proxy answers from the system (`regproxy::config`), and
/// tests and the fuzzer answer from a table, so parsing stays free of I/O.
pub trait Host {
    /// Whether `path` names an existing regular file.
    fn is_file(&self, path: &Path) -> bool;
    /// Resolves `"host:port"`, which is not a literal address. Called once
    /// per address, at start, so no worker ever blocks on DNS.
    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String>;
    /// Cores this process may use: `workers = 0` and `hash_threads = 0`
    /// mean one per core.
    fn cores(&self) -> usize;
    /// Whether `path` exists and is not a directory (a folder regproxy
    /// would create must not be a file). By default nothing exists.
    fn is_not_directory(&self, _path: &Path) -> bool {
        false
    }
}

/// A machine with no files and no name service: every referenced file is
/// missing and only literal addresses parse. For the fuzzer, and for
/// checking a config's shape alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offline;

impl Host for Offline {
    fn is_file(&self, _: &Path) -> bool {
        false
    }

    fn resolve(&self, host_port: &str) -> Result<SocketAddr, String> {
        Err(format!(
            "cannot resolve {host_port:?}: no name service here"
        ))
    }

    fn cores(&self) -> usize {
        1
    }
}

/// What every table's validation needs: where errors point, where relative
/// paths lead, and the machine's answers.
struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    base: &'a Path,
    host: &'a dyn Host,
}

impl Loader<'_> {
    /// An error at `span` of the file.
    fn located(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError {
            file: self.path.to_owned(),
            line,
            column,
            message,
        }
    }

    /// A path from the file, relative to the file's folder.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    /// A path from the file that must name an existing file; `key` names
    /// the setting in the error.
    fn existing_file(&self, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        let file = self.resolve(p.get_ref());
        if self.host.is_file(&file) {
            Ok(file)
        } else {
            Err(self.located(p.span(), format!("{key}: no such file {}", file.display())))
        }
    }
}

impl Config {
    /// Parses and validates config text as if it came from `path`: relative
    /// paths lead from its folder, and errors name it. Referenced files
    /// (cert, key, htpasswd) must exist; their owners parse them.
    pub fn parse(path: &Path, text: &str, host: &dyn Host) -> Result<Config, ConfigError> {
        let l = Loader {
            path,
            text,
            base: path.parent().unwrap_or(Path::new(".")),
            host,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            l.located(span, e.message().trim_end().to_owned())
        })?;

        let listen = l
            .socket_addr(raw.listen.get_ref())
            .map_err(|m| l.located(raw.listen.span(), format!("listen: {m}")))?;

        let workers = match raw.workers.as_ref().map(|w| (*w.get_ref(), w.span())) {
            None | Some((0, _)) => l.host.cores().max(1),
            Some((n, span)) if n > MAX_WORKERS => {
                return Err(l.located(
                    span,
                    format!("workers = {n} is more than the {MAX_WORKERS} we allow"),
                ))
            }
            Some((n, _)) => n,
        };

        let splice_pipe_size = match raw.splice_pipe_size {
            None => DEFAULT_PIPE_SIZE,
            Some(s) if SPLICE_PIPE_SIZE_RANGE.contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                return Err(l.located(
                    s.span(),
                    format!(
                        "splice_pipe_size = {} is outside {}..={} bytes",
                        s.get_ref(),
                        SPLICE_PIPE_SIZE_RANGE.start(),
                        SPLICE_PIPE_SIZE_RANGE.end()
                    ),
                ))
            }
        };
        let max_connections = match raw.max_connections {
            None => None,
            Some(m) if MAX_CONNECTIONS_RANGE.contains(m.get_ref()) => Some(*m.get_ref()),
            Some(m) => {
                return Err(l.located(
                    m.span(),
                    format!(
                        "max_connections = {} is outside {}..={}; leave it out to derive it from the descriptor limit",
                        m.get_ref(),
                        MAX_CONNECTIONS_RANGE.start(),
                        MAX_CONNECTIONS_RANGE.end()
                    ),
                ))
            }
        };
        let upstream = raw.upstream.build(&l)?;
        let pin_workers = raw
            .pin_workers
            .unwrap_or_else(|| pin_by_default(&upstream.servers));
        let access = access_rules(&l, raw.access, raw.auth.push_users.is_some())?;
        let forwarding = raw.forwarding.build(&l)?;
        let proxy_protocol = proxy_mode(&l, raw.proxy_protocol, &forwarding)?;
        let (access_log, access_log_format) = raw.log.build(&l)?;
        let admin = raw.admin.map(|a| a.build(&l)).transpose()?;
        Ok(Config {
            path: path.to_owned(),
            listen,
            workers,
            pin_workers,
            tls: raw.tls.map(|t| t.build(&l)).transpose()?,
            auth: raw.auth.build(&l)?,
            upstream,
            forwarding,
            proxy_protocol,
            client: raw.client.build(),
            access_log,
            access_log_format,
            admin_listen: admin.map(|(addr, _)| addr),
            top_repositories: admin.map_or(0, |(_, top)| top),
            shutdown_timeout: raw.shutdown_timeout,
            handoff_socket: raw.handoff_socket.map(|p| l.resolve(&p)),
            driver: raw.driver,
            splice_pipe_size,
            max_connections,
            max_connections_per_ip: raw.max_connections_per_ip.map(Spanned::into_inner),
            groups: raw.groups,
            access,
            cache: raw.cache.map(|c| c.build(&l)).transpose()?,
        })
    }
}

/// `[[access]]` rules, validated in order. `push_users` is shorthand for
/// rules; both at once would leave the reader guessing which one decides.
fn access_rules(
    l: &Loader,
    rules: Option<Vec<Spanned<RawRule>>>,
    has_push_users: bool,
) -> Result<Option<Vec<Rule>>, ConfigError> {
    let Some(rules) = rules else {
        return Ok(None);
    };
    if has_push_users {
        let span = rules.first().map_or(0..0, |r| r.span());
        return Err(l.located(
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
                .map_err(|m| l.located(span, format!("[[access]] rule: {m}")))?,
        );
    }
    Ok(Some(built))
}

/// `proxy_protocol`: a header carries a client address only if a trusted
/// balancer sent it, so turning it on without naming one would either
/// refuse everyone or believe everyone.
fn proxy_mode(
    l: &Loader,
    mode: Option<Spanned<ProxyMode>>,
    forwarding: &ForwardingConfig,
) -> Result<ProxyMode, ConfigError> {
    let Some(mode) = mode else {
        return Ok(ProxyMode::Off);
    };
    if *mode.get_ref() != ProxyMode::Off && forwarding.trusted_proxies.is_empty() {
        return Err(l.located(
            mode.span(),
            "proxy_protocol needs [forwarding] trusted_proxies: the balancers allowed to send the header"
                .into(),
        ));
    }
    Ok(mode.into_inner())
}

/// More workers than this is a typo, not a machine.
const MAX_WORKERS: usize = 1024;

impl Loader<'_> {
    /// Accepts "IP:PORT", "[v6]:PORT" and "host:PORT" (resolved by the
    /// host, once, here).
    fn socket_addr(&self, s: &str) -> Result<SocketAddr, String> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(a);
        }
        if !s.contains(':') {
            return Err(format!("{s:?} needs a port, like \"{s}:5000\""));
        }
        self.host.resolve(s)
    }
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
mod tests;
