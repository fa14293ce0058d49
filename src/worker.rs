//! Thread-per-core workers. Each worker is one OS thread pinned to a core,
//! running its own monoio runtime (io_uring, or epoll where io_uring is
//! unavailable) with its own listening socket, upstream pool, credential
//! cache tier and access-log buffer. Nothing on a worker's request path is
//! shared with another worker.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use monoio::io::Canceller;
use monoio::net::TcpListener;

use crate::access_log::{AccessLog, FLUSH_INTERVAL};
use crate::auth::cache::{LocalVerifier, Verifier};
use crate::config::{Config, Driver};
use crate::conn::{self, Ctx};
use crate::health::Board;
use crate::live::{AuthState, TlsState};
use crate::metrics::WorkerMetrics;
use crate::proxy_protocol;
use crate::reload::{Published, Snapshot};
use crate::shutdown::Drain;
use crate::upstream::pool::Pool;

/// Submission queue entries per io_uring instance.
const URING_ENTRIES: u32 = 1024;
/// How often a draining worker checks whether its connections are done.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long a stopping worker lets just-accepted connections deliver
/// their first request before draining closes idle ones.
const FRESH_GRACE: Duration = Duration::from_millis(500);
/// Back-off after accept fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every worker gets a handle to. Cloned once per worker at start.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub verifier: Arc<Verifier>,
    pub auth: Arc<Published<AuthState>>,
    pub tls: Arc<Published<TlsState>>,
    pub metrics: Arc<Vec<WorkerMetrics>>,
    pub health: Arc<Board>,
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
            let core = pin(id);
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

/// Pins the current thread to core `id` (modulo the cores we may use).
fn pin(id: usize) -> Option<usize> {
    let cores = core_affinity::get_core_ids()?;
    let core = *cores.get(id % cores.len().max(1))?;
    core_affinity::set_for_current(core).then_some(core.id)
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
    mut stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<usize>,
) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let local: SocketAddr = listener.local_addr()?;
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

    let cfg = shared.config.clone();
    let ctx = Rc::new(Ctx {
        verifier: LocalVerifier::new(shared.verifier.clone()),
        auth: Snapshot::new(shared.auth.clone()),
        pool: Pool::new(&cfg.upstream, shared.health.clone(), id),
        metrics: shared.metrics.clone(),
        worker: id,
        log: AccessLog::open(&cfg.access_log)?,
        drain: Rc::new(Drain::default()),
        config: cfg.clone(),
    });
    // A certificate reload reaches new connections; open ones keep theirs.
    let tls = Snapshot::new(shared.tls.clone());
    let active = Rc::new(Cell::new(0usize));

    let flusher = ctx.clone();
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(FLUSH_INTERVAL).await;
            flusher.log.flush();
        }
    });

    let _ = ready.send(id);
    drop(ready);

    let mut stopping = false;
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
                tracing::warn!(worker = id, error = %e, "accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        WorkerMetrics::inc(&ctx.metrics[id].connections_total);
        let _ = stream.set_nodelay(true);
        active.set(active.get() + 1);
        let guard = Active(active.clone());
        let ctx = ctx.clone();
        let tls_config = tls.get().as_ref().clone();
        monoio::spawn(async move {
            let _guard = guard;
            // Behind an L4 balancer the client is whom its PROXY header names.
            let cfg = &ctx.config;
            let Some(peer) = proxy_protocol::accept(
                &stream,
                peer,
                cfg.proxy_protocol,
                &cfg.forwarding.trusted_proxies,
                cfg.client.header_timeout,
            )
            .await
            else {
                WorkerMetrics::inc(&ctx.metrics[id].proxy_protocol_refused_total);
                return;
            };
            match tls_config {
                None => conn::serve(ctx, stream, peer, false).await,
                Some(tls_config) => {
                    let handshake = monoio::time::timeout(
                        ctx.config.client.header_timeout,
                        crate::tls::accept(tls_config, stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(tls)) => conn::serve(ctx, tls, peer, true).await,
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
            }
        });
        if stopping {
            break;
        }
    }

    // Draining: no new connections; idle ones close now, busy ones after
    // their current response, and whatever is left at the deadline is cut.
    drop(listener);
    // A connection accepted just before the stop has its first request on
    // the way, but conn.rs closes any connection that is idle when draining
    // starts: let those first requests be read before it does. merge: the
    // real fix belongs in conn.rs (a fresh connection is not idle).
    if active.get() > 0 {
        monoio::time::sleep(FRESH_GRACE).await;
    }
    ctx.drain.start();
    let deadline = Instant::now() + cfg.shutdown_timeout;
    while active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(DRAIN_POLL).await;
    }
    if active.get() > 0 {
        tracing::warn!(
            worker = id,
            connections = active.get(),
            "shutdown deadline reached; closing connections still in flight"
        );
    }
    ctx.pool.clear();
    ctx.log.flush();
    tracing::info!(worker = id, "worker stopped");
    Ok(())
}
