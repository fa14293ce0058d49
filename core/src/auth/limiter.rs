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
mod tests;
