//! Health of the registry servers: which ones get traffic.
//!
//! State lives in one shared [`Board`]: per server an `up` flag that the
//! workers read with one relaxed load per pick, and per worker and server a
//! cache-line-aligned block of counters that only that worker writes. No
//! lock anywhere; the only cross-core writes are the (rare) state changes.
//!
//! Two things change a server's state:
//! - **Active checks**: one thread per server sends `GET /v2/` every
//!   `health_interval`. 200 or 401 (the registry asking for credentials is
//!   alive) counts as a pass; anything else, or no answer within
//!   `health_timeout`, a failure. `health_fall` failures in a row take the
//!   server down, `health_rise` passes bring it back ([`Tracker`]).
//! - **Passive ejection**: a worker that cannot connect to a server marks
//!   it down at once; `health_fall` 5xx answers or broken exchanges in a
//!   row do the same. It then needs `health_rise` passing checks to return.
//!
//! Checks run only when there is something to fail over to (more than one
//! server) or when `health_checks = true`; with them off every server is
//! always up, as before checks existed. With `[upstream] tls = true` each
//! check makes the TLS handshake the workers would, so a server whose
//! certificate no longer verifies fails its checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::UpstreamConfig;
use crate::metrics::histogram::{Histogram, Snapshot};
use crate::tls::RegistryTls;

/// A health-check answer longer than this is not read further: the status
/// line is all we need.
const CHECK_READ_BYTES: usize = 512;

/// Shared health state of every server, plus per-worker counters.
#[derive(Debug)]
pub struct Board {
    servers: Vec<SocketAddr>,
    state: Vec<ServerState>,
    /// `[worker][server]`.
    stats: Vec<Vec<ServerStats>>,
    /// Whether checks run; without them nothing may take a server down,
    /// since nothing would bring it back.
    checks: bool,
    fall: u32,
}

#[derive(Debug)]
#[repr(align(128))]
struct ServerState {
    up: AtomicBool,
    /// Consecutive passive failures (5xx, broken exchanges) seen by any worker.
    failures: AtomicU32,
    /// A worker ejected it; the checker must restart its rise count.
    ejected: AtomicBool,
}

/// One worker's counters for one server. Only that worker writes them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ServerStats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Times from picking the server to its response head.
    pub latency: Histogram,
    /// Requests in flight right now (a gauge).
    pub outstanding: AtomicU64,
}

/// A server's row in `/metrics`, summed over workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    pub server: SocketAddr,
    pub up: bool,
    pub requests: u64,
    pub errors: u64,
    pub latency: Snapshot,
    pub outstanding: u64,
}

impl Board {
    pub fn new(cfg: &UpstreamConfig, workers: usize) -> Board {
        let n = cfg.servers.len();
        Board {
            servers: cfg.servers.clone(),
            // Up until shown otherwise, so traffic flows from the start.
            state: (0..n)
                .map(|_| ServerState {
                    up: AtomicBool::new(true),
                    failures: AtomicU32::new(0),
                    ejected: AtomicBool::new(false),
                })
                .collect(),
            stats: (0..workers)
                .map(|_| (0..n).map(|_| ServerStats::default()).collect())
                .collect(),
            checks: cfg.health.enabled,
            fall: cfg.health.fall,
        }
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    #[inline]
    pub fn is_up(&self, i: usize) -> bool {
        self.state[i].up.load(Ordering::Relaxed)
    }

    /// Whether any server may take traffic (`/healthz` readiness).
    pub fn any_up(&self) -> bool {
        (0..self.servers.len()).any(|i| self.is_up(i))
    }

    /// Worker `w`'s counters for server `i`.
    #[inline]
    pub fn stats(&self, w: usize, i: usize) -> &ServerStats {
        &self.stats[w][i]
    }

    /// Takes server `i` out of rotation now (a connect failure, or
    /// `health_fall` failed exchanges in a row).
    pub fn eject(&self, i: usize, why: &str) {
        if !self.checks {
            return;
        }
        let s = &self.state[i];
        s.ejected.store(true, Ordering::Relaxed);
        if s.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.servers[i], reason = why, "upstream server marked down");
        }
    }

    /// A failed exchange (5xx, or the connection broke): `health_fall` in
    /// a row eject the server.
    pub fn note_failure(&self, i: usize) {
        let n = self.state[i].failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.fall {
            self.state[i].failures.store(0, Ordering::Relaxed);
            self.eject(i, "consecutive failed exchanges");
        }
    }

    /// A good exchange ends a failure streak. Reads before writing, so the
    /// common case (no streak) does not dirty a shared cache line.
    #[inline]
    pub fn note_success(&self, i: usize) {
        let f = &self.state[i].failures;
        if f.load(Ordering::Relaxed) != 0 {
            f.store(0, Ordering::Relaxed);
        }
    }

    /// Per-server totals over all workers.
    pub fn report(&self) -> Vec<ServerReport> {
        let sum = |i: usize, get: fn(&ServerStats) -> &AtomicU64| -> u64 {
            self.stats
                .iter()
                .map(|w| get(&w[i]).load(Ordering::Relaxed))
                .sum()
        };
        (0..self.servers.len())
            .map(|i| ServerReport {
                server: self.servers[i],
                up: self.is_up(i),
                requests: sum(i, |s| &s.requests),
                errors: sum(i, |s| &s.errors),
                latency: self.stats.iter().fold(Snapshot::default(), |mut all, w| {
                    all.add(&w[i].latency.snapshot());
                    all
                }),
                outstanding: sum(i, |s| &s.outstanding),
            })
            .collect()
    }
}

