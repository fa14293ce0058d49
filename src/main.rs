//! The regproxy binary: load and validate everything, bind one socket per
//! worker, start the shared services (hash pool, reload watcher, admin
//! endpoint, signal handler), then hand over to the workers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use regproxy::admission::{self, Limits, PerIp, StateGauges};
use regproxy::auth::cache::Verifier;
use regproxy::auth::limiter::Limiter;

/// Cache-line-aligned bulk blocks: see `sys::malloc::BulkAligned` for the
/// copy slowdown it avoids.
#[global_allocator]
static ALLOC: regproxy::sys::malloc::BulkAligned = regproxy::sys::malloc::BulkAligned;

/// Addresses and user names the brute-force limiter tracks at most, each.
const LIMITER_MAX_ENTRIES: usize = 65_536;
use regproxy::metrics::{self, WorkerMetrics};
use regproxy::tuning::{self, HostFacts, Needs, Verdict};
use regproxy::{handoff, health, listen, live, reload, shutdown, worker};

/// Authenticating front door for a private Docker/OCI registry: TLS, HTTP
/// basic auth against an htpasswd file, and push restriction, in front of
/// the CNCF distribution registry.
#[derive(Parser)]
#[command(name = "regproxy", version, about, long_about = None)]
struct Cli {
    /// The configuration file (TOML). Relative paths inside it are resolved
    /// against its folder.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "regproxy.toml",
        global = true
    )]
    config: PathBuf,

    /// Log filter for stderr, e.g. "info", "debug", "regproxy=debug".
    /// RUST_LOG overrides it.
    #[arg(long, value_name = "FILTER", default_value = "info", global = true)]
    log: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and every file it names, then exit:
    /// 0 when everything is usable, 1 with the problems otherwise.
    Check {
        /// Instead: print which host settings cap this configuration
        /// (setting, current, recommended, verdict, why); exit 2 when one
        /// breaks it, 0 otherwise (settings that only slow it included).
        #[arg(long)]
        host: bool,
        /// With --host: read /proc and /sys under this directory instead
        /// of /, e.g. a copied or fake tree.
        #[arg(long, value_name = "DIR", default_value = "/", requires = "host")]
        proc_root: PathBuf,
        /// With --host: `table` for people, `tsv` (one row per line,
        /// tab-separated, no header) for tuning/apply.
        #[arg(long, value_enum, default_value = "table", requires = "host")]
        format: Format,
    },
    /// Convert an nginx configuration (the registry recipe and its
    /// variations) into regproxy.toml. Directives it cannot convert are
    /// listed on stderr as FILE:LINE: directive X not converted: why.
    ImportNginx(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The main nginx configuration file; its includes are followed.
    nginx_conf: PathBuf,
    /// Write the TOML here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Exit 1 when any directive was not converted (the file is still written).
    #[arg(long)]
    strict: bool,
    /// Rewrite file paths starting with FROM to start with TO, for files
    /// nginx saw elsewhere (a container volume). A relative TO is relative
    /// to the written config's folder. Repeatable.
    #[arg(long = "map-path", value_name = "FROM=TO", value_parser = regproxy::nginx::parse_pair)]
    map_path: Vec<(String, String)>,
    /// Replace the upstream host name HOST by ADDR (a compose link name
    /// such as "registry"). Repeatable.
    #[arg(long, value_name = "HOST=ADDR", value_parser = regproxy::nginx::parse_pair)]
    resolve: Vec<(String, String)>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Tsv,
}

