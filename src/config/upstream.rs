//! `[upstream]`: the registry servers and how regproxy talks to them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{duration, parse_socket_addr, ConfigError, Loader};

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
}

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
            let addr = parse_socket_addr(s)
                .map_err(|m| l.located(span.clone(), format!("upstream.servers: {m}")))?;
            servers.push(addr);
        }
        if servers.is_empty() {
            return Err(l.located(
                span,
                "upstream.servers must name at least one registry".into(),
            ));
        }
        let host = match self.host {
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
        Ok(UpstreamConfig {
            host,
            servers,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            max_idle_per_worker: self.max_idle_per_worker,
            idle_timeout: self.idle_timeout,
        })
    }
}
