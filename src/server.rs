//! Server start: everything between a validated configuration and
//! workers serving it, in phases that [`run`] lists in order.
//!
//! 1. **Limits**: the soft descriptor limit raised, the host's settings
//!    checked against the configuration, the connection caps derived.
//! 2. **Sockets**: the listeners, from systemd, a running regproxy's
//!    hand-over, or bound anew, one per worker.
//! 3. **Services** shared by the workers: the password hash pool, the
//!    reloader and its file watcher, metrics and health boards, the admin
//!    port, and the signal handlers.
//! 4. **Workers**: one thread per core, each told when to stop; the
//!    hand-over socket for the next regproxy; systemd told we are ready.
//! 5. **Wait** for the workers to drain and stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures_channel::oneshot;

use crate::admission::{self, Limits, PerIp, StateGauges};
use crate::auth::cache::Verifier;
use crate::auth::limiter::Limiter;
use crate::cache::Cache;
use crate::config::Config;
use crate::metrics::{self, WorkerMetrics};
use crate::tools::tuning::{self, HostFacts, Needs, Verdict};
use crate::{handoff, health, listen, live, reload, shutdown, worker};

/// Addresses and user names the brute-force limiter tracks at most, each.
const LIMITER_MAX_ENTRIES: usize = 65_536;

