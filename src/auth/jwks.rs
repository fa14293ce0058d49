//! The OIDC issuers' keys fetched from `jwks = "https://…"`: one
//! [`JwksHandle`] per issuer, shared by the workers, and one background
//! thread ([`spawn_refresher`]) that fetches every handle at start, again
//! every hour (or the server's `max-age`), 30 s after a failure, and when
//! a token names a `kid` the handle lacks ([`JwksHandle::kid_miss`],
//! rate-limited).
//!
//! Workers never wait on the network for keys they hold: [`JwksHandle::keys`]
//! takes a mutex that the refresher holds only to swap an `Arc`, never
//! across I/O. Start-up never waits either: until the first fetch
//! succeeds the handle has no keys, and tokens of that issuer are refused.
//! A failed, oversized or malformed fetch keeps the keys already held and
//! logs one warning. The fetch itself is [`fetch`], a blocking GET bounded
//! by one deadline.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use regproxy_core::auth::jwt::KeySet;
use regproxy_core::auth::oidc::{parse_jwks, Jwks};
use regproxy_core::config::DEFAULT_CA_FILE;
use rustls::ClientConfig;

mod fetch;
#[cfg(test)]
mod tests;

/// How often keys are fetched again when the server says nothing.
pub const REFRESH: Duration = Duration::from_secs(3600);
/// After a failed fetch.
pub const RETRY: Duration = Duration::from_secs(30);
/// A kid miss starts no fetch if one started less than this ago.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// One fetch, resolution to last body byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// `Cache-Control: max-age` is obeyed within these bounds.
pub const MAX_AGE_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(300), Duration::from_secs(86_400));

/// The refresher's clock, overridable so tests need not wait 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub refresh: Duration,
    pub retry: Duration,
    pub min_refetch: Duration,
    pub timeout: Duration,
    pub max_age_bounds: (Duration, Duration),
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh: REFRESH,
            retry: RETRY,
            min_refetch: MIN_REFETCH,
            timeout: FETCH_TIMEOUT,
            max_age_bounds: MAX_AGE_BOUNDS,
        }
    }
}

impl Timing {
    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        let (lo, hi) = self.max_age_bounds;
        max_age.map_or(self.refresh, |age| age.clamp(lo, hi))
    }
}

/// One https JWKS source, shared (`Arc`) by every worker and the refresher.
pub struct JwksHandle {
    issuer: String,
    url: String,
    target: Result<fetch::Target, String>,
    tls: Arc<ClientConfig>,
    timing: Timing,
    state: Mutex<State>,
    generation: AtomicU64,
    fetched_ok: AtomicU64,
    fetched_err: AtomicU64,
    /// The refresher thread, to wake on a kid miss; unset until
    /// [`spawn_refresher`] takes the handle.
    refresher: OnceLock<Thread>,
}

struct State {
    keys: Arc<KeySet>,
    /// The document the keys came from: an unchanged one installs nothing.
    body: Vec<u8>,
    last_start: Option<Instant>,
    running: bool,
    /// A kid miss asked for a fetch the refresher has not started yet.
    requested: bool,
    /// The next scheduled fetch; `None`: at once (the first).
    due: Option<Instant>,
    /// Kid misses waiting for the next attempt to finish.
    waiters: Vec<oneshot::Sender<()>>,
    /// Why the last attempt failed; `None` after a success.
    last_error: Option<String>,
}

impl fmt::Debug for JwksHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksHandle")
            .field("issuer", &self.issuer)
            .field("url", &self.url)
            .field("generation", &self.generation())
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

/// Whether `url` is one the fetcher can ask: checked at load, so a URL it
/// could never fetch stops the start instead of warning every hour.
pub fn check_url(url: &str) -> Result<(), String> {
    fetch::parse_url(url).map(drop)
}

impl JwksHandle {
    pub fn new(issuer: &str, url: &str, tls: Arc<ClientConfig>) -> Arc<JwksHandle> {
        Self::with_timing(issuer, url, tls, Timing::default())
    }

