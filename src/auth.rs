//! Authentication: Basic credentials from the request ([`basic`]), the user
//! database ([`htpasswd`]), and the cross-core verified-credential cache that
//! keeps bcrypt off the event loops ([`cache`]).

pub mod basic;
pub mod cache;
pub mod htpasswd;
