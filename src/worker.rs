//! Thread-per-core workers. Each worker is one OS thread pinned to a core
//! (unless `pin_workers` says otherwise, `config::pin_by_default`),
//! running its own monoio runtime (io_uring, or epoll where io_uring is
//! unavailable) with its own listening socket, upstream pool, credential
//! cache tier and access-log buffer. Nothing on a worker's request path is
//! shared with another worker.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use monoio::io::Canceller;
use monoio::net::{TcpListener, TcpStream};

use crate::access_log::{AccessLog, FLUSH_INTERVAL};
use crate::admission::fds::{Spare, Throttle};
use crate::admission::{self, Admission, Limits, PerIp, Refusal, Slot, StateGauges};
use crate::auth::cache::{LocalVerifier, Verifier};
use crate::cache::Cache;
use crate::config::{Config, Driver};
use crate::conn::{self, Ctx};
use crate::error::ProxyError;
use crate::health::Board;
use crate::http::write;
use crate::live::{AuthState, TlsState};
use crate::metrics::top::{TopBoard, TopTable};
use crate::metrics::WorkerMetrics;
use crate::reload::{Published, Snapshot};
use crate::request_id::Generator;
use crate::shutdown::Drain;
use crate::tls;
use crate::upstream::pool::Pool;
use regproxy_core::cache::confirm::Confirmations;

/// Submission queue entries per io_uring instance.
const URING_ENTRIES: u32 = 1024;
/// How often a draining worker checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Back-off after accept fails, when nothing could be closed to help.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this for accept failures, however many.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often a worker closes connections past their header timeout: the
/// timeout's precision.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Connections closed since a worker's peak before it returns freed heap
/// memory to the kernel (`sys::malloc::trim`): a flood's worth, so the
/// trim (a walk over the heap) stays rare.
const TRIM_AFTER_CLOSED: usize = 1024;
/// Reads of already-received bytes before closing a refused connection:
/// enough for a request head, bounded so a refusal stays cheap.
const REFUSE_DRAIN_READS: usize = 8;

/// What every worker gets a handle to. Cloned once per worker at start.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub verifier: Arc<Verifier>,
    pub auth: Arc<Published<AuthState>>,
    pub tls: Arc<Published<TlsState>>,
    pub metrics: Arc<Vec<WorkerMetrics>>,
    pub health: Arc<Board>,
    /// `[upstream] tls`: the registry's TLS client, built once at start.
    pub upstream_tls: Option<crate::tls::RegistryTls>,
    /// Connection caps, resolved at start from the descriptor limit.
    pub limits: Limits,
    /// The per-address count all workers share; `None`: no per-address cap.
    pub per_ip: Option<Arc<PerIp>>,
    /// Open connections by state, one block per worker.
    pub states: Arc<Vec<StateGauges>>,
    /// Where workers publish their busiest repositories (`metrics::top`).
    pub top: Arc<TopBoard>,
    /// The edge cache all workers share, if any.
    pub cache: Option<Arc<Cache>>,
}

/// Starts worker `id` on its own thread, serving `listener` until `stop`.
/// `ready` gets the worker's id once its runtime is accepting.
pub fn spawn(
    id: usize,
    shared: Shared,
    listener: std::net::TcpListener,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<usize>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("regproxy-worker-{id}"))
        .spawn(move || {
            let core = if shared.config.pin_workers {
                pin(id)
            } else {
                None
            };
            let result = match shared.config.driver {
                Driver::Auto => monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .with_entries(URING_ENTRIES)
                    .build()
                    .map(|mut rt| rt.block_on(run(id, core, shared, listener, stop, ready))),
                Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .map(|mut rt| rt.block_on(run(id, core, shared, listener, stop, ready))),
            };
            if let Err(e) = result.and_then(|r| r) {
                tracing::error!(worker = id, error = %e, "worker failed to start");
            }
        })
}

