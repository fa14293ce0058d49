//! `[client]`: how long a client may take, and what it may send.
//!
//! Defaults are nginx's where nginx has one (`client_header_timeout` 60s,
//! `keepalive_timeout` 75s), and the recipe's `proxy_read_timeout 900` for
//! bodies.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, size};

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// What becomes of a body regproxy answered before reading it.
    pub lingering: Lingering,
}

/// The lingering settings of `[client]`.
#[derive(Debug, Clone, Copy)]
pub struct Lingering {
    /// Largest request body read and discarded after an early answer, and
    /// the most a lingering close reads (0: never discard).
    pub discard_limit: u64,
    /// How long discarding and lingering may take in all (nginx's
    /// `lingering_time`, 30 s).
    pub time: Duration,
    /// How long to wait for the next byte while lingering (nginx's
    /// `lingering_timeout`, 5 s).
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    #[serde(default = "default_header_timeout", deserialize_with = "duration")]
    header_timeout: Duration,
    #[serde(default = "default_idle_timeout", deserialize_with = "duration")]
    idle_timeout: Duration,
    #[serde(default = "default_body_timeout", deserialize_with = "duration")]
    body_timeout: Duration,
    #[serde(default = "default_discard_limit", deserialize_with = "size")]
    discard_limit: u64,
    #[serde(default = "default_lingering_time", deserialize_with = "duration")]
    lingering_time: Duration,
    #[serde(default = "default_lingering_timeout", deserialize_with = "duration")]
    lingering_timeout: Duration,
}

impl Default for RawClient {
    fn default() -> Self {
        Self {
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
            discard_limit: default_discard_limit(),
            lingering_time: default_lingering_time(),
            lingering_timeout: default_lingering_timeout(),
        }
    }
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(75)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(900)
}
/// Large enough for any manifest or small blob a client sends before its
/// credentials; a refused layer upload beyond it is not worth reading.
fn default_discard_limit() -> u64 {
    64 << 20
}
/// nginx's `lingering_time`.
fn default_lingering_time() -> Duration {
    Duration::from_secs(30)
}
/// nginx's `lingering_timeout`.
fn default_lingering_timeout() -> Duration {
    Duration::from_secs(5)
}

impl RawClient {
    pub(super) fn build(self) -> ClientConfig {
        ClientConfig {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            lingering: Lingering {
                discard_limit: self.discard_limit,
                time: self.lingering_time,
                timeout: self.lingering_timeout,
            },
        }
    }
}
