//! The descriptor budget: every descriptor a worker's connections hold,
//! counted when it is opened, so the process stays under its
//! RLIMIT_NOFILE whatever its clients do.
//!
//! A connection holds its own socket from accept to close; a request in
//! flight, a registry connection too (which then waits in the pool, still
//! open, until reused or closed); a spliced body, a pipe pair while it
//! moves. The connection cap alone (two descriptors per connection,
//! `admission.rs`) misses the pipes and the pooled connections: downloads
//! whose clients never read hold four each, for as long as the body
//! timeout allows, and a few hundred of them ran a 1,024 limit out.
//!
//! Each worker gets an equal share of the process's descriptors less the
//! reserve ([`worker_budget`]) and counts it alone: `Cell`s, no lock, no
//! atomic read on the way (the admin port's gauges are plain stores into
//! the worker's own block).
//!
//! Two kinds of descriptors:
//! - *Needed* ones ([`Fds::try_take`]): sockets. When the budget is short,
//!   idle holders are closed first ([`Fds::on_short`]: pooled pipes, pooled
//!   registry connections); failing that, admission sheds a waiting client
//!   connection (`Admission::room`), and only then is the connection or
//!   request refused with a 503.
//! - *Optional* ones ([`Fds::try_take_optional`]): pipes now, and the edge
//!   cache's open files when it comes; each has a fallback (copying through
//!   user space; reading from the registry). Together they hold at most
//!   [`OPTIONAL_SHARE`] of the budget: a pipe cannot be taken back from a
//!   download that stalls with it full, so pipes granted while there was
//!   room must not leave sockets without any later.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{StateGauges, FD_RESERVE_BASE, FD_RESERVE_PER_WORKER};

/// The budget's share descriptors with a fallback may hold together: an
/// eighth. Whatever the pipes hold, seven eighths of the worker's cap can
/// be mid-request at two descriptors each (the cap is half the budget),
/// so an uneven spread of stalled downloads over the workers still leaves
/// room for requests.
pub const OPTIONAL_SHARE: (usize, usize) = (1, 8);

/// Each worker's share of `nofile` descriptors after the reserve: what its
/// connections, their registry connections and their pipes may hold.
pub fn worker_budget(nofile: u64, workers: usize) -> usize {
    let workers = workers.max(1) as u64;
    let reserve = FD_RESERVE_BASE + FD_RESERVE_PER_WORKER * workers;
    // At least a connection and its registry connection.
    usize::try_from(nofile.saturating_sub(reserve) / workers)
        .unwrap_or(usize::MAX)
        .max(2)
}

/// One worker's descriptor budget. Shared by `Rc` between admission, the
/// upstream pool and the splice relay of the same worker.
pub struct Fds {
    limit: usize,
    used: Cell<usize>,
    /// Of `used`, held by optional descriptors.
    optional: Cell<usize>,
    /// Close one idle descriptor holder each; see [`Fds::on_short`].
    reclaimers: RefCell<Vec<Box<dyn Fn() -> bool>>>,
    gauges: Arc<Vec<StateGauges>>,
    worker: usize,
}

/// Descriptors taken from a budget; dropping the lease gives them back.
/// It lives beside what holds them (a connection's slot, an upstream
/// connection, a pooled pipe) and goes where they go.
#[must_use]
pub struct FdLease {
    fds: Rc<Fds>,
    n: usize,
    optional: bool,
}

