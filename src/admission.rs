//! Connection admission: how many client connections a worker holds, how
//! many one client address may hold, and which connections go first when a
//! worker is full.
//!
//! The attack this answers needs no account: open thousands of connections,
//! send a byte on each, and hold them. Without a cap the descriptors run out
//! and `accept` fails for everyone; with a cap alone the attacker's
//! connections fill it just as well. So a full worker does not refuse the
//! newcomer when it can make room instead: it closes the connection that has
//! been waiting longest without ever completing a request head (what an
//! attacker's connections look like), then keep-alive connections that
//! never authenticated, and authenticated keep-alive connections last. A
//! connection in the middle of a request is never shed. Only when nothing
//! can be shed is the newcomer refused: accepted and closed at once (with a
//! canned 503 on plain TCP), never left in the kernel's backlog to time out.
//!
//! The cap counts connections; what they hold is counted by the worker's
//! descriptor budget (`admission/fds.rs`): a connection's own socket is
//! taken from it here, at accept, and a request that needs a registry
//! connection takes one more through [`Admission::room`]. When the budget
//! is short, a waiting connection is shed for it just as for the cap.
//!
//! Everything here is worker-local (`Rc`, `Cell`) except the per-address
//! table (`admission/per_ip.rs`), which all workers share because
//! SO_REUSEPORT spreads one client's connections over every worker; it is
//! touched once when a connection opens and once when it closes, never per
//! request.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

pub mod fds;
pub mod per_ip;

use crate::cidr;
use crate::client_addr;
use crate::config::ForwardingConfig;

pub use fds::{FdLease, Fds};
pub use per_ip::{IpHold, PerIp};

/// Descriptors kept out of the workers' budgets for everything else the
/// process opens: listeners, the admin port and its connections, the
/// access log, watched files, health checks. Per worker on top: its
/// io_uring or epoll instance, its event and timer descriptors, its
/// spare descriptor (`fds::Spare`), and the few a budget may overshoot by
/// while shed connections close.
pub const FD_RESERVE_BASE: u64 = 64;
pub const FD_RESERVE_PER_WORKER: u64 = 16;
/// Descriptors per client connection the derived connection cap assumes:
/// its own, and the registry connection of a request in flight. Pipes and
/// pooled registry connections are not in it: the descriptor budget
/// (`admission/fds.rs`) counts what connections really hold.
pub const FDS_PER_CONNECTION: u64 = 2;
/// `max_connections_per_ip` when not configured: generous, because a whole
/// CI cluster may reach us through one NAT address, but a single address
/// still cannot take more than a quarter of the cap.
pub const PER_IP_DEFAULT_MIN: u64 = 256;
/// Idle descriptor holders [`Admission::reclaim_idle`] closes at most at
/// once.
const RECLAIM_IDLE_MAX: usize = 8;

/// The connection limits in force, resolved at start from the config and
/// the descriptor limit the process actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Client connections for the whole process.
    pub max_connections: u64,
    /// Client connections one worker holds before it sheds or refuses.
    pub per_worker: usize,
    /// Client connections per client address (IPv6: per /64); `None`: off.
    pub per_ip: Option<u32>,
    /// Descriptors each worker's connections may hold ([`fds::worker_budget`]).
    pub fds_per_worker: usize,
}

/// Client connections a descriptor limit of `nofile` can hold with
/// `workers` workers, after the reserve.
pub fn derive_max_connections(nofile: u64, workers: usize) -> u64 {
    let reserve = FD_RESERVE_BASE + FD_RESERVE_PER_WORKER * workers as u64;
    (nofile.saturating_sub(reserve) / FDS_PER_CONNECTION).max(1)
}

impl Limits {
    /// `max_connections` and `max_connections_per_ip` as configured
    /// (`None`: derive; a per-address `0`: off), for `nofile` descriptors.
    pub fn resolve(
        max_connections: Option<u64>,
        per_ip: Option<u32>,
        nofile: u64,
        workers: usize,
    ) -> Limits {
        let workers = workers.max(1);
        let max = max_connections.unwrap_or_else(|| derive_max_connections(nofile, workers));
        let per_ip = match per_ip {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(u32::try_from((max / 4).max(PER_IP_DEFAULT_MIN)).unwrap_or(u32::MAX)),
        };
        Limits {
            max_connections: max,
            per_worker: usize::try_from(max.div_ceil(workers as u64)).unwrap_or(usize::MAX),
            per_ip,
            fds_per_worker: fds::worker_budget(nofile, workers),
        }
    }
}

