//! regproxy: an authenticating, thread-per-core front door for a private
//! Docker/OCI registry.
//!
//! The request pipeline is fixed and lives in [`conn`]: read head →
//! authenticate → authorize → pick upstream → forward head → relay bodies →
//! log. Everything it needs to decide (framing, credentials, policy) is a pure
//! module over bytes and structs, tested without a runtime.
#![deny(unsafe_code)]

pub mod access_log;
pub mod auth;
pub mod cidr;
pub mod config;
pub mod conn;
pub mod error;
pub mod http;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod policy;
pub mod relay;
pub mod reload;
pub mod route;
pub mod shutdown;
pub mod sys;
pub mod tls;
pub mod upstream;
pub mod worker;
