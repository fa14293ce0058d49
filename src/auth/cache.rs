//! The verified-credential cache: how a bcrypt check (50–250 ms) runs at most
//! once per credential per TTL across every core, never on an event loop.
//!
//! Three tiers, cheapest first:
//! 1. each worker's own map ([`LocalVerifier`]): no lock, no shared write;
//! 2. on a local miss, the process-wide map under a mutex, which also records
//!    checks in flight so that concurrent first requests wait for one hash;
//! 3. a bounded pool of hash threads. When its queue is full, a miss is
//!    refused at once ([`AuthFailure::Busy`]) rather than queued without end.
//!    The queue ([`super::queue`]) is fair per address and keeps a reserve
//!    for (user, address) pairs that authenticated recently, so a guessing
//!    flood from many addresses does not turn valid logins away.
//!
//! Cheap schemes (apr1, `{SHA}`, `{SSHA}`, `{PLAIN}`) skip tiers 2 and 3:
//! they are checked on the worker itself, with the same limiter accounting,
//! since a cross-thread hop would cost more than the hash.
//!
//! Unknown users are checked against the file's stand-in
//! ([`Htpasswd::unknown_user_dummy`]) along the same path as a known user's
//! wrong password, so neither the time nor the answer tells them apart.
//!
//! Keys are keyed BLAKE3 hashes of `user \0 password` under a random
//! per-process key, so the cache never holds a password and its contents are
//! useless outside this process. An entry also records the stored hash it was
//! checked against; when the htpasswd file changes that user's line (or drops
//! it), the entry stops matching on the very next request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::basic::Credentials;
use super::htpasswd::{dummy_hash, Htpasswd, PasswordHash};
use super::limiter::{Attempt, IpKey, Limiter, RetryAfter};
use super::queue::{FairQueue, Lane};

/// Entries beyond this are evicted (expired first, then all): valid
/// credentials are few, but bcrypt ignores bytes past 72, so one valid user
/// could otherwise mint endless distinct keys.
pub const MAX_CACHE_ENTRIES: usize = 65_536;

/// Cost of the stand-in for unknown users when the user database has none
/// of its own (only files loaded by hand, as in tests, lack one):
/// htpasswd -B's default.
const FALLBACK_DUMMY_COST: u32 = 5;

/// Why a credential was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown user or wrong password.
    Invalid,
    /// The hash pool's queue is full; try again later.
    Busy,
    /// Too many failures from this address or for this user: no hash work
    /// is done until the window passes.
    Limited(RetryAfter),
}

/// A keyed hash of one credential.
type CredKey = [u8; 32];

/// The key is already uniformly random: use its first bytes as the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
            self.0 = self.0.rotate_left(29);
        }
    }
}

type KeyMap<V> = HashMap<CredKey, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone)]
struct Verified {
    /// The stored hash this credential was checked against.
    hash: PasswordHash,
    at: Instant,
}

enum SharedEntry {
    Verified(Verified),
    Pending(Vec<oneshot::Sender<Result<(), AuthFailure>>>),
}

struct Job {
    key: CredKey,
    password: zeroize::Zeroizing<Vec<u8>>,
    /// The user's hash, or for an unknown user the stand-in of equal cost.
    check: PasswordHash,
    /// Whether `check` is the user's own hash; a match against the
    /// stand-in never counts.
    real: bool,
    /// The limiter's count for this check, settled when it ends.
    attempt: Attempt,
}

/// The waiting line shared by the hash threads.
struct Pool {
    queue: Mutex<PoolState>,
    ready: Condvar,
}

struct PoolState {
    jobs: FairQueue<Job>,
    /// Set when the [`Verifier`] goes: the threads exit.
    closed: bool,
}

