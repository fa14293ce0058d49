//! The edge cache end to end, with real parts: the real registry (a fake
//! origin only for what it cannot do on demand: lie, stall, answer 429),
//! real clients, real processes killed by pid, a real full disk.
//!
//! - `clients`: docker, podman, ctr and skopeo pull cold, then hot; the
//!   registry sends each blob once.
//! - `authz`: a blob cached through one repository is never served to
//!   another the registry would refuse; a deleted blob stops at once.
//! - `faults`: a lying origin, `kill -9` mid-fill, the registry stopped or
//!   overloaded (`stale_if_error`), an unusable cache folder, a full disk,
//!   and no `[cache]` at all.
//! - `serving`: Range and HEAD from a hit against the registry's own
//!   answers, eviction under readers, 64 concurrent cold pulls, TLS.
//!
//! Each test says in a comment what would fail without the cache feature.
#![allow(clippy::unwrap_used)]

mod support;

#[path = "cache/authz.rs"]
mod authz;
#[path = "cache/clients.rs"]
mod clients;
#[path = "cache/faults.rs"]
mod faults;
#[path = "cache/serving.rs"]
mod serving;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
