//! `[forwarding]`: what regproxy tells the registry about the client, and
//! whether it believes what a balancer in front of it says.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardingConfig {
    pub trust_forwarded_headers: bool,
    pub forward_authorization: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwarding {
    #[serde(default)]
    trust_forwarded_headers: bool,
    #[serde(default)]
    forward_authorization: bool,
}

impl RawForwarding {
    pub(super) fn build(self) -> ForwardingConfig {
        ForwardingConfig {
            trust_forwarded_headers: self.trust_forwarded_headers,
            forward_authorization: self.forward_authorization,
        }
    }
}