/// Process-wide state: the user database, the shared cache and the hash pool.
pub struct Verifier {
    key: [u8; 32],
    ttl: Duration,
    shared: Mutex<KeyMap<SharedEntry>>,
    pool: Arc<Pool>,
    fallback_dummy: PasswordHash,
    hash_runs: AtomicU64,
    /// Consulted only when a check would cost a hash: cached credentials
    /// never touch it, so a flood of failures cannot lock out known users.
    limiter: Mutex<Limiter>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Starts `threads` hash threads behind a queue of `queue` pending checks.
    pub fn start(
        ttl: Duration,
        threads: usize,
        queue: usize,
        limiter: Limiter,
    ) -> std::io::Result<Arc<Verifier>> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        let pool = Arc::new(Pool {
            queue: Mutex::new(PoolState {
                jobs: FairQueue::new(queue),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let verifier = Arc::new(Verifier {
            key,
            ttl,
            shared: Mutex::new(KeyMap::default()),
            pool: pool.clone(),
            fallback_dummy: dummy_hash(FALLBACK_DUMMY_COST),
            hash_runs: AtomicU64::new(0),
            limiter: Mutex::new(limiter),
        });
        for i in 0..threads.max(1) {
            let pool = pool.clone();
            // A weak handle lets the process exit without joining the pool.
            let v = Arc::downgrade(&verifier);
            std::thread::Builder::new()
                .name(format!("regproxy-hash-{i}"))
                .spawn(move || hash_thread(&pool, &v))?;
        }
        Ok(verifier)
    }

    /// How many password hashes have been computed since start.
    pub fn hash_runs(&self) -> u64 {
        self.hash_runs.load(Ordering::Relaxed)
    }

    /// Checks waiting for a hash thread now; for the admin port, which
    /// takes the queue's lock once per scrape.
    pub fn queue_depth(&self) -> usize {
        self.pool
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .jobs
            .len()
    }

    fn key_of(&self, creds: &Credentials) -> CredKey {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(creds.user.as_bytes());
        h.update(&[0]);
        h.update(creds.password());
        *h.finalize().as_bytes()
    }

    fn fresh(&self, v: &Verified, now: Instant) -> bool {
        now.duration_since(v.at) < self.ttl
    }

    /// What `creds` are checked against: the user's hash, or the stand-in.
    fn target<'a>(
        &'a self,
        users: &'a Htpasswd,
        current: Option<&'a PasswordHash>,
    ) -> &'a PasswordHash {
        current.unwrap_or_else(|| users.unknown_user_dummy().unwrap_or(&self.fallback_dummy))
    }

    /// A cheap check, run right here: the limiter is asked and settled as
    /// for a pooled check, so the two paths differ only in where the hash
    /// runs.
    fn verify_inline(
        &self,
        creds: &Credentials,
        current: Option<&PasswordHash>,
        target: &PasswordHash,
        client: IpAddr,
    ) -> Result<Verified, AuthFailure> {
        let now = Instant::now();
        let attempt = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .begin(client, Some(&creds.user), now)
            .map_err(AuthFailure::Limited)?;
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        // Always run the check, then decide: no shortcut for unknown users.
        let matched = target.verify(creds.password());
        let ok = matched && current.is_some();
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(attempt, ok, Instant::now());
        match current {
            Some(hash) if ok => Ok(Verified {
                hash: hash.clone(),
                at: now,
            }),
            _ => Err(AuthFailure::Invalid),
        }
    }

    /// Tier 2 and 3: the shared map, then the pool.
    async fn verify_shared(
        &self,
        key: CredKey,
        creds: &Credentials,
        current: Option<&PasswordHash>,
        target: &PasswordHash,
        client: IpAddr,
    ) -> Result<Verified, AuthFailure> {
        let now = Instant::now();
        let rx = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            match shared.get_mut(&key) {
                Some(SharedEntry::Verified(v))
                    if self.fresh(v, now) && current == Some(&v.hash) =>
                {
                    return Ok(v.clone());
                }
                Some(SharedEntry::Pending(waiters)) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    rx
                }
                _ => {
                    // Past the limit, refuse before any hash work. A check
                    // that cannot be queued stays counted as a failure:
                    // saturating the pool must not reset anyone's count.
                    let (attempt, lane) = {
                        let mut limiter =
                            self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
                        let attempt = limiter
                            .begin(client, Some(&creds.user), now)
                            .map_err(AuthFailure::Limited)?;
                        // Known-good pairs may use the queue's reserve. Only
                        // a past success decides, never whether the name
                        // exists (that would be an enumeration oracle).
                        let lane = if limiter.is_known_good_pair(client, &creds.user, now) {
                            Lane::Priority
                        } else {
                            Lane::Normal
                        };
                        (attempt, lane)
                    };
                    let job = Job {
                        key,
                        password: zeroize::Zeroizing::new(creds.password().to_vec()),
                        check: target.clone(),
                        real: current.is_some(),
                        attempt,
                    };
                    self.enqueue(lane, IpKey::of(client), job)?;
                    let (tx, rx) = oneshot::channel();
                    if shared.len() >= MAX_CACHE_ENTRIES {
                        evict(&mut shared, now, self.ttl);
                    }
                    shared.insert(key, SharedEntry::Pending(vec![tx]));
                    rx
                }
            }
        };
        match rx.await {
            Ok(Ok(())) => {
                let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                match shared.get(&key) {
                    Some(SharedEntry::Verified(v)) => Ok(v.clone()),
                    // Evicted in between: the check itself did succeed.
                    _ => Ok(Verified {
                        hash: current.cloned().ok_or(AuthFailure::Invalid)?,
                        at: now,
                    }),
                }
            }
            Ok(Err(e)) => Err(e),
            // The pool dropped the job (process shutting down).
            Err(oneshot::Canceled) => Err(AuthFailure::Busy),
        }
    }

    /// Queues a check for the pool, or refuses it at once when its lane or
    /// its address has no room.
    fn enqueue(&self, lane: Lane, addr: IpKey, job: Job) -> Result<(), AuthFailure> {
        let mut state = self
            .pool
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.closed || state.jobs.push(lane, addr, job).is_err() {
            // The job's limiter charge stays counted: saturating the pool
            // must not reset anyone's count.
            return Err(AuthFailure::Busy);
        }
        drop(state);
        self.pool.ready.notify_one();
        Ok(())
    }

    /// Runs on a hash thread.
    fn run_job(&self, job: Job) {
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        // Always run the check, then decide: no shortcut for the stand-in.
        let matched = job.check.verify(&job.password);
        let ok = matched && job.real;
        let waiters = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let waiters = match shared.remove(&job.key) {
                Some(SharedEntry::Pending(w)) => w,
                _ => Vec::new(),
            };
            if ok {
                shared.insert(
                    job.key,
                    SharedEntry::Verified(Verified {
                        hash: job.check.clone(),
                        at: Instant::now(),
                    }),
                );
            }
            waiters
        };
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(job.attempt, ok, Instant::now());
        let outcome = if ok {
            Ok(())
        } else {
            Err(AuthFailure::Invalid)
        };
        for w in waiters {
            let _ = w.send(outcome);
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.pool
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.pool.ready.notify_all();
    }
}