impl Fds {
    pub fn new(limit: usize, gauges: Arc<Vec<StateGauges>>, worker: usize) -> Rc<Fds> {
        let fds = Rc::new(Fds {
            limit,
            used: Cell::new(0),
            optional: Cell::new(0),
            reclaimers: RefCell::new(Vec::new()),
            gauges,
            worker,
        });
        if let Some(g) = fds.gauges.get(worker) {
            g.descriptor_budget.store(limit as u64, Ordering::Relaxed);
        }
        fds
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Descriptors held now.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    pub fn free(&self) -> usize {
        self.limit.saturating_sub(self.used.get())
    }

    /// Most descriptors the optional ones may hold together.
    pub fn optional_limit(&self) -> usize {
        self.limit * OPTIONAL_SHARE.0 / OPTIONAL_SHARE.1
    }

    /// `n` descriptors a connection or request cannot do without. When
    /// short, idle holders are closed until there is room; `None` when
    /// none is left (admission may still shed a waiting connection).
    pub fn try_take(self: &Rc<Self>, n: usize) -> Option<FdLease> {
        while self.free() < n {
            let before = self.used.get();
            // A reclaimer that says it closed something but gave nothing
            // back must not spin this loop.
            if !self.reclaim() || self.used.get() >= before {
                return None;
            }
        }
        Some(self.grant(n, false))
    }

    /// `n` descriptors for something with a fallback: only while the
    /// optional ones hold less than their share, and never by closing
    /// anything. `None`: take the fallback.
    pub fn try_take_optional(self: &Rc<Self>, n: usize) -> Option<FdLease> {
        if self.free() < n || self.optional.get() + n > self.optional_limit() {
            return None;
        }
        Some(self.grant(n, true))
    }

    /// Registers what closes one idle holder of descriptors (a pooled
    /// pipe, a pooled registry connection) and says whether it did.
    /// Reclaimers run in the order registered, when a needed take is short
    /// or the kernel says EMFILE.
    pub fn on_short(&self, reclaim: impl Fn() -> bool + 'static) {
        self.reclaimers.borrow_mut().push(Box::new(reclaim));
    }

    /// Closes one idle holder, the first registered that has one; whether
    /// any did.
    pub fn reclaim(&self) -> bool {
        match self.reclaimers.try_borrow() {
            Ok(reclaimers) => reclaimers.iter().any(|r| r()),
            // Registering meanwhile: nothing to reclaim from yet.
            Err(_) => false,
        }
    }

    /// A body was copied because no pipe could be had.
    pub fn note_pipe_fallback(&self) {
        if let Some(g) = self.gauges.get(self.worker) {
            g.pipe_fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn grant(self: &Rc<Self>, n: usize, optional: bool) -> FdLease {
        self.used.set(self.used.get() + n);
        if optional {
            self.optional.set(self.optional.get() + n);
        }
        self.publish();
        FdLease {
            fds: self.clone(),
            n,
            optional,
        }
    }

    fn release(&self, n: usize, optional: bool) {
        self.used.set(self.used.get().saturating_sub(n));
        if optional {
            self.optional.set(self.optional.get().saturating_sub(n));
        }
        self.publish();
    }

    fn publish(&self) {
        if let Some(g) = self.gauges.get(self.worker) {
            g.descriptors
                .store(self.used.get() as u64, Ordering::Relaxed);
        }
    }
}

impl FdLease {
    /// Descriptors it holds.
    pub fn count(&self) -> usize {
        self.n
    }
}

impl Drop for FdLease {
    fn drop(&mut self) {
        self.fds.release(self.n, self.optional);
    }
}

impl std::fmt::Debug for FdLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FdLease({})", self.n)
    }
}

/// One descriptor held open for nothing (`/dev/null`). When accept(2)
/// fails for lack of descriptors anyway (something outside the budget
/// took them), the worker lets go of it so that the next accept can take
/// the waiting connection and answer it, rather than leave it in the
/// backlog while accept fails in a loop (libev's and nginx's trick).
pub struct Spare(Option<std::fs::File>);

impl Spare {
    pub fn open() -> Spare {
        Spare(Self::file())
    }

    fn file() -> Option<std::fs::File> {
        std::fs::File::open("/dev/null").ok()
    }

    /// Closes the spare; whether there was one to close.
    pub fn release(&mut self) -> bool {
        self.0.take().is_some()
    }

