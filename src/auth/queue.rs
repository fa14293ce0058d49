//! The hash pool's waiting line: which cache misses may wait for a hash
//! thread, and in what order. Pure; `auth::cache` wraps it in a mutex and a
//! condition variable.
//!
//! A plain bounded FIFO lets whoever sends most fill it, and then every
//! other miss is refused with 503, valid logins included. Two rules keep
//! real users in:
//! - **Priority lane.** A check for a (user, address) pair that recently
//!   authenticated (the limiter's known-good pairs) may use a reserve of
//!   the queue the others may not, and is served first. A guesser cannot
//!   get there without the password; alice's runner is there after its
//!   first login.
//! - **Per-address share.** In the normal lane one address (IPv4, or IPv6
//!   /64) may hold at most [`per_address_cap`] waiting checks, so a few
//!   busy addresses cannot take the whole line.
//!
//! The lane never depends on whether the user name exists: an unknown name
//! waiting in a different line would be a timing and a 503 oracle for user
//! enumeration.

use std::collections::{HashMap, VecDeque};

use super::limiter::IpKey;

/// The share of the queue only the priority lane may use: a quarter.
const RESERVE_DIVISOR: usize = 4;
/// One address may hold at most 1/PER_ADDRESS_DIVISOR of the normal lane.
const PER_ADDRESS_DIVISOR: usize = 16;

/// Which line a check waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The pair authenticated recently.
    Priority,
    Normal,
}

/// A bounded two-lane queue with a per-address cap on the normal lane.
#[derive(Debug)]
pub struct FairQueue<T> {
    cap: usize,
    priority: VecDeque<T>,
    normal: VecDeque<(IpKey, T)>,
    /// Waiting checks per address in the normal lane (no zero entries).
    per_address: HashMap<IpKey, usize>,
}

/// How many normal-lane checks one address may have waiting.
pub fn per_address_cap(cap: usize) -> usize {
    (normal_cap(cap) / PER_ADDRESS_DIVISOR).max(1)
}

/// The part of the queue open to the normal lane.
fn normal_cap(cap: usize) -> usize {
    if cap <= 1 {
        return cap;
    }
    cap - (cap / RESERVE_DIVISOR).max(1)
}

impl<T> FairQueue<T> {
    /// A queue of at most `cap` waiting checks in all.
    pub fn new(cap: usize) -> Self {
        FairQueue {
            cap,
            priority: VecDeque::new(),
            normal: VecDeque::new(),
            per_address: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.priority.len() + self.normal.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `item`, or hands it back when its lane or its address has no
    /// room (the caller answers 503 at once).
    pub fn push(&mut self, lane: Lane, addr: IpKey, item: T) -> Result<(), T> {
        if self.len() >= self.cap {
            return Err(item);
        }
        match lane {
            Lane::Priority => self.priority.push_back(item),
            Lane::Normal => {
                let mine = self.per_address.get(&addr).copied().unwrap_or(0);
                if self.len() >= normal_cap(self.cap) || mine >= per_address_cap(self.cap) {
                    return Err(item);
                }
                self.per_address.insert(addr, mine + 1);
                self.normal.push_back((addr, item));
            }
        }
        Ok(())
    }

    /// The next check to run: the priority lane first, then the normal
    /// lane in arrival order.
    pub fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.priority.pop_front() {
            return Some(item);
        }
        let (addr, item) = self.normal.pop_front()?;
        match self.per_address.get_mut(&addr) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                self.per_address.remove(&addr);
            }
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn addr(i: u32) -> IpKey {
        IpKey::of(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
    }

    #[test]
    fn caps_follow_the_queue_size() {
        assert_eq!(normal_cap(256), 192);
        assert_eq!(per_address_cap(256), 12);
        assert_eq!(normal_cap(4), 3);
        assert_eq!(per_address_cap(4), 1);
        assert_eq!(normal_cap(1), 1);
        assert_eq!(normal_cap(0), 0);
    }

    #[test]
    fn one_address_cannot_fill_the_line() {
        let mut q = FairQueue::new(256);
        let mut queued = 0;
        for i in 0..1000 {
            if q.push(Lane::Normal, addr(1), i).is_ok() {
                queued += 1;
            }
        }
        assert_eq!(queued, per_address_cap(256));
        // Others still get in.
        assert!(q.push(Lane::Normal, addr(2), 0).is_ok());
    }

    #[test]
    fn a_flood_from_many_addresses_leaves_the_reserve_to_known_pairs() {
        let mut q = FairQueue::new(256);
        for i in 0..1000 {
            let _ = q.push(Lane::Normal, addr(i), i);
        }
        assert_eq!(q.len(), normal_cap(256));
        assert!(q.push(Lane::Normal, addr(5000), 0).is_err());
        // The runner's login gets in and is served next.
        assert!(q.push(Lane::Priority, addr(7), 4242).is_ok());
        assert_eq!(q.pop(), Some(4242));
        assert_eq!(q.pop(), Some(0));
    }

    #[test]
    fn the_whole_queue_is_the_limit_for_everyone() {
        let mut q = FairQueue::new(4);
        for i in 0..4 {
            assert!(q.push(Lane::Priority, addr(i), i).is_ok());
        }
        assert_eq!(q.push(Lane::Priority, addr(9), 9), Err(9));
        assert_eq!(q.push(Lane::Normal, addr(9), 9), Err(9));
    }

    #[test]
    fn counts_are_released_as_checks_leave() {
        let mut q = FairQueue::new(64);
        let cap = per_address_cap(64);
        for i in 0..cap {
            assert!(q.push(Lane::Normal, addr(1), i).is_ok());
        }
        assert!(q.push(Lane::Normal, addr(1), 99).is_err());
        assert_eq!(q.pop(), Some(0));
        assert!(q.push(Lane::Normal, addr(1), 100).is_ok());
        while q.pop().is_some() {}
        assert!(q.is_empty());
        assert!(q.per_address.is_empty());
    }
}
