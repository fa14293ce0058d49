//! The operator tools that ship in the same binary but never run on the
//! request path: `regproxy import-nginx` ([`nginx`]), which turns an nginx
//! auth-proxy config into a regproxy one, and `regproxy tuning`
//! ([`tuning`]), which checks and applies the host's kernel settings.

pub mod nginx;
pub mod tuning;
