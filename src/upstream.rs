//! The registry side: per-worker keep-alive connection pools.

pub mod pool;
