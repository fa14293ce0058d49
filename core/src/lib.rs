//! regproxy-core: the decisions of an authenticating registry front door,
//! as plain functions and state machines over bytes and structs. Nothing
//! here opens a socket or a file, reads a clock it was not handed, or
//! needs a runtime, so all of it is unit-tested and fuzzed on its own; the
//! proxy crate (`regproxy`) does the I/O and calls in.
//!
//! The request pipeline's pure half, in its order:
//! - [`proxy_protocol`]: the PROXY v1/v2 header an L4 balancer sends first;
//! - [`http`]: request and response heads (httparse, strictly framed),
//!   bodies, chunked framing, and the heads regproxy writes;
//! - [`client_addr`] and [`cidr`]: which address a request came from;
//! - [`route`]: which repository and action a request means (the
//!   registry's own route grammar), and the path and User-Agent policy;
//! - [`auth`]: Basic credentials, htpasswd and group files, the access
//!   rules, and the brute-force limiter;
//! - [`error`]: the one request-path error, with its status and registry
//!   JSON error;
//! - [`cache`]: the edge blob cache's decisions: what is cacheable,
//!   its file header, LRU index, `Range` answers and confirmations;
//! - [`config`]: the configuration file, validated whole, every error with
//!   its file, line and column.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod cidr;
pub mod client_addr;
pub mod config;
pub mod error;
pub mod http;
pub mod proxy_protocol;
pub mod request_id;
pub mod route;
pub mod text;
