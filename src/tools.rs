//! The operator tools that ship in the same binary but never run on the
//! request path: `regproxy import-nginx` ([`nginx`]), which turns an nginx
//! auth-proxy config into a regproxy one, `regproxy tuning`
//! ([`tuning`]), which checks and applies the host's kernel settings, and
//! `regproxy cache` ([`cache`]), which shows and empties the edge cache.

pub mod cache;
pub mod nginx;
pub mod tuning;
