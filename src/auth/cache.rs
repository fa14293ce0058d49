//! The verified-credential cache: how a bcrypt check (50–250 ms) runs at most
//! once per credential per TTL across every core, never on an event loop.
//!
//! Three tiers, cheapest first:
//! 1. each worker's own map ([`LocalVerifier`]): no lock, no shared write;
//! 2. on a local miss, the process-wide map under a mutex, which also records
//!    checks in flight so that concurrent first requests wait for one hash;
//! 3. a bounded pool of hash threads. When its queue is full, a miss is
//!    refused at once ([`AuthFailure::Busy`]) rather than queued without end.
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
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use super::basic::Credentials;
use super::htpasswd::{dummy_hash, Htpasswd, PasswordHash};
use super::limiter::{Attempt, Limiter, RetryAfter};

/// Entries beyond this are evicted (expired first, then all): valid
/// credentials are few, but bcrypt ignores bytes past 72, so one valid user
/// could otherwise mint endless distinct keys.
pub const MAX_CACHE_ENTRIES: usize = 65_536;

/// Cost of the hash an unknown user is checked against: htpasswd -B's default.
const DUMMY_COST: u32 = 5;

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
    /// `None`: unknown user, checked against the dummy hash for equal timing.
    hash: Option<PasswordHash>,
    /// The limiter's count for this check, settled when it ends.
    attempt: Attempt,
}

/// Process-wide state: the user database, the shared cache and the hash pool.
pub struct Verifier {
    key: [u8; 32],
    ttl: Duration,
    shared: Mutex<KeyMap<SharedEntry>>,
    queue: SyncSender<Job>,
    dummy: PasswordHash,
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
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let verifier = Arc::new(Verifier {
            key,
            ttl,
            shared: Mutex::new(KeyMap::default()),
            queue: tx,
            dummy: dummy_hash(DUMMY_COST),
            hash_runs: AtomicU64::new(0),
            limiter: Mutex::new(limiter),
        });
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            // A weak handle lets the process exit without joining the pool.
            let v = Arc::downgrade(&verifier);
            std::thread::Builder::new()
                .name(format!("regproxy-hash-{i}"))
                .spawn(move || hash_thread(&rx, &v))?;
        }
        Ok(verifier)
    }

    /// How many password hashes have been computed since start.
    pub fn hash_runs(&self) -> u64 {
        self.hash_runs.load(Ordering::Relaxed)
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

    /// Tier 2 and 3: the shared map, then the pool.
    async fn verify_shared(
        &self,
        key: CredKey,
        creds: &Credentials,
        current: Option<&PasswordHash>,
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
                    let attempt = self
                        .limiter
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .begin(client, Some(&creds.user), now)
                        .map_err(AuthFailure::Limited)?;
                    let job = Job {
                        key,
                        password: zeroize::Zeroizing::new(creds.password().to_vec()),
                        hash: current.cloned(),
                        attempt,
                    };
                    match self.queue.try_send(job) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                            return Err(AuthFailure::Busy)
                        }
                    }
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

    /// Runs on a hash thread.
    fn run_job(&self, job: Job) {
        self.hash_runs.fetch_add(1, Ordering::Relaxed);
        let ok = match &job.hash {
            Some(hash) => hash.verify(&job.password),
            None => {
                let _ = self.dummy.verify(&job.password);
                false
            }
        };
        let waiters = {
            let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            let waiters = match shared.remove(&job.key) {
                Some(SharedEntry::Pending(w)) => w,
                _ => Vec::new(),
            };
            if ok {
                if let Some(hash) = job.hash.clone() {
                    shared.insert(
                        job.key,
                        SharedEntry::Verified(Verified {
                            hash,
                            at: Instant::now(),
                        }),
                    );
                }
            }
            waiters
        };
        self.limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(job.attempt, ok);
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

fn hash_thread(rx: &Mutex<Receiver<Job>>, verifier: &std::sync::Weak<Verifier>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        let Ok(job) = job else { return };
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
        let key = self.shared.key_of(creds);
        let current = users.get(&creds.user);
        let now = Instant::now();
        {
            let local = self.local.borrow();
            if let Some(v) = local.get(&key) {
                if self.shared.fresh(v, now) && current == Some(&v.hash) {
                    return Ok(());
                }
            }
        }
        let verified = self
            .shared
            .verify_shared(key, creds, current, client)
            .await?;
        let mut local = self.local.borrow_mut();
        if local.len() >= MAX_CACHE_ENTRIES {
            evict(&mut local, now, self.shared.ttl);
        }
        local.insert(key, verified);
        Ok(())
    }
}

#[cfg(test)]
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
    fn keys_depend_on_user_and_password() {
        let v = Verifier::start(Duration::from_secs(60), 1, 8, no_limit()).expect("start");
        let k1 = v.key_of(&Credentials::new("alice", b"pw"));
        let k2 = v.key_of(&Credentials::new("alice", b"pw "));
        let k3 = v.key_of(&Credentials::new("alic", b"epw"));
        assert_ne!(k1, k2);
        assert_ne!(k1, k3);
    }
}
