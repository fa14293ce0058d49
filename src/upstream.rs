//! The registry side: per-worker keep-alive connection pools, and the
//! connection type (plain or TLS) they hold.

pub mod pool;
pub mod stream;
