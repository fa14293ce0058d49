//! `[forwarding]`: what regproxy tells the registry about the client, and
//! which balancers in front of it it believes.
//!
//! `trusted_proxies` lists the balancers (CIDR blocks) whose word about the
//! client address is taken: from `X-Forwarded-For` when
//! `trust_forwarded_headers` is on, and from a PROXY protocol header. With
//! `trust_forwarded_headers = true` and no list, the direct peer is the one
//! trusted balancer, as before the list existed.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Loader};
use crate::cidr::Cidr;

#[derive(Debug, Clone, Default)]
pub struct ForwardingConfig {
    pub trust_forwarded_headers: bool,
    pub forward_authorization: bool,
    /// Balancers whose client-address claims are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Forward method-override and URL-rewrite headers (dropped by default).
    pub keep_override_headers: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwarding {
    #[serde(default)]
    trust_forwarded_headers: bool,
    #[serde(default)]
    forward_authorization: bool,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    keep_override_headers: bool,
}

impl RawForwarding {
    pub(super) fn build(self, l: &Loader) -> Result<ForwardingConfig, ConfigError> {
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|s| {
                s.get_ref()
                    .parse::<Cidr>()
                    .map_err(|m| l.located(s.span(), format!("forwarding.trusted_proxies: {m}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ForwardingConfig {
            trust_forwarded_headers: self.trust_forwarded_headers,
            forward_authorization: self.forward_authorization,
            trusted_proxies,
            keep_override_headers: self.keep_override_headers,
        })
    }
}
