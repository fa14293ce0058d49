//! The edge blob cache (issue 25): [`store`] is its folder on disk.
pub mod store;
