//! Authentication: the cross-core verified-credential cache that keeps
//! bcrypt off the event loops ([`cache`]) with its fair waiting line
//! ([`queue`]); tokens' keys and each worker's verified tokens
//! ([`bearer`]), with the OIDC issuers' keys fetched over HTTPS in the
//! background ([`jwks`]). What it decides with (credentials, htpasswd,
//! groups, rules, the limiter) is the core's `regproxy_core::auth`,
//! re-exported here.

pub mod bearer;
pub mod cache;
pub mod jwks;
pub mod queue;

pub use regproxy_core::auth::{acl, basic, groups, htpasswd, limiter, oidc, token, LineError};
