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
//! Cheap schemes (apr1, `{SHA}`, `{SSHA}`, `{PLAIN}`) are checked on the
//! worker itself, with the same limiter accounting, since a cross-thread
//! hop would cost more than the hash.
//!
//! No failure tells user names apart by its time. Unknown users are checked
//! against the file's stand-in ([`Htpasswd::unknown_user_dummy`], of the
//! scheme and cost of its costliest entry) along the same path as a known
//! user's wrong password. A failed check of a user whose own hash is
//! cheaper than the stand-in is *padded*: the stand-in runs too, and the
//! answer waits for it. It runs where an unknown user's check would, on
//! the pool (through the same bounded queue, limiter charge and in-flight
//! record) when it is slow, inline when it is cheap. So every failure costs
//! at least the costliest check, while a success costs only the user's own
//! hash. Failures are never cached: a repeated failure pays again, as an
//! unknown user's does, and identical ones in flight together wait for one
//! check in both cases.
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

/// A keyed hash of one credential (or, in `auth::bearer`, of one token).
pub(crate) type CredKey = [u8; 32];

/// The key is already uniformly random: use its first bytes as the hash.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

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

/// A map keyed by keyed hashes, which need no hashing of their own.
pub(crate) type KeyMap<V> = HashMap<CredKey, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone)]
struct Verified {
    /// The stored hash this credential was checked against.
    hash: PasswordHash,
    at: Instant,
}

enum SharedEntry {
    Verified(Verified),
    Pending(Vec<Sender>),
}

/// Where a check in flight sends its outcome.
type Sender = oneshot::Sender<Result<(), AuthFailure>>;
type Receiver = oneshot::Receiver<Result<(), AuthFailure>>;

/// Waits on a check in flight.
fn join(waiters: &mut Vec<Sender>) -> Receiver {
    let (tx, rx) = oneshot::channel();
    waiters.push(tx);
    rx
}

struct Job {
    key: CredKey,
    password: zeroize::Zeroizing<Vec<u8>>,
    /// The user's hash, or for an unknown user the stand-in of equal cost;
    /// `None` when the check already failed inline and only `pad` is left.
    check: Option<PasswordHash>,
    /// Whether `check` is the user's own hash; a match against the
    /// stand-in never counts.
    real: bool,
    /// The stand-in to run as well when `check` fails, so that the failure
    /// takes as long as an unknown user's.
    pad: Option<PasswordHash>,
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
    /// Of `hash_runs`, those that only padded a failure.
    padding_runs: AtomicU64,
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
            padding_runs: AtomicU64::new(0),
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

    /// How many password hashes have been computed since start, padding
    /// runs included.
    pub fn hash_runs(&self) -> u64 {
        self.hash_runs.load(Ordering::Relaxed)
    }

    /// How many of [`hash_runs`](Self::hash_runs) ran a stand-in only to
    /// pad a failed check.
    pub fn padding_runs(&self) -> u64 {
        self.padding_runs.load(Ordering::Relaxed)
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
        current.unwrap_or_else(|| self.standin(users))
    }

    /// The file's stand-in: what an unknown user is checked against.
    fn standin<'a>(&'a self, users: &'a Htpasswd) -> &'a PasswordHash {
        users.unknown_user_dummy().unwrap_or(&self.fallback_dummy)
    }

