//! Authentication and authorization: Basic credentials from the request
//! ([`basic`]), the user database ([`htpasswd`]) and groups ([`groups`]),
//! the cross-core verified-credential cache that keeps bcrypt off the event
//! loops ([`cache`]), the brute-force limiter ([`limiter`]), and the access
//! rules ([`acl`]).

pub mod acl;
pub mod basic;
pub mod cache;
pub mod groups;
pub mod htpasswd;
pub mod limiter;
