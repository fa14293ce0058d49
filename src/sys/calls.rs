//! Per-thread counts of the system calls the splice relay makes (peeks,
//! peek-offset moves, splices), so that tests can bound them per chunk:
//! a chunked body's cost between plain ends is mostly these calls, and a
//! change that adds one per chunk would not show in any byte count.
//!
//! A thread-local increment per call: nothing shared, nothing locked.

use std::cell::Cell;

/// System calls made on this thread since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// `MSG_PEEK` reads of a chunk line ([`super::pipe::peek`]).
    pub peeks: u64,
    /// `SO_PEEK_OFF` settings ([`super::sockopt::set_peek_offset`]).
    pub peek_offsets: u64,
    /// splice(2) calls, into a pipe and out of one.
    pub splices: u64,
}

impl Calls {
    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: Calls) -> Calls {
        Calls {
            peeks: self.peeks - earlier.peeks,
            peek_offsets: self.peek_offsets - earlier.peek_offsets,
            splices: self.splices - earlier.splices,
        }
    }
}

thread_local! {
    static CALLS: Cell<Calls> = const {
        Cell::new(Calls {
            peeks: 0,
            peek_offsets: 0,
            splices: 0,
        })
    };
}

/// This thread's counts so far.
pub fn calls() -> Calls {
    CALLS.with(Cell::get)
}

/// Counts one call into the field `f` picks.
pub(super) fn count(f: impl FnOnce(&mut Calls) -> &mut u64) {
    CALLS.with(|c| {
        let mut calls = c.get();
        *f(&mut calls) += 1;
        c.set(calls);
    });
}