    pub fn with_timing(
        issuer: &str,
        url: &str,
        tls: Arc<ClientConfig>,
        timing: Timing,
    ) -> Arc<JwksHandle> {
        Arc::new(JwksHandle {
            issuer: issuer.to_owned(),
            url: url.to_owned(),
            target: fetch::parse_url(url),
            tls,
            timing,
            state: Mutex::new(State {
                keys: Arc::new(KeySet::new()),
                body: Vec::new(),
                last_start: None,
                running: false,
                requested: false,
                due: None,
                waiters: Vec::new(),
                last_error: None,
            }),
            generation: AtomicU64::new(0),
            fetched_ok: AtomicU64::new(0),
            fetched_err: AtomicU64::new(0),
            refresher: OnceLock::new(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The keys now: an empty set before the first successful fetch.
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.lock().keys)
    }

    /// Bumped each time new keys are installed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetch attempts so far: (succeeded, failed).
    pub fn fetches(&self) -> (u64, u64) {
        (
            self.fetched_ok.load(Ordering::Relaxed),
            self.fetched_err.load(Ordering::Relaxed),
        )
    }

    /// Why the last fetch failed (what its warning said); `None` after a
    /// success or before the first attempt.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// A token named a `kid` this handle lacks: asks for a fetch. The
    /// receiver completes when the next attempt finishes (whether or not
    /// it succeeded), or at once when a fetch started less than
    /// `min_refetch` ago or no refresher runs: an attacker's made-up kids
    /// cost the issuer at most one fetch per `min_refetch`.
    pub fn kid_miss(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let Some(refresher) = self.refresher.get() else {
            let _ = tx.send(());
            return rx;
        };
        let mut state = self.lock();
        let recent = |s: &State| {
            s.last_start
                .is_some_and(|t| t.elapsed() < self.timing.min_refetch)
        };
        if !state.running && !state.requested && recent(&state) {
            drop(state);
            let _ = tx.send(());
            return rx;
        }
        state.waiters.push(tx);
        if !state.running && !state.requested {
            state.requested = true;
            drop(state);
            refresher.unpark();
        }
        rx
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a fetch started if one is due or asked for.
    fn start_if_due(&self, now: Instant) -> bool {
        let mut s = self.lock();
        let due = s.requested || s.due.is_none_or(|d| now >= d);
        if s.running || !due {
            return false;
        }
        s.running = true;
        s.requested = false;
        s.last_start = Some(now);
        true
    }

    /// When the refresher must look at this handle again.
    fn next_wake(&self, now: Instant) -> Instant {
        let s = self.lock();
        if s.requested {
            now
        } else {
            s.due.unwrap_or(now)
        }
    }

    /// One attempt, outside the lock: the document and its keys.
    fn attempt(&self) -> Result<(fetch::Fetched, Jwks), String> {
        let target = self.target.as_ref().map_err(|e| format!("bad URL: {e}"))?;
        let fetched = fetch::get(target, &self.tls, self.timing.timeout)?;
        let jwks = parse_jwks(&fetched.body).map_err(|e| e.to_string())?;
        Ok((fetched, jwks))
    }

    /// Fetches, installs what changed, schedules the next fetch, and
    /// completes the kid misses waiting for this attempt. Logs after the
    /// lock is let go, so a slow log writer never holds up `keys()`.
    fn refresh(&self) {
        let outcome = self.attempt();
        let now = Instant::now();
        let mut s = self.lock();
        s.running = false;
        let said = match outcome {
            Ok((fetched, jwks)) => {
                self.fetched_ok.fetch_add(1, Ordering::Relaxed);
                s.last_error = None;
                let next = self.timing.next_refresh(fetched.max_age);
                s.due = Some(now + next);
                if s.body == fetched.body {
                    Outcome::Unchanged
                } else {
                    let count = jwks.keys.len();
                    s.keys = Arc::new(jwks.keys);
                    s.body = fetched.body;
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    Outcome::Installed(count, jwks.skipped, next)
                }
            }
            Err(reason) => {
                self.fetched_err.fetch_add(1, Ordering::Relaxed);
                s.due = Some(now + self.timing.retry);
                s.last_error = Some(reason.clone());
                Outcome::Failed(reason, s.keys.len())
            }
        };
        let waiters = std::mem::take(&mut s.waiters);
        drop(s);
        self.log(said);
        for w in waiters {
            let _ = w.send(());
        }
    }

    fn log(&self, outcome: Outcome) {
        let (issuer, url) = (&self.issuer, &self.url);
        match outcome {
            Outcome::Unchanged => tracing::debug!(issuer, url, "JWKS unchanged"),
            Outcome::Installed(keys, skipped, next) => tracing::info!(
                issuer,
                url,
                keys,
                skipped = ?skipped,
                next_refresh = ?next,
                "JWKS keys installed"
            ),
            Outcome::Failed(reason, kept_keys) => tracing::warn!(
                issuer,
                url,
                kept_keys,
                retry_in = ?self.timing.retry,
                "JWKS fetch failed, keeping the keys held: {reason}"
            ),
        }
    }
}

/// What one attempt did, for its log line.
enum Outcome {
    Unchanged,
    /// Key count, skipped keys' reasons, time to the next refresh.
    Installed(usize, Vec<String>, Duration),
    /// Why, and how many keys are kept.
    Failed(String, usize),
}

impl Drop for JwksHandle {
    /// Lets the refresher notice that the last user let go.
    fn drop(&mut self) {
        if let Some(t) = self.refresher.get() {
            t.unpark();
        }
    }
}

/// Starts one thread, `regproxy-jwks`, that fetches every handle at once
/// (in the background), then on schedule and on kid misses, one fetch at
/// a time. It holds the handles weakly and ends once all of them are
/// dropped elsewhere. With no handles it starts nothing; a handle already
/// given to another refresher is refused.
pub fn spawn_refresher(handles: Vec<Arc<JwksHandle>>) -> io::Result<Option<JoinHandle<()>>> {
    if handles.is_empty() {
        return Ok(None);
    }
    if let Some(h) = handles.iter().find(|h| h.refresher.get().is_some()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("the JWKS of {} already has a refresher", h.issuer),
        ));
    }
    let weak: Vec<Weak<JwksHandle>> = handles.iter().map(Arc::downgrade).collect();
    let thread = thread::Builder::new()
        .name("regproxy-jwks".into())
        .spawn(move || refresh_loop(&weak))?;
    for h in &handles {
        let _ = h.refresher.set(thread.thread().clone());
    }
    Ok(Some(thread))
}

fn refresh_loop(handles: &[Weak<JwksHandle>]) {
    loop {
        let mut wake: Option<Instant> = None;
        let mut alive = false;
        for handle in handles {
            let Some(h) = handle.upgrade() else {
                continue;
            };
            alive = true;
            if h.start_if_due(Instant::now()) {
                h.refresh();
            }
            let next = h.next_wake(Instant::now());
            wake = Some(wake.map_or(next, |w| w.min(next)));
        }
        let Some(wake) = wake.filter(|_| alive) else {
            return;
        };
        // An unpark (kid miss, a dropped handle) ends the wait early.
        thread::park_timeout(wake.saturating_duration_since(Instant::now()));
    }
}

/// The TLS client for a jwks URL: ring, TLS 1.2 and 1.3, trusting the CA
/// bundle `ca_file` (`[[auth.oidc]] ca_file`) or the system bundle.
pub fn client_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    match ca_file {
        Some(file) => crate::tls::client_trusting(file, "auth.oidc.ca_file"),
        None => crate::tls::client_trusting(
            Path::new(DEFAULT_CA_FILE),
            "the system CA bundle (set auth.oidc.ca_file)",
        ),
    }
}