    /// Opens the spare again if it was released; it stays released while
    /// the process still has no descriptor to give.
    pub fn restore(&mut self) {
        if self.0.is_none() {
            self.0 = Self::file();
        }
    }

    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

/// At most one log line per `every` for an event that can repeat at the
/// rate of an attack (an accept failing); each line says how many went
/// unsaid since the last.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held: 0,
        }
    }

    /// One more event at `now`: `Some(held back)` if it is to be logged.
    pub fn tick(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fds(limit: usize) -> Rc<Fds> {
        Fds::new(limit, Arc::new(vec![StateGauges::default()]), 0)
    }

    #[test]
    fn each_worker_gets_its_share_after_the_reserve() {
        // 1,024, two workers: (1024 - 64 - 2 * 16) / 2.
        assert_eq!(worker_budget(1_024, 2), 464);
        assert_eq!(worker_budget(20_000, 2), 9_952);
        assert_eq!(worker_budget(20_000, 1), 19_920);
        // Zero workers count as one; a limit under the reserve still
        // leaves a connection and its registry connection.
        assert_eq!(worker_budget(1_024, 0), 944);
        assert_eq!(worker_budget(50, 4), 2);
    }

    #[test]
    fn leases_take_and_give_back_and_the_gauge_follows() {
        let f = fds(10);
        let a = f.try_take(4).unwrap();
        let b = f.try_take(6).unwrap();
        assert_eq!((f.used(), f.free()), (10, 0));
        assert!(f.try_take(1).is_none(), "nothing left, nothing to reclaim");
        assert_eq!(f.gauges[0].descriptors.load(Ordering::Relaxed), 10);
        assert_eq!(f.gauges[0].descriptor_budget.load(Ordering::Relaxed), 10);
        drop(a);
        assert_eq!(f.free(), 4);
        drop(b);
        assert_eq!(f.gauges[0].descriptors.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn optional_descriptors_hold_at_most_their_share() {
        let f = fds(464);
        assert_eq!(f.optional_limit(), 58);
        let pipes: Vec<FdLease> = (0..29).map(|_| f.try_take_optional(2).unwrap()).collect();
        assert!(f.try_take_optional(2).is_none(), "the share is spent");
        // Sockets still have the rest.
        let sockets = f.try_take(406).unwrap();
        assert_eq!(f.free(), 0);
        drop(pipes);
        assert_eq!(f.free(), 58);
        // Past the share or not, optional ones never take the last room.
        drop(sockets);
        let most = f.try_take(463).unwrap();
        assert!(f.try_take_optional(2).is_none());
        drop(most);
    }

    #[test]
    fn reclaimers_close_idle_holders_only_when_short_and_in_order() {
        let f = fds(4);
        let idle: Rc<RefCell<Vec<FdLease>>> = Rc::default();
        let calls = Rc::new(Cell::new(0));
        let (pool, counted) = (idle.clone(), calls.clone());
        f.on_short(move || {
            counted.set(counted.get() + 1);
            pool.borrow_mut().pop().is_some()
        });
        // One that claims to close something but gives nothing back.
        f.on_short(|| true);
        idle.borrow_mut()
            .extend([f.try_take(1).unwrap(), f.try_take(1).unwrap()]);
        let held = f.try_take(2).unwrap();
        assert_eq!(calls.get(), 0, "room enough: nothing closed");
        let more = f.try_take(1).unwrap();
        assert_eq!((calls.get(), idle.borrow().len()), (1, 1));
        // The idle pool runs dry; the liar does not make it spin.
        let last = f.try_take(1).unwrap();
        assert!(f.try_take(1).is_none());
        assert!(idle.borrow().is_empty());
        drop((held, more, last));
    }

    /// The attack, per worker: downloads that never read, each a client
    /// socket, a registry socket and, while the share lasts, a pipe. Under
    /// a 1,024 limit with two workers (cap 232 each), 150 of them (an even
    /// spread of 300) leave room for 50 more connections; with a pipe each
    /// they would need 600 descriptors of 464. Even 200 (an uneven spread)
    /// leave a request its two.
    #[test]
    fn stalled_downloads_leave_room_for_requests() {
        for (downloads, room) in [(150, 106), (200, 6)] {
            let f = fds(worker_budget(1_024, 2));
            let mut held = Vec::new();
            let mut fallbacks = 0;
            for _ in 0..downloads {
                held.push(f.try_take(1).expect("client socket"));
                held.push(f.try_take(1).expect("registry socket"));
                match f.try_take_optional(2) {
                    Some(pipe) => held.push(pipe),
                    None => fallbacks += 1,
                }
            }
            assert_eq!(fallbacks, downloads - 29);
            assert_eq!(f.free(), room, "{downloads} downloads");
        }
    }

    #[test]
    fn the_throttle_logs_once_per_interval_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.tick(t0), Some(0));
        for s in 1..10 {
            assert_eq!(t.tick(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(t.tick(t0 + Duration::from_secs(10)), Some(9));
        assert_eq!(t.tick(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_spare_is_released_and_restored() {
        let mut s = Spare::open();
        assert!(s.is_held());
        assert!(s.release());
        assert!(!s.release(), "released already");
        s.restore();
        assert!(s.is_held());
    }
}
