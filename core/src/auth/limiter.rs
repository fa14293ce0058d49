//! Brute-force defence: failed logins counted per client address and per
//! user name, so a guesser is stopped before it costs any hash work.
//!
//! Pipeline role: inside *authenticate*, between the credential cache and
//! the password check. A credential already in the cache is served without
//! asking the limiter (the limit stops new hash work, it does not lock out
//! known-good users). On a cache miss the caller asks [`Limiter::begin`]
//! (or [`Limiter::check`]); past the limit it answers 429 with
//! `Retry-After: `[`RetryAfter::secs`] and does no hash work at all.
//!
//! Counting: a fixed window per key that opens at the key's first failure
//! and lasts `window`; once `max_failures` failures fall in it, the key is
//! blocked until the window ends, and the next failure after that opens a
//! new window. So a key gets at most `max_failures` guesses per `window`,
//! and `Retry-After` is exact. A request is refused if its address *or* its
//! user name is blocked.
//!
//! Keys: an IPv4 address (IPv4-mapped IPv6 included) or an IPv6 /64 —
//! one host usually holds a whole /64, and counting single IPv6 addresses
//! would give it 2^64 fresh counters. User names are kept only as a keyed
//! 64-bit hash (random key per limiter): no name (which may be a password
//! typed into the wrong field) sits in memory, and lookups cannot be aimed
//! at hash collisions.
//!
//! Memory is bounded: each map holds at most `max_entries` keys. When a new
//! key finds its map full, expired windows are dropped; if that is not
//! enough, the oldest 1/16 of the entries go, keys that are not blocked
//! first, so spraying fresh addresses or names evicts other sprayed keys
//! before it can evict a block. Every operation is O(1) apart from that
//! occasional O(n) sweep.
//!
//! Known-good addresses: a per-user block must not become a way to lock a
//! user out. Every successful check records the (user, address) pair for
//! [`KNOWN_GOOD_TTL`]; from such a pair the *user* block does not apply
//! (the address block still does, and its failures still count). So a
//! stranger's guesses against `alice` stop the stranger and anyone else
//! trying `alice` from a new address, but not alice's own runner or laptop
//! where she logged in recently. A success settles only its own charge: it
//! does not wipe the user's count, or each of alice's logins would hand the
//! guesser a fresh set of guesses.
//!
//! Time is passed in, so the whole machine is pure. One `Limiter` per
//! worker is lock-free but lets a client spread over the workers' listeners
//! get up to `workers × max_failures` guesses per window; one shared behind
//! a mutex gives the exact limit. The caller chooses.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Default cap on tracked keys per map (addresses, user names): about
/// 3 MiB each at most.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;
/// When a map is full of live windows, 1/EVICT_DIVISOR of it is evicted at
/// once, so the O(n) sweep runs at most once per that many new keys.
const EVICT_DIVISOR: usize = 16;
/// How long a successful login keeps its (user, address) pair exempt from
/// that user's block: a week covers a runner or a laptop used on workdays.
pub const KNOWN_GOOD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long until the client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header: rounded up, at least 1
    /// (0 would invite an immediate retry that is still refused).
    pub fn secs(self) -> u64 {
        let whole = self.0.as_secs();
        let secs = if self.0.subsec_nanos() > 0 {
            whole.saturating_add(1)
        } else {
            whole
        };
        secs.max(1)
    }
}

/// The unit an address is counted in: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4([u8; 4]),
    /// The /64 prefix.
    V6([u8; 8]),
}

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    IpKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// One map of windows, bounded.
#[derive(Debug)]
struct Counter<K> {
    windows: HashMap<K, Window>,
}

impl<K: Hash + Eq + Copy> Counter<K> {
    fn new() -> Self {
        Counter {
            windows: HashMap::new(),
        }
    }

    /// Time left while `key` is blocked.
    fn blocked_for(&self, key: &K, cfg: &Config, now: Instant) -> Option<Duration> {
        let w = self.windows.get(key)?;
        let elapsed = now.saturating_duration_since(w.start);
        (w.failures >= cfg.max_failures && elapsed < cfg.window).then(|| cfg.window - elapsed)
    }

