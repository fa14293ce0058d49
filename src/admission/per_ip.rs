//! Connections per client address, counted across all workers.
//!
//! SO_REUSEPORT spreads one client's connections over every worker, so a
//! per-worker count would either refuse a client early (cap ÷ workers) or
//! let it hold workers × cap. This table is shared: a short critical
//! section in one of [`SHARDS`] mutexes when a connection opens and when
//! it closes, never per request. Counting is exact (no sketch whose
//! collisions would let an attacker's addresses refuse an innocent one),
//! and the table holds one entry per address with connections open, so it
//! is bounded by the connection cap.
//!
//! IPv6 clients are counted per /64: one host is routinely given a whole
//! /64, and counting its addresses one by one would give it 2⁶⁴ shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Independent locks, so two workers opening connections rarely meet.
const SHARDS: usize = 64;

/// The key an address is counted under.
pub fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            // The /64, tagged so it never equals an IPv4 key.
            None => (u128::from(v6) & !u128::from(u64::MAX)) | 1,
        },
    }
}

/// Open connections per address, with a cap.
pub struct PerIp {
    limit: u32,
    shards: Vec<Mutex<HashMap<u128, u32>>>,
    hasher: std::collections::hash_map::RandomState,
}

/// One connection's place in the count; dropping it gives the place back.
pub struct IpHold {
    table: Arc<PerIp>,
    key: u128,
}

impl PerIp {
    pub fn new(limit: u32) -> Arc<PerIp> {
        Arc::new(PerIp {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    fn shard(&self, key: u128) -> &Mutex<HashMap<u128, u32>> {
        use std::hash::BuildHasher;
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[i]
    }

    /// Counts one more connection from `ip`, or `None` when it holds its
    /// share already.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpHold> {
        let key = key(ip);
        // A poisoned shard only means another worker panicked mid-update;
        // the counts in it are still counts.
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(IpHold {
            table: self.clone(),
            key,
        })
    }

    /// Connections counted for `ip` now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let key = key(ip);
        let map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).copied().unwrap_or(0)
    }
}

impl Drop for IpHold {
    fn drop(&mut self) {
        let mut map = self
            .table
            .shard(self.key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_gives_back() {
        let t = PerIp::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = t.acquire(ip).expect("first");
        let _b = t.acquire(ip).expect("second");
        assert!(t.acquire(ip).is_none(), "third is over the limit");
        assert!(t.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert_eq!(t.count(ip), 1);
        assert!(t.acquire(ip).is_some());
    }

    #[test]
    fn the_table_forgets_addresses_with_nothing_open() {
        let t = PerIp::new(1);
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(t.acquire(ip).expect("room"));
        }
        let entries: usize = t.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(entries, 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(v4), key(mapped));
        // No IPv6 /64 collides with an IPv4 address.
        let low: IpAddr = "::c000:207".parse().unwrap();
        assert_ne!(key(low), key(v4));
    }
}
