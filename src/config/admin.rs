//! `[admin]`: the optional port that serves `/metrics` and `/healthz`,
//! kept off the public listener.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{parse_socket_addr, ConfigError, Loader};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Spanned<String>,
}

impl RawAdmin {
    pub(super) fn build(self, l: &Loader) -> Result<SocketAddr, ConfigError> {
        parse_socket_addr(self.listen.get_ref())
            .map_err(|m| l.located(self.listen.span(), format!("admin.listen: {m}")))
    }
}