/// One client connection from accept to close: the PROXY header, the
/// per-address cap, the TLS handshake, then the request loop (`conn`).
async fn connection(
    ctx: Rc<Ctx>,
    per_ip: Option<Arc<PerIp>>,
    stream: TcpStream,
    peer: SocketAddr,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    slot: Rc<Slot>,
) {
    let id = ctx.worker;
    // Behind an L4 balancer the client is whom its PROXY header names.
    let cfg = &ctx.config;
    let Some(client) = Box::pin(crate::conn::proxy_header::accept(
        &stream,
        peer,
        cfg.proxy_protocol,
        &cfg.forwarding.trusted_proxies,
        cfg.client.header_timeout,
    ))
    .await
    else {
        WorkerMetrics::inc(&ctx.metrics[id].proxy_protocol_refused_total);
        return;
    };
    let carried = (client != peer).then_some(client.ip());
    let _hold = match (
        per_ip,
        admission::counted_address(peer.ip(), carried, &cfg.forwarding),
    ) {
        (Some(table), Some(ip)) => match table.acquire(ip) {
            Some(hold) => Some(hold),
            None => {
                WorkerMetrics::inc(&ctx.metrics[id].connections_refused_per_ip_total);
                tracing::debug!(client = %ip, "refused: max_connections_per_ip");
                let err = ProxyError::TooManyConnections { per_address: true };
                refuse(&stream, err, tls_config.is_none());
                return;
            }
        },
        _ => None,
    };
    let peer = client;
    match tls_config {
        None => Box::pin(conn::serve(ctx, stream, peer, false, slot)).await,
        Some(tls_config) => {
            // No TLS state until the ClientHello is here (`tls::hello`).
            if let Err(e) = tls::hello::first_record_queued(&stream).await {
                tracing::debug!(client = %peer, error = %e, "closing before the TLS handshake");
                return;
            }
            // Boxed: the handshake's and the TLS stream's state would
            // otherwise sit in every plain connection's task too.
            Box::pin(serve_tls(ctx, tls_config, stream, peer, slot)).await
        }
    }
}

/// The TLS handshake, within the header timeout, then the request loop.
async fn serve_tls(
    ctx: Rc<Ctx>,
    tls_config: Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Rc<Slot>,
) {
    let id = ctx.worker;
    let handshake = monoio::time::timeout(
        ctx.config.client.header_timeout,
        crate::tls::accept(tls_config, stream),
    )
    .await;
    match handshake {
        Ok(Ok(tls)) => conn::serve(ctx, tls, peer, true, slot).await,
        Ok(Err(e)) => {
            WorkerMetrics::inc(&ctx.metrics[id].tls_handshake_failures_total);
            tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
        }
        Err(_elapsed) => {
            WorkerMetrics::inc(&ctx.metrics[id].tls_handshake_failures_total);
            tracing::debug!(client = %peer, "TLS handshake timed out");
        }
    }
}