/// The address a connection counts against `max_connections_per_ip`:
/// the one a PROXY header carried, else the peer, unless the peer is a
/// trusted balancer that names its clients only per request
/// (`X-Forwarded-For`): then the client is unknown at accept, and counting
/// the balancer would cap every client behind it together, so `None`.
pub fn counted_address(
    peer: IpAddr,
    carried: Option<IpAddr>,
    fwd: &ForwardingConfig,
) -> Option<IpAddr> {
    if let Some(client) = carried {
        return Some(client);
    }
    // A listed balancer that carried no address (a PROXY `LOCAL` health
    // check), or one whose X-Forwarded-For is believed.
    if cidr::any_contains(&fwd.trusted_proxies, peer) || client_addr::peer_is_trusted(peer, fwd) {
        return None;
    }
    Some(peer)
}

/// How much a connection has proven, which decides when it is shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Has not completed a request head yet (TLS handshake, PROXY header
    /// and first head included). Shed first.
    Fresh = 0,
    /// Completed requests, none of them authenticated.
    Served = 1,
    /// Completed an authenticated request. Shed last.
    Trusted = 2,
}

const TIERS: usize = 3;

/// What a connection is doing, for shedding and the state gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for, or reading, a request head: sheddable.
    Waiting,
    /// A request is in flight: never shed.
    Busy,
}

/// Open connections by state, as the admin port reports them. Each worker
/// writes only its own block.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct StateGauges {
    /// Not yet completed a first request head (handshake included).
    pub head: AtomicU64,
    /// Keep-alive, between requests.
    pub idle: AtomicU64,
    /// A request in flight.
    pub active: AtomicU64,
    /// Descriptors the worker's budget has handed out (`admission/fds.rs`).
    pub descriptors: AtomicU64,
    /// The worker's descriptor budget.
    pub descriptor_budget: AtomicU64,
    /// Bodies copied because no pipe could be had (a counter).
    pub pipe_fallbacks: AtomicU64,
}

impl StateGauges {
    fn of(&self, tier: Tier, phase: Phase) -> &AtomicU64 {
        match (phase, tier) {
            (Phase::Busy, _) => &self.active,
            (Phase::Waiting, Tier::Fresh) => &self.head,
            (Phase::Waiting, _) => &self.idle,
        }
    }
}

/// A worker's admission state.
pub struct Admission {
    limit: usize,
    open: Cell<usize>,
    /// Sheddable connections per tier, oldest first. Entries go stale when
    /// their connection moves on (the epoch no longer matches) or closes;
    /// they are skipped when met and swept when a queue outgrows the count
    /// of open connections.
    queues: [RefCell<VecDeque<Entry>>; TIERS],
    /// How long a connection may take to complete its first request head,
    /// from accept: enforced by [`Admission::expire`], not a timer each.
    header_timeout: Duration,
    /// The descriptors this worker's connections hold.
    fds: Rc<Fds>,
    gauges: std::sync::Arc<Vec<StateGauges>>,
    worker: usize,
}

/// A waiting connection in a shed queue.
struct Entry {
    slot: Weak<Slot>,
    /// The slot's epoch when queued: a later phase makes the entry stale.
    epoch: u32,
    /// When it started waiting (for the fresh queue: its accept).
    since: Instant,
}

impl Entry {
    /// The connection, if it is still open and still waiting as queued.
    fn live(&self) -> Option<Rc<Slot>> {
        self.slot.upgrade().filter(|s| s.sheddable(self.epoch))
    }
}

/// Why a new connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The worker is full and every connection it holds is mid-request.
    Full,
    /// The client address holds its share already.
    PerIp,
    /// The worker's descriptor budget is spent and every connection is
    /// mid-request.
    Descriptors,
}