    /// The stand-in a failed check against `current` must run too: for a
    /// known user whose hash is cheaper than it. `None` for unknown users
    /// (already checked against it) and for users of the costliest kind.
    fn padding<'a>(
        &'a self,
        users: &'a Htpasswd,
        current: Option<&PasswordHash>,
    ) -> Option<&'a PasswordHash> {
        let standin = self.standin(users);
        current
            .is_some_and(|own| own.costs_less_than(standin))
            .then_some(standin)
    }

    /// Asks the limiter whether a check may cost hash work now, and counts
    /// it as failed until settled.
    fn begin(&self, client: IpAddr, user: &str, now: Instant) -> Result<Attempt, AuthFailure> {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .begin(client, Some(user), now)
            .map_err(AuthFailure::Limited)
    }

    fn settle(&self, attempt: Attempt, ok: bool) {
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(attempt, ok, Instant::now());
    }

    /// A cheap check, run right here: the limiter is asked and settled as
    /// for a pooled check, so the two paths differ only in where the hash
    /// runs. A failure is padded ([`pad_failure`](Self::pad_failure)).
    async fn verify_inline(
        &self,
        key: CredKey,
        creds: &Credentials,
        current: Option<&PasswordHash>,
        target: &PasswordHash,
        pad: Option<&PasswordHash>,
        client: IpAddr,
    ) -> Result<Verified, AuthFailure> {
        let now = Instant::now();
        if pad.is_some() {
            // The same credentials' padded failure is in flight: wait for
            // it without a new limiter charge, as an unknown user's repeat
            // waits for its first check.
            let joined = match self.lock_shared().get_mut(&key) {
                Some(SharedEntry::Pending(waiters)) => Some(join(waiters)),
                _ => None,
            };
            if let Some(rx) = joined {
                return self.outcome(rx, key, current, now).await;
            }
        }
        let attempt = self.begin(client, &creds.user, now)?;
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        // Always run the check, then decide: no shortcut for unknown users.
        let matched = target.verify(creds.password());
        match current {
            Some(hash) if matched => {
                self.settle(attempt, true);
                Ok(Verified {
                    hash: hash.clone(),
                    at: now,
                })
            }
            _ => self.pad_failure(key, creds, pad, attempt, client).await,
        }
    }

    /// Answers a failed inline check, after running `pad` (if any) where an
    /// unknown user's check would run: inline when it is cheap for this
    /// password, else on the pool, through its queue, with the failure's
    /// limiter charge and an in-flight record that identical credentials
    /// join, exactly as for an unknown user.
    async fn pad_failure(
        &self,
        key: CredKey,
        creds: &Credentials,
        pad: Option<&PasswordHash>,
        attempt: Attempt,
        client: IpAddr,
    ) -> Result<Verified, AuthFailure> {
        let pad = match pad {
            Some(pad) if pad.is_slow_for(creds.password()) => pad,
            cheap => {
                if let Some(pad) = cheap {
                    self.run_padding(pad, creds.password());
                }
                self.settle(attempt, false);
                return Err(AuthFailure::Invalid);
            }
        };
        let now = Instant::now();
        let rx = {
            let mut shared = self.lock_shared();
            match shared.get_mut(&key) {
                // Joined between our two looks; the failure stays counted.
                Some(SharedEntry::Pending(waiters)) => join(waiters),
                _ => {
                    let job = Job {
                        key,
                        password: zeroize::Zeroizing::new(creds.password().to_vec()),
                        check: None,
                        real: false,
                        pad: Some(pad.clone()),
                        attempt,
                    };
                    self.submit(&mut shared, job, client, &creds.user, now)?
                }
            }
        };
        self.outcome(rx, key, None, now).await
    }

    /// Tier 2 and 3: the shared map, then the pool.
    async fn verify_shared(
        &self,
        key: CredKey,
        creds: &Credentials,
        current: Option<&PasswordHash>,
        target: &PasswordHash,
        pad: Option<&PasswordHash>,
        client: IpAddr,
    ) -> Result<Verified, AuthFailure> {
        let now = Instant::now();
        let rx = {
            let mut shared = self.lock_shared();
            match shared.get_mut(&key) {
                Some(SharedEntry::Verified(v))
                    if self.fresh(v, now) && current == Some(&v.hash) =>
                {
                    return Ok(v.clone());
                }
                Some(SharedEntry::Pending(waiters)) => join(waiters),
                _ => {
                    // Past the limit, refuse before any hash work. A check
                    // that cannot be queued stays counted as a failure:
                    // saturating the pool must not reset anyone's count.
                    let attempt = self.begin(client, &creds.user, now)?;
                    let job = Job {
                        key,
                        password: zeroize::Zeroizing::new(creds.password().to_vec()),
                        check: Some(target.clone()),
                        real: current.is_some(),
                        pad: pad.cloned(),
                        attempt,
                    };
                    self.submit(&mut shared, job, client, &creds.user, now)?
                }
            }
        };
        self.outcome(rx, key, current, now).await
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, KeyMap<SharedEntry>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` for the pool and records it in flight in `shared` (the
    /// caller holds its lock), so identical credentials arriving meanwhile
    /// wait for it. Refused at once when its lane has no room.
    fn submit(
        &self,
        shared: &mut KeyMap<SharedEntry>,
        job: Job,
        client: IpAddr,
        user: &str,
        now: Instant,
    ) -> Result<Receiver, AuthFailure> {
        // Known-good pairs may use the queue's reserve. Only a past success
        // decides, never whether the name exists (that would be an
        // enumeration oracle).
        let known_good = self
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_known_good_pair(client, user, now);
        let lane = if known_good {
            Lane::Priority
        } else {
            Lane::Normal
        };
        let key = job.key;
        self.enqueue(lane, IpKey::of(client), job)?;
        let (tx, rx) = oneshot::channel();
        if shared.len() >= MAX_CACHE_ENTRIES {
            evict(shared, now, self.ttl);
        }
        shared.insert(key, SharedEntry::Pending(vec![tx]));
        Ok(rx)
    }

    /// Waits for a pooled check's outcome.
    async fn outcome(
        &self,
        rx: Receiver,
        key: CredKey,
        current: Option<&PasswordHash>,
        now: Instant,
    ) -> Result<Verified, AuthFailure> {
        match rx.await {
            Ok(Ok(())) => match self.lock_shared().get(&key) {
                Some(SharedEntry::Verified(v)) => Ok(v.clone()),
                // Evicted in between: the check itself did succeed.
                _ => Ok(Verified {
                    hash: current.cloned().ok_or(AuthFailure::Invalid)?,
                    at: now,
                }),
            },
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

    /// Runs a stand-in whose outcome is thrown away: only its time counts.
    fn run_padding(&self, pad: &PasswordHash, password: &[u8]) {
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        self.padding_runs.fetch_add(1, Ordering::Relaxed);
        std::hint::black_box(pad.verify(password));
    }

    /// Runs on a hash thread.
    fn run_job(&self, job: Job) {
        let verified = match &job.check {
            Some(check) => {
                self.hash_runs.fetch_add(1, Ordering::Relaxed);
                // Always run the check, then decide: no shortcut for the
                // stand-in.
                let matched = check.verify(&job.password);
                (matched && job.real).then_some(check)
            }
            None => None,
        };
        let ok = verified.is_some();
        if let (false, Some(pad)) = (ok, &job.pad) {
            self.run_padding(pad, &job.password);
        }
        let waiters = {
            let mut shared = self.lock_shared();
            let waiters = match shared.remove(&job.key) {
                Some(SharedEntry::Pending(w)) => w,
                _ => Vec::new(),
            };
            if let Some(hash) = verified {
                shared.insert(
                    job.key,
                    SharedEntry::Verified(Verified {
                        hash: hash.clone(),
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

    /// A token signature check (`auth::bearer`) is charged to the limiter
    /// as a password's hash work is, per address: an address that sends
    /// failing tokens is held off without further checks. Tokens already
    /// verified never come here.
    pub fn begin_token_check(&self, client: IpAddr) -> Result<Attempt, RetryAfter> {
        self.shared
            .limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .begin(client, None, Instant::now())
    }

    /// Settles [`LocalVerifier::begin_token_check`]'s charge.
    pub fn settle_token_check(&self, attempt: Attempt, ok: bool) {
        self.shared.settle(attempt, ok);
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
        let pad = self.shared.padding(users, current);
        let verified = if target.is_slow_for(creds.password()) {
            self.shared
                .verify_shared(key, creds, current, target, pad, client)
                .await?
        } else {
            self.shared
                .verify_inline(key, creds, current, target, pad, client)
                .await?
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
mod tests;