/// Turns a connection away without reading its request: on plain TCP a
/// canned error answer if the socket takes it at once, then whatever the
/// client already sent is read off (so the close is a FIN, not a reset
/// that could destroy the answer), and the socket is closed. Over TLS
/// there is no cheap answer: the close alone says it.
fn refuse(stream: &TcpStream, err: ProxyError, plain: bool) {
    use crate::sys::socket;
    if plain {
        let mut answer = Vec::with_capacity(256);
        write::error_response(&err, "", false, false, "", &mut answer);
        let _ = socket::send_now(stream, &answer);
    }
    let _ = socket::shutdown_write(stream);
    let mut sink = [0u8; 1024];
    for _ in 0..REFUSE_DRAIN_READS {
        match socket::recv_now(stream, &mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Pins the current thread to core `id` (modulo the cores we may use).
fn pin(id: usize) -> Option<usize> {
    let cores = core_affinity::get_core_ids()?;
    let core = *cores.get(id % cores.len().max(1))?;
    core_affinity::set_for_current(core).then_some(core.id)
}

/// The accept loop's answer to failing accepts: the spare descriptor
/// (`admission::fds::Spare`), and a log line that cannot flood.
///
/// Under io_uring an accept fails with EMFILE at once, whether or not a
/// connection is waiting (the kernel takes the descriptor first), so a
/// failure alone sheds nobody: it closes idle holders and lets go of the
/// spare, and the next accept waits for a connection with a descriptor
/// to give it. Only a connection that then arrives on the spare's
/// descriptor has a waiting one shed for it, as when the worker is full.
struct Accepting {
    spare: Spare,
    /// The spare was let go: the next connection accepted holds its
    /// descriptor.
    on_spare: bool,
    log: Throttle,
}

impl Accepting {
    fn new() -> Accepting {
        Accepting {
            spare: Spare::open(),
            on_spare: false,
            log: Throttle::new(ACCEPT_LOG_EVERY),
        }
    }

    /// accept(2) failed with `e`; returns how long to wait before the next
    /// one. For lack of descriptors: closes a few idle holders and lets go
    /// of the spare (opened again first, should a descriptor have come
    /// free since it was last let go), and accepts again at once; with no
    /// spare to let go, and for any other failure, backs off.
    fn failed(
        &mut self,
        e: &io::Error,
        admission: &Admission,
        m: &WorkerMetrics,
        worker: usize,
    ) -> Option<Duration> {
        let (closed, released) = if crate::sys::is_descriptor_exhaustion(e) {
            WorkerMetrics::inc(&m.descriptor_exhausted_total);
            let closed = admission.reclaim_idle();
            self.spare.restore();
            let released = self.spare.release();
            self.on_spare |= released;
            (closed, released)
        } else {
            (0, false)
        };
        if let Some(held_back) = self.log.tick(Instant::now()) {
            tracing::warn!(
                worker,
                error = %e,
                idle_closed = closed,
                spare_released = released,
                similar_since_last = held_back,
                "accept failed"
            );
        }
        (!released).then_some(ACCEPT_BACKOFF)
    }

    /// Whether the connection just accepted holds the spare's descriptor;
    /// takes the spare back if it was let go (failing while the process
    /// still has no descriptor to give).
    fn on_spare(&mut self) -> bool {
        self.spare.restore();
        std::mem::take(&mut self.on_spare)
    }
}

/// A place for the connection just accepted (counted), or `None` when it
/// was refused: with a 503 on plain TCP, and closed.
fn admit(
    admission: &Rc<Admission>,
    accepting: &mut Accepting,
    stream: &TcpStream,
    m: &WorkerMetrics,
    plain: bool,
) -> Option<Rc<Slot>> {
    WorkerMetrics::inc(&m.connections_total);
    // On the spare's descriptor the process has none left: a waiting
    // connection gives up its own, or the newcomer is refused.
    let admitted = if !accepting.on_spare() {
        admission.admit()
    } else if admission.shed_one() {
        WorkerMetrics::inc(&m.connections_shed_total);
        admission.admit()
    } else {
        Err(Refusal::Descriptors)
    };
    let refusal = match admitted {
        Ok((slot, shed)) => {
            if shed {
                WorkerMetrics::inc(&m.connections_shed_total);
            }
            return Some(slot);
        }
        Err(refusal) => refusal,
    };
    WorkerMetrics::inc(&m.connections_refused_total);
    let err = match refusal {
        Refusal::Descriptors => {
            WorkerMetrics::inc(&m.descriptor_refusals_total);
            ProxyError::OutOfDescriptors
        }
        Refusal::Full => ProxyError::TooManyConnections { per_address: false },
        Refusal::PerIp => ProxyError::TooManyConnections { per_address: true },
    };
    refuse(stream, err, plain);
    None
}

/// Decrements the worker's live-connection count when a connection ends.
struct Active(Rc<Cell<usize>>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

async fn run(
    id: usize,
    core: Option<usize>,
    shared: Shared,
    listener: std::net::TcpListener,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<usize>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    announce(id, core, &shared, listener.local_addr()?);
    let admission = Admission::new(
        shared.limits.per_worker,
        shared.limits.fds_per_worker,
        shared.config.client.header_timeout,
        shared.states.clone(),
        id,
    );
    let ctx = setup(id, &shared, &admission)?;
    spawn_housekeeping(id, &ctx, &admission, &shared);
    let _ = ready.send(id);
    drop(ready);
    let active = Rc::new(Cell::new(0usize));
    accept_loop(&listener, stop, &ctx, &admission, &shared, &active).await;
    drop(listener);
    drain(&ctx, &active).await;
    Ok(())
}

/// Says which driver, core and address this worker serves with.
fn announce(id: usize, core: Option<usize>, shared: &Shared, local: SocketAddr) {
    let driver = if monoio::utils::is_legacy() {
        "epoll"
    } else {
        "io_uring"
    };
    if driver == "epoll" && shared.config.driver == Driver::Auto {
        tracing::warn!(
            worker = id,
            "io_uring is unavailable here (kernel, seccomp or memlock limits); using the epoll fallback"
        );
    }
    tracing::info!(
        worker = id,
        core = %core.map_or("unpinned".to_owned(), |c| c.to_string()),
        driver = %driver,
        listen = %local,
        tls = %if shared.config.tls.is_some() { "on" } else { "off" },
        "worker started"
    );
}

/// The worker's own state, which every connection shares.
fn setup(id: usize, shared: &Shared, admission: &Rc<Admission>) -> io::Result<Rc<Ctx>> {
    let cfg = shared.config.clone();
    let ctx = Rc::new(Ctx {
        verifier: LocalVerifier::new(shared.verifier.clone()),
        tokens: crate::auth::bearer::TokenCache::new()?,
        auth: Snapshot::new(shared.auth.clone()),
        pool: Pool::new(
            &cfg.upstream,
            shared.upstream_tls.clone(),
            shared.health.clone(),
            id,
        ),
        admission: admission.clone(),
        metrics: shared.metrics.clone(),
        worker: id,
        log: AccessLog::open(
            &cfg.access_log,
            cfg.access_log_format,
            shared.metrics.clone(),
            id,
        )?,
        drain: Rc::new(Drain::default()),
        ids: Generator::new(id),
        top: (shared.top.n() > 0).then(|| RefCell::new(TopTable::for_top(shared.top.n()))),
        cache: shared.cache.clone(),
        confirmations: RefCell::new(Confirmations::default()),
        config: cfg,
    });
    // Idle descriptor holders the budget closes when short: pooled pipes
    // first (cheapest to make again), then pooled registry connections.
    crate::relay::splice::use_budget(admission.fds());
    let pooled = Rc::downgrade(&ctx);
    admission
        .fds()
        .on_short(move || pooled.upgrade().is_some_and(|c| c.pool.close_oldest_idle()));
    Ok(ctx)
}

/// The two timers a worker runs beside its connections: the access log's
/// flush (and the top-repositories publication), and the first-head sweep.
fn spawn_housekeeping(id: usize, ctx: &Rc<Ctx>, admission: &Rc<Admission>, shared: &Shared) {
    let (flusher, board) = (ctx.clone(), shared.top.clone());
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(FLUSH_INTERVAL).await;
            flusher.log.flush();
            if let Some(top) = &flusher.top {
                board.publish(id, &top.borrow());
            }
        }
    });
    // First heads have no timer each: one sweep closes the late ones.
    // After a flood of connections has gone, its memory goes back too.
    let (sweeper, swept) = (admission.clone(), ctx.clone());
    monoio::spawn(async move {
        let (mut peak, mut last) = (0, 0);
        loop {
            monoio::time::sleep(SWEEP_INTERVAL).await;
            let late = sweeper.expire(Instant::now()) as u64;
            WorkerMetrics::add(&swept.metrics[id].connections_timed_out_total, late);
            let open = sweeper.open();
            peak = peak.max(open);
            // Once the count has settled: trimming mid-way through a wave
            // of closes would leave the rest of the wave's memory held.
            if peak - open >= TRIM_AFTER_CLOSED && open == last {
                crate::sys::malloc::trim();
                peak = open;
            }
            last = open;
        }
    });
}

/// Accepts until `stop` fires, admitting each connection and starting its
/// task.
async fn accept_loop(
    listener: &TcpListener,
    mut stop: oneshot::Receiver<()>,
    ctx: &Rc<Ctx>,
    admission: &Rc<Admission>,
    shared: &Shared,
    active: &Rc<Cell<usize>>,
) {
    let id = ctx.worker;
    // A certificate reload reaches new connections; open ones keep theirs.
    let tls = Snapshot::new(shared.tls.clone());
    let plain = shared.config.tls.is_none();
    let mut stopping = false;
    let mut accepting = Accepting::new();
    loop {
        let canceller = Canceller::new();
        let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
        let accepted = monoio::select! {
            _ = &mut stop => {
                // Cancel and wait for the accept instead of dropping it: one
                // the kernel already completed carries a connection that
                // would otherwise be leaked, and with a handed-over socket
                // the queue behind it is the next process's to serve.
                stopping = true;
                canceller.cancel();
                accept.await
            }
            r = &mut accept => r,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(_) if stopping => break,
            Err(e) => {
                if let Some(wait) = accepting.failed(&e, admission, &ctx.metrics[id], id) {
                    monoio::time::sleep(wait).await;
                }
                continue;
            }
        };
        let m = &ctx.metrics[id];
        if let Some(slot) = admit(admission, &mut accepting, &stream, m, plain) {
            let tls_config = tls.get().as_ref().clone();
            let per_ip = shared.per_ip.clone();
            start(ctx, per_ip, stream, peer, tls_config, slot, active);
        }
        if stopping {
            break;
        }
    }
}

/// Starts an admitted connection's task, counted in `active` while it runs.
fn start(
    ctx: &Rc<Ctx>,
    per_ip: Option<Arc<PerIp>>,
    stream: TcpStream,
    peer: SocketAddr,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    slot: Rc<Slot>,
    active: &Rc<Cell<usize>>,
) {
    let _ = stream.set_nodelay(true);
    active.set(active.get() + 1);
    let guard = Active(active.clone());
    let conn = connection(ctx.clone(), per_ip, stream, peer, tls_config, slot.clone());
    let shed = slot.shed_signal();
    drop(slot);
    monoio::spawn(async move {
        let _guard = guard;
        // Shed: the connection was waiting for a head; dropping its task
        // closes it, and nothing of a request is lost.
        monoio::select! {
            _ = shed => {}
            _ = conn => {}
        }
    });
}

/// Draining: no new connections; idle ones close now, busy ones after
/// their current response, and whatever is left at the deadline is cut.
async fn drain(ctx: &Rc<Ctx>, active: &Rc<Cell<usize>>) {
    // Connections accepted just before the stop keep waiting for their
    // first request (conn.rs `read_head`), bounded by the admission sweep.
    ctx.drain.start();
    let deadline = Instant::now() + ctx.config.shutdown_timeout;
    while active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    if active.get() > 0 {
        tracing::warn!(
            worker = ctx.worker,
            connections = active.get(),
            "shutdown deadline reached; closing connections still in flight"
        );
    }
    ctx.pool.clear();
    ctx.log.close();
    tracing::info!(worker = ctx.worker, "worker stopped");
}
