#![allow(clippy::unwrap_used)]

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const MIN: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn blocks_an_address_after_max_failures_for_the_window() {
    let mut l = Limiter::new(3, MIN, 100);
    let t0 = Instant::now();
    let a = ip("192.0.2.1");
    for i in 0..3 {
        assert_eq!(l.check(a, Some(&format!("u{i}")), t0), Ok(()));
        l.record_failure(a, Some(&format!("u{i}")), t0 + Duration::from_secs(i));
    }
    // Any user from that address, and none, is refused...
    let at = t0 + Duration::from_secs(10);
    assert_eq!(
        l.check(a, Some("fresh"), at),
        Err(RetryAfter(MIN - Duration::from_secs(10)))
    );
    assert_eq!(
        l.check(a, None, at),
        Err(RetryAfter(Duration::from_secs(50)))
    );
    // ...other addresses are not...
    assert_eq!(l.check(ip("192.0.2.2"), Some("fresh"), at), Ok(()));
    // ...and the block ends with the window that opened at the first failure.
    assert!(l
        .check(a, None, t0 + MIN - Duration::from_millis(1))
        .is_err());
    assert_eq!(l.check(a, None, t0 + MIN), Ok(()));
}

#[test]
fn blocks_a_user_name_from_any_address() {
    let mut l = Limiter::new(3, MIN, 100);
    let t0 = Instant::now();
    for i in 0..3 {
        l.record_failure(ip(&format!("198.51.100.{i}")), Some("alice"), t0);
    }
    let wait = l.check(ip("203.0.113.9"), Some("alice"), t0).unwrap_err();
    assert_eq!(wait, RetryAfter(MIN));
    assert_eq!(l.check(ip("203.0.113.9"), Some("bob"), t0), Ok(()));
    assert_eq!(l.check(ip("203.0.113.9"), None, t0), Ok(()));
    // Names are exact.
    assert_eq!(l.check(ip("203.0.113.9"), Some("Alice"), t0), Ok(()));
}

#[test]
fn the_longer_block_is_reported() {
    let mut l = Limiter::new(1, MIN, 100);
    let t0 = Instant::now();
    l.record_failure(ip("192.0.2.1"), Some("x"), t0);
    l.record_failure(ip("192.0.2.2"), Some("alice"), t0 + Duration::from_secs(30));
    let got = l.check(ip("192.0.2.1"), Some("alice"), t0 + Duration::from_secs(40));
    assert_eq!(got, Err(RetryAfter(Duration::from_secs(50))));
}

#[test]
fn fixed_window_restarts_after_it_ends() {
    let mut l = Limiter::new(3, MIN, 100);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    l.record_failure(a, None, t0);
    l.record_failure(a, None, t0 + Duration::from_secs(59));
    // The third failure falls in a new window: count 1, not 3.
    l.record_failure(a, None, t0 + MIN);
    l.record_failure(a, None, t0 + MIN + Duration::from_secs(1));
    assert_eq!(l.check(a, None, t0 + MIN + Duration::from_secs(2)), Ok(()));
    l.record_failure(a, None, t0 + MIN + Duration::from_secs(2));
    assert_eq!(
        l.check(a, None, t0 + MIN + Duration::from_secs(2)),
        Err(RetryAfter(MIN - Duration::from_secs(2)))
    );
}

#[test]
fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
    let mut l = Limiter::new(2, MIN, 100);
    let t0 = Instant::now();
    l.record_failure(ip("2001:db8:1:2:aaaa::1"), None, t0);
    l.record_failure(ip("2001:db8:1:2:bbbb::2"), None, t0);
    assert!(l
        .check(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), None, t0)
        .is_err());
    assert_eq!(l.check(ip("2001:db8:1:3::1"), None, t0), Ok(()));
    let v4 = Ipv4Addr::new(192, 0, 2, 7);
    l.record_failure(IpAddr::V6(v4.to_ipv6_mapped()), None, t0);
    l.record_failure(IpAddr::V4(v4), None, t0);
    assert!(l.check(IpAddr::V4(v4), None, t0).is_err());
    assert!(l.check(IpAddr::V6(v4.to_ipv6_mapped()), None, t0).is_err());
    assert_eq!(l.check(IpAddr::V6(Ipv6Addr::LOCALHOST), None, t0), Ok(()));
}

