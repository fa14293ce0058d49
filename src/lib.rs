//! regproxy: an authenticating, thread-per-core front door for a private
//! Docker/OCI registry.
//!
//! The request pipeline is fixed and lives in [`conn`]: read head →
//! authenticate → authorize → pick upstream → forward head → relay bodies →
//! log. Everything it needs to decide (framing, credentials, policy) is a pure
//! module over bytes and structs, tested without a runtime.
#![deny(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod cidr;
pub mod client_addr;
pub mod config;
pub mod conn;
pub mod error;
pub mod handoff;
pub mod health;
pub mod http;
pub mod lingering;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod nginx;
pub mod policy;
pub mod proxy_protocol;
pub mod relay;
pub mod reload;
pub mod request_id;
pub mod route;
pub mod shutdown;
pub mod sys;
pub mod text;
pub mod tls;
pub mod tuning;
pub mod upstream;
pub mod worker;