impl Admission {
    /// `limit` connections holding at most `fd_budget` descriptors.
    pub fn new(
        limit: usize,
        fd_budget: usize,
        header_timeout: Duration,
        gauges: std::sync::Arc<Vec<StateGauges>>,
        worker: usize,
    ) -> Rc<Self> {
        Rc::new(Admission {
            limit: limit.max(1),
            header_timeout,
            open: Cell::new(0),
            queues: Default::default(),
            fds: Fds::new(fd_budget, gauges.clone(), worker),
            gauges,
            worker,
        })
    }

    /// The worker's descriptor budget, for what else opens descriptors.
    pub fn fds(&self) -> &Rc<Fds> {
        &self.fds
    }

    /// Connections open on this worker.
    pub fn open(&self) -> usize {
        self.open.get()
    }

    /// Admits a new connection, shedding the least proven waiting one if
    /// the worker is full or its descriptor budget is spent: the shed
    /// connection's descriptor goes to the newcomer. `Ok(shed)` says
    /// whether one was shed.
    pub fn admit(self: &Rc<Self>) -> Result<(Rc<Slot>, bool), Refusal> {
        let full = self.open.get() >= self.limit;
        let (fd, shed) = match (!full).then(|| self.fds.try_take(1)).flatten() {
            Some(fd) => (fd, false),
            None => {
                let refusal = if full {
                    Refusal::Full
                } else {
                    Refusal::Descriptors
                };
                let victim = self.pick_victim().ok_or(refusal)?;
                let fd = victim.shed().or_else(|| self.fds.try_take(1));
                (fd.ok_or(refusal)?, true)
            }
        };
        self.open.set(self.open.get() + 1);
        let slot = Rc::new(Slot {
            admission: self.clone(),
            tier: Cell::new(Tier::Fresh),
            phase: Cell::new(Phase::Waiting),
            epoch: Cell::new(0),
            shed: Cell::new(false),
            waker: Cell::new(None),
            fd: Cell::new(Some(fd)),
        });
        self.gauge(Tier::Fresh, Phase::Waiting, 1);
        self.enqueue(&slot);
        Ok((slot, shed))
    }

    /// One descriptor for a request in flight (its registry connection):
    /// from the budget, closing idle holders if short, else by shedding
    /// the least proven waiting connection. `(lease, shed)`; `None`: every
    /// connection is mid-request, refuse.
    pub fn room(&self) -> Option<(FdLease, bool)> {
        if let Some(fd) = self.fds.try_take(1) {
            return Some((fd, false));
        }
        let fd = self
            .pick_victim()?
            .shed()
            .or_else(|| self.fds.try_take(1))?;
        Some((fd, true))
    }

    /// For when the kernel says EMFILE or ENFILE although the budget has
    /// room (something outside it took descriptors): closes up to a few
    /// idle holders (pooled pipes and registry connections); how many.
    pub fn reclaim_idle(&self) -> usize {
        let mut closed = 0;
        while closed < RECLAIM_IDLE_MAX && self.fds.reclaim() {
            closed += 1;
        }
        closed
    }

    /// Sheds the least proven waiting connection, for a connection or a
    /// request that needs its descriptor; whether there was one.
    pub fn shed_one(&self) -> bool {
        match self.pick_victim() {
            Some(victim) => {
                drop(victim.shed());
                true
            }
            None => false,
        }
    }

    /// The longest-waiting connection of the lowest tier, taken off its
    /// queue.
    fn pick_victim(&self) -> Option<Rc<Slot>> {
        for queue in &self.queues {
            let mut q = queue.borrow_mut();
            while let Some(entry) = q.pop_front() {
                if let Some(slot) = entry.live() {
                    return Some(slot);
                }
            }
        }
        None
    }