/// Rise/fall counting for one server, as HAProxy does it: a state changes
/// only after `rise` passes or `fall` failures in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    pub up: bool,
    /// Consecutive results that disagree with `up`.
    streak: u32,
}

impl Tracker {
    pub fn new(up: bool) -> Tracker {
        Tracker { up, streak: 0 }
    }

    /// Records one check; returns the new state when it changed.
    pub fn observe(&mut self, pass: bool, rise: u32, fall: u32) -> Option<bool> {
        if pass == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak >= needed {
            self.up = pass;
            self.streak = 0;
            Some(pass)
        } else {
            None
        }
    }

    /// A worker ejected the server: count rises from zero.
    pub fn force_down(&mut self) {
        self.up = false;
        self.streak = 0;
    }
}

/// Whether a health check's status counts as a pass: the registry answers
/// `GET /v2/` with 200, or 401 when it wants credentials we don't send.
pub fn check_passes(status: u16) -> bool {
    matches!(status, 200 | 401)
}

/// The status code of an HTTP/1.x status line at the start of `buf`.
pub fn status_of(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Starts one checker thread per server when checks are on.
pub fn spawn_checkers(
    board: Arc<Board>,
    cfg: &UpstreamConfig,
    tls: Option<RegistryTls>,
) -> std::io::Result<()> {
    if !cfg.health.enabled {
        return Ok(());
    }
    for i in 0..board.servers.len() {
        let board = board.clone();
        let h = cfg.health.clone();
        let tls = tls.clone();
        std::thread::Builder::new()
            .name(format!("regproxy-health-{i}"))
            .spawn(move || {
                let server = board.servers[i];
                let mut tracker = Tracker::new(true);
                let mut next = Instant::now();
                loop {
                    next += h.interval;
                    if board.state[i].ejected.swap(false, Ordering::Relaxed) {
                        tracker.force_down();
                    }
                    let pass = check(server, h.timeout, tls.as_ref());
                    if let Some(up) = tracker.observe(pass, h.rise, h.fall) {
                        board.state[i].up.store(up, Ordering::Relaxed);
                        if up {
                            tracing::info!(upstream = %server, "upstream server is up again");
                        } else {
                            tracing::warn!(upstream = %server, reason = "health checks failed", "upstream server marked down");
                        }
                    } else if !tracker.up && board.is_up(i) {
                        // An ejection raced with this round: keep it down.
                        board.state[i].up.store(false, Ordering::Relaxed);
                    }
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })?;
    }
    Ok(())
}

/// One active check: `GET /v2/` within `timeout`, over TLS when the
/// registry speaks it; blocking (this runs on its own thread, never on a
/// worker).
fn check(server: SocketAddr, timeout: Duration, tls: Option<&RegistryTls>) -> bool {
    let deadline = Instant::now() + timeout;
    let attempt = || -> std::io::Result<Option<u16>> {
        let s = TcpStream::connect_timeout(&server, timeout)?;
        // The handshake, if any, and the exchange share what is left.
        let left = deadline.saturating_duration_since(Instant::now());
        let left = left.max(Duration::from_millis(1));
        s.set_read_timeout(Some(left))?;
        s.set_write_timeout(Some(left))?;
        match tls {
            None => ask(server, s),
            Some(tls) => {
                let conn = rustls::ClientConnection::new(tls.config.clone(), tls.name.clone())
                    .map_err(std::io::Error::other)?;
                ask(server, rustls::StreamOwned::new(conn, s))
            }
        }
    };
    match attempt() {
        Ok(Some(status)) => check_passes(status),
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(upstream = %server, error = %e, "health check failed");
            false
        }
    }
}

/// Sends the check's request on `s` and reads its status line.
fn ask(server: SocketAddr, mut s: impl Read + Write) -> std::io::Result<Option<u16>> {
    // One write: over TLS, one record.
    let head = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {server}\r\nUser-Agent: regproxy-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    s.flush()?;
    let mut buf = [0u8; CHECK_READ_BYTES];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(status_of(&buf[..got]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_then_rise() {
        let (rise, fall) = (2, 3);
        let mut t = Tracker::new(true);
        assert_eq!(t.observe(false, rise, fall), None);
        assert_eq!(t.observe(false, rise, fall), None);
        assert_eq!(t.observe(false, rise, fall), Some(false));
        assert!(!t.up);
        assert_eq!(t.observe(true, rise, fall), None);
        assert_eq!(
            t.observe(false, rise, fall),
            None,
            "a failure resets the rise"
        );
        assert_eq!(t.observe(true, rise, fall), None);
        assert_eq!(t.observe(true, rise, fall), Some(true));
        assert_eq!(t.observe(true, rise, fall), None);
    }

    #[test]
    fn a_pass_breaks_a_fall_streak() {
        let mut t = Tracker::new(true);
        for _ in 0..5 {
            assert_eq!(t.observe(false, 2, 3), None);
            assert_eq!(t.observe(false, 2, 3), None);
            assert_eq!(t.observe(true, 2, 3), None);
        }
        assert!(t.up);
    }

    #[test]
    fn ejection_restarts_the_rise_count() {
        let mut t = Tracker::new(true);
        t.force_down();
        assert_eq!(t.observe(true, 2, 3), None);
        assert_eq!(t.observe(true, 2, 3), Some(true));
    }

    #[test]
    fn statuses() {
        assert!(check_passes(200) && check_passes(401));
        assert!(!check_passes(503) && !check_passes(404) && !check_passes(302));
        assert_eq!(status_of(b"HTTP/1.1 401 Unauthorized\r\n"), Some(401));
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 200"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_of(b"HTTP/2 200 OK"), None);
        assert_eq!(status_of(b"HTTP/1.1 2x0 OK"), None);
        assert_eq!(status_of(b""), None);
    }

    fn board(checks: bool) -> Board {
        let cfg = UpstreamConfig {
            servers: vec![
                "127.0.0.1:1".parse().expect("addr"),
                "127.0.0.1:2".parse().expect("addr"),
            ],
            health: crate::config::HealthConfig {
                enabled: checks,
                ..crate::config::HealthConfig::default()
            },
            ..UpstreamConfig::default()
        };
        Board::new(&cfg, 2)
    }

    #[test]
    fn passive_failures_eject_after_fall_in_a_row() {
        let b = board(true);
        b.note_failure(0);
        b.note_failure(0);
        b.note_success(0);
        b.note_failure(0);
        b.note_failure(0);
        assert!(b.is_up(0));
        b.note_failure(0);
        assert!(!b.is_up(0));
        assert!(b.is_up(1) && b.any_up());
        b.eject(1, "test");
        assert!(!b.any_up());
    }

    #[test]
    fn without_checks_nothing_goes_down() {
        let b = board(false);
        b.eject(0, "test");
        for _ in 0..10 {
            b.note_failure(1);
        }
        assert!(b.is_up(0) && b.is_up(1));
    }

    #[test]
    fn report_sums_workers() {
        let b = board(true);
        b.stats(0, 1).requests.fetch_add(2, Ordering::Relaxed);
        b.stats(1, 1).requests.fetch_add(3, Ordering::Relaxed);
        b.stats(1, 1).errors.fetch_add(1, Ordering::Relaxed);
        let r = b.report();
        assert_eq!(r[1].requests, 5);
        assert_eq!(r[1].errors, 1);
        assert_eq!(r[0].requests, 0);
    }
}