#[test]
fn zero_turns_limiting_off() {
    let t0 = Instant::now();
    for mut l in [
        Limiter::new(0, MIN, 10),
        Limiter::new(5, Duration::ZERO, 10),
    ] {
        for _ in 0..100 {
            l.record_failure(ip("192.0.2.1"), Some("alice"), t0);
            let a = l.begin(ip("192.0.2.1"), Some("alice"), t0).unwrap();
            l.finish(a, false, t0);
        }
        assert_eq!(l.check(ip("192.0.2.1"), Some("alice"), t0), Ok(()));
        assert_eq!(l.tracked(), (0, 0));
    }
}

#[test]
fn begin_counts_checks_in_flight() {
    let mut l = Limiter::new(3, MIN, 100);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    // Three concurrent checks pass; a fourth is refused before any of
    // them finished.
    let attempts: Vec<Attempt> = (0..3)
        .map(|_| l.begin(a, Some("alice"), t0).unwrap())
        .collect();
    assert!(l.begin(a, Some("bob"), t0).is_err());
    assert!(l.check(ip("192.0.2.99"), Some("alice"), t0).is_err());
    // One succeeds: its charge is refunded, which unblocks alice.
    let mut it = attempts.into_iter();
    l.finish(it.next().unwrap(), true, t0);
    assert_eq!(l.check(ip("192.0.2.99"), Some("alice"), t0), Ok(()));
    let next = l.begin(a, Some("bob"), t0).unwrap();
    assert!(l.begin(a, Some("carol"), t0).is_err());
    // Failures stay counted.
    for at in it {
        l.finish(at, false, t0);
    }
    l.finish(next, false, t0);
    assert!(l.check(a, None, t0).is_err());
}

#[test]
fn a_refund_never_reaches_into_a_newer_window() {
    let mut l = Limiter::new(2, MIN, 100);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    let old = l.begin(a, None, t0).unwrap();
    l.record_failure(a, None, t0 + MIN);
    l.record_failure(a, None, t0 + MIN);
    l.finish(old, true, t0 + MIN);
    assert!(l.check(a, None, t0 + MIN).is_err());
}

#[test]
fn success_settles_only_its_own_charge() {
    let mut l = Limiter::new(2, MIN, 100);
    let a = ip("192.0.2.1");
    let t0 = Instant::now();
    l.record_failure(ip("192.0.2.50"), Some("alice"), t0);
    let mine = l.begin(a, Some("alice"), t0).unwrap();
    assert!(l.check(ip("192.0.2.77"), Some("alice"), t0).is_err());
    l.finish(mine, true, t0);
    // The stranger's failure stays: one more guess and alice's name is
    // blocked again, for new addresses.
    assert_eq!(l.check(ip("192.0.2.77"), Some("alice"), t0), Ok(()));
    l.record_failure(ip("192.0.2.50"), Some("alice"), t0);
    assert!(l.check(ip("192.0.2.77"), Some("alice"), t0).is_err());
}

#[test]
fn a_strangers_guesses_do_not_lock_alice_out_of_her_runner() {
    let mut l = Limiter::new(3, MIN, 100);
    let runner = ip("192.0.2.10");
    let t0 = Instant::now();
    // Alice's runner logged in yesterday.
    let ok = l.begin(runner, Some("alice"), t0).unwrap();
    l.finish(ok, true, t0);
    let now = t0 + Duration::from_secs(24 * 3600);
    // A stranger spends three guesses on alice from many addresses.
    for i in 0..3 {
        let a = l
            .begin(ip(&format!("203.0.113.{i}")), Some("alice"), now)
            .unwrap();
        l.finish(a, false, now);
    }
    // Alice's name is blocked for new addresses, the stranger included...
    assert!(l.check(ip("203.0.113.200"), Some("alice"), now).is_err());
    assert!(!l.is_known_good_pair(ip("203.0.113.200"), "alice", now));
    // ...but not from the runner, which can still try (and succeed).
    assert!(l.is_known_good_pair(runner, "alice", now));
    let again = l.begin(runner, Some("alice"), now).unwrap();
    l.finish(again, true, now);
    // The runner's success did not hand the stranger new guesses.
    assert!(l.check(ip("203.0.113.200"), Some("alice"), now).is_err());
    // The allowance is per user: bob from the runner's address is
    // judged on bob's own count.
    assert!(!l.is_known_good_pair(runner, "bob", now));
    // And it ends: a week after its last login the pair is not known.
    assert!(l.is_known_good_pair(runner, "alice", t0 + KNOWN_GOOD_TTL));
    let later = now + KNOWN_GOOD_TTL;
    assert!(!l.is_known_good_pair(runner, "alice", later));
}