    /// Closes the connections that have not completed a first request head
    /// within `header_timeout` of their accept; returns how many. The
    /// fresh queue is in accept order, so it stops at the first one still
    /// in time: a sweep costs what it closes.
    pub fn expire(&self, now: Instant) -> usize {
        let mut q = self.queues[Tier::Fresh as usize].borrow_mut();
        let mut closed = 0;
        while let Some(entry) = q.front() {
            let live = entry.live();
            if live.is_some() && entry.since + self.header_timeout > now {
                break;
            }
            if let Some(slot) = live {
                drop(slot.shed());
                closed += 1;
            }
            q.pop_front();
        }
        drop(q);
        self.shrink();
        closed
    }

    /// Gives back queue room a flood of connections left behind.
    fn shrink(&self) {
        for queue in &self.queues {
            let mut q = queue.borrow_mut();
            if q.capacity() > 1024 && q.len() < q.capacity() / 8 {
                q.retain(|e| e.live().is_some());
                let keep = q.len() * 2;
                q.shrink_to(keep);
            }
        }
    }

    fn enqueue(&self, slot: &Rc<Slot>) {
        let mut q = self.queues[slot.tier.get() as usize].borrow_mut();
        if q.len() > 2 * self.open.get() + 64 {
            q.retain(|e| e.live().is_some());
        }
        q.push_back(Entry {
            slot: Rc::downgrade(slot),
            epoch: slot.epoch.get(),
            since: Instant::now(),
        });
    }

    fn gauge(&self, tier: Tier, phase: Phase, delta: i64) {
        if let Some(g) = self.gauges.get(self.worker) {
            let g = g.of(tier, phase);
            if delta >= 0 {
                g.fetch_add(delta as u64, Ordering::Relaxed);
            } else {
                g.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
            }
        }
    }
}

/// One admitted connection's standing. The connection's task holds it
/// (through [`Slot::shed_signal`]) and reports its phases; dropping the
/// last handle frees its place.
pub struct Slot {
    admission: Rc<Admission>,
    tier: Cell<Tier>,
    phase: Cell<Phase>,
    /// Bumped on every phase change: queue entries from an older phase are
    /// stale.
    epoch: Cell<u32>,
    shed: Cell<bool>,
    waker: Cell<Option<Waker>>,
    /// The connection's own descriptor, handed on when it is shed.
    fd: Cell<Option<FdLease>>,
}

impl Slot {
    fn sheddable(&self, epoch: u32) -> bool {
        !self.shed.get() && self.phase.get() == Phase::Waiting && self.epoch.get() == epoch
    }

    fn set(&self, tier: Tier, phase: Phase) {
        let (old_tier, old_phase) = (self.tier.get(), self.phase.get());
        if (old_tier, old_phase) == (tier, phase) {
            return;
        }
        self.admission.gauge(old_tier, old_phase, -1);
        self.admission.gauge(tier, phase, 1);
        self.tier.set(tier);
        self.phase.set(phase);
        self.epoch.set(self.epoch.get().wrapping_add(1));
    }

    /// A request head is complete: the connection is busy until
    /// [`Slot::waiting`].
    pub fn busy(&self) {
        self.set(self.tier.get(), Phase::Busy);
    }

    /// The request is done; the connection waits for the next head.
    /// `authenticated`: the request carried valid credentials.
    pub fn waiting(self: &Rc<Self>, authenticated: bool) {
        let tier = if authenticated {
            Tier::Trusted
        } else {
            self.tier.get().max(Tier::Served)
        };
        self.set(tier, Phase::Waiting);
        self.admission.enqueue(self);
    }

    /// Marks the connection shed and wakes its task, which drops it.
    /// Returns its descriptor's lease: the socket closes once the task
    /// runs, within the turn, and the reserve covers the overlap.
    fn shed(&self) -> Option<FdLease> {
        self.shed.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        self.fd.take()
    }

    /// Completes when the worker sheds this connection. The connection's
    /// task races its work against it and, losing, drops the connection.
    pub fn shed_signal(self: &Rc<Self>) -> ShedSignal {
        ShedSignal(self.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let a = &self.admission;
        a.open.set(a.open.get().saturating_sub(1));
        a.gauge(self.tier.get(), self.phase.get(), -1);
    }
}

/// See [`Slot::shed_signal`].
pub struct ShedSignal(Rc<Slot>);

impl Future for ShedSignal {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.shed.get() {
            return Poll::Ready(());
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
