//! `[client]`: how long a client may take, and what it may send.
//!
//! Defaults are nginx's where nginx has one (`client_header_timeout` 60s,
//! `keepalive_timeout` 75s), and the recipe's `proxy_read_timeout 900` for
//! bodies.

use std::time::Duration;

use serde::Deserialize;

use super::duration;

#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
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
}

impl Default for RawClient {
    fn default() -> Self {
        Self {
            header_timeout: default_header_timeout(),
            idle_timeout: default_idle_timeout(),
            body_timeout: default_body_timeout(),
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

impl RawClient {
    pub(super) fn build(self) -> ClientConfig {
        ClientConfig {
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
        }
    }
}