/// Serves the configuration at `path` until a signal stops it.
pub fn run(path: &Path) -> anyhow::Result<()> {
    raise_descriptor_limit();
    let loaded = live::load(path)?;
    warn_host_limits(&loaded.config);
    if loaded.auth.users.is_empty() {
        tracing::warn!(file = %loaded.config.auth.htpasswd.display(), "htpasswd file has no users; every request will get 401");
    }
    let mut config = loaded.config.clone();
    let (addr, listeners) = listeners(&config)?;
    // Every socket handed to us must be served, or its queue would fill.
    config.workers = config.workers.max(listeners.len());
    let listeners = spread(listeners, config.workers)?;
    let config = Arc::new(config);
    let limits = connection_limits(&config);

    let services = Services::start(path, loaded, &config)?;
    let stops = services.signals(config.workers)?;
    let shared = services.shared(&config, limits);
    crate::relay::splice::configure(config.splice_pipe_size);
    let for_handoff = duplicates_for_handoff(&config, &listeners)?;
    let handles = start_workers(&shared, listeners, stops)?;
    if let Some(path) = &config.handoff_socket {
        handoff::serve(path, addr, for_handoff)
            .with_context(|| format!("cannot listen for handoff on {}", path.display()))?;
    }
    announce(&config, addr, services.admin);
    for h in handles {
        let _ = h.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the workers share, started before them.
struct Services {
    verifier: Arc<Verifier>,
    reloader: Arc<live::Reloader>,
    metrics: Arc<Vec<WorkerMetrics>>,
    states: Arc<Vec<StateGauges>>,
    health: Arc<health::Board>,
    upstream_tls: Option<crate::tls::RegistryTls>,
    top: Arc<metrics::top::TopBoard>,
    /// The edge cache, when `[cache]` is set and its folder usable.
    cache: Option<Arc<Cache>>,
    /// The https JWKS fetchers (kept alive here and by the reloader).
    jwks: Vec<Arc<crate::auth::jwks::JwksHandle>>,
    admin: Option<SocketAddr>,
}

impl Services {
    fn start(path: &Path, loaded: live::Loaded, config: &Config) -> anyhow::Result<Services> {
        let workers = config.workers;
        let verifier = Verifier::start(
            config.auth.cache_ttl,
            config.auth.hash_threads,
            config.auth.hash_queue,
            Limiter::new(
                config.auth.max_failures,
                config.auth.failure_window,
                LIMITER_MAX_ENTRIES,
            ),
        )
        .context("cannot start the password hash pool")?;
        // Reload users, policy and certificates on SIGHUP and when their
        // files change; a broken set keeps the running one and says what
        // is wrong.
        // https JWKS documents are fetched in the background: start-up
        // never waits on the network, and a request waits only when its
        // token names a key not fetched yet.
        let jwks: Vec<_> = loaded.fetchers.values().cloned().collect();
        crate::auth::jwks::spawn_refresher(jwks.clone()).context("cannot start the JWKS fetcher")?;
        let reloader = Arc::new(live::Reloader::new(path, loaded));
        let (watched, on_change) = (reloader.clone(), reloader.clone());
        reload::watch_files(
            config.auth.reload_interval,
            move || watched.watched_files(),
            move || on_change.reload("file change"),
        )
        .context("cannot start the file watcher")?;
        let metrics = Arc::new((0..workers).map(|_| WorkerMetrics::default()).collect());
        let states = Arc::new((0..workers).map(|_| StateGauges::default()).collect());
        // The registry's TLS client (`[upstream] tls`), shared by the
        // workers and the health checks.
        let upstream_tls = crate::tls::registry_client(&config.upstream)?;
        // Which registry servers take traffic: checked off the workers,
        // published to them through atomics.
        let health = Arc::new(health::Board::new(&config.upstream, workers));
        let top = Arc::new(metrics::top::TopBoard::new(
            config.top_repositories,
            workers,
        ));
        health::spawn_checkers(health.clone(), &config.upstream, upstream_tls.clone())
            .context("cannot start the upstream health checkers")?;
        // A folder that cannot be used is logged, and regproxy serves as
        // a plain proxy: the cache is an optimisation, never an outage.
        let cache = config.cache.as_ref().and_then(Cache::open);
        let mut services = Services {
            verifier,
            reloader,
            metrics,
            states,
            health,
            upstream_tls,
            top,
            cache,
            jwks,
            admin: None,
        };
        services.admin = services.serve_admin(config)?;
        Ok(services)
    }

    /// The admin port (metrics, health), if configured.
    fn serve_admin(&self, config: &Config) -> anyhow::Result<Option<SocketAddr>> {
        let Some(a) = config.admin_listen else {
            return Ok(None);
        };
        let registry = metrics::Registry {
            workers: self.metrics.clone(),
            states: self.states.clone(),
            verifier: self.verifier.clone(),
            health: self.health.clone(),
            top: self.top.clone(),
            cache: self.cache.clone(),
            jwks: self.jwks.clone(),
        };
        crate::admin::serve(a, registry)
            .map(Some)
            .with_context(|| format!("cannot listen for admin on {a}"))
    }

    /// One stop channel per worker, fired by SIGTERM/SIGINT; SIGHUP reloads.
    fn signals(&self, workers: usize) -> anyhow::Result<Vec<oneshot::Receiver<()>>> {
        let on_hup = self.reloader.clone();
        shutdown::on_signals(workers, move || on_hup.reload("SIGHUP"))
            .context("cannot install signal handlers")
    }

    fn shared(&self, config: &Arc<Config>, limits: Limits) -> worker::Shared {
        worker::Shared {
            config: config.clone(),
            verifier: self.verifier.clone(),
            auth: self.reloader.auth.clone(),
            tls: self.reloader.tls.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
            upstream_tls: self.upstream_tls.clone(),
            limits,
            per_ip: limits.per_ip.map(PerIp::new),
            states: self.states.clone(),
            top: self.top.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// Duplicates of the listening sockets for the next process, taken before
/// the workers own them. Only with a hand-over socket: a duplicate keeps
/// the listening socket open, so without a successor to take it, SIGTERM
/// would leave the kernel queueing connections nobody will accept instead
/// of refusing.
fn duplicates_for_handoff(
    config: &Config,
    listeners: &[std::net::TcpListener],
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    if config.handoff_socket.is_none() {
        return Ok(Vec::new());
    }
    listeners
        .iter()
        .map(std::net::TcpListener::try_clone)
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot duplicate the listening sockets")
}

/// Starts one worker per listener and waits until each says it serves.
fn start_workers(
    shared: &worker::Shared,
    listeners: Vec<std::net::TcpListener>,
    stops: Vec<oneshot::Receiver<()>>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    let workers = listeners.len();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::with_capacity(workers);
    for (id, (listener, stop)) in listeners.into_iter().zip(stops).enumerate() {
        handles.push(worker::spawn(
            id,
            shared.clone(),
            listener,
            stop,
            ready_tx.clone(),
        )?);
    }
    drop(ready_tx);
    // A worker that fails to start drops its sender without a word.
    if ready_rx.iter().take(workers).count() < workers {
        anyhow::bail!("a worker failed to start (see above)");
    }
    Ok(handles)
}

/// Tells systemd (Type=notify) and the log that we serve.
fn announce(config: &Config, addr: SocketAddr, admin: Option<SocketAddr>) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd we are ready");
    }
    tracing::info!(
        addr = %addr,
        workers = config.workers,
        tls = %if config.tls.is_some() { "on" } else { "off" },
        admin_addr = %admin.map_or("off".to_owned(), |a| a.to_string()),
        upstream = ?config.upstream.servers,
        "listening"
    );
}

/// Raises the soft descriptor limit to the hard one before anything opens a
/// socket, and says what it got: the limit caps concurrent connections.
fn raise_descriptor_limit() {
    match crate::sys::raise_nofile() {
        Ok(r) if r.after > r.before => {
            tracing::info!(
                from = r.before,
                to = r.after,
                "raised the descriptor limit (RLIMIT_NOFILE)"
            )
        }
        Ok(r) => tracing::info!(
            limit = r.after,
            hard = r.hard,
            "descriptor limit (RLIMIT_NOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE)"),
    }
}

/// The connection caps for the descriptor limit this process got (after
/// `raise_descriptor_limit`), logged: they decide when connections are shed.
fn connection_limits(config: &Config) -> Limits {
    let (nofile, _) = crate::sys::nofile();
    let limits = Limits::resolve(
        config.max_connections,
        config.max_connections_per_ip,
        nofile,
        config.workers,
    );
    if limits
        .max_connections
        .saturating_mul(admission::FDS_PER_CONNECTION)
        > nofile
    {
        tracing::warn!(
            max_connections = limits.max_connections,
            descriptors = nofile,
            "max_connections is more than the descriptor limit holds; past the descriptor budget connections are shed or refused with 503"
        );
    }
    tracing::info!(
        max_connections = limits.max_connections,
        per_worker = limits.per_worker,
        per_ip = %limits.per_ip.map_or("off".to_owned(), |n| n.to_string()),
        descriptors = nofile,
        descriptor_budget_per_worker = limits.fds_per_worker,
        "connection limits"
    );
    limits
}

/// One warning per host setting that caps this configuration: the same
/// rules as `check --host`.
fn warn_host_limits(config: &Config) {
    let rows = tuning::run_all(
        &HostFacts::read(Path::new("/")),
        &Needs::from_config(config),
    );
    for c in rows.iter().filter(|c| c.verdict != Verdict::Ok) {
        tracing::warn!(
            setting = %c.setting,
            current = %c.current,
            recommended = %c.recommended,
            verdict = %c.verdict,
            "host setting: {}",
            c.why
        );
    }
}

/// The listening sockets, in order of preference: those systemd passed
/// (socket activation), those a running regproxy hands over on
/// `handoff_socket`, else new ones (joining the SO_REUSEPORT group of any
/// process already listening on the address).
fn listeners(config: &Config) -> anyhow::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let passed = crate::sys::systemd_listeners().context("LISTEN_FDS")?;
    if let Some(first) = passed.first() {
        let addr = first.local_addr()?;
        tracing::info!(sockets = passed.len(), addr = %addr, "using the sockets systemd passed");
        if !handoff::addr_matches(config.listen, addr) {
            tracing::warn!(listen = %config.listen, addr = %addr, "the socket unit's ListenStream differs from `listen`; serving the socket unit's");
        }
        return Ok((addr, passed));
    }
    if let Some(path) = &config.handoff_socket {
        match handoff::receive(path, config.listen) {
            Ok(Some((addr, got))) => {
                tracing::info!(sockets = got.len(), from = %path.display(), "took over the listening sockets of the running regproxy");
                return Ok((addr, got));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "socket handoff failed; binding new sockets (connections queued in the running process may be reset when it stops)"
            ),
        }
    }
    listen::bind_all(config.listen, config.workers)
        .with_context(|| format!("cannot listen on {}", config.listen))
}

/// One socket per worker: inherited sockets are shared round-robin
/// (duplicated) rather than joined by new ones, so no queue is ever owned
/// by this process alone and a later handoff or restart loses nothing.
fn spread(
    mut listeners: Vec<std::net::TcpListener>,
    workers: usize,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let have = listeners.len();
    if have == 0 {
        anyhow::bail!("no listening socket");
    }
    for i in have..workers {
        let dup = listeners[i % have]
            .try_clone()
            .context("cannot duplicate a listening socket")?;
        listeners.push(dup);
    }
    Ok(listeners)
}