#[test]
fn a_known_good_address_is_still_limited_as_an_address() {
    let mut l = Limiter::new(2, MIN, 100);
    let shared_nat = ip("192.0.2.10");
    let t0 = Instant::now();
    l.record_success(shared_nat, "alice", t0);
    // Guessing alice from her own (shared) address is stopped by the
    // address count: the allowance lifts only the user block.
    for _ in 0..2 {
        let a = l.begin(shared_nat, Some("alice"), t0).unwrap();
        l.finish(a, false, t0);
    }
    assert!(l.check(shared_nat, Some("alice"), t0).is_err());
}

#[test]
fn known_good_pairs_are_bounded() {
    let cap = 32;
    let mut l = Limiter::new(3, MIN, cap);
    let t0 = Instant::now();
    for i in 0..10 * cap as u32 {
        let t = t0 + Duration::from_millis(u64::from(i));
        l.record_success(IpAddr::V4(Ipv4Addr::from(i)), "alice", t);
        assert!(l.known_good.len() <= cap);
    }
    // The newest pair survives the eviction of older ones.
    let last = IpAddr::V4(Ipv4Addr::from(10 * cap as u32 - 1));
    assert!(l.is_known_good_pair(last, "alice", t0 + MIN));
}

#[test]
fn memory_stays_bounded_under_spraying() {
    let cap = 256;
    let mut l = Limiter::new(3, MIN, cap);
    let t0 = Instant::now();
    // A real block, then a spray of fresh addresses and names.
    let victim = ip("192.0.2.1");
    for _ in 0..3 {
        l.record_failure(victim, Some("alice"), t0);
    }
    for i in 0..20 * cap as u32 {
        let t = t0 + Duration::from_millis(u64::from(i));
        let sprayed = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        l.record_failure(sprayed, Some(&format!("user{i}")), t);
        let (ips, users) = l.tracked();
        assert!(ips <= cap && users <= cap, "{ips} {users}");
    }
    // Unblocked sprayed keys went first; the blocks survived.
    let t = t0 + Duration::from_secs(30);
    assert!(l.check(victim, None, t).is_err());
    assert!(l.check(ip("203.0.113.1"), Some("alice"), t).is_err());
}

#[test]
fn expired_windows_are_purged_first() {
    let cap = 8;
    let mut l = Limiter::new(1, MIN, cap);
    let t0 = Instant::now();
    for i in 0..cap as u32 {
        l.record_failure(IpAddr::V4(Ipv4Addr::from(i)), None, t0);
    }
    assert_eq!(l.tracked(), (cap, 0));
    // All are blocked; once expired they make room without eviction.
    l.record_failure(ip("192.0.2.1"), None, t0 + MIN);
    assert_eq!(l.tracked(), (1, 0));
    l.purge(t0 + 2 * MIN);
    assert_eq!(l.tracked(), (0, 0));
}

#[test]
fn full_of_blocks_evicts_the_oldest() {
    let cap = 16;
    let mut l = Limiter::new(1, MIN, cap);
    let t0 = Instant::now();
    for i in 0..cap as u32 {
        l.record_failure(
            IpAddr::V4(Ipv4Addr::from(i)),
            None,
            t0 + Duration::from_millis(u64::from(i)),
        );
    }
    l.record_failure(ip("192.0.2.1"), None, t0 + Duration::from_secs(1));
    // One sixteenth (here 1) went: the oldest.
    let t = t0 + Duration::from_secs(2);
    assert_eq!(l.check(IpAddr::V4(Ipv4Addr::from(0)), None, t), Ok(()));
    assert!(l.check(IpAddr::V4(Ipv4Addr::from(1)), None, t).is_err());
    assert!(l.check(ip("192.0.2.1"), None, t).is_err());
    assert_eq!(l.tracked().0, cap);
}

#[test]
fn time_going_backwards_does_not_panic() {
    let mut l = Limiter::new(1, MIN, 4);
    let t0 = Instant::now() + MIN;
    l.record_failure(ip("192.0.2.1"), Some("a"), t0);
    let earlier = t0 - Duration::from_secs(5);
    assert_eq!(
        l.check(ip("192.0.2.1"), Some("a"), earlier),
        Err(RetryAfter(MIN))
    );
    l.record_failure(ip("192.0.2.1"), Some("a"), earlier);
    l.purge(earlier);
}

#[test]
fn retry_after_rounds_up_to_whole_seconds() {
    assert_eq!(RetryAfter(Duration::from_secs(60)).secs(), 60);
    assert_eq!(RetryAfter(Duration::from_millis(59_001)).secs(), 60);
    assert_eq!(RetryAfter(Duration::from_millis(1)).secs(), 1);
    assert_eq!(RetryAfter(Duration::ZERO).secs(), 1);
    assert_eq!(RetryAfter(Duration::MAX).secs(), u64::MAX);
}
