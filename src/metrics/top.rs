//! The opt-in top-N repositories (`[admin] top_repositories = N`):
//! requests and body bytes for the busiest repositories only, so a label
//! never grows with the number of repositories.
//!
//! Each worker keeps a bounded table ([`TopTable`], `8 × N` names, at
//! least 64) with the Space-Saving rule (Metwally et al., 2005): a name
//! not in a full table replaces the one with the fewest bytes and inherits
//! its counts. A repository's numbers are therefore upper bounds, exact
//! for names never evicted, and any repository with more than 1/capacity
//! of a worker's bytes is always in its table. Rank is by bytes (in + out),
//! then requests.
//!
//! The worker owns its table (no lock on the request path) and publishes
//! a copy every flush tick (200 ms) into its slot of the [`TopBoard`] with
//! `try_lock`, skipping the tick if a scrape holds the slot. A scrape sums
//! the published copies by name and keeps the top N: numbers lag by at
//! most a tick.

use std::fmt::Write as _;
use std::sync::Mutex;

/// One repository's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoCount {
    pub name: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl RepoCount {
    fn weight(&self) -> (u64, u64) {
        (self.bytes_in.saturating_add(self.bytes_out), self.requests)
    }
}

/// A worker's bounded table. Pure.
#[derive(Debug, Clone)]
pub struct TopTable {
    capacity: usize,
    entries: Vec<RepoCount>,
}

impl TopTable {
    /// The table for a top `n`.
    pub fn for_top(n: usize) -> TopTable {
        TopTable::with_capacity((n * 8).max(64))
    }

    pub fn with_capacity(capacity: usize) -> TopTable {
        TopTable {
            capacity: capacity.max(1),
            entries: Vec::new(),
        }
    }

    pub fn record(&mut self, name: &str, bytes_in: u64, bytes_out: u64) {
        let i = match self.entries.iter().position(|e| e.name == name) {
            Some(i) => i,
            None if self.entries.len() < self.capacity => {
                self.entries.push(RepoCount {
                    name: name.to_owned(),
                    ..RepoCount::default()
                });
                self.entries.len() - 1
            }
            None => {
                // Space-Saving: the smallest entry makes room and leaves
                // its counts to the newcomer.
                let Some((i, _)) = self
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.weight())
                else {
                    return;
                };
                if let Some(e) = self.entries.get_mut(i) {
                    name.clone_into(&mut e.name);
                }
                i
            }
        };
        if let Some(e) = self.entries.get_mut(i) {
            e.requests += 1;
            e.bytes_in = e.bytes_in.saturating_add(bytes_in);
            e.bytes_out = e.bytes_out.saturating_add(bytes_out);
        }
    }

    pub fn entries(&self) -> &[RepoCount] {
        &self.entries
    }
}

/// Sums `tables` by name and returns the `n` heaviest, heaviest first.
pub fn merge<'a>(tables: impl Iterator<Item = &'a [RepoCount]>, n: usize) -> Vec<RepoCount> {
    let mut all: std::collections::HashMap<&str, RepoCount> = std::collections::HashMap::new();
    for e in tables.flatten() {
        let sum = all.entry(&e.name).or_insert_with(|| RepoCount {
            name: e.name.clone(),
            ..RepoCount::default()
        });
        sum.requests += e.requests;
        sum.bytes_in = sum.bytes_in.saturating_add(e.bytes_in);
        sum.bytes_out = sum.bytes_out.saturating_add(e.bytes_out);
    }
    let mut top: Vec<RepoCount> = all.into_values().collect();
    top.sort_by(|a, b| {
        b.weight()
            .cmp(&a.weight())
            .then_with(|| a.name.cmp(&b.name))
    });
    top.truncate(n);
    top
}

/// Where workers publish their tables and the admin port reads them.
#[derive(Debug)]
pub struct TopBoard {
    n: usize,
    slots: Vec<Mutex<Vec<RepoCount>>>,
}

impl TopBoard {
    pub fn new(n: usize, workers: usize) -> TopBoard {
        TopBoard {
            n,
            slots: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// How many repositories a scrape names; 0 when off.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Copies worker `w`'s table into its slot, unless a scrape is reading
    /// it right now: the worker never waits.
    pub fn publish(&self, w: usize, table: &TopTable) {
        if let Some(Ok(mut slot)) = self.slots.get(w).map(Mutex::try_lock) {
            slot.clone_from(&table.entries);
        }
    }

    /// The per-repository series, when enabled.
    pub fn render(&self, out: &mut String) {
        if self.n == 0 {
            return;
        }
        let copies: Vec<Vec<RepoCount>> = self
            .slots
            .iter()
            .map(|s| s.lock().map(|v| v.clone()).unwrap_or_default())
            .collect();
        let top = merge(copies.iter().map(Vec::as_slice), self.n);
        let _ = writeln!(
            out,
            "# HELP regproxy_top_repository_requests_total Requests to the busiest repositories ([admin] top_repositories; approximate, see docs/operations.md).\n\
             # TYPE regproxy_top_repository_requests_total counter"
        );
        for r in &top {
            let _ = writeln!(
                out,
                "regproxy_top_repository_requests_total{{repository=\"{}\"}} {}",
                r.name, r.requests
            );
        }
        let _ = writeln!(
            out,
            "# HELP regproxy_top_repository_bytes_total Body bytes of the busiest repositories, by direction (in: from clients).\n\
             # TYPE regproxy_top_repository_bytes_total counter"
        );
        for r in &top {
            for (dir, n) in [("in", r.bytes_in), ("out", r.bytes_out)] {
                let _ = writeln!(
                    out,
                    "regproxy_top_repository_bytes_total{{repository=\"{}\",direction=\"{dir}\"}} {n}",
                    r.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_lightest_and_keeps_heavy_hitters() {
        let mut t = TopTable::with_capacity(2);
        t.record("big", 0, 1000);
        t.record("small", 0, 1);
        t.record("new", 0, 5);
        let names: Vec<&str> = t.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["big", "new"]);
        // The newcomer inherited "small"'s counts: an upper bound.
        let new = &t.entries()[1];
        assert_eq!((new.requests, new.bytes_out), (2, 6));
        assert_eq!(t.entries().len(), 2, "bounded");
    }

    #[test]
    fn merge_sums_workers_and_keeps_the_top_n() {
        let mut a = TopTable::with_capacity(8);
        let mut b = TopTable::with_capacity(8);
        a.record("x", 10, 0);
        b.record("x", 10, 0);
        a.record("y", 15, 0);
        b.record("z", 1, 0);
        let top = merge([a.entries(), b.entries()].into_iter(), 2);
        let got: Vec<(&str, u64, u64)> = top
            .iter()
            .map(|r| (r.name.as_str(), r.requests, r.bytes_in))
            .collect();
        assert_eq!(got, [("x", 2, 20), ("y", 1, 15)]);
    }

    #[test]
    fn the_board_renders_only_when_enabled() {
        let mut out = String::new();
        TopBoard::new(0, 1).render(&mut out);
        assert!(out.is_empty());
        let board = TopBoard::new(1, 2);
        let mut t = TopTable::for_top(1);
        t.record("team/app", 3, 4);
        board.publish(1, &t);
        board.render(&mut out);
        assert!(
            out.contains("regproxy_top_repository_requests_total{repository=\"team/app\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("regproxy_top_repository_bytes_total{repository=\"team/app\",direction=\"out\"} 4\n"), "{out}");
    }
}