/// `check --host` exit status when a setting breaks the configuration
/// (1 stays "the configuration itself is unusable").
const EXIT_HOST_BREAKS: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let result = match cli.command {
        Some(Command::Check {
            host: true,
            proc_root,
            format,
        }) => return check_host(&cli.config, &proc_root, format),
        Some(Command::Check { .. }) => check(&cli.config),
        Some(Command::ImportNginx(args)) => import_nginx(args),
        None => serve(&cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regproxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> anyhow::Result<()> {
    let loaded = live::load(path)?;
    println!(
        "{}: ok ({} users, tls {}, {} upstream servers)",
        path.display(),
        loaded.auth.users.len(),
        if loaded.tls.is_some() { "on" } else { "off" },
        loaded.config.upstream.servers.len()
    );
    Ok(())
}

fn import_nginx(args: ImportArgs) -> anyhow::Result<()> {
    let map_paths = args
        .map_path
        .into_iter()
        .map(|(from, to)| (PathBuf::from(from), PathBuf::from(to)))
        .collect();
    let conversion = regproxy::nginx::import(&args.nginx_conf, map_paths, args.resolve)?;
    for line in &conversion.not_converted {
        eprintln!("{line}");
    }
    match &args.out {
        Some(out) => {
            std::fs::write(out, &conversion.toml)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {} ({} not converted); check it with: regproxy check --config {}",
                out.display(),
                conversion.not_converted.len(),
                out.display()
            );
        }
        None => print!("{}", conversion.toml),
    }
    if args.strict && !conversion.not_converted.is_empty() {
        anyhow::bail!(
            "{} directives not converted (--strict)",
            conversion.not_converted.len()
        );
    }
    Ok(())
}

/// Raises the soft descriptor limit to the hard one before anything opens a
/// socket, and says what it got: the limit caps concurrent connections.
fn raise_descriptor_limit() {
    match regproxy::sys::raise_nofile() {
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
fn connection_limits(config: &regproxy::config::Config) -> Limits {
    let nofile = regproxy::sys::current_limit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
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

/// Prints the host table for this configuration. Only the config file is
/// read (not the htpasswd or TLS files): the host may be checked before
/// they are in place.
fn check_host(path: &Path, root: &Path, format: Format) -> ExitCode {
    let config = match regproxy::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("regproxy: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // As `serve` would run: with the soft limit already raised.
    if root == Path::new("/") {
        let _ = regproxy::sys::raise_nofile();
    }
    let rows = tuning::run_all(&HostFacts::read(root), &Needs::from_config(&config));
    match format {
        Format::Table => print!("{}", tuning::render(&rows)),
        Format::Tsv => print!("{}", tuning::render_tsv(&rows)),
    }
    match tuning::worst(&rows) {
        Verdict::Breaks => ExitCode::from(EXIT_HOST_BREAKS),
        _ => ExitCode::SUCCESS,
    }
}

/// One warning per host setting that caps this configuration: the same
/// rules as `check --host`.
fn warn_host_limits(config: &regproxy::config::Config) {
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
fn listeners(
    config: &regproxy::config::Config,
) -> anyhow::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let passed = regproxy::sys::systemd_listeners().context("LISTEN_FDS")?;
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

fn serve(path: &Path) -> anyhow::Result<()> {
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
    let workers = config.workers;
    let limits = connection_limits(&config);

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

    // Reload users, policy and certificates on SIGHUP and when their files
    // change; a broken set keeps the running one and says what is wrong.
    let reloader = Arc::new(live::Reloader::new(path, loaded));
    let (watched, on_change) = (reloader.clone(), reloader.clone());
    reload::watch_files(
        config.auth.reload_interval,
        move || watched.watched_files(),
        move || on_change.reload("file change"),
    )
    .context("cannot start the file watcher")?;

    let metrics = Arc::new(
        (0..workers)
            .map(|_| WorkerMetrics::default())
            .collect::<Vec<_>>(),
    );
    let states = Arc::new(
        (0..workers)
            .map(|_| StateGauges::default())
            .collect::<Vec<_>>(),
    );
    // Which registry servers take traffic: checked off the workers,
    // published to them through atomics.
    let health = Arc::new(health::Board::new(&config.upstream, workers));
    let top = Arc::new(metrics::top::TopBoard::new(
        config.top_repositories,
        workers,
    ));
    health::spawn_checkers(health.clone(), &config.upstream)
        .context("cannot start the upstream health checkers")?;
    let admin = match config.admin_listen {
        Some(a) => Some(
            regproxy::admin::serve(
                a,
                metrics::Registry {
                    workers: metrics.clone(),
                    states: states.clone(),
                    verifier: verifier.clone(),
                    health: health.clone(),
                    top: top.clone(),
                },
            )
            .with_context(|| format!("cannot listen for admin on {a}"))?,
        ),
        None => None,
    };

    let on_hup = reloader.clone();
    let stops = shutdown::on_signals(workers, move || on_hup.reload("SIGHUP"))
        .context("cannot install signal handlers")?;
    let shared = worker::Shared {
        config: config.clone(),
        verifier,
        auth: reloader.auth.clone(),
        tls: reloader.tls.clone(),
        metrics,
        health,
        limits,
        per_ip: limits.per_ip.map(PerIp::new),
        states,
        top,
    };
    regproxy::relay::splice::configure(config.splice_pipe_size);
    // Duplicates for the next process, taken before the workers own them.
    // Only with a hand-over socket: a duplicate keeps the listening socket
    // open, so without a successor to take it, SIGTERM would leave the
    // kernel queueing connections nobody will accept instead of refusing.
    let for_handoff = match &config.handoff_socket {
        Some(_) => listeners
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .context("cannot duplicate the listening sockets")?,
        None => Vec::new(),
    };
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
    if let Some(path) = &config.handoff_socket {
        handoff::serve(path, addr, for_handoff)
            .with_context(|| format!("cannot listen for handoff on {}", path.display()))?;
    }
    // Type=notify: systemd counts the service as started from here.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd we are ready");
    }
    tracing::info!(
        addr = %addr,
        workers,
        tls = %if config.tls.is_some() { "on" } else { "off" },
        admin_addr = %admin.map_or("off".to_owned(), |a| a.to_string()),
        upstream = ?config.upstream.servers,
        "listening"
    );
    for h in handles {
        let _ = h.join();
    }
    tracing::info!("stopped");
    Ok(())
}