    /// Counts one failure; returns the start of the window it counted in.
    fn add_failure(&mut self, key: K, cfg: &Config, now: Instant) -> Instant {
        if !self.windows.contains_key(&key) && self.windows.len() >= cfg.max_entries {
            self.make_room(cfg, now);
        }
        let w = self.windows.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.saturating_duration_since(w.start) >= cfg.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        w.start
    }

    /// Takes back one failure counted in the window that started at `start`,
    /// if that window is still there.
    fn refund(&mut self, key: &K, start: Instant) {
        if let Some(w) = self.windows.get_mut(key) {
            if w.start == start {
                w.failures = w.failures.saturating_sub(1);
            }
        }
    }

    fn purge(&mut self, cfg: &Config, now: Instant) {
        self.windows
            .retain(|_, w| now.saturating_duration_since(w.start) < cfg.window);
    }

    fn make_room(&mut self, cfg: &Config, now: Instant) {
        self.purge(cfg, now);
        if self.windows.len() < cfg.max_entries {
            return;
        }
        let batch = (cfg.max_entries / EVICT_DIVISOR).max(1);
        // Unblocked before blocked, then oldest first.
        let mut order: Vec<(bool, Instant, K)> = self
            .windows
            .iter()
            .map(|(k, w)| (w.failures >= cfg.max_failures, w.start, *k))
            .collect();
        if batch < order.len() {
            order.select_nth_unstable_by(batch, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        }
        for (_, _, key) in order.iter().take(batch) {
            self.windows.remove(key);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    max_failures: u32,
    window: Duration,
    max_entries: usize,
}

impl Config {
    fn enabled(&self) -> bool {
        self.max_failures > 0 && !self.window.is_zero()
    }
}

/// A hash check the limiter has already counted as a failure, to be
/// settled with [`Limiter::finish`]. Dropping it unsettled leaves the
/// failure counted, which is the safe outcome.
#[derive(Debug)]
#[must_use = "settle it with Limiter::finish"]
pub struct Attempt {
    ip: Option<(IpKey, Instant)>,
    user: Option<(u64, Instant)>,
}

/// Failure counters per address and per user name.
#[derive(Debug)]
pub struct Limiter {
    cfg: Config,
    by_ip: Counter<IpKey>,
    by_user: Counter<u64>,
    /// (user, address) pairs that recently proved the password, and when.
    known_good: HashMap<(u64, IpKey), Instant>,
    user_hasher: RandomState,
}

impl Limiter {
    /// `max_failures` per key within `window` (`0` or a zero window turns
    /// limiting off); at most `max_entries` keys per map (at least 1).
    pub fn new(max_failures: u32, window: Duration, max_entries: usize) -> Limiter {
        Limiter {
            cfg: Config {
                max_failures,
                window,
                max_entries: max_entries.max(1),
            },
            by_ip: Counter::new(),
            by_user: Counter::new(),
            known_good: HashMap::new(),
            user_hasher: RandomState::new(),
        }
    }

    fn user_key(&self, user: &str) -> u64 {
        self.user_hasher.hash_one(user)
    }

    /// Whether a check for `ip` and `user` may run now. `user` is `None`
    /// when the request carried no usable user name.
    pub fn check(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Result<(), RetryAfter> {
        if !self.cfg.enabled() {
            return Ok(());
        }
        let ip_key = IpKey::of(ip);
        let by_ip = self.by_ip.blocked_for(&ip_key, &self.cfg, now);
        let by_user = user.and_then(|u| {
            let key = self.user_key(u);
            if self.is_known_good(key, ip_key, now) {
                return None;
            }
            self.by_user.blocked_for(&key, &self.cfg, now)
        });
        match by_ip.max(by_user) {
            Some(wait) => Err(RetryAfter(wait)),
            None => Ok(()),
        }
    }

    /// Counts one failed check against `ip` and `user`.
    pub fn record_failure(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) {
        let _ = self.count(ip, user, now);
    }

    /// [`check`](Self::check), and if it passes, counts the coming check as
    /// failed until [`finish`](Self::finish) says otherwise. Checks running
    /// at the same time then cannot overshoot the limit, as they could
    /// between a `check` and a later `record_failure`.
    pub fn begin(
        &mut self,
        ip: IpAddr,
        user: Option<&str>,
        now: Instant,
    ) -> Result<Attempt, RetryAfter> {
        self.check(ip, user, now)?;
        Ok(self.count(ip, user, now))
    }

    /// Settles an [`Attempt`]. On success its own failure is taken back from
    /// the address and the user, and the pair becomes known-good. Other
    /// failures stay counted: neither a valid account nor alice herself
    /// can reset a guesser's count. On failure nothing changes: it was
    /// counted at `begin`.
    pub fn finish(&mut self, attempt: Attempt, succeeded: bool, now: Instant) {
        if !succeeded {
            return;
        }
        if let Some((key, start)) = attempt.ip {
            self.by_ip.refund(&key, start);
        }
        if let Some((key, start)) = attempt.user {
            self.by_user.refund(&key, start);
        }
        if let (Some((ip, _)), Some((user, _))) = (attempt.ip, attempt.user) {
            self.remember_good(user, ip, now);
        }
    }

    /// Records a successful check for `user` from `ip` made without
    /// [`begin`](Self::begin): the pair becomes known-good.
    pub fn record_success(&mut self, ip: IpAddr, user: &str, now: Instant) {
        if self.cfg.enabled() {
            let key = self.user_key(user);
            self.remember_good(key, IpKey::of(ip), now);
        }
    }

    /// Whether `user` recently authenticated from `ip`.
    pub fn is_known_good_pair(&self, ip: IpAddr, user: &str, now: Instant) -> bool {
        self.is_known_good(self.user_key(user), IpKey::of(ip), now)
    }

    fn is_known_good(&self, user: u64, ip: IpKey, now: Instant) -> bool {
        self.known_good
            .get(&(user, ip))
            .is_some_and(|at| now.saturating_duration_since(*at) < KNOWN_GOOD_TTL)
    }

    /// Bounded like the counters: only valid logins insert here, so a full
    /// map means many real users; expired pairs go first, then the oldest
    /// 1/[`EVICT_DIVISOR`].
    fn remember_good(&mut self, user: u64, ip: IpKey, now: Instant) {
        let max = self.cfg.max_entries;
        if !self.known_good.contains_key(&(user, ip)) && self.known_good.len() >= max {
            self.known_good
                .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_GOOD_TTL);
            if self.known_good.len() >= max {
                let batch = (max / EVICT_DIVISOR).max(1);
                let mut order: Vec<(Instant, (u64, IpKey))> =
                    self.known_good.iter().map(|(k, at)| (*at, *k)).collect();
                if batch < order.len() {
                    order.select_nth_unstable_by_key(batch, |e| e.0);
                }
                for (_, k) in order.iter().take(batch) {
                    self.known_good.remove(k);
                }
            }
        }
        self.known_good.insert((user, ip), now);
    }

    /// Drops every expired window. Optional: full maps purge themselves.
    pub fn purge(&mut self, now: Instant) {
        self.by_ip.purge(&self.cfg, now);
        self.by_user.purge(&self.cfg, now);
        self.known_good
            .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_GOOD_TTL);
    }

    /// Keys tracked: (addresses, user names).
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_ip.windows.len(), self.by_user.windows.len())
    }

    fn count(&mut self, ip: IpAddr, user: Option<&str>, now: Instant) -> Attempt {
        if !self.cfg.enabled() {
            return Attempt {
                ip: None,
                user: None,
            };
        }
        let ip_key = IpKey::of(ip);
        let ip_start = self.by_ip.add_failure(ip_key, &self.cfg, now);
        let user = user.map(|u| {
            let key = self.user_key(u);
            (key, self.by_user.add_failure(key, &self.cfg, now))
        });
        Attempt {
            ip: Some((ip_key, ip_start)),
            user,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
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
}
