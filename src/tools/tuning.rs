//! Host rules: which kernel and process settings cap this configuration.
//!
//! [`HostFacts`] is a plain snapshot of the host (sysctls read under a root
//! directory, resource limits, NIC queues), [`Needs`] what the configuration
//! asks of it, and each rule in [`checks`] is a pure function of the two
//! returning one [`Check`] row. `regproxy check --host` and `tuning/check`
//! print the rows as a table; `regproxy` logs one warning per row that is
//! not [`Verdict::Ok`] when it starts. One set of rules, three front ends.

pub mod checks;
pub mod facts;
#[cfg(test)]
mod tests;

pub use facts::{HostFacts, Nic};

use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use crate::config::{Config, Driver};

/// What this configuration asks of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub workers: usize,
    pub listen: SocketAddr,
    /// The accept backlog each listening socket asks for.
    pub backlog: u32,
    /// Concurrent client connections; `None`: derived from the descriptor
    /// limit at start, so the limit itself is what caps it.
    pub max_connections: Option<u64>,
    pub splice_pipe_size: u64,
    /// Whether the workers try io_uring (`driver = "auto"`).
    pub wants_io_uring: bool,
    /// Whether every upstream server is on a loopback address.
    pub upstream_loopback: bool,
}

impl Needs {
    /// The one place that maps a configuration to what it needs from the host.
    pub fn from_config(config: &Config) -> Needs {
        Needs {
            workers: config.workers,
            listen: config.listen,
            backlog: crate::listen::LISTEN_BACKLOG.unsigned_abs(),
            max_connections: config.max_connections,
            splice_pipe_size: config.splice_pipe_size as u64,
            wants_io_uring: config.driver == Driver::Auto,
            upstream_loopback: config.upstream.servers.iter().all(|s| s.ip().is_loopback()),
        }
    }
}

/// How a setting bears on this configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    /// Caps throughput, concurrency or latency under load, or makes
    /// restarts lose connections; regproxy still works.
    Slows,
    /// regproxy cannot serve this configuration as written.
    Breaks,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Slows => "slows",
            Verdict::Breaks => "breaks",
        })
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub setting: String,
    pub current: String,
    pub recommended: String,
    pub why: String,
    pub verdict: Verdict,
}

/// Every rule, in table order.
pub fn run_all(facts: &HostFacts, needs: &Needs) -> Vec<Check> {
    checks::ALL
        .iter()
        .flat_map(|rule| rule(facts, needs))
        .collect()
}

/// The worst verdict of `rows` (`Ok` when empty).
pub fn worst(rows: &[Check]) -> Verdict {
    rows.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok)
}

/// The rows as an aligned text table; `why` last, unpadded.
pub fn render(rows: &[Check]) -> String {
    let head = ["setting", "current", "recommended", "verdict"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|c| {
            [
                c.setting.clone(),
                c.current.clone(),
                c.recommended.clone(),
                c.verdict.to_string(),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|r| r[i].chars().count())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let mut out = String::new();
    let mut line = |cols: [&str; 4], why: &str| {
        for (c, w) in cols.iter().zip(widths) {
            let _ = write!(out, "{c:<w$}  ");
        }
        let _ = writeln!(out, "{why}");
    };
    line(head, "why");
    for (c, row) in cells.iter().zip(rows) {
        line([&c[0], &c[1], &c[2], &c[3]], &row.why);
    }
    out
}

/// The rows as tab-separated lines (setting, current, recommended, verdict,
/// why), for scripts; tabs inside a field become spaces.
pub fn render_tsv(rows: &[Check]) -> String {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    rows.iter()
        .map(|c| {
            format!(
                "{}\t{}\t{}\t{}\t{}\n",
                clean(&c.setting),
                clean(&c.current),
                clean(&c.recommended),
                c.verdict,
                clean(&c.why)
            )
        })
        .collect()
}
