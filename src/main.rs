//! The regproxy binary: load and validate everything, bind one socket per
//! worker, start the shared services (hash pool, reload watcher, admin
//! endpoint, signal handler), then hand over to the workers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use regproxy::auth::cache::Verifier;
use regproxy::auth::limiter::Limiter;

/// Addresses and user names the brute-force limiter tracks at most, each.
const LIMITER_MAX_ENTRIES: usize = 65_536;
use regproxy::metrics::{self, WorkerMetrics};
use regproxy::{listen, live, reload, shutdown, worker};

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
    Check,
}

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
        Some(Command::Check) => check(&cli.config),
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

fn serve(path: &Path) -> anyhow::Result<()> {
    let loaded = live::load(path)?;
    if loaded.auth.users.is_empty() {
        tracing::warn!(file = %loaded.config.auth.htpasswd.display(), "htpasswd file has no users; every request will get 401");
    }
    let config = Arc::new(loaded.config.clone());
    let workers = config.workers;

    let (addr, listeners) = listen::bind_all(config.listen, workers)
        .with_context(|| format!("cannot listen on {}", config.listen))?;

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
    let admin = match config.admin_listen {
        Some(a) => Some(
            metrics::serve_admin(
                a,
                metrics::Registry {
                    workers: metrics.clone(),
                    verifier: verifier.clone(),
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
    };
    regproxy::relay::splice::configure(config.splice_pipe_size);
    let mut handles = Vec::with_capacity(workers);
    for (id, (listener, stop)) in listeners.into_iter().zip(stops).enumerate() {
        handles.push(worker::spawn(id, shared.clone(), listener, stop)?);
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
