//! regproxy: an authenticating, thread-per-core front door for a private
//! Docker/OCI registry.
//!
//! The request pipeline is fixed and lives in [`conn`]: read head →
//! authenticate → authorize → pick upstream → forward head → relay bodies →
//! log. Everything it needs to decide (framing, credentials, routes, rules,
//! config) is the I/O-free core crate, `regproxy_core`, re-exported below
//! under the names the proxy has always used; this crate does the sockets,
//! files, threads and clocks.
#![deny(unsafe_code)]

/// The path and User-Agent policy, now part of the core's routes.
pub use regproxy_core::route::policy;
pub use regproxy_core::{cidr, client_addr, error, http, proxy_protocol, request_id, route, text};

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod cache;
pub mod config;
pub mod conn;
pub mod handoff;
pub mod health;
pub mod lingering;
pub mod listen;
pub mod live;
pub mod metrics;
pub mod relay;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod sys;
pub mod tls;
pub mod tools;
pub mod upstream;
pub mod worker;
