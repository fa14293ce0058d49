//! `[upstream]`: the registry servers and how regproxy talks to them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration, ConfigError, Loader};

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub servers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub max_idle_per_worker: usize,
    pub idle_timeout: Duration,
    /// `Host` sent for an HTTP/1.0 request that has none: `upstream.host`,
    /// or the first server's address as written.
    pub host: String,
    pub health: HealthConfig,
    /// `tls = true`: the registry is reached over TLS, verified against
    /// `ca_file` under `server_name`; `None`: plain HTTP.
    pub tls: Option<UpstreamTls>,
}

/// How the registry's certificate is checked when `[upstream] tls = true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM bundle of the CAs trusted for the registry's certificate.
    pub ca_file: PathBuf,
    /// The name (DNS name or IP address) its certificate must carry; sent
    /// as SNI when it is a DNS name.
    pub server_name: String,
}

/// `ca_file` when `tls = true` leaves it out: Debian's system bundle.
pub const DEFAULT_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            servers: Vec::new(),
            connect_timeout: default_connect_timeout(),
            read_timeout: default_read_timeout(),
            max_idle_per_worker: default_max_idle(),
            idle_timeout: default_idle_timeout(),
            host: String::new(),
            health: HealthConfig::default(),
            tls: None,
        }
    }
}

/// Active health checks and ejection (see `health.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `health_checks`; by default on when there is more than one server.
    pub enabled: bool,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            interval: default_health_interval(),
            timeout: default_health_timeout(),
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
        }
    }
}

/// HAProxy's defaults: two passes to return, three failures to leave.
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;
/// Counts past this are typos: a server would take hours to move.
const MAX_RISE_FALL: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    servers: Spanned<Vec<String>>,
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    connect_timeout: Duration,
    #[serde(default = "default_read_timeout", deserialize_with = "duration")]
    read_timeout: Duration,
    #[serde(default = "default_max_idle")]
    max_idle_per_worker: usize,
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    idle_timeout: Duration,
    host: Option<Spanned<String>>,
    health_checks: Option<bool>,
    #[serde(default = "default_health_interval", deserialize_with = "duration")]
    health_interval: Duration,
    #[serde(default = "default_health_timeout", deserialize_with = "duration")]
    health_timeout: Duration,
    health_rise: Option<Spanned<u32>>,
    health_fall: Option<Spanned<u32>>,
    tls: Option<Spanned<bool>>,
    ca_file: Option<Spanned<PathBuf>>,
    server_name: Option<Spanned<String>>,
}

fn default_health_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_health_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
/// The recipe's `proxy_read_timeout 900`.
fn default_read_timeout() -> Duration {
    Duration::from_secs(900)
}
fn default_max_idle() -> usize {
    64
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

impl RawUpstream {
    pub(super) fn build(self, l: &Loader) -> Result<UpstreamConfig, ConfigError> {
        let span = self.servers.span();
        let mut servers = Vec::new();
        for s in self.servers.get_ref() {
            let addr = l
                .socket_addr(s)
                .map_err(|m| l.located(span.clone(), format!("upstream.servers: {m}")))?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(l.located(
                span.clone(),
                "upstream.servers must name at least one registry".into(),
            ));
        }
        let host = match &self.host {
            None => self.servers.get_ref().first().cloned().unwrap_or_default(),
            Some(h) => {
                let value = h.get_ref();
                // A field value (RFC 9110 §5.5): visible ASCII, no spaces.
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(l.located(
                        h.span(),
                        "upstream.host must be a host[:port] without spaces or control characters"
                            .into(),
                    ));
                }
                value.clone()
            }
        };
        let tls = self.tls_settings(l, &host)?;
        let count = |v: Option<Spanned<u32>>, key: &str, default: u32| match v {
            None => Ok(default),
            Some(v) if (1..=MAX_RISE_FALL).contains(v.get_ref()) => Ok(v.into_inner()),
            Some(v) => Err(l.located(
                v.span(),
                format!("upstream.{key} must be 1..={MAX_RISE_FALL}"),
            )),
        };
        let rise = count(self.health_rise, "health_rise", DEFAULT_RISE)?;
        let fall = count(self.health_fall, "health_fall", DEFAULT_FALL)?;
        if self.health_interval.is_zero() || self.health_timeout.is_zero() {
            return Err(l.located(
                span,
                "upstream.health_interval and health_timeout must be more than 0s".into(),
            ));
        }
        let health = HealthConfig {
            enabled: self.health_checks.unwrap_or(servers.len() > 1),
            interval: self.health_interval,
            timeout: self.health_timeout,
            rise,
            fall,
        };
        Ok(UpstreamConfig {
            host,
            health,
            tls,
            servers,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            max_idle_per_worker: self.max_idle_per_worker,
            idle_timeout: self.idle_timeout,
        })
    }
}

impl RawUpstream {
    /// `tls`, `ca_file` and `server_name`: the last two only with
    /// `tls = true`, since a CA file left beside plain HTTP would look like
    /// protection that is not there.
    fn tls_settings(&self, l: &Loader, host: &str) -> Result<Option<UpstreamTls>, ConfigError> {
        let on = self.tls.as_ref().is_some_and(|t| *t.get_ref());
        if !on {
            let stray = [
                self.ca_file.as_ref().map(|f| ("ca_file", f.span())),
                self.server_name.as_ref().map(|n| ("server_name", n.span())),
            ];
            if let Some((key, span)) = stray.into_iter().flatten().next() {
                return Err(l.located(
                    span,
                    format!("upstream.{key} is only used with upstream.tls = true"),
                ));
            }
            return Ok(None);
        }
        let ca_file = match &self.ca_file {
            Some(f) => l.existing_file("upstream.ca_file", f)?,
            None => {
                let file = PathBuf::from(DEFAULT_CA_FILE);
                if !l.host.is_file(&file) {
                    let span = self.tls.as_ref().map_or(0..0, Spanned::span);
                    return Err(l.located(
                        span,
                        format!(
                            "upstream.tls: no CA bundle at {DEFAULT_CA_FILE} (the default); \
                             set upstream.ca_file"
                        ),
                    ));
                }
                file
            }
        };
        let server_name = match &self.server_name {
            Some(n) => {
                let name = n.get_ref();
                if !is_server_name(name) {
                    return Err(l.located(
                        n.span(),
                        format!(
                            "upstream.server_name {name:?} is neither a DNS name nor an IP address"
                        ),
                    ));
                }
                name.clone()
            }
            None => {
                let name = host_part(host);
                if !is_server_name(name) {
                    let span = self.tls.as_ref().map_or(0..0, Spanned::span);
                    return Err(l.located(
                        span,
                        format!("upstream.tls: {name:?} (from upstream.host or the first server) is no name a certificate can carry; set upstream.server_name"),
                    ));
                }
                name.to_owned()
            }
        };
        Ok(Some(UpstreamTls {
            ca_file,
            server_name,
        }))
    }
}

/// The host of `host[:port]`, `[v6]:port` or a bare `v6` address.
fn host_part(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    if host_port.parse::<IpAddr>().is_ok() {
        return host_port;
    }
    host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
}

/// An IP address, or a DNS name as a certificate names one: labels of
/// letters, digits, `-` and `_`, 1 to 63 bytes each, 253 in all (rustls'
/// own check at start-up has the last word).
fn is_server_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}