fn hash_thread(pool: &Pool, verifier: &Weak<Verifier>) {
    loop {
        let job = {
            let mut state = pool.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if state.closed {
                    return;
                }
                if let Some(job) = state.jobs.pop() {
                    break job;
                }
                state = pool
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        match verifier.upgrade() {
            Some(v) => v.run_job(job),
            None => return,
        }
    }
}

fn evict<V: HasAge>(map: &mut KeyMap<V>, now: Instant, ttl: Duration) {
    map.retain(|_, v| v.age(now).is_none_or(|age| age < ttl));
    if map.len() >= MAX_CACHE_ENTRIES {
        map.retain(|_, v| v.age(now).is_none());
    }
}

trait HasAge {
    /// `None` for entries that must not be evicted (checks in flight).
    fn age(&self, now: Instant) -> Option<Duration>;
}

impl HasAge for SharedEntry {
    fn age(&self, now: Instant) -> Option<Duration> {
        match self {
            SharedEntry::Verified(v) => Some(now.duration_since(v.at)),
            SharedEntry::Pending(_) => None,
        }
    }
}

impl HasAge for Verified {
    fn age(&self, now: Instant) -> Option<Duration> {
        Some(now.duration_since(self.at))
    }
}

/// A worker's handle: its own map in front of the shared one.
pub struct LocalVerifier {
    shared: Arc<Verifier>,
    local: RefCell<KeyMap<Verified>>,
}

impl LocalVerifier {
    pub fn new(shared: Arc<Verifier>) -> Self {
        Self {
            shared,
            local: RefCell::new(KeyMap::default()),
        }
    }

    /// Whether `creds` name a user of `users` (the request's snapshot of the
    /// htpasswd file) with the right password. Hashes only on a miss, and
    /// never on this thread.
    pub async fn authenticate(
        &self,
        users: &Htpasswd,
        creds: &Credentials,
        client: IpAddr,
    ) -> Result<(), AuthFailure> {
        self.check(users, creds, client).await.map(drop)
    }

    /// [`LocalVerifier::authenticate`], telling whether the worker's own
    /// cache answered.
    pub async fn check(
        &self,
        users: &Htpasswd,
        creds: &Credentials,
        client: IpAddr,
    ) -> Result<Lookup, AuthFailure> {
        let key = self.shared.key_of(creds);
        let current = users.get(&creds.user);
        let now = Instant::now();
        {
            let local = self.local.borrow();
            if let Some(v) = local.get(&key) {
                if self.shared.fresh(v, now) && current == Some(&v.hash) {
                    return Ok(Lookup::Hit);
                }
            }
        }
        let target = self.shared.target(users, current);
        let verified = if target.is_slow_for(creds.password()) {
            self.shared
                .verify_shared(key, creds, current, target, client)
                .await?
        } else {
            self.shared.verify_inline(creds, current, target, client)?
        };
        let mut local = self.local.borrow_mut();
        if local.len() >= MAX_CACHE_ENTRIES {
            evict(&mut local, now, self.shared.ttl);
        }
        local.insert(key, verified);
        Ok(Lookup::Miss)
    }
}

/// Where a successful check was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The worker's own cache: no lock, no hash.
    Hit,
    /// The shared cache or a hash.
    Miss,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn db(user: &str, pass: &str) -> Htpasswd {
        let hash = bcrypt::hash(pass, 4).expect("bcrypt");
        Htpasswd::parse(&format!("{user}:{hash}\n")).expect("valid htpasswd")
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn no_limit() -> Limiter {
        Limiter::new(0, Duration::from_secs(60), 16)
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn hashes_once_then_serves_from_cache() {
        let users = db("alice", "pw");
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let local = LocalVerifier::new(v.clone());
        let good = Credentials::new("alice", b"pw");
        let bad = Credentials::new("alice", b"nope");
        block_on(async {
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
            assert_eq!(
                local.authenticate(&users, &bad, IP).await,
                Err(AuthFailure::Invalid)
            );
        });
        assert_eq!(v.hash_runs(), 2);
    }

    #[test]
    fn other_worker_reuses_shared_entry() {
        let users = db("alice", "pw");
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let a = LocalVerifier::new(v.clone());
        let b = LocalVerifier::new(v.clone());
        let good = Credentials::new("alice", b"pw");
        block_on(async {
            assert_eq!(a.authenticate(&users, &good, IP).await, Ok(()));
            assert_eq!(b.authenticate(&users, &good, IP).await, Ok(()));
        });
        assert_eq!(v.hash_runs(), 1);
    }

    #[test]
    fn changed_password_invalidates_at_once() {
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let local = LocalVerifier::new(v.clone());
        let old = Credentials::new("alice", b"pw");
        let new = Credentials::new("alice", b"pw2");
        block_on(async {
            let v1 = db("alice", "pw");
            assert_eq!(local.authenticate(&v1, &old, IP).await, Ok(()));
            let v2 = db("alice", "pw2");
            assert_eq!(
                local.authenticate(&v2, &old, IP).await,
                Err(AuthFailure::Invalid)
            );
            assert_eq!(local.authenticate(&v2, &new, IP).await, Ok(()));
            let v3 = db("bob", "pw2");
            assert_eq!(
                local.authenticate(&v3, &new, IP).await,
                Err(AuthFailure::Invalid)
            );
        });
    }

    #[test]
    fn expired_entry_is_hashed_again() {
        let users = db("alice", "pw");
        let v = Verifier::start(Duration::from_millis(1), 1, 8, no_limit()).expect("start");
        let local = LocalVerifier::new(v.clone());
        let good = Credentials::new("alice", b"pw");
        block_on(async {
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        });
        assert_eq!(v.hash_runs(), 2);
    }

    #[test]
    fn unknown_user_costs_a_hash_and_fails() {
        let users = db("alice", "pw");
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let local = LocalVerifier::new(v.clone());
        block_on(async {
            let who = Credentials::new("mallory", b"pw");
            assert_eq!(
                local.authenticate(&users, &who, IP).await,
                Err(AuthFailure::Invalid)
            );
        });
        assert_eq!(v.hash_runs(), 1);
    }

    #[test]
    fn limit_stops_hash_work_but_not_cached_users() {
        let users = db("alice", "pw");
        let limiter = Limiter::new(2, Duration::from_secs(60), 16);
        let v = Verifier::start(Duration::from_secs(60), 1, 8, limiter).expect("start");
        let local = LocalVerifier::new(v.clone());
        let good = Credentials::new("alice", b"pw");
        block_on(async {
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
            for guess in [b"x1", b"x2"] {
                let bad = Credentials::new("alice", guess);
                assert_eq!(
                    local.authenticate(&users, &bad, IP).await,
                    Err(AuthFailure::Invalid)
                );
            }
            let bad = Credentials::new("alice", b"x3");
            assert!(matches!(
                local.authenticate(&users, &bad, IP).await,
                Err(AuthFailure::Limited(_))
            ));
            // Still served from the cache while the address is blocked.
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
        });
        assert_eq!(v.hash_runs(), 3);
    }

    #[test]
    fn cheap_schemes_are_checked_inline_with_the_same_accounting() {
        // `htpasswd -nbm dave x`
        let users = Htpasswd::parse("dave:$apr1$HRIsn3nP$Y6tKzox320eJmP6PjdD3s.\n")
            .expect("valid")
            .with_unknown_user_dummy();
        let limiter = Limiter::new(2, Duration::from_secs(60), 16);
        // No hash threads would be needed: a queue of 0 refuses every job,
        // so any pooled check would come back Busy.
        let v = Verifier::start(Duration::from_secs(60), 1, 0, limiter).expect("start");
        let local = LocalVerifier::new(v.clone());
        block_on(async {
            let good = Credentials::new("dave", b"x");
            assert_eq!(local.authenticate(&users, &good, IP).await, Ok(()));
            let unknown = Credentials::new("mallory", b"x");
            assert_eq!(
                local.authenticate(&users, &unknown, IP).await,
                Err(AuthFailure::Invalid)
            );
            let wrong = Credentials::new("dave", b"y");
            assert_eq!(
                local.authenticate(&users, &wrong, IP).await,
                Err(AuthFailure::Invalid)
            );
            // Two failures: the address is limited, inline as in the pool.
            let again = Credentials::new("dave", b"z");
            assert!(matches!(
                local.authenticate(&users, &again, IP).await,
                Err(AuthFailure::Limited(_))
            ));
        });
        assert_eq!(v.hash_runs(), 3);
    }

    #[test]
    fn unknown_users_go_through_the_pool_at_the_files_cost() {
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        let users = Htpasswd::parse(&format!("alice:{hash}\n"))
            .expect("valid")
            .with_unknown_user_dummy();
        assert_eq!(
            users.unknown_user_dummy().and_then(|d| d.bcrypt_cost()),
            Some(4)
        );
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let local = LocalVerifier::new(v.clone());
        block_on(async {
            let who = Credentials::new("mallory", b"pw");
            assert_eq!(
                local.authenticate(&users, &who, IP).await,
                Err(AuthFailure::Invalid)
            );
        });
        assert_eq!(v.hash_runs(), 1);
    }

    #[test]
    fn a_full_queue_still_takes_known_good_pairs() {
        let users = db("alice", "pw");
        let limiter = Limiter::new(100, Duration::from_secs(60), 64);
        // Fill the normal lane as a flood from many addresses would, with
        // checks slow enough (bcrypt cost 11, ~100 ms each on one thread)
        // that it is still full when alice's logins arrive.
        let slow = dummy_hash(11);
        let v = Verifier::start(Duration::from_secs(60), 1, 4, limiter).expect("start");
        let runner: IpAddr = "192.0.2.10".parse().unwrap();
        v.limiter
            .lock()
            .unwrap()
            .record_success(runner, "alice", Instant::now());
        let job = |check: &PasswordHash| Job {
            key: [0; 32],
            password: zeroize::Zeroizing::new(Vec::new()),
            check: check.clone(),
            real: false,
            attempt: v
                .limiter
                .lock()
                .unwrap()
                .begin(IP, None, Instant::now())
                .unwrap(),
        };
        // Keep the one hash thread busy first (cost 13, hundreds of ms), so
        // that it cannot take a job off the full lane below before the
        // stranger's check arrives, however late the thread got going.
        let busy = IpKey::of("192.0.2.99".parse().unwrap());
        v.enqueue(Lane::Normal, busy, job(&dummy_hash(13)))
            .expect("room");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !v.pool.queue.lock().unwrap().jobs.is_empty() {
            assert!(Instant::now() < deadline, "the hash thread never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        {
            let mut state = v.pool.queue.lock().unwrap();
            for i in 0..10u32 {
                let addr = IpKey::of(IpAddr::V4(std::net::Ipv4Addr::from(i)));
                let _ = state.jobs.push(Lane::Normal, addr, job(&slow));
            }
            assert_eq!(state.jobs.len(), 3, "a quarter is held back");
        }
        block_on(async {
            let local = LocalVerifier::new(v.clone());
            let good = Credentials::new("alice", b"pw");
            // From a new address: no room.
            let stranger: IpAddr = "203.0.113.1".parse().unwrap();
            assert_eq!(
                local.authenticate(&users, &good, stranger).await,
                Err(AuthFailure::Busy)
            );
            // From the runner: the reserve.
            assert_eq!(local.authenticate(&users, &good, runner).await, Ok(()));
        });
    }

    #[test]
    fn keys_depend_on_user_and_password() {
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let k1 = v.key_of(&Credentials::new("alice", b"pw"));
        let k2 = v.key_of(&Credentials::new("alice", b"pw "));
        let k3 = v.key_of(&Credentials::new("alic", b"epw"));
        assert_ne!(k1, k2);
        assert_ne!(k1, k3);
    }
}
