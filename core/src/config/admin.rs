//! `[admin]`: the optional port that serves `/metrics` and `/healthz`,
//! kept off the public listener, and what `/metrics` may show.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Loader};

/// Largest `top_repositories`: each worker tracks a few times as many
/// names, and every one is a label set in each scrape.
pub const MAX_TOP_REPOSITORIES: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Spanned<String>,
    /// Opt-in: per-repository requests and bytes for the busiest N.
    top_repositories: Option<Spanned<usize>>,
}

impl RawAdmin {
    /// The listen address and `top_repositories`.
    pub(super) fn build(self, l: &Loader) -> Result<(SocketAddr, usize), ConfigError> {
        let addr = l
            .socket_addr(self.listen.get_ref())
            .map_err(|m| l.located(self.listen.span(), format!("admin.listen: {m}")))?;
        let top = match self.top_repositories {
            None => 0,
            Some(t) if *t.get_ref() > MAX_TOP_REPOSITORIES => {
                return Err(l.located(
                    t.span(),
                    format!("admin.top_repositories: at most {MAX_TOP_REPOSITORIES}"),
                ))
            }
            Some(t) => *t.get_ref(),
        };
        Ok((addr, top))
    }
}
